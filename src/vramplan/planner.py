"""The layout planner: which parallel layouts of a training job fit, and which is fastest.

Layouts are enumerated as numpy arrays, one array per degree (dp, tp, pp, cp, ep,
sequence parallelism, micro-batch size, micro-batches), for each *engine setting*
(ZeRO stage, FSDP mode, offload) and recomputation choice. Per-GPU memory is the
arithmetic of :func:`vramplan.distributed.training_terms` — what
:func:`~vramplan.distributed.estimate_on_layout` uses for one layout — evaluated on
those arrays, so there is no Python loop per layout. Layouts that fit under ``usable
memory x (1 - headroom)`` are ranked by an estimated step time (:func:`step_time_s`).

The same element-wise arithmetic is done on as few elements as it takes (the figures
are those of the plain evaluation, ``tests/test_planner_reference.py``): the
model-state bytes once per distinct (dp, tp, pp, cp, ep) (:class:`_StateKeys`), the
activations once per search and recomputation choice, an engine setting only on the
layouts its rules let it run, and the degree grid of a GPU count once per plan.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

from vramplan.distributed import (
    CP_ATTENTION_KERNELS,
    ActivationCoefficients,
    BackwardActivations,
    JobStates,
    TrainingJob,
    default_overhead_bytes,
    engine_setup,
    job_states,
    StatePeaks,
    stage_peak_bytes,
    stage_terms,
    state_peaks,
    step_temporaries_bytes,
)
from vramplan import validate as v
from vramplan.errors import InputError
from vramplan.memory.overhead import Overheads
from vramplan.parallel import (
    ParallelLayout,
    RankParams,
    SliceCoefficients,
    layer_params,
    rank_params,
    root_params,
    sequence_splits_evenly,
    shard_model_states,
    slice_coefficients,
    stage_layers,
    max_tensor_parallel,
    tensor_parallel_problem,
)
from vramplan.parallel_rules import engine_runs
from vramplan.step_time import DEFAULT_MFU, RECOMPUTE_EXTRA_FLOPS, layout_costs, step_time_s
from vramplan.step_time import assumptions as step_assumptions

if TYPE_CHECKING:
    import numpy as np

    from vramplan.estimate import Estimate
    from vramplan.gpus import GpuSpec
    from vramplan.model.spec import ModelSpec

# --------------------------------------------------------------------------- assumptions

HOST_BYTES_PER_NODE = {"datacenter": 2**40, "gaudi": 2**40, "tpu": 2**40}
"""Default host RAM per node offload may use, by GPU segment: 1 TiB for datacenter
nodes (DGX A100 40GB: 1 TiB; DGX H100: 2 TiB; cloud 8-GPU nodes 1-2 TiB; the lower
figure), ``WORKSTATION_HOST_BYTES`` for everything else (``--host-memory`` overrides)."""
WORKSTATION_HOST_BYTES = 128 * 2**30
"""Default host RAM of a workstation or desktop (128 GiB: 4 x 32 GiB DIMMs, the most a
typical desktop board takes with common modules)."""


OFFLOAD_RANKS_LAST = True
"""Layouts with CPU offload rank after every fitting layout without it, whatever their
modelled step time: offload buys memory with host-link traffic and a CPU optimizer step
(:func:`vramplan.step_time.offload_s`), and the overlap modelled there is the best case
(DeepSpeed's ZeRO-Offload tutorial and Lightning's DeepSpeed guide present offload as
the memory-saving stage that "increases ... GPU-CPU device transfer"); they lead the
plan only when nothing without offload fits."""


def default_host_bytes_per_node(gpu: GpuSpec) -> int:
    """Host RAM per node assumed when ``--host-memory`` is not given, in bytes (see
    ``HOST_BYTES_PER_NODE``)."""
    return HOST_BYTES_PER_NODE.get(gpu.segment, WORKSTATION_HOST_BYTES)


@dataclass(frozen=True)
class EngineSetting:
    """One categorical choice the planner vectorises within."""

    engine: str
    zero_stage: int = 0
    fsdp: str = "none"
    offload: str = "none"

    def layout(self, gpus_per_node: int) -> ParallelLayout:
        return ParallelLayout(engine=self.engine, zero_stage=self.zero_stage, fsdp=self.fsdp,
                              offload=self.offload, gpus_per_node=gpus_per_node)

    @property
    def label(self) -> str:
        if self.fsdp != "none":
            base = f"fsdp {self.fsdp}"
        elif self.engine == "megatron":
            base = "megatron" + (" distributed-optimizer" if self.zero_stage == 1 else "")
        else:
            base = f"zero-{self.zero_stage}"
        return base + (f" offload={self.offload}" if self.offload != "none" else "")


ENGINE_SETTINGS: tuple[EngineSetting, ...] = (
    EngineSetting("megatron", 0), EngineSetting("megatron", 1),
    EngineSetting("deepspeed", 1), EngineSetting("deepspeed", 2), EngineSetting("deepspeed", 3),
    EngineSetting("deepspeed", 2, offload="optimizer"), EngineSetting("deepspeed", 3, offload="optimizer"),
    EngineSetting("deepspeed", 3, offload="params"),
    EngineSetting("fsdp", fsdp="full_shard"), EngineSetting("fsdp", fsdp="shard_grad_op"),
    EngineSetting("fsdp", fsdp="hybrid_shard"), EngineSetting("fsdp", fsdp="full_shard", offload="params"),
    # FSDP2 (fully_shard) is the FSDP that composes with TP, PP and CP (vramplan.parallel_rules).
    EngineSetting("fsdp", fsdp="fsdp2"), EngineSetting("fsdp", fsdp="fsdp2", offload="params"),
)
"""Every engine setting the planner tries."""


@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    """What to plan."""

    job: TrainingJob
    """The training job (model, recipe, micro-batch size and sequence length are the
    user's; the planner varies the micro-batch size only for "largest batch")."""
    gpu: GpuSpec
    """The :class:`~vramplan.gpus.GpuSpec` of every GPU."""
    gpu_counts: tuple[int, ...]
    """GPU counts to try (one for ``--gpus N``, several for ``--max-gpus``)."""
    headroom: float = 0.05
    """Share of usable memory kept free."""
    gpus_per_node: int = 8
    """GPUs per node (tensor parallelism stays inside one)."""
    global_batch: int | None = None
    """Sequences per optimizer step; ``None``: :func:`default_global_batch`."""
    mfu: float = DEFAULT_MFU
    """Model FLOPs utilisation for step time."""
    micro_batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    """Micro-batch sizes (sequences per GPU per micro-batch) to try."""
    engines: tuple[EngineSetting, ...] = ENGINE_SETTINGS
    """Engine settings to try."""
    recomputes: tuple[str, ...] = ("none", "selective", "full")
    """Recomputation choices to try."""
    virtual_stages: int = 1
    """Interleaved pipeline chunks per rank (>1 keeps only pp > 1 with m a multiple of pp)."""
    host_bytes_per_node: int | None = None
    """Host RAM per node offload may use, in bytes; ``None``: the GPU segment's default
    (:func:`default_host_bytes_per_node`)."""
    fixed_degrees: tuple[tuple[str, int], ...] = ()
    """Degrees the user fixed (``("tp", 8)``, ``("dp", 4)``...): the search keeps only those."""

    def __post_init__(self) -> None:
        if not isinstance(self.job, TrainingJob):
            raise InputError(f"job: expected a TrainingJob, got {v.shown(self.job)}")
        if not hasattr(self.gpu, "usable_memory_bytes"):
            raise InputError(f"gpu: expected a GpuSpec (vramplan.gpus.find_gpu), got {v.shown(self.gpu)}")
        v.real("headroom", self.headroom, 0, 1, hi_open=True)
        v.real("mfu", self.mfu, 0, 1, lo_open=True)
        v.integers("gpu_counts", self.gpu_counts, 1, v.GPUS_MAX, max_items=256)
        v.integer("gpus_per_node", self.gpus_per_node, 1, v.GPUS_MAX)
        v.optional_integer("global_batch", self.global_batch, 1, v.BATCH_MAX)
        v.integers("micro_batch_sizes", self.micro_batch_sizes, 1, v.BATCH_MAX, max_items=64)
        v.integer("virtual_stages", self.virtual_stages, 1, v.LAYERS_MAX)
        v.optional_integer("host_bytes_per_node", self.host_bytes_per_node, 0, v.SIZE_MAX)
        if isinstance(self.engines, (str, bytes)) or not isinstance(self.engines, (tuple, list)) or not self.engines \
                or not all(isinstance(e, EngineSetting) for e in self.engines):
            raise InputError(f"engines: expected a non-empty tuple of EngineSetting, got {v.shown(self.engines)}")
        v.names("recomputes", self.recomputes, allowed=("none", "selective", "full"))
        if isinstance(self.fixed_degrees, (str, bytes)) or not isinstance(self.fixed_degrees, (tuple, list)):
            raise InputError("fixed_degrees: expected a tuple of (degree, value) pairs, got "
                             f"{v.shown(self.fixed_degrees)}")
        for i, pair in enumerate(self.fixed_degrees):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InputError(f"fixed_degrees[{i}]: expected a (degree, value) pair, got {v.shown(pair)}")
            v.choice(f"fixed_degrees[{i}]", pair[0], DEGREE_NAMES)
            v.integer(f"fixed_degrees[{i}]", pair[1], 0 if pair[0] == "sp" else 1, v.BATCH_MAX)

    @property
    def host_budget_bytes(self) -> int:
        """Host bytes per node a layout may use for offloaded states."""
        if self.host_bytes_per_node is not None:
            return self.host_bytes_per_node
        return default_host_bytes_per_node(self.gpu)

    @property
    def budget_bytes(self) -> int:
        """Per-GPU bytes a layout may use: usable memory x (1 - headroom)."""
        return int(self.gpu.usable_memory_bytes * (1 - self.headroom))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _powers_of_two_up_to(n: int) -> list[int]:
    return [2**k for k in range(int(math.log2(n)) + 1)] if n >= 1 else []


def engine_settings(*, zero: int | None = None, fsdp: str | None = None,
                    offload: str | None = None) -> tuple[EngineSetting, ...]:
    """The engine settings matching what the user fixed (all of them when nothing is).
    ZeRO stage 1 matches both DeepSpeed ZeRO-1 and Megatron's distributed optimizer;
    an FSDP mode the default list leaves out (no_shard, fsdp2) is added on request."""
    out = []
    for s in ENGINE_SETTINGS:
        if zero is not None and (s.fsdp != "none" or s.zero_stage != zero):
            continue
        if fsdp is not None and s.fsdp != fsdp:
            continue
        if offload is not None and s.offload != offload:
            continue
        out.append(s)
    if fsdp is not None and not out:
        out.append(EngineSetting("fsdp", fsdp=fsdp, offload=offload or "none"))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Degrees:
    """Layouts as columns: numpy arrays of equal length, one entry per layout (the
    planner's rows). ``recompute`` / ``extra_flops`` are set once the recomputation
    choices ride along as one more dimension (:meth:`with_recomputes`)."""

    dp: np.ndarray
    """Data-parallel replicas."""
    tp: np.ndarray
    """Tensor-parallel degree."""
    pp: np.ndarray
    """Pipeline stages."""
    cp: np.ndarray
    """Context-parallel degree."""
    ep: np.ndarray
    """Expert-parallel degree."""
    sp: np.ndarray
    """Sequence parallelism (booleans)."""
    mbs: np.ndarray
    """Micro-batch size: sequences per GPU per micro-batch."""
    m: np.ndarray
    """Micro-batches per optimizer step."""
    num_gpus: np.ndarray
    """dp x tp x pp x cp: the GPU count of the row's search."""
    overhead_bytes: np.ndarray
    """Fixed per-GPU overhead at that GPU count (:func:`default_overhead_bytes`)."""
    recompute: np.ndarray | None = None
    """Index into the search's recomputation choices."""
    extra_flops: np.ndarray | None = None
    """Extra FLOPs per parameter-token of that recomputation choice."""

    def __getitem__(self, name: str) -> np.ndarray:
        """The column of a degree by name (``"tp"``, ``"mbs"``...): how fixed degrees and
        rule tables address them."""
        if name not in DEGREE_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    @property
    def size(self) -> int:
        """Rows (layouts)."""
        return int(self.dp.size)

    def _columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def select(self, rows: np.ndarray) -> Degrees:
        """The rows a boolean mask (or index array) picks."""
        return Degrees(**{k: v[rows] for k, v in self._columns().items()})

    def with_recomputes(self, extra_flops: np.ndarray) -> Degrees:
        """Every row once per recomputation choice (``extra_flops[i]`` of choice ``i``),
        choice-major."""
        import numpy as np

        k, size = len(extra_flops), self.size
        tiled = {name: np.tile(v, k) for name, v in self._columns().items()}
        return Degrees(**tiled, recompute=np.repeat(np.arange(k), size), extra_flops=np.repeat(extra_flops, size))

    @classmethod
    def concatenate(cls, parts: list[Degrees]) -> Degrees:
        """The rows of several searches, one after the other."""
        import numpy as np

        columns = [p._columns() for p in parts]
        return cls(**{k: np.concatenate([c[k] for c in columns]) for k in columns[0]})


DEGREE_NAMES = ("dp", "tp", "pp", "cp", "ep", "sp", "mbs", "m")
"""The degrees a user may fix (:attr:`PlanRequest.fixed_degrees`)."""


def enumerate_degrees(spec: ModelSpec, num_gpus: int, gpus_per_node: int, global_batch: int,
                      micro_batch_sizes: tuple[int, ...], *, context_parallel: bool = True) -> Degrees:
    """All (dp, tp, pp, cp, ep, sp, mbs, m) with dp*tp*pp*cp = ``num_gpus`` that the
    model admits, as numpy arrays of equal length (built with array operations, not a
    loop per layout): tp divides the heads (and divides or is a multiple of the KV
    heads) and stays inside a node, pp does not exceed the layers, cp is a power of
    two, ep divides the experts and dp*cp, sp only with tp > 1. The micro-batch count
    follows from the global batch: ``m = global_batch / (dp * mbs)``, a whole number
    and at least pp (a pipeline needs a micro-batch per stage). ``context_parallel``
    false keeps cp = 1 (eager attention: see
    :func:`vramplan.distributed.check_attention_for_cp`)."""
    import numpy as np

    tp, pp, cp, ep, sp, mbs, dp, ok, overhead = _degree_grid(spec, num_gpus, gpus_per_node, tuple(micro_batch_sizes),
                                                              context_parallel)
    per_micro_step = np.maximum(dp * mbs, 1)
    m = global_batch // per_micro_step
    ok = ok & (global_batch % per_micro_step == 0) & (m >= pp) & (m >= 1)
    rows = int(ok.sum())
    return Degrees(dp=dp[ok], tp=tp[ok], pp=pp[ok], cp=cp[ok], ep=ep[ok], sp=sp[ok], mbs=mbs[ok],
                   m=m[ok], num_gpus=np.full(rows, num_gpus), overhead_bytes=np.full(rows, overhead))


@functools.lru_cache(maxsize=64)
def _degree_grid(spec: ModelSpec, num_gpus: int, gpus_per_node: int, micro_batch_sizes: tuple[int, ...],
                 context_parallel: bool) -> tuple:
    """The part of :func:`enumerate_degrees` that does not depend on the global batch
    (kept between the searches of one plan, which differ in sequence length and so in
    the batch): the (tp, pp, cp, ep, sp, mbs) grid, dp, the rows the model and the GPU
    count admit, and the fixed overhead. Read-only arrays."""
    import numpy as np

    tps = [t for t in _divisors(max_tensor_parallel(spec, gpus_per_node)) if tensor_parallel_problem(spec, t) is None]
    tps = [t for t in tps if num_gpus % t == 0]
    pps = [p for p in _divisors(num_gpus) if p <= spec.num_layers]
    cps = _powers_of_two_up_to(num_gpus) if context_parallel else [1]
    eps = [1] if spec.moe is None else [e for e in _divisors(spec.moe.num_experts) if e <= num_gpus]
    grid_rows = len(tps) * len(pps) * len(cps) * len(eps) * 2 * len(micro_batch_sizes)
    if grid_rows > MAX_LAYOUT_ROWS:
        raise InputError(f"the search over {num_gpus:,} GPUs would enumerate {grid_rows:,} candidate layouts "
                         f"(more than {MAX_LAYOUT_ROWS:,}); fix some degrees (tp, pp, cp, ep) or give "
                         "fewer GPUs or micro-batch sizes", fields=("tp", "pp", "cp", "ep"))
    grid = np.array(np.meshgrid(tps, pps, cps, eps, [0, 1], list(micro_batch_sizes), indexing="ij")).reshape(6, -1)
    tp, pp, cp, ep, sp, mbs = grid
    model_parallel = tp * pp * cp
    dp = num_gpus // model_parallel
    ok = (num_gpus % model_parallel == 0) & ((dp * cp) % ep == 0) & ((sp == 0) | (tp > 1))
    columns = (tp, pp, cp, ep, sp.astype(bool), mbs, dp, ok)
    for c in columns:
        c.flags.writeable = False
    return (*columns, default_overhead_bytes(num_gpus))


DEFAULT_GLOBAL_BATCH_TOKENS = 2**22
"""Tokens per optimizer step when the user gives no global batch: 4M (Llama 2 and 3
pre-training used 4M-16M; GPT-3 up to 3.2M)."""


def default_global_batch(seq: int, num_gpus: int) -> int:
    """Sequences per step: ``DEFAULT_GLOBAL_BATCH_TOKENS / seq`` rounded to a power
    of two, and at least one per GPU so plain data parallelism stays possible."""
    seqs = max(1, DEFAULT_GLOBAL_BATCH_TOKENS // seq)
    seqs = 2 ** int(math.log2(seqs))
    return max(seqs, 2 ** math.ceil(math.log2(num_gpus)))


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One layout that fits, with its memory and step time."""

    layout: ParallelLayout
    micro_batch_size: int
    recompute: str
    peak_bytes: int
    host_bytes_per_node: int
    """Host RAM per node for offloaded states (0 without offload)."""
    step_s: float
    tokens_per_s: float
    parts: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"layout": self.layout.to_dict(), "describe": self.layout.describe(),
                "micro_batch_size": self.micro_batch_size, "recompute": self.recompute,
                "peak_bytes": self.peak_bytes, "host_bytes_per_node": self.host_bytes_per_node,
                "step_s": self.step_s, "tokens_per_s": self.tokens_per_s, "parts": self.parts}


@dataclass(frozen=True, kw_only=True)
class PlanResult:
    """The planner's answer."""

    candidates: tuple[Candidate, ...]
    """Fitting layouts, fastest first (at most ``top``)."""
    evaluated: int
    """Layouts evaluated."""
    fitting: int
    """Layouts that fit."""
    min_gpus: int | None
    """Fewest GPUs (of those tried) on which some layout fits."""
    min_peak_bytes: int
    """Smallest per-GPU peak over every layout tried (what it would take to fit)."""
    min_gpus_peak_bytes: int | None
    """Smallest per-GPU peak among the fitting layouts on ``min_gpus`` GPUs."""
    assumptions: tuple[str, ...]
    """Everything the ranking assumed."""
    min_gpus_without_offload: int | None = None
    """Fewest GPUs on which a layout without CPU offload fits."""

    def to_dict(self) -> dict:
        return {"candidates": [c.to_dict() for c in self.candidates], "evaluated": self.evaluated,
                "fitting": self.fitting, "min_gpus": self.min_gpus, "min_peak_bytes": self.min_peak_bytes,
                "min_gpus_peak_bytes": self.min_gpus_peak_bytes,
                "min_gpus_without_offload": self.min_gpus_without_offload,
                "assumptions": list(self.assumptions)}


@dataclass(frozen=True, kw_only=True)
class _StateKeys:
    """The distinct (dp, tp, pp, cp, ep) among a search's rows. The model-state bytes
    (:func:`~vramplan.parallel.shard_model_states`) depend on nothing else (not on the
    micro-batch, sequence parallelism or recomputation), so they are computed once per
    key and each row takes its key's: the same element-wise arithmetic on fewer
    elements, hence the same figures."""

    keys: Degrees
    """One row per key (its first row in the search)."""
    index: np.ndarray
    """The key of every row."""

    @classmethod
    def of(cls, d: Degrees) -> _StateKeys:
        import numpy as np

        columns = (d.dp, d.tp, d.pp, d.cp, d.ep)
        radices = [int(c.max()) + 1 for c in columns] if d.size else [1]
        if math.prod(radices) < 2**63:  # one int64 per row, ordered as the tuples are: a 1-d sort
            code = np.zeros(d.size, dtype=np.int64)
            for column, radix in zip(columns, radices):
                code = code * radix + column
            _, first, index = np.unique(code, return_index=True, return_inverse=True)
        else:
            _, first, index = np.unique(np.stack(columns, axis=1), axis=0, return_index=True, return_inverse=True)
        return cls(keys=d.select(first), index=index.reshape(-1))

    def tiled(self, times: int) -> _StateKeys:
        """The keys of the rows repeated ``times`` over (:meth:`Degrees.with_recomputes`)."""
        import numpy as np

        return replace(self, index=np.tile(self.index, times))


@dataclass(frozen=True, kw_only=True)
class _StageParams:
    """Parameters on one GPU of a pipeline stage, per :class:`_StateKeys` key."""

    rank: RankParams
    layer_params: np.ndarray
    root_params: np.ndarray

    @classmethod
    def of(cls, coeffs: SliceCoefficients, keys: Degrees, stage: str) -> _StageParams:
        return cls(rank=rank_params(coeffs, tp=keys.tp, pp=keys.pp, ep=keys.ep, stage=stage),
                   layer_params=layer_params(coeffs, tp=keys.tp, ep=keys.ep), root_params=root_params(coeffs, tp=keys.tp))


@dataclass(frozen=True, kw_only=True)
class _StageRows:
    """The engine-independent terms of a search's rows (recomputation choices
    included): the activations of the first pipeline stage of every row and of the
    last stage of the rows with a pipeline (with ``pp == 1`` one stage holds
    everything, so the first stage is the whole GPU), and the parameters of both
    stages per model-state key."""

    keys: _StateKeys
    """The rows' model-state keys."""
    first: BackwardActivations
    first_params: _StageParams
    first_overhead: np.ndarray
    """The rows' fixed overheads as floats (what the arithmetic converts them to)."""
    pipelined: np.ndarray
    """Rows with pp > 1 (a boolean mask)."""
    last: BackwardActivations
    """The last stage of the pipelined rows."""
    last_params: _StageParams
    last_index: np.ndarray
    """The keys of the pipelined rows."""
    last_m: np.ndarray
    last_overhead: np.ndarray
    """Micro-batches and fixed overheads of the pipelined rows."""
    last_position: np.ndarray
    """Each pipelined row's index among the pipelined rows."""


def _stage_rows(req: PlanRequest, d: Degrees, coeffs: SliceCoefficients, per_recompute: list[ActivationCoefficients],
                keys: _StateKeys) -> _StageRows:
    """:class:`_StageRows` of the rows ``d`` (before the recomputation choices ride
    along: :meth:`Degrees.with_recomputes`): each choice's activations are those rows'
    with its coefficients, laid out choice-major as the rows are."""
    import numpy as np

    def backward(stage: str, rows: Degrees) -> BackwardActivations:
        parts = [stage_terms(coeffs, a, stage=stage, virtual_stages=req.virtual_stages, tp=rows.tp, pp=rows.pp,
                             cp=rows.cp, ep=rows.ep, sp=rows.sp, micro_batch_size=rows.mbs, micro_batches=rows.m,
                             with_params=False).backward for a in per_recompute]
        return BackwardActivations(high_bytes=np.concatenate([p.high_bytes for p in parts]),
                                   current_layer_bytes=np.concatenate([p.current_layer_bytes for p in parts]))

    k = len(per_recompute)
    pipelined0 = d.pp > 1
    last0 = d.select(pipelined0)
    pipelined = np.tile(pipelined0, k)
    overhead = np.tile(d.overhead_bytes.astype(float), k)
    return _StageRows(keys=keys, first=backward("first", d), first_params=_StageParams.of(coeffs, keys.keys, "first"),
                      first_overhead=overhead, pipelined=pipelined, last=backward("last", last0),
                      last_params=_StageParams.of(coeffs, keys.keys, "last"), last_index=keys.index[pipelined],
                      last_m=np.tile(last0.m, k), last_overhead=overhead[pipelined],
                      last_position=np.cumsum(pipelined) - 1)


@dataclass(frozen=True, kw_only=True)
class _KeyPeaks:
    """One engine setting's model-state side, per :class:`_StateKeys` key."""

    first: StatePeaks
    last: StatePeaks | None
    """The last pipeline stage's (``None`` when no row has a pipeline)."""
    params: np.ndarray
    """Parameters on the GPU (the first stage's)."""
    host_bytes: np.ndarray
    """Host bytes per node for offloaded states (busiest stage x GPUs in the node)."""


def _key_peaks(req: PlanRequest, setting: EngineSetting, states: JobStates, shared: _StageRows) -> _KeyPeaks:
    """:class:`_KeyPeaks` of ``setting``: :func:`~vramplan.parallel.shard_model_states`
    and :func:`~vramplan.distributed.state_peaks` once per key (the model-state half of
    :func:`~vramplan.distributed.training_terms`)."""
    import numpy as np

    template = setting.layout(req.gpus_per_node)
    keys = shared.keys.keys

    def key_states(params: _StageParams):
        sharded = shard_model_states(recipe=states.recipe, params=params.rank, layout=template, dp=keys.dp,
                                     cp=keys.cp, ep=keys.ep, tp=keys.tp, pp=keys.pp,
                                     layer_params=params.layer_params, root_params=params.root_params,
                                     trainable_fraction=states.trainable_fraction)
        return sharded, state_peaks(sharded, step_temporaries_bytes(sharded, states), keys.overhead_bytes)

    first_states, first = key_states(shared.first_params)
    host_per_gpu = np.asarray(first_states.host_per_gpu_bytes + 0 * keys.dp, dtype=float)
    last = None
    if shared.last_index.size:
        last_states, last = key_states(shared.last_params)
        host_per_gpu = np.where(keys.pp > 1, np.maximum(host_per_gpu, last_states.host_per_gpu_bytes), host_per_gpu)
    return _KeyPeaks(first=first, last=last, params=shared.first_params.rank.total,
                     host_bytes=host_per_gpu * np.minimum(keys.num_gpus, req.gpus_per_node))


def _row_peaks(req: PlanRequest, setting: EngineSetting, d: Degrees, shared: _StageRows, kp: _KeyPeaks,
               rows: np.ndarray | None) -> np.ndarray:
    """Per-GPU peak bytes (the busiest stage) of the rows ``rows`` of the search
    (ascending indices; ``None``: every row): the per-layout half of
    :func:`~vramplan.distributed.training_terms`
    (:func:`~vramplan.distributed.stage_peak_bytes`)."""
    import numpy as np

    template = setting.layout(req.gpus_per_node)
    if rows is None:
        first_keys, first_acts, m, overhead = shared.keys.index, shared.first, d.m, shared.first_overhead
    else:
        first_keys, first_acts = shared.keys.index[rows], shared.first.take(rows)
        m, overhead = d.m[rows], shared.first_overhead[rows]
    _, peak = stage_peak_bytes(kp.first.take(first_keys), first_acts, template, micro_batches=m, overhead=overhead)
    if kp.last is not None:
        if rows is None:
            pipelined, last_keys, last_acts = shared.pipelined, shared.last_index, shared.last
            m, overhead = shared.last_m, shared.last_overhead
        else:
            pipelined = shared.pipelined[rows]
            at = shared.last_position[rows[pipelined]]  # those rows among the pipelined ones
            last_keys, last_acts = shared.last_index[at], shared.last.take(at)
            m, overhead = shared.last_m[at], shared.last_overhead[at]
        if last_keys.size:
            _, last_peak = stage_peak_bytes(kp.last.take(last_keys), last_acts, template, micro_batches=m,
                                            overhead=overhead)
            peak[pipelined] = np.maximum(peak[pipelined], last_peak)
    return peak


MAX_LAYOUT_ROWS = 2_000_000
"""Most (GPU count, degrees, micro-batch) rows the planner enumerates in one search
(each is then evaluated per engine setting and recomputation choice); a search that
would enumerate more is refused with the count, so a request finishes in seconds."""


MAX_EVALUATED_LAYOUTS = 2_000_000
"""Most layouts (rows x engine settings x recomputation choices) one search evaluates.
The whole plan of DeepSeek-V3 on up to 4,096 H100 (five searches: the layouts, the
largest micro-batch, the longest context) evaluates 1.1 million in about 0.4 s of one
core, the process peaking near 120 MB (``benchmarks/bench_planner.py``); the cap keeps
a search near a second, and larger searches are refused with the count."""


def _check_scale(spec: ModelSpec, total_params: int, req: PlanRequest) -> None:
    """Refuse a job whose byte figures could leave int64's exact range in the vectorised
    arithmetic: parameters x 32 bytes (weights, gradients, fp32 master and two moments
    with room to spare) and tokens x hidden x layers x 64 bytes of activations."""
    mbs = max(req.micro_batch_sizes)
    tokens = req.job.seq * max(mbs, req.job.micro_batch_size)
    bound = (total_params * 32 + tokens * spec.hidden_size * spec.num_layers * 64
             + tokens * spec.vocab_size * 16)
    if bound >= v.INT64_SAFE:
        raise InputError(f"{spec.name}: {total_params:,} parameters at {tokens:,} tokens per micro-batch give "
                         f"byte figures near {bound:.2e}, beyond the {v.INT64_SAFE:.2e} the planner computes "
                         "exactly; shorten the sequence or shrink the model")


def _check_figures(*arrays: np.ndarray) -> list[float]:
    """Every byte figure the planner compares is finite and non-negative (an overflow
    that slipped through :func:`_check_scale` is reported, never ranked). Returns each
    array's minimum (``inf`` for an empty one)."""
    import numpy as np

    minima = []
    for a in arrays:
        a = np.asarray(a)
        if not a.size:
            minima.append(math.inf)
            continue
        lo, hi = float(a.min()), float(a.max())  # a NaN makes both NaN
        if not (lo >= 0 and hi < v.INT64_SAFE):
            raise InputError("the planner's byte figures left the exact range (overflow): the model or layout "
                             f"is beyond what can be planned (figures up to {v.INT64_SAFE:.2e} B)")
        minima.append(lo)
    return minima


def _all_degrees(req: PlanRequest) -> Degrees:
    """The degree arrays of every GPU count, concatenated (each row with its GPU count
    and fixed overhead); restricted to the user's fixed degrees."""
    spec, job = req.job.model, req.job
    parts = []
    rows = 0
    for n in sorted(set(req.gpu_counts)):
        batch = req.global_batch or default_global_batch(job.seq, n)
        d = enumerate_degrees(spec, n, req.gpus_per_node, batch, req.micro_batch_sizes,
                              context_parallel=job.setup.attention in CP_ATTENTION_KERNELS)
        rows += d.size
        if rows > MAX_LAYOUT_ROWS:
            raise InputError(f"the search over {len(set(req.gpu_counts))} GPU count(s) up to "
                             f"{max(req.gpu_counts):,} enumerates more than {MAX_LAYOUT_ROWS:,} layouts; fix "
                             "some degrees (tp, pp, cp, ep) or give fewer GPUs", fields=("tp", "pp", "cp", "ep"))
        parts.append(d)
    d = Degrees.concatenate(parts)
    keep = d.cp <= job.seq  # cp splits each sequence: at most one token per rank
    for name, value in req.fixed_degrees:
        keep &= d[name] == value
    keep &= sequence_splits_evenly(job.seq, tp=d.tp, cp=d.cp, sp=d.sp)
    if req.virtual_stages > 1:
        # Megatron's interleaved schedule: a pipeline, and micro-batches in whole rounds of pp.
        keep &= (d.pp > 1) & (d.m % d.pp == 0) & (d.pp * req.virtual_stages <= spec.num_layers)
    return d.select(keep)


def _recomputes(req: PlanRequest) -> tuple[str, ...]:
    """Recomputation choices worth trying: with flash attention "selective" saves
    nothing over "none" (no score matrix is kept), so it is skipped."""
    if req.job.setup.attention in ("flash", "sdpa"):
        return tuple(r for r in req.recomputes if r != "selective") or ("none",)
    return req.recomputes


def plan(req: PlanRequest, *, top: int = 10) -> PlanResult:
    """Evaluate every layout of ``req`` and keep those that fit, fastest step first."""
    return _search(req, top=top, any_fit=False)


def any_layout_fits(req: PlanRequest) -> bool:
    """Whether some layout of ``req`` fits: :func:`plan`'s search, stopping at the
    first engine setting with a layout that fits (no ranking)."""
    return _search(req, top=1, any_fit=True).fitting > 0


def _search(req: PlanRequest, *, top: int, any_fit: bool) -> PlanResult:
    """:func:`plan`; with ``any_fit`` it returns as soon as a layout fits (counts partial)."""
    import numpy as np

    from vramplan.model import count_params

    job = req.job
    spec = job.model
    spec.check_memory_model()
    counts = count_params(spec)
    _check_scale(spec, counts.total_params, req)
    active = counts.active_params
    budget = req.budget_bytes
    states_by_engine = {e: job_states(job, e) for e in {s.engine for s in req.engines}}
    coeffs_by_threshold: dict[int, SliceCoefficients] = {}
    recomputes = _recomputes(req)
    # Every engine the planner tries runs the model on 16-bit parameters (not AMP autocast).
    run_setup = engine_setup(job.setup, "deepspeed")
    # Each choice's coefficients as floats, as arrays of them would hold them.
    per_recompute = [ActivationCoefficients(**{f.name: float(getattr(a, f.name)) for f in fields(a)})
                     for a in (ActivationCoefficients.from_setup(spec, replace(run_setup, recompute=r))
                               for r in recomputes)]
    extra_flops = np.array([RECOMPUTE_EXTRA_FLOPS[r] for r in recomputes], dtype=float)
    evaluated = fitting = 0
    min_peak = math.inf
    min_gpus: int | None = None
    least: tuple[int, float] | None = None  # (fewest GPUs that fit, smallest peak there)
    no_offload: int | None = None  # fewest GPUs on which a layout without offload fits
    pool: list[tuple[tuple, tuple]] = []  # (sort key, arguments of _candidate): built for the winners only
    per_gpu_rate = req.global_batch is None and len(req.gpu_counts) > 1
    d = _all_degrees(req)
    planned = d.size * len(req.engines) * len(recomputes)
    if planned > MAX_EVALUATED_LAYOUTS:
        raise InputError(f"the search would evaluate {planned:,} layouts ({d.size:,} degree choices x "
                         f"{len(req.engines)} engine settings x {len(recomputes)} recomputation choices), more "
                         f"than the {MAX_EVALUATED_LAYOUTS:,} one plan evaluates; fix some degrees (tp, pp, "
                         "cp, ep, zero/fsdp) or give fewer GPUs", fields=("tp", "pp", "cp", "ep", "zero", "fsdp"))
    if d.size:
        # Recomputation choices ride along as one more array dimension: each row carries
        # its own activation coefficients.
        keys = _StateKeys.of(d).tiled(len(recomputes))
        rows_per_key = np.bincount(keys.index, minlength=keys.keys.size)
        untiled = d
        d = d.with_recomputes(extra_flops)
        shared_by_threshold: dict[int, _StageRows] = {}
        # engine-independent: once for every setting, when a first layout fits (a
        # feasibility check ranks nothing)
        costs: dict[str, np.ndarray] | None = None
        overhead = d.overhead_bytes.astype(float)  # as the arithmetic converts it, once
        slack_fraction = Overheads().allocator_slack_fraction
        for setting in req.engines:
            threshold = setting.layout(req.gpus_per_node).zero.param_persistence_threshold
            if threshold not in coeffs_by_threshold:
                coeffs_by_threshold[threshold] = slice_coefficients(spec, threshold)
                # Parameters and activations do not depend on the engine: computed once.
                shared_by_threshold[threshold] = _stage_rows(req, untiled, coeffs_by_threshold[threshold], per_recompute,
                                                             keys)
            runnable = engine_runs(setting, req.virtual_stages, keys.keys)  # the engine's own rules (tp, pp, cp)
            if not runnable.any():
                continue
            evaluated += int(rows_per_key[runnable].sum())
            kp = _key_peaks(req, setting, states_by_engine[setting.engine], shared_by_threshold[threshold])
            _check_figures(kp.host_bytes)
            # Only the layouts the engine runs are evaluated (the others are never counted, kept or ranked).
            rows = None if runnable.all() else np.flatnonzero(runnable[keys.index])
            peak = _row_peaks(req, setting, d, shared_by_threshold[threshold], kp, rows)
            lowest = _check_figures(peak)[0]
            row_keys = keys.index if rows is None else keys.index[rows]
            host_ok = (kp.host_bytes <= req.host_budget_bytes)[row_keys]
            if host_ok.all():
                min_peak = min(min_peak, lowest)
            elif host_ok.any():
                min_peak = min(min_peak, float(peak[host_ok].min()))
            # the verdict's rule (vramplan.memory.overhead.fit_verdict): the allocator slack over the
            # tensors beside the peak, which already holds the fixed overheads
            slack = np.floor(slack_fraction * (peak - (overhead if rows is None else overhead[rows])))
            fits = (peak + slack <= budget) & host_ok
            count = int(np.count_nonzero(fits))
            if not count:
                continue
            fitting += count
            if any_fit:
                break
            fits = np.flatnonzero(fits)  # the fitting rows' indices: one pass over the mask for every column
            fit_peak = peak[fits]
            fits = fits if rows is None else rows[fits]  # as rows of the search
            sub = d.select(fits)
            smallest = int(sub.num_gpus.min())
            here = (smallest, float(fit_peak[sub.num_gpus == smallest].min()))
            least = here if least is None else min(least, here)
            min_gpus = least[0]
            if setting.offload == "none":
                no_offload = smallest if no_offload is None else min(no_offload, smallest)
            fit_keys = keys.index[fits]
            costs = layout_costs(req, job, d, active) if costs is None else costs
            times = step_time_s(req, job, setting, sub, kp.params[fit_keys], active,
                                costs={k: v[fits] for k, v in costs.items()})
            fit_host = kp.host_bytes[fit_keys]
            # Different GPU counts carry different default batches: compare throughput per GPU.
            score = -times["tokens_per_step"] / times["step_s"] / sub.num_gpus if per_gpu_rate else times["step_s"]
            best = np.argpartition(score, top)[:top] if score.size > top else np.arange(score.size)
            for i in best[np.argsort(score[best], kind="stable")]:
                key = (OFFLOAD_RANKS_LAST and setting.offload != "none", float(score[i]), int(sub.num_gpus[i]),
                       float(fit_peak[i]))
                recompute = recomputes[int(sub.recompute[i])]
                pool.append((key, (req, setting, recompute, sub, times, fit_peak, fit_host, int(i))))
    pool.sort(key=lambda entry: entry[0])
    winners = tuple(_candidate(*args) for _, args in pool[:top])
    return PlanResult(candidates=winners, evaluated=evaluated, fitting=fitting, min_gpus=min_gpus,
                      min_peak_bytes=int(min_peak) if math.isfinite(min_peak) else 0,
                      min_gpus_peak_bytes=int(least[1]) if least else None, min_gpus_without_offload=no_offload,
                      assumptions=assumptions(req))


def _candidate(req: PlanRequest, setting: EngineSetting, recompute: str, sub: Degrees,
               times: dict[str, np.ndarray], peak: np.ndarray, host: np.ndarray, i: int) -> Candidate:
    layout = ParallelLayout(dp=int(sub.dp[i]), tp=int(sub.tp[i]), pp=int(sub.pp[i]),
                            cp=int(sub.cp[i]), ep=int(sub.ep[i]), sequence_parallel=bool(sub.sp[i]),
                            zero_stage=setting.zero_stage, fsdp=setting.fsdp, offload=setting.offload,
                            micro_batches=int(sub.m[i]), virtual_stages=req.virtual_stages,
                            gpus_per_node=req.gpus_per_node, engine=setting.engine)
    step = float(times["step_s"][i])
    return Candidate(layout=layout, micro_batch_size=int(sub.mbs[i]), recompute=recompute,
                     peak_bytes=int(peak[i]), host_bytes_per_node=int(host[i]), step_s=step, tokens_per_s=float(times["tokens_per_step"][i]) / step,
                     parts={k: float(v[i]) for k, v in times.items()})


def assumptions(req: PlanRequest) -> tuple[str, ...]:
    """Every assumption the ranking makes, in words (printed with the plan)."""
    from vramplan.errors import Remark
    from vramplan.units import format_bytes

    gpu = req.gpu
    return (
        Remark(f"memory budget per GPU: {format_bytes(gpu.usable_memory_bytes)} usable x (1 - headroom "
               f"{req.headroom:.0%}), holding the peak (CUDA context, cuBLAS and NCCL included) + "
               f"{Overheads().allocator_slack_fraction:.0%} allocator slack over the tensors; "
               f"host RAM per node for offload: {format_bytes(req.host_budget_bytes)}"
               + (" (host_bytes_per_node)" if req.host_bytes_per_node is not None else f" ({gpu.segment} default)"),
               fields=("host_bytes_per_node",)),
        f"global batch: {req.global_batch} sequences" if req.global_batch else
        f"global batch: {DEFAULT_GLOBAL_BATCH_TOKENS:,} tokens of sequences (power of two, >= 1 per GPU)",
        *step_assumptions(req),
        "layouts with CPU offload rank after every layout without it that fits",
        f"tensor parallelism inside a node of {req.gpus_per_node} GPUs",
    )


# --------------------------------------------------------------------------- questions

def largest_micro_batch(req: PlanRequest, limit: int = 256) -> Candidate | None:
    """The largest micro-batch size (powers of two up to ``limit``) for which some
    layout fits, with the fastest such layout."""
    for mbs in reversed(_powers_of_two_up_to(limit)):
        result = plan(replace(req, micro_batch_sizes=(mbs,),
                              global_batch=max(req.global_batch or 0, mbs * max(req.gpu_counts))), top=1)
        if result.candidates:
            return result.candidates[0]
    return None


def context_ladder(req: PlanRequest, limit: int | None = None) -> tuple[int, ...]:
    """The sequence lengths :func:`longest_context` chooses among: powers of two from
    ``MIN_CONTEXT_TOKENS`` up to ``limit`` (default the model's max positions)."""
    limit = limit or req.job.model.max_position_embeddings
    return tuple(s for s in _powers_of_two_up_to(limit) if s >= MIN_CONTEXT_TOKENS)


def longest_context(req: PlanRequest, limit: int | None = None, *,
                    best_at_request: Candidate | None = None) -> tuple[int, Candidate] | None:
    """The longest sequence of :func:`context_ladder` for which some layout fits, with
    the fastest such layout.

    Bisection over the ladder (about log2 of its length feasibility checks instead of
    one full search per rung), with one full search at the rung found (the check of the
    last rung the bisection can still reach is that search): the memory a
    job needs grows with its sequence length, so the rungs that fit are a prefix of
    the ladder. (With the default global batch the token budget per step is fixed, so
    a longer sequence means fewer micro-batches per step, never fewer tokens per
    micro-batch.) A feasibility check stops at the first engine setting that fits.
    ``best_at_request``: the fastest layout of ``req`` itself when already planned
    (its sequence length then needs no second search)."""
    ladder = context_ladder(req, limit)
    if not ladder:
        return None

    def at(i: int) -> PlanRequest:
        return replace(req, job=req.job.with_setup(seq=ladder[i]))

    known = ladder.index(req.job.seq) if best_at_request is not None and req.job.seq in ladder else None
    ranked: dict[int, Candidate] = {} if known is None else {known: best_at_request}
    fails = len(ladder)  # from rung ``fails`` on nothing fits

    def fits_at(i: int) -> bool:
        # The last rung the bisection can still find (``fails - 1``) is the answer when it
        # fits, so it gets the full search, which answers whether it fits as well (with
        # nothing fitting, both evaluate every engine setting).
        if i < fails - 1:
            return any_layout_fits(at(i))
        result = plan(at(i), top=1)
        if result.candidates:
            ranked[i] = result.candidates[0]
        return bool(result.candidates)

    if known is None and not fits_at(0):
        return None
    fits = known if known is not None else 0  # rung ``fits`` fits
    while fails - fits > 1:
        mid = (fits + fails) // 2
        if fits_at(mid):
            fits = mid
        else:
            fails = mid
    if fits not in ranked:
        ranked[fits] = plan(at(fits), top=1).candidates[0]
    return ladder[fits], ranked[fits]


MIN_CONTEXT_TOKENS = 512
"""Shortest sequence the context search starts from."""


@dataclass(frozen=True, kw_only=True)
class Change:
    """A change that would make the job fit (or come closer)."""

    change: str
    """What to change, in words."""
    min_peak_bytes: int
    """Per-GPU memory after the change: the smallest peak on the fewest GPUs that fit,
    or (when nothing fits) the smallest peak of any layout."""
    fits: bool
    """Whether some layout fits after the change."""
    min_gpus: int | None = None
    """Fewest GPUs that fit after the change."""
    settings: dict[str, object] = field(default_factory=dict)
    """The ``plan`` option values that make the change (names of :mod:`vramplan.options`)."""

    def to_dict(self) -> dict:
        return {"change": self.change, "min_peak_bytes": self.min_peak_bytes, "fits": self.fits,
                "min_gpus": self.min_gpus, "settings": dict(self.settings)}


def cheapest_changes(req: PlanRequest, max_gpus: int = 4096) -> tuple[Change, ...]:
    """What would make the job fit, each with the memory it needs: more GPUs, full
    recomputation, LoRA, QLoRA (4-bit base), a shorter sequence, a smaller micro-batch
    (the LoRA/QLoRA memory comes from :mod:`vramplan.training`'s model). Each change
    re-runs the vectorised planner; sorted by whether it fits, then by memory."""
    job = req.job
    largest = max(req.gpu_counts)
    out: list[Change] = []

    def attempt(text: str, settings: dict[str, object], new_req: PlanRequest) -> None:
        result = plan(new_req, top=1)
        fits = result.fitting > 0
        need = result.min_gpus_peak_bytes if fits and result.min_gpus_peak_bytes else result.min_peak_bytes
        out.append(Change(change=text, min_peak_bytes=need, fits=fits, min_gpus=result.min_gpus, settings=settings))

    more = tuple(n for n in _powers_of_two_up_to(max_gpus) if n > largest)
    if more:
        attempt(f"more GPUs (up to {max_gpus})", {"max_gpus": max_gpus}, replace(req, gpu_counts=more))
    attempt("full activation recomputation", {"recompute": "full"}, replace(req, recomputes=("full",)))
    if job.setup.method == "full":
        attempt(f"LoRA (r={job.setup.lora_rank} on all linear layers)", {"method": "lora"},
                replace(req, job=job.with_setup(method="lora")))
    if job.setup.method != "qlora":
        attempt("QLoRA (4-bit NF4 base weights, LoRA adapters)", {"method": "qlora"},
                replace(req, job=job.with_setup(method="qlora")))
    if job.seq > MIN_CONTEXT_TOKENS:
        attempt(f"shorter sequence ({job.seq // 2} tokens)", {"seq": job.seq // 2},
                replace(req, job=job.with_setup(seq=job.seq // 2)))
    if min(req.micro_batch_sizes) > 1:
        attempt("micro-batch size 1", {"batch": 1}, replace(req, micro_batch_sizes=(1,)))
    return tuple(sorted(out, key=lambda c: (not c.fits, c.min_peak_bytes)))


def gpu_counts_up_to(max_gpus: int, gpus_per_node: int = 8) -> tuple[int, ...]:
    """GPU counts the planner tries for ``--max-gpus``: powers of two up to a node,
    then whole nodes in powers of two."""
    counts = [n for n in _powers_of_two_up_to(max_gpus)]
    counts += [k * gpus_per_node for k in range(1, max_gpus // gpus_per_node + 1)
               if (k & (k - 1)) == 0 or k * gpus_per_node == max_gpus]
    return tuple(sorted({n for n in counts if n <= max_gpus} | {max_gpus}))


# --------------------------------------------------------------------------- inference

@dataclass(frozen=True, kw_only=True)
class InferenceJob:
    """What is served, independent of the layout."""

    model: ModelSpec
    """The :class:`~vramplan.model.ModelSpec`."""
    weights: str = "bf16"
    """Weight format (a :mod:`vramplan.quant` name: bf16, fp8, awq-int4, ...)."""
    context: int = 8192
    """Tokens per sequence held in the KV cache."""
    batch: int = 1
    """Concurrent sequences over all replicas."""
    kv_dtype: str = "fp16"
    """KV-cache dtype."""
    engine: str = "hf"
    """Serving engine whose memory model sizes each layout (:mod:`vramplan.engines`)."""


@dataclass(frozen=True, kw_only=True)
class InferenceCandidate:
    """One serving layout that fits."""

    tp: int
    pp: int
    replicas: int
    peak_bytes: int
    weights_bytes: int
    kv_cache_bytes: int
    other_bytes: int
    """Everything else on the GPU: activations, logits, CUDA context, workspaces, NCCL, allocator slack."""
    decode_ms_per_token: float
    """Memory-bound decode step: bytes each GPU reads per token / HBM bandwidth (x pp stages in turn)."""

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    def to_dict(self) -> dict:
        return {"tp": self.tp, "pp": self.pp, "replicas": self.replicas, "num_gpus": self.num_gpus,
                "peak_bytes": self.peak_bytes, "weights_bytes": self.weights_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "other_bytes": self.other_bytes,
                "decode_ms_per_token": self.decode_ms_per_token}


def plan_inference(job: InferenceJob, gpu: GpuSpec, gpu_counts: tuple[int, ...], *, headroom: float = 0.05,
                   gpus_per_node: int = 8, top: int = 10, tp: int | None = None,
                   pp: int | None = None) -> tuple[tuple[InferenceCandidate, ...], int]:
    """Serving layouts (tp x pp per replica, replicas = GPUs / (tp x pp)) that fit,
    fewest GPUs first, then the fastest memory-bound decode.

    Each (tp, sequences per replica) is estimated once by
    :func:`vramplan.inference.estimate_inference` (Hugging Face-style serving: weights,
    KV cache, prefill activations, logits, overheads, all tp-aware); a pipeline of pp
    stages keeps the busiest stage's share of the weights (by parameters) and of the
    KV cache (by layers), and every stage the full activations and overheads. ``tp``
    and ``pp``, when given, fix those degrees (the search keeps only them, before the
    ``top`` cut). Returns the candidates and the number of layouts evaluated."""
    from vramplan.errors import VramplanError
    from vramplan.inference import InferenceSetup, estimate_inference

    spec = job.model
    budget = int(gpu.usable_memory_bytes * (1 - headroom))
    coeffs = slice_coefficients(spec)
    out: list[InferenceCandidate] = []
    evaluated = 0
    tps = [t for t in _divisors(max_tensor_parallel(spec, gpus_per_node)) if tensor_parallel_problem(spec, t) is None]
    cache: dict[tuple[int, int], Estimate | None] = {}

    def estimate(t: int, batch: int) -> Estimate | None:
        if (t, batch) not in cache:
            try:
                cache[(t, batch)] = estimate_inference(spec, InferenceSetup(
                    engine=job.engine, weights=job.weights, kv_dtype=job.kv_dtype, batch=batch, context=job.context, tp=t))
            except VramplanError:
                cache[(t, batch)] = None  # this tp cannot split the model (e.g. KV heads)
        return cache[(t, batch)]

    for n in sorted(gpu_counts):
        for t in tps:
            if n % t or (tp is not None and t != tp):
                continue
            whole = rank_params(coeffs, tp=t, pp=1, ep=1, stage="first").total
            for p in [p for p in _divisors(n // t) if p <= spec.num_layers and (pp is None or p == pp)]:
                replicas = n // (t * p)
                est = estimate(t, -(-job.batch // replicas))
                evaluated += 1
                if est is None:
                    continue
                share = max(rank_params(coeffs, tp=t, pp=p, ep=1, stage=s).total for s in ("first", "last")) / whole
                weights = int(est.get("weights") * share)
                kv = int(est.get("kv_cache") * int(stage_layers(spec.num_layers, p)) / spec.num_layers)
                rest = est.total_bytes - est.get("weights") - est.get("kv_cache")
                peak = weights + kv + rest
                if peak > budget:
                    continue
                decode_ms = 1e3 * (weights + kv) * p / gpu.memory_bandwidth_bytes_per_s
                out.append(InferenceCandidate(tp=t, pp=p, replicas=replicas, peak_bytes=peak, weights_bytes=weights,
                                              kv_cache_bytes=kv, other_bytes=rest, decode_ms_per_token=decode_ms))
    out.sort(key=lambda c: (c.num_gpus, c.decode_ms_per_token))
    return tuple(out[:top]), evaluated
