"""The explorer's HTTP server: stdlib http.server, one thread per connection, loopback by default.

Only two kinds of thing are ever sent: the page's three static files, read once at start into a
dict with fixed names (no request path reaches the file system), and JSON from the API
(vae_cli.explore.api). Requests are bounded (body size, header count, a socket timeout, a cap on
connections handled at once), and every failure is answered with a 4xx/5xx JSON line instead of
taking the server down.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from ..errors import UsageError
from ..signals import take_stop, unblock_in_this_thread
from . import api
from .space import LatentSpace

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_CONNECTIONS = 64  # handled at once; more wait in the listen queue (a thread each costs ~8 MB of stack)
LISTEN_QUEUE = 512
DRAIN_LIMIT = 1024 * 1024  # bytes of a refused body read and dropped before answering (see _discard_body)
SOCKET_TIMEOUT = 10.0  # seconds a client may stay silent before its connection is dropped
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
# Everything the page uses comes from this server; images arrive as data: URLs.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_assets() -> dict[str, tuple[bytes, str]]:
    """URL path -> (bytes, content type) of the page's files, read from the package once."""
    folder = resources.files(__package__) / "static"
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never keeps the process alive after Ctrl-C,
    block_on_close = False  # nor delays it: server_close does not wait for open connections
    request_queue_size = LISTEN_QUEUE

    def __init__(self, address: tuple[str, int]):
        """Bind and listen at once (a taken port fails before the model loads); requests wait in
        the listen queue until `attach` hands over the model and serve_forever starts."""
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, ExploreHandler)
        self.space: LatentSpace | None = None
        self.info_body = b""
        self.assets = static_assets()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.allowed_hosts = self._hosts(address[0], self.server_address[1])

    def attach(self, space: LatentSpace) -> None:
        self.space = space
        self.info_body = json.dumps(space.info(), separators=(",", ":")).encode("utf-8")

    @staticmethod
    def _hosts(host: str, port: int) -> set[str] | None:
        """Host headers answered on a loopback address (None: any). Refusing the rest keeps a web
        page from reaching the server through a DNS name rebound to 127.0.0.1."""
        if not is_loopback(host):
            return None
        return {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", host)}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def process_request(self, request, client_address):
        self.slots.acquire()  # blocks accepting while MAX_CONNECTIONS are in progress
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def service_actions(self):  # between polls of serve_forever
        _stop_if_asked()

    def handle_error(self, request, client_address):
        pass  # a client that hung up or sent garbage is its own problem, not the console's


class ExploreHandler(BaseHTTPRequestHandler):
    server: ExploreServer
    timeout = SOCKET_TIMEOUT

    def version_string(self) -> str:
        return "vae-explore"

    def log_message(self, format, *args):  # noqa: A002  (the base class's name)
        pass  # no line per request: the slider sends dozens a second

    # --- answers ---------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"), "application/json")

    def send_error(self, code, message=None, explain=None):
        """The base class's errors (bad request line, too many headers...) as JSON too."""
        self.close_connection = True
        self.request_version = "HTTP/1.0"  # a status line even for a request line we could not parse
        try:
            self._json(code, {"error": message or self.responses.get(code, ("error",))[0]})
        except OSError:
            pass

    # --- routing ---------------------------------------------------------------------------------

    def _checked_path(self) -> tuple[str, str]:
        allowed = self.server.allowed_hosts
        if allowed is not None and self.headers.get("Host", "") not in allowed:
            raise api.RequestError(403, "unexpected Host header; open the page at the URL vae-explore printed")
        parts = urlsplit(self.path)
        return parts.path, parts.query

    def do_GET(self):
        try:
            path, query = self._checked_path()
            if path in self.server.assets:
                body, kind = self.server.assets[path]
                self._send(200, body, kind)
            elif path == "/api/info":
                self._send(200, self.server.info_body, "application/json")
            elif path == "/api/point":
                self._json(200, api.point(self.server.space, query))
            elif path in api.POST_ROUTES:
                self._json(405, {"error": f"{path} takes POST with a JSON body"})
            else:
                self._json(404, {"error": f"no such page: {path[:80]}"})
        except api.RequestError as e:
            self._json(e.status, {"error": str(e)})
        except OSError:
            self.close_connection = True
        except Exception as e:  # noqa: BLE001  (one bad request must never stop the server)
            self._internal_error(e)

    do_HEAD = do_GET

    def do_POST(self):
        text = self.headers.get("Content-Length", "")
        declared = int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None
        self.unread = declared or 0
        try:
            path, _ = self._checked_path()
            route = api.POST_ROUTES.get(path)
            if route is None:
                known = path in self.server.assets or path in ("/api/info", "/api/point")
                raise api.RequestError(405 if known else 404, f"POST is not accepted at {path[:80]}")
            self._json(200, route(self.server.space, api.parse_body(self._body(declared))))
        except api.RequestError as e:
            self.close_connection = True  # an unread body must not be taken for the next request
            self._discard_body()
            self._json(e.status, {"error": str(e)})
        except OSError:
            self.close_connection = True
        except Exception as e:  # noqa: BLE001
            self._internal_error(e)
        finally:
            self._discard_body()

    def _discard_body(self) -> None:
        """Read a refused body of a plausible size before answering: closing a socket with unread
        bytes sends a reset, which can destroy the answer before the client reads it."""
        if 0 < self.unread <= DRAIN_LIMIT:
            self.unread, size = 0, self.unread
            try:
                self.rfile.read(size)
            except OSError:
                pass

    def _body(self, declared: int | None) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise api.RequestError(411, "send a Content-Length, not a chunked body")
        if declared is None:
            raise api.RequestError(411 if "Content-Length" not in self.headers else 400,
                                   "a Content-Length header with the body's size in bytes is required")
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":  # also what keeps a plain HTML form on another site out
            raise api.RequestError(415, "send the body as Content-Type: application/json")
        if declared > api.MAX_BODY:
            raise api.RequestError(413, f"the body is over {api.MAX_BODY // 1024} KB")
        self.unread = 0
        body = self.rfile.read(declared)
        if len(body) != declared:
            raise api.RequestError(400, "the body is shorter than its Content-Length")
        return body

    def _internal_error(self, e: Exception) -> None:
        print(f"vae-explore: internal error on {self.command} {self.path[:80]}: "
              f"{type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
        self.close_connection = True
        try:
            self._json(500, {"error": "internal error (see the vae-explore console)"})
        except OSError:
            pass


def bind(host: str, port: int) -> ExploreServer:
    """A listening server on host:port (0: a free port), or a UsageError naming the fix."""
    try:
        return ExploreServer((host, port))
    except OSError as e:
        hint = ("pick another --port (0 picks a free one)" if e.errno == errno.EADDRINUSE
                else "check --host (an address of this machine, e.g. 127.0.0.1)")
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e}); {hint}") from None


