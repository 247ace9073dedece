"""Per-GPU memory of a training job laid out on many GPUs.

:func:`training_terms` assembles the per-GPU terms of one pipeline stage from the
building blocks in :mod:`vramplan.parallel` (model-parallel slice, ZeRO/FSDP/Megatron
sharding, in-flight micro-batches) and the per-layer activation coefficients below.
Every argument that describes a layout may be a plain ``int`` or a numpy array: the
planner calls this very function over millions of layouts at once, and
:func:`estimate_on_layout` calls it for one layout (the public entry point is
:func:`vramplan.training.estimate_training` with a layout) and renders the usual
:class:`~vramplan.estimate.Estimate` tree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from vramplan.errors import LayoutError
from vramplan.estimate import Component, Estimate
from vramplan.parallel import (
    RECIPES,
    ParallelLayout,
    RankParams,
    ShardedStates,
    SliceCoefficients,
    Stage,
    StateBytesPerParam,
    in_flight_microbatches,
    layer_params,
    maximum,
    minimum,
    rank_params,
    root_params,
    shard_model_states,
    slice_coefficients,
    stage_layers,
    where,
)

if TYPE_CHECKING:
    import numpy as np

    from vramplan.model.spec import ModelSpec
    from vramplan.parallel.arrays import Flags, Ints, Reals
    from vramplan.training import TrainingSetup



@dataclass(frozen=True, kw_only=True)
class ActivationCoefficients:
    """Activation bytes of one sequence (a micro-batch of 1 at the job's sequence
    length) on one GPU without tensor or context parallelism, taken once from the
    single-GPU training model (:func:`vramplan.training.activation_plan`,
    :func:`vramplan.training.setup_logits`), and how tensor/sequence parallelism
    divide them.

    Scaling, per Korthikanti et al. 2022 (Table 2): the parts that
    :mod:`vramplan.memory.activations` marks ``sharded`` (heads, MLP width) divide by
    tp; the rest (residual, norms, linear inputs) divide by tp only with sequence
    parallelism. Context parallelism divides the tokens; micro-batch size multiplies
    them. Context parallelism runs only with a fused attention kernel
    (:func:`check_attention_for_cp`), so no eager score matrix is ever divided by cp.
    """

    layer_kept_per_seq: Reals
    """Bytes one layer keeps until its backward, mean over layers (after recomputation)."""
    sharded_fraction: Reals
    """Share of a layer's saved activations split by tensor parallelism."""
    kept_sharded_fraction: Reals
    """The same for what is kept under the recomputation policy (0 under full recomputation:
    the checkpointed layer input is the residual stream)."""
    layer_backward_per_seq: Reals
    """Extra bytes alive in one layer's backward: the recomputed layer and gradient
    buffers (max over layers)."""
    outside_per_seq: Reals
    """Embedding dropout, final norm and the head's casts, per sequence."""
    logits_per_seq: Reals
    """Logits and loss at the loss backward, per sequence (split by tp: vocab-parallel)."""
    autocast_cache_per_layer: Reals
    """16-bit weight copies autocast keeps per layer (per GPU at tp = 1)."""
    layer_kept_per_micro_batch: Reals = 0.0
    """The part of a layer's kept bytes that does not grow with the micro-batch (autocast's
    16-bit weight copies, LoRA adapter casts: one set per micro-batch in flight), at tp = 1."""
    layer_backward_per_micro_batch: Reals = 0.0
    """The same for ``layer_backward_per_seq``."""
    outside_per_micro_batch: Reals = 0.0
    """The same for ``outside_per_seq`` (the head's weight cast)."""

    @classmethod
    def from_setup(cls, spec: ModelSpec, setup: TrainingSetup) -> ActivationCoefficients:
        """The coefficients of ``setup`` (a :class:`vramplan.training.TrainingSetup`) for
        ``spec`` (cached: the planner asks for the same ones many times)."""
        return _activation_coefficients(spec, setup)


