"""vae-explore's server through its HTTP API on loopback: answers checked against the models,
refused requests, and the command's start, errors and Ctrl-C.

One server per run is shared by the module (started in a thread on port 0); the load test runs
the real command in its own process, so its memory and threads can be watched from outside.
"""

import base64
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from vae_cli.cli.explore import main as explore_main
from vae_cli.data import one_hot
from vae_cli.explore.server import bind, load_space
from vae_cli.run import load_held_out, load_run
from vae_cli.latent import decode, encode_mean, principal_axes

REPO = Path(__file__).resolve().parents[1]


def serve(run_dir):
    server = bind("127.0.0.1", 0)
    server.attach(load_space(str(run_dir)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def mlp_server(mlp_run):
    server = serve(mlp_run)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cond_server(cond_run):
    server = serve(cond_run)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def mlp_models(mlp_run):
    run = load_run(mlp_run)
    return run, load_held_out(run)


def request(server, method, path, body=None, headers=None):
    """(status, parsed JSON or raw bytes) of one request; body: a dict (sent as JSON) or bytes."""
    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    payload = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    sent = {"Content-Type": "application/json"} if payload is not None else {}
    sent.update(headers or {})
    conn.request(method, path, body=payload, headers=sent)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, (json.loads(data) if kind == "application/json" else data)


def raw(server, data: bytes) -> bytes:
    """Send bytes as they are and return whatever comes back before the server closes."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # the server closed with bytes of ours unread: fine, it refused them
            pass
    return b"".join(chunks)


def png_array(data_url: str) -> np.ndarray:
    from PIL import Image

    assert data_url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    return np.asarray(image, dtype=np.float32) / 255


# --- answers ---------------------------------------------------------------------------------------


def test_info_matches_the_held_out_codes(mlp_server, mlp_models):
    run, held = mlp_models
    status, info = request(mlp_server, "GET", "/api/info")
    assert status == 200
    codes = encode_mean(run.encoder, held.x)
    from vae_cli.explore.space import MAX_POINTS

    assert info["latent_dim"] == 2 and info["held_out"] == len(held.x)  # the 10,000 real test digits
    assert len(info["points"]) == min(len(held.x), MAX_POINTS)
    assert not info["conditional"] and info["view"].startswith("units")
    points = np.array([p[:2] for p in info["points"]])
    np.testing.assert_allclose(points, codes[[p[3] for p in info["points"]]], atol=1e-3)
    assert [p[2] for p in info["points"]] == [int(held.y[p[3]]) for p in info["points"]]
    variances = codes.var(axis=0)
    assert info["unit_order"] == list(np.argsort(-variances))
    assert all(r >= 3 and r >= np.abs(codes[:, u]).max() for u, r in enumerate(info["slider_range"]))


def test_decode_gives_the_decoder_image_and_the_nearest_real_one(mlp_server, mlp_models):
    run, held = mlp_models
    z = [0.7, -1.3]
    status, answer = request(mlp_server, "POST", "/api/decode", {"z": z})
    assert status == 200
    expected = decode(run.decoder, np.array([z], np.float32))[0, ..., 0]
    np.testing.assert_allclose(png_array(answer["image"]), expected, atol=1 / 255 + 1e-6)
    codes = encode_mean(run.encoder, held.x)
    nearest = int(np.argmin(((codes - z) ** 2).sum(axis=1)))
    assert answer["nearest"]["index"] == nearest and answer["nearest"]["label"] == int(held.y[nearest])
    assert answer["nearest"]["distance"] == pytest.approx(float(np.linalg.norm(codes[nearest] - z)), abs=1e-3)
    np.testing.assert_allclose(png_array(answer["nearest"]["image"]), held.x[nearest, ..., 0], atol=1 / 255 + 1e-6)


def test_point_returns_that_image_and_its_code(mlp_server, mlp_models):
    run, held = mlp_models
    status, point = request(mlp_server, "GET", "/api/point?i=7")
    assert status == 200 and point["index"] == 7 and point["label"] == int(held.y[7])
    np.testing.assert_allclose(point["z"], encode_mean(run.encoder, held.x[7:8])[0], atol=1e-4)
    np.testing.assert_allclose(png_array(point["image"]), held.x[7, ..., 0], atol=1 / 255 + 1e-6)


def test_interpolation_walks_the_straight_line(mlp_server, mlp_models):
    run, _ = mlp_models
    a, b = [-2.0, 1.0], [2.0, 0.0]
    status, answer = request(mlp_server, "POST", "/api/interpolate", {"a": a, "b": b, "steps": 3})
    assert status == 200 and len(answer["images"]) == 3
    expected = decode(run.decoder, np.array([a, [0.0, 0.5], b], np.float32))
    for got, want in zip(answer["images"], expected):
        np.testing.assert_allclose(png_array(got), want[..., 0], atol=1 / 255 + 1e-6)


def test_conditional_run_pca_view_and_labels(cond_server, cond_run):
    run = load_run(cond_run)
    held = load_held_out(run)
    status, info = request(cond_server, "GET", "/api/info")
    assert status == 200 and info["conditional"] and info["num_classes"] == 10 and info["latent_dim"] == 3
    codes = encode_mean(run.encoder, held.x, one_hot(held.y, 10))
    origin, axes, explained = principal_axes(codes)
    assert info["view"] == "PCA of z_mean"
    np.testing.assert_allclose(info["explained"], explained, atol=1e-3)
    projected = (codes - origin) @ axes.T
    shown = [p[3] for p in info["points"]]
    np.testing.assert_allclose(np.array([p[:2] for p in info["points"]]), projected[shown], atol=1e-3)

    z = [0.2, -0.4, 0.1]
    images = {}
    for label in (1, 7):
        status, answer = request(cond_server, "POST", "/api/decode", {"z": z, "label": label})
        assert status == 200 and answer["nearest"]["label"] == label  # nearest among that class
        images[label] = png_array(answer["image"])
        want = decode(run.decoder, np.array([z], np.float32), one_hot([label], 10))[0, ..., 0]
        np.testing.assert_allclose(images[label], want, atol=1 / 255 + 1e-6)
    assert np.abs(images[1] - images[7]).mean() > 0.01  # the class changes the image

    status, answer = request(cond_server, "POST", "/api/decode", {"z": z})
    assert status == 400 and "label from 0 to 9" in answer["error"]
    status, answer = request(cond_server, "POST", "/api/decode", {"z": z, "label": 10})
    assert status == 400 and "label from 0 to 9" in answer["error"]


def test_static_files_are_the_page_and_nothing_else(mlp_server):
    status, page = request(mlp_server, "GET", "/")
    assert status == 200 and b"<script src=\"/app.js\"" in page
    assert b"http" not in re.sub(rb"<!--.*?-->", b"", page)  # nothing loaded from elsewhere
    for path in ("/app.js", "/style.css"):
        status, body = request(mlp_server, "GET", path)
        assert status == 200 and len(body) > 100
        assert b"http://" not in body and b"https://" not in body
    for path in ("/static/app.js", "/../vae_cli/run.py", "/%2e%2e/%2e%2e/etc/passwd", "/index.html",
                 "/api/../config.json", "/config.json", "//etc/passwd"):
        status, body = request(mlp_server, "GET", path)
        assert status == 404 and "error" in body


# --- refused requests ---------------------------------------------------------------------------------

BAD_DECODES = [
    ({"z": [0.0]}, "list of 2 numbers"),
    ({"z": [0.0, 0.0, 0.0]}, "list of 2 numbers"),
    ({"z": "0,0"}, "list of 2 numbers"),
    ({"z": [0.0, "1"]}, "expected numbers"),
    ({"z": [0.0, True]}, "expected numbers"),
    ({"z": [0.0, None]}, "expected numbers"),
    ({"z": [0.0, 100.5]}, "within +-100"),
    ({"z": [0.0, -10**400]}, "within +-100"),
    ({"z": [0.0, 0.0], "extra": 1}, "unknown field 'extra'"),
    ({"z": [0.0, 0.0], "label": 3}, "not conditional"),
    ({}, "missing field 'z'"),
    ([0.0, 0.0], "JSON object"),
]


@pytest.mark.parametrize("body, message", BAD_DECODES)
def test_bad_decode_requests_get_a_400_naming_the_problem(mlp_server, body, message):
    status, answer = request(mlp_server, "POST", "/api/decode", body)
    assert status == 400 and message in answer["error"]


@pytest.mark.parametrize("text, message", [
    (b'{"z": [NaN, 0]}', "NaN"),
    (b'{"z": [Infinity, 0]}', "Infinity"),
    (b'{"z": [1e400, 0]}', "finite"),
    (b'{"z": [0, 0]', "not valid JSON"),
    (b'\xff\xfe\x00garbage', "not valid JSON"),
    (b"[" * 60000, "not valid JSON"),  # nesting deeper than the parser's recursion limit
    (b"", "not valid JSON"),
])
def test_malformed_bodies_get_a_400(mlp_server, text, message):
    status, answer = request(mlp_server, "POST", "/api/decode", text)
    assert status == 400 and message in answer["error"]


@pytest.mark.parametrize("body, message", [
    ({"a": [0, 0], "b": [1, 1], "steps": 1}, "steps must be an integer from 2 to 32"),
    ({"a": [0, 0], "b": [1, 1], "steps": 33}, "steps must be"),
    ({"a": [0, 0], "b": [1, 1], "steps": "5"}, "steps must be"),
    ({"a": [0, 0], "b": [1, 1], "steps": True}, "steps must be"),
    ({"a": [0, 0], "b": [1], "steps": 4}, "b must be a list of 2"),
    ({"a": [0, 0], "steps": 4}, "missing field 'b'"),
])
def test_bad_interpolations_get_a_400(mlp_server, body, message):
    status, answer = request(mlp_server, "POST", "/api/interpolate", body)
    assert status == 400 and message in answer["error"]


@pytest.mark.parametrize("query", ["", "i=", "i=-1", "i=abc", "i=1.5", "i=100000", "i=1&j=2", "i=1&i=2",
                                   "i=%EF%BC%91", "i=" + "9" * 50])
def test_bad_point_queries_get_a_400(mlp_server, query):
    status, answer = request(mlp_server, "GET", f"/api/point?{query}")
    assert status == 400 and "i" in answer["error"]


def test_wrong_methods_types_sizes_and_hosts(mlp_server):
    assert request(mlp_server, "GET", "/api/decode")[0] == 405
    assert request(mlp_server, "POST", "/api/info", {"z": [0, 0]})[0] == 405
    assert request(mlp_server, "POST", "/nowhere", {"z": [0, 0]})[0] == 404
    status, answer = request(mlp_server, "PUT", "/api/decode", {"z": [0, 0]})
    assert status == 501 and "error" in answer
    status, answer = request(mlp_server, "POST", "/api/decode", b'{"z": [0, 0]}',
                             {"Content-Type": "text/plain"})  # what a form on another site would send
    assert status == 415 and "application/json" in answer["error"]
    status, answer = request(mlp_server, "POST", "/api/decode", b'{"z": [' + b"0," * 40000 + b"0]}")
    assert status == 413 and "64 KB" in answer["error"]
    status, answer = request(mlp_server, "GET", "/api/info", headers={"Host": "attacker.example:80"})
    assert status == 403 and "Host" in answer["error"]


def test_raw_malformed_requests_leave_the_server_answering(mlp_server):
    port = mlp_server.server_address[1]
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    cases = [
        b"garbage\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",  # request line over the 64 KB limit
        b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 150 + b"\r\n",  # too many headers
        b"POST /api/decode HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n\r\n{}",  # no length
        b"POST /api/decode HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n0\r\n\r\n",
        b"POST /api/decode HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
        b"Content-Length: 999999999999\r\n\r\n{}",
        b"POST /api/decode HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{\"z\"",  # body cut short
        b"\x00\xff" * 1000,
    ]
    for case in cases:
        answer = raw(mlp_server, case)
        if answer:  # a refused request is answered with a status line and a JSON error
            assert re.match(rb"HTTP/1\.[01] [45]\d\d ", answer), answer[:80]
            assert b'{"error":' in answer
    status, _ = request(mlp_server, "GET", "/api/info")
    assert status == 200


# --- the command ---------------------------------------------------------------------------------------


def test_command_refuses_a_taken_port_and_a_bad_run(capsys, tmp_path, mlp_run):
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, []) if hasattr(signal, "pthread_sigmask") else None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert explore_main([str(mlp_run), "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot listen on 127.0.0.1" in err[0] and "--port" in err[0]

    assert explore_main([str(tmp_path / "missing"), "--port", "0", "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a directory" in err[0]

    assert explore_main(["pretrained:nope", "--port", "0", "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pretrained:mnist" in err[0]
    # run in-process, the command leaves the caller's signal handlers and mask as they were
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert mask is None or signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask

    with pytest.raises(SystemExit) as stop:
        explore_main(["--port", "70000"])
    assert stop.value.code == 2 and "0 to 65535" in capsys.readouterr().err


def test_another_host_is_served_only_with_a_one_line_warning(capsys):
    with socket.socket() as taken:  # the warning comes first; the taken port then stops it early
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert explore_main(["--host", "0.0.0.0", "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("vae-explore: warning: serving on 0.0.0.0")


def _start_command(tmp_path, *args, preexec_fn=None, browser: Path | None = None) -> tuple[subprocess.Popen, str]:
    """The command on a free port; with `browser`, it opens the page with that program ($BROWSER)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONFAULTHANDLER": "1"}  # stacks on SIGABRT, for _communicate_or_explain
    if browser is not None:
        env["BROWSER"] = str(browser)
    proc = subprocess.Popen([sys.executable, "-m", "vae_cli.cli.explore", *args, "--port", "0",
                             *([] if browser else ["--no-browser"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            preexec_fn=preexec_fn)
    line = proc.stdout.readline()  # printed once the page can be served
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, match.group(0)


def _call(url: str, path: str, body=None, headers=None) -> int:
    host, port = url[len("http://"):-1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request("GET" if body is None else "POST", path, body=payload,
                 headers={"Content-Type": "application/json", **(headers or {})})
    status = conn.getresponse().status
    conn.close()
    return status


def _ignore_and_block_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as nohup, background jobs and some supervisors start it
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_ctrl_c_stops_the_command_even_when_it_started_with_sigint_ignored_and_blocked(tmp_path):
    proc, url = _start_command(tmp_path, preexec_fn=_ignore_and_block_sigint)
    try:
        assert _call(url, "/api/info") == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = _communicate_or_explain(proc)
    assert proc.returncode == 0 and err.strip().endswith("vae-explore: stopped")


def _communicate_or_explain(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """proc's output once it exits; if it does not, fail with what each of its threads blocks
    and has pending, and the Python stacks faulthandler prints on SIGABRT."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        threads = []
        for task in sorted(Path(f"/proc/{proc.pid}/task").glob("*")):
            fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
            threads.append(f"{fields['Name'].strip()} blk={fields['SigBlk'].strip()} pnd={fields['SigPnd'].strip()}")
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate()
        pytest.fail(f"still running {timeout:.0f} s after the signal; threads: {threads}; stderr: {err[-4000:]}")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the browser's signal mask from /proc")
def test_the_browser_it_opens_does_not_inherit_blocked_signals(tmp_path):
    """vae-explore blocks SIGINT/SIGTERM for its own loop; a browser it starts must not be left
    unable to be interrupted or terminated. $BROWSER stands in for the browser here."""
    record = tmp_path / "browser.txt"
    browser = tmp_path / "browser"
    browser.write_text(f"#!{sys.executable}\nimport sys\n"
                       f"status = open('/proc/self/status').read()\n"
                       f"open({str(record)!r}, 'w').write(sys.argv[1] + '\\n' + status)\n")
    browser.chmod(0o755)
    proc, url = _start_command(tmp_path, browser=browser)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (record.is_file() and "SigBlk" in record.read_text()):
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = _communicate_or_explain(proc)
    opened, status = record.read_text().split("\n", 1)
    assert opened == url
    blocked = int(re.search(r"SigBlk:\s*([0-9a-f]+)", status).group(1), 16)
    assert not blocked & (1 << (signal.SIGINT - 1) | 1 << (signal.SIGTERM - 1))
    assert proc.returncode == 0 and err.strip().endswith("vae-explore: stopped")


def test_command_serves_the_pretrained_run_under_load_and_stops_on_ctrl_c(tmp_path):
    """200 requests at once, five times over (decodes, strips, pages, refusals, 60 KB bodies):
    every one answered, and the server's threads and memory back where they were."""
    import psutil

    proc, url = _start_command(tmp_path)  # no RUN: the shipped pretrained:mnist
    try:
        mix = [("/api/decode", {"z": [0.5, -0.5]}, 200),
               ("/api/interpolate", {"a": [0, 0], "b": [1, 1], "steps": 8}, 200),
               ("/api/info", None, 200), ("/", None, 200), ("/api/decode", {"z": [1e9, 0]}, 400),
               ("/api/decode", b"{" * 1000, 400), ("/api/decode", b'{"z": [' + b"0.5," * 15000 + b"0]}", 400),
               ("/api/decode", b"x" * 70000, 413), ("/api/point?i=3", None, 200)]
        server = psutil.Process(proc.pid)

        def one_round():
            with ThreadPoolExecutor(200) as pool:
                statuses = list(pool.map(lambda k: _call(url, *mix[k % len(mix)][:2]), range(200)))
            assert statuses == [mix[k % len(mix)][2] for k in range(200)]

        one_round()  # warm-up: first calls compile, allocators grow to their working size
        time.sleep(0.5)
        threads, rss = server.num_threads(), server.memory_info().rss
        for _ in range(5):
            one_round()
        time.sleep(0.5)
        assert server.num_threads() <= threads  # every request's thread ended
        growth = (server.memory_info().rss - rss) / 2**20
        assert growth < 25, f"the server grew by {growth:.1f} MB over 1,000 requests"
        assert _call(url, "/api/decode", {"z": [0.0, 0.0]}) == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = _communicate_or_explain(proc)  # generous: a loaded CI machine, not a speed check
    assert proc.returncode == 0 and "Traceback" not in err and err.strip().endswith("vae-explore: stopped")
    with pytest.raises(OSError):  # the port is closed
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))), timeout=5).close()
