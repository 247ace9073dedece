"""The HTTP server: static files and :mod:`vramplan.web.api` (standard library only).

Every answer, failures included, is a complete HTTP/1.x response; every failure
carries the one JSON error shape (``{"ok": false, "error": {"type", "message"}}``)
and never a stack trace. The server defends itself against its clients:

- slow clients: a socket timeout (:data:`CLIENT_TIMEOUT_S`) on the request line,
  the headers and any body, answered with a 408;
- too many at once: at most :data:`MAX_CONNECTIONS` handled together, the rest
  answered with a 503 at once; a listen backlog of :data:`LISTEN_BACKLOG`;
- oversized requests: a URL of at most :data:`MAX_URL_CHARS`, no request bodies
  beyond :data:`MAX_BODY_BYTES` (the API is GET only);
- DNS rebinding: the ``Host`` header must name a loopback address (or the address
  given to ``--host``), else 403 (a page on another origin that resolves its own name
  to 127.0.0.1 cannot talk to the server);
- file reads: ``model=`` never names a file on the server's disk unless it was
  started with ``allow_paths`` (``vramplan serve --allow-paths``), and even then a
  config error is reported without the file's values.
"""

from __future__ import annotations

import json
import socket
import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

STATIC_DIR = Path(__file__).parent / "static"
CLIENT_TIMEOUT_S = 10.0
"""Seconds a client may take to send its request line, headers or body."""
MAX_CONNECTIONS = 64
"""Connections handled at once; more are answered 503 without reading them."""
LISTEN_BACKLOG = 128
"""Pending connections the kernel queues (the standard library's default is 5)."""
MAX_URL_CHARS = 8192
"""Longest request target accepted (414 beyond)."""
MAX_BODY_BYTES = 0
"""Request bodies accepted by GET and HEAD: none (413 for a body); the POST endpoints
of :mod:`vramplan.web.extras` declare their own limits."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
"""Host names a loopback server answers to."""


def error_shape(kind: str, message: str) -> dict:
    """The one JSON error shape (as :meth:`vramplan.errors.VramplanError.to_dict`)."""
    return {"ok": False, "error": {"type": kind, "message": message}}


def _host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8421`` -> ``[::1]``, ``a:80`` -> ``a``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def model_names(path: str, query: dict[str, str]) -> list[str]:
    """Every model name a request would resolve (``model=``, and the values of a sweep
    over ``model``)."""
    names = [query["model"]] if query.get("model") else []
    if path.rstrip("/") == "/api/sweep" and query.get("vary") == "model":
        names += [v.strip() for v in query.get("values", "").split(",") if v.strip()]
    return names


def refuse_path_model(name: str) -> str | None:
    """Why ``name`` may not be resolved by a server without ``allow_paths`` (``None``
    when it is a catalog name, a Hub id of the catalog or a parameter count): it must
    not reach :func:`vramplan.model.resolve_model`, which reads files."""
    from vramplan.errors import VramplanError
    from vramplan.units import looks_like_param_count

    from vramplan.model.resolve import is_registered_model

    if looks_like_param_count(name) or is_registered_model(name):
        return None
    from vramplan.catalog import find_model

    try:
        find_model(name)
    except VramplanError as exc:
        looks_like_path = name.endswith(".json") or name.startswith((".", "/", "~", "\\")) or "\\" in name
        if looks_like_path:
            return (f"model: {name[:80]!r} is a file path; this server does not read files "
                    "(start it with `vramplan serve --allow-paths` to allow config.json paths)")
        return str(exc)
    except (OSError, ValueError):
        return f"model: {name[:80]!r} is not a catalog name"
    return None


class Server(ThreadingHTTPServer):
    """A threading server with a bounded number of connections in flight, a larger
    listen backlog, and the settings the handler reads."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, *, allow_paths: bool = False,
                 allowed_hosts: frozenset[str] = LOOPBACK_HOSTS) -> None:
        self.allow_paths = allow_paths
        self.allowed_hosts = allowed_hosts
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            _reject_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # never print a stack trace; the handler has answered already


def _reject_busy(request: socket.socket) -> None:
    body = json.dumps(error_shape("ServerBusy", f"more than {MAX_CONNECTIONS} requests in flight; "
                                  "retry shortly")).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
    try:
        request.settimeout(1.0)
        request.sendall(head + body)
    except OSError:
        pass


