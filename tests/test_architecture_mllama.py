"""Mllama (Llama 3.2 Vision) text model: cross-attention layers to the vision states,
against transformers building the same model (parameters) and running it on the CPU
(the cache it keeps, to the byte: self-attention layers hold the text, cross-attention
layers the vision states)."""

from __future__ import annotations

import warnings

import pytest

from oracle_hf import cache_bytes, forward_cache
from vramplan.errors import ConfigError
from vramplan.memory.cross_attention import cross_kv_bytes, mllama_vision_tokens
from vramplan.memory.kv_cache import kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

BASE = dict(hidden_size=64, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=96, num_hidden_layers=5, cross_attention_layers=[1, 3])
TINY = {"two_cross_layers": dict(BASE), "one_cross_layer_mha": dict(BASE, cross_attention_layers=[4],
                                                                     num_key_value_heads=4)}


def _model(variant: str, device: str = "cpu"):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig
    from transformers.models.mllama.modeling_mllama import MllamaForCausalLM

    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        config = MllamaTextConfig(**TINY[variant])
        return config, MllamaForCausalLM(config)


@pytest.mark.exact
@pytest.mark.parametrize("variant", sorted(TINY))
def test_parameters_equal_the_meta_build(variant):
    config, model = _model(variant, "meta")
    spec = spec_from_config(config.to_dict(), complete=False)
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters())
    assert spec.num_cross_attention_layers == len(TINY[variant]["cross_attention_layers"])


@pytest.mark.exact
@pytest.mark.parametrize("variant", sorted(TINY))
@pytest.mark.parametrize("vision_tokens", [0, 9])
def test_cache_equals_transformers_cache_after_a_forward(variant, vision_tokens):
    """Text only: the cross-attention layers are skipped and cache nothing; with vision
    states they cache ``kv_heads x head_dim`` per vision token."""
    import torch

    config, model = _model(variant)
    batch, tokens = 2, 7
    kwargs = {}
    if vision_tokens:
        kwargs["cross_attention_states"] = torch.randn(batch, vision_tokens, config.hidden_size, dtype=torch.bfloat16)
    measured = cache_bytes(forward_cache(model, batch, tokens, **kwargs), min_dim=4, max_dim=4)
    spec = spec_from_config(config.to_dict(), complete=False)
    ours = kv_cache_bytes(spec, context_tokens=tokens, batch=batch, dtype="bf16")
    if vision_tokens:
        ours += cross_kv_bytes(spec, input_tokens=vision_tokens, batch=batch, dtype="bf16")
    assert ours == measured


def test_vision_tokens_of_the_published_tower():
    # Llama-3.2-11B-Vision: 560 px tiles of 14 px patches, 4 tiles: 4 x (40 x 40 + 1) states per image
    assert mllama_vision_tokens(images=1) == 6404
    assert mllama_vision_tokens(images=2) == 2 * 6404


@pytest.mark.parametrize("bad", [[7], [-1], "3", [1.5]])
def test_bad_cross_attention_layers_are_refused_naming_the_field(bad):
    with pytest.raises(ConfigError) as err:
        spec_from_config({"model_type": "mllama_text_model", **BASE, "cross_attention_layers": bad}, complete=False)
    assert str(err.value).startswith("cross_attention_layers") and "\n" not in str(err.value)