@functools.lru_cache(maxsize=256)
def _activation_coefficients(spec: ModelSpec, setup: TrainingSetup) -> ActivationCoefficients:
    """See :meth:`ActivationCoefficients.from_setup`: one sequence of the single-GPU
    activation model, with the parts a micro-batch holds whatever its size
    (:class:`vramplan.memory.activations.MicroBatchBytes`) kept apart."""
    from vramplan.memory import activations as act
    from vramplan.training import activation_plan, setup_logits

    # One sequence, split by the activation model itself into what grows with the
    # micro-batch (per sequence) and what a micro-batch holds whatever its size.
    one = replace(setup, batch=1)
    plan_ = activation_plan(spec, one)
    fixed = plan_.per_micro_batch
    ctx = act.ActivationContext(recipe=one.recipe, batch=1, seq=one.seq, attention=one.attention,
                                dropout=one.dropout)
    parts = act.layer_activation_parts(spec, ctx, 0)
    total = sum(p.bytes for p in parts) or 1
    sharded = sum(p.bytes for p in parts if p.sharded) / total
    policy = one.recompute_policy
    kept_sharded = 0.0 if policy == "full" else sharded
    layers = spec.num_layers
    cast = act.layer_weight_cast_bytes(spec, ctx)
    kept_per_seq = sum(kept - fixed.layer_kept_bytes for kept in plan_.per_layer_kept) / layers
    back = max(f + w for f, w in zip(plan_.per_layer_full, plan_.per_layer_work))
    return ActivationCoefficients(
        layer_kept_per_seq=kept_per_seq, layer_kept_per_micro_batch=fixed.layer_kept_bytes,
        sharded_fraction=sharded, kept_sharded_fraction=kept_sharded,
        layer_backward_per_seq=back - fixed.layer_backward_bytes,
        layer_backward_per_micro_batch=fixed.layer_backward_bytes,
        outside_per_seq=plan_.outside_layers - fixed.outside_bytes, outside_per_micro_batch=fixed.outside_bytes,
        logits_per_seq=setup_logits(spec, one).backward_peak,
        autocast_cache_per_layer=cast,
    )


@dataclass(frozen=True, kw_only=True)
class TrainingJob:
    """What is trained, independent of how it is laid out: the model and the
    single-GPU :class:`~vramplan.training.TrainingSetup` (method, precision, optimizer,
    micro-batch size, sequence length, recomputation, attention kernel)."""

    model: ModelSpec
    """The :class:`~vramplan.model.ModelSpec`."""
    setup: TrainingSetup = None  # type: ignore[assignment]  # None: the defaults
    """The :class:`vramplan.training.TrainingSetup`; ``None``: its defaults."""
    overhead_bytes: int = 0
    """Fixed per-GPU overhead (CUDA context, workspaces, NCCL); see :func:`default_overhead_bytes`."""

    def __post_init__(self) -> None:
        if self.setup is None:
            from vramplan.training import TrainingSetup

            object.__setattr__(self, "setup", TrainingSetup())

    @property
    def micro_batch_size(self) -> int:
        return self.setup.batch

    @property
    def seq(self) -> int:
        return self.setup.seq

    @property
    def recompute(self) -> str:
        return self.setup.recompute_policy

    def with_setup(self, **changes: Any) -> TrainingJob:
        """A copy with setup fields changed."""
        return replace(self, setup=replace(self.setup, **changes))


@dataclass(frozen=True, kw_only=True)
class JobStates:
    """The model-state facts of a job the sharding needs, from the single-GPU model
    (:func:`vramplan.training.model_states`)."""

    recipe: StateBytesPerParam
    """Bytes per parameter of each state term, in the engine's recipe."""
    trainable_fraction: float
    """Trainable parameters / parameters (1 for full training; LoRA adapters' share)."""
    step_temporaries_per_param: float
    """Bytes the optimizer step allocates per trainable parameter (foreach copies)."""