def load_space(run: str) -> LatentSpace:
    """The run (a directory or pretrained:NAME) through the safe loader, with its held-out codes."""
    from ..run import load_held_out, load_run

    loaded = load_run(run)
    return LatentSpace(loaded, load_held_out(loaded), name=run)


def _stop_if_asked() -> None:
    """Stop the way Ctrl-C does when a SIGINT or SIGTERM waits (queued by signals.queued_stops)."""
    if take_stop() is not None:
        raise KeyboardInterrupt


def _open_browser(url: str) -> None:
    unblock_in_this_thread()  # the browser it may start inherits this thread's signal mask
    webbrowser.open(url)


def explore(run: str, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True) -> int:
    """Serve the explorer page for `run` until Ctrl-C (or SIGTERM); returns the exit code, 0.

    Binds first, so a taken port is reported before the model loads."""
    if not is_loopback(host):
        print(f"vae-explore: warning: serving on {host}, not the loopback address: anyone who can reach "
              "this machine can use the page and see the run's images", file=sys.stderr)
    server = bind(host, port)
    try:
        server.attach(load_space(run))
        _stop_if_asked()  # a Ctrl-C while the run loaded: no URL for a page that is gone
        print(f"vae-explore: {run} at {server.url} (Ctrl-C stops)", flush=True)
        if open_browser:
            threading.Thread(target=_open_browser, args=(server.url,), daemon=True).start()
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("vae-explore: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
