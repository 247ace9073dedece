"""The endpoints behind the page's pickers and buttons, over a real HTTP server:
weight formats, plan exports, pasted config.json files."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from loopback import serve_web
from tests.conftest import catalog_config
from vramplan.cli import main
from vramplan.web.extras import MAX_CONFIG_BYTES


@pytest.fixture(scope="module")
def base_url():
    with serve_web() as server:
        yield server.url


def call(url, body: bytes | None = None):
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def cli_out(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_formats_are_every_format_the_cli_lists(base_url, capsys):
    status, body = call(base_url + "/api/formats")
    assert status == 200
    names = [f["name"] for f in body["formats"]]
    listed = cli_out(capsys, "infer", "--list-formats")
    for name in names:
        assert name in listed
    assert {"nf4-dq", "fp8", "Q4_K_M", "IQ4_XS"} <= set(names)
    assert all(f["bits_per_weight"] > 0 for f in body["formats"])


@pytest.mark.parametrize("engine, argv", [
    ("deepspeed", ["--gpu", "h100", "--max-gpus", "8"]),
    ("fsdp", ["--gpu", "h100", "--max-gpus", "8", "--fsdp", "full_shard"]),
    ("megatron", ["--gpu", "h100", "--max-gpus", "8", "--zero", "1"]),
    ("vllm", ["--gpu", "h100", "--max-gpus", "8", "--infer"]),
    ("llamacpp", ["--gpu", "rtx-4090", "--max-gpus", "1", "--infer"]),
])
def test_export_is_the_cli_export(base_url, capsys, engine, argv):
    query = {"model": "llama-3.1-8b", "engine": engine}
    flags = iter(argv)
    for flag in flags:
        key = flag[2:]
        query[key] = "true" if key == "infer" else next(flags)
    status, body = call(base_url + "/api/export?" + urllib.parse.urlencode(query))
    assert status == 200, body
    expected = cli_out(capsys, "plan", "llama-3.1-8b", *argv, "--export", engine)
    assert body["text"].strip() == expected.strip()
    assert body["filename"] and body["media_type"]


def test_export_errors_name_the_field(base_url):
    status, body = call(base_url + "/api/export?model=llama-3.1-8b&gpu=h100&engine=nope")
    assert status == 400 and body["error"]["message"].startswith("engine: expected one of")
    status, body = call(base_url + "/api/export?model=llama-3.1-70b&gpu=rtx-4090&max-gpus=1&engine=deepspeed")
    assert status == 400 and "no layout fits" in body["error"]["message"]


def test_pasted_config_gives_the_catalog_numbers(base_url, capsys):
    cfg = catalog_config("mixtral-8x7b")
    status, body = call(base_url + "/api/config", json.dumps(cfg).encode())
    assert status == 200, body
    name = body["model"]
    assert name.startswith("pasted-") and body["attention"] and body["layers"] == cfg["num_hidden_layers"]
    # the same text pasted again is the same model; key order does not matter
    again = json.dumps(dict(reversed(list(cfg.items())))).encode()
    assert call(base_url + "/api/config", again)[1]["model"] == name
    status, est = call(base_url + f"/api/infer?model={name}&gpu=h100&context=4096")
    assert status == 200
    expected = json.loads(cli_out(capsys, "infer", "mixtral-8x7b", "--gpu", "h100", "--context", "4096", "--json"))
    assert est["total_bytes"] == expected["total_bytes"]
    status, counted = call(base_url + f"/api/params?model={name}")
    assert counted["total_params"] == body["total_params"]


@pytest.mark.parametrize("body, status, text", [
    (b"{", 400, "config.json: malformed JSON at line 1"),
    (b"[1, 2]", 400, "config.json: expected a JSON object, got list"),
    (b'{"model_type": "nonesuch"}', 400, "model_type: 'nonesuch' is not supported"),
    (b"\xff\xfe", 400, "config.json: not UTF-8 text"),
])
def test_bad_pasted_config(base_url, body, status, text):
    code, answer = call(base_url + "/api/config", body)
    assert code == status and set(answer) == {"ok", "error"} and text in answer["error"]["message"]


def test_pasted_config_size_limit_and_unknown_post(base_url):
    code, answer = call(base_url + "/api/config", b" " * (MAX_CONFIG_BYTES + 1))
    assert code == 413 and "expected at most" in answer["error"]["message"]
    code, answer = call(base_url + "/api/train", b"{}")
    assert code == 404 and "/api/config" in answer["error"]["message"]


def test_gguf_header_gives_the_numbers_of_the_file(base_url, tmp_path, capsys):
    from tests.test_sources_fixtures import LLAMA, write_gguf

    (path,) = write_gguf(tmp_path / "tiny-Q8_0.gguf", LLAMA, "Q8_0")
    data = path.read_bytes()
    url = base_url + f"/api/gguf?file_bytes={len(data)}&name={path.name}"
    # too few bytes: the answer says how many the header needs
    code, answer = call(url, data[:64])
    assert code == 400 and answer["error"]["type"] == "NeedMoreBytes"
    size = 64
    while code == 400 and answer["error"]["type"] == "NeedMoreBytes":  # as the page does: at least double
        assert answer["error"]["needed"] > size
        size = min(max(answer["error"]["needed"], 2 * size), len(data))
        code, answer = call(url, data[:size])
    model = answer
    assert code == 200, model
    assert size < len(data)  # the header only, not the weights
    assert model["model"].startswith("pasted-") and model["layers"] == LLAMA["num_hidden_layers"]
    status, est = call(base_url + f"/api/infer?model={model['model']}&context=128")
    assert status == 200, est
    expected = json.loads(cli_out(capsys, "infer", str(path), "--context", "128", "--json"))
    assert est["total_bytes"] == expected["total_bytes"]
    assert est["details"]["weights_format"] == expected["details"]["weights_format"]


@pytest.mark.parametrize("query, body, text", [
    ("file_bytes=x", b"GGUF", "file_bytes: expected the GGUF file's size"),
    ("file_bytes=100", b"NOPE" + bytes(20), "not a GGUF file"),
])
def test_bad_gguf_header(base_url, query, body, text):
    code, answer = call(base_url + f"/api/gguf?{query}", body)
    assert code == 400 and text in answer["error"]["message"]