def job_states(job: TrainingJob, engine: str) -> JobStates:
    """Per-parameter state bytes of ``job`` as ``engine`` holds them.

    The single-GPU recipe (:mod:`vramplan.memory.precision`) is PyTorch AMP's: fp32
    weights and gradients with bf16 autocast. DeepSpeed, Megatron-LM and FSDP instead
    keep a 16-bit compute copy and an fp32 master (the ZeRO paper's 2 + 2 + 12); for
    those engines a mixed recipe becomes weights = gradients = compute bytes and master
    = the fp32 weight bytes. Optimizer bytes per trainable parameter come from
    :func:`vramplan.training.model_states` (8 for AdamW, 2 for 8-bit Adam...).
    """
    from vramplan.model import count_params
    from vramplan.training import model_states

    spec, setup = job.model, job.setup
    states = model_states(spec, setup)
    total = count_params(spec).total_params
    trainable = sum(g.params for g in states.trainable) or 1
    weight_bytes = sum(c.bytes for c in states.weights) + states.adapter_weights
    optimizer = states.optimizer_states / trainable
    grads = states.gradients / trainable
    recipe = setup.recipe
    weights = weight_bytes / total
    master = 0.0
    if recipe.autocast and engine != "ddp" and setup.method == "full":
        weights = grads = float(recipe.compute_bytes)
        master = float(recipe.weight_bytes_per_param)
    return JobStates(recipe=StateBytesPerParam(weights=weights, gradients=grads, master_weights=master,
                                               optimizer=optimizer),
                     trainable_fraction=min(1.0, trainable / total),
                     step_temporaries_per_param=states.step_temporaries / trainable)


def engine_setup(setup: TrainingSetup, engine: str) -> TrainingSetup:
    """The single-GPU setup whose activations match how ``engine`` runs the model.

    PyTorch AMP (DDP) keeps fp32 weights and autocasts each op: the residual stream
    stays fp32 and a 16-bit copy of each weight is saved. DeepSpeed (bf16/fp16
    config), Megatron-LM and FSDP's MixedPrecision run the model on 16-bit parameters:
    no autocast copies and a 16-bit residual stream, i.e. the activations of the pure
    16-bit recipe. Model-state bytes are handled by :func:`job_states`."""
    recipe = setup.recipe
    if engine == "ddp" or not recipe.autocast:
        return setup
    return replace(setup, precision=recipe.compute_dtype)


def default_overhead_bytes(num_gpus: int) -> int:
    """Fixed per-GPU overhead from :mod:`vramplan.memory.overhead` (CUDA context,
    cuBLAS workspace, NCCL buffers of one communicator spanning ``num_gpus``)."""
    from vramplan.memory.overhead import Overheads, fixed_overhead_components

    return sum(c.bytes for c in fixed_overhead_components(Overheads(), comm_group_ranks=num_gpus))


def _tp_scale(sharded_fraction: Reals, tp: Ints, sp: Flags) -> Reals:
    """Share of activations one tp rank keeps: the sharded part / tp, the rest / tp
    only with sequence parallelism (Korthikanti et al. 2022, Table 2)."""
    return sharded_fraction / tp + (1 - sharded_fraction) * where(sp, 1 / tp, 1.0)


@dataclass(frozen=True, kw_only=True)
class StageTerms:
    """The engine-independent terms of one pipeline stage on one GPU (:func:`stage_terms`):
    scalars for one layout, or arrays with one entry per layout."""

    rank: RankParams | None
    """Parameters on the GPU (its tensor/pipeline/expert slice); ``None`` from
    ``stage_terms(..., with_params=False)``, as are the next two."""
    layer_params: Ints | None
    """Parameters of one FSDP unit: the largest decoder layer on this rank."""
    root_params: Ints | None
    """Parameters of FSDP's root unit: embedding, final norm, head on this rank."""
    kept_bytes: Reals
    """Activations every layer of the stage keeps for every in-flight micro-batch."""
    kept_layer_bytes: Reals
    """What one layer keeps for one micro-batch."""
    current_layer_bytes: Reals
    """Extra bytes of the layer in backward (its recomputed tensors, gradient buffers)."""
    outside_bytes: Reals
    """Embedding, final norm and head activations (on the stage holding the head)."""
    logits_bytes: Reals
    """Logits and loss at the loss backward (on the stage holding the head)."""
    in_flight_micro_batches: Reals
    """Micro-batches whose activations the stage holds at its peak."""

    @property
    def activations_bytes(self) -> Reals:
        """Kept activations plus the layer in backward."""
        return self.kept_bytes + self.current_layer_bytes

    @cached_property
    def at_loss_bytes(self) -> Reals:
        """Activation-side bytes alive at the loss backward: every kept activation, the
        outside-layer tensors and the logits."""
        return self.kept_bytes + self.outside_bytes + self.logits_bytes

    @cached_property
    def at_last_layer_bytes(self) -> Reals:
        """Activation-side bytes in the last layer's backward: its own kept tensors are
        part of ``current_layer_bytes`` (the recomputed layer), and the head's backward
        has freed the outside-layer tensors, as in :func:`vramplan.training.timeline`."""
        return self.kept_bytes - self.kept_layer_bytes + self.current_layer_bytes

    @cached_property
    def activation_high_bytes(self) -> Reals:
        """The larger of the two: the activation side of the backward's high point
        while gradients are resident (computed once for every engine setting)."""
        return maximum(self.at_loss_bytes, self.at_last_layer_bytes)

    @cached_property
    def backward(self) -> BackwardActivations:
        """What :func:`backward_peak_bytes` reads of these terms."""
        return BackwardActivations(high_bytes=self.activation_high_bytes, current_layer_bytes=self.current_layer_bytes)


