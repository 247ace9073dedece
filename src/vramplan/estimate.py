"""The result of every estimate: a tree of named memory components.

An :class:`Estimate` lists components by path (``"weights"``,
``"optimizer/exp_avg"``, ``"activations/attention"``), each with bytes *per GPU* at
the peak and a one-line note of where the number comes from. Tables, JSON, charts
and the web page are all renderings of this one object; its JSON shape does not
depend on the inputs (absent things are empty lists or ``null``, never missing), but
for the ``source`` and ``checkpoint`` keys, there only for a model read from files.

The first path segment must be one of :data:`CATEGORIES`, so a typo cannot invent a
new category.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vramplan.errors import InputError
from vramplan.model.stored import StoredCheckpoint, source_keys

CATEGORIES: tuple[str, ...] = (
    "weights",        # parameters as stored for compute (incl. quantization scales)
    "master_weights", # fp32 copy kept beside low-precision weights
    "gradients",      # parameter gradients (and accumulation buffers)
    "optimizer",      # optimizer states (exp_avg, exp_avg_sq, momentum, ...)
    "adapters",       # LoRA/DoRA parameters, their gradients and states
    "activations",    # tensors saved for backward / live in the forward
    "logits",         # output logits and the loss upcast
    "kv_cache",       # attention key/value cache
    "buffers",        # work buffers: dequantization, gathered shards, buckets, step temporaries
    "overhead",       # CUDA context, library workspaces, allocator slack
)

Phase = Literal["forward", "backward", "optimizer_step", "prefill", "decode", "load", "steady"]
Kind = Literal["training", "inference"]


@dataclass(frozen=True, kw_only=True)
class Component:
    """One named term of the memory at the peak, per GPU."""

    name: str
    """Path, e.g. ``"optimizer/exp_avg"``; first segment in :data:`CATEGORIES`."""
    bytes: int
    """Bytes per GPU at the peak."""
    note: str = ""
    """Where the number comes from (formula and source), one line."""

    def __post_init__(self) -> None:
        category = self.name.split("/", 1)[0]
        if category not in CATEGORIES:
            raise ValueError(f"component {self.name!r}: category must be one of {', '.join(CATEGORIES)}")
        if not isinstance(self.bytes, int) or isinstance(self.bytes, bool):
            raise TypeError(f"component {self.name!r}: bytes must be int, got {type(self.bytes).__name__}")
        if self.bytes < 0:
            raise ValueError(f"component {self.name!r}: bytes must be >= 0, got {self.bytes}")

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]

    def to_dict(self) -> dict:
        return {"name": self.name, "category": self.category, "bytes": self.bytes, "note": self.note}


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Does the estimate fit on one GPU of a given kind?

    The one fit rule of every command: ``required = peak + overheads + reserve <=
    capacity``. ``peak_bytes`` is the estimate's per-GPU total; ``overheads`` are the
    named non-tensor terms (CUDA context, cuBLAS workspace, allocator slack, from
    :func:`vramplan.memory.overhead.fit_overhead_components`) the estimate's
    components do not already hold; ``reserve_bytes`` is what the user keeps free
    (``reserve_bytes``) or the engine leaves unused."""

    gpu: str
    """GPU slug."""
    capacity_bytes: int
    """Usable memory of one GPU, as the runtime reports it."""
    peak_bytes: int
    """The estimate's per-GPU total (its components at the peak)."""
    overheads: tuple[Component, ...] = ()
    """Non-tensor overheads counted beside the peak (not among the estimate's components)."""
    reserve_bytes: int = 0
    """Memory the user asked to keep free (headroom target)."""

    @property
    def overhead_bytes(self) -> int:
        return sum(c.bytes for c in self.overheads)

    @property
    def required_bytes(self) -> int:
        """Peak + overheads + reserve: what the GPU must hold."""
        return self.peak_bytes + self.overhead_bytes + self.reserve_bytes

    @property
    def fits(self) -> bool:
        return self.headroom_bytes >= 0

    @property
    def headroom_bytes(self) -> int:
        """Capacity minus the requirement: what is left to use, negative exactly when
        it does not fit (the same sum as :attr:`fits`)."""
        return self.capacity_bytes - self.required_bytes

    @property
    def utilization(self) -> float:
        return self.required_bytes / self.capacity_bytes

    def to_dict(self) -> dict:
        return {"gpu": self.gpu, "capacity_bytes": self.capacity_bytes, "peak_bytes": self.peak_bytes,
                "overhead_bytes": self.overhead_bytes, "overheads": [c.to_dict() for c in self.overheads],
                "reserve_bytes": self.reserve_bytes, "required_bytes": self.required_bytes, "fits": self.fits,
                "headroom_bytes": self.headroom_bytes, "utilization": round(self.utilization, 4)}


