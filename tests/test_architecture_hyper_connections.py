"""Hunyuan v4 (hyper-connections, gated MLA with sinks, a DSA indexer in some layers)
and A.X K2 (MLA with a fused query/gate projection, gated RMSNorms, a DSA indexer in
every layer), against transformers building small models of both families (parameters
to the parameter) and running them on the CPU (the cache, to the byte)."""

from __future__ import annotations

import pytest

from oracle_hf import build_model, cache_bytes, forward_cache
from vramplan.errors import ConfigError
from vramplan.memory.kv_cache import kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

_MLA = dict(hidden_size=64, vocab_size=100, num_attention_heads=4, num_key_value_heads=4, intermediate_size=96,
            moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
            kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
            index_n_heads=2, index_head_dim=16, index_topk=4, pad_token_id=0, bos_token_id=1, eos_token_id=2)
TINY = {
    "hy_v4": dict(_MLA, num_hidden_layers=6, hc_mult=3, v_head_dim=24),
    "axk2": dict(_MLA, num_hidden_layers=3, gated_norm_rank=4),
}
INDEXER_LAYERS = {"hy_v4": 3, "axk2": 3}  # hy_v4 default schedule: layer 0 and every fourth from layer 1 (0, 1, 5)



@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_parameters_equal_the_meta_build(model_type):
    config, model = build_model(model_type, "meta", **TINY[model_type])
    spec = spec_from_config(config.to_dict(), complete=False)
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters())
    assert spec.num_indexer_layers == INDEXER_LAYERS[model_type]


@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_cache_equals_transformers_cache_after_a_forward(model_type):
    pytest.importorskip("torch")

    config, model = build_model(model_type, "cpu", **TINY[model_type])
    batch, tokens = 2, 7
    cache = forward_cache(model, batch, tokens)
    measured = cache_bytes(cache, min_dim=3)
    spec = spec_from_config(config.to_dict(), complete=False)
    assert kv_cache_bytes(spec, context_tokens=tokens, batch=batch, dtype="bf16", mla_cache="latent") == measured


def test_hy_v4_without_transformers_follows_its_config_class_schedule():
    spec = spec_from_config({"model_type": "hy_v4", **TINY["hy_v4"], "num_hidden_layers": 10}, complete=False)
    assert spec.layer_indexers == (True, True, False, False, False, True, False, False, False, True)
    assert spec.hyper_connection_streams == 3
    # the streams' activations are modelled (memory/hyper_connections.py): no note sends the user to the trace
    assert not any("vramplan trace" in note for note in spec.notes)


@pytest.mark.parametrize("model_type, bad, field", [
    ("hy_v4", {"hc_mult": 0}, "hc_mult"),
    ("hy_v4", {"indexer_types": ["full"]}, "indexer_types"),
    ("axk2", {"gated_norm_rank": -2}, "gated_norm_rank"),
])
def test_bad_fields_are_refused_naming_the_field(model_type, bad, field):
    with pytest.raises(ConfigError) as err:
        spec_from_config({"model_type": model_type, **TINY[model_type], **bad}, complete=False)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