@dataclass(frozen=True, kw_only=True)
class BackwardActivations:
    """The activation side of one stage's backward (:attr:`StageTerms.backward`):
    scalars, or arrays with one entry per layout."""

    high_bytes: Reals
    """:attr:`StageTerms.activation_high_bytes`."""
    current_layer_bytes: Reals
    """:attr:`StageTerms.current_layer_bytes`."""

    def take(self, index: np.ndarray) -> BackwardActivations:
        """The layouts ``index`` picks (arrays gathered; scalars stay scalars)."""
        return BackwardActivations(high_bytes=_pick(self.high_bytes, index),
                                   current_layer_bytes=_pick(self.current_layer_bytes, index))


def _pick(v: Reals, index: np.ndarray) -> Reals:
    """``v[index]`` for an array, ``v`` for a scalar."""
    import numpy as np

    return np.take(v, index) if np.ndim(v) else v


def stage_terms(c: SliceCoefficients, a: ActivationCoefficients, *, stage: Stage, virtual_stages: int, tp: Ints,
                pp: Ints, cp: Ints, ep: Ints, sp: Flags, micro_batch_size: Ints, micro_batches: Ints,
                with_params: bool = True) -> StageTerms:
    """The engine-independent terms of one pipeline stage: the parameters on the GPU
    (and of one FSDP unit and the root unit), the activations (kept by every layer of
    the stage for every in-flight micro-batch, plus the layer in backward), the
    embedding/final-norm activations and the logits. ``with_params=False`` leaves the
    parameters out (the planner takes them once per distinct tp, pp, ep)."""
    seqs = micro_batch_size / cp  # sequences' worth of tokens of one micro-batch on one context-parallel rank
    layers = stage_layers(c.num_layers, pp)
    in_flight = in_flight_microbatches(pp=pp, micro_batches=micro_batches, virtual_stages=virtual_stages,
                                       stage=stage)
    # The per-micro-batch parts are weight copies: split by tp like the weights, not by cp.
    kept = seqs * a.layer_kept_per_seq * _tp_scale(a.kept_sharded_fraction, tp, sp) + a.layer_kept_per_micro_batch / tp
    current = (seqs * a.layer_backward_per_seq * _tp_scale(a.sharded_fraction, tp, sp)
               + a.layer_backward_per_micro_batch / tp)
    single = pp == 1
    outside = seqs * a.outside_per_seq + a.outside_per_micro_batch / tp
    logits = seqs * a.logits_per_seq / tp
    if stage == "first":
        outside = where(single, outside, 0 * outside)
        logits = where(single, logits, 0 * logits)
    params = (rank_params(c, tp=tp, pp=pp, ep=ep, stage=stage), layer_params(c, tp=tp, ep=ep), root_params(c, tp=tp)) \
        if with_params else (None, None, None)
    return StageTerms(rank=params[0], layer_params=params[1], root_params=params[2],
                      kept_bytes=kept * layers * in_flight, kept_layer_bytes=kept, current_layer_bytes=current,
                      outside_bytes=outside, logits_bytes=logits, in_flight_micro_batches=in_flight)


