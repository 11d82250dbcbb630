"""Round-trip latency of vae-explore's decode and interpolation requests, as the page sees them.

    python benchmarks/explore_latency.py                        # the shipped pretrained:mnist run
    python benchmarks/explore_latency.py --run outputs/RUN --rounds 5 --requests 300 --json out.json

Each round starts `vae-explore RUN --port 0 --no-browser` in a fresh process, waits for its URL,
sends WARMUP requests it does not count, then, from this separate process, one request at a
time (as the page does: it never has two decodes in flight): POST /api/decode with z walking
like a dragged slider, and every tenth request a 10-image POST /api/interpolate. A round trip is
connect + request + the whole JSON answer read (the server closes each connection, as it does
for the browser). Results go to --json (default benchmarks/explore-latency.json) with the
machine's load average, since timings on a shared machine mean little without it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as `python benchmarks/explore_latency.py`: import this checkout
    sys.path.insert(0, str(ROOT))

from benchmarks import measure  # noqa: E402

WARMUP = 20


def _start(run: str, cache: str) -> tuple[subprocess.Popen, int]:
    env = measure.child_env(XDG_CACHE_HOME=cache)
    proc = subprocess.Popen([sys.executable, "-m", "vae_cli.cli.explore", run, "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"explore_latency: vae-explore did not start ({line.strip() or 'no output'})")
    return proc, int(match.group(1))


def _round_trip(port: int, path: str, body: dict | None = None) -> float:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    payload = None if body is None else json.dumps(body)
    conn.request("GET" if body is None else "POST", path, body=payload,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise SystemExit(f"explore_latency: {path} answered {response.status}: {data[:200]!r}")
    return elapsed


def one_round(run: str, requests: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        proc, port = _start(run, cache)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/api/info")
            info = json.loads(conn.getresponse().read())
            conn.close()
            rng = np.random.default_rng(seed)
            z = np.array(info["start"], np.float64)
            reach = np.array(info["slider_range"])
            decode_ms, strip_ms = [], []
            for k in range(WARMUP + requests):
                unit = info["unit_order"][k % len(info["unit_order"])]
                z[unit] = float(np.clip(z[unit] + rng.normal(0, 0.1), -reach[unit], reach[unit]))
                if k % 10 == 9:
                    t = _round_trip(port, "/api/interpolate", {"a": [0.0] * len(z), "b": z.tolist(), "steps": 10})
                    (strip_ms if k >= WARMUP else []).append(1000 * t)
                else:
                    t = _round_trip(port, "/api/decode", {"z": z.tolist()})
                    (decode_ms if k >= WARMUP else []).append(1000 * t)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    return {"decode_ms": decode_ms, "interpolate10_ms": strip_ms, "arch": info["arch"],
            "latent_dim": info["latent_dim"], "image_shape": info["image_shape"]}


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median_ms": round(statistics.median(values), 2),
            "p95_ms": round(float(np.percentile(values, 95)), 2), "max_ms": round(max(values), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="explore_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="pretrained:mnist", help="a run directory or pretrained:mnist (default)")
    parser.add_argument("--name", help="what to call the run in the results (default: --run)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh server processes (default: 3)")
    parser.add_argument("--requests", type=int, default=200, help="counted requests per round (default: 200)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "explore-latency.json"))
    args = parser.parse_args(argv)

    load_before = measure.load_average() or [0.0]
    rounds = [one_round(args.run, args.requests, seed) for seed in range(args.rounds)]
    load_after = measure.load_average() or [0.0]
    result = {
        "run": args.name or args.run, "arch": rounds[0]["arch"], "latent_dim": rounds[0]["latent_dim"],
        "image_shape": rounds[0]["image_shape"],
        "machine": {**measure.machine(), "load_average_1min_before_after": [load_before[0], load_after[0]]},
        "protocol": f"{args.rounds} rounds, each a fresh vae-explore process; {WARMUP} warm-up requests, then "
                    f"{args.requests} sequential round trips (every tenth a 10-image interpolation) from a "
                    "separate client process over loopback",
        "rounds": [{"decode": summary(r["decode_ms"]), "interpolate10": summary(r["interpolate10_ms"])}
                   for r in rounds],
        "decode": summary([v for r in rounds for v in r["decode_ms"]]),
        "interpolate10": summary([v for r in rounds for v in r["interpolate10_ms"]]),
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{result['run']} ({result['arch']}, latent {result['latent_dim']}): decode round trip median "
          f"{result['decode']['median_ms']} ms, p95 {result['decode']['p95_ms']} ms; 10-image strip median "
          f"{result['interpolate10']['median_ms']} ms, p95 {result['interpolate10']['p95_ms']} ms "
          f"(load average {load_before[0]:.1f} -> {load_after[0]:.1f}; wrote {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
