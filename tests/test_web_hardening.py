"""The web server answers every request, hostile ones included, with a complete HTTP
response carrying the JSON error shape, over real loopback sockets."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from loopback import serve_web
from vramplan.web import server as web_server


@pytest.fixture(scope="module")
def srv():
    with serve_web() as running:
        yield running.server


def raw(srv, data: bytes, timeout: float = 20) -> tuple[int, dict | None, bytes]:
    """Send ``data`` as is; return (status, JSON body or None, raw response)."""
    with socket.create_connection(srv.server_address[:2], timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body), response
    except ValueError:
        return status, None, response


def get(srv, target: str, host: str = "127.0.0.1") -> tuple[int, dict | None, bytes]:
    return raw(srv, f"GET {target} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())


def assert_error_shape(body):
    assert body is not None and body["ok"] is False
    assert set(body["error"]) == {"type", "message"}
    assert "Traceback" not in body["error"]["message"]


@pytest.mark.parametrize("target, status", [
    ("/app.js%00.html", 404),
    ("/%00", 404),
    ("/no-such-file.js", 404),
    ("/" + "a" * 9000, 414),
    ("/api/plan?" + "x=1&" * 3000, 414),
], ids=["nul-encoded", "nul-only", "missing", "long-path", "long-query"])
def test_bad_targets_get_the_json_shape(srv, target, status):
    code, body, _ = get(srv, target)
    assert code == status
    assert_error_shape(body)


def test_http09_request_line_is_answered(srv):
    code, body, response = raw(srv, b"GET /\r\n")
    assert response.startswith(b"HTTP/1.0 400")
    assert_error_shape(body)


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /api/params HTTP/1.0\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}", 404),  # not a POST endpoint
    (b"POST /api/config HTTP/1.0\r\nHost: localhost\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"DELETE /api/params HTTP/1.0\r\nHost: localhost\r\n\r\n", 405),
    (b"BREW /pot HTTP/1.0\r\nHost: localhost\r\n\r\n", 501),
    (b"GET /api/params?model=gpt2 HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
    (b"garbage\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\n\r\n", 505),
])
def test_bad_methods_and_bodies(srv, request_bytes, status):
    code, body, _ = raw(srv, request_bytes)
    assert code == status
    assert_error_shape(body)


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8421", True), ("localhost", True), ("[::1]:80", True),
    ("evil.example", False), ("evil.example:8421", False), ("127.0.0.1.nip.io", False),
])
def test_host_header_is_checked_against_loopback_names(srv, host, ok):
    code, body, _ = get(srv, "/api/params?model=gpt2", host=host)
    if ok:
        assert code == 200 and body["total_params"] > 0
    else:
        assert code == 403
        assert_error_shape(body)


def test_host_given_to_the_server_is_accepted():
    with serve_web() as running:
        assert "evil.example" not in running.server.allowed_hosts
    s = web_server.Server(("127.0.0.1", 0), None, allowed_hosts=frozenset({"box.lan"}))
    s.server_close()
    assert "box.lan" in s.allowed_hosts


@pytest.fixture()
def secret_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "SECRET-VALUE-abc123", "hidden_size": 64}))
    return path


def test_model_paths_are_refused_by_default(srv, secret_config):
    for target in (f"/api/params?model={secret_config}", "/api/params?model=/etc/passwd",
                   f"/api/params?model={secret_config.parent}", "/api/params?model=../../config.json",
                   f"/api/sweep?command=infer&vary=model&values=gpt2,{secret_config}"):
        code, body, response = get(srv, target)
        assert code == 400, target
        assert_error_shape(body)
        assert b"SECRET" not in response


def test_allowed_paths_never_echo_file_contents(secret_config):
    with serve_web(allow_paths=True) as running:
        code, body, response = get(running.server, f"/api/params?model={secret_config}")
        assert code == 400 and body["error"]["type"] == "ConfigError"
        assert b"SECRET" not in response and b"abc123" not in response


def test_catalog_names_and_counts_still_work(srv):
    assert get(srv, "/api/params?model=meta-llama/Llama-3.1-8B")[0] == 200
    assert get(srv, "/api/params?model=7B")[0] == 200


def test_slow_client_gets_a_408(monkeypatch):
    monkeypatch.setattr(web_server.Handler, "timeout", 0.5)
    with serve_web() as running:
        code, body, _ = raw(running.server, b"GET /api/params?model=gpt2 HTTP/1.0\r\nHost: local")  # never finishes
        assert code == 408
        assert_error_shape(body)


def test_failure_inside_the_api_is_a_json_500(srv, monkeypatch):
    import vramplan.web.api as api

    def broken(path, query):
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(api, "handle", broken)
    code, body, response = get(srv, "/api/params?model=gpt2")
    assert code == 500
    assert_error_shape(body)
    assert b"internal detail" not in response and b"Traceback" not in response


def test_connections_beyond_the_limit_get_a_503(monkeypatch):
    monkeypatch.setattr(web_server.Handler, "timeout", 3)
    with serve_web() as running:
        s = running.server
        s.slots = threading.BoundedSemaphore(1)
        hold = socket.create_connection(s.server_address[:2], timeout=10)  # takes the only slot
        hold.sendall(b"GET / HTTP/1.0\r\n")
        import time

        time.sleep(0.3)
        code, body, _ = get(s, "/api/params?model=gpt2")
        assert code == 503
        assert_error_shape(body)
        hold.close()


def test_listen_backlog_is_larger_than_the_default():
    assert web_server.Server.request_queue_size >= 128