def gradients_persist(layout: ParallelLayout) -> bool:
    """Whether gradient buffers exist through the whole backward even with one
    micro-batch: Megatron's contiguous ``main_grad`` buffer; DeepSpeed, whose stages
    0-1 keep every 16-bit ``.grad`` until the step, stage 2 allocates its gradient
    partition at the first bucket reduction (``grads_in_partition`` in
    ``stage_1_and_2.py``), and stage 3 holds ``grad_partitions_flat_buffer`` from
    initialisation (``stage3.py``). PyTorch DDP and FSDP free gradients with
    ``zero_grad(set_to_none=True)``, so they form during the backward."""
    return layout.resolved_engine in ("megatron", "deepspeed")


@dataclass(frozen=True, kw_only=True)
class StatePeaks:
    """What the peaks of one pipeline stage take from the model states
    (:func:`state_peaks`): terms of the degrees (dp, tp, pp, cp, ep) and the engine
    setting alone, not of the micro-batch, the sequence or recomputation. Scalars, or
    arrays with one entry per layout (the planner computes them once per distinct set
    of degrees and hands each layout its set's with :meth:`take`)."""

    backward_base_bytes: Reals
    """Model-state bytes at the backward's high point other than the gradients (weights,
    master, optimizer, buckets, gathered parameters, unsharded gradients)."""
    gradients_bytes: Reals
    """Gradients as held on this GPU."""
    step_peak_bytes: Reals
    """States, step temporaries and overhead during the optimizer step."""

    def take(self, index: np.ndarray) -> StatePeaks:
        """The entries ``index`` picks (arrays gathered; scalars stay scalars)."""
        return StatePeaks(backward_base_bytes=_pick(self.backward_base_bytes, index),
                          gradients_bytes=_pick(self.gradients_bytes, index),
                          step_peak_bytes=_pick(self.step_peak_bytes, index))


def step_temporaries_bytes(sharded: ShardedStates, states: JobStates) -> Reals:
    """Bytes held only during the optimizer step: the sharding's own (DeepSpeed's fp32
    gradient partition) plus the optimizer's temporaries, which follow the optimizer
    states' sharding (none when offloaded)."""
    recipe = states.recipe
    optimizer_share = sharded.optimizer_bytes / recipe.optimizer if recipe.optimizer else 0 * sharded.optimizer_bytes
    return sharded.step_temporaries_bytes + optimizer_share * states.step_temporaries_per_param


def state_peaks(sharded: ShardedStates, step_temporaries: Reals, overhead: Reals) -> StatePeaks:
    """:class:`StatePeaks` of ``sharded`` model states with ``step_temporaries`` bytes
    (:func:`step_temporaries_bytes`) and the fixed ``overhead``."""
    return StatePeaks(backward_base_bytes=sharded.backward_peak_bytes - sharded.gradients_bytes,
                      gradients_bytes=sharded.gradients_bytes,
                      step_peak_bytes=sharded.resident_bytes + step_temporaries + overhead)


def backward_peak_bytes(peaks: StatePeaks, acts: BackwardActivations, layout: ParallelLayout, *,
                        micro_batches: Ints) -> Reals:
    """Bytes at the backward's high point, without the fixed overhead.

    The backward is a sweep (as in :func:`vramplan.training.timeline`): at the loss all
    activations and the logits are alive; in the last layer's backward the kept
    activations of every other layer (and of the other in-flight micro-batches) plus
    that layer's full recomputed tensors and gradient buffers (the outside-layer tensors
    freed by the head's backward); by the first layer the activations are gone and the
    gradients have formed. With layers of equal size the live bytes between those
    points change linearly (one layer's activations freed as its gradients form), so
    the largest of the three is the sweep's high point. Gradients are resident
    throughout when they accumulate over micro-batches or the engine keeps a
    persistent buffer (:func:`gradients_persist`).
    """
    with_grads = peaks.gradients_bytes + acts.high_bytes
    if gradients_persist(layout):
        return peaks.backward_base_bytes + with_grads
    forming = maximum(acts.high_bytes, acts.current_layer_bytes + peaks.gradients_bytes)
    return peaks.backward_base_bytes + where(micro_batches > 1, with_grads, forming)