@dataclass(frozen=True, kw_only=True)
class Change:
    """One change that would make a job fit (or come closer), re-estimated with the
    changed setup (:mod:`vramplan.advice`)."""

    change: str
    """What to change, in words."""
    settings: dict[str, object]
    """The option values that make the change (names of :mod:`vramplan.options`, laid
    over the job's own); the command line shows them as flags."""
    peak_bytes: int
    """Per-GPU peak of the changed setup (its estimate's ``total_bytes``)."""
    fits: bool
    """Whether the changed setup fits the same GPU under the same rule."""
    required_bytes: int
    """Peak + overheads + reserve of the changed setup (its verdict's requirement)."""
    host_bytes: int = 0
    """Host RAM the changed setup needs (offloaded states, CPU layers)."""

    def to_dict(self) -> dict:
        return {"change": self.change, "settings": dict(self.settings), "peak_bytes": self.peak_bytes, "fits": self.fits,
                "required_bytes": self.required_bytes, "host_bytes": self.host_bytes}


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """Per-GPU memory at the peak, as a list of components."""

    model: str
    """Model name as resolved."""
    kind: Kind
    """Training or inference."""
    components: tuple[Component, ...]
    """Terms at the peak, per GPU. Names are unique."""
    phase: str
    """Phase of the step in which the peak occurs."""
    phases: tuple[tuple[str, int], ...] = ()
    """(phase, per-GPU bytes at that phase's high point), in step order: the timeline."""
    host_components: tuple[Component, ...] = ()
    """Terms held in host (CPU) memory: offloaded states, llama.cpp layers on the CPU."""
    verdict: Verdict | None = None
    """Fit on the GPU the user named, or ``None``."""
    num_gpus: int = 1
    """GPUs the setup spans (per-GPU numbers are for the busiest one)."""
    details: dict[str, int | float | str | None] = field(default_factory=dict)
    """Scalar facts beside the breakdown (bytes per parameter, max batch, KV blocks, the
    rule-of-thumb figure); keys are stable for a given command."""
    assumptions: tuple[str, ...] = ()
    """Defaults the estimate took that the user did not set."""
    warnings: tuple[str, ...] = ()
    """Things the user should know (context beyond max positions, missing terms)."""
    changes: tuple[Change, ...] = ()
    """When the verdict says it does not fit: what would, ranked (:mod:`vramplan.advice`)."""
    checkpoint: StoredCheckpoint | None = field(default=None, compare=False)
    """What the model's files store, when it was read from files (``source`` and
    ``checkpoint`` keys of :meth:`to_dict`)."""
    readings: tuple[str, ...] = ()
    """How the input's spellings were read, one line each (``"weights int4 read as nf4: ..."``,
    a :class:`vramplan.errors.Remark` naming its field)."""

    def __post_init__(self) -> None:
        names = [c.name for c in self.components]
        if len(names) != len(set(names)):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate component names: {dup}")

    @property
    def total_bytes(self) -> int:
        """Per-GPU bytes at the peak: the sum of the components."""
        return sum(c.bytes for c in self.components)

    @property
    def host_bytes(self) -> int:
        return sum(c.bytes for c in self.host_components)

    def get(self, name: str) -> int:
        """Bytes of one component, or of a whole category / subtree (``"optimizer"``)."""
        return sum(c.bytes for c in self.components if c.name == name or c.name.startswith(name + "/"))

    def by_category(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.components:
            out[c.category] = out.get(c.category, 0) + c.bytes
        return out

    def with_verdict(self, gpu_slug: str, capacity_bytes: int, reserve_bytes: int = 0,
                     overheads: tuple[Component, ...] = ()) -> Estimate:
        """This estimate with the verdict on one GPU of ``capacity_bytes``;
        ``overheads``: the non-tensor terms to count beside the peak (see :class:`Verdict`)."""
        from dataclasses import replace

        if capacity_bytes <= 0:
            raise InputError(f"gpu memory: expected a positive size, got {capacity_bytes}")
        if reserve_bytes < 0:
            raise InputError(f"reserve_bytes: expected a non-negative size, got {reserve_bytes}")
        if reserve_bytes >= capacity_bytes:
            raise InputError(f"reserve_bytes: {reserve_bytes:,} B to keep free is not less than the "
                             f"{capacity_bytes:,} B usable on {gpu_slug}")
        return replace(self, verdict=Verdict(gpu=gpu_slug, capacity_bytes=capacity_bytes, peak_bytes=self.total_bytes,
                                             overheads=tuple(overheads), reserve_bytes=reserve_bytes))

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "kind": self.kind,
            "total_bytes": self.total_bytes,
            "phase": self.phase,
            "num_gpus": self.num_gpus,
            "components": [c.to_dict() for c in self.components],
            "by_category": self.by_category(),
            "phases": [{"phase": p, "bytes": b} for p, b in self.phases],
            "host_bytes": self.host_bytes,
            "host_components": [c.to_dict() for c in self.host_components],
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "details": dict(self.details),
            "assumptions": list(self.assumptions),
            "warnings": list(self.warnings),
            "changes": [c.to_dict() for c in self.changes],
            **source_keys(self.checkpoint),
            "readings": list(self.readings),
        }
