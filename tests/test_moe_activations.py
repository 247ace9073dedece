"""Training activations of routed experts, estimate against trace, one small config per
MoE block family of transformers 5.24.

Oracle: the trace (transformers' own modeling code on PyTorch fake tensors under CUDA's
allocation and autocast rules; tests/test_trace_step.py checks it against a real CPU
run). transformers 5 runs every ``@use_experts_implementation`` experts class through
``grouped_mm_experts_forward`` by default; ``grouped_mm`` is outside autocast's op lists
and casts its input to the weights' dtype, so fp32 experts under ``bf16-mixed`` save
their tensors in fp32. Before the estimate followed that (it counted them in the
compute dtype, and counted autocast copies of the expert weights that are never made)
every case under ``bf16-mixed`` here was 1.3-1.8 % low (gpt-oss 2.4 %, Qwen3-Next and
Lara-mini at 4 layers x hidden 512: 3.8 % and 4.6 %); the routers differ per family
(softmax, sigmoid or top-k first; fp32 or not) by a few bytes per token.
"""

from __future__ import annotations

import pytest

from vramplan.trace.setup import TraceSetup

TOLERANCE = 0.005
"""|estimate / trace - 1| at the backward peak: every saved tensor of the MoE block is
modelled; what is left are sub-MiB terms outside it (norms of some families)."""

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_W = dict(hidden_size=256, vocab_size=32000, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
          head_dim=64, **_IDS)
_E = dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=256)
_GDN = dict(linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=32, linear_value_head_dim=48,
            linear_conv_kernel_dim=4)
_HYBRID = ["linear_attention", "linear_attention", "full_attention"]

CONFIGS = {
    # softmax router, fp32 probabilities, weights cast to the logits' dtype; gated shared expert
    "qwen2_moe": dict(model_type="qwen2_moe", intermediate_size=512, shared_expert_intermediate_size=256, **_E, **_W),
    "qwen3_moe": dict(model_type="qwen3_moe", intermediate_size=512, norm_topk_prob=True, **_E, **_W),
    "olmoe": dict(model_type="olmoe", intermediate_size=256, num_experts=8, num_experts_per_tok=2, **_W),
    # gated delta-net hybrids with MoE
    "qwen3_next": dict(model_type="qwen3_next", layer_types=_HYBRID, intermediate_size=512, mlp_only_layers=[],
                       shared_expert_intermediate_size=256, **_GDN, **_E, **_W),
    "qwen3_5_moe_text": dict(model_type="qwen3_5_moe_text", layer_types=_HYBRID, shared_expert_intermediate_size=256,
                             **_GDN, **_E, **_W),
    # fp32 router linear (x.float()); ungated shared expert; weights cast to the input's dtype
    "lara_mini": dict(model_type="lara_mini", layer_types=["linear_attention", "sliding_attention", "full_attention"],
                      sliding_window=4096, shared_expert_intermediate_size=256, **_GDN, **_E, **_W),
    # fp32 routing weights handed to the experts uncast
    "mixtral": dict(model_type="mixtral", intermediate_size=256, num_local_experts=8, num_experts_per_tok=2, **_W),
    # top-k first, softmax over k
    "granitemoe": dict(model_type="granitemoe", intermediate_size=256, num_local_experts=8, num_experts_per_tok=2,
                       **_W),
    # router with autocast off
    "ernie4_5_moe": dict(model_type="ernie4_5_moe", intermediate_size=512, moe_num_experts=8, moe_k=2,
                         moe_intermediate_size=256, moe_layer_start_index=0, **_W),
    # sigmoid router with group-limited top-k and a shared expert; MLA
    "deepseek_v3": dict(model_type="deepseek_v3", intermediate_size=512, n_routed_experts=8, num_experts_per_tok=2,
                        moe_intermediate_size=256, n_group=2, topk_group=1, first_k_dense_replace=0,
                        n_shared_experts=1, q_lora_rank=64, kv_lora_rank=64, qk_nope_head_dim=32,
                        qk_rope_head_dim=16, v_head_dim=32,
                        **{k: v for k, v in _W.items() if k not in ("head_dim", "num_key_value_heads")},
                        num_key_value_heads=4),
    # experts with biases and a clamped gate; top-k first, softmax in the logits' dtype
    "gpt_oss": dict(model_type="gpt_oss", intermediate_size=256, num_local_experts=8, num_experts_per_tok=2,
                    layer_types=["full_attention"] * 3, **_W),
}

_BASE = dict(batch_size=2, seq=512)
CASES = [
    *[(family, dict(_BASE)) for family in CONFIGS if family != "gpt_oss"],
    ("gpt_oss", dict(_BASE, attention="eager")),  # transformers has no SDPA path for its sinks
    # bf16 weights: the experts in bf16, the fp32 routers' input copies
    ("qwen3_moe", dict(_BASE, precision="bf16")),
    ("mixtral", dict(_BASE, precision="bf16")),
    ("ernie4_5_moe", dict(_BASE, precision="bf16")),
    ("deepseek_v3", dict(_BASE, precision="bf16")),
    ("gpt_oss", dict(_BASE, precision="bf16", attention="eager")),
    # LoRA on an fp32 base: frozen fp32 experts still run in fp32
    ("qwen3_moe", dict(_BASE, method="lora", load_dtype="fp32")),
    ("mixtral", dict(_BASE, method="lora", load_dtype="fp32")),
    # QLoRA: bitsandbytes leaves the fused experts unquantized, peft upcasts them to fp32
    ("qwen3_moe", dict(_BASE, method="qlora")),
]


@pytest.mark.exact
@pytest.mark.parametrize("family,kw", CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)])
def test_moe_activations_follow_the_trace(family, kw):
    pytest.importorskip("torch")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace

    setup = TraceSetup(**kw)
    traced = run_trace(CONFIGS[family], setup)
    estimate = analytical_estimate(CONFIGS[family], setup)
    assert traced.peak_phase == estimate.phase == "backward"
    error = tensor_bytes(estimate) / traced.peak_bytes - 1
    assert abs(error) <= TOLERANCE, (error, tensor_bytes(estimate), traced.peak_bytes)


def test_experts_follow_their_weights_dtype():
    """Under bf16-mixed the routed experts' share per token is twice the bf16 run's (fp32
    weights), and no autocast copy of their weights is counted."""
    from vramplan.memory import activations as act
    from vramplan.model.hf_config import spec_from_config
    from vramplan.trace.compare import training_setup
    from vramplan.training import _context

    spec = spec_from_config(dict(CONFIGS["qwen3_moe"]))

    def experts(precision: str) -> int:
        ctx = _context(spec, training_setup(TraceSetup(precision=precision, **_BASE)))
        part = next(p for p in act.layer_activation_parts(spec, ctx, 0) if p.name == "moe/experts")
        return part.bytes

    # per route: 2 h + 4 i elements in the weights' dtype, plus 3 int64 indices and the
    # routing weight (logits' dtype: bf16 in both runs)
    tokens, k, h, i = 2 * 512, 2, 256, 256
    assert experts("bf16-mixed") == tokens * k * (4 * (2 * h + 4 * i) + 3 * 8 + 2)
    assert experts("bf16") == tokens * k * (2 * (2 * h + 4 * i) + 3 * 8 + 2)
    mixed = _context(spec, training_setup(TraceSetup(precision="bf16-mixed", **_BASE)))
    linear_no_experts = 3 * (256 * 256 + 2 * 128 * 256 + 256 * 256 + 8 * 256)  # q, k, v, o, router
    assert act.layer_weight_cast_bytes(spec, mixed) * spec.num_layers == 2 * linear_no_experts
