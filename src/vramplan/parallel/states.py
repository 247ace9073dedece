"""Model-state bytes: the per-parameter recipe an engine follows
(:class:`StateBytesPerParam`, :data:`RECIPES`) and what one GPU holds after sharding
(:class:`ShardedStates`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from vramplan import dtypes

if TYPE_CHECKING:
    from vramplan.parallel.arrays import Ints, Reals


@dataclass(frozen=True, kw_only=True)
class StateBytesPerParam:
    """Bytes per trainable parameter of each model-state term, as a single GPU holds
    them (from the training recipe: e.g. bf16 mixed precision with AdamW is weights 2,
    gradients 2, master weights 4, optimizer 8 — the ZeRO paper's 2 + 2 + K, K = 12)."""

    weights: float
    """The compute copy of the weights (2 for bf16)."""
    gradients: float
    """Gradients in the compute dtype (2 for bf16)."""
    master_weights: float
    """fp32 master copy beside low-precision weights (4), 0 when training in one dtype."""
    optimizer: float
    """All optimizer states (8 for Adam's fp32 exp_avg + exp_avg_sq)."""

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.master_weights + self.optimizer


MIXED_ADAM = StateBytesPerParam(weights=2, gradients=2, master_weights=4, optimizer=8)
"""bf16/fp16 mixed precision with Adam: the ZeRO paper's 2 + 2 + 12 (Rajbhandari et al. 2020, sec. 3.1)."""

RECIPES: dict[str, str] = {
    "ddp": "PyTorch DDP: every rank holds the full recipe (weights, master, gradients, optimizer) "
           "plus all-reduce buckets the size of the gradients",
    "deepspeed": "DeepSpeed: 16-bit weights and gradients; fp32 master + optimizer states in the "
                 "partitioned optimizer state (2 + 2 + 12 bytes/param for Adam, ZeRO paper)",
    "fsdp": "PyTorch FSDP MixedPrecision: sharded fp32 parameters (the master copy) and fp32 gradients; "
            "a 16-bit copy of each unit is gathered while it computes",
    "megatron": "Megatron-LM: 16-bit weights, fp32 gradient buffer (main_grad), fp32 master + Adam "
                "(18 bytes/param; distributed optimizer: 6 + 12/dp)",
}
"""The mixed-precision recipe each engine follows, in words (shown with every estimate)."""


FP32_BYTES = dtypes.FP32_BYTES
"""Bytes of one fp32 value."""


@dataclass(frozen=True)
class ShardedStates:
    """Model-state bytes on one GPU after sharding (floats or arrays), plus host RAM."""

    weights_bytes: Reals
    master_weights_bytes: Reals
    gradients_bytes: Reals
    optimizer_bytes: Reals
    gathered_params_bytes: Reals
    """Parameters gathered for compute (ZeRO-3 live set, FSDP units)."""
    unsharded_grads_bytes: Reals
    """Full-size gradients of the unit/module being reduced (FSDP, ZeRO-3)."""
    comm_buckets_bytes: Reals
    """Reduce buckets (DeepSpeed ipg buffers, DDP buckets)."""
    step_temporaries_bytes: Reals
    """Held only during the optimizer step (DeepSpeed's fp32 gradient partition)."""
    host_per_gpu_bytes: Reals
    """Bytes each GPU's process keeps in host RAM (offloaded states)."""

    @cached_property
    def resident_bytes(self) -> Reals:
        """Bytes held across the whole step."""
        return (self.weights_bytes + self.master_weights_bytes + self.gradients_bytes + self.optimizer_bytes
                + self.comm_buckets_bytes)

    @property
    def backward_peak_bytes(self) -> Reals:
        """Model-state bytes at the backward peak (without activations)."""
        return self.resident_bytes + self.gathered_params_bytes + self.unsharded_grads_bytes

    @property
    def step_peak_bytes(self) -> Reals:
        """Model-state bytes during the optimizer step."""
        return self.resident_bytes + self.step_temporaries_bytes




class Split(Protocol):
    """Bytes of a term of ``bytes_per_param`` split across the data-parallel group
    (``dense_degree`` ranks; routed experts across ``expert_degree``)."""

    def __call__(self, bytes_per_param: float, dense_degree: Ints = ..., expert_degree: Ints = ...) -> Reals: ...
