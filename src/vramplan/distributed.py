"""Per-GPU memory of a training job laid out on many GPUs.

:func:`training_terms` assembles the per-GPU terms of one pipeline stage from the
building blocks in :mod:`vramplan.parallel` (model-parallel slice, ZeRO/FSDP/Megatron
sharding, in-flight micro-batches) and the per-layer activation coefficients below.
Every argument that describes a layout may be a plain ``int`` or a numpy array: the
planner calls this very function over millions of layouts at once, and
:func:`estimate_training` calls it for one layout and renders the usual
:class:`~vramplan.estimate.Estimate` tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.parallel import (
    MIXED_ADAM,
    RECIPES,
    ParallelLayout,
    SliceCoefficients,
    StateBytesPerParam,
    in_flight_microbatches,
    maximum,
    minimum,
    rank_params,
    shard_model_states,
    slice_coefficients,
    stage_layers,
    where,
)

Recompute = Literal["none", "selective", "full"]
RECOMPUTES: tuple[str, ...] = ("none", "selective", "full")
Stage = Literal["first", "last"]

ACTIVATION_BYTES = 2
"""Bytes of one saved 16-bit activation element."""
FP32_BYTES = 4
"""Bytes of an fp32 element (the loss upcast of the logits)."""
TOKEN_ID_BYTES = 8
"""Bytes of one int64 token id (the embedding's saved input)."""


@dataclass(frozen=True, kw_only=True)
class ActivationCoefficients:
    """Bytes saved for backward per token, per decoder layer, split by how tensor and
    sequence parallelism divide them.

    Source: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
    Transformer Models", Table 2: ``sbh(10 + 24/t + 5as/(ht))`` with tensor
    parallelism, ``sbh/t (34 + 5as/h)`` with sequence parallelism, the ``5as/h`` score
    term gone with selective recomputation (and with flash attention, which saves no
    scores), ``2sbh`` per layer with full recomputation. The MLP share uses Megatron-LM's
    generalisation ``18 + 4 ffn/h`` (``theoretical_memory_usage.py``); a gated MLP saves
    its gate and up outputs and the product (3 ffn-wide 16-bit tensors instead of the
    GPT MLP's 2 = 4 ffn bytes), and an MoE layer's expert MLP runs ``top-k`` times per
    token. Departs from the paper in keeping GQA's smaller K/V.
    """

    replicated_per_token: int
    """Per layer, per token: norm inputs and dropout masks that only sequence
    parallelism splits (the paper's ``10 h``)."""
    tp_split_per_token: int
    """Per layer, per token: tensors split by tensor parallelism (QKV, attention output,
    MLP inputs and activations)."""
    scores_per_token_per_key: int
    """Per layer, per token, per attended key: softmax input/output and dropout of eager
    attention (the paper's ``5 a``); 0 with flash attention. Split by tp."""
    checkpoint_per_token: int
    """Per layer, per token, with full recomputation: the saved layer input (``2 h``)."""
    head_per_token: int
    """Output layer per token: final-norm output and fp32 logits for the loss
    (Megatron: ``4 sbh (1 + v/h)``), split by tp."""
    embedding_per_token: int
    """Embedding per token: token id and dropout mask (Megatron: ``8 sb + sbh``) on the first stage."""

    @classmethod
    def from_spec(cls, spec: Any, attention: Literal["flash", "eager"] = "flash") -> ActivationCoefficients:
        """The coefficients of ``spec`` (see the class docstring for the source)."""
        h = spec.hidden_size
        ffn = spec.intermediate_size
        if spec.moe is not None and spec.num_moe_layers:
            # Each token runs through top-k routed experts (and the shared one).
            ffn = spec.moe.expert_intermediate_size * spec.moe.experts_per_token \
                + spec.moe.shared_expert_intermediate_size
        kv_ratio = spec.kv_dim / spec.q_dim
        # Split by tp, per token (Korthikanti: 24 h = Q, K 4h + V 2h + projection input 2h
        # + MLP 16h): Q 2h, K and V 2h each scaled by GQA's kv/q ratio, projection input 2h.
        attention_split = ACTIVATION_BYTES * h * (2 + 2 * kv_ratio)
        # MLP: activation-function input and output, ffn wide each (16 h for ffn = 4h); a
        # gated MLP also keeps the second (up) projection's output.
        ffn_tensors = 3 if spec.mlp_gated else 2
        mlp_split = ACTIVATION_BYTES * ffn * ffn_tensors
        # Replicated without SP (10 h): two norm inputs 4h, QKV and MLP inputs 4h, two
        # dropout masks 2h (1 byte each).
        replicated = 10 * h
        # Eager attention per key: softmax output 2 + its dropout mask 1 + dropout output 2 bytes per head.
        scores = 0 if attention == "flash" else 5 * spec.num_attention_heads
        return cls(
            replicated_per_token=replicated,
            tp_split_per_token=int(attention_split + mlp_split),
            scores_per_token_per_key=scores,
            checkpoint_per_token=ACTIVATION_BYTES * h,
            head_per_token=FP32_BYTES * (h + spec.vocab_size),
            embedding_per_token=TOKEN_ID_BYTES + h,
        )


@dataclass(frozen=True, kw_only=True)
class TrainingJob:
    """What is trained, independent of how it is laid out."""

    model: Any
    """The :class:`~vramplan.model.ModelSpec`."""
    recipe: StateBytesPerParam = MIXED_ADAM
    """Bytes per parameter of weights, gradients, master weights and optimizer states."""
    micro_batch_size: int = 1
    """Sequences per micro-batch on one data-parallel rank."""
    seq_len: int = 4096
    """Tokens per sequence."""
    recompute: Recompute = "none"
    """Activation recomputation: none, selective (attention scores) or full (per layer)."""
    attention: Literal["flash", "eager"] = "flash"
    """Flash attention saves no score matrix; eager attention does."""
    trainable_fraction: float = 1.0
    """Share of parameters that get gradients and optimizer states (1 = full training)."""
    overhead_bytes: int = 0
    """Fixed per-GPU overhead (CUDA context, workspaces, NCCL); see :func:`default_overhead_bytes`."""

    def __post_init__(self) -> None:
        for name in ("micro_batch_size", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: expected a positive integer, got {value!r}")
        if self.recompute not in RECOMPUTES:
            raise InputError(f"recompute: expected none, selective or full, got {self.recompute!r}")
        if not 0 < self.trainable_fraction <= 1:
            raise InputError(f"trainable_fraction: expected a fraction in (0, 1], got {self.trainable_fraction!r}")


def default_overhead_bytes(num_gpus: int) -> int:
    """Fixed per-GPU overhead from :mod:`vramplan.memory.overhead` (CUDA context,
    cuBLAS workspace, NCCL buffers of one communicator spanning ``num_gpus``)."""
    from vramplan.memory.overhead import Overheads, fixed_overhead_components

    return sum(c.bytes for c in fixed_overhead_components(Overheads(), comm_group_ranks=num_gpus))


def layer_params(c: SliceCoefficients, *, tp: Any, ep: Any) -> Any:
    """Parameters of the largest decoder layer on one tp/ep rank (one FSDP unit)."""
    per_layer = c.attn_split_per_layer // tp + c.kv_split_per_layer // minimum(tp, c.num_kv_heads) \
        + c.replicated_per_layer
    moe = c.moe_shared_per_layer // tp + c.moe_replicated_per_layer + c.moe_experts_per_layer // (ep * tp)
    dense = c.dense_mlp_per_layer // tp
    return per_layer + (maximum(dense, moe) if c.num_moe_layers else dense)


def root_params(c: SliceCoefficients, *, tp: Any) -> Any:
    """Parameters outside the decoder layers on one tp rank (FSDP's root unit)."""
    return c.embedding // tp + c.position_embedding + c.final_norm + (0 if c.head_tied else c.head // tp)


def activation_bytes(job: TrainingJob, a: ActivationCoefficients, *, tokens: Any, seq: Any, tp: Any,
                     sp: Any, layers: Any) -> Any:
    """Activations one micro-batch of ``tokens`` (per cp rank) saves in ``layers``
    decoder layers (Korthikanti et al. 2022, Table 2; see :class:`ActivationCoefficients`).
    ``seq`` is the number of keys each token attends to (the score term)."""
    if job.recompute == "full":
        # Layer inputs only, plus one layer recomputed in full during its backward.
        one_layer = tokens * (a.tp_split_per_token / tp + where(sp, a.replicated_per_token / tp,
                                                                  a.replicated_per_token))
        return tokens * a.checkpoint_per_token * layers / where(sp, tp, 1) + one_layer
    replicated = where(sp, a.replicated_per_token / tp, a.replicated_per_token)
    scores = 0 if job.recompute == "selective" else a.scores_per_token_per_key * seq / tp
    return tokens * (replicated + a.tp_split_per_token / tp + scores) * layers


def training_terms(job: TrainingJob, layout: ParallelLayout, *, stage: Stage,
                   coeffs: SliceCoefficients | None = None, acts: ActivationCoefficients | None = None,
                   dp: Any = None, tp: Any = None, pp: Any = None, cp: Any = None, ep: Any = None,
                   sp: Any = None, micro_batch_size: Any = None, micro_batches: Any = None) -> dict[str, Any]:
    """Per-GPU bytes of each term on the ``stage`` pipeline stage (``first`` holds the
    embedding and the most in-flight micro-batches, ``last`` the head and the logits).

    Degrees default to ``layout``'s; pass numpy arrays to evaluate many layouts at
    once. Returns a dict of terms plus ``backward_peak`` (states, buffers, activations,
    logits, overhead) and ``step_peak`` (states, step temporaries, overhead) and
    ``peak`` (the larger), all in bytes (float or array).
    """
    spec = job.model
    c = coeffs or slice_coefficients(spec, layout.zero.param_persistence_threshold)
    a = acts or ActivationCoefficients.from_spec(spec, job.attention)
    dp = layout.dp if dp is None else dp
    tp = layout.tp if tp is None else tp
    pp = layout.pp if pp is None else pp
    cp = layout.cp if cp is None else cp
    ep = layout.ep if ep is None else ep
    sp = layout.sequence_parallel if sp is None else sp
    mbs = job.micro_batch_size if micro_batch_size is None else micro_batch_size
    m = layout.micro_batches if micro_batches is None else micro_batches

    params = rank_params(c, tp=tp, pp=pp, ep=ep, stage=stage)
    states = shard_model_states(recipe=job.recipe, params=params, layout=layout, dp=dp, cp=cp, ep=ep, tp=tp,
                                pp=pp, layer_params=layer_params(c, tp=tp, ep=ep),
                                root_params=root_params(c, tp=tp), trainable_fraction=job.trainable_fraction)
    tokens = mbs * job.seq_len / cp  # tokens of one micro-batch on one context-parallel rank
    layers = stage_layers(c.num_layers, pp)
    in_flight = in_flight_microbatches(pp=pp, micro_batches=m, virtual_stages=layout.virtual_stages, stage=stage)
    per_mb = activation_bytes(job, a, tokens=tokens, seq=job.seq_len, tp=tp, sp=sp, layers=layers)
    activations = per_mb * in_flight
    single = pp == 1
    embedding = tokens * a.embedding_per_token * in_flight if stage == "first" else 0 * tokens
    if stage == "last":
        embedding = where(single, tokens * a.embedding_per_token, 0 * tokens)
    logits = tokens * a.head_per_token / tp if stage == "last" else where(single, tokens * a.head_per_token / tp,
                                                                           0 * tokens)
    overhead = job.overhead_bytes
    backward = states.backward_peak + activations + embedding + logits + overhead
    step = states.step_peak + overhead
    return {
        "params": params.total, "weights": states.weights, "master_weights": states.master_weights,
        "gradients": states.gradients, "optimizer": states.optimizer,
        "gathered_params": states.gathered_params, "unsharded_grads": states.unsharded_grads,
        "comm_buckets": states.comm_buckets, "step_temporaries": states.step_temporaries,
        "activations": activations, "embedding_activations": embedding, "logits": logits,
        "overhead": overhead + 0 * tokens, "host_per_gpu": states.host_per_gpu,
        "in_flight": in_flight + 0 * tokens,
        "backward_peak": backward, "step_peak": step, "peak": maximum(backward, step),
    }


def per_gpu_peak_bytes(job: TrainingJob, layout: ParallelLayout, **kw: Any) -> Any:
    """Peak bytes of the busiest GPU: the larger of the first and last pipeline stage."""
    first = training_terms(job, layout, stage="first", **kw)["peak"]
    last = training_terms(job, layout, stage="last", **kw)["peak"]
    return maximum(first, last)


_NOTES = {
    "weights": "parameters as held on this GPU",
    "master_weights": "fp32 master copy, partitioned with the optimizer state",
    "gradients": "parameter gradients as held on this GPU",
    "optimizer": "optimizer states as held on this GPU",
    "buffers/gathered_params": "parameters gathered for compute (ZeRO-3 live set + prefetch / FSDP units)",
    "buffers/unsharded_grads": "full gradients of the module being reduce-scattered",
    "buffers/comm_buckets": "gradient reduce buckets (DeepSpeed reduce_bucket_size / DDP buckets)",
    "buffers/fp32_grad_partition": "fp32 gradient partition materialised for the optimizer step",
    "activations": "saved for backward: Korthikanti et al. 2022 Table 2 x layers on the stage x in-flight micro-batches",
    "activations/embedding": "token ids and embedding dropout mask of the in-flight micro-batches",
    "logits": "final-norm output and fp32 logits for the loss (Megatron theoretical_memory_usage.py)",
    "overhead": "CUDA context, cuBLAS workspace, NCCL buffers (vramplan.memory.overhead)",
}


def _components(terms: dict[str, Any], phase: str) -> list[Component]:
    backward = phase == "backward"
    raw = [
        ("weights", terms["weights"]), ("master_weights", terms["master_weights"]),
        ("gradients", terms["gradients"]), ("optimizer", terms["optimizer"]),
        ("buffers/comm_buckets", terms["comm_buckets"]),
        ("buffers/gathered_params", terms["gathered_params"] if backward else 0),
        ("buffers/unsharded_grads", terms["unsharded_grads"] if backward else 0),
        ("buffers/fp32_grad_partition", 0 if backward else terms["step_temporaries"]),
        ("activations", terms["activations"] if backward else 0),
        ("activations/embedding", terms["embedding_activations"] if backward else 0),
        ("logits", terms["logits"] if backward else 0),
        ("overhead", terms["overhead"]),
    ]
    return [Component(name=name, bytes=int(round(float(b))), note=_NOTES[name]) for name, b in raw if b > 0]


def estimate_training(job: TrainingJob, layout: ParallelLayout, *, num_gpus: int | None = None) -> Estimate:
    """Per-GPU training memory of ``job`` on ``layout``: the busiest pipeline stage at
    its peak phase (backward or optimizer step), with host RAM for offloaded states.

    Validates the layout against the model and, when given, against ``num_gpus``.
    """
    spec = job.model
    layout.check_model(spec)
    if num_gpus is not None:
        layout.check_gpus(num_gpus)
    if job.overhead_bytes == 0:
        job = replace(job, overhead_bytes=default_overhead_bytes(layout.num_gpus))
    stages: list[Stage] = ["first"] if layout.pp == 1 else ["first", "last"]
    per_stage = {s: training_terms(job, layout, stage=s) for s in stages}
    stage = max(stages, key=lambda s: float(per_stage[s]["peak"]))
    terms = per_stage[stage]
    phase = "backward" if terms["backward_peak"] >= terms["step_peak"] else "optimizer_step"
    comps = _components(terms, phase)
    host: list[Component] = []
    if terms["host_per_gpu"] > 0:
        gpus_in_node = min(layout.gpus_per_node, layout.num_gpus)
        host.append(Component(name="optimizer/offloaded", bytes=int(round(float(terms["host_per_gpu"]))) * gpus_in_node,
                              note=f"host RAM per node ({gpus_in_node} GPUs): offloaded "
                                   f"{'parameters, ' if layout.offload == 'params' else ''}optimizer states, "
                                   "master weights and fp32 gradients"))
    engine = layout.resolved_engine
    stage_note = "" if layout.pp == 1 else f" (pipeline stage: {stage}, {float(terms['in_flight']):g} micro-batches in flight)"
    return Estimate(
        model=spec.name, kind="training", components=tuple(comps), phase=phase + stage_note,
        phases=(("backward", int(terms["backward_peak"])), ("optimizer_step", int(terms["step_peak"]))),
        host_components=tuple(host), num_gpus=layout.num_gpus,
        details={"layout": layout.describe(), "engine": engine, "recipe": RECIPES[engine],
                 "params_on_gpu": int(terms["params"]), "stage": stage,
                 "micro_batch_size": job.micro_batch_size, "seq_len": job.seq_len,
                 "recompute": job.recompute},
        assumptions=(f"mixed precision as {engine} does it: {RECIPES[engine]}",
                     "activations: Korthikanti et al. 2022 Table 2 (GPT form, Megatron ffn generalisation)",
                     f"DeepSpeed buffers at defaults: {layout.zero}" if engine == "deepspeed" else
                     "FSDP unit = one decoder layer; root unit = embedding, final norm, head"
                     if engine == "fsdp" else "no extra engine buffers"),
    )
