"""Hub ids through the real ``huggingface_hub`` client against a loopback Hub: the
model-info API, HEAD + ranged GET, the HF cache, offline runs, and servers that
fail in every way a user meets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_sources_fixtures import (LLAMA, data_bytes_of_files, gptq, hub, state_dict,  # noqa: F401
                                   transformers_params, write_checkpoint, write_gguf)
from vramplan.errors import ConfigError, InputError
from vramplan.model import count_params, resolve_model

pytest.importorskip("huggingface_hub")
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def repo(hub, tmp_path):
    d = write_checkpoint(tmp_path / "src-ckpt", LLAMA, state_dict(LLAMA), shards=2)
    hub.add_dir("org/tiny", d)
    return d


def test_hub_id_reads_config_and_headers(hub, repo):
    spec = resolve_model("org/tiny")
    src = spec.checkpoint.source
    assert (src.kind, src.repo, src.revision) == ("hub", "org/tiny", hub.sha("org/tiny"))
    assert src.files == ("config.json", "model.safetensors.index.json",
                         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    assert spec.checkpoint.total_bytes == data_bytes_of_files(repo)
    assert count_params(spec).total_params == transformers_params(LLAMA)
    ranged = [r for r in hub.requests if r.startswith("GET") and "safetensors" in r and "index" not in r]
    assert ranged, hub.requests  # headers came by ranged GETs ...
    assert not any((Path(os.environ["HF_HUB_CACHE"])).rglob("model-00001-of-00002.safetensors"))  # ... no weights


def test_forms_hf_scheme_and_revision(hub, repo):
    sha = hub.sha("org/tiny")
    assert resolve_model("hf://org/tiny").checkpoint.source.revision == sha
    assert resolve_model(f"org/tiny@{sha}").checkpoint.source.revision == sha


def test_second_run_offline_from_cache_and_cold_offline_errors(hub, repo, monkeypatch):
    first = resolve_model("org/tiny")
    hub.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = resolve_model("org/tiny")
    assert again.checkpoint.total_bytes == first.checkpoint.total_bytes
    assert again.checkpoint.source.revision == first.checkpoint.source.revision
    with pytest.raises(ConfigError, match="not in the HF cache.*HF_HUB_OFFLINE"):
        resolve_model("org/other")


def test_cli_json_names_the_hub_source_and_offline_rerun(hub, repo, tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-m", "vramplan", "infer", "org/tiny", "--json"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    source = json.loads(r.stdout)["source"]
    assert source["kind"] == "hub" and source["revision"] == hub.sha("org/tiny")
    r = subprocess.run([sys.executable, "-m", "vramplan", "params", "org/tiny", "--json"], capture_output=True,
                       text=True, timeout=120, env={**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_params"] == transformers_params(LLAMA)


def test_quantized_hub_repo(hub, tmp_path):
    d = write_checkpoint(tmp_path / "q", {**LLAMA, "quantization_config": {"quant_method": "gptq", "bits": 4,
                                                                            "group_size": 32}},
                         gptq(state_dict(LLAMA)))
    hub.add_dir("org/tiny-gptq", d)
    spec = resolve_model("org/tiny-gptq")
    assert spec.checkpoint.total_bytes == data_bytes_of_files(d)


def test_gguf_tag_by_ranged_reads(hub, tmp_path):
    import gguf

    d = tmp_path / "gg"
    d.mkdir()
    (q8,) = write_gguf(d / "tiny-Q8_0.gguf", LLAMA, "Q8_0")
    write_gguf(d / "tiny-F16.gguf", LLAMA, "F16")
    hub.add_dir("org/tiny-GGUF", d)
    spec = resolve_model("org/tiny-GGUF:Q8_0")
    assert spec.checkpoint.source.files == ("tiny-Q8_0.gguf",)
    assert spec.checkpoint.total_bytes == sum(int(t.n_bytes) for t in gguf.GGUFReader(str(q8)).tensors)
    with pytest.raises(InputError, match="no GGUF file matches 'Q2_K'"):
        resolve_model("org/tiny-GGUF:Q2_K")


def test_missing_repo_one_line(hub, repo):
    with pytest.raises(ConfigError, match="no such repo") as exc:
        resolve_model("org/missing")
    assert "\n" not in str(exc.value), str(exc.value)


def test_gated_repo_says_log_in(hub, repo):
    hub.gated.add("org/tiny")
    with pytest.raises(ConfigError, match="HF_TOKEN|hf auth login") as exc:
        resolve_model("org/tiny")
    assert "\n" not in str(exc.value), str(exc.value)


@pytest.mark.parametrize("status, words", [(404, "no such repo"), (401, "HF_TOKEN"), (500, "HTTP 500")])
def test_failing_server_one_line(hub, repo, status, words):
    hub.status = status
    with pytest.raises(ConfigError, match=words) as exc:
        resolve_model("org/tiny")
    assert "\n" not in str(exc.value), str(exc.value)


def test_slow_server_times_out(hub, repo, monkeypatch):
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    hub.delay_s = 3
    start = time.monotonic()
    with pytest.raises(ConfigError, match="did not answer|failed|cannot"):
        resolve_model("org/tiny")
    assert time.monotonic() - start < 30


def test_redirect_loop(hub, repo):
    hub.redirect_loop = True
    with pytest.raises(ConfigError, match="redirect|failed") as exc:
        resolve_model("org/tiny")
    assert "\n" not in str(exc.value), str(exc.value)


def test_no_network_at_all(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ConfigError, match="cannot") as exc:
        resolve_model("org/nowhere")
    assert "\n" not in str(exc.value), str(exc.value)


def test_missing_extra_says_how_to_install(monkeypatch):
    from vramplan.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingExtraError, match=r"vramplan\[hub\]"):
        resolve_model("org/needs-hub")


def test_modelscope_without_the_package(monkeypatch):
    from vramplan.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "modelscope", None)
    monkeypatch.setitem(sys.modules, "modelscope.hub", None)
    monkeypatch.setitem(sys.modules, "modelscope.hub.file_download", None)
    with pytest.raises(MissingExtraError, match="pip install modelscope"):
        resolve_model("modelscope:Qwen/Qwen3-0.6B")


def test_gated_repo_with_hf_token(hub, repo, monkeypatch):
    hub.gated.add("org/tiny")
    monkeypatch.setenv("HF_TOKEN", "hf_loopback_token")
    assert resolve_model("org/tiny").checkpoint.source.repo == "org/tiny"


def test_gguf_with_mmproj_offline_rerun_and_python_api(hub, tmp_path, monkeypatch):
    import gguf

    from test_sources_fixtures import write_mmproj
    from vramplan.inference import InferenceSetup, estimate_inference

    d = tmp_path / "gg"
    d.mkdir()
    (q8,) = write_gguf(d / "tiny-Q8_0.gguf", LLAMA, "Q8_0")
    mm = write_mmproj(d / "mmproj-tiny-F16.gguf")
    hub.add_dir("org/tiny-GGUF", d)
    spec = resolve_model("org/tiny-GGUF:Q8_0+mmproj")
    assert spec.checkpoint.source.files == ("tiny-Q8_0.gguf", "mmproj-tiny-F16.gguf")
    assert [p.bytes for p in spec.checkpoint.extra_parts] == [sum(int(t.n_bytes) for t in gguf.GGUFReader(str(mm)).tensors)]
    est = estimate_inference("org/tiny-GGUF:Q8_0+mmproj", InferenceSetup(engine="llamacpp"))
    stored = spec.checkpoint.total_bytes
    assert est.get("weights") + sum(c.bytes for c in est.host_components if c.name == "weights") == stored
    hub.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("org/tiny-GGUF:Q8_0+mmproj").checkpoint.total_bytes == stored


def test_trace_reads_the_hub_config(hub, repo):
    from vramplan.trace.run import resolve_config

    name, config = resolve_config("org/tiny")
    assert config["hidden_size"] == LLAMA["hidden_size"] and name == "org/tiny"


def test_unreachable_hub_names_the_close_catalog_entries(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ConfigError, match="cannot connect.*the built-in catalog has 'meta-llama/llama-3.1-8b'"):
        resolve_model("meta-llama/Llama-3.1-8B-Instruct")
