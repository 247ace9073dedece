"""Gemma 4 assistants (draft models for speculative decoding): projections to and from
the target model, an optional centroid head, and cross-model KV sharing (every layer
attends to the target's cache), against transformers building the same model."""

from __future__ import annotations

import pytest

from oracle_hf import build_model
from vramplan.errors import ConfigError
from vramplan.memory.kv_cache import kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

TEXT = dict(hidden_size=64, vocab_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            global_head_dim=32, intermediate_size=96, num_hidden_layers=4, sliding_window=4,
            hidden_size_per_layer_input=0,
            layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"])
TINY = {
    "unified": ("gemma4_unified_assistant", dict(backbone_hidden_size=48)),
    "unified_ordered_embeddings": ("gemma4_unified_assistant",
                                   dict(backbone_hidden_size=48, use_ordered_embeddings=True, num_centroids=8)),
}


def _build(variant: str):
    model_type, outer = TINY[variant]
    return build_model(model_type, "meta", text_config=dict(TEXT), **outer)


@pytest.mark.exact
@pytest.mark.parametrize("variant", sorted(TINY))
def test_parameters_equal_the_meta_build_and_no_layer_projects_keys(variant):
    config, model = _build(variant)
    spec = spec_from_config(config.to_dict(), complete=False)
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters())
    # the draft has no k/v projections: it reads the target model's cache, so it caches nothing itself
    assert not [n for n, _ in model.named_parameters() if "k_proj" in n or "v_proj" in n]
    assert kv_cache_bytes(spec, context_tokens=100, batch=2, dtype="bf16") == 0


def test_missing_backbone_width_is_refused_naming_the_field():
    with pytest.raises(ConfigError) as err:
        spec_from_config({"model_type": "gemma4_unified_assistant",
                          "text_config": {"model_type": "gemma4_unified_text", **TEXT}}, complete=False)
    assert str(err.value).startswith("backbone_hidden_size") and "\n" not in str(err.value)
