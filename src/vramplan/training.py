"""Training memory on one GPU: :class:`TrainingSetup` in, :class:`~vramplan.estimate.Estimate` out.

The step is a timeline. Always resident: weights (and, from the second step on,
optimizer states; accumulated gradients while ``grad_accum > 1``). The forward adds
each layer's saved activations, then the logits and the loss. The backward frees a
layer's activations as it produces that layer's gradients. The optimizer step adds
its temporaries beside all gradients. :func:`timeline` evaluates the live bytes at
each of these points; the estimate reports the components at the highest one and
the high point of every phase (``Estimate.phases``).

The numbers are tensor memory (what ``torch.cuda.memory_allocated`` counts). CUDA
context, kernels' workspaces and allocator slack are separate terms: the verdict on a
GPU counts them beside the peak (:func:`~vramplan.memory.overhead.fit_verdict`), as every command does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from vramplan import validate as v
from vramplan.dtypes import get_dtype
from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.memory import activations as act
from vramplan.memory import mixer_activations, sparse_indexer
from vramplan.memory.precision import CONVENTIONS, PrecisionRecipe, get_precision
from vramplan.memory.overhead import Overheads, fit_verdict
from vramplan.memory.logits import LogitsBytes, logits_bytes
from vramplan.memory.lora import (
    ADAPTER_BYTES, adapter_activation_bytes_per_token, adapter_groups, adapter_weight_cast_bytes,
    dequant_buffer_bytes, folded_weight_bytes_per_layer, module_adapter_groups, peft_targets,
    mamba_safe_targets, rank_beyond_targets_warning,
)
from vramplan.memory.optimizer import OptimizerSpec, get_optimizer, optimizer_state_bytes, step_temporary_bytes
from vramplan.memory.weights import buffer_components, weight_components
from vramplan.model.custom import ParamOnlyModel
from vramplan.model.resolve import resolve_model
from vramplan.model.spec import ModelSpec
from vramplan.model.tensors import TensorGroup, model_tensors
from vramplan.quant import WeightFormat, get_format

if TYPE_CHECKING:
    from vramplan.gpus import GpuSpec
    from vramplan.parallel import ParallelLayout
    from vramplan.seed_article import SeedArithmetic

Method = Literal["full", "lora", "qlora"]
ActivationModel = Literal["derived", "seed"]
METHODS: tuple[str, ...] = ("full", "lora", "qlora")
ATTENTIONS: tuple[str, ...] = ("flash", "sdpa", "eager")
RECOMPUTES: tuple[str, ...] = ("none", "selective", "full")
LOAD_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16")
ACTIVATION_MODELS: tuple[str, ...] = ("derived", "seed")
DEFAULT_TRAIN_SEQ = 2048
"""Tokens per training sequence when none is given (``vramplan train``, the web page's
training form): a fine-tuning length on one GPU. Planning a cluster defaults to
:data:`vramplan.plans.DEFAULT_PLAN_SEQ`, serving to
:data:`vramplan.options.DEFAULT_CONTEXT_TOKENS` (see docs/architecture.md, names)."""
ALL_LINEAR = "all-linear"
"""peft's ``target_modules="all-linear"``: every linear layer but the output head."""


