"""Training activations of Mamba-2 mixers (in layers of their own, and Falcon-H1's beside
attention) and gated delta-nets (Qwen3-Next), estimate against trace.

Oracle: the trace (transformers' own modeling code run on PyTorch fake tensors under
CUDA's allocation and autocast rules; tests/test_trace_step.py checks it against a
real CPU run). transformers runs its PyTorch path here (``causal_conv1d_fn``,
``mamba2_chunk_scan``, ``torch_chunk_gated_delta_rule``): neither ``mamba_ssm``,
``causal-conv1d`` nor ``fla`` is installed.
Each case is a small config of a real family whose every mixer layer is modelled; the
peak falls in the backward with every layer's saved tensors alive. Before the mixer
was modelled (a transformer layer's formula of the same widths) these were off by
-55 % (Bamba, 1 layer) and more; a tensor of the chunked scan left out (one
``H x chunk`` fp32 term is 8 % of a layer here) shows up well beyond the tolerance.
"""

from __future__ import annotations

import pytest

from oracle_hf import estimate_vs_trace

from vramplan.trace.setup import TraceSetup

TOLERANCE = 0.01
"""|estimate / trace - 1| at the peak: the mixer is modelled tensor by tensor; what is
left are sub-MiB terms (the conv weight's autocast copy, A and D's small casts)."""

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_WIDTHS = dict(hidden_size=256, vocab_size=32000, **_IDS)

CONFIGS = {
    "bamba": dict(model_type="bamba", num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=512, mamba_n_heads=8, mamba_d_head=64, mamba_d_state=32, mamba_n_groups=1,
                  mamba_chunk_size=128, attn_layer_indices=[], **_WIDTHS),
    "mamba2": dict(model_type="mamba2", num_hidden_layers=3, num_heads=8, head_dim=64, state_size=32, n_groups=2,
                   chunk_size=128, expand=2, **_WIDTHS),
    # Nemotron-H: a Mamba-2 block, an MLP-only block, a Mamba-2 block
    "nemotron_h": dict(model_type="nemotron_h", num_hidden_layers=3, layers_block_type=["mamba", "mlp", "mamba"],
                       num_attention_heads=4, num_key_value_heads=2, head_dim=64, intermediate_size=512,
                       ssm_state_size=32, mamba_num_heads=8, mamba_head_dim=64, n_groups=2, chunk_size=128,
                       use_mamba_kernels=False, **_WIDTHS),
    "zamba2": dict(model_type="zamba2", num_hidden_layers=3, layers_block_type=["mamba"] * 3, hybrid_layer_ids=[],
                   num_attention_heads=4, num_key_value_heads=4, intermediate_size=512, mamba_d_state=32,
                   n_mamba_heads=8, mamba_headdim=64, mamba_ngroups=1, chunk_size=128, num_mem_blocks=1,
                   use_mem_eff_path=False, use_mamba_kernels=False, **_WIDTHS),
    # Falcon-H1: Mamba-2 beside attention in every layer, its projection scaled by an fp32 buffer
    "falcon_h1": dict(model_type="falcon_h1", num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=512, mamba_d_ssm=512, mamba_n_heads=8, mamba_d_head=64, mamba_n_groups=1,
                      mamba_d_state=32, mamba_chunk_size=128, mamba_rms_norm=True, **_WIDTHS),
    # Qwen3-Next: every layer a gated delta-net with a dense MLP; keys repeated to the value heads
    "qwen3_next": dict(model_type="qwen3_next", num_hidden_layers=3, layer_types=["linear_attention"] * 3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=64, intermediate_size=512,
                       moe_intermediate_size=128, shared_expert_intermediate_size=128, num_experts=4,
                       num_experts_per_tok=2, mlp_only_layers=[0, 1, 2], linear_num_key_heads=2,
                       linear_num_value_heads=4, linear_key_head_dim=32, linear_value_head_dim=48,
                       linear_conv_kernel_dim=4, **_WIDTHS),
    # Qwen3.5: four input projections (in_proj_qkv, _z, _b, _a), one attention layer
    "qwen3_5_text": dict(model_type="qwen3_5_text", num_hidden_layers=3,
                         layer_types=["linear_attention", "linear_attention", "full_attention"],
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64, intermediate_size=512,
                         linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=32,
                         linear_value_head_dim=48, linear_conv_kernel_dim=4, **_WIDTHS),
}

CASES = [
    ("bamba", dict(batch_size=2, seq=512)),
    # a sequence that is no multiple of the chunk: the scan pads it (pad_tensor_by_size)
    ("bamba", dict(batch_size=2, seq=500)),
    # no autocast: the einsums save fp32 copies, views keep in_proj's whole output
    ("bamba", dict(precision="fp32", batch_size=1, seq=512)),
    ("bamba", dict(precision="bf16", batch_size=2, seq=512)),
    ("mamba2", dict(batch_size=2, seq=512)),
    ("nemotron_h", dict(batch_size=2, seq=512)),
    ("zamba2", dict(batch_size=2, seq=512)),
    ("falcon_h1", dict(batch_size=2, seq=512)),
    ("falcon_h1", dict(batch_size=2, seq=512, config=dict(mamba_rms_norm=False))),
    ("falcon_h1", dict(precision="bf16", batch_size=2, seq=512)),
    # fp32 with grouped keys: SDPA's math kernel beside the mixer (was -3.3 % here, -10.4 % at hidden 512)
    ("falcon_h1", dict(precision="fp32", batch_size=2, seq=512)),
    ("qwen3_next", dict(batch_size=2, seq=512)),
    # padded to the delta rule's 64-position chunks
    ("qwen3_next", dict(batch_size=2, seq=500)),
    ("qwen3_5_text", dict(batch_size=2, seq=512)),
]


@pytest.mark.exact
@pytest.mark.parametrize("family,kw", CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)])
def test_mixer_activations_follow_the_trace(family, kw):
    kw = dict(kw)
    config = dict(CONFIGS[family], **kw.pop("config", {}))
    error, traced, estimate = estimate_vs_trace(config, TraceSetup(**kw))
    assert traced.peak_phase == estimate.phase == "backward"
    assert abs(error) <= TOLERANCE, (error, traced.peak_bytes)


def test_mamba2_layers_carry_no_transformer_note():
    """A model whose every mixer is Mamba-2 says nothing about an approximated mixer."""
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(dict(CONFIGS["bamba"]))
    assert not any("approximated with a transformer layer" in n for n in spec.notes)


def test_falcon_h1_mixer_beside_attention_carries_no_note():
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(dict(CONFIGS["falcon_h1"]))
    assert spec.ssm_in_attention_layers and spec.ssm.norm_before_gate
    assert not any("approximated with a transformer layer" in n for n in spec.notes)


def test_unmodelled_mixers_keep_their_note():
    """LFM2's short convolutions are still priced as a transformer layer, and say so."""
    from vramplan.model.hf_config import spec_from_config

    config = dict(model_type="lfm2", hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=96, layer_types=["conv", "conv", "full_attention", "conv"],
                  conv_L_cache=3)
    notes = spec_from_config(config).notes
    assert any("3 short-convolution layer(s)" in n and "vramplan trace" in n for n in notes), notes


def test_chunk_size_is_read():
    from vramplan.model.hf_config import spec_from_config

    for family in (f for f in CONFIGS if not f.startswith("qwen3")):
        assert spec_from_config(dict(CONFIGS[family])).ssm.chunk_size == 128, family
