"""The custom-architecture flags describe non-Llama layouts exactly: parameter counts
equal what transformers builds for the same architecture (meta device)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vramplan.errors import InputError
from vramplan.model import count_params, custom_spec

FALCON_7B_FLAGS = ["--layers", "32", "--hidden", "4544", "--heads", "71", "--kv-heads", "1", "--intermediate",
                   "18176", "--vocab", "65024", "--mlp", "plain", "--norm", "layernorm", "--parallel-block",
                   "--tie-embeddings"]


def _meta_params(model_type: str, **config) -> int:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AutoConfig.for_model(model_type, **config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.exact
def test_falcon_7b_from_flags_matches_transformers():
    # tiiuae/falcon-7b config.json: 32 layers, hidden 4544, 71 heads, multi_query,
    # parallel_attn, no bias, vocab 65024; MLP 4 x hidden; tied head (modeling_falcon.py).
    spec = custom_spec(layers=32, hidden=4544, heads=71, kv_heads=1, intermediate=18176, vocab=65024,
                       mlp="plain", norm="layernorm", parallel_block=True, tied=True)
    expected = _meta_params("falcon", hidden_size=4544, num_hidden_layers=32, num_attention_heads=71,
                            multi_query=True, parallel_attn=True, bias=False, vocab_size=65024,
                            new_decoder_architecture=False)
    assert count_params(spec).total_params == expected == 6_921_720_704


@pytest.mark.exact
def test_gpt2_from_flags_matches_transformers():
    spec = custom_spec(layers=12, hidden=768, heads=12, vocab=50257, mlp="plain", norm="layernorm", bias="all",
                       position="learned", max_positions=1024, tied=True)
    assert count_params(spec).total_params == _meta_params("gpt2")


@pytest.mark.exact
def test_qwen2_bias_and_stablelm_layernorm_from_flags():
    spec = custom_spec(layers=2, hidden=64, heads=4, kv_heads=2, intermediate=96, vocab=100, bias="qkv")
    assert count_params(spec).total_params == _meta_params(
        "qwen2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=96, vocab_size=100, tie_word_embeddings=False)
    spec = custom_spec(layers=2, hidden=64, heads=4, intermediate=96, vocab=100, norm="layernorm")
    assert count_params(spec).total_params == _meta_params(
        "stablelm", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=96, vocab_size=100, tie_word_embeddings=False)


def test_cli_flags_describe_falcon(tmp_path):
    import os

    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "src")}
    out = subprocess.run([sys.executable, "-m", "vramplan", "params", *FALCON_7B_FLAGS, "--json"],
                         capture_output=True, text=True, env=env)
    if out.returncode == 2 and "--json" in out.stderr:
        out = subprocess.run([sys.executable, "-m", "vramplan", "params", *FALCON_7B_FLAGS],
                             capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "6921720704" in out.stdout.replace(",", "")


@pytest.mark.parametrize("kwargs, message", [
    (dict(norm="batchnorm"), "norm: expected one of rmsnorm, layernorm"),
    (dict(bias="some"), "bias: expected one of none, qkv, attention, all"),
    (dict(position="sinusoid"), "position: expected one of rotary, alibi, learned"),
])
def test_bad_structure_values(kwargs, message):
    with pytest.raises(InputError, match=message):
        custom_spec(layers=2, hidden=64, heads=4, **kwargs)


def test_plain_mlp_defaults_to_four_h():
    assert custom_spec(layers=2, hidden=64, heads=4, mlp="plain").intermediate_size == 256
