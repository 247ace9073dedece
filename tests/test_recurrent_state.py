"""Recurrent state and KV of hybrid models against a real transformers cache: a CPU
forward of a small model of each family, then every tensor the cache holds is summed,
to the byte, and compared with vramplan's KV-cache term (attention KV + recurrent state)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle_hf import build_model, cache_bytes, forward_cache, hf_config, model_from_config
from vramplan.memory.kv_cache import kv_bytes_per_token, kv_cache_bytes
from vramplan.memory.recurrent_state import recurrent_state_bytes
from vramplan.model.hf_config import spec_from_config

TINY = {
    "mamba": dict(hidden_size=64, num_hidden_layers=2, vocab_size=100, state_size=8, intermediate_size=128,
                  time_step_rank=8),
    "mamba2": dict(hidden_size=64, num_hidden_layers=2, vocab_size=100, state_size=8, num_heads=8, head_dim=16,
                   n_groups=2, expand=2),
    "qwen3_next": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, intermediate_size=96, moe_intermediate_size=32,
                       shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                       linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                       linear_value_head_dim=8, linear_conv_kernel_dim=4,
                       layer_types=["linear_attention"] * 3 + ["full_attention"]),
    "qwen3_5_text": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, intermediate_size=96, linear_num_key_heads=2,
                         linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=8,
                         linear_conv_kernel_dim=4, layer_types=["linear_attention"] * 3 + ["full_attention"]),
    "jamba": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, num_experts=4, num_experts_per_tok=2, attn_layer_period=4,
                  attn_layer_offset=2, expert_layer_period=2, expert_layer_offset=1, mamba_d_state=8,
                  mamba_dt_rank=8, use_mamba_kernels=False),
    "bamba": dict(hidden_size=64, num_hidden_layers=3, vocab_size=100, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, attn_layer_indices=[1], mamba_n_heads=8, mamba_d_head=16, mamba_n_groups=1,
                  mamba_d_state=8, mamba_expand=2),
    "granitemoehybrid": dict(hidden_size=64, num_hidden_layers=3, vocab_size=100, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=96, num_local_experts=4,
                             num_experts_per_tok=2, shared_intermediate_size=32,
                             layer_types=["mamba", "attention", "mamba"], mamba_n_heads=8, mamba_d_head=16,
                             mamba_n_groups=1, mamba_d_state=8, mamba_expand=2),
    "lfm2": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=96, layer_types=["conv", "conv", "full_attention", "conv"], conv_L_cache=3),
    "minimax": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=96, num_local_experts=4, num_experts_per_tok=2, block_size=4,
                    layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"]),
    "nemotron_h": dict(hidden_size=64, vocab_size=100, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       intermediate_size=96, hybrid_override_pattern="M-M*-", mamba_num_heads=8, mamba_head_dim=16,
                       n_groups=2, ssm_state_size=8, expand=2),
}


@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_kv_plus_state_equals_transformers_cache(model_type):
    pytest.importorskip("torch")
    config = hf_config(model_type, skip_unknown=True, **TINY[model_type])
    batch, tokens = 2, 7
    measured = cache_bytes(forward_cache(model_from_config(config), batch, tokens))
    spec = spec_from_config(config.to_dict(), complete=False)
    assert spec.is_hybrid
    assert kv_cache_bytes(spec, context_tokens=tokens, batch=batch, dtype="bf16") == measured


def test_state_is_fixed_per_sequence_and_kv_counts_attention_layers_only():
    cfg = {"model_type": "qwen3_next", **TINY["qwen3_next"]}
    spec = spec_from_config(cfg, complete=False)
    state = recurrent_state_bytes(spec, batch=1)
    assert state > 0
    # one attention layer of 2 KV heads x 16 dims, K and V, bf16
    assert kv_bytes_per_token(spec, "bf16") == 1 * 2 * 2 * 16 * 2
    short = kv_cache_bytes(spec, context_tokens=10, batch=3, dtype="bf16")
    long = kv_cache_bytes(spec, context_tokens=1000, batch=3, dtype="bf16")
    assert long - short == 990 * 3 * kv_bytes_per_token(spec, "bf16")
    assert recurrent_state_bytes(spec, batch=3) == 3 * state


def test_pure_mamba_has_no_kv_growth():
    cfg = {"model_type": "mamba", **TINY["mamba"]}
    spec = spec_from_config(cfg, complete=False)
    assert kv_bytes_per_token(spec, "bf16") == 0
    assert kv_cache_bytes(spec, context_tokens=10, batch=1) == kv_cache_bytes(spec, context_tokens=100_000, batch=1)


@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_hybrid_parameters_equal_the_meta_build(model_type):
    pytest.importorskip("torch")
    config, model = build_model(model_type, "meta", **TINY[model_type])
    from vramplan.model import count_params

    ours = count_params(spec_from_config(config.to_dict(), complete=False)).total_params
    assert ours == sum(p.numel() for p in model.parameters())


def _specs():
    from conftest import catalog_config, catalog_slugs

    specs = [spec_from_config(catalog_config(s), name=s, complete=False) for s in catalog_slugs()]
    specs += [spec_from_config({"model_type": t, **cfg}, name=t, complete=False) for t, cfg in TINY.items()]
    return specs


SPECS = _specs()


@settings(max_examples=60, deadline=None)
@given(index=st.integers(0, len(SPECS) - 1), context=st.integers(1, 200_000), more=st.integers(0, 50_000),
       batch=st.integers(1, 64), extra=st.integers(0, 8))
def test_more_context_or_batch_never_needs_less_cache(index, context, more, batch, extra):
    spec = SPECS[index]
    base = kv_cache_bytes(spec, context_tokens=context, batch=batch, dtype="bf16")
    assert kv_cache_bytes(spec, context_tokens=context + more, batch=batch, dtype="bf16") >= base
    assert kv_cache_bytes(spec, context_tokens=context, batch=batch + extra, dtype="bf16") >= base
    assert base >= recurrent_state_bytes(spec, batch=batch)
