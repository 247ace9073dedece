"""Gemma 4 text: per-layer head widths and KV heads, KV sharing across layers, keys
used as values and per-layer input embeddings, against transformers building the same
model (parameters) and running it on the CPU (the cache it keeps, to the byte)."""

from __future__ import annotations

import pytest

from oracle_hf import hf_config, kv_bytes_after_forward, model_from_config
from vramplan.errors import ConfigError
from vramplan.memory.kv_cache import kv_bytes_per_token, kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

BASE = dict(hidden_size=64, vocab_size=100, vocab_size_per_layer_input=100, hidden_size_per_layer_input=8,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=96, sliding_window=4,
            num_hidden_layers=6, layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2)
TINY = {
    "plain": dict(BASE),
    "kv_shared_double_mlp": dict(BASE, num_kv_shared_layers=3, use_double_wide_mlp=True),
    "k_eq_v_global_heads": dict(BASE, attention_k_eq_v=True, num_global_key_value_heads=1, global_head_dim=32),
    "no_per_layer_inputs": dict(BASE, hidden_size_per_layer_input=0),
    "moe_block": dict(BASE, enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32),
}


def _config(variant: str):
    return hf_config("gemma4_text", **TINY[variant])


@pytest.mark.exact
@pytest.mark.parametrize("variant", sorted(TINY))
def test_parameters_equal_the_meta_build(variant):
    pytest.importorskip("torch")

    config = _config(variant)
    model = model_from_config(config, "meta")
    spec = spec_from_config(config.to_dict(), complete=False)
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters())


@pytest.mark.exact
@pytest.mark.parametrize("variant", sorted(TINY))
@pytest.mark.parametrize("tokens", [3, 7])
def test_cache_equals_transformers_cache_after_a_forward(variant, tokens):
    """7 tokens overflow the 4-token sliding window (sliding layers hold the window),
    3 do not."""
    pytest.importorskip("torch")

    config = _config(variant)
    measured = kv_bytes_after_forward(config, tokens)
    spec = spec_from_config(config.to_dict(), complete=False)
    # transformers' DynamicSlidingWindowLayer stores window - 1 tokens once the prompt overflows the window
    assert kv_cache_bytes(spec, context_tokens=tokens, batch=2, dtype="bf16", sliding_extra_tokens=-1) == measured


def test_kv_shared_layers_cache_nothing_and_full_layers_use_their_own_width():
    spec = spec_from_config({"model_type": "gemma4_text", **TINY["kv_shared_double_mlp"],
                             "global_head_dim": 32}, complete=False)
    # layers 0-2 own a cache: two sliding (2 heads x 16) and one full (2 heads x 32); K and V, 2 bytes
    assert kv_bytes_per_token(spec, "bf16") == 2 * (2 * 2 * 16 * 2) + 2 * 2 * 32 * 2
    assert spec.layer_intermediate_sizes == (96, 96, 96, 192, 192, 192)


@pytest.mark.parametrize("bad, field", [
    ({"per_layer_config": {"9": {"head_dim": 32}}}, "per_layer_config"),
    ({"per_layer_config": {"2": {"head_dim": 0}}}, "head_dim"),
    ({"per_layer_config": {"2": {"num_key_value_heads": 3}}}, "num_key_value_heads"),
    ({"num_kv_shared_layers": 7}, "num_kv_shared_layers"),
    ({"enable_moe_block": True, "top_k_experts": 2, "moe_intermediate_size": 32}, "num_experts"),
    ({"num_experts": 4}, "num_experts"),
])
def test_bad_gemma4_fields_are_refused_naming_the_field(bad, field):
    with pytest.raises(ConfigError) as err:
        spec_from_config({"model_type": "gemma4_text", **BASE, **bad}, complete=False)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
