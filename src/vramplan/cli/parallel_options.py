"""The parallel-layout flags, declared once for ``plan``, ``train`` and ``infer``:
``--gpus --nodes --dp --tp --pp --cp --ep --sp --zero | --fsdp --offload
--micro-batches --virtual-stages --gpus-per-node``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from vramplan import validate as v

from vramplan.cli.common import BoundedInt
from vramplan.errors import LayoutError

LAYOUT_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    # (flag, keyword, click type, help)
    ("--gpus", "gpus", BoundedInt(1, v.GPUS_MAX), "Total GPUs (dp is inferred from it when --dp is not given)."),
    ("--nodes", "nodes", BoundedInt(1, v.GPUS_MAX), "Nodes; GPUs per node = --gpus / --nodes."),
    ("--gpus-per-node", "gpus_per_node", BoundedInt(1, v.GPUS_MAX), "GPUs in one node (default 8)."),
    ("--dp", "dp", BoundedInt(1, v.GPUS_MAX), "Data-parallel degree."),
    ("--tp", "tp", BoundedInt(1, v.GPUS_MAX), "Tensor-parallel degree."),
    ("--pp", "pp", BoundedInt(1, v.GPUS_MAX), "Pipeline-parallel stages."),
    ("--cp", "cp", BoundedInt(1, v.GPUS_MAX), "Context-parallel degree."),
    ("--ep", "ep", BoundedInt(1, v.GPUS_MAX), "Expert-parallel degree (MoE)."),
    ("--zero", "zero", click.Choice(["0", "1", "2", "3"]), "DeepSpeed ZeRO stage."),
    ("--fsdp", "fsdp", click.Choice(["full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2"]),
     "PyTorch FSDP sharding strategy (not with --zero)."),
    ("--offload", "offload", click.Choice(["none", "optimizer", "params"]),
     "Offload optimizer states (ZeRO-Offload) or parameters too (ZeRO-Infinity) to host RAM."),
    ("--micro-batches", "micro_batches", BoundedInt(1, v.BATCH_MAX), "Micro-batches per step (gradient accumulation)."),
    ("--virtual-stages", "virtual_stages", BoundedInt(1, v.LAYERS_MAX), "Interleaved pipeline chunks per rank."),
)


def layout_options(func: Callable) -> Callable:
    """Add the layout flags (and ``--sp``) to a click command."""
    func = click.option("--sp", "sp", is_flag=True, default=False,
                        help="Megatron sequence parallelism (with --tp > 1).")(func)
    for flag, dest, kind, help_text in reversed(LAYOUT_FLAGS):
        func = click.option(flag, dest, type=kind, default=None, help=help_text)(func)
    return func


@dataclass(frozen=True, kw_only=True)
class LayoutFlags:
    """The layout flags a user gave (``None`` where not given)."""

    gpus: int | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    dp: int | None = None
    tp: int | None = None
    pp: int | None = None
    cp: int | None = None
    ep: int | None = None
    zero: str | None = None
    fsdp: str | None = None
    offload: str | None = None
    micro_batches: int | None = None
    virtual_stages: int | None = None
    sp: bool = False

    @property
    def given(self) -> bool:
        """Whether any layout flag was given."""
        return any(v is not None for k, v in self.__dict__.items() if k != "sp") or self.sp

    @property
    def any_degree(self) -> bool:
        return any(v is not None for v in (self.dp, self.tp, self.pp, self.cp, self.ep))

    def node_size(self) -> int:
        """GPUs per node from --gpus-per-node, or --gpus / --nodes, or 8."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        if self.nodes is not None and self.gpus is not None:
            if self.gpus % self.nodes:
                raise LayoutError(f"--gpus {self.gpus} is not a multiple of --nodes {self.nodes}")
            return self.gpus // self.nodes
        return 8

    def total_gpus(self) -> int | None:
        """--gpus, or --nodes x --gpus-per-node."""
        if self.gpus is not None:
            return self.gpus
        if self.nodes is not None:
            from vramplan.validate import GPUS_MAX

            total = self.nodes * self.node_size()
            if total > GPUS_MAX:
                raise LayoutError(f"--nodes {self.nodes} x {self.node_size()} GPUs per node = {total:,} GPUs: "
                                  f"expected at most {GPUS_MAX:,}")
            return total
        return None

    def layout(self):
        """The :class:`~vramplan.parallel.ParallelLayout` the flags describe; dp is
        inferred from the GPU count when not given. Raises LayoutError printing every
        factor when they disagree."""
        from vramplan.parallel import ParallelLayout, layout_from_gpus

        kw = dict(ep=self.ep or 1, sequence_parallel=self.sp, zero_stage=int(self.zero or 0),
                  fsdp=self.fsdp or "none", offload=self.offload or "none",
                  micro_batches=self.micro_batches or 1, virtual_stages=self.virtual_stages or 1,
                  gpus_per_node=self.node_size())
        total = self.total_gpus()
        if total is None:
            return ParallelLayout(dp=self.dp or 1, tp=self.tp or 1, pp=self.pp or 1, cp=self.cp or 1, **kw)
        return layout_from_gpus(total, dp=self.dp, tp=self.tp or 1, pp=self.pp or 1, cp=self.cp or 1, **kw)


def pop_layout_flags(kwargs: dict[str, Any]) -> LayoutFlags:
    """Remove the layout flags from a command's kwargs; return them."""
    given = {dest: kwargs.pop(dest, None) for _, dest, _, _ in LAYOUT_FLAGS}
    return LayoutFlags(**given, sp=bool(kwargs.pop("sp", False)))
