"""The HTTP server: static files and :mod:`vramplan.web.api` (standard library only)."""

from __future__ import annotations

import json
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from vramplan.web.api import handle

STATIC_DIR = Path(__file__).parent / "static"


class Handler(SimpleHTTPRequestHandler):
    """Serves ``/api/*`` as JSON and everything else from ``static/``."""

    server_version = "vramplan"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        if url.path.startswith("/api/"):
            status, body = handle(url.path, dict(parse_qsl(url.query, keep_blank_values=True)))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        super().do_GET()

    def do_POST(self) -> None:  # noqa: N802
        from vramplan.web.extras import body_limit, handle_post

        text = self.headers.get("Content-Length") or "0"
        length = int(text) if text.isdigit() else -1
        limit = body_limit(self.path)
        if length < 0:
            status, body = 400, {"ok": False, "error": {"type": "InputError", "message":
                                 f"Content-Length: expected a byte count, got {text[:40]!r}"}}
            self.close_connection = True
        elif not limit:  # not a POST endpoint: answered without reading the body
            status, body = handle_post(self.path, b"")
            self.close_connection = True
        elif length > limit:
            status, body = 413, {"ok": False, "error": {"type": "InputError", "message":
                                 f"request body: {length:,} bytes; expected at most {limit:,}"}}
            self.close_connection = True
        else:
            status, body = handle_post(self.path, self.rfile.read(length))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:  # keep the terminal quiet
        pass


def make_server(host: str = "127.0.0.1", port: int = 8421) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0 picks a free one)."""
    return ThreadingHTTPServer((host, port), partial(Handler, directory=str(STATIC_DIR)))
