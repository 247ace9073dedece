"""Attention layouts beyond one shape for every layer, against transformers: MiMo-V2-Flash
(sliding layers with twice the KV heads and sinks, values narrower than keys).
Parameters to the parameter against the meta build, the cache to the byte after a CPU
forward."""

from __future__ import annotations

import pytest

from oracle_hf import hf_config, kv_bytes_after_forward, model_from_config
from vramplan.memory.kv_cache import kv_bytes_per_token, kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

MIMO = dict(hidden_size=64, vocab_size=100, num_attention_heads=4, num_key_value_heads=1, head_dim=24, v_head_dim=16,
            intermediate_size=96, moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2,
            num_hidden_layers=4, sliding_window=4,
            layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
            mlp_layer_types=["dense", "sparse", "sparse", "sparse"])


def _config():
    return hf_config("mimo_v2_flash", **MIMO)


@pytest.mark.exact
def test_mimo_parameters_equal_the_meta_build():
    pytest.importorskip("torch")

    config = _config()
    model = model_from_config(config, "meta")
    spec = spec_from_config(config.to_dict(), complete=False)
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters())


@pytest.mark.exact
@pytest.mark.parametrize("tokens", [3, 7])
def test_mimo_cache_equals_transformers_cache_after_a_forward(tokens):
    pytest.importorskip("torch")

    config = _config()
    measured = kv_bytes_after_forward(config, tokens)
    spec = spec_from_config(config.to_dict(), complete=False)
    # transformers' DynamicSlidingWindowLayer stores window - 1 tokens once the prompt overflows the window
    assert kv_cache_bytes(spec, context_tokens=tokens, batch=2, dtype="bf16", sliding_extra_tokens=-1) == measured


def test_mimo_rows_per_token():
    spec = spec_from_config({"model_type": "mimo_v2_flash", **MIMO}, complete=False)
    full, sliding = 1 * (24 + 16) * 2, 2 * (24 + 16) * 2  # KV heads x (key + value widths) x 2 bytes
    assert kv_bytes_per_token(spec, "bf16") == 2 * full + 2 * sliding
    assert spec.layer_kv_heads == (1, 2, 2, 1)


def _weights_specs():
    from test_architecture_gemma4 import TINY as GEMMA4
    from test_architecture_sparse_attention import TINY as DSA
    from test_recurrent_state import TINY as HYBRID

    cfgs = [{"model_type": "gemma4_text", **v} for v in GEMMA4.values()] + [{"model_type": "mimo_v2_flash", **MIMO}]
    cfgs += [{"model_type": t, **c} for t, c in DSA.items()] + [{"model_type": t, **c} for t, c in HYBRID.items()]
    return [spec_from_config(c, complete=False) for c in cfgs]


@pytest.mark.parametrize("spec", _weights_specs(), ids=lambda s: s.model_type)
def test_per_layer_weight_split_adds_up_to_every_tensor(spec):
    """llama.cpp places weights layer by layer: the split must hold every tensor once
    (attention only in attention layers, each Gemma 4 shape in its own layers)."""
    from vramplan.memory.weights import format_group_bytes, layer_weights, weight_bytes_per_rank

    split = layer_weights(spec, format_group_bytes(spec, "bf16"))
    from vramplan.model.tensors import model_tensors

    assert split.total_bytes == sum(weight_bytes_per_rank(spec, "bf16"))
    # 2 bytes a parameter, 4 for the tensors transformers keeps in fp32 (_keep_in_fp32_modules_strict)
    kept_fp32 = sum(g.params for g in model_tensors(spec) if g.kept_fp32)
    assert split.total_bytes == 2 * count_params(spec).total_params + 2 * kept_fp32
    assert all(b > 0 for b in split.per_layer_bytes)


@pytest.mark.parametrize("spec", [s for s in _weights_specs() if s.num_attention_heads % 2 == 0],
                         ids=lambda s: s.model_type)
def test_tensor_parallel_shards_add_up(spec):
    """Two ranks hold at least the whole model between them, never less (k/v heads of
    each layer shape are split or replicated with that shape's own head count)."""
    from vramplan.memory.weights import weight_bytes_per_rank

    assert 2 * sum(weight_bytes_per_rank(spec, "bf16", tp=2)) >= sum(weight_bytes_per_rank(spec, "bf16"))
