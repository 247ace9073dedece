"""Plans: the GPU counts and parallel layouts on which a job fits, and the answers
around them ("how many GPUs", "how large a micro-batch", "how long a context", "what
would make it fit").

:func:`plan_training` and :func:`plan_inference` are the public entry points; each
returns a :class:`PlanReport` whose :meth:`~PlanReport.to_dict` is what ``vramplan plan
--json`` prints. The search itself is :mod:`vramplan.planner`; this module validates
the fixed parts of the layout (a :class:`~vramplan.parallel.LayoutRequest`), runs the
search and the questions around it, and assembles the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from vramplan.errors import InputError, LayoutError
from vramplan.model import ParamOnlyModel, resolve_model
from vramplan.model.stored import source_keys
from vramplan.parallel import LayoutRequest, ParallelLayout
from vramplan.training import RECOMPUTES

if TYPE_CHECKING:
    from vramplan.gpus import GpuSpec
    from vramplan.model import ModelSpec
    from vramplan.planner import Candidate, Change, InferenceCandidate, InferenceJob, PlanRequest, PlanResult
    from vramplan.training import TrainingSetup

DEFAULT_PLAN_SEQ = 4096
"""Tokens per sequence (training) or context (serving) a plan assumes when none is given:
a pre-training length (Llama 2's 4,096) for a cluster, where ``vramplan train`` on one
GPU assumes a fine-tuning length (:data:`vramplan.training.DEFAULT_TRAIN_SEQ`); for
serving it is :data:`vramplan.options.DEFAULT_CONTEXT_TOKENS`, the same number."""
DEFAULT_MICRO_BATCH_SIZES = (1, 2, 4, 8)
"""Micro-batch sizes a training plan tries when the user fixes none."""
RECOMPUTE_CHOICES = RECOMPUTES
"""Activation recomputation choices a training plan tries (those of :class:`TrainingSetup`)."""
"""Recomputation policies a training plan tries when the user fixes none."""
TRAINING_EXPORTS = ("deepspeed", "fsdp", "megatron")
"""Engines a training plan can be written out for (:mod:`vramplan.export`)."""
SERVING_EXPORTS = ("vllm", "llamacpp")
"""Engines a serving plan can be written out for."""
EXPORTS = TRAINING_EXPORTS + SERVING_EXPORTS
SERVING_ASSUMPTIONS = (
    "memory per (tp, sequences per replica) from vramplan.inference (engine {engine}: weights, "
    "KV cache, activations, logits, overheads)",
    "pipeline stages keep their share of weights and KV cache, all of the rest",
    "decode time: bytes each GPU reads per token / HBM bandwidth, pipeline stages in turn",
)


@dataclass(frozen=True, kw_only=True)
class PlanReport:
    """The answer of a plan: candidates fastest first (training) or fewest GPUs first
    (serving), with the questions around them answered."""

    kind: Literal["training", "inference"]
    spec: ModelSpec
    """The model planned for."""
    gpu: GpuSpec
    budget_bytes: int
    """Per-GPU bytes a layout may use: usable memory x (1 - headroom)."""
    gpu_counts: tuple[int, ...]
    candidates: tuple[Candidate, ...] | tuple[InferenceCandidate, ...]
    evaluated: int
    """Layouts evaluated."""
    min_gpus: int | None
    """Fewest GPUs (of those tried) on which some layout fits."""
    assumptions: tuple[str, ...]
    # training
    request: PlanRequest | None = None
    """The training search as run (``None`` for serving)."""
    result: PlanResult | None = None
    largest_micro_batch: Candidate | None = None
    """The largest micro-batch (powers of two) some layout fits, with its fastest layout."""
    longest_context: tuple[int, Candidate] | None = None
    """The longest sequence (powers of two) some layout fits, with its fastest layout."""
    changes: tuple[PlanChange, ...] = ()
    """When nothing fits: what would, cheapest first."""
    min_peak_bytes: int | None = None
    """Serving: the smallest per-GPU peak of any layout of the GPU counts tried."""
    # serving
    job: InferenceJob | None = None
    """The serving job (``None`` for training)."""

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def setup(self) -> TrainingSetup | None:
        return self.request.job.setup if self.request is not None else None

    @property
    def recipe(self) -> str | None:
        """The mixed-precision recipe of the best training layout's engine."""
        from vramplan.parallel import RECIPES

        if self.kind != "training" or not self.candidates:
            return None
        return RECIPES[self.candidates[0].layout.resolved_engine]

    def to_dict(self) -> dict:
        if self.kind == "inference":
            job = self.job
            return {"model": self.model, "kind": "inference", "gpu": self.gpu.slug, "budget_bytes": self.budget_bytes,
                    "usable_bytes": self.gpu.usable_memory_bytes, "gpu_counts": list(self.gpu_counts),
                    "context": job.context, "batch": job.batch, "weights": job.weights, "kv_dtype": job.kv_dtype,
                    "engine": job.engine,
                    "evaluated": self.evaluated, "candidates": [c.to_dict() for c in self.candidates],
                    "min_gpus": self.min_gpus, "min_peak_bytes": self.min_peak_bytes,
                    "assumptions": list(self.assumptions), "changes": [c.to_dict() for c in self.changes],
                    **source_keys(self.spec.checkpoint)}
        from vramplan.parallel import RECIPES

        setup = self.setup
        data = {"model": self.model, "kind": "training", "gpu": self.gpu.slug, "budget_bytes": self.budget_bytes,
                "gpu_counts": list(self.gpu_counts), "seq": setup.seq, "precision": setup.precision,
                "method": setup.method, **self.result.to_dict()}
        for cand in data["candidates"]:
            cand["recipe"] = RECIPES[cand["layout"]["engine"]]
        biggest, ctx = self.largest_micro_batch, self.longest_context
        data["largest_micro_batch"] = biggest.to_dict() if biggest else None
        data["longest_context"] = {"seq": ctx[0], **ctx[1].to_dict()} if ctx else None
        data["changes"] = [c.to_dict() for c in self.changes]
        return {**data, **source_keys(self.spec.checkpoint)}


@dataclass(frozen=True, kw_only=True)
class PlanChange:
    """A change that would make a plan fit, planned again (the shape of
    :class:`vramplan.estimate.Change` plus the fewest GPUs)."""

    change: str
    settings: dict[str, object]
    """The ``plan`` option values that make the change (names of :mod:`vramplan.options`)."""
    min_peak_bytes: int
    """Per-GPU memory after the change: the peak on the fewest GPUs that fit, or (when
    nothing fits) the smallest peak of any layout."""
    fits: bool
    min_gpus: int | None = None

    @classmethod
    def of(cls, change: Change) -> PlanChange:
        """A :func:`vramplan.planner.cheapest_changes` answer."""
        return cls(change=change.change, settings=dict(change.settings), min_peak_bytes=change.min_peak_bytes,
                   fits=change.fits, min_gpus=change.min_gpus)

    def to_dict(self) -> dict:
        return {"change": self.change, "settings": dict(self.settings), "peak_bytes": self.min_peak_bytes,
                "min_peak_bytes": self.min_peak_bytes, "fits": self.fits, "min_gpus": self.min_gpus}


def _architecture(model: str | ModelSpec | ParamOnlyModel) -> ModelSpec:
    spec = resolve_model(model)
    if isinstance(spec, ParamOnlyModel):
        raise InputError(f"model {spec.name!r}: a bare parameter count has no architecture; planning needs "
                         "a catalog name, a config.json, or a custom architecture (layers, hidden, heads)",
                         fields=("model", "layers", "hidden", "heads"))
    return spec


def _gpu(gpu: str | GpuSpec) -> GpuSpec:
    from vramplan.gpus import one_gpu

    spec = one_gpu(gpu)
    if spec.capacity_only:
        raise InputError(f"gpu: {spec.slug} is only a capacity; plan ranks layouts by modelled step time, which "
                         "needs the GPU's FLOP/s and bandwidth; name the card (see `vramplan gpus`)")
    return spec


def gpu_counts(layout: LayoutRequest, max_gpus: int | None) -> tuple[int, ...]:
    """The GPU counts to search: the fixed count, or every count up to ``max_gpus``
    (default one node)."""
    from vramplan.planner import gpu_counts_up_to

    total = layout.total_gpus()
    if total is not None and max_gpus is not None:
        raise InputError(f"gpus {total} and max_gpus {max_gpus}: give one or the other", fields=("gpus", "max_gpus"))
    if total is not None:
        return (total,)
    return gpu_counts_up_to(max_gpus or layout.node_size(), layout.node_size())


def check_fixed_degrees(layout: LayoutRequest, spec: ModelSpec) -> None:
    """Reject fixed degrees that cannot work before searching: with a GPU count the
    degrees given must divide it (the error prints every factor), and tp/pp/ep must
    suit the model."""
    if not layout.any_degree and layout.zero is None and layout.fsdp is None:
        return
    layout = replace(layout, virtual_stages=None, micro_batches=None)  # searched with the rest
    if layout.total_gpus() is not None:
        layout.layout().check_model(spec)
        return
    ParallelLayout(dp=layout.dp or 1, tp=layout.tp or 1, pp=layout.pp or 1, cp=layout.cp or 1,
                   ep=layout.ep or 1, zero_stage=int(layout.zero or 0), fsdp=layout.fsdp or "none",
                   offload=layout.offload or "none").check_model(spec)


def plan_training(model: str | ModelSpec, gpu: str | GpuSpec, setup: TrainingSetup | None = None,
                  layout: LayoutRequest | None = None, *, max_gpus: int | None = None, headroom: float = 0.05,
                  micro_batch: int | None = None, recompute: str | None = None, global_batch: int | None = None,
                  mfu: float | None = None, host_bytes_per_node: int | None = None, top: int = 10) -> PlanReport:
    """The layouts of ``model`` trained as ``setup`` that fit ``gpu``, fastest first.

    ``layout`` fixes parts of the layout (GPU count, degrees, ZeRO/FSDP/offload); the
    rest is searched. ``micro_batch`` and ``recompute`` fix the micro-batch size and the
    recomputation policy (default: try :data:`DEFAULT_MICRO_BATCH_SIZES` and
    :data:`RECOMPUTE_CHOICES`); ``setup.batch`` and ``setup.recompute`` are not read.
    When a layout fits, the report answers the largest micro-batch and the longest
    context; when none fits, the cheapest changes that would make it fit."""
    from vramplan.distributed import TrainingJob, check_attention_for_cp
    from vramplan.planner import (
        DEFAULT_MFU,
        PlanRequest,
        cheapest_changes,
        engine_settings,
        largest_micro_batch,
        longest_context,
        plan,
    )
    from vramplan.training import TrainingSetup

    spec = _architecture(model)
    gpu = _gpu(gpu)
    layout = layout or LayoutRequest()
    setup = replace(setup or TrainingSetup(seq=DEFAULT_PLAN_SEQ), batch=micro_batch or 1)
    counts = gpu_counts(layout, max_gpus)
    check_fixed_degrees(layout, spec)
    job = TrainingJob(model=spec, setup=setup)
    check_attention_for_cp(job, layout.cp or 1)
    tp = layout.tp or 1
    ParallelLayout(tp=tp, cp=layout.cp or 1, sequence_parallel=bool(layout.sp) and tp > 1).check_sequence(setup.seq)
    fixed = tuple((k, v) for k, v in (("dp", layout.dp), ("tp", layout.tp), ("pp", layout.pp), ("cp", layout.cp),
                                      ("ep", layout.ep), ("m", layout.micro_batches)) if v is not None)
    if layout.sp:
        fixed += (("sp", 1),)
    engines = engine_settings(zero=int(layout.zero) if layout.zero is not None else None, fsdp=layout.fsdp,
                              offload=layout.offload)
    if not engines:
        raise InputError(f"zero={layout.zero} fsdp={layout.fsdp} offload={layout.offload}: no engine setting "
                         "matches; ZeRO offload needs stage 2 or 3, FSDP offloads with offload=params")
    req = PlanRequest(job=job, gpu=gpu, gpu_counts=counts, headroom=headroom, gpus_per_node=layout.node_size(),
                      global_batch=global_batch, mfu=mfu or DEFAULT_MFU,
                      micro_batch_sizes=(micro_batch,) if micro_batch else DEFAULT_MICRO_BATCH_SIZES,
                      recomputes=(recompute,) if recompute else RECOMPUTE_CHOICES,
                      fixed_degrees=fixed, engines=engines, host_bytes_per_node=host_bytes_per_node,
                      virtual_stages=layout.virtual_stages or 1)
    result = plan(req, top=top)
    if result.evaluated == 0:
        from vramplan.parallel_rules import fixed_layout_problem

        rule = fixed_layout_problem(engines, req.virtual_stages, tp=layout.tp or 1, pp=layout.pp or 1, cp=layout.cp or 1)
        if rule is not None:
            given = [f"--{k} {v}" for k, v in fixed] + [f"--{k} {v}" for k, v in (
                ("zero", layout.zero), ("fsdp", layout.fsdp), ("offload", layout.offload)) if v is not None]
            raise LayoutError(f"{' '.join(given)}: {rule.describe()}")
        raise LayoutError(f"no layout of {', '.join(map(str, counts))} GPU(s) satisfies the fixed degrees "
                          f"{dict(fixed) or '(none)'} with global batch {global_batch or 'default'}: the degrees "
                          "must multiply to the GPU count, tp stays inside a node of "
                          f"{layout.node_size()} GPUs, and dp x micro-batch must divide the global batch")
    report = PlanReport(kind="training", spec=spec, gpu=gpu, budget_bytes=req.budget_bytes, gpu_counts=counts,
                        candidates=result.candidates, evaluated=result.evaluated, min_gpus=result.min_gpus,
                        assumptions=result.assumptions, request=req, result=result)
    if result.candidates:
        return replace(report, largest_micro_batch=largest_micro_batch(req),
                       longest_context=longest_context(req, best_at_request=result.candidates[0]))
    return replace(report, changes=tuple(PlanChange.of(c) for c in cheapest_changes(req)))


def plan_inference(model: str | ModelSpec, gpu: str | GpuSpec, layout: LayoutRequest | None = None, *,
                   context: int = DEFAULT_PLAN_SEQ, batch: int = 1, weights: str = "bf16", kv_dtype: str = "fp16",
                   max_gpus: int | None = None, headroom: float = 0.05, top: int = 10,
                   engine: str = "hf") -> PlanReport:
    """The serving layouts (tp x pp per replica) of ``model`` that fit ``gpu``, fewest
    GPUs first, then the fastest decode; ``layout`` may fix the GPU count, tp and pp.

    The job is first estimated once on one GPU with ``engine``, so a weights format,
    KV dtype or engine the model cannot take is an error here, not a search in which
    every layout is silently dropped."""
    from vramplan.inference import InferenceSetup, estimate_inference
    from vramplan.planner import InferenceJob
    from vramplan.planner import plan_inference as search

    spec = _architecture(model)
    gpu = _gpu(gpu)
    layout = layout or LayoutRequest()
    counts = gpu_counts(layout, max_gpus)
    check_fixed_degrees(layout, spec)
    estimate_inference(spec, InferenceSetup(engine=engine, weights=weights, kv_dtype=kv_dtype, batch=1,
                                            context=context))
    if engine == "llamacpp" and (layout.tp or 1) > 1:
        raise InputError(f"tp: {layout.tp} with engine llamacpp; llama.cpp splits a model by layer across GPUs "
                         "(pipeline), not by tensor parallelism here: use pp, or leave tp out", fields=("engine", "pp"))
    job = InferenceJob(model=spec, weights=weights, context=context, batch=batch, kv_dtype=kv_dtype, engine=engine)
    cands, evaluated = search(job, gpu, counts, headroom=headroom, gpus_per_node=layout.node_size(), top=top,
                              tp=layout.tp, pp=layout.pp)
    smallest = None
    if not cands:  # every layout again on a GPU that holds anything: the smallest peak among them
        roomy = replace(gpu, memory_bytes=1 << 60, unified_memory=False)
        every, _ = search(job, roomy, counts, headroom=0, gpus_per_node=layout.node_size(), top=evaluated or 1,
                          tp=layout.tp, pp=layout.pp)
        smallest = min((c.peak_bytes for c in every), default=None)
    return PlanReport(kind="inference", spec=spec, gpu=gpu, budget_bytes=int(gpu.usable_memory_bytes * (1 - headroom)),
                      gpu_counts=counts, candidates=cands, evaluated=evaluated,
                      min_gpus=cands[0].num_gpus if cands else None,
                      assumptions=(SERVING_ASSUMPTIONS[0].format(engine=engine),) + SERVING_ASSUMPTIONS[1:],
                      job=job, min_peak_bytes=smallest)