def stage_peak_bytes(peaks: StatePeaks, acts: BackwardActivations, layout: ParallelLayout, *, micro_batches: Ints,
                     overhead: Reals) -> tuple[Reals, Reals]:
    """(backward high point, peak) of one pipeline stage, both with the fixed
    ``overhead``: the peak is the larger of the backward's and the optimizer step's."""
    backward = backward_peak_bytes(peaks, acts, layout, micro_batches=micro_batches) + overhead
    return backward, maximum(backward, peaks.step_peak_bytes)


CP_ATTENTION_KERNELS = ("flash", "sdpa")
"""Attention kernels context parallelism runs with: Megatron-Core's CP goes through
Transformer Engine's fused/flash attention (docs/source/api-guide/context_parallel.rst),
PyTorch's ``context_parallel`` replaces ``scaled_dot_product_attention`` (flash and
memory-efficient backends); neither splits an eager ``softmax(QK^T)`` score matrix."""


def check_attention_for_cp(job: TrainingJob, cp: int) -> None:
    """Raise :class:`~vramplan.errors.LayoutError` for context parallelism with an
    attention kernel it does not run with (``CP_ATTENTION_KERNELS``)."""
    if cp > 1 and job.setup.attention not in CP_ATTENTION_KERNELS:
        raise LayoutError(f"cp={cp} with attention={job.setup.attention!r}: context parallelism needs a fused "
                          f"attention kernel ({', '.join(CP_ATTENTION_KERNELS)}); use cp=1 or attention=sdpa")


@dataclass(frozen=True, kw_only=True)
class TrainingTerms:
    """Per-GPU terms of one pipeline stage of a job on a layout (:func:`training_terms`):
    scalars for one layout, or arrays with one entry per layout."""

    gpu_params: Ints
    """Parameters on the GPU (its tensor/pipeline/expert slice, before sharding)."""
    states: ShardedStates
    """Model-state bytes on the GPU after sharding; its ``step_temporaries_bytes`` are
    the whole step's (the sharding's plus the optimizer's, :func:`step_temporaries_bytes`)."""
    activations_bytes: Reals
    """Kept activations plus the layer in backward."""
    outside_activations_bytes: Reals
    logits_bytes: Reals
    kept_activations_bytes: Reals
    current_layer_bytes: Reals
    kept_layer_bytes: Reals
    grads_persist: Reals
    """1 where gradients are resident through the whole backward, else 0."""
    overhead_bytes: Reals
    in_flight_micro_batches: Reals
    backward_peak_bytes: Reals
    """States, buffers, activations, logits and overhead at the backward's high point."""
    step_peak_bytes: Reals
    """States, step temporaries and overhead during the optimizer step."""
    peak_bytes: Reals
    """The larger of the two."""


