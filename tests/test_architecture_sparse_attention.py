"""DeepSeek sparse attention (DeepSeek-V3.2, GLM-5): the lightning indexer's parameters
and its key cache, against transformers building and running small models of both
families on the CPU (parameters to the parameter, cache to the byte)."""

from __future__ import annotations

import warnings

import pytest

from oracle_hf import build_model, cache_bytes, forward_cache
from vramplan.errors import ConfigError
from vramplan.memory.kv_cache import indexer_bytes_per_token_per_layer, kv_bytes_per_token, kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

_MLA = dict(hidden_size=64, vocab_size=100, num_attention_heads=4, num_key_value_heads=4, intermediate_size=96,
            moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
            n_group=1, topk_group=1, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, qk_nope_head_dim=16,
            v_head_dim=16, index_n_heads=2, index_head_dim=16, index_topk=4, first_k_dense_replace=1)
TINY = {
    "deepseek_v32": dict(_MLA, num_hidden_layers=3),
    "glm_moe_dsa": dict(_MLA, num_hidden_layers=4, indexer_types=["full", "shared", "full", "shared"]),
}



@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_parameters_equal_the_meta_build(model_type):
    config, model = build_model(model_type, "meta", **TINY[model_type])
    spec = spec_from_config(config.to_dict(), complete=False)
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters())
    assert spec.num_indexer_layers == (2 if model_type == "glm_moe_dsa" else 3)


@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_cache_equals_transformers_cache_after_a_forward(model_type):
    pytest.importorskip("torch")

    config, model = build_model(model_type, "cpu", **TINY[model_type])
    batch, tokens = 2, 7
    cache = forward_cache(model, batch, tokens)
    measured = cache_bytes(cache, min_dim=3)
    spec = spec_from_config(config.to_dict(), complete=False)
    # transformers 5 caches the MLA latent (kv_lora_rank + qk_rope_head_dim) and the indexer keys
    assert kv_cache_bytes(spec, context_tokens=tokens, batch=batch, dtype="bf16", mla_cache="latent") == measured


def test_indexer_keys_add_one_row_per_token_in_indexer_layers():
    cfg = {"model_type": "glm_moe_dsa", **TINY["glm_moe_dsa"]}
    spec = spec_from_config(cfg, complete=False)
    assert indexer_bytes_per_token_per_layer(spec, "bf16") == 16 * 2
    latent = (16 + 8) * 2  # kv_lora_rank + qk_rope_head_dim, bf16
    assert kv_bytes_per_token(spec, "bf16") == 4 * latent + 2 * 16 * 2
    assert kv_cache_bytes(spec, context_tokens=100, batch=3, dtype="bf16") == 3 * 100 * (4 * latent + 2 * 32)


def test_glm5_indexer_schedule_without_transformers_follows_its_config_class():
    """GLM-5 configs give ``index_topk_freq`` / ``index_skip_topk_offset`` instead of
    ``indexer_types``: the reader derives the same schedule as transformers."""
    transformers = pytest.importorskip("transformers")
    kwargs = {k: v for k, v in TINY["glm_moe_dsa"].items() if k != "indexer_types"}
    kwargs.update(num_hidden_layers=9, index_topk_freq=3, index_skip_topk_offset=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = transformers.AutoConfig.for_model("glm_moe_dsa", **kwargs).indexer_types
    spec = spec_from_config({"model_type": "glm_moe_dsa", **kwargs}, complete=False)
    assert spec.layer_indexers == tuple(k == "full" for k in expected)
    assert 0 < spec.num_indexer_layers < 9


@pytest.mark.parametrize("bad, field", [
    ({"indexer_types": ["full", "sometimes", "full", "full"]}, "indexer_types"),
    ({"indexer_types": ["full"]}, "indexer_types"),
    ({"index_n_heads": 0}, "index_n_heads"),
    ({"index_head_dim": "128"}, "index_head_dim"),
])
def test_bad_indexer_fields_are_refused_naming_the_field(bad, field):
    cfg = {"model_type": "glm_moe_dsa", **TINY["glm_moe_dsa"], **bad}
    with pytest.raises(ConfigError) as err:
        spec_from_config(cfg, complete=False)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
