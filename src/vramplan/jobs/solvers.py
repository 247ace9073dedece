"""Solvers over :func:`~vramplan.jobs.result.estimate_rl`: each a bisection or a short
list of whole estimates, so every answer is a job the estimator itself says fits.

- :func:`utilization_range`: the smallest ``gpu_memory_utilization`` at which vLLM
  starts (one sequence of ``max_model_len`` fits its KV budget) and the largest that
  still leaves every other phase room. The estimate grows with the utilisation (the
  engine pre-allocates ``utilization x memory``) and vLLM's budget grows with it too,
  so both ends are monotone boundaries.
- :func:`longest_completion`: the longest completion that fits at the job's
  generations; :func:`most_generations`: the most completions per prompt whose
  rollout runs in one wave (every sequence in the KV pool at once).
- :func:`placement_options`: colocated and every split of the job's GPUs (engine
  GPUs in multiples of the engine tp), ranked: fits, fewest rollout waves, colocated
  before split (no GPU idles while another phase runs), then headroom.
- :func:`advice`: when the job does not fit, single changes (sleep level, offload,
  utilisation, recomputation, micro-batch, fused loss, sharding, LoRA, placement,
  more GPUs), each re-estimated, those that fit first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vramplan.errors import VramplanError
from vramplan.intmath import largest_true
from vramplan.jobs.result import RLEstimate, estimate_rl
from vramplan.jobs.roles import RLJob

UTILIZATION_STEP = 0.01
"""Utilisations are searched in hundredths (how every framework's flag is set)."""

MAX_GENERATIONS_SEARCHED = 1024
"""Upper end of the generations search."""


def _fits(job: RLJob) -> bool:
    try:
        return estimate_rl(job).fits
    except VramplanError:
        return False


def _with_utilization(job: RLJob, hundredths: int) -> RLJob:
    return replace(job, rollout=replace(job.rollout, gpu_memory_utilization=hundredths / 100))


@dataclass(frozen=True, kw_only=True)
class UtilizationRange:
    """Where ``gpu_memory_utilization`` works: ``None`` ends when nothing does."""

    smallest: float | None
    """Smallest utilisation at which vLLM starts (one max-length sequence fits its budget)."""
    largest: float | None
    """Largest utilisation at which every phase on every GPU fits."""

    def to_dict(self) -> dict:
        return {"smallest": self.smallest, "largest": self.largest}


def utilization_range(job: RLJob) -> UtilizationRange:
    """See the module docstring."""
    if not job.has_rollout:
        return UtilizationRange(smallest=None, largest=None)
    steps = int(round(1 / UTILIZATION_STEP))

    def starts(n: int) -> bool:
        r = estimate_rl(_with_utilization(job, n)).rollout
        return r is not None and r.starts

    def memory_fits(n: int) -> bool:
        est = estimate_rl(_with_utilization(job, n))
        return all(g.fits for g in est.groups)

    # starts() is False then True as the utilisation grows; memory_fits() True then False.
    first = steps + 1 - largest_true(lambda n: starts(steps + 1 - n), 1, steps) if starts(steps) else None
    last = largest_true(memory_fits, 1, steps)
    if first is None or last < first:
        return UtilizationRange(smallest=first / 100 if first else None, largest=None)
    return UtilizationRange(smallest=first / 100, largest=last / 100)


def longest_completion(job: RLJob) -> int:
    """Longest completion (tokens) that fits at the job's prompt and generations, up to
    the model's max positions; 0 when none does."""
    from vramplan.model.resolve import resolve_model

    limit = resolve_model(job.model).max_position_embeddings - job.prompt_tokens
    if limit < 1:
        return 0
    return max(0, largest_true(lambda n: _fits(replace(job, completion_tokens=n)), 1, limit))


def most_generations(job: RLJob) -> int:
    """Most completions per prompt whose whole rollout sits in the KV pool at once (one
    wave) while the job still fits; 0 when not even one."""
    if not job.has_rollout:
        return 0

    def ok(n: int) -> bool:
        try:
            est = estimate_rl(replace(job, generations=n))
        except VramplanError:
            return False
        return est.fits and est.rollout is not None and est.rollout.waves == 1

    return max(0, largest_true(ok, 1, MAX_GENERATIONS_SEARCHED))


@dataclass(frozen=True, kw_only=True)
class PlacementOption:
    placement: str
    engine_gpus: int
    trainer_gpus: int
    fits: bool
    peak_bytes: int | None
    """Largest per-GPU peak over the groups (None: the option is invalid)."""
    headroom_bytes: int | None
    waves: int | None
    error: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


MAX_SPLITS_SEARCHED = 64
"""Splits tried beyond that many GPUs: every multiple of the engine tp up to it, then
whole nodes and powers of two (the search stays bounded for any GPU count)."""


def engine_gpu_counts(job: RLJob) -> list[int]:
    """Engine GPU counts a split of the job's GPUs can take (multiples of the engine tp)."""
    tp = job.rollout.tp
    every = range(tp, job.gpus, tp)
    if len(every) <= MAX_SPLITS_SEARCHED:
        return list(every)
    node = job.gpus_per_node
    picks = {k for k in range(node, job.gpus, node) if k % tp == 0}
    picks |= {tp << i for i in range(job.gpus.bit_length()) if tp << i < job.gpus}
    ordered = sorted(picks)
    step = max(1, len(ordered) // MAX_SPLITS_SEARCHED)
    return ordered[::step][:MAX_SPLITS_SEARCHED]


def placement_options(job: RLJob) -> tuple[PlacementOption, ...]:
    """Colocated and each split of the job's GPUs, best first (module docstring)."""
    if not job.has_rollout:
        return ()
    jobs = [replace(job, placement="colocated", rollout_gpus=None)]
    jobs += [replace(job, placement="split", rollout_gpus=k) for k in engine_gpu_counts(job)]
    out = []
    for j in jobs:
        try:
            est = estimate_rl(j)
        except VramplanError as exc:
            out.append(PlacementOption(placement=j.placement, engine_gpus=j.engine_gpus,
                                       trainer_gpus=j.trainer_gpus, fits=False, peak_bytes=None,
                                       headroom_bytes=None, waves=None, error=str(exc)))
            continue
        out.append(PlacementOption(placement=j.placement, engine_gpus=j.engine_gpus, trainer_gpus=j.trainer_gpus,
                                   fits=est.fits, peak_bytes=max(g.peak_bytes for g in est.groups),
                                   headroom_bytes=min(g.headroom_bytes for g in est.groups),
                                   waves=est.rollout.waves if est.rollout else None))

    def key(o: PlacementOption):
        return (not o.fits, o.waves if o.waves else 1 << 30, o.placement != "colocated",
                -(o.headroom_bytes or -(1 << 62)))

    return tuple(sorted(out, key=key))


@dataclass(frozen=True, kw_only=True)
class Change:
    """One change to the job and what it gives."""

    change: str
    """What changes, in words."""
    settings: dict[str, object]
    """The ``rl`` option values that make it (names of :mod:`vramplan.options`); the
    command line shows them as flags."""
    fits: bool
    peak_bytes: int
    headroom_bytes: int

    def to_dict(self) -> dict:
        return {"change": self.change, "settings": dict(self.settings), "fits": self.fits,
                "peak_bytes": self.peak_bytes, "headroom_bytes": self.headroom_bytes}


def _candidate_changes(job: RLJob) -> list[tuple[str, dict[str, object], RLJob]]:
    """(what changes in words, the option values that make it, the changed job)."""
    pol = job.policy
    setup = pol.setup
    out: list[tuple[str, dict[str, object], RLJob]] = []
    colocated = job.placement == "colocated" and job.has_rollout
    if colocated and job.rollout.sleep_level == 0:
        out.append(("vLLM frees weights and KV cache while training", {"sleep_level": 1},
                    replace(job, rollout=replace(job.rollout, sleep_level=1))))
    if colocated and not pol.offload_optimizer:
        out.append(("optimizer states to CPU while generating", {"offload_optimizer": True},
                    replace(job, policy=replace(pol, offload_optimizer=True))))
    if colocated and not pol.offload_params:
        out.append(("all policy states to CPU while generating", {"offload_params": True, "offload_optimizer": True},
                    replace(job, policy=replace(pol, offload_params=True, offload_optimizer=True))))
    if job.reference_role is not None and not job.reference_role.offload:
        out.append(("reference weights in CPU between its forwards", {"offload_reference": True},
                    replace(job, reference=replace(job.reference_role, offload=True))))
    if job.has_rollout:
        rng = utilization_range(job)
        if rng.largest is not None and rng.largest != job.rollout.gpu_memory_utilization:
            out.append(("the largest engine share that fits", {"gpu_memory_utilization": round(rng.largest, 2)},
                        _with_utilization(job, round(rng.largest * 100))))
    if setup.recompute_policy != "full":
        out.append(("recompute every layer in the backward", {"recompute": "full"},
                    replace(job, policy=replace(pol, setup=replace(setup, recompute="full")))))
    if setup.batch > 1:
        out.append(("half the policy micro-batch", {"micro_batch": setup.batch // 2},
                    replace(job, policy=replace(pol, setup=replace(setup, batch=setup.batch // 2)))))
    if not setup.fused_ce:
        out.append(("fused linear cross entropy: logits never whole", {"fused_ce": True},
                    replace(job, policy=replace(pol, setup=replace(setup, fused_ce=True)))))
    if job.sharding in ("none", "zero2") and job.trainer_gpus > 1:
        out.append(("shard every trainer state", {"sharding": "fsdp"}, replace(job, sharding="fsdp")))
    if job.sharding != "zero3-offload" and job.trainer_gpus > 1:
        out.append(("optimizer step in host RAM", {"sharding": "zero3-offload"},
                    replace(job, sharding="zero3-offload")))
    if setup.method == "full":
        out.append(("LoRA adapters on a frozen base", {"method": "lora"},
                    replace(job, policy=replace(pol, setup=replace(setup, method="lora")))))
    if job.has_rollout:
        best = placement_options(job)
        if best and best[0].fits and (best[0].placement, best[0].engine_gpus) != (job.placement, job.engine_gpus):
            split = best[0].placement == "split"
            settings: dict[str, object] = {"placement": best[0].placement}
            if split:
                settings["rollout_gpus"] = best[0].engine_gpus
            out.append(("the best placement that fits", settings,
                        replace(job, placement=best[0].placement,
                                rollout_gpus=best[0].engine_gpus if split else None)))
    out.append(("twice the GPUs", {"gpus": job.gpus * 2}, replace(job, gpus=job.gpus * 2)))
    return out


def advice(job: RLJob) -> tuple[Change, ...]:
    """Single changes, each re-estimated: those that fit first, then by peak."""
    out = []
    for text, settings, changed in _candidate_changes(job):
        try:
            est = estimate_rl(changed)
        except VramplanError:
            continue
        peak = max(g.peak_bytes for g in est.groups)
        out.append(Change(change=text, settings=settings, fits=est.fits, peak_bytes=peak,
                          headroom_bytes=min(g.headroom_bytes for g in est.groups)))
    return tuple(sorted(out, key=lambda c: (not c.fits, c.peak_bytes)))


@dataclass(frozen=True, kw_only=True)
class RLReport:
    """The estimate with its solvers: what ``vramplan rl --json`` prints."""

    estimate: RLEstimate
    utilization: UtilizationRange
    longest_completion: int | None
    most_generations: int | None
    placements: tuple[PlacementOption, ...]
    advice: tuple[Change, ...]

    def to_dict(self) -> dict:
        return {**self.estimate.to_dict(),
                "solvers": {"gpu_memory_utilization": self.utilization.to_dict(),
                            "longest_completion_tokens": self.longest_completion,
                            "most_generations": self.most_generations,
                            "placements": [p.to_dict() for p in self.placements]},
                "advice": [c.to_dict() for c in self.advice]}


def report_rl(job: RLJob, *, solve: bool = True) -> RLReport:
    """:func:`estimate_rl` plus every solver (``solve=False``: the estimate only, solvers
    empty), and advice when the job does not fit."""
    est = estimate_rl(job)
    if not solve:
        return RLReport(estimate=est, utilization=UtilizationRange(smallest=None, largest=None),
                        longest_completion=None, most_generations=None, placements=(), advice=())
    return RLReport(estimate=est, utilization=utilization_range(job), longest_completion=longest_completion(job),
                    most_generations=most_generations(job), placements=placement_options(job),
                    advice=() if est.fits else advice(job))


__all__ = ["Change", "PlacementOption", "RLReport", "UtilizationRange", "advice",
           "longest_completion", "most_generations", "placement_options", "report_rl", "utilization_range"]