def training_terms(job: TrainingJob, layout: ParallelLayout, *, stage: Stage,
                   coeffs: SliceCoefficients | None = None, acts: ActivationCoefficients | None = None,
                   states: JobStates | None = None, dp: Ints | None = None, tp: Ints | None = None,
                   pp: Ints | None = None, cp: Ints | None = None, ep: Ints | None = None, sp: Flags | None = None,
                   micro_batch_size: Ints | None = None, micro_batches: Ints | None = None,
                   overhead: Reals | None = None, shared: StageTerms | None = None) -> TrainingTerms:
    """Per-GPU bytes of each term on the ``stage`` pipeline stage (``first`` holds the
    embedding and the most in-flight micro-batches, ``last`` the head and the logits).

    Degrees default to ``layout``'s; pass numpy arrays to evaluate many layouts at
    once (``coeffs``, ``acts``, ``states`` and the engine-independent ``shared``
    :func:`stage_terms` are then computed once by the caller). Every byte figure is
    a float or an array.
    """
    spec = job.model
    c = coeffs or slice_coefficients(spec, layout.zero.param_persistence_threshold)
    a = acts or ActivationCoefficients.from_setup(spec, engine_setup(job.setup, layout.resolved_engine))
    st = states or job_states(job, layout.resolved_engine)
    dp = layout.dp if dp is None else dp
    tp = layout.tp if tp is None else tp
    pp = layout.pp if pp is None else pp
    cp = layout.cp if cp is None else cp
    ep = layout.ep if ep is None else ep
    micro_batches = layout.micro_batches if micro_batches is None else micro_batches
    if shared is None:
        shared = stage_terms(c, a, stage=stage, virtual_stages=layout.virtual_stages, tp=tp, pp=pp, cp=cp, ep=ep,
                             sp=layout.sequence_parallel if sp is None else sp,
                             micro_batch_size=job.micro_batch_size if micro_batch_size is None else micro_batch_size,
                             micro_batches=micro_batches)
    params = shared.rank
    sharded = shard_model_states(recipe=st.recipe, params=params, layout=layout, dp=dp, cp=cp, ep=ep, tp=tp,
                                 pp=pp, layer_params=shared.layer_params, root_params=shared.root_params,
                                 trainable_fraction=st.trainable_fraction)
    step_temporaries = step_temporaries_bytes(sharded, st)
    overhead = job.overhead_bytes if overhead is None else overhead
    peaks = state_peaks(sharded, step_temporaries, overhead)
    backward, peak = stage_peak_bytes(peaks, shared.backward, layout, micro_batches=micro_batches, overhead=overhead)
    return TrainingTerms(
        gpu_params=params.total, states=replace(sharded, step_temporaries_bytes=step_temporaries),
        activations_bytes=shared.activations_bytes, outside_activations_bytes=shared.outside_bytes,
        logits_bytes=shared.logits_bytes, kept_activations_bytes=shared.kept_bytes,
        current_layer_bytes=shared.current_layer_bytes, kept_layer_bytes=shared.kept_layer_bytes,
        grads_persist=where(micro_batches > 1, 1, 1 if gradients_persist(layout) else 0),
        overhead_bytes=overhead, in_flight_micro_batches=shared.in_flight_micro_batches,
        backward_peak_bytes=backward, step_peak_bytes=peaks.step_peak_bytes, peak_bytes=peak,
    )


_NOTES = {
    "weights": "parameters as held on this GPU",
    "master_weights": "fp32 master copy, partitioned with the optimizer state",
    "gradients": "parameter gradients as held on this GPU",
    "optimizer": "optimizer states as held on this GPU",
    "buffers/gathered_params": "parameters gathered for compute (ZeRO-3 live set + prefetch / FSDP units)",
    "buffers/unsharded_grads": "full gradients of the module being reduce-scattered",
    "buffers/comm_buckets": "gradient reduce buckets (DeepSpeed reduce_bucket_size / DDP buckets)",
    "buffers/optimizer_step": "optimizer-step temporaries (DeepSpeed's fp32 gradient partition, foreach copies)",
    "activations": "saved for backward (vramplan.training per-layer model) x layers on the stage x in-flight "
                   "micro-batches (+ the layer in backward, when that is the high point)",
    "activations/outside_layers": "embedding, final norm and head inputs",
    "logits": "logits and loss at the loss backward (vramplan.memory.logits), vocab split by tp",
    "overhead": "CUDA context, cuBLAS workspace, NCCL buffers (vramplan.memory.overhead)",
}


def backward_point(terms: TrainingTerms) -> tuple[str, dict[str, float]]:
    """Where the backward's high point falls for one layout, and the activation-side
    terms alive there (the same three points :func:`backward_peak_bytes` compares)."""
    kept, current = float(terms.kept_activations_bytes), float(terms.current_layer_bytes)
    outside, logits = float(terms.outside_activations_bytes), float(terms.logits_bytes)
    grads = float(terms.states.gradients_bytes)
    persist = bool(terms.grads_persist)
    points = {
        "loss backward": {"activations": kept, "activations/outside_layers": outside, "logits": logits,
                          "gradients": grads if persist else 0.0},
        "last layer backward": {"activations": kept - float(terms.kept_layer_bytes) + current,
                                "gradients": grads if persist else 0.0},
        "first layer backward": {"activations": current, "gradients": grads},
    }
    name = max(points, key=lambda k: sum(points[k].values()))
    return name, points[name]


