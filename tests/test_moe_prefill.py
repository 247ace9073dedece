"""MoE prefill against the trace: the experts' gate/up high point and the routers that
keep fp32 routing weights (small configs, 4 layers, batch 2 x 1024 tokens)."""

from __future__ import annotations

import warnings

import pytest

BASE = dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, num_key_value_heads=2, head_dim=64,
            intermediate_size=1024, vocab_size=32000, num_experts_per_tok=2)
CASES = {
    "mixtral": dict(BASE, num_local_experts=8),  # softmax(router_logits.float()): fp32 weights, wide experts
    "olmoe": dict(BASE, num_experts=8),  # weights cast back to bf16
    "glm4_moe": dict(BASE, moe_intermediate_size=256, n_routed_experts=8, first_k_dense_replace=1,
                     n_shared_experts=1),  # DeepSeek-style fp32 TopkRouter, narrow experts
}


@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(CASES))
def test_moe_prefill_within_one_percent_of_the_trace(model_type):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.extrapolate import trace_extrapolated
    from vramplan.trace.setup import TraceSetup

    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.AutoConfig.for_model(model_type, **CASES[model_type]).to_dict()
        setup = TraceSetup(mode="infer", batch_size=2, seq=1024)
        traced = trace_extrapolated(config, setup).peak_bytes
        estimated = tensor_bytes(analytical_estimate(config, setup))
    assert abs(estimated / traced - 1) <= 0.01, (estimated, traced, estimated / traced - 1)