@dataclass(frozen=True, kw_only=True)
class TrainingSetup:
    """How one GPU trains the model. Every field has the default most recipes use."""

    method: Method = "full"
    """Full fine-tuning / pre-training, LoRA on a 16-bit base, or QLoRA on an NF4 base."""
    precision: str = "bf16-mixed"
    """fp32, bf16-mixed, fp16-mixed (fp32 weights + autocast), bf16 or fp16 (16-bit weights)."""
    optimizer: str = "adamw"
    """adamw (foreach), adamw-fused, adamw-8bit, paged-adamw-8bit, sgd, sgd-momentum, adafactor, lion."""
    batch: int = 1
    """Micro-batch size (sequences per forward)."""
    seq: int = DEFAULT_TRAIN_SEQ
    """Tokens per sequence."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; above 1 the gradients stay resident through the forward."""
    recompute: Literal["none", "selective", "full"] | None = None
    """Activation recomputation; ``None``: full for QLoRA (peft's default), none otherwise."""
    attention: Literal["flash", "sdpa", "eager"] = "sdpa"
    """Attention kernel: flash/sdpa keep O(s) per head, eager keeps the s x s scores."""
    load_dtype: str | None = None
    """dtype the weights are loaded in (``from_pretrained(dtype=...)``) when it is not
    the recipe's: ``fp32`` for a LoRA base under ``bf16-mixed`` (the HF Trainer with
    ``bf16=True`` on a model loaded in fp32: the frozen base stays fp32 and autocast
    casts it per matmul), ``bf16`` for full training under autocast on bf16
    parameters (gradients and optimizer states follow the parameters). ``None``: the
    recipe's weight dtype (full), its compute dtype (a LoRA base). Not for QLoRA."""
    lora_rank: int = 16
    """LoRA rank r."""
    lora_targets: tuple[str, ...] | None = None
    """Linear modules that get adapters; ``None`` or ``("all-linear",)`` (peft's
    keyword): every linear module of the blocks except MoE gates (the QLoRA paper's
    "all linear layers")."""
    fused_ce: bool = False
    """Fused linear cross entropy (Liger-Kernel): logits never materialised whole."""
    dropout: bool = False
    """Dropout active in the model (GPT-2 style); modern LLM configs set it to 0."""
    activation_model: ActivationModel = "derived"
    """``derived``: this module's model; ``seed``: the seed article's rule of thumb
    (:mod:`vramplan.seed_article`), whose bytes per value follow ``precision`` (``int8``: 1)."""
    seed_dtype_bytes: int | None = None
    """Bytes per value in the seed method when not the precision's (``--seed-bytes``)."""
    strict: bool = False
    """Turn warnings (sequence beyond the model's positions) into errors."""
    input_len: int | None = None
    """Encoder-decoder models (T5, BART): encoder input tokens per sequence (``seq`` is
    then the decoder's target length); None = ``seq``."""
    images: int = 0
    """Multimodal models: images per sequence; their tokens join ``seq``
    (:mod:`vramplan.memory.vision_tower`)."""
    image_size: int | None = None
    """Pixels per side of each image for dynamic-resolution towers; None = 1024."""

    def __post_init__(self) -> None:
        if self.input_len is not None:
            v.integer("input_len", self.input_len, 1, v.LENGTH_MAX)
        v.integer("images", self.images, 0, 10_000)
        if self.image_size is not None:
            v.integer("image_size", self.image_size, 1, 100_000)
        for name, hi in (("batch", v.BATCH_MAX), ("seq", v.LENGTH_MAX), ("grad_accum", v.BATCH_MAX),
                         ("lora_rank", v.HIDDEN_MAX)):
            v.integer(name, getattr(self, name), 1, hi)
        v.optional_integer("seed_dtype_bytes", self.seed_dtype_bytes, 1, 8)
        for name in ("fused_ce", "dropout", "strict"):
            v.flag(name, getattr(self, name))
        for name in ("method", "precision", "optimizer", "attention", "activation_model"):
            if not isinstance(getattr(self, name), str):
                raise InputError(f"{name}: expected a name, got {v.shown(getattr(self, name))}")
        if self.recompute is not None and not isinstance(self.recompute, str):
            raise InputError(f"recompute: expected a name or None, got {v.shown(self.recompute)}")
        if self.lora_targets is not None:
            v.names("lora_targets", self.lora_targets)
        for name, allowed in (("method", METHODS), ("attention", ATTENTIONS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.recompute is not None and self.recompute not in RECOMPUTES:
            raise InputError(f"recompute: expected one of {', '.join(RECOMPUTES)}, got {self.recompute!r}")
        if self.activation_model not in ACTIVATION_MODELS:
            raise InputError(f"activation_model: expected derived or seed, got {self.activation_model!r}")
        from vramplan.seed_article import PRECISION_BYTES, RULE_ONLY_PRECISIONS

        if self.activation_model == "seed":
            if self.precision not in PRECISION_BYTES:
                raise InputError(f"precision: the seed rule takes one of {', '.join(PRECISION_BYTES)}, "
                                 f"got {self.precision!r}")
        elif self.precision in RULE_ONLY_PRECISIONS:
            raise InputError(f"precision: no training recipe keeps every tensor in {self.precision}; it is the "
                             "seed article's rule of thumb (activation_model seed), or train in 8 bits with "
                             "method qlora or optimizer adamw-8bit", fields=("activation_model", "method", "optimizer"))
        else:
            get_precision(self.precision)
        get_optimizer(self.optimizer)
        if self.load_dtype is not None:
            if self.load_dtype not in LOAD_DTYPES:
                raise InputError(f"load_dtype: expected one of {', '.join(LOAD_DTYPES)}, got {self.load_dtype!r}")
            if self.method == "qlora":
                raise InputError("load_dtype: QLoRA loads its base in 4 bits; leave load_dtype out")

    @property
    def recompute_policy(self) -> str:
        if self.recompute is not None:
            return self.recompute
        return "full" if self.method == "qlora" else "none"

    @property
    def recipe(self) -> PrecisionRecipe:
        return get_precision(self.precision)

    @property
    def opt(self) -> OptimizerSpec:
        return get_optimizer(self.optimizer)


# ---- model states -------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ModelStates:
    """Bytes of the resident model states, split as the estimate reports them."""

    weights: tuple[Component, ...]
    """Frozen or trainable weights as stored."""
    trainable: tuple[TensorGroup, ...]
    """Tensors that get gradients and optimizer states."""
    trainable_bytes_per_param: int
    """Element size of trainable tensors (their gradients and torch optimizer states use it)."""
    gradients: int
    """All gradients together."""
    optimizer_states: int
    """All optimizer states together."""
    step_temporaries: int
    """What ``optimizer.step()`` allocates on top."""
    dequant_buffer: int = 0
    """QLoRA: one dequantized weight."""
    adapter_weights: int = 0
    """LoRA: adapter parameters."""


QLORA_UNQUANTIZED_DTYPE = "fp32"
"""peft's ``prepare_model_for_kbit_training`` casts every 16-bit parameter that is not
``Params4bit`` (embeddings, norms, the head) to fp32."""


def lora_targets(spec: ModelSpec, setup: TrainingSetup) -> tuple[str, ...]:
    """The setup's target list as peft receives it (``all-linear`` when none is given;
    on the Mamba-based types where peft refuses ``out_proj``, every other linear:
    :func:`vramplan.memory.lora.mamba_safe_targets`);
    :func:`vramplan.memory.lora.peft_targets` resolves it."""
    if setup.lora_targets is None:
        return mamba_safe_targets(spec) or (ALL_LINEAR,)
    return tuple(setup.lora_targets)


def base_dtype(setup: TrainingSetup) -> str:
    """dtype the (frozen or trained) base weights are stored in: the load dtype when
    given, else the compute dtype for a LoRA base, the recipe's weight dtype for full
    training."""
    if setup.load_dtype is not None:
        return setup.load_dtype
    return setup.recipe.compute_dtype if setup.method == "lora" else setup.recipe.weight_dtype


def effective_recipe(setup: TrainingSetup) -> PrecisionRecipe:
    """The recipe as the tensors see it: the weights in :func:`base_dtype`, and
    autocast casting only when the weights are wider than the compute dtype (autocast
    on bf16 weights casts nothing; a bf16 LoRA base needs no casts either)."""
    recipe = setup.recipe
    if setup.method == "qlora":
        return replace(recipe, autocast=False)
    weight = base_dtype(setup)
    autocast = recipe.autocast and get_dtype(weight).bits > get_dtype(recipe.compute_dtype).bits
    return replace(recipe, weight_dtype=weight, autocast=autocast)


def _base_format(spec: ModelSpec, setup: TrainingSetup) -> str | WeightFormat:
    if setup.method == "qlora":
        return replace(get_format("nf4-dq"), unquantized_dtype=QLORA_UNQUANTIZED_DTYPE)
    return base_dtype(setup)


def model_states(spec: ModelSpec, setup: TrainingSetup) -> ModelStates:
    """Weights, gradients, optimizer states and step temporaries for ``setup``."""
    recipe, opt = setup.recipe, setup.opt
    base = _base_format(spec, setup)
    weights = tuple(weight_components(spec, base)) + tuple(buffer_components(spec, get_format(base).unquantized_dtype))
    if setup.method == "full":
        trainable = tuple(model_tensors(spec))
        elem = effective_recipe(setup).weight_bytes_per_param
        adapters = dequant = 0
    else:
        trainable = tuple(adapter_groups(spec, lora_targets(spec, setup), setup.lora_rank))
        elem = ADAPTER_BYTES
        adapters = sum(g.params for g in trainable) * elem
        dequant = 0
        if setup.method == "qlora":
            fmt = get_format("nf4-dq")
            quantized = [g for g in model_tensors(spec) if fmt.quantizes(g.name, g.role)]
            dequant = dequant_buffer_bytes(spec, quantized, recipe.compute_bytes)
    params = sum(g.params for g in trainable)
    return ModelStates(weights=weights, trainable=trainable, trainable_bytes_per_param=elem,
                       gradients=params * elem, optimizer_states=optimizer_state_bytes(opt, trainable, elem),
                       step_temporaries=step_temporary_bytes(opt, trainable, elem), dequant_buffer=dequant,
                       adapter_weights=adapters)


# ---- activations --------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ActivationPlan:
    """Activation bytes of the whole model for one micro-batch, split for the timeline."""

    parts: dict[str, int]
    """Kept until backward, by ``activations/`` sub-path, summed over layers."""
    per_layer_kept: tuple[int, ...]
    """Per layer: bytes kept to its backward (incl. its autocast weight copies)."""
    per_layer_full: tuple[int, ...]
    """Per layer: bytes alive during its backward (recomputed ones included)."""
    per_layer_work: tuple[int, ...]
    """Per layer: gradient buffers alive inside its backward."""
    outside_layers: int
    """Embedding dropout, final norm, the head's autocast copy, LoRA intermediates outside."""
    forward_only: int
    """Alive at the forward's end but not kept into backward: autocast's weight cache
    under full recomputation, the returned last hidden state."""
    final_norm_transient: int = 0
    """Temporaries inside the final norm's forward."""
    per_micro_batch: act.MicroBatchBytes = act.MicroBatchBytes()
    """The parts above held once per micro-batch whatever its size (weight casts); the
    rest grows with its tokens."""


def _context(spec: ModelSpec, setup: TrainingSetup) -> act.ActivationContext:
    """The activation context: the residual stream follows the base weights' dtype
    (the embedding output), autocast casts only weights wider than the compute dtype."""
    residual = None
    if setup.method == "qlora":
        residual = get_dtype(QLORA_UNQUANTIZED_DTYPE).bytes_for(1)  # fp32 embedding output
    recipe = effective_recipe(setup)
    lora = setup.method != "full"
    peft_casts_inputs = lora and recipe.compute_bytes < ADAPTER_BYTES
    # peft's ParamWrapper folds adapters into the fused experts: their weights then get a gradient
    resolved = peft_targets(spec, lora_targets(spec, setup)) if lora else None
    fused = set(resolved.fused) if resolved else set()
    return act.ActivationContext(recipe=recipe, batch=setup.batch, seq=setup.seq, attention=setup.attention,
                                 dropout=setup.dropout, residual_bytes=residual, frozen_base=lora,
                                 autocast_region=setup.recipe.autocast,
                                 inputs_saved_by_adapters=peft_casts_inputs, linear_output_bytes=residual,
                                 attention_output_saved_by_adapter=not (setup.method == "qlora"
                                                                        and setup.recipe.autocast),
                                 trained_experts=bool({"gate_up_proj", "down_proj"} & fused),
                                 adapted_modules=frozenset(resolved.modules) if resolved else frozenset(),
                                 expert_bytes=get_dtype(_expert_dtype(setup)).bytes_for(1))


def _backward_work(spec: ModelSpec, ctx: act.ActivationContext, layer: int) -> int:
    """Gradient buffers alive inside one layer's backward, at its high point: the
    gradient flowing in and the one accumulating for the layer input (``2 c h``),
    plus the widest block's intermediate gradients net of the saved tensor freed just
    before them. Gated MLP: ``down_proj``'s backward frees the product it saved and
    writes its gradient, then the product's backward writes the gate and up gradients
    (``3 - 1 = 2`` tensors of ``c i``); plain MLP: ``2 - 1 = 1``. Eager attention: the
    gradient of the attention weights (``c``) and the softmax backward's fp32 output
    per score."""
    t, c, h = ctx.tokens, ctx.c, spec.hidden_size
    if spec.is_moe_layer(layer) and spec.moe is not None:
        width = spec.moe.experts_per_token * spec.moe.expert_intermediate_size
    else:
        width = spec.intermediate_size
    mlp = (2 if spec.mlp_gated else 1) * c * width * t // ctx.tp
    attn = 0
    if ctx.attention == "eager":
        attn = spec.num_attention_heads * ctx.seq * (c + act.FP32) * t // ctx.tp
    mixer = act.mixer_backward_work_bytes(spec, ctx, layer)  # Kimi delta attention's chunked system
    if act.runs_mamba1(spec, layer):
        # the scan's gradient buffers, once the MLP above it (Jamba) has freed what it saved
        mlp_saved = sum(p.bytes for p in act.mlp_parts(spec, ctx, layer)) if spec.has_mlp(layer) else 0
        attn = max(attn, mixer_activations.mamba1_backward_work_bytes(spec, ctx) - mlp_saved)
    return 2 * c * h * t + max(mlp, attn, mixer)


def activation_plan(spec: ModelSpec, setup: TrainingSetup) -> ActivationPlan:
    """Saved activations per layer under the setup's recomputation policy."""
    ctx = _context(spec, setup)
    if spec.architecture != "decoder":
        from vramplan.memory import seq2seq_training

        if seq2seq_training.modelled(spec, setup):
            return seq2seq_training.activation_plan(spec, setup, ctx)
    policy = setup.recompute_policy
    cast = act.layer_weight_cast_bytes(spec, ctx)
    parts: dict[str, int] = {}
    kept, full, work = [], [], []
    adapter = adapter_cast = 0
    if setup.method != "full":
        autocast = setup.recipe.autocast
        adapter = adapter_activation_bytes_per_token(spec, lora_targets(spec, setup), setup.lora_rank, ctx.c, autocast,
                                                     quantized_base=setup.method == "qlora") \
            * ctx.tokens // spec.num_layers
        groups = module_adapter_groups(spec, lora_targets(spec, setup), setup.lora_rank)
        adapter_cast = adapter_weight_cast_bytes(groups, ctx.c, autocast) // spec.num_layers
        adapter += adapter_cast
    folded = 0
    if setup.method != "full":
        folded = folded_weight_bytes_per_layer(spec, lora_targets(spec, setup), setup.lora_rank,
                                               get_dtype(_expert_dtype(setup)).bytes_for(1))
    first_uncast = act.first_layer_uncast_bytes(spec, ctx)
    for layer in range(spec.num_layers):
        layer_parts = act.layer_activation_parts(spec, ctx, layer)
        layer_adapter = adapter + (folded if spec.is_moe_layer(layer) else 0)
        layer_cast = cast - (first_uncast if layer == 0 else 0)
        layer_full = act.saved_layer_bytes(layer_parts, "none") + layer_cast + layer_adapter
        if policy == "full":
            layer_kept = act.checkpointed_layer_bytes(spec, ctx)
            parts["checkpoints"] = parts.get("checkpoints", 0) + layer_kept
        else:
            layer_kept = act.saved_layer_bytes(layer_parts, policy) + layer_cast + layer_adapter
            for p in layer_parts:
                if policy == "selective" and p.name == "attention/scores":
                    continue
                parts[p.name] = parts.get(p.name, 0) + p.bytes
            if layer_cast:
                parts["weight_casts"] = parts.get("weight_casts", 0) + layer_cast
            if layer_adapter:
                parts["lora"] = parts.get("lora", 0) + layer_adapter
        kept.append(layer_kept)
        full.append(layer_full)
        work.append(_backward_work(spec, ctx, layer))
    outside_cast = act.head_weight_cast_bytes(spec, ctx)  # held once per micro-batch
    outside = act.final_norm_bytes(spec, ctx) + act.dropout_embedding_bytes(spec, ctx) + outside_cast
    for p in act.model_level_parts(spec, ctx):  # Gemma 3n / 4: per-layer inputs, AltUp in and out
        parts[p.name] = parts.get(p.name, 0) + p.bytes
        outside += p.bytes
    model_cast = act.model_level_weight_cast_bytes(spec, ctx)
    if model_cast:
        outside += model_cast
        outside_cast += model_cast
        parts["weight_casts"] = parts.get("weight_casts", 0) + model_cast
    if setup.method == "qlora" and setup.recipe.autocast:
        # peft upcast the head to fp32; autocast's bf16 copy of it is saved by the head's
        # matmul (the input gradient reaches the adapters below)
        qlora_head = setup.recipe.compute_bytes * spec.vocab_size * spec.hidden_size
        outside += qlora_head
        outside_cast += qlora_head
        parts["weight_casts"] = parts.get("weight_casts", 0) + qlora_head
    parts["final_norm"] = act.final_norm_bytes(spec, ctx)
    if act.dropout_embedding_bytes(spec, ctx):
        parts["dropout_masks/embedding"] = act.dropout_embedding_bytes(spec, ctx)
    if act.head_weight_cast_bytes(spec, ctx):
        parts["weight_casts"] = parts.get("weight_casts", 0) + act.head_weight_cast_bytes(spec, ctx)
    forward_only = (cast * spec.num_layers if policy == "full" else 0) + act.final_hidden_transient_bytes(spec, ctx)
    return ActivationPlan(parts=parts, per_layer_kept=tuple(kept), per_layer_full=tuple(full),
                          per_layer_work=tuple(work), outside_layers=outside, forward_only=forward_only,
                          final_norm_transient=act.norm_transient_bytes(spec, ctx),
                          per_micro_batch=act.MicroBatchBytes(
                              layer_kept_bytes=0 if policy == "full" else
                              cast + adapter_cast + folded * spec.num_moe_layers // spec.num_layers,
                              layer_backward_bytes=cast + adapter_cast + (folded if spec.num_moe_layers else 0),
                              outside_bytes=outside_cast))


def setup_logits(spec: ModelSpec, setup: TrainingSetup) -> LogitsBytes:
    if spec.architecture != "decoder":
        from vramplan.memory.seq2seq_training import logits_bytes as unupcast_logits_bytes

        own = unupcast_logits_bytes(spec, setup)
        if own is not None:
            return own
    return logits_bytes(tokens=setup.batch * setup.seq, vocab=spec.vocab_size, hidden=spec.hidden_size,
                        compute_bytes=setup.recipe.compute_bytes, fused_ce=setup.fused_ce,
                        weight_bytes=get_dtype(_head_dtype(setup)).bytes_for(1),
                        softcap=spec.final_logit_softcapping)


def _expert_dtype(setup: TrainingSetup) -> str:
    """Dtype of the routed experts' fused weights: the base's, fp32 under QLoRA
    (bitsandbytes leaves them unquantized and peft upcasts them)."""
    return QLORA_UNQUANTIZED_DTYPE if setup.method == "qlora" else base_dtype(setup)


def _head_dtype(setup: TrainingSetup) -> str:
    """Dtype of the output head: the trained weights' (full), the base's (LoRA), fp32
    after peft's upcast (QLoRA)."""
    if setup.method == "qlora":
        return QLORA_UNQUANTIZED_DTYPE
    return base_dtype(setup)


# ---- the timeline -------------------------------------------------------------------
Parts = dict[str, tuple[int, str]]
"""Component name -> (bytes, note) at one point of the step."""


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """The live components at the high point of each phase of one step."""

    forward: Parts
    """At the forward's high point (inside the loss)."""
    backward: Parts
    """At the backward's high point."""
    optimizer_step: Parts
    """At ``optimizer.step()``'s high point."""
    backward_point: str
    """Where in the backward its high point falls."""

    def phases(self) -> tuple[tuple[str, int], ...]:
        return tuple((name, sum(b for b, _ in parts.values())) for name, parts in
                     (("forward", self.forward), ("backward", self.backward),
                      ("optimizer_step", self.optimizer_step)))

    @property
    def peak_phase(self) -> str:
        return max(self.phases(), key=lambda p: p[1])[0]

    def parts(self, phase: str) -> Parts:
        return {"forward": self.forward, "backward": self.backward, "optimizer_step": self.optimizer_step}[phase]


def _head_gradient(states: ModelStates) -> int:
    """Gradients formed before the first layer's backward: head and final norm."""
    return sum(g.params for g in states.trainable if not g.per_layer and g.name in
               ("lm_head.weight", "norm.weight", "norm.bias")) * states.trainable_bytes_per_param


def _state_parts(setup: TrainingSetup, states: ModelStates, with_gradients: bool) -> Parts:
    """Weights, adapters, optimizer states (and all gradients) as components."""
    out: Parts = {c.name: (c.bytes, c.note) for c in states.weights}
    opt = setup.opt
    lora = setup.method != "full"
    if lora:
        out["adapters/weights"] = (states.adapter_weights, f"LoRA r={setup.lora_rank} A and B matrices, fp32 "
                                   "(peft autocast_adapter_dtype)")
    names = opt.states or ()
    for name in names:
        key = f"adapters/{name}" if lora else f"optimizer/{name}"
        out[key] = (states.optimizer_states // len(names), f"{opt.description}: {opt.source}")
    if with_gradients:
        key = "adapters/gradients" if lora else "gradients"
        out[key] = (states.gradients, f"{states.trainable_bytes_per_param} B per trainable parameter")
    return out


def _activation_parts(plan: ActivationPlan) -> Parts:
    return {f"activations/{name}": (b, "saved for backward, all layers") for name, b in plan.parts.items() if b}


def _total(parts: Parts) -> int:
    return sum(b for b, _ in parts.values())


def _backward_points(spec: ModelSpec, setup: TrainingSetup, states: ModelStates, plan: ActivationPlan,
                     resident: Parts, dequant: Parts) -> list[tuple[str, Parts]]:
    """Live components inside each layer's backward (top layer first) and at the end
    of the backward. A layer's own gradients form as its activations are freed, so
    the gradients counted are the head's and those of the layers above."""
    accumulate = setup.grad_accum > 1
    grad_key = "adapters/gradients" if setup.method != "full" else "gradients"
    grad_per_layer = sum(g.params for g in states.trainable if g.per_layer) \
        * states.trainable_bytes_per_param // spec.num_layers
    head = 0 if accumulate else _head_gradient(states)
    if not accumulate and setup.method == "full" and spec.tie_word_embeddings:
        # a tied head's gradient is the embedding's ``.grad``, formed by the head's backward
        head += spec.vocab_size * spec.hidden_size * states.trainable_bytes_per_param
    below = sum(plan.per_layer_kept)  # the final norm's tensors are freed by the head's backward
    points = []
    for layer in reversed(range(spec.num_layers)):
        below -= plan.per_layer_kept[layer]
        live = {**resident, **dequant,
                "activations/layers_below": (below, f"kept activations of layers below {layer}"),
                "activations/current_layer": (plan.per_layer_full[layer], f"layer {layer}'s activations "
                                              "(recomputed ones included)"),
                "buffers/backward_work": (plan.per_layer_work[layer], "gradient buffers inside the layer's backward")}
        grads = 0 if accumulate else grad_per_layer * (spec.num_layers - 1 - layer) + head
        if grads:
            live[grad_key] = (grads, f"gradients of the head and the layers above {layer}")
        points.append((f"layer {layer} backward", live))
    if not accumulate:
        end = {**resident, grad_key: (states.gradients, "all gradients")}
        tied = _tied_embedding_accumulation_bytes(spec, setup, states)
        if tied:
            end["buffers/tied_embedding_gradient"] = (tied, "the embedding's gradient and its sum with the tied "
                                                      "head's (AccumulateGrad adds out of place)")
        points.append(("end of backward", end))
    return points


def _tied_embedding_accumulation_bytes(spec: ModelSpec, setup: TrainingSetup, states: ModelStates) -> int:
    """A tied embedding trains through two uses: the head's gradient is already its
    ``.grad`` when the embedding's backward (``embedding_dense_backward``, a
    ``[vocab, h]`` tensor) arrives, and autograd's ``AccumulateGrad`` writes
    ``grad + new_grad`` to a new tensor (seen on PyTorch 2.13's ``aten.add.Tensor``):
    two vocabulary-sized gradients on top of all others for a moment."""
    if setup.method != "full" or not spec.tie_word_embeddings:
        return 0
    return 2 * spec.vocab_size * spec.hidden_size * states.trainable_bytes_per_param


def _indexer_scoring_point(spec: ModelSpec, setup: TrainingSetup, plan: ActivationPlan, resident: Parts) -> Parts:
    """The forward inside the last layer with a sparse-attention indexer: the activations
    kept by the layers below it and by that layer's attention so far, and the indexer's
    scores of every query against every key
    (:func:`vramplan.memory.sparse_indexer.scores_transient_bytes`); empty without an
    indexer."""
    indexed = [i for i in range(spec.num_layers) if spec.has_indexer(i)]
    if not indexed:
        return {}
    last = indexed[-1]
    recipe = effective_recipe(setup)
    scoring = sparse_indexer.scores_transient_bytes(spec, sequences=setup.batch, query_tokens=setup.seq,
                                                    kv_tokens=setup.seq, act_bytes=recipe.compute_bytes,
                                                    autocast=setup.recipe.autocast)
    # of the indexer layer itself, what its attention has kept before scoring: the layer's
    # input and norms, the latents and the expanded queries, keys and values
    before = ("residual", "norms", "attention/latents", "attention/qkv")
    current = sum(p.bytes for p in act.layer_activation_parts(spec, _context(spec, setup), last) if p.name in before)
    current += plan.parts.get("lora", 0) // spec.num_layers  # its adapters' inputs (a bound: the MLP's are to come)
    return {**resident,
            "activations/layers_below": (sum(plan.per_layer_kept[:last]), f"kept activations of layers below {last}"),
            "activations/current_layer": (current, f"layer {last}'s activations before its indexer"),
            "buffers/indexer_scores": (scoring, "the lightning indexer's scores of every query against every key "
                                       "(and the keys broadcast to every query), under no_grad")}


def timeline(spec: ModelSpec, setup: TrainingSetup, states: ModelStates, plan: ActivationPlan,
             logits: LogitsBytes) -> Timeline:
    """The live components at the high point of forward, backward and optimizer step."""
    accumulate = setup.grad_accum > 1
    resident = _state_parts(setup, states, with_gradients=accumulate)
    dequant = {"buffers/dequantization": (states.dequant_buffer, "one NF4 weight dequantized for its matmul")} \
        if states.dequant_buffer else {}
    forward = {**resident, **_activation_parts(plan), **dequant,
               "logits": (logits.forward_peak, logits.note)}
    if plan.forward_only:
        forward["activations/forward_only"] = (plan.forward_only, "alive until the loss, not kept for backward: "
                                               "the returned last hidden state (and autocast's cached weight "
                                               "copies under full recomputation)")
    final_norm = {**resident, **_activation_parts(plan), **dequant,
                  "buffers/norm_temporaries": (plan.final_norm_transient, "fp32 temporaries inside the final "
                                               "norm (the forward's high point when the vocabulary is small)")}
    if _total(final_norm) > _total(forward):
        forward = final_norm
    scoring = _indexer_scoring_point(spec, setup, plan, {**resident, **dequant})
    if _total(scoring) > _total(forward):
        forward = scoring
    backward = {**resident, **_activation_parts(plan), "logits": (logits.backward_peak, logits.note)}
    where = "loss backward"
    for point, parts in _backward_points(spec, setup, states, plan, resident, dequant):
        if _total(parts) > _total(backward):
            backward, where = parts, point
    step = {**_state_parts(setup, states, with_gradients=True)}
    if states.step_temporaries:
        step["buffers/optimizer_step"] = (states.step_temporaries, f"{setup.opt.description}: {setup.opt.source}")
    return Timeline(forward=forward, backward=backward, optimizer_step=step, backward_point=where)


# ---- the estimate -------------------------------------------------------------------
def _check_model(spec: ModelSpec | ParamOnlyModel, setup: TrainingSetup) -> list[str]:
    warnings = []
    if isinstance(spec, ParamOnlyModel):
        if setup.method != "full":
            raise InputError(f"method {setup.method}: LoRA adapters need the architecture; give a catalog name or "
                             f"config.json instead of the bare count {spec.name!r}", fields=("method",))
        if setup.opt.layout == "factored":
            raise InputError(f"optimizer {setup.optimizer}: factored states need each tensor's shape; give a "
                             f"catalog name or config.json instead of the bare count {spec.name!r}",
                             fields=("optimizer",))
        return [f"{spec.name} is a bare parameter count: weights, gradients and optimizer states only; "
                f"{', '.join(ParamOnlyModel.NEEDS_ARCHITECTURE)} need the architecture and are left out"]
    if setup.seq > spec.max_position_embeddings:
        msg = (f"seq: {setup.seq} exceeds {spec.name}'s max_position_embeddings "
               f"{spec.max_position_embeddings}")
        if setup.strict:
            raise InputError(msg)
        warnings.append(msg)
    if setup.method == "qlora" and spec.quantization_config:
        raise InputError(f"method qlora: {spec.name} is already quantized "
                         f"({spec.quantization_config.get('quant_method', 'an unknown quant_method')}); "
                         "QLoRA quantizes a 16/32-bit checkpoint to NF4", fields=("method",))
    from vramplan.memory import gemma_activations

    if setup.recompute_policy == "full" and gemma_activations.models(spec) and any(spec.kv_shared_layers):
        warnings.append("recompute full: the KV-shared layers keep their producer layers' keys and values through "
                        "the recomputed backward, which the activation estimate does not follow (measured up to "
                        "12% low); `vramplan trace` measures it")
    if setup.method == "qlora" and setup.precision in ("fp32",):
        raise InputError("precision: QLoRA computes in bf16 or fp16; expected bf16-mixed, fp16-mixed, bf16 "
                         "or fp16, got fp32")
    if setup.method != "full":
        rank_warning = rank_beyond_targets_warning(spec, lora_targets(spec, setup), setup.lora_rank)
        if rank_warning:
            warnings.append(rank_warning)
    return warnings


def _assumptions(spec: ModelSpec, setup: TrainingSetup) -> list[str]:
    out = [f"steady state (step 2 on): optimizer states resident; gradients freed by zero_grad(set_to_none)"
           if setup.grad_accum == 1 else "gradients accumulate over micro-batches and stay resident",
           f"recompute={setup.recompute_policy}" + (" (QLoRA default: gradient checkpointing)"
                                                    if setup.method == "qlora" and setup.recompute is None else ""),
           f"attention={setup.attention}", "components are tensor memory; a GPU verdict adds the CUDA context, cuBLAS workspace and allocator slack"]
    if setup.method == "qlora":
        out.append("QLoRA: embeddings, norms and head upcast to fp32 (peft prepare_model_for_kbit_training)")
    if setup.method != "full":
        targets = peft_targets(spec, lora_targets(spec, setup))
        fused = f"; fused {', '.join(targets.fused)} wrapped by peft's ParamWrapper" if targets.fused else ""
        why = ("every linear but out_proj, which peft refuses on Mamba-based models"
               if setup.lora_targets is None and mamba_safe_targets(spec) else "QLoRA paper: all linear layers"
               if setup.lora_targets is None or tuple(setup.lora_targets) == (ALL_LINEAR,) else "as given")
        out.append(f"LoRA r={setup.lora_rank} on {', '.join(targets.modules) or 'no linear module'}{fused} "
                   f"({why}); adapters in fp32 as peft keeps them")
    if setup.opt.paged:
        out.append("paged optimizer states counted on the GPU; under pressure they move to host memory")
    return out


def _details(spec: ModelSpec, setup: TrainingSetup, states: ModelStates, plan: ActivationPlan,
             logits: LogitsBytes) -> dict[str, int | float | str | None]:
    params = sum(g.params for g in states.trainable)
    recipe = setup.recipe
    out: dict[str, int | float | str | None] = {
        "trainable_params": params,
        "weight_bytes_per_param": recipe.weight_bytes_per_param if setup.method == "full" else None,
        "gradient_bytes_per_param": states.trainable_bytes_per_param,
        "optimizer_state_bytes_per_param": round(states.optimizer_states / params, 4) if params else 0,
        "step_temporary_bytes_per_param": round(states.step_temporaries / params, 4) if params else 0,
        "activation_bytes_per_layer": max(plan.per_layer_kept),
        "logits_saved_bytes": logits.saved,
        "tokens_per_micro_batch": setup.batch * setup.seq,
    }
    for conv in CONVENTIONS:
        out[f"convention: {conv.name}"] = f"{conv.weights} + {conv.master_weights} + {conv.gradients} + " \
                                          f"{conv.optimizer_states} = {conv.total} B/param ({conv.source})"
    return out


@dataclass(frozen=True, kw_only=True)
class TrainingFit:
    """How far a single-GPU training setup stretches on the GPU it was checked against."""

    largest_micro_batch: int | None
    """Largest micro-batch whose peak fits (0: not even 1; ``None``: needs an architecture)."""
    largest_seq: int | None
    """Longest sequence, up to the model's max positions, that fits (0: none)."""

    def to_dict(self) -> dict:
        return {"largest_micro_batch": self.largest_micro_batch, "largest_seq": self.largest_seq}


@dataclass(frozen=True, kw_only=True)
class TrainingEstimate(Estimate):
    """A training :class:`~vramplan.estimate.Estimate` with, when checked against a GPU on
    one device, how far the setup stretches there (``fits``)."""

    fits: TrainingFit | None = None
    seed: SeedArithmetic | None = None
    """With ``activation_model="seed"``: the article's arithmetic beside the exact one."""

    def to_dict(self) -> dict:
        return {**super().to_dict(), "fits": self.fits.to_dict() if self.fits else None,
                "seed_article": self.seed.to_dict() if self.seed else None}


def estimate_training(model: str | ModelSpec | ParamOnlyModel, setup: TrainingSetup | None = None,
                      layout: ParallelLayout | None = None, *, gpu: str | GpuSpec | None = None,
                      reserve_bytes: int = 0, overheads: Overheads | None = None) -> TrainingEstimate:
    """Per-GPU memory of one training step at its peak: on one GPU, or on the busiest GPU
    of ``layout`` (:mod:`vramplan.distributed`). One GPU is the layout of one GPU: a
    layout that spans one device without sharding or offload is the single-GPU model.

    Gradient accumulation is one count: ``setup.grad_accum`` and ``layout.micro_batches``
    name the same micro-batches per optimizer step; give either (or both, equal).
    With ``gpu`` (a slug or :class:`~vramplan.gpus.GpuSpec`) the result carries a
    verdict (:func:`~vramplan.memory.overhead.fit_verdict`: the peak, the process overheads and
    ``reserve_bytes``), and on one GPU the largest micro-batch and sequence that fit
    under the same rule (``fits``)."""
    from dataclasses import fields

    setup = setup or TrainingSetup()
    overheads = overheads or Overheads()
    spec = resolve_model(model)
    gpu_spec = _gpu(gpu)
    if isinstance(spec, ModelSpec):
        from vramplan.memory.seq2seq_training import with_image_tokens

        spec.check_memory_model()
        setup = with_image_tokens(spec, setup)
    if layout is not None:
        setup, layout = _one_accumulation(setup, layout)
        if not layout.is_single_device and setup.activation_model == "seed":
            raise InputError("activation_model: the seed article's rule is for one GPU; leave the layout out "
                             "(the ZeRO figure it points to: a bare count such as 7.5B with zero)")
        if not layout.is_single_device:
            return _layout_estimate(spec, setup, layout, gpu_spec, reserve_bytes, overheads)
    if setup.activation_model == "seed":
        return _seed(spec, setup, gpu_spec, reserve_bytes, overheads)
    est = _single_gpu_estimate(spec, setup)
    fit = None
    if gpu_spec is not None:
        capacity = gpu_spec.usable_memory_bytes
        est = fit_verdict(est, gpu_spec.slug, capacity, reserve_bytes=reserve_bytes, overheads=overheads)
        fit = TrainingFit(largest_micro_batch=None, largest_seq=None)
        if isinstance(spec, ModelSpec):
            room = Room(capacity_bytes=capacity, reserve_bytes=reserve_bytes, overheads=overheads)
            fit = TrainingFit(largest_micro_batch=largest_micro_batch(spec, setup, room),
                              largest_seq=largest_sequence(spec, setup, room))
    return TrainingEstimate(**{**{f.name: getattr(est, f.name) for f in fields(est)}, "fits": fit,
                               "checkpoint": getattr(spec, "checkpoint", None)})


@dataclass(frozen=True, kw_only=True)
class Room:
    """The GPU a solver fills: capacity, the reserve to keep free and the overheads
    counted beside the peak (the same rule as :func:`~vramplan.memory.overhead.fit_verdict`)."""

    capacity_bytes: int
    reserve_bytes: int = 0
    overheads: Overheads = field(default_factory=lambda: Overheads())


def _seed(spec: ModelSpec | ParamOnlyModel, setup: TrainingSetup, gpu: GpuSpec | None, reserve_bytes: int = 0,
          overheads: Overheads | None = None) -> TrainingEstimate:
    """The seed article's rule (:mod:`vramplan.seed_article`), with its arithmetic."""
    from dataclasses import fields

    from vramplan.seed_article import seed_estimate

    _check_model(spec, setup)
    est, arithmetic = seed_estimate(spec, setup)
    fit = None
    if gpu is not None:
        capacity = gpu.usable_memory_bytes
        est = fit_verdict(est, gpu.slug, capacity, reserve_bytes=reserve_bytes, overheads=overheads)
        if isinstance(spec, ModelSpec):
            room = Room(capacity_bytes=capacity, reserve_bytes=reserve_bytes, overheads=overheads or Overheads())
            fit = TrainingFit(largest_micro_batch=largest_micro_batch(spec, setup, room),
                              largest_seq=largest_sequence(spec, setup, room))
    return TrainingEstimate(**{**{f.name: getattr(est, f.name) for f in fields(est)}, "fits": fit, "seed": arithmetic,
                               "checkpoint": getattr(spec, "checkpoint", None)})


def _gpu(gpu: str | GpuSpec | None) -> GpuSpec | None:
    if gpu is None:
        return None
    from vramplan.gpus import one_gpu

    return one_gpu(gpu)


def _one_accumulation(setup: TrainingSetup, layout: ParallelLayout) -> tuple[TrainingSetup, ParallelLayout]:
    """``setup.grad_accum`` and ``layout.micro_batches`` made the one count they are."""
    accum, micro = setup.grad_accum, layout.micro_batches
    if accum != 1 and micro != 1 and accum != micro:
        raise InputError(f"grad_accum {accum} and micro_batches {micro}: both count the micro-batches per "
                         "optimizer step; give one", fields=("grad_accum", "micro_batches"))
    count = max(accum, micro)
    return replace(setup, grad_accum=count), replace(layout, micro_batches=count)


def _layout_estimate(spec: ModelSpec | ParamOnlyModel, setup: TrainingSetup, layout: ParallelLayout,
                     gpu: GpuSpec | None, reserve_bytes: int, overheads: Overheads) -> TrainingEstimate:
    from dataclasses import fields

    from vramplan.distributed import TrainingJob, estimate_on_layout

    if isinstance(spec, ModelSpec):
        est = estimate_on_layout(TrainingJob(model=spec, setup=setup), layout)
    else:
        from vramplan.count_states import model_states_on_layout

        est = model_states_on_layout(spec, setup, layout)
    if isinstance(spec, ModelSpec) and spec.architecture == "encoder_decoder":
        est = replace(est, warnings=est.warnings + (
            "encoder-decoder on a layout: the encoder's and cross-attentions' activations are not counted (they are "
            "on one GPU)",))
    if gpu is not None:
        est = fit_verdict(est, gpu.slug, gpu.usable_memory_bytes, reserve_bytes=reserve_bytes, overheads=overheads,
                          comm_group_ranks=layout.num_gpus)
    return TrainingEstimate(**{**{f.name: getattr(est, f.name) for f in fields(est)}, "fits": None,
                               "checkpoint": getattr(spec, "checkpoint", None)})


def _single_gpu_estimate(spec: ModelSpec | ParamOnlyModel, setup: TrainingSetup) -> Estimate:
    """Per-GPU tensor memory of one training step on one GPU, at its peak."""
    warnings = _check_model(spec, setup)
    if setup.activation_model == "seed":
        from vramplan.seed_article import seed_estimate

        return seed_estimate(spec, setup)[0]
    if isinstance(spec, ParamOnlyModel):
        return model_states_only_estimate(spec, setup, warnings)
    states = model_states(spec, setup)
    plan = activation_plan(spec, setup)
    logits = setup_logits(spec, setup)
    line = timeline(spec, setup, states, plan, logits)
    phase = line.peak_phase
    phases = line.phases()
    extra: tuple[Component, ...] = ()
    if spec.architecture != "decoder" or setup.images:
        from vramplan.memory.seq2seq_training import LIVE_PHASES, extra_training_components

        extra, more_warnings = extra_training_components(spec, setup, _context(spec, setup))
        warnings = list(warnings) + list(more_warnings)
        added = sum(c.bytes for c in extra)
        phases = tuple((p, b + (added if p in LIVE_PHASES else 0)) for p, b in phases)
        phase = max(phases, key=lambda item: item[1])[0]
        extra = extra if phase in LIVE_PHASES else ()
    components = tuple(Component(name=name, bytes=b, note=note) for name, (b, note) in line.parts(phase).items())
    components += extra
    details = _details(spec, setup, states, plan, logits)
    details["backward_peak_at"] = line.backward_point
    return Estimate(model=spec.name, kind="training", components=components, phase=phase,
                    phases=phases, details=details, assumptions=tuple(_assumptions(spec, setup)),
                    warnings=tuple(warnings) + tuple(spec.notes))


def model_states_only_estimate(model: ParamOnlyModel, setup: TrainingSetup, warnings: list[str]) -> Estimate:
    """The rough method for a model known only by its parameter count P (the seed
    article's weights + gradients + optimizer states): P x the recipe's weight bytes,
    P x its gradient bytes, the optimizer's states and step temporaries over one
    P-element tensor (exact for per-element layouts: SGD, momentum, Adam/AdamW, Lion,
    8-bit blockwise). Activations, logits and KV terms are left out, with a warning."""
    recipe, opt = setup.recipe, setup.opt
    flat = TensorGroup(name="params", component="mlp", role="linear", shape=(model.total_params,), count=1)
    elem = recipe.weight_bytes_per_param
    components = (
        Component(name="weights", bytes=model.total_params * elem,
                  note=f"{model.total_params:,} params x {elem} B ({recipe.weight_dtype})"),
        Component(name="gradients", bytes=model.total_params * recipe.gradient_bytes_per_param,
                  note=f"one gradient per parameter, {recipe.gradient_bytes_per_param} B"),
        Component(name="optimizer/states", bytes=optimizer_state_bytes(opt, (flat,), elem),
                  note=f"{opt.description}: {', '.join(opt.states) or 'no states'}"),
        Component(name="buffers/optimizer_step", bytes=step_temporary_bytes(opt, (flat,), elem),
                  note="what optimizer.step() allocates on top"),
    )
    return Estimate(model=model.name, kind="training", components=components, phase="optimizer_step",
                    phases=(("optimizer_step", sum(c.bytes for c in components)),),
                    details={"total_params": model.total_params},
                    assumptions=("model states only (no architecture)",), warnings=tuple(warnings))


# ---- solvers ----------------------------------------------------------------------------
def _fits(spec: ModelSpec, setup: TrainingSetup, room: Room | int) -> bool:
    room = room if isinstance(room, Room) else Room(capacity_bytes=room)
    est = fit_verdict(_single_gpu_estimate(spec, setup), "gpu", room.capacity_bytes, reserve_bytes=room.reserve_bytes,
                      overheads=room.overheads)
    return est.verdict.fits


def _largest(spec: ModelSpec, setup: TrainingSetup, room: Room | int, field_name: str, cap: int) -> int:
    """Largest value of ``field_name`` (batch or seq) in 1..cap that fits; 0 when none."""
    from vramplan.intmath import largest_true

    return largest_true(lambda n: _fits(spec, replace(setup, **{field_name: n}), room), 1, cap)


MAX_SEARCH_BATCH = 4096
"""Upper end of the micro-batch search."""


def largest_micro_batch(model: str | ModelSpec, setup: TrainingSetup, room: Room | int) -> int:
    """Largest micro-batch that fits ``room`` (a :class:`Room`, or a capacity in bytes
    with the default overheads and no reserve) under :func:`~vramplan.memory.overhead.fit_verdict`'s rule (0: not even 1)."""
    spec = resolve_model(model)
    return _largest(spec, setup, room, "batch", MAX_SEARCH_BATCH)


def largest_sequence(model: str | ModelSpec, setup: TrainingSetup, room: Room | int) -> int:
    """Longest sequence (up to the model's max positions) that fits ``room`` (0: none)."""
    spec = resolve_model(model)
    cap = spec.max_position_embeddings if isinstance(spec, ModelSpec) else setup.seq
    return _largest(spec, replace(setup, strict=False), room, "seq", cap)
