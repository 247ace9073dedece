"""Training and prefill activations of Mamba-1 mixers (Mamba, Falcon-Mamba, Jamba's and
Zamba's Mamba layers) and of Zamba / Zamba2 hybrid layers, estimate against trace; LoRA
on Zamba's shared blocks against peft.

Oracle: the trace (transformers' own modeling code on PyTorch fake tensors under CUDA's
allocation and autocast rules; tests/test_trace_step.py checks it against a real CPU
run). Without ``mamba_ssm`` transformers runs ``mamba_selective_scan``'s sequential
loop, which saves every step's state: the cases are short (the trace runs the loop op
by op) and wide enough in tokens for the mixer to dominate. Before the mixer was
modelled (a transformer layer's formula of the same widths) Mamba was off by -59 % here;
one fp32 ``d x N`` tensor per token left out is 14 % of a layer.
"""

from __future__ import annotations

import pytest

from oracle_hf import estimate_vs_trace

from vramplan.trace.setup import TraceSetup

TOLERANCE = 0.01
"""|estimate / trace - 1| at the peak; what is left are sub-MiB terms (A and D's small
casts, the residual's fp32 copy under pure bf16)."""

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_WIDTHS = dict(hidden_size=256, vocab_size=8000, **_IDS)

CONFIGS = {
    "mamba": dict(model_type="mamba", num_hidden_layers=2, state_size=16, expand=2, conv_kernel=4, **_WIDTHS),
    # weightless RMSNorms on dt, B and C
    "falcon_mamba": dict(model_type="falcon_mamba", num_hidden_layers=2, state_size=16, expand=2, conv_kernel=4,
                         **_WIDTHS),
    # a Mamba layer with a dense MLP, a Mamba layer with MoE, an attention layer; dt/B/C norms with weights
    "jamba": dict(model_type="jamba", num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=512, num_experts=4, num_experts_per_tok=2, expert_layer_period=2,
                  expert_layer_offset=1, attn_layer_period=3, attn_layer_offset=2, mamba_d_state=16, mamba_expand=2,
                  mamba_d_conv=4, **_WIDTHS),
    # Mamba layers and hybrid layers (the shared block on [hidden, embeddings], a linear, the
    # per-head Mamba mixer)
    "zamba": dict(model_type="zamba", num_hidden_layers=4, layers_block_type=["mamba", "hybrid", "mamba", "hybrid"],
                  num_attention_heads=4, num_key_value_heads=4, intermediate_size=512, attention_hidden_size=512,
                  mamba_d_state=16, mamba_expand=2, mamba_d_conv=4, n_mamba_heads=2, **_WIDTHS),
    # Zamba2: Mamba-2 mixers, the shared block's fused gate_up with per-layer adapters
    "zamba2": dict(model_type="zamba2", num_hidden_layers=4, layers_block_type=["mamba", "hybrid", "mamba", "hybrid"],
                   hybrid_layer_ids=[1, 3], num_attention_heads=4, num_key_value_heads=4, intermediate_size=512,
                   mamba_d_state=32, n_mamba_heads=8, mamba_headdim=64, mamba_ngroups=1, chunk_size=128,
                   num_mem_blocks=1, adapter_rank=32, use_mem_eff_path=False, **_WIDTHS),
}

CASES = [
    ("mamba", dict(batch_size=8, seq=64)),
    # the per-step states scale with the sequence, the rest per token
    ("mamba", dict(batch_size=8, seq=40)),
    # views keep their bases, casts are no-ops: s + 1 fp32 states per sequence
    ("mamba", dict(precision="fp32", batch_size=8, seq=64)),
    ("mamba", dict(precision="bf16", batch_size=8, seq=64)),
    # a small vocabulary: the peak moves into the top layer's scan backward (its gradient buffers)
    ("mamba", dict(batch_size=8, seq=64, config=dict(vocab_size=500))),
    ("mamba", dict(batch_size=8, seq=64, recompute=True)),
    # peft refuses out_proj and conv1d on Mamba models
    ("mamba", dict(batch_size=8, seq=64, method="lora", lora_targets=("in_proj", "x_proj", "dt_proj"))),
    ("falcon_mamba", dict(batch_size=8, seq=64)),
    ("falcon_mamba", dict(precision="fp32", batch_size=8, seq=64)),
    ("jamba", dict(batch_size=8, seq=64)),
    ("jamba", dict(precision="bf16", batch_size=8, seq=64)),
    ("jamba", dict(batch_size=8, seq=64, method="lora",
                   lora_targets=("in_proj", "x_proj", "dt_proj", "out_proj", "q_proj", "k_proj", "v_proj", "o_proj"))),
    ("zamba", dict(batch_size=8, seq=32)),
    # Zamba's x is interleaved with the gate: its contiguous copy is the convolution's input
    ("zamba", dict(precision="fp32", batch_size=8, seq=32)),
    ("zamba2", dict(batch_size=2, seq=512)),
    # two shared blocks in turn, adapters on q/k/v too
    ("zamba2", dict(batch_size=2, seq=512, config=dict(num_mem_blocks=2, use_shared_attention_adapter=True))),
    ("zamba2", dict(precision="fp32", batch_size=2, seq=512)),
    # LoRA: frozen norm weights and D keep nothing for their gradients; peft adapts each hybrid
    # layer's copy of the shared block
    ("zamba2", dict(batch_size=2, seq=512, method="lora",
                    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj", "in_proj",
                                  "out_proj", "linear"))),
]


@pytest.mark.exact
@pytest.mark.parametrize("family,kw", CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)])
def test_mamba1_activations_follow_the_trace(family, kw):
    kw = dict(kw)
    config = dict(CONFIGS[family], **kw.pop("config", {}))
    error, traced, estimate = estimate_vs_trace(config, TraceSetup(**kw))
    assert traced.peak_phase == estimate.phase == "backward"
    assert abs(error) <= TOLERANCE, (error, traced.peak_bytes)


@pytest.mark.exact
@pytest.mark.parametrize("family", ["mamba", "jamba"])
def test_mamba1_prefill_follows_the_trace(family):
    """transformers' prefill holds the scan's three fp32 ``d x N`` tensors per token."""
    pytest.importorskip("torch")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace

    setup = TraceSetup(mode="infer", batch_size=8, seq=64)
    traced = run_trace(dict(CONFIGS[family]), setup)
    estimate = analytical_estimate(dict(CONFIGS[family]), setup)
    error = tensor_bytes(estimate) / traced.peak_bytes - 1
    assert abs(error) <= 0.02, (error, tensor_bytes(estimate), traced.peak_bytes)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_mamba1_layers_carry_no_transformer_note(family):
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(dict(CONFIGS[family]))
    assert not any("approximated with a transformer layer" in n for n in spec.notes), spec.notes



@pytest.mark.parametrize("family,targets", [
    ("zamba2", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj", "in_proj", "out_proj", "linear")),
    ("zamba", ("q_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "in_proj", "linear")),
])
def test_shared_block_lora_counts_as_peft(family, targets):
    """transformers builds Zamba's shared block once per hybrid layer with tied weights, so
    peft gives every hybrid layer its own adapters: vramplan's count equals peft's."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from vramplan.memory.lora import adapter_groups
    from vramplan.model.hf_config import spec_from_config

    config = dict(CONFIGS[family])
    model_type = config.pop("model_type")
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(model_type, **config))
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules=list(targets)))
    peft_params = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    spec = spec_from_config(dict(CONFIGS[family]))
    assert sum(g.params for g in adapter_groups(spec, targets, 8)) == peft_params
