"""Parallel layouts: how data, tensor, pipeline, context and expert parallelism,
ZeRO / FSDP sharding and offload divide each memory term across GPUs.

:class:`ParallelLayout` is the validated description of one layout. The functions
that divide each term live beside it so every estimator and the planner share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramplan.errors import LayoutError

FSDPMode = Literal["none", "full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2"]
Offload = Literal["none", "optimizer", "params"]


@dataclass(frozen=True, kw_only=True)
class ParallelLayout:
    """One way to lay a job out on ``dp * tp * pp * cp`` GPUs (expert parallelism
    re-slices the ``dp * cp`` ranks of the MoE layers, as in Megatron-Core)."""

    dp: int = 1
    """Data-parallel replicas (ZeRO / FSDP shard across these)."""
    tp: int = 1
    """Tensor-parallel degree (Megatron-LM column/row splits)."""
    pp: int = 1
    """Pipeline stages."""
    cp: int = 1
    """Context-parallel degree (sequence split for attention)."""
    ep: int = 1
    """Expert-parallel degree (experts split across ranks); must divide dp * cp."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism: norm/dropout activations split by tp too."""
    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage: 1 shards optimizer states, 2 also gradients, 3 also parameters."""
    fsdp: FSDPMode = "none"
    """PyTorch FSDP sharding strategy (exclusive with ZeRO)."""
    offload: Offload = "none"
    """Move optimizer states (ZeRO-Offload) or parameters too (ZeRO-Infinity) to host memory."""
    micro_batches: int = 1
    """Micro-batches per step (pipeline schedules hold up to ``pp`` in flight)."""
    gpus_per_node: int = 8
    """GPUs in one node (hybrid sharding shards inside a node)."""

    def __post_init__(self) -> None:
        for name in ("dp", "tp", "pp", "cp", "ep", "micro_batches", "gpus_per_node"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LayoutError(f"{name}: expected a positive integer, got {value!r}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise LayoutError(f"zero_stage: expected 0, 1, 2 or 3, got {self.zero_stage!r}")
        if self.fsdp not in ("none", "full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2"):
            raise LayoutError(f"fsdp: unknown mode {self.fsdp!r}")
        if self.zero_stage and self.fsdp != "none":
            raise LayoutError(f"zero_stage={self.zero_stage} and fsdp={self.fsdp!r}: choose ZeRO or FSDP, not both")
        if self.offload not in ("none", "optimizer", "params"):
            raise LayoutError(f"offload: expected none, optimizer or params, got {self.offload!r}")
        if (self.dp * self.cp) % self.ep:
            raise LayoutError(f"ep={self.ep}: must divide dp*cp = {self.dp}*{self.cp} = {self.dp * self.cp}")

    @property
    def num_gpus(self) -> int:
        """dp x tp x pp x cp."""
        return self.dp * self.tp * self.pp * self.cp

    def describe(self) -> str:
        parts = [f"dp={self.dp}", f"tp={self.tp}", f"pp={self.pp}"]
        if self.cp > 1:
            parts.append(f"cp={self.cp}")
        if self.ep > 1:
            parts.append(f"ep={self.ep}")
        if self.sequence_parallel:
            parts.append("sp")
        if self.zero_stage:
            parts.append(f"zero={self.zero_stage}")
        if self.fsdp != "none":
            parts.append(f"fsdp={self.fsdp}")
        if self.offload != "none":
            parts.append(f"offload={self.offload}")
        return " ".join(parts)


SINGLE_GPU = ParallelLayout()
"""The layout of one GPU: nothing divided."""
