"""One parallel layout: :class:`ParallelLayout` (validated degrees and engine
settings), :func:`layout_from_gpus` and :class:`LayoutRequest` (the parts a user fixed).

Validation is the layout's own: its degrees and engine settings on construction,
the model (:meth:`ParallelLayout.check_model`) and the sequence
(:meth:`ParallelLayout.check_sequence`) through the rules of
:mod:`vramplan.parallel.admissible`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from vramplan import validate as v
from vramplan.errors import LayoutError
from vramplan.intmath import ceil_div
from vramplan.parallel.admissible import sequence_splits_evenly, tensor_parallel_problem
from vramplan.parallel.zero_config import ZeroConfig

if TYPE_CHECKING:
    from vramplan.model.spec import ModelSpec

FSDPMode = Literal["none", "full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2"]
Offload = Literal["none", "optimizer", "params"]
Engine = Literal["auto", "ddp", "deepspeed", "fsdp", "megatron"]

FSDP_MODES: tuple[str, ...] = ("none", "full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2")
OFFLOADS: tuple[str, ...] = ("none", "optimizer", "params")
ENGINES: tuple[str, ...] = ("auto", "ddp", "deepspeed", "fsdp", "megatron")


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
    """DeepSpeed ZeRO stage: 1 shards optimizer states, 2 also gradients, 3 also parameters.
    With ``engine="megatron"``, 1 means Megatron's distributed optimizer."""
    fsdp: FSDPMode = "none"
    """PyTorch FSDP sharding strategy (exclusive with ZeRO)."""
    offload: Offload = "none"
    """Move optimizer states (ZeRO-Offload) or parameters too (ZeRO-Infinity) to host memory."""
    micro_batches: int = 1
    """Micro-batches per step (pipeline schedules hold up to ``pp`` in flight)."""
    virtual_stages: int = 1
    """Model chunks per pipeline rank (Megatron's interleaved 1F1B); 1 = plain 1F1B."""
    gpus_per_node: int = 8
    """GPUs in one node (hybrid sharding shards inside a node; offload reports host RAM per node)."""
    engine: Engine = "auto"
    """Whose mixed-precision recipe and buffers apply; ``auto`` picks FSDP for ``fsdp``,
    DeepSpeed for ZeRO or offload, Megatron-LM for tp/pp/cp/ep > 1, else PyTorch DDP."""
    zero: ZeroConfig = field(default_factory=ZeroConfig)
    """DeepSpeed bucket settings (used when the engine is DeepSpeed)."""

    def __post_init__(self) -> None:
        for name, hi in (("dp", v.GPUS_MAX), ("tp", v.GPUS_MAX), ("pp", v.GPUS_MAX), ("cp", v.GPUS_MAX),
                         ("ep", v.GPUS_MAX), ("micro_batches", v.BATCH_MAX), ("virtual_stages", v.LAYERS_MAX),
                         ("gpus_per_node", v.GPUS_MAX)):
            v.integer(name, getattr(self, name), 1, hi, error=LayoutError)
        v.flag("sequence_parallel", self.sequence_parallel, error=LayoutError)
        v.choice("zero_stage", self.zero_stage, (0, 1, 2, 3), error=LayoutError)
        for name in ("fsdp", "offload", "engine"):
            if not isinstance(getattr(self, name), str):
                raise LayoutError(f"{name}: expected a name, got {v.shown(getattr(self, name))}")
        if not isinstance(self.zero, ZeroConfig):
            raise LayoutError(f"zero: expected a ZeroConfig, got {v.shown(self.zero)}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise LayoutError(f"zero_stage: expected 0, 1, 2 or 3, got {self.zero_stage!r}")
        if self.fsdp not in FSDP_MODES:
            raise LayoutError(f"fsdp: expected one of {', '.join(FSDP_MODES)}, got {self.fsdp!r}")
        if self.offload not in OFFLOADS:
            raise LayoutError(f"offload: expected none, optimizer or params, got {self.offload!r}")
        if self.engine not in ENGINES:
            raise LayoutError(f"engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.sequence_parallel and self.tp == 1:
            raise LayoutError("sequence_parallel with tp=1: Megatron sequence parallelism splits activations "
                              "across the tensor-parallel group; it needs tp > 1")
        if self.zero_stage and self.fsdp != "none":
            raise LayoutError(f"zero_stage={self.zero_stage} and fsdp={self.fsdp!r}: choose ZeRO or FSDP, not both")
        if (self.dp * self.cp) % self.ep:
            raise LayoutError(f"ep={self.ep}: must divide dp*cp = {self.dp}*{self.cp} = {self.dp * self.cp}")
        if self.offload == "params" and self.zero_stage != 3 and self.fsdp == "none":
            raise LayoutError(f"offload='params' with zero_stage={self.zero_stage}: parameter offload "
                              "(ZeRO-Infinity) needs zero_stage=3 or an FSDP mode")
        if self.virtual_stages > 1 and self.pp == 1:
            raise LayoutError(f"virtual_stages={self.virtual_stages} with pp=1: interleaving needs pp > 1")
        if self.virtual_stages > 1 and self.micro_batches % self.pp:
            raise LayoutError(f"virtual_stages={self.virtual_stages}: micro_batches={self.micro_batches} must be "
                              f"a multiple of pp={self.pp} (Megatron's interleaved schedule)")
        engine = self.resolved_engine
        if engine == "fsdp" and self.fsdp == "none":
            raise LayoutError("engine='fsdp' needs an fsdp mode (full_shard, shard_grad_op, hybrid_shard, "
                              "no_shard or fsdp2)")
        if engine == "megatron" and self.zero_stage > 1:
            raise LayoutError(f"engine='megatron' with zero_stage={self.zero_stage}: Megatron's distributed "
                              "optimizer shards optimizer states only (zero_stage 0 or 1)")
        if engine == "megatron" and self.offload != "none":
            raise LayoutError(f"engine='megatron' with offload={self.offload!r}: offload is a DeepSpeed/FSDP "
                              "feature here")
        if engine in ("ddp", "megatron") and self.fsdp != "none":
            raise LayoutError(f"engine={engine!r} with fsdp={self.fsdp!r}: FSDP is its own engine")
        if engine == "ddp" and (self.zero_stage or self.offload != "none"):
            raise LayoutError(f"engine='ddp' with zero_stage={self.zero_stage}, offload={self.offload!r}: "
                              "plain DDP shards nothing")
        if engine == "fsdp" and self.offload == "optimizer":
            raise LayoutError("fsdp with offload='optimizer': FSDP offloads parameters, gradients and the "
                              "optimizer step together; use offload='params'")

    # ---- derived facts ----------------------------------------------------------------
    @property
    def num_gpus(self) -> int:
        """dp x tp x pp x cp."""
        return self.dp * self.tp * self.pp * self.cp

    @property
    def num_nodes(self) -> int:
        """Nodes the layout spans (GPUs / GPUs per node, rounded up)."""
        return ceil_div(self.num_gpus, self.gpus_per_node)

    @property
    def is_single_device(self) -> bool:
        """One GPU, nothing sharded or offloaded: the single-GPU training model applies."""
        return self.num_gpus == 1 and self.resolved_engine == "ddp"

    @property
    def resolved_engine(self) -> str:
        """The engine whose recipe applies (``engine`` with ``auto`` resolved)."""
        if self.engine != "auto":
            return self.engine
        if self.fsdp != "none":
            return "fsdp"
        if self.zero_stage or self.offload != "none":
            return "deepspeed"
        if self.tp > 1 or self.pp > 1 or self.cp > 1 or self.ep > 1:
            return "megatron"
        return "ddp"

    def check_gpus(self, num_gpus: int) -> None:
        """Raise :class:`LayoutError` unless dp x tp x pp x cp equals ``num_gpus``."""
        if self.num_gpus != num_gpus:
            raise LayoutError(f"dp*tp*pp*cp = {self.dp}*{self.tp}*{self.pp}*{self.cp} = {self.num_gpus}, "
                              f"but gpus is {num_gpus}: the degrees must multiply to the GPU count",
                              fields=("gpus",))

    def check_model(self, spec: ModelSpec) -> None:
        """Raise :class:`LayoutError` when the layout cannot split ``spec``: tp must divide
        the attention heads (and divide, or be a multiple of, the KV heads), pp must not
        exceed the layers, ep must divide the routed experts."""
        problem = tensor_parallel_problem(spec, self.tp)
        if problem is not None:
            name, value = problem
            if name == "num_kv_heads":
                raise LayoutError(f"tp={self.tp} and num_kv_heads={value}: tp must divide the KV heads or be a "
                                  f"multiple of them (layout {self.describe()})")
            raise LayoutError(f"tp={self.tp} does not divide {name}={value} (layout {self.describe()})")
        if self.pp * self.virtual_stages > spec.num_layers:
            raise LayoutError(f"pp*virtual_stages = {self.pp}*{self.virtual_stages} = "
                              f"{self.pp * self.virtual_stages} exceeds num_layers={spec.num_layers}")
        if self.ep > 1:
            if spec.moe is None:
                raise LayoutError(f"ep={self.ep} but {spec.name} has no experts (dense model): use ep=1")
            if spec.moe.num_experts % self.ep:
                raise LayoutError(f"ep={self.ep} does not divide num_experts={spec.moe.num_experts}")

    def check_sequence(self, seq: int) -> None:
        """Raise :class:`LayoutError` when a sequence of ``seq`` tokens does not split
        evenly over the layout (:func:`sequence_splits_evenly`)."""
        if not sequence_splits_evenly(seq, tp=self.tp, cp=self.cp, sp=self.sequence_parallel):
            if seq % self.cp:
                raise LayoutError(f"seq {seq} is not divisible by cp {self.cp}: context parallelism gives "
                                  "each rank an equal share of every sequence", fields=("seq", "cp"))
            raise LayoutError(f"seq {seq} is not divisible by cp x tp = {self.cp} x {self.tp} with "
                              "sequence_parallel: sequence parallelism splits each rank's tokens over tp",
                              fields=("seq", "cp", "tp", "sequence_parallel"))

    def describe(self) -> str:
        parts = [f"dp={self.dp}", f"tp={self.tp}", f"pp={self.pp}"]
        if self.cp > 1:
            parts.append(f"cp={self.cp}")
        if self.ep > 1:
            parts.append(f"ep={self.ep}")
        if self.sequence_parallel:
            parts.append("sp")
        if self.virtual_stages > 1:
            parts.append(f"vpp={self.virtual_stages}")
        if self.zero_stage:
            parts.append(f"zero={self.zero_stage}")
        if self.fsdp != "none":
            parts.append(f"fsdp={self.fsdp}")
        if self.offload != "none":
            parts.append(f"offload={self.offload}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {"dp": self.dp, "tp": self.tp, "pp": self.pp, "cp": self.cp, "ep": self.ep,
                "sequence_parallel": self.sequence_parallel, "zero_stage": self.zero_stage,
                "fsdp": self.fsdp, "offload": self.offload, "micro_batches": self.micro_batches,
                "virtual_stages": self.virtual_stages, "gpus_per_node": self.gpus_per_node,
                "num_gpus": self.num_gpus, "num_nodes": self.num_nodes, "engine": self.resolved_engine}


SINGLE_GPU = ParallelLayout()
"""The layout of one GPU: nothing divided."""


def layout_from_gpus(num_gpus: int, *, tp: int = 1, pp: int = 1, cp: int = 1, dp: int | None = None,
                     **kwargs: Any) -> ParallelLayout:
    """A layout on ``num_gpus`` GPUs with ``dp`` inferred from the rest when not given
    (torchtitan's "one degree may be inferred"). Raises :class:`LayoutError`, printing
    every factor, when the degrees do not multiply to ``num_gpus``."""
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise LayoutError(f"gpus: expected a positive integer, got {num_gpus!r}")
    model_parallel = tp * pp * cp
    if dp is None:
        if num_gpus % model_parallel:
            raise LayoutError(f"gpus={num_gpus} is not a multiple of tp*pp*cp = {tp}*{pp}*{cp} = {model_parallel}")
        dp = num_gpus // model_parallel
    layout = ParallelLayout(dp=dp, tp=tp, pp=pp, cp=cp, **kwargs)
    layout.check_gpus(num_gpus)
    return layout




@dataclass(frozen=True, kw_only=True)
class LayoutRequest:
    """The parts of a layout a user fixed (``None`` where not given): the GPU count,
    nodes, degrees and engine settings; :meth:`layout` completes it into a
    :class:`ParallelLayout`, the planner searches the rest."""

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
        """Whether any part of the layout was given."""
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
                raise LayoutError(f"gpus {self.gpus} is not a multiple of nodes {self.nodes}", fields=("gpus", "nodes"))
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
                raise LayoutError(f"nodes {self.nodes:,} x {self.node_size()} GPUs per node = {total:,} GPUs; "
                                  f"expected at most {GPUS_MAX:,} GPUs in all", fields=("nodes",))
            return total
        return None

    def layout(self) -> ParallelLayout:
        """The :class:`~vramplan.parallel.ParallelLayout` the flags describe; dp is
        inferred from the GPU count when not given. Raises LayoutError printing every
        factor when they disagree."""
        kw = dict(ep=self.ep or 1, sequence_parallel=self.sp, zero_stage=int(self.zero or 0),
                  fsdp=self.fsdp or "none", offload=self.offload or "none",
                  micro_batches=self.micro_batches or 1, virtual_stages=self.virtual_stages or 1,
                  gpus_per_node=self.node_size())
        total = self.total_gpus()
        if total is None:
            return ParallelLayout(dp=self.dp or 1, tp=self.tp or 1, pp=self.pp or 1, cp=self.cp or 1, **kw)
        return layout_from_gpus(total, dp=self.dp, tp=self.tp or 1, pp=self.pp or 1, cp=self.cp or 1, **kw)