class Handler(SimpleHTTPRequestHandler):
    """Serves ``/api/*`` as JSON and everything else from ``static/``."""

    server_version = "vramplan"
    sys_version = ""
    timeout = CLIENT_TIMEOUT_S
    server: Server

    # ---- every failure as the JSON error shape ------------------------------------
    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer ``code`` with the JSON error shape (replaces the HTML error page)."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self.send_json(code, error_shape(phrase.replace(" ", ""), message or phrase), close=True)

    def send_json(self, status: int, body: dict, *, close: bool = False) -> None:
        payload = json.dumps(body).encode()
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # answer with a status line and headers
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def handle_one_request(self) -> None:
        """Read, parse and answer one request; a timeout, an oversized request line or
        any failure still gets its JSON answer."""
        self._answered = False
        self.request_version = self.default_request_version
        self.command = "GET"
        self.requestline = ""
        try:
            self.raw_requestline = self.rfile.readline(MAX_URL_CHARS + 64)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > MAX_URL_CHARS + 32:
                self.request_version = "HTTP/1.0"
                self.send_error(414, f"request line longer than {MAX_URL_CHARS:,} characters")
                return
            if len(self.raw_requestline.split()) < 3:
                # No HTTP version: an HTTP/0.9 request (or garbage). The standard parser
                # would wait for headers that never come; answer now.
                self.request_version = "HTTP/1.0"
                self.send_error(400, "expected a request line such as 'GET /path HTTP/1.1'")
                return
            if not self.parse_request():
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(501, f"{self.command[:20]!r}: this server answers GET and HEAD only")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            self._last_resort(408, "RequestTimeout", f"no complete request within {CLIENT_TIMEOUT_S:g} s")
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - the client gets an answer, never a trace
            self._last_resort(500, "InternalError", "the server failed on this request")

    def _last_resort(self, status: int, kind: str, message: str) -> None:
        self.close_connection = True
        if self._answered:
            return
        try:
            self.send_json(status, error_shape(kind, message), close=True)
            self.wfile.flush()
        except Exception:  # noqa: BLE001 - the socket is gone
            pass

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if len(self.path) > MAX_URL_CHARS:
            self.send_error(414, f"request target of {len(self.path):,} characters; at most {MAX_URL_CHARS:,}")
            return False
        host = self.headers.get("Host")
        if host is not None and _host_name(host) not in self.server.allowed_hosts:
            self.send_error(403, f"Host {host[:80]!r} is not this server's name (expected one of "
                                 f"{', '.join(sorted(self.server.allowed_hosts))})")
            return False
        return self._check_body()

    def _check_body(self) -> bool:
        """Bodies only for the POST endpoints, each within its limit (413 beyond); no
        chunked bodies (their size is unknown until read)."""
        from vramplan.web.extras import body_limit

        text = self.headers.get("Content-Length")
        limit = body_limit(self.path) if self.command == "POST" else MAX_BODY_BYTES
        if self.headers.get("Transfer-Encoding"):
            self.send_error(413, "chunked request bodies are not accepted; send Content-Length")
            return False
        if text is None or text == "0" or (self.command == "POST" and not limit):
            return True  # an unknown POST endpoint: do_POST answers 404 without reading the body
        if not text.isdigit() or len(text) > 18:
            self.send_error(400, f"Content-Length: expected a byte count, got {text[:40]!r}")
            return False
        if int(text) > limit:
            self.send_error(413, f"request body: {int(text):,} bytes; expected at most {limit:,}")
            return False
        return True

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    # ---- methods ------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        if url.path.startswith("/api/"):
            self._api(url.path, dict(parse_qsl(url.query, keep_blank_values=True)))
            return
        if "\x00" in url.path or "%00" in url.path.lower():
            self.send_error(404, "no such file")
            return
        try:
            super().do_GET()
        except (OSError, ValueError):
            if not self._answered:
                self.send_error(404, "no such file")

    def do_POST(self) -> None:  # noqa: N802
        """The POST endpoints of :mod:`vramplan.web.extras` (pasted config.json, GGUF
        headers); the body size was checked against their limit in :meth:`parse_request`."""
        from vramplan.web.extras import body_limit, handle_post

        length = int(self.headers.get("Content-Length") or "0")
        if not body_limit(self.path):  # not a POST endpoint: answered without reading a body
            status, body = handle_post(self.path, b"")
            self.send_json(status, body, close=True)
            return
        status, body = handle_post(self.path, self.rfile.read(length))
        self.send_json(status, body)

    def do_HEAD(self) -> None:  # noqa: N802
        if urlsplit(self.path).path.startswith("/api/"):
            self.send_error(405, "the API answers GET only")
            return
        try:
            super().do_HEAD()
        except (OSError, ValueError):
            if not self._answered:
                self.send_error(404, "no such file")

    def _not_allowed(self) -> None:
        self.send_error(405, f"{self.command}: this server answers GET, HEAD and POST only")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    def _api(self, path: str, query: dict[str, str]) -> None:
        from vramplan.web.api import handle

        names = model_names(path, query)
        if not self.server.allow_paths:
            for name in names:
                why = refuse_path_model(name)
                if why is not None:
                    self.send_json(400, error_shape("InputError", why))
                    return
        try:
            status, body = handle(path, query)
        except Exception:  # noqa: BLE001 - answered, never a trace
            status, body = 500, error_shape("InternalError", f"{path}: the server failed on this request")
        if status >= 400 and self.server.allow_paths and any(_is_file(n) for n in names) \
                and body.get("error", {}).get("type") == "ConfigError":
            # Never echo what a file holds (its values could be secrets): name the file only.
            body = error_shape("ConfigError", "model: the file given is not a usable config.json "
                                              "(run `vramplan params PATH` in a terminal for the reason)")
        self.send_json(status, body)

    def log_message(self, format: str, *args: Any) -> None:  # keep the terminal quiet
        pass


def _is_file(name: str) -> bool:
    try:
        return Path(name).expanduser().exists() or name.endswith(".json")
    except (OSError, ValueError):
        return False


def make_server(host: str = "127.0.0.1", port: int = 8421, *, allow_paths: bool = False) -> Server:
    """A server bound to ``host:port`` (port 0 picks a free one). It answers requests
    whose ``Host`` names a loopback address, or ``host`` itself when that is not one.
    ``allow_paths`` lets ``model=`` name a config.json on this machine."""
    if host in ("", "0.0.0.0", "::"):
        # Every address of the machine: it answers to its own names.
        named = {socket.gethostname().lower(), socket.getfqdn().lower()}
    else:
        named = {host.lower(), f"[{host.lower()}]"}
    allowed = LOOPBACK_HOSTS | frozenset(named)
    return Server((host, port), partial(Handler, directory=str(STATIC_DIR)), allow_paths=allow_paths,
                  allowed_hosts=frozenset(allowed))
