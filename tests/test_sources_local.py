"""Local checkpoint directories and GGUF files: exact stored bytes, parameter counts
against transformers' own build, parts the architecture does not explain, and every
command taking the same MODEL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_sources_fixtures import (GPT_OSS, LLAMA, awq, bnb4, data_bytes_of_files, fp8, gptq, mxfp4_experts,
                                   state_dict, transformers_params, write_checkpoint, write_gguf, write_mmproj)
from vramplan.model import count_params, resolve_model

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vramplan", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": SRC, **(env or {})})


@pytest.mark.parametrize("config", [LLAMA, {**LLAMA, "tie_word_embeddings": True}, GPT_OSS],
                         ids=["llama", "llama-tied", "gpt-oss"])
@pytest.mark.parametrize("shards", [1, 3])
def test_checkpoint_dir_exact_bytes_and_params(tmp_path, config, shards):
    d = write_checkpoint(tmp_path / "ckpt", config, state_dict(config), shards=shards)
    spec = resolve_model(str(d))
    stored = spec.checkpoint
    assert stored is not None and stored.source.kind == "local"
    assert stored.total_bytes == data_bytes_of_files(d)
    assert stored.extra_parts == ()
    assert count_params(spec).total_params == transformers_params(config) == stored.explained_elements
    assert not [n for n in spec.notes if "disagree" in n]
    if shards > 1:
        assert stored.source.files[:2] == ("config.json", "model.safetensors.index.json")
        assert len(stored.source.files) == 2 + shards


@pytest.mark.parametrize("layout", [gptq, awq, bnb4, fp8], ids=["gptq", "awq", "bnb-4bit", "fp8"])
def test_quantized_layouts_weigh_what_they_store(tmp_path, layout):
    d = write_checkpoint(tmp_path / layout.__name__, LLAMA, layout(state_dict(LLAMA)))
    spec = resolve_model(str(d))
    assert spec.checkpoint.total_bytes == data_bytes_of_files(d)
    assert spec.checkpoint.packed or layout is fp8
    from vramplan.inference import InferenceSetup, estimate_inference

    est = estimate_inference(spec, InferenceSetup())
    assert est.get("weights") == data_bytes_of_files(d)


def test_mxfp4_experts_weigh_what_they_store(tmp_path):
    d = write_checkpoint(tmp_path / "mxfp4", GPT_OSS, mxfp4_experts(state_dict(GPT_OSS)))
    spec = resolve_model(str(d))
    assert spec.checkpoint.total_bytes == data_bytes_of_files(d)
    assert spec.checkpoint.extra_parts == ()
    assert spec.checkpoint.packed


def test_parts_the_architecture_does_not_explain(tmp_path):
    import torch

    sd = state_dict(LLAMA)
    sd["model.vision_tower.patch_embed.weight"] = torch.zeros(64, 48, dtype=torch.bfloat16)
    sd["model.layers.2.eh_proj.weight"] = torch.zeros(64, 128, dtype=torch.bfloat16)  # an MTP block past the last
    d = write_checkpoint(tmp_path / "extra", LLAMA, sd)
    spec = resolve_model(str(d))
    parts = {p.name: p.bytes for p in spec.checkpoint.extra_parts}
    assert parts == {"model.vision_tower": 64 * 48 * 2, "model.layers.2+": 64 * 128 * 2}
    assert spec.checkpoint.total_bytes == data_bytes_of_files(d)
    assert any("model.vision_tower" in n for n in spec.notes)
    from vramplan.inference import InferenceSetup, estimate_inference

    est = estimate_inference(spec, InferenceSetup())
    names = {c.name: c.bytes for c in est.components}
    assert names["weights/model.vision_tower"] == 64 * 48 * 2
    assert est.get("weights") == data_bytes_of_files(d)


def test_param_disagreement_is_said(tmp_path):
    cfg = {**LLAMA, "intermediate_size": 96}  # the config says 96, the tensors are 128 wide
    d = write_checkpoint(tmp_path / "bad", cfg, state_dict(LLAMA))
    spec = resolve_model(str(d))
    assert any("disagree" in n for n in spec.notes)


def test_gguf_file_bytes_and_params(tmp_path):
    import gguf

    (p,) = write_gguf(tmp_path / "m-Q8_0.gguf", LLAMA, "Q8_0")
    spec = resolve_model(str(p))
    reader = gguf.GGUFReader(str(p))
    assert spec.checkpoint.total_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert spec.checkpoint.num_tensors == len(reader.tensors)
    assert dict(spec.checkpoint.bytes_by_dtype).keys() == {t.tensor_type.name for t in reader.tensors}
    assert count_params(spec).total_params == transformers_params(LLAMA) == spec.checkpoint.explained_elements
    assert spec.checkpoint.source.kind == "gguf"


def test_gguf_split_and_mmproj(tmp_path):
    import gguf

    paths = write_gguf(tmp_path / "m.gguf", LLAMA, "Q8_0", split=3)
    mm = write_mmproj(tmp_path / "mmproj-m-f16.gguf")
    spec = resolve_model(f"{paths[1]},{mm}")
    expected = sum(int(t.n_bytes) for p in paths for t in gguf.GGUFReader(str(p)).tensors)
    mm_bytes = sum(int(t.n_bytes) for t in gguf.GGUFReader(str(mm)).tensors)
    assert spec.checkpoint.explained_bytes == expected
    assert [(x.name, x.bytes) for x in spec.checkpoint.extra_parts] == [("mmproj", mm_bytes)]
    assert len(spec.checkpoint.source.files) == 4


def test_llamacpp_uses_the_stored_gguf_bytes(tmp_path):
    (p,) = write_gguf(tmp_path / "m-Q8_0.gguf", LLAMA, "Q8_0")
    from vramplan.inference import InferenceSetup, estimate_inference

    spec = resolve_model(str(p))
    est = estimate_inference(spec, InferenceSetup(engine="llamacpp"))
    assert est.get("weights") + sum(c.bytes for c in est.host_components if c.name == "weights") \
        == spec.checkpoint.total_bytes


def test_ggml_type_sizes_match_the_gguf_package():
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    from vramplan.sources.gguf_header import GGML_TYPE_IDS

    for type_id, (name, block, nbytes) in GGML_TYPE_IDS.items():
        t = GGMLQuantizationType(type_id)
        assert t.name == name
        assert GGML_QUANT_SIZES[t] == (block, nbytes)


@pytest.mark.parametrize("command", [["params"], ["infer"], ["train"], ["plan", "--gpu", "h100"]])
def test_every_command_takes_a_checkpoint_dir_and_names_the_source(tmp_path, command):
    d = write_checkpoint(tmp_path / "ckpt", LLAMA, state_dict(LLAMA), shards=2)
    r = _cli(*command, str(d), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["source"]["kind"] == "local" and data["source"]["path"] == str(d)
    assert data["source"]["files"][1] == "model.safetensors.index.json"


def test_every_command_takes_a_gguf(tmp_path):
    (p,) = write_gguf(tmp_path / "m-Q8_0.gguf", LLAMA, "Q8_0")
    for command in (["params"], ["infer", "--engine", "llamacpp"]):
        r = _cli(*command, str(p), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["source"]["kind"] == "gguf"


def test_models_search_stays_offline():
    r = _cli("models", "--search", "llama", env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0 and "llama" in r.stdout.lower()


def test_catalog_hub_ids_stay_offline():
    spec = resolve_model("meta-llama/Llama-3.1-8B")
    assert spec.checkpoint is None and spec.num_layers == 32


def test_a_method_the_format_table_does_not_know_weighs_what_it_stores(tmp_path):
    import torch

    sd = state_dict(LLAMA)
    for n in [n for n in sd if ".layers." in n and n.endswith("proj.weight")]:
        o, i = sd[n].shape
        sd[n] = torch.zeros(o * i // 4, dtype=torch.uint8)  # a 2-bit packing
        sd[n.replace(".weight", ".meta")] = torch.zeros(o, 2, dtype=torch.float16)
    cfg = {**LLAMA, "quantization_config": {"quant_method": "hqq", "nbits": 2}}
    d = write_checkpoint(tmp_path / "hqq", cfg, sd)
    spec = resolve_model(str(d))
    from vramplan.inference import InferenceSetup, estimate_inference

    est = estimate_inference(spec, InferenceSetup())
    assert est.get("weights") == data_bytes_of_files(d)
    assert est.details["weights_format"].startswith("as-stored:hqq")
    with pytest.raises(Exception, match="quant_method"):  # the architecture alone cannot price it
        resolve_model(str(d / "config.json")) and estimate_inference(str(d / "config.json"), InferenceSetup())


@pytest.mark.exact
def test_trace_takes_a_gguf(tmp_path):
    """The trace builds the real model from the config the GGUF metadata maps to."""
    (g,) = write_gguf(tmp_path / "m-Q8_0.gguf", LLAMA, "Q8_0")
    r = _cli("trace", str(g), "--seq", "16", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["total_bytes"] > 0
