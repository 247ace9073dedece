"""The parallel-layout flags, declared once for ``plan``, ``train`` and ``infer``:
``--gpus --nodes --dp --tp --pp --cp --ep --sp --zero | --fsdp --offload
--micro-batches --virtual-stages --gpus-per-node``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vramplan.parallel import LayoutRequest as LayoutFlags

LAYOUT_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    # (flag, keyword, click type, help)
    ("--gpus", "gpus", click.IntRange(min=1), "Total GPUs (dp is inferred from it when --dp is not given)."),
    ("--nodes", "nodes", click.IntRange(min=1), "Nodes; GPUs per node = --gpus / --nodes."),
    ("--gpus-per-node", "gpus_per_node", click.IntRange(min=1), "GPUs in one node (default 8)."),
    ("--dp", "dp", click.IntRange(min=1), "Data-parallel degree."),
    ("--tp", "tp", click.IntRange(min=1), "Tensor-parallel degree."),
    ("--pp", "pp", click.IntRange(min=1), "Pipeline-parallel stages."),
    ("--cp", "cp", click.IntRange(min=1), "Context-parallel degree."),
    ("--ep", "ep", click.IntRange(min=1), "Expert-parallel degree (MoE)."),
    ("--zero", "zero", click.Choice(["0", "1", "2", "3"]), "DeepSpeed ZeRO stage."),
    ("--fsdp", "fsdp", click.Choice(["full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2"]),
     "PyTorch FSDP sharding strategy (not with --zero)."),
    ("--offload", "offload", click.Choice(["none", "optimizer", "params"]),
     "Offload optimizer states (ZeRO-Offload) or parameters too (ZeRO-Infinity) to host RAM."),
    ("--micro-batches", "micro_batches", click.IntRange(min=1), "Micro-batches per step (gradient accumulation)."),
    ("--virtual-stages", "virtual_stages", click.IntRange(min=1), "Interleaved pipeline chunks per rank."),
)


def layout_options(func: Callable) -> Callable:
    """Add the layout flags (and ``--sp``) to a click command."""
    func = click.option("--sp", "sp", is_flag=True, default=False,
                        help="Megatron sequence parallelism (with --tp > 1).")(func)
    for flag, dest, kind, help_text in reversed(LAYOUT_FLAGS):
        func = click.option(flag, dest, type=kind, default=None, help=help_text)(func)
    return func


def pop_layout_flags(kwargs: dict[str, Any]) -> LayoutFlags:
    """Remove the layout flags from a command's kwargs; return them."""
    given = {dest: kwargs.pop(dest, None) for _, dest, _, _ in LAYOUT_FLAGS}
    return LayoutFlags(**given, sp=bool(kwargs.pop("sp", False)))
