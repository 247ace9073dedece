"""What each role holds on one GPU, taken from the single-job estimators.

Nothing here re-derives a formula: a trained role's step is
:func:`vramplan.training.estimate_training` (one GPU) or
:func:`vramplan.distributed.estimate_on_layout` (a ZeRO/FSDP layout over the trainer
GPUs); the rollout engine is :func:`vramplan.inference.estimate_inference` with
``engine="vllm"``; a frozen role's forward is its weights
(:mod:`vramplan.memory.weights`) plus one decoder layer's peak
(:func:`vramplan.memory.inference_buffers.layer_peak_bytes`) or the logits
(:func:`vramplan.memory.inference_buffers.logits_bytes`), whichever is larger.
This module splits each of those into what stays **resident** between phases and
what exists only while the role computes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vramplan.dtypes import BF16_BYTES, get_dtype
from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.intmath import ceil_div
from vramplan.jobs.roles import FrozenRole, RLJob, RolloutEngine, TrainerRole
from vramplan.model.spec import ModelSpec

COMPUTE_BYTES = BF16_BYTES
"""bf16/fp16: the dtype weights are synced and forward passes run in."""


def value_model_spec(spec: ModelSpec) -> ModelSpec:
    """A value or reward model on ``spec``'s backbone: a one-output head in place of the
    language-model head (OpenRLHF's ``score`` head, ``--ds.value_head_prefix``; verl's
    critic ``AutoModelForTokenClassification(num_labels=1)``; TRL's reward models
    ``AutoModelForSequenceClassification``). Counted as ``spec`` with the output head tied
    to the embedding: no ``vocab x hidden`` head matrix (the ``hidden``-element value head
    is left out, under 0.01 % of any catalog model)."""
    if spec.tie_word_embeddings:
        return spec
    return replace(spec, tie_word_embeddings=True)


# ---- trained roles ------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class TrainerFootprint:
    """A trained role on one of its GPUs."""

    role: str
    training: Estimate
    """Its training step at its peak (the single-job estimate, overhead included)."""
    weights_bytes: int
    """Parameters as held on this GPU (sharded under FSDP/ZeRO-3; LoRA: base + adapters)."""
    master_optimizer_bytes: int
    """fp32 master weights and optimizer states on this GPU."""
    gradient_buffer_bytes: int
    """Gradients kept between steps (accumulation, DeepSpeed's persistent partition); 0 otherwise."""
    overhead_bytes: int
    """CUDA context, cuBLAS workspace, NCCL buffers of the trainer process."""
    offload_params: bool
    offload_optimizer: bool

    def resident(self, *, params_off: bool = False, optimizer_off: bool = False) -> list[Component]:
        """What stays on the GPU while the role does not compute (overhead excluded),
        with the parts the flags offload left out."""
        out = []
        if not params_off:
            out.append(Component(name="weights", bytes=self.weights_bytes,
                                 note=f"{self.role} parameters as sharded for training"))
            if self.gradient_buffer_bytes:
                out.append(Component(name="gradients", bytes=self.gradient_buffer_bytes,
                                     note=f"{self.role} gradient buffers kept between steps"))
        if not optimizer_off and self.master_optimizer_bytes:
            out.append(Component(name="optimizer", bytes=self.master_optimizer_bytes,
                                 note=f"{self.role} optimizer states (+ fp32 master weights)"))
        return out

    def offloaded_bytes(self, *, params_off: bool, optimizer_off: bool) -> int:
        """Bytes per GPU moved to host memory under those flags."""
        return (self.weights_bytes + self.gradient_buffer_bytes if params_off else 0) + \
            (self.master_optimizer_bytes if optimizer_off else 0)

    def training_without_overhead(self) -> list[Component]:
        return [c for c in self.training.components if c.category != "overhead"]


def trainer_setup(job: RLJob, role: TrainerRole, *, value_head: bool = False):
    """The role's setup at the job's sequence length; DPO's micro-batch holds chosen and
    rejected sequences together (TRL ``DPOTrainer.concatenated_forward``). A value head
    (critic) writes one number per token, not ``vocab`` logits: its loss is counted as
    a fused head (``fused_ce``: no ``tokens x vocab`` tensor; the chunk it keeps, about
    ``tokens x hidden``, bounds the value head's ``tokens x 1`` from above)."""
    setup = role.setup
    setup = replace(setup, seq=job.sequence_tokens, batch=setup.batch * job.spec.sequences_per_sample)
    return replace(setup, fused_ce=True) if value_head else setup


def trainer_layout(job: RLJob, spec: ModelSpec):
    """The ParallelLayout of the trainer roles: data parallel over the trainer GPUs,
    sharded as ``job.sharding`` says."""
    from vramplan.parallel import ParallelLayout

    world = job.trainer_gpus
    kw: dict = {"dp": world, "gpus_per_node": job.gpus_per_node}
    if job.sharding == "fsdp":
        kw["fsdp"] = "full_shard"
    elif job.sharding in ("zero2", "zero3"):
        kw["zero_stage"] = int(job.sharding[-1])
    elif job.sharding == "zero3-offload":
        kw.update(zero_stage=3, offload="optimizer")
    layout = ParallelLayout(**kw)
    layout.check_model(spec)
    return layout


def trainer_footprint(job: RLJob, name: str, role: TrainerRole, spec: ModelSpec, *,
                      value_head: bool = False) -> TrainerFootprint:
    """One trained role: its step from the single-GPU estimator when it runs on one GPU
    unsharded, else from the layout estimator; its resident parts from the same model.
    ``value_head``: a critic (:func:`value_model_spec`)."""
    setup = trainer_setup(job, role, value_head=value_head)
    if value_head:
        spec = value_model_spec(spec)
    if job.trainer_gpus == 1:
        return _single_gpu(name, role, spec, setup)
    from vramplan.distributed import TrainingJob, default_overhead_bytes, estimate_on_layout, training_terms

    layout = trainer_layout(job, spec)
    tjob = TrainingJob(model=spec, setup=setup, overhead_bytes=default_overhead_bytes(layout.num_gpus))
    est = estimate_on_layout(tjob, layout, num_gpus=layout.num_gpus)
    terms = training_terms(tjob, layout, stage="first")
    grads = int(round(float(terms.states.gradients_bytes))) if float(terms.grads_persist) else 0
    return TrainerFootprint(role=name, training=est, weights_bytes=int(round(float(terms.states.weights_bytes))),
                            master_optimizer_bytes=int(round(float(terms.states.master_weights_bytes)
                                                             + float(terms.states.optimizer_bytes))),
                            gradient_buffer_bytes=grads, overhead_bytes=int(round(float(terms.overhead_bytes))),
                            offload_params=role.offload_params, offload_optimizer=role.offload_optimizer)


def _single_gpu(name: str, role: TrainerRole, spec: ModelSpec, setup) -> TrainerFootprint:
    from vramplan.distributed import default_overhead_bytes
    from vramplan.training import estimate_training, model_states

    est = estimate_training(spec, setup)
    overhead = default_overhead_bytes(1)
    est = replace(est, components=est.components + (Component(
        name="overhead", bytes=overhead, note="CUDA context and cuBLAS workspace (vramplan.memory.overhead)"),))
    states = model_states(spec, setup)
    weights = sum(c.bytes for c in states.weights) + states.adapter_weights
    grads = states.gradients if setup.grad_accum > 1 else 0
    return TrainerFootprint(role=name, training=est, weights_bytes=weights,
                            master_optimizer_bytes=states.optimizer_states, gradient_buffer_bytes=grads,
                            overhead_bytes=overhead, offload_params=role.offload_params,
                            offload_optimizer=role.offload_optimizer)


# ---- forward-only passes ------------------------------------------------------------
def layer_params(spec: ModelSpec) -> int:
    """Parameters of the largest decoder layer (one FSDP unit, one weight-sync bucket)."""
    from vramplan.distributed import layer_params as _layer_params
    from vramplan.parallel import slice_coefficients

    return int(_layer_params(slice_coefficients(spec), tp=1, ep=1))


def forward_transient_bytes(spec: ModelSpec, *, sequences: int, tokens: int, logits: bool) -> int:
    """Peak bytes a no-grad forward adds beside the weights: the two hidden-sized tensors
    transformers keeps through the layers (embedding output, layer input) plus the larger
    of one layer's peak and, for log-probabilities, the logits of every position with
    their fp32 copy (a reward or value head returns one number per sequence)."""
    from vramplan.memory.inference_buffers import ForwardShape, layer_peak_bytes, logits_bytes

    shape = ForwardShape(sequences=sequences, query_tokens=tokens, kv_tokens=tokens, act_bytes=COMPUTE_BYTES,
                         held_hidden=2)
    held = 2 * sequences * tokens * spec.hidden_size * COMPUTE_BYTES
    layer = layer_peak_bytes(spec, shape, tp=1, impl="sdpa")
    head = logits_bytes(spec, rows=sequences * tokens, act_bytes=COMPUTE_BYTES) if logits else 0
    return held + max(layer, head)


@dataclass(frozen=True, kw_only=True)
class FrozenFootprint:
    """A forward-only role on one trainer GPU."""

    role: str
    weights_bytes: int
    """Its weights as held on this GPU (sharded like the trainer under FSDP/ZeRO-3)."""
    gathered_bytes: int
    """One gathered layer while it computes (sharded layouts)."""
    forward_bytes: int
    """Transient bytes of one forward at the scoring micro-batch."""
    offload: bool


def frozen_footprint(job: RLJob, name: str, role: FrozenRole, spec: ModelSpec, *, logits: bool) -> FrozenFootprint:
    from vramplan.memory.weights import weight_components

    full = sum(c.bytes for c in weight_components(spec, role.weights))
    sharded = job.sharding in ("fsdp", "zero3", "zero3-offload") and job.trainer_gpus > 1
    world = job.trainer_gpus
    weights = ceil_div(full, world) if sharded else full
    elem = get_dtype(role.weights).bytes_for(1) if _plain(role.weights) else COMPUTE_BYTES
    gathered = layer_params(spec) * elem if sharded else 0
    forward = forward_transient_bytes(spec, sequences=score_micro_batch(job), tokens=job.sequence_tokens,
                                      logits=logits)
    return FrozenFootprint(role=name, weights_bytes=weights, gathered_bytes=gathered, forward_bytes=forward,
                           offload=role.offload)


def _plain(fmt: str) -> bool:
    from vramplan.quant import get_format

    return not get_format(fmt).quantized


def score_micro_batch(job: RLJob) -> int:
    """Sequences per GPU in a scoring forward."""
    return job.score_micro_batch or job.policy.setup.batch * job.spec.sequences_per_sample


# ---- the rollout engine -------------------------------------------------------------
ASLEEP_KEPT = ("overhead/non_torch", "overhead/nccl", "overhead/custom_allreduce", "buffers/cuda_graphs",
               "overhead/cuda_context")
"""Engine components that survive sleep. ``Worker.sleep`` (vllm/v1/worker/gpu_worker.py)
calls ``CuMemAllocator.sleep(offload_tags=("weights",) if level == 1 else tuple())``:
the allocator releases only the memory it tagged ``weights`` (backed up to CPU at
level 1) and ``kv_cache`` (vllm/device_allocator/cumem.py). The CUDA graph pool, NCCL
and custom all-reduce buffers and other non-torch memory stay; the profiling run's
activations go back with ``torch.cuda.empty_cache()``. An engine in its own process
keeps its CUDA context too."""


@dataclass(frozen=True, kw_only=True)
class EngineFootprint:
    """One vLLM instance's share of one GPU."""

    estimate: Estimate
    """The vLLM estimate at the job's utilisation for the sequences one instance holds."""
    awake: tuple[Component, ...]
    """Everything vLLM holds while generating: the estimate with the KV cache replaced by
    the whole pool it allocates (vLLM pre-allocates every block the budget allows)."""
    asleep: tuple[Component, ...]
    """What stays on the GPU while the trainer runs, for the engine's sleep level."""
    weights_bytes: int
    """Engine weights per GPU (the CPU backup under sleep level 1)."""
    kv_pool_bytes: int
    kv_needed_bytes: int
    """KV cache for every sequence of one instance at once (prompt + completion each)."""
    kv_per_sequence_bytes: int
    sequences_per_instance: int
    max_num_seqs: int
    sleep_level: int
    starts: bool
    """False when vLLM would refuse to start (no KV budget, or one sequence does not fit)."""


def engine_setup(job: RLJob, engine: RolloutEngine, *, sequences: int):
    from vramplan.inference import InferenceSetup

    context = engine.max_model_len or job.sequence_tokens
    if context < job.sequence_tokens:
        raise InputError(f"max_model_len: {context} is shorter than prompt + completion = "
                         f"{job.prompt_tokens} + {job.completion_tokens}")
    return InferenceSetup(engine="vllm", gpu=job.gpu, gpu_memory_utilization=engine.gpu_memory_utilization,
                          tp=engine.tp, batch=sequences, context=context, prompt=job.prompt_tokens,
                          max_num_seqs=engine.max_num_seqs, max_num_batched_tokens=engine.max_num_batched_tokens,
                          kv_dtype=engine.kv_dtype,
                          enforce_eager=engine.enforce_eager, weights=engine_weights(job, engine))


def engine_weights(job: RLJob, engine: RolloutEngine) -> str | None:
    """The engine's weights format: the user's, or for a QLoRA policy vLLM's in-flight
    bitsandbytes NF4 (TRL passes ``quantization="bitsandbytes"`` when the policy has
    ``bnb.nn.Linear4bit`` modules, trl/generation/vllm_generation.py)."""
    if engine.weights is not None:
        return engine.weights
    return "nf4" if job.policy.setup.method == "qlora" else None


def sequences_per_instance(job: RLJob) -> int:
    """Sequences one engine instance (one TP group) generates per rollout step."""
    instances = max(1, job.engine_gpus // job.rollout.tp)
    return ceil_div(job.rollout_sequences, instances)


def engine_footprint(job: RLJob, spec: ModelSpec, *, shared_process: bool) -> EngineFootprint:
    """The engine from the vLLM estimate. ``shared_process``: the engine runs inside the
    trainer's process (TRL ``vllm_mode="colocate"`` uses ``distributed_executor_backend=
    "external_launcher"``; verl's hybrid worker), so its CUDA context is the trainer's."""
    from vramplan.inference import estimate_inference
    from vramplan.memory.kv_cache import kv_bytes_per_token_per_layer, kv_cache_bytes

    engine = job.rollout
    seqs = sequences_per_instance(job)
    est = estimate_inference(spec, engine_setup(job, engine, sequences=seqs))
    d = est.details
    kv_dtype = str(d["kv_dtype"])
    pool = int(d["kv_blocks"] or 0) * engine_block_size(est) * kv_bytes_per_token_per_layer(
        spec, kv_dtype, tp=engine.tp) * spec.num_layers
    needed = est.get("kv_cache")
    per_seq = kv_cache_bytes(spec, context_tokens=int(d["context_tokens"]), batch=1, dtype=kv_dtype, tp=engine.tp,
                             block_size=engine_block_size(est))
    awake = []
    for c in est.components:
        if c.name == "overhead/cuda_context" and shared_process:
            continue
        if c.name == "kv_cache":
            c = Component(name="kv_cache", bytes=pool, note=f"the whole pool vLLM allocates: {d['kv_blocks']:,} "
                          f"blocks ({d['kv_pool_tokens']:,} tokens); the rollout needs {needed:,} B")
        awake.append(c)
    asleep = awake if engine.sleep_level == 0 else [c for c in awake if c.name in ASLEEP_KEPT]
    budget = d["kv_budget_bytes"]
    starts = budget is not None and budget > 0 and per_seq <= budget
    return EngineFootprint(estimate=est, awake=tuple(awake), asleep=tuple(asleep), weights_bytes=est.get("weights"),
                           kv_pool_bytes=pool, kv_needed_bytes=needed, kv_per_sequence_bytes=per_seq,
                           sequences_per_instance=seqs, max_num_seqs=int(d["max_num_seqs"]),
                           sleep_level=engine.sleep_level, starts=starts)


def engine_block_size(est: Estimate) -> int:
    return int(est.details["block_size"])


def weight_sync_bytes(job: RLJob, spec: ModelSpec) -> int:
    """Transfer buffer of the weight sync on each side: one decoder layer of parameters
    in the compute dtype (verl and OpenRLHF broadcast the gathered parameters tensor by
    tensor, TRL's ``sync_weights`` loads them parameter by parameter; under FSDP/ZeRO-3
    a layer is gathered at a time). A LoRA policy under ZeRO-3 gathers the whole model
    at once to merge its adapters (TRL ``sync_weights``: "we must gather the full model
    at once before merging")."""
    from vramplan.model import count_params

    if job.policy.setup.method != "full" and job.sharding.startswith("zero3") and job.trainer_gpus > 1:
        return count_params(spec).total_params * COMPUTE_BYTES
    return layer_params(spec) * COMPUTE_BYTES


ROLLOUT_BYTES_PER_TOKEN = 8 + 8 + 4 + 4
"""What a trainer GPU keeps of the rollout per token until the update: token ids and
attention mask (int64 each), old and reference log-probabilities (fp32 each) —
TRL ``GRPOTrainer._generate_and_score_completions`` returns them on the device."""


def rollout_batch_bytes(job: RLJob) -> int:
    """The rollout's share of one trainer GPU: its sequences x tokens x
    :data:`ROLLOUT_BYTES_PER_TOKEN` (0 for offline algorithms)."""
    if not job.has_rollout:
        return 0
    sequences = ceil_div(job.rollout_sequences, job.trainer_gpus)
    return sequences * job.sequence_tokens * ROLLOUT_BYTES_PER_TOKEN
