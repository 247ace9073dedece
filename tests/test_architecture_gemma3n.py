"""Gemma 3n text: AltUp streams, LAuReL residuals, per-layer input embeddings and KV
sharing across layers, against transformers building the same model (parameters) and
running it on the CPU (the cache it keeps, to the byte)."""

from __future__ import annotations

import pytest

from oracle_hf import hf_config, kv_bytes_after_forward, model_from_config
from vramplan.errors import ConfigError
from vramplan.memory.kv_cache import kv_bytes_per_token, kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

BASE = dict(hidden_size=64, vocab_size=100, vocab_size_per_layer_input=100, hidden_size_per_layer_input=8,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=96, sliding_window=4,
            num_hidden_layers=10, num_kv_shared_layers=5, altup_num_inputs=4, laurel_rank=8)
TINY = {
    "default_pattern": dict(BASE),
    "no_sharing": dict(BASE, num_kv_shared_layers=0),
    "two_streams_per_layer_widths": dict(BASE, altup_num_inputs=2, intermediate_size=[96] * 5 + [128] * 5),
    "explicit_layer_types": dict(BASE, layer_types=["sliding_attention", "full_attention"] * 5,
                                 num_kv_shared_layers=4),
}


def _config(variant: str):
    return hf_config("gemma3n_text", **TINY[variant])


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
    """7 tokens overflow the 4-token sliding window, 3 do not; the KV-sharing layers
    keep nothing of their own."""
    pytest.importorskip("torch")

    config = _config(variant)
    measured = kv_bytes_after_forward(config, tokens)
    spec = spec_from_config(config.to_dict(), complete=False)
    assert kv_cache_bytes(spec, context_tokens=tokens, batch=2, dtype="bf16", sliding_extra_tokens=-1) == measured


def test_shared_layers_cache_nothing():
    spec = spec_from_config({"model_type": "gemma3n_text", **BASE}, complete=False)
    # 10 layers, the last 5 share: layers 0-4 own a cache (2 KV heads x 16, K and V, 2 bytes)
    assert spec.kv_shared_layers == (False,) * 5 + (True,) * 5
    assert kv_bytes_per_token(spec, "bf16") == 5 * 2 * 2 * 16 * 2


@pytest.mark.parametrize("bad, field", [
    ({"num_kv_shared_layers": 11}, "num_kv_shared_layers"),
    ({"num_kv_shared_layers": 9}, "num_kv_shared_layers"),  # shared full layers 4 and 9, no earlier full layer
    ({"altup_num_inputs": -1}, "altup_num_inputs"),
    ({"laurel_rank": 2.5}, "laurel_rank"),
])
def test_bad_gemma3n_fields_are_refused_naming_the_field(bad, field):
    with pytest.raises(ConfigError) as err:
        spec_from_config({"model_type": "gemma3n_text", **BASE, **bad}, complete=False)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
