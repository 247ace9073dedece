"""The web app's JSON endpoints over a real HTTP server, and the one error shape."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from vramplan.cli import main
from loopback import serve_web


@pytest.fixture(scope="module")
def base_url():
    with serve_web() as server:
        yield server.url


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_page_is_served(base_url):
    with urllib.request.urlopen(base_url + "/", timeout=10) as r:
        html = r.read().decode()
    assert "<title>vramplan" in html and "app.js" in html


def test_api_is_the_cli_json_twin(base_url, capsys):
    status, body = get(base_url + "/api/params?model=llama-3.1-8b")
    assert status == 200
    assert main(["params", "llama-3.1-8b", "--json"]) == 0
    assert body == json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path, status, text", [
    ("/api/params?model=gpt3", 400, "did you mean 'gpt2'"),
    ("/api/params?model=gpt2&bogus=1", 400, "No such option '--bogus'"),
    ("/api/nothing", 404, "expected one of"),
    ("/api/sweep?command=params&vary=batch&values=1", 400, "command: expected 'infer' or 'train'"),
    ("/api/sweep?command=train&values=1", 400, "vary: expected"),
])
def test_error_shape(base_url, path, status, text):
    code, body = get(base_url + path)
    assert code == status
    assert set(body) == {"ok", "error"} and body["ok"] is False
    assert set(body["error"]) == {"type", "message"} and text in body["error"]["message"]


def test_models_endpoint(base_url):
    status, body = get(base_url + "/api/models")
    assert status == 200 and any(m["slug"] == "gpt2" for m in body["models"])
