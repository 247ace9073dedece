"""LoRA and QLoRA: which tensors train, and what the frozen base still costs.

LoRA (Hu et al. 2021) adds ``B A`` beside a frozen linear ``W`` (out x in): ``A`` is
``r x in``, ``B`` is ``out x r``, so ``r (in + out)`` trainable parameters per
targeted weight. Defaults follow the QLoRA paper (Dettmers et al. 2023, sec. 4:
adapters on *all* linear layers of the blocks: q, k, v, o, gate, up, down) and
peft's ``LoraConfig`` (``lora_dropout = 0``; adapters kept in fp32,
``autocast_adapter_dtype=True``).

Activations: a frozen linear does not need its input for a weight gradient, but the
adapter's ``A`` does, so the input stays saved for every targeted module; the
adapter adds its ``r``-wide intermediate (saved by ``B``) per token. Tensors saved
to propagate gradients through the frozen layers (norms, activations, attention)
are unchanged.

QLoRA: the base is NF4 with double quantization (:mod:`vramplan.quant`), and
bitsandbytes dequantizes one weight at a time to the compute dtype for each matmul
(forward and backward): one buffer the size of the largest quantized linear.
Gradient checkpointing is on by default, as peft's
``prepare_model_for_kbit_training(use_gradient_checkpointing=True)`` sets it.
"""

from __future__ import annotations

from collections.abc import Sequence

from vramplan.dtypes import FP32_BYTES
from vramplan.errors import InputError
from vramplan.model.spec import ModelSpec
from vramplan.model.tensors import TensorGroup, model_tensors

DEFAULT_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The Llama names of "all linear layers of the blocks" (QLoRA paper, sec. 4)."""
ROUTER_MODULES = frozenset({"gate", "shared_expert_gate"})
"""MoE gates: linear, but no recipe puts adapters on them."""


def all_linear_targets(spec: ModelSpec) -> tuple[str, ...]:
    """Every linear module inside the blocks except MoE gates: the QLoRA paper's
    "all linear layers" for any family (MLA's ``q_a_proj``/``kv_b_proj``..., MoE
    experts and shared experts included)."""
    names: list[str] = []
    for g in model_tensors(spec):
        if g.role == "linear" and g.per_layer and g.module not in ROUTER_MODULES and g.module not in names:
            names.append(g.module)
    return tuple(names)
FUSED_EXPERT_COMPONENTS = frozenset({"experts"})
"""Routed experts. transformers 5 stores them as fused 3-D parameters
(``Qwen2MoeExperts.gate_up_proj`` [E, 2 i, h], ``down_proj`` [E, h, i]), not
``nn.Linear`` modules, so peft's ``target_modules`` (matched on module names of
``nn.Linear`` layers) attaches no per-expert adapters there: only attention and
shared-expert linears get them (peft 0.21, transformers 5.24; DeepSeek-V2 is the
exception, see docs/accuracy.md)."""

ADAPTER_BYTES = FP32_BYTES
"""peft keeps adapter weights in fp32 (``autocast_adapter_dtype=True``)."""


def target_groups(spec: ModelSpec, targets: Sequence[str]) -> list[TensorGroup]:
    """The linear weight groups LoRA attaches to; unknown target names raise with the
    names the model has."""
    linear = [g for g in model_tensors(spec) if g.role == "linear"]
    known = sorted({g.module for g in linear})
    for name in targets:
        if name not in known:
            raise InputError(f"lora_targets: {name!r} is not a linear module of {spec.name}; "
                             f"expected some of {', '.join(known)}")
    return [g for g in linear if g.module in targets and g.per_layer and g.component not in FUSED_EXPERT_COMPONENTS]


def adapter_groups(spec: ModelSpec, targets: Sequence[str], rank: int) -> list[TensorGroup]:
    """Trainable LoRA tensors: ``lora_A`` (r x in) and ``lora_B`` (out x r) per target."""
    groups = []
    for g in target_groups(spec, targets):
        out_f, in_f = g.shape
        if rank > min(out_f, in_f):
            raise InputError(f"lora_rank: {rank} exceeds the smaller side of {g.name} "
                             f"({out_f} x {in_f}); expected at most {min(out_f, in_f)}")
        prefix = g.name.removesuffix(".weight")
        groups.append(TensorGroup(name=f"{prefix}.lora_A.weight", component=g.component, role="linear",
                                  shape=(rank, in_f), count=g.count))
        groups.append(TensorGroup(name=f"{prefix}.lora_B.weight", component=g.component, role="linear",
                                  shape=(out_f, rank), count=g.count))
    return groups


def adapter_activation_bytes_per_token(spec: ModelSpec, targets: Sequence[str], rank: int,
                                       compute_bytes: int, autocast: bool) -> int:
    """Bytes per token, summed over all layers, that the adapters save.

    peft's ``_cast_input_dtype`` casts each adapted module's input to the adapter
    dtype (fp32) when the base computes in 16 bits, so every adapted module keeps its
    own copy of its input (``in_features`` wide): fp32 without autocast, and under
    autocast the compute-dtype copy the adapter matmul casts it back to. Each also
    keeps ``A x`` (``r`` wide, saved by ``B``) in the dtype the adapter matmul runs in.
    On an fp32 base nothing is cast: the input is the one the base linear saves.
    """
    matmul_bytes = compute_bytes if autocast else ADAPTER_BYTES
    total = 0
    for g in target_groups(spec, targets):
        in_f = g.shape[1]
        cast = matmul_bytes * in_f if compute_bytes < ADAPTER_BYTES else 0
        total += (rank * matmul_bytes + cast) * g.count
    return total


def adapter_weight_cast_bytes(groups: Sequence[TensorGroup], compute_bytes: int, autocast: bool) -> int:
    """Autocast's compute-dtype copies of the fp32 adapter weights (0 without autocast)."""
    return sum(g.params for g in groups) * compute_bytes if autocast else 0


def dequant_buffer_bytes(spec: ModelSpec, targets_quantized: Sequence[TensorGroup], compute_bytes: int) -> int:
    """The dequantized copy of the largest quantized linear weight (bitsandbytes
    ``dequantize_4bit`` output, compute dtype), alive during its matmul."""
    if not targets_quantized:
        return 0
    return max(g.numel for g in targets_quantized) * compute_bytes
