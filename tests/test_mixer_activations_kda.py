"""Training and prefill activations of Kimi delta attention (Kimi Linear, Bailing-hybrid),
estimate against trace.

Oracle: the trace (transformers' own modeling code run on PyTorch fake tensors under
CUDA's allocation and autocast rules; tests/test_trace_step.py checks it against a real
CPU run). transformers runs its PyTorch path here (``causal_conv1d_fn``,
``chunk_kimi_delta_attention``): ``fla`` is not installed. Before the mixer was modelled
(a transformer layer's formula of the same widths) the training estimate was off by
-64 % and the prefill by -86 %: the chunked rule keeps three fp32 tensors of ``64 x
head_dim`` per position and head, which a formula missing one of them, or the backward's
decay gradients, misses by far more than the tolerance.
"""

from __future__ import annotations

import pytest

from vramplan.trace.setup import TraceSetup

TOLERANCE = 0.01
"""|estimate / trace - 1| at the peak for configs whose every layer is modelled tensor
by tensor (the mixer, dense MLPs, Kimi's MLA)."""
MOE_TOLERANCE = 0.03
"""The same with routed experts: their fp32 tensors are not counted by the shared MoE
formula (about -0.2 % per MoE layer here)."""

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_COMMON = dict(hidden_size=256, vocab_size=4000, num_attention_heads=4, num_key_value_heads=4, intermediate_size=512,
               moe_intermediate_size=128, num_experts=4, num_experts_per_token=2, num_shared_experts=1,
               kv_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32, linear_head_dim=32,
               linear_num_heads=4, **_IDS)


def _layers(kinds: str, mlps: str) -> dict:
    return dict(num_hidden_layers=len(kinds),
                layer_types=["linear_attention" if k == "L" else "full_attention" for k in kinds],
                mlp_layer_types=["dense" if m == "d" else "sparse" for m in mlps])


CONFIGS = {
    "kimi_linear": dict(model_type="kimi_linear", **_COMMON),
    "bailing_hybrid": dict(model_type="bailing_hybrid", first_k_dense_replace=1, num_expert_group=1, topk_group=1,
                           num_nextn_predict_layers=0, **_COMMON),
}

DENSE = _layers("LLL", "ddd")
HYBRID = _layers("LAL", "dss")

CASES = [
    ("kimi_linear", DENSE, dict(batch_size=2, seq=512), TOLERANCE),
    # padded to the rule's 64-position chunks
    ("kimi_linear", DENSE, dict(batch_size=2, seq=500), TOLERANCE),
    # no autocast: the chunk products are fp32, the states too
    ("kimi_linear", DENSE, dict(precision="fp32", batch_size=1, seq=512), TOLERANCE),
    ("kimi_linear", DENSE, dict(precision="bf16", batch_size=2, seq=512), TOLERANCE),
    # one layer's saved tensors recomputed beside the decay gradients of its backward
    ("kimi_linear", DENSE, dict(recompute=True, batch_size=2, seq=512), TOLERANCE),
    # frozen base: the first layer's gates need no gradient
    ("kimi_linear", DENSE, dict(method="lora", batch_size=2, seq=512), TOLERANCE),
    # adapters on the gates' projections too: the first layer's gates get a gradient
    ("kimi_linear", DENSE, dict(method="lora", lora_targets=("all-linear",), lora_rank=4, batch_size=2, seq=512),
     TOLERANCE),
    ("kimi_linear", HYBRID, dict(batch_size=2, seq=512), MOE_TOLERANCE),
    ("bailing_hybrid", DENSE, dict(batch_size=2, seq=512), TOLERANCE),
    # Bailing keeps its convolution in fp32 whatever the load dtype
    ("bailing_hybrid", DENSE, dict(precision="bf16", batch_size=2, seq=512), TOLERANCE),
    ("bailing_hybrid", HYBRID, dict(batch_size=2, seq=512), MOE_TOLERANCE),
    # prefill: the chunked rule's high point
    ("kimi_linear", HYBRID, dict(mode="infer", batch_size=2, seq=512), TOLERANCE),
    ("kimi_linear", HYBRID, dict(mode="infer", batch_size=2, seq=500, precision="fp32"), TOLERANCE),
    ("bailing_hybrid", HYBRID, dict(mode="infer", batch_size=2, seq=512), TOLERANCE),
]


@pytest.mark.exact
@pytest.mark.parametrize("family,layers,kw,tolerance", CASES, ids=[f"{f}-{i}" for i, (f, *_) in enumerate(CASES)])
def test_kda_activations_follow_the_trace(family, layers, kw, tolerance):
    pytest.importorskip("torch")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace

    config = dict(CONFIGS[family], **layers)
    setup = TraceSetup(**kw)
    traced = run_trace(config, setup)
    estimate = analytical_estimate(config, setup)
    assert traced.peak_phase == estimate.phase
    error = tensor_bytes(estimate) / traced.peak_bytes - 1
    assert abs(error) <= tolerance, (error, tensor_bytes(estimate), traced.peak_bytes)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_kda_layers_carry_no_transformer_note(family):
    """Kimi delta attention layers are modelled: no note of an approximated mixer."""
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(dict(CONFIGS[family], **HYBRID))
    assert not any("approximated with a transformer layer" in n for n in spec.notes), spec.notes


def test_kda_saved_tensors_grow_with_the_chunk_rule():
    """Property of the chunked rule: per token, the saved bytes grow by three fp32
    ``64 x head_dim`` tensors per head, whatever the batch, and padding a sequence to
    the next chunk never saves less."""
    from vramplan.memory.activations import ActivationContext
    from vramplan.memory.mixer_activations import KDA_CHUNK, kda_mixer_bytes
    from vramplan.memory.precision import get_precision
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(dict(CONFIGS["kimi_linear"], **DENSE))
    recipe = get_precision("bf16-mixed")

    def saved(batch: int, seq: int) -> int:
        return kda_mixer_bytes(spec, ActivationContext(recipe=recipe, batch=batch, seq=seq))[0]

    assert saved(2, 512) == 2 * saved(1, 512)
    assert saved(1, 512) > 3 * 4 * spec.kda.width * KDA_CHUNK * 512
    assert all(saved(1, s + 1) >= saved(1, s) for s in range(448, 520))
