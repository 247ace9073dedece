"""One loopback HTTP server for the tests: the fake Hub and ModelScope of
``test_sources_fixtures`` and vramplan's own web server (``test_web*``) all run on
127.0.0.1, on a port the system picks, on a daemon thread, and close the same way."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers with :meth:`send`."""

    def log_message(self, *args) -> None:
        pass

    def send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        """Status, headers, ``Content-Length`` and (unless ``head``) the body."""
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


class Loopback:
    """``server`` (any ``socketserver`` server bound to 127.0.0.1) answering on a daemon
    thread from construction until :meth:`close`."""

    def __init__(self, server) -> None:
        self.server = server
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @classmethod
    def of(cls, handler: type[BaseHTTPRequestHandler]) -> Loopback:
        """A threading HTTP server on a free port answering with ``handler``."""
        return cls(ThreadingHTTPServer(("127.0.0.1", 0), handler))

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serve_web(**kwargs) -> Iterator[Loopback]:
    """vramplan's web server (:func:`vramplan.web.server.make_server`, ``kwargs`` passed
    on) on a free loopback port, closed on exit."""
    from vramplan.web.server import make_server

    running = Loopback(make_server(port=0, **kwargs))
    try:
        yield running
    finally:
        running.close()
