"""dots3 text: MLA whose sliding-window layers have their own latent ranks and head
counts, a DSA indexer in the indexed layers, a gate per head and a norm on the rope key,
against transformers building a small model (parameters to the parameter) and running
it on the CPU (the latent and indexer cache, to the byte, inside and past the window)."""

from __future__ import annotations

import pytest

from oracle_hf import build_model, cache_bytes, forward_cache
from vramplan.errors import ConfigError
from vramplan.memory.kv_cache import indexer_bytes_per_token_per_layer, kv_bytes_per_token, kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

TINY = dict(hidden_size=64, vocab_size=100, num_attention_heads=4, num_key_value_heads=4, intermediate_size=96,
            moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
            kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
            index_n_heads=2, index_head_dim=16, index_topk=4, num_hidden_layers=6, sliding_window=4,
            swa_num_attention_heads=2, swa_num_key_value_heads=2, swa_q_lora_rank=24, swa_kv_lora_rank=32,
            swa_head_dim=32, swa_qk_nope_head_dim=24, swa_v_head_dim=8, pad_token_id=0, bos_token_id=1,
            eos_token_id=2)



@pytest.mark.exact
def test_parameters_equal_the_meta_build():
    config, model = build_model("dots3_note_text", "meta", **TINY)
    spec = spec_from_config(config.to_dict(), complete=False)
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters())
    # default schedule: layers 0, 1 and 5 indexed, 2-4 sliding
    assert spec.layer_indexers == (True, True, False, False, False, True)
    assert spec.layer_attention_heads == (4, 4, 2, 2, 2, 4)


@pytest.mark.exact
@pytest.mark.parametrize("tokens", [3, 7])
def test_cache_equals_transformers_cache_after_a_forward(tokens):
    pytest.importorskip("torch")

    config, model = build_model("dots3_note_text", "cpu", **TINY)
    batch = 2
    measured = cache_bytes(forward_cache(model, batch, tokens), min_dim=3)
    spec = spec_from_config(config.to_dict(), complete=False)
    ours = kv_cache_bytes(spec, context_tokens=tokens, batch=batch, dtype="bf16", mla_cache="latent",
                          sliding_extra_tokens=-1)
    # transformers' eager dots3 indexer rotates its key against fp32 cos/sin, so the key it
    # caches is promoted to fp32; the latent cache stays in the model dtype
    indexer_rows = batch * tokens * spec.num_indexer_layers
    ours += indexer_rows * (indexer_bytes_per_token_per_layer(spec, "fp32") -
                            indexer_bytes_per_token_per_layer(spec, "bf16"))
    assert ours == measured


def test_sliding_layers_cache_their_own_latent_without_transformers():
    spec = spec_from_config({"model_type": "dots3_note_text", **TINY}, complete=False)
    # indexed layers: latent 16 + rope 8, plus a 16-wide indexer key; sliding: latent 32 + rope 8
    assert kv_bytes_per_token(spec, "bf16") == 3 * (16 + 8 + 16) * 2 + 3 * (32 + 8) * 2


@pytest.mark.parametrize("bad, field", [
    ({"per_layer_config": {"9": {"kv_lora_rank": 8}}}, "per_layer_config"),
    ({"per_layer_config": {"2": {"kv_lora_rank": 0}}}, "kv_lora_rank"),
    ({"layer_types": ["sliding_attention"]}, "layer_types"),
])
def test_bad_dots3_fields_are_refused_naming_the_field(bad, field):
    with pytest.raises(ConfigError) as err:
        spec_from_config({"model_type": "dots3_note_text", **TINY, **bad}, complete=False)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
