"""HunYuan v1 (dense and MoE): parameters against transformers' meta build, the KV cache
against transformers' cache after a CPU forward, the estimate against the trace."""

from __future__ import annotations

import warnings

import pytest

from oracle_hf import hf_param_count, kv_bytes_after_forward
from vramplan.errors import ConfigError
from vramplan.memory.kv_cache import kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

ROPE = {"rope_type": "dynamic", "rope_theta": 10000.0, "alpha": 1000.0, "factor": 1.0}
"""The NTK-alpha rotary scaling HunYuan checkpoints use (the config class has no default
that builds)."""
SMALL = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
             intermediate_size=384, vocab_size=1000, rope_parameters=ROPE)
A13B_SHAPE = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                  head_dim=128, intermediate_size=3072, vocab_size=128167, num_experts=64,
                  moe_intermediate_size=[3072] * 32, moe_topk=[8] * 32, num_shared_expert=[1] * 32,
                  rope_parameters=ROPE)
"""Hunyuan-A13B's shape (tencent/Hunyuan-A13B-Instruct config.json: per-layer lists for
the expert width, top-k and shared experts)."""


def _config(model_type: str, **kw) -> dict:
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoConfig.for_model(model_type, **kw).to_dict()


CASES = {
    "dense": ("hunyuan_v1_dense", SMALL),
    "moe": ("hunyuan_v1_moe", dict(SMALL, num_experts=8, moe_topk=2)),
    "moe-one-expert": ("hunyuan_v1_moe", SMALL),
    "a13b": ("hunyuan_v1_moe", A13B_SHAPE),
}


@pytest.mark.parametrize("case", CASES)
def test_parameters_equal_the_meta_build(case):
    model_type, kw = CASES[case]
    config = {**_config(model_type, **kw), **{k: v for k, v in kw.items() if isinstance(v, list)}}
    assert count_params(spec_from_config(config, complete=False)).total_params == hf_param_count(config)


def test_a13b_totals_and_active_share():
    # the model card: 80B parameters, 13B active (8 of 64 experts and the shared MLP)
    counts = count_params(spec_from_config({"model_type": "hunyuan_v1_moe", **A13B_SHAPE}, complete=False))
    assert 79e9 < counts.total_params < 82e9
    assert 12.5e9 < counts.active_params < 13.5e9


def test_per_layer_lists_that_differ_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="moe_topk: expected one value for every layer"):
        spec_from_config({"model_type": "hunyuan_v1_moe", **dict(A13B_SHAPE, moe_topk=[8] * 31 + [4])},
                         complete=False)


@pytest.mark.exact
@pytest.mark.parametrize("case", ["dense", "moe"])
def test_cache_equals_transformers_cache_after_a_forward(case):
    pytest.importorskip("torch")
    model_type, kw = CASES[case]
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(model_type, **kw)
    spec = spec_from_config(config.to_dict(), complete=False)
    assert kv_cache_bytes(spec, context_tokens=7, batch=2, dtype="bf16") == kv_bytes_after_forward(config, 7)


@pytest.mark.exact
@pytest.mark.parametrize("model_type,mode", [("hunyuan_v1_dense", "train"), ("hunyuan_v1_dense", "infer"),
                                             ("hunyuan_v1_moe", "train")])
def test_estimate_within_goal_of_trace(model_type, mode):
    pytest.importorskip("torch")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.extrapolate import trace_extrapolated
    from vramplan.trace.setup import TraceSetup

    kw = dict(SMALL, hidden_size=512, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
              intermediate_size=1024, vocab_size=32000)
    if model_type == "hunyuan_v1_moe":
        kw.update(num_experts=4, moe_topk=2)
    config = _config(model_type, **kw)
    setup = TraceSetup(mode=mode, batch_size=2, seq=512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = trace_extrapolated(config, setup).peak_bytes
        estimated = tensor_bytes(analytical_estimate(config, setup))
    assert abs(estimated / traced - 1) <= 0.03, (estimated, traced, estimated / traced - 1)
