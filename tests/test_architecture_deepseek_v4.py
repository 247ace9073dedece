"""DeepSeek-V4: compressed attention (a shared key=value head over a sliding window plus
compressed KV entries, an indexer over its own compressed keys in the compressed-sparse
layers), grouped output projections, hash-routed and top-k MoE, hyper-connections with
residual mixing, against transformers building a small model (parameters to the
parameter) and running it on the CPU (every cache tensor, to the byte)."""

from __future__ import annotations

import pytest

from oracle_hf import build_model, cache_bytes, forward_cache
from vramplan.errors import ConfigError
from vramplan.memory.kv_cache import kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

TINY = dict(hidden_size=64, vocab_size=100, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
            head_dim=32, q_lora_rank=24, moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2,
            n_shared_experts=1, o_groups=2, o_lora_rank=16, index_n_heads=2, index_head_dim=16, index_topk=4,
            sliding_window=4, hc_mult=2,
            compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
            layer_types=["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
                         "compressed_sparse_attention"],
            mlp_layer_types=["hash_moe", "moe", "moe", "moe"], pad_token_id=0, bos_token_id=1, eos_token_id=2)



@pytest.mark.exact
@pytest.mark.parametrize("overrides", [{}, {"layer_types": None, "mlp_layer_types": None, "num_hidden_layers": 5}],
                         ids=["mixed", "default"])
def test_parameters_equal_the_meta_build(overrides):
    config, model = build_model("deepseek_v4", "meta", **{**TINY, **overrides})
    spec = spec_from_config(config.to_dict(), complete=False)
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters())


@pytest.mark.exact
@pytest.mark.parametrize("tokens", [3, 7, 15, 23])
def test_cache_equals_transformers_cache_after_a_forward(tokens):
    """Inside and past the 4-token window, below and past each compression rate (4 and 8),
    at the token counts where the compressors' partial windows are full (``T = -1 mod r``),
    which is what the estimate reserves."""
    pytest.importorskip("torch")

    config, model = build_model("deepseek_v4", "cpu", **TINY)
    batch = 2
    measured = cache_bytes(forward_cache(model, batch, tokens), min_dim=2)
    spec = spec_from_config(config.to_dict(), complete=False)
    # the window cache stores window - 1 tokens once the prompt overflows it (DynamicSlidingWindowLayer)
    assert kv_cache_bytes(spec, context_tokens=tokens, batch=batch, dtype="bf16", sliding_extra_tokens=-1) == measured


def test_flash_published_size_without_transformers():
    # DeepSeek-V4-Flash: 284B total parameters (DeepSeek-V4 technical report); the config class defaults
    spec = spec_from_config({"model_type": "deepseek_v4", "hidden_size": 4096, "num_hidden_layers": 43,
                             "num_attention_heads": 64, "q_lora_rank": 1024, "moe_intermediate_size": 2048,
                             "n_routed_experts": 256, "num_experts_per_tok": 6, "n_shared_experts": 1,
                             "vocab_size": 129280, "index_n_heads": 64, "index_head_dim": 128}, complete=False)
    assert 284.0e9 < count_params(spec).total_params < 284.5e9


@pytest.mark.parametrize("bad, field", [
    ({"layer_types": ["sliding_attention"]}, "layer_types"),
    ({"compress_rates": 4}, "compress_rates"),
    ({"o_groups": 3}, "o_groups"),
])
def test_bad_fields_are_refused_naming_the_field(bad, field):
    with pytest.raises(ConfigError) as err:
        spec_from_config({"model_type": "deepseek_v4", **TINY, **bad}, complete=False)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


@pytest.mark.parametrize("tokens", range(1, 40))
def test_more_context_never_costs_less(tokens):
    spec = spec_from_config({"model_type": "deepseek_v4", **TINY}, complete=False)
    assert kv_cache_bytes(spec, context_tokens=tokens + 1, batch=1) >= kv_cache_bytes(spec, context_tokens=tokens,
                                                                                         batch=1)