def _components(terms: TrainingTerms, phase: str) -> list[Component]:
    backward = phase == "backward"
    alive = backward_point(terms)[1] if backward else {"gradients": float(terms.states.gradients_bytes)}
    st = terms.states
    raw = [
        ("weights", st.weights_bytes), ("master_weights", st.master_weights_bytes),
        ("gradients", alive.get("gradients", 0)), ("optimizer", st.optimizer_bytes),
        ("buffers/comm_buckets", st.comm_buckets_bytes),
        ("buffers/gathered_params", st.gathered_params_bytes if backward else 0),
        ("buffers/unsharded_grads", st.unsharded_grads_bytes if backward else 0),
        ("buffers/optimizer_step", 0 if backward else st.step_temporaries_bytes),
        ("activations", alive.get("activations", 0)),
        ("activations/outside_layers", alive.get("activations/outside_layers", 0)),
        ("logits", alive.get("logits", 0)),
        ("overhead", terms.overhead_bytes),
    ]
    return [Component(name=name, bytes=int(round(float(b))), note=_NOTES[name]) for name, b in raw if b > 0]


def estimate_on_layout(job: TrainingJob, layout: ParallelLayout, *, num_gpus: int | None = None) -> Estimate:
    """Per-GPU training memory of ``job`` on ``layout``: the busiest pipeline stage at
    its peak phase (backward or optimizer step), with host RAM for offloaded states.

    Validates the layout against the model and, when given, against ``num_gpus``.
    """
    spec = job.model
    layout.check_model(spec)
    if num_gpus is not None:
        layout.check_gpus(num_gpus)
    check_attention_for_cp(job, layout.cp)
    layout.check_sequence(job.setup.seq)
    if job.overhead_bytes == 0:
        job = replace(job, overhead_bytes=default_overhead_bytes(layout.num_gpus))
    stages: list[Stage] = ["first"] if layout.pp == 1 else ["first", "last"]
    per_stage = {s: training_terms(job, layout, stage=s) for s in stages}
    stage = max(stages, key=lambda s: float(per_stage[s].peak_bytes))
    terms = per_stage[stage]
    phase = "backward" if terms.backward_peak_bytes >= terms.step_peak_bytes else "optimizer_step"
    comps = _components(terms, phase)
    point = f" ({backward_point(terms)[0]})" if phase == "backward" else ""
    host: list[Component] = []
    if terms.states.host_per_gpu_bytes > 0:
        gpus_in_node = min(layout.gpus_per_node, layout.num_gpus)
        moved = "parameters, optimizer states" if layout.offload == "params" else "optimizer states"
        host.append(Component(name="optimizer/offloaded", bytes=int(round(float(terms.states.host_per_gpu_bytes))) * gpus_in_node,
                              note=f"host RAM per node ({gpus_in_node} GPUs): offloaded {moved}, master weights "
                                   "and fp32 gradients"))
    engine = layout.resolved_engine
    stage_note = "" if layout.pp == 1 else \
        f" (pipeline stage: {stage}, {float(terms.in_flight_micro_batches):g} micro-batches in flight)"
    setup = job.setup
    return Estimate(
        model=spec.name, kind="training", components=tuple(comps), phase=phase + point + stage_note,
        phases=(("backward", int(terms.backward_peak_bytes)), ("optimizer_step", int(terms.step_peak_bytes))),
        host_components=tuple(host), num_gpus=layout.num_gpus,
        details={"layout": layout.describe(), "engine": engine, "recipe": RECIPES[engine],
                 "params_on_gpu": int(terms.gpu_params), "stage": stage, "micro_batch_size": setup.batch,
                 "seq": setup.seq, "recompute": setup.recompute_policy},
        assumptions=(f"mixed precision as {engine} does it: {RECIPES[engine]}",
                     "activations per layer from vramplan.training, split by tp per Korthikanti et al. 2022",
                     f"DeepSpeed buffers at defaults: {layout.zero}" if engine == "deepspeed" else
                     "FSDP unit = one decoder layer; root unit = embedding, final norm, head"
                     if engine == "fsdp" else "no extra engine buffers"),
    )
