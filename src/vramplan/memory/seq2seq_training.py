"""Training terms of encoder-decoder and encoder-only models, and of image inputs.

- Images: each image's tokens (:func:`vramplan.model.towers.image_tokens`) join the
  sequence the text model trains on. The vision tower is frozen under LoRA/QLoRA (its
  tensors lie outside the blocks adapters attach to, and with no trainable parameter
  below it autograd saves nothing in it); under full fine-tuning its weights, gradients
  and optimizer states are counted, its saved activations are not (a warning says so).
- Encoder-decoder (T5, mT5, BART, mBART) and encoder-only (BERT, RoBERTa, ModernBERT)
  models under full fine-tuning: what autograd saves in one forward, per stack and
  layer, from the transformers 5 modeling code (below). The decoder's layers (the
  encoder's, for encoder-only models) are the layers of the step's timeline
  (:func:`activation_plan`); an encoder-decoder's encoder stack is alive from its
  forward to its backward (:func:`extra_training_components`).

Notation per token: ``h`` hidden size, ``n`` the heads' width (``heads x d_kv``),
``i`` the MLP width, ``a`` heads; ``r`` the residual stream's element size (fp32 under
``bf16-mixed``: the embeddings, norms and the residual adds run on fp32 weights),
``c`` the compute dtype's, ``f = 4``. Under autocast every linear saves its own
``c``-byte cast of an fp32 input (``k c h`` for ``k`` readers); without it, a tensor
read by several linears is saved once.

- Attention, SDPA (flash / memory-efficient): q, k, v and the output (``4 c n``; the
  output is also what the output projection saves), the fp32 log-sum-exp (``f a``);
  attention-probability dropout runs inside the kernel (two seeds). T5 adds its
  position bias as a float mask: a contiguous ``a x s_q x s_k`` copy in ``c`` per
  layer (``create_position_bias_mask(...).contiguous()`` of a permuted view), the
  decoder's self-attention also the causal ``s x s`` bool mask its ``torch.where``
  keeps, and the bucket indices (int64 ``s_q x s_k``, once per stack) the
  relative-position embedding's backward reads; the cross-attention's zero bias
  (``a x s_dec x s_enc``) once for all layers. Cross-attention: k and v over the
  encoder tokens (``2 c n``) and, under autocast, each layer's own two casts of the
  encoder output (``2 c h``).
- Norms: T5's RMSNorm keeps its input (the residual), fp32 ``rsqrt`` and the fp32
  normalised tensor the weight multiplies (``f h``); ``LayerNorm`` keeps its input
  and fp32 mean and rstd (``2 f``), and under autocast a 16-bit input is kept as
  its fp32 cast.
- MLPs: T5 ``relu`` keeps its output, and the ``wo`` input (autocast's cast, or the
  dropout output); T5 v1.1 ``gelu_new`` (written out in Python) keeps ``x``'s fp32
  copy for ``pow``, ``tanh``'s output, ``1 + tanh`` (fp32) and ``0.5 x`` (``c``), then the
  gated product keeps the fp32 activation and ``wi_1``'s output; BART and BERT's
  ``gelu`` keeps its input, the second linear its output; ModernBERT's GeGLU keeps
  ``Wi``'s whole ``2 i`` output (the activation's input is a view of it), the
  activation's output and the product.
- Dropout (when the config's probabilities are above 0): a 1-byte mask per dropped
  element: the embeddings, every sub-block's output, the MLP's inner activation (T5,
  BART's ``activation_dropout``), the stacks' outputs.
- Heads: BERT/RoBERTa/ModernBERT's masked-LM transform (dense, ``gelu``, LayerNorm)
  before the vocabulary projection; the head's input as its matmul saves it.

Checked against ``vramplan trace`` (transformers on fake tensors under CUDA's rules)
on small real configs of each family (tests/test_encdec_training_trace.py,
tests/encdec_measure.py).

LoRA on encoder-decoders follows the same stacks with a frozen base
(:attr:`Dtypes.frozen`): each adapted linear saves its own copy of its input and ``A x``
(:func:`vramplan.memory.lora.adapter_bytes_per_token`), per layer of the stack it lies
in, the cross-attention's key/value adapters over the input tokens; the frozen linears
save no input, T5's norms no normalised tensor, autocast keeps copies of the adapters'
weights only, and each stack's first layer, reading the frozen embedding's output,
saves neither its first norm nor its q/k/v adapters' weight copies. QLoRA on these
models and LoRA on encoder-only models keep the decoder formulas of
:mod:`vramplan.memory.activations` on each stack's widths (not checked).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vramplan.errors import InputError
from vramplan.estimate import Component
from vramplan.memory import activations as act
from vramplan.model.spec import ModelSpec

if TYPE_CHECKING:
    from vramplan.memory.logits import LogitsBytes
    from vramplan.training import ActivationPlan, TrainingSetup

LIVE_PHASES = ("forward", "backward")
"""Phases in which the encoder's saved activations are alive (freed by its backward)."""

FP32 = act.FP32
MASK = act.MASK
INDEX = act.INDEX
T5_TYPES = ("t5", "mt5", "umt5")
MODERNBERT_TYPES = ("modernbert",)
PER_LAYER_POSITION_BIAS = frozenset({"umt5"})
"""T5 variants with a relative-position embedding in every layer (``UMT5Attention``)."""


def with_image_tokens(spec: ModelSpec, setup: TrainingSetup) -> TrainingSetup:
    """``setup`` with its images' tokens added to ``seq``; one-line errors for images on a
    model without a vision tower and ``input_len`` on a model without an encoder input."""
    from vramplan.memory.vision_tower import check_images
    from vramplan.model.towers import image_tokens

    if setup.input_len is not None and spec.architecture != "encoder_decoder":
        raise InputError(f"input_len: {spec.name} has no encoder input (encoder-decoder models only); use seq",
                         fields=("seq",))
    if spec.attention_impl(setup.attention) != setup.attention:  # the class runs eager attention only
        setup = replace(setup, attention=spec.attention_impl(setup.attention))
    tower = check_images(spec, setup.images)
    if tower is None or not setup.images:
        return setup
    return replace(setup, seq=setup.seq + setup.images * image_tokens(tower, setup.image_size))


# ---- the stacks -----------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Stack:
    """One stack of layers as its saved tensors see it."""

    layers: int
    heads: int
    inner: int
    """Width of all heads, ``heads x head_dim``."""
    width: int
    """MLP width ``i``."""
    batch: int
    seq: int
    """Tokens per sequence in this stack."""
    cross_seq: int = 0
    """Decoder of an encoder-decoder: the encoder tokens per sequence its cross-attention reads."""
    causal: bool = False
    adapter_bytes_per_token: int = 0
    """LoRA: what one layer's adapters save per token of this stack (:func:`_stack_adapters`)."""
    cross_adapter_bytes_per_input_token: int = 0
    """LoRA, decoder: what one layer's cross-attention k/v adapters save per encoder token."""
    adapter_weight_cast_bytes: int = 0
    """LoRA under autocast: one layer's compute-dtype copies of its fp32 adapter weights."""
    first_layer_uncast_bytes: int = 0
    """LoRA under autocast: of those, the copies the first layer does not keep (see
    :func:`_first_layer_frozen_bytes`)."""

    @property
    def tokens(self) -> int:
        return self.batch * self.seq


@dataclass(frozen=True, kw_only=True)
class Dtypes:
    """Element sizes of one step (see the module docstring)."""

    r: int
    c: int
    autocast: bool
    dropout: bool
    eager: bool
    frozen: bool = False
    """LoRA: the base's weights are frozen. Its linears save no input (their adapters
    save their own copies, counted apart), its norms no normalised tensor, and autocast
    keeps no copy of its weights (``cached_cast`` caches only weights that require a
    gradient)."""
    adapter_copies: bool = True
    """LoRA: each adapter saves its own copy of its input (peft casts a 16-bit base's
    input to the adapters' fp32; under autocast the adapter matmul casts it back). On an
    fp32 base without autocast nothing is cast: the adapters of one input share it."""

    def cast(self, readers: int, src: int) -> int:
        """Bytes per element one tensor of ``src``-byte elements costs when ``readers``
        linears save it: one cast each under autocast when it is wider than ``c``, else
        the tensor once. Frozen linears save nothing; their adapters' copies are counted
        apart, or the shared input once (:attr:`adapter_copies`)."""
        if self.frozen:
            return 0 if self.adapter_copies else src
        return readers * self.c if self.autocast and src != self.c else src


def _dtypes(ctx: act.ActivationContext) -> Dtypes:
    """A frozen base runs its ops under autocast whatever its weights' dtype (a 16-bit
    base under ``bf16-mixed``): the fp32 lists apply (``softmax``, ``layer_norm``, ``pow``)."""
    autocast = ctx.recipe.autocast or (ctx.frozen_base and ctx.autocast_region)
    from vramplan.memory.lora import ADAPTER_BYTES

    return Dtypes(r=ctx.r, c=ctx.c, autocast=autocast, dropout=ctx.dropout, eager=ctx.attention == "eager",
                  frozen=ctx.frozen_base, adapter_copies=ctx.c < ADAPTER_BYTES)


def _family(spec: ModelSpec) -> str:
    if spec.model_type in T5_TYPES:
        return "t5"
    if spec.model_type in MODERNBERT_TYPES:
        return "modernbert"
    return "bart" if spec.architecture == "encoder_decoder" else "bert"


def _stream_bytes(spec: ModelSpec, d: Dtypes) -> int:
    """Element size of a layer's input and output. BART's and BERT's post-norm layers end
    in a ``LayerNorm``, which autocast runs in fp32 (its fp32 list) and whose output stays
    fp32: on a 16-bit LoRA base under autocast the stream between layers is fp32."""
    if _family(spec) in ("bart", "bert") and d.autocast:
        return FP32
    return d.r


def _norm_out_bytes(spec: ModelSpec, d: Dtypes) -> int:
    """Element size of a norm's output: the residual stream's (fp32 weights and inputs
    under fp32 and mixed runs, 16-bit in pure 16-bit runs)."""
    return d.r


def _norm_per_token(spec: ModelSpec, d: Dtypes) -> int:
    """One norm's saved tensors per token, its input (the residual) included."""
    h = spec.hidden_size
    if _family(spec) == "t5":
        upcast = FP32 * h if d.r < FP32 else 0
        normalised = 0 if d.frozen else (FP32 if d.r == FP32 else d.r) * h
        return d.r * h + upcast + FP32 + normalised
    if d.frozen and d.autocast and d.r < FP32:
        return FP32 * h + 2 * FP32  # layer_norm (autocast's fp32 list) keeps its fp32 cast of the 16-bit input
    return d.r * h + 2 * FP32


def _scores_per_token(st: Stack, d: Dtypes, kv_seq: int) -> int:
    """Eager attention's per-score terms for one query token: the softmax output (fp32
    under autocast, ``softmax.int`` being on its fp32 list), the dropout mask, and the
    probabilities the second matmul saves (autocast's cast, or the dropout output)."""
    softmax = FP32 if d.autocast else d.c
    second = d.c if d.dropout or (d.autocast and d.c < FP32) else 0
    return st.heads * kv_seq * (softmax + (MASK if d.dropout else 0) + second)


def _attention_per_token(spec: ModelSpec, st: Stack, d: Dtypes) -> int:
    """q, k, v and the output (the output projection's input) per token; SDPA adds the
    fp32 log-sum-exp, eager the scores (:func:`_scores_per_token`)."""
    c, n = d.c, st.inner
    if not d.eager:
        # ModernBERT: SDPA keeps v as a view of the fused Wqkv output, whose q and k
        # thirds stay alive with it (eager's matmul saves a contiguous copy of v instead)
        fused = 2 * c * n if _family(spec) == "modernbert" else 0
        return 4 * c * n + FP32 * st.heads + fused
    return 4 * c * n + _scores_per_token(st, d, st.seq)


def _layer_per_token(spec: ModelSpec, st: Stack, d: Dtypes) -> int:
    """Saved bytes per token of one layer of ``st`` (self-attention block and MLP; the
    cross-attention's terms over the encoder tokens are added apart)."""
    fam, h, i = _family(spec), spec.hidden_size, st.width
    c, drop = d.c, MASK if d.dropout else 0
    norm_out = _norm_out_bytes(spec, d)
    blocks = 3 if st.cross_seq else 2
    total = blocks * _norm_per_token(spec, d) if fam != "modernbert" else 2 * _norm_per_token(spec, d)
    attn_readers = 1 if fam == "modernbert" else 3
    total += d.cast(attn_readers, norm_out) * h + _attention_per_token(spec, st, d)
    total += blocks * drop * h  # each block's output dropout
    if st.cross_seq:  # cross-attention's query side: q's input, q and output, LSE or scores
        scores = _scores_per_token(st, d, st.cross_seq) if d.eager else FP32 * st.heads
        total += d.cast(1, norm_out) * h + 2 * c * st.inner + scores
    mlp_readers = 2 if spec.mlp_gated and fam == "t5" else 1
    total += d.cast(mlp_readers, norm_out) * h
    if fam == "t5":
        if spec.mlp_gated:
            act_saved = (3 * FP32 + c) if d.autocast and c < FP32 else 4 * c
            gelu_out = FP32 if d.autocast else c
            act_saves = act_saved + gelu_out if spec.hidden_act == "gelu_new" else 2 * c
            wo_input = 0 if d.frozen and d.adapter_copies else c
            total += i * (act_saves + c + wo_input + drop)  # activation, wi_1 output, wo input, mask
        else:
            wo_input = c if (d.autocast or d.dropout) else 0
            if d.frozen:  # the relu or dropout output, kept by wo's adapter (or its own copy, counted apart)
                wo_input = 0 if d.adapter_copies else (c if d.dropout else 0)
            total += i * (c + wo_input + drop)  # relu output (kept by relu), wo input, mask
    elif fam == "modernbert":
        total += i * 4 * c  # Wi's 2i output, the activation output, the product
    else:  # BART / BERT: activation input and the second linear's input (+ BART's activation dropout)
        inner_drop = drop if fam == "bart" else 0
        second_input = 0 if d.frozen and d.adapter_copies else c
        total += i * (c + second_input + inner_drop)
    return total + st.adapter_bytes_per_token


def _layer_fixed(spec: ModelSpec, st: Stack, d: Dtypes) -> int:
    """Per-layer bytes that do not grow with the batch: T5's position-bias copies and
    the decoder's causal mask."""
    if _family(spec) == "modernbert":
        return 0
    if _family(spec) != "t5":
        return 0
    # UMT5: every layer's self-attention has its own relative-position embedding and
    # keeps its own bucket indices (T5 and mT5: layer 0's, counted once per stack)
    buckets = INDEX * st.seq * st.seq if spec.model_type in PER_LAYER_POSITION_BIAS else 0
    if d.eager:  # eager adds the bias to the scores: nothing saved
        return buckets
    bias_bytes = FP32 if d.r == FP32 and not d.autocast else d.c
    total = st.heads * st.seq * st.seq * bias_bytes + buckets
    if st.causal:
        total += st.seq * st.seq * MASK
    return total


def _cross_kv_per_layer(spec: ModelSpec, st: Stack, d: Dtypes) -> int:
    """Cross-attention terms over the encoder tokens, one decoder layer: k and v, and
    under autocast their own casts of the encoder output."""
    t_in = st.batch * st.cross_seq
    casts = 2 * d.c * spec.hidden_size if d.autocast and not d.frozen else 0
    return t_in * (2 * d.c * st.inner + casts + st.cross_adapter_bytes_per_input_token)


def _linear_params_per_layer(spec: ModelSpec, st: Stack) -> int:
    h = spec.hidden_size
    attention = 4 * h * st.inner
    mlp = (3 if spec.mlp_gated else 2) * h * st.width
    return attention * (2 if st.cross_seq else 1) + mlp


def layer_bytes(spec: ModelSpec, st: Stack, d: Dtypes) -> int:
    """Saved bytes of one layer of ``st``, its autocast weight copies included."""
    casts = _layer_weight_casts(spec, st, d)
    cross = _cross_kv_per_layer(spec, st, d) if st.cross_seq else 0
    return st.tokens * _layer_per_token(spec, st, d) + _layer_fixed(spec, st, d) + cross + casts


def _layer_weight_casts(spec: ModelSpec, st: Stack, d: Dtypes) -> int:
    """Autocast's compute-dtype copies of one layer's trained weights: the base linears
    under full fine-tuning, the adapters under LoRA."""
    if d.frozen:
        return st.adapter_weight_cast_bytes
    return d.c * _linear_params_per_layer(spec, st) if d.autocast else 0


def _first_layer_frozen_bytes(spec: ModelSpec, st: Stack, d: Dtypes) -> int:
    """What the first layer of a stack does not save under a frozen base. Its input, the
    frozen embedding's output, needs no gradient: T5's first norm saves nothing, and the
    self-attention's q/k/v adapters, reading a tensor that needs none, keep their inputs
    (for their weights' gradients) but not their weights' autocast copies, which die
    with autocast's cache at the forward's end (as
    :func:`vramplan.memory.activations.first_layer_uncast_bytes`)."""
    if not d.frozen:
        return 0
    norm = st.tokens * _norm_per_token(spec, d) if _family(spec) == "t5" else 0
    return norm + st.first_layer_uncast_bytes


def _embedding_per_token(spec: ModelSpec, d: Dtypes) -> int:
    """After the embeddings: BART/BERT/ModernBERT's LayerNorm and the dropout mask.
    Nothing under a frozen base: the frozen embedding's output needs no gradient, so
    neither its norm nor its dropout saves anything."""
    if d.frozen:
        return 0
    drop = MASK * spec.hidden_size if d.dropout else 0
    if _family(spec) == "t5":
        return drop
    return _norm_per_token(spec, d) + drop


def _stack_end_per_token(spec: ModelSpec, d: Dtypes) -> int:
    """After the last layer: the final norm (T5, mBART, ModernBERT) and T5's dropout."""
    fam = _family(spec)
    total = _norm_per_token(spec, d) if fam in ("t5", "modernbert") or spec.final_norm else 0
    if fam == "t5" and d.dropout:
        total += MASK * spec.hidden_size
    return total


def _head_per_token(spec: ModelSpec, d: Dtypes) -> int:
    """The head's input as its matmul saves it, after BERT-style masked-LM transforms
    (dense, gelu, LayerNorm on a 16-bit input: its fp32 cast under autocast)."""
    h, c = spec.hidden_size, d.c
    out = d.cast(1, _norm_out_bytes(spec, d)) * h
    if spec.architecture != "encoder":
        return out
    ln_input = FP32 if d.autocast else c
    return out + h * (c + ln_input) + 2 * FP32 + d.cast(1, d.r) * h


def _fixed_per_stack(spec: ModelSpec, st: Stack, d: Dtypes) -> int:
    """T5's bucket indices per stack and the cross-attention's zero bias; ModernBERT's
    sliding-window bool mask (``batch x s x s``, built once, read by every local layer)
    less the attention norm its first layer lacks (``nn.Identity``)."""
    if _family(spec) == "modernbert":
        return st.batch * st.seq * st.seq * MASK - st.tokens * _norm_per_token(spec, d)
    if _family(spec) != "t5":
        return 0
    total = 0 if spec.model_type in PER_LAYER_POSITION_BIAS else INDEX * st.seq * st.seq
    if st.cross_seq and not d.eager:
        total += st.heads * st.seq * st.cross_seq * d.c
    return total


def stacks(spec: ModelSpec, setup: TrainingSetup) -> tuple[Stack | None, Stack]:
    """(encoder stack or None, the main stack: the decoder, or an encoder-only model's)."""
    seq = setup.seq
    if spec.architecture == "encoder":
        return None, Stack(layers=spec.num_layers, heads=spec.num_attention_heads, inner=spec.q_dim,
                           width=spec.intermediate_size, batch=setup.batch, seq=seq)
    enc = spec.encoder
    input_len = setup.input_len or seq
    assert enc is not None
    adapters = _stack_adapters(spec, setup) if setup.method == "lora" else StackAdapters()
    encoder = Stack(layers=enc.num_layers, heads=enc.num_attention_heads, inner=enc.num_attention_heads * enc.head_dim,
                    width=enc.intermediate_size, batch=setup.batch, seq=input_len,
                    adapter_bytes_per_token=adapters.encoder_per_token,
                    adapter_weight_cast_bytes=adapters.encoder_weight_casts,
                    first_layer_uncast_bytes=adapters.encoder_first_uncast)
    decoder = Stack(layers=spec.num_layers, heads=spec.num_attention_heads, inner=spec.q_dim,
                    width=spec.intermediate_size, batch=setup.batch, seq=seq, cross_seq=input_len, causal=True,
                    adapter_bytes_per_token=adapters.decoder_per_token,
                    cross_adapter_bytes_per_input_token=adapters.cross_per_input_token,
                    adapter_weight_cast_bytes=adapters.decoder_weight_casts,
                    first_layer_uncast_bytes=adapters.decoder_first_uncast)
    return encoder, decoder


@dataclass(frozen=True, kw_only=True)
class StackAdapters:
    """What one layer's LoRA adapters save, per stack (each ``lora.Linear``: its own copy
    of its input and ``A x``, :func:`vramplan.memory.lora.adapter_bytes_per_token`)."""

    encoder_per_token: int = 0
    """One encoder layer's adapters, per input token."""
    decoder_per_token: int = 0
    """One decoder layer's adapters reading decoder tokens (self-attention, the
    cross-attention's query and output, the MLP), per target token."""
    cross_per_input_token: int = 0
    """One decoder layer's cross-attention key/value adapters, per input token (they read
    the encoder output)."""
    encoder_weight_casts: int = 0
    """Autocast's copies of one encoder layer's adapter weights."""
    decoder_weight_casts: int = 0
    """The same, one decoder layer."""
    encoder_first_uncast: int = 0
    """Of the encoder's, the copies of ``lora_A`` on the first layer's q/k/v."""
    decoder_first_uncast: int = 0
    """The same, the decoder's self-attention."""


FIRST_INPUT_MODULES = ("q_proj", "k_proj", "v_proj")
"""Self-attention linears that read a stack's first normalised input."""
CROSS_INPUT_MODULES = ("k_proj", "v_proj")
"""Cross-attention linears that read the encoder output, not the decoder's tokens."""


def _stack_adapters(spec: ModelSpec, setup: TrainingSetup) -> StackAdapters:
    """Each targeted module's saved bytes, summed per layer of the stack it lies in (its
    tensor name's ``encoder.`` / ``decoder.`` prefix), the cross-attention's k/v per
    encoder token."""
    from vramplan.memory.lora import adapter_bytes_per_token, adapter_weight_cast_bytes, module_adapter_groups, \
        target_groups
    from vramplan.training import lora_targets

    targets = lora_targets(spec, setup)
    recipe = setup.recipe
    c, autocast, rank = recipe.compute_bytes, recipe.autocast, setup.lora_rank
    enc_layers = spec.encoder.num_layers if spec.encoder else 1
    sums = {"encoder": 0, "decoder": 0, "cross": 0}
    for g in target_groups(spec, targets):
        stack = "encoder" if g.name.startswith("encoder.") else "decoder"
        key = "cross" if g.component == "cross_attention" and g.module in CROSS_INPUT_MODULES else stack
        layers = enc_layers if stack == "encoder" else spec.num_layers
        sums[key] += adapter_bytes_per_token(g.shape[1], rank, c, autocast) * g.count // layers
    casts = {"encoder": 0, "decoder": 0}
    first = {"encoder": 0, "decoder": 0}
    for g in module_adapter_groups(spec, targets, rank):
        stack = "encoder" if g.name.startswith("encoder.") else "decoder"
        layers = enc_layers if stack == "encoder" else spec.num_layers
        cast = adapter_weight_cast_bytes([g], c, autocast) // layers
        casts[stack] += cast
        if g.component == "attention" and g.name.endswith("lora_A.weight") and \
                any(f".{m}." in g.name for m in FIRST_INPUT_MODULES):
            first[stack] += cast
    return StackAdapters(encoder_per_token=sums["encoder"], decoder_per_token=sums["decoder"],
                         cross_per_input_token=sums["cross"], encoder_weight_casts=casts["encoder"],
                         decoder_weight_casts=casts["decoder"], encoder_first_uncast=first["encoder"],
                         decoder_first_uncast=first["decoder"])


def modelled(spec: ModelSpec, setup: TrainingSetup) -> bool:
    """Full fine-tuning of these architectures, and LoRA on encoder-decoders, are modelled
    here; LoRA on encoders and QLoRA keep the decoder formulas."""
    if spec.architecture == "encoder":
        return setup.method == "full"
    return spec.architecture == "encoder_decoder" and setup.method in ("full", "lora")


def encoder_stack_bytes(spec: ModelSpec, setup: TrainingSetup, ctx: act.ActivationContext) -> int:
    """An encoder-decoder's encoder, alive from its forward to its backward: embedding
    terms, every layer, its final norm, and (without autocast) its output, which every
    cross-attention's k and v save (under autocast each saves its own casts, counted
    with the decoder's layers)."""
    encoder, _ = stacks(spec, setup)
    assert encoder is not None
    d = _dtypes(ctx)
    enc_view = replace(spec, architecture="encoder_decoder")
    if setup.recompute_policy == "full":
        layers = encoder.layers * encoder.tokens * _stream_bytes(spec, d) * spec.hidden_size
    else:
        layers = encoder.layers * layer_bytes(enc_view, encoder, d) - _first_layer_frozen_bytes(spec, encoder, d)
    per_token = _embedding_per_token(spec, d) + _stack_end_per_token(spec, d)
    kept_once = not d.autocast if not d.frozen else not d.adapter_copies  # by k/v or by their adapters
    output = encoder.tokens * d.r * spec.hidden_size if kept_once else 0
    return layers + encoder.tokens * per_token + output + _fixed_per_stack(spec, encoder, d)


def activation_plan(spec: ModelSpec, setup: TrainingSetup, ctx: act.ActivationContext) -> ActivationPlan:
    """The timeline's layers for an encoder-decoder (its decoder) or an encoder-only
    model, under full fine-tuning."""
    from vramplan.training import ActivationPlan

    _, main = stacks(spec, setup)
    d = _dtypes(ctx)
    h, t = spec.hidden_size, main.tokens
    full = layer_bytes(spec, main, d)
    first = full - _first_layer_frozen_bytes(spec, main, d)
    casts = _layer_weight_casts(spec, main, d)
    if setup.recompute_policy == "full":
        kept = first_kept = t * _stream_bytes(spec, d) * h
    else:
        kept, first_kept = full, first
    work = 2 * _stream_bytes(spec, d) * h * t + (2 if spec.mlp_gated else 1) * d.c * main.width * t
    outside = t * (_embedding_per_token(spec, d) + _stack_end_per_token(spec, d) + _head_per_token(spec, d)) \
        + _fixed_per_stack(spec, main, d) + _head_weight_casts(spec, ctx)
    parts = {"layers": first_kept + kept * (main.layers - 1), "outside_layers": outside}
    forward_only = 0
    if setup.recompute_policy == "full" and d.autocast:
        # autocast's weight copies stay cached to the forward's end, kept by no one after
        encoder, _ = stacks(spec, setup)
        enc_casts = _layer_weight_casts(spec, encoder, d) * encoder.layers if encoder else 0
        forward_only = casts * main.layers + enc_casts
    rest = main.layers - 1
    return ActivationPlan(parts=parts, per_layer_kept=(first_kept,) + (kept,) * rest,
                          per_layer_full=(first,) + (full,) * rest,
                          per_layer_work=(work,) * main.layers, outside_layers=outside, forward_only=forward_only,
                          final_norm_transient=0,
                          per_micro_batch=act.MicroBatchBytes(layer_kept_bytes=0 if setup.recompute_policy == "full"
                                                              else casts, layer_backward_bytes=casts,
                                                              outside_bytes=_head_weight_casts(spec, ctx)))


def _head_weight_casts(spec: ModelSpec, ctx: act.ActivationContext) -> int:
    """Autocast's copies of the output head and of a masked-LM transform's dense weight."""
    transform = ctx.c * spec.hidden_size ** 2 if spec.architecture == "encoder" and ctx.recipe.autocast else 0
    return act.head_weight_cast_bytes(spec, ctx) + transform


def extra_training_components(spec: ModelSpec, setup: TrainingSetup,
                              ctx: act.ActivationContext) -> tuple[tuple[Component, ...], tuple[str, ...]]:
    """(components alive in :data:`LIVE_PHASES`, warnings) for encoder-decoders and images."""
    comps: list[Component] = []
    warnings: list[str] = []
    if setup.images:
        from vramplan.memory.vision_tower import training_image_components

        image_comps, image_warnings = training_image_components(spec, setup, ctx)
        comps += image_comps
        warnings += image_warnings
    if spec.architecture == "encoder_decoder":
        tokens = setup.input_len or setup.seq
        if modelled(spec, setup):
            comps.append(Component(name="activations/encoder", bytes=encoder_stack_bytes(spec, setup, ctx),
                                   note=f"{spec.encoder.num_layers if spec.encoder else 0} encoder layers over "
                                        f"{tokens} input tokens, their norms and dropout masks"))
        else:
            comps += _lora_encoder_components(spec, setup, ctx, tokens)
            warnings.append(f"encoder-decoder {setup.method.upper()} training: encoder and cross-attention "
                            "activations use the decoder-layer formulas on the encoder's widths, not checked "
                            "against the trace")
    return tuple(comps), tuple(warnings)


def _lora_encoder_components(spec: ModelSpec, setup: TrainingSetup, ctx: act.ActivationContext,
                             tokens: int) -> list[Component]:
    from vramplan.engines.seq2seq import encoder_view

    enc = encoder_view(spec)
    ectx = replace(ctx, seq=tokens)
    if setup.recompute_policy == "full":
        per_layer = act.checkpointed_layer_bytes(enc, ectx)
    else:
        per_layer = act.saved_layer_bytes(act.layer_activation_parts(enc, ectx, 0), setup.recompute_policy)
    output = ectx.tokens * spec.hidden_size * ectx.c
    return [Component(name="activations/encoder", bytes=enc.num_layers * per_layer + output,
                      note=f"{enc.num_layers} encoder layers over {tokens} input tokens + the encoder output "
                           "(decoder-layer formulas)"),
            Component(name="activations/cross_attention", bytes=cross_attention_saved_bytes(spec, setup, ctx),
                      note=f"{spec.num_layers} decoder cross-attentions over {tokens} input tokens")]


def cross_attention_saved_bytes(spec: ModelSpec, setup: TrainingSetup, ctx: act.ActivationContext) -> int:
    """What one step saves in the decoder's cross-attentions, all layers: per layer the
    normed decoder input and the queries (``t_out x (h + inner)``), the keys and values
    projected from the encoder output (``2 x t_in x inner``), the attention output read
    by ``o_proj`` (``t_out x inner``); eager attention adds its probabilities
    (``heads x t_out x t_in``, plus the fp32 softmax output)."""
    if spec.architecture != "encoder_decoder":
        return 0
    c, b = ctx.c, setup.batch
    inner = spec.num_attention_heads * spec.head_dim
    t_out, t_in = b * setup.seq, b * (setup.input_len or setup.seq)
    per_layer = c * (t_out * (spec.hidden_size + 2 * inner) + 2 * t_in * inner)
    if setup.attention == "eager":
        per_layer += spec.num_attention_heads * t_out * (setup.input_len or setup.seq) * (c + act.FP32)
    if setup.recompute_policy == "full":
        return 0  # recomputed with the layer; the checkpointed input is counted by the decoder plan
    return spec.num_layers * per_layer


# ---- the loss -------------------------------------------------------------------------
LOSS_UPCASTS = frozenset({"modernbert"})
"""Families whose forward calls ``self.loss_function`` (``ForMaskedLMLoss``:
``logits.float()`` first): the decoder's rule (:mod:`vramplan.memory.logits`)."""
FP32_LOGITS_BIAS = frozenset({"bart", "mbart"})
"""Families that add an fp32 ``final_logits_bias`` buffer to the head's output: under
autocast (fp32 buffers, 16-bit matmul) the sum, the logits, is fp32."""


def logits_bytes(spec: ModelSpec, setup: TrainingSetup) -> LogitsBytes | None:
    """The logits and loss of ``CrossEntropyLoss()`` on compute-dtype logits (T5,
    BERT, RoBERTa; BART without autocast), or ``None`` where the loss sees fp32 logits
    (the decoder's rule, :mod:`vramplan.memory.logits`).

    ``cross_entropy`` is a composite: ``log_softmax`` with the input's own dtype
    (autocast leaves an op with an explicit dtype alone), then ``nll_loss``. Per token
    and vocabulary entry, under autocast ``nll_loss`` (on its fp32 list) saves its fp32
    cast of the log-probabilities: the forward's high point holds the logits, the
    log-probabilities and the cast (``2 c + 4``), the backward's the log-probabilities
    and the cast (``c + 4``) beside ``nll_loss``'s fp32 gradient (``+ 4``). Without
    autocast everything stays in ``c``: ``2 c``, ``c`` kept, ``3 c`` in the backward
    (the log-probabilities, ``nll_loss``'s gradient and ``log_softmax``'s)."""
    from vramplan.memory.logits import FP32 as LOSS_FP32, LogitsBytes

    from vramplan.training import base_dtype

    autocast = setup.recipe.autocast
    c = setup.recipe.compute_bytes
    # the bias buffer follows the base's dtype: fp32 under full bf16-mixed, 16-bit on a LoRA base
    fp32_bias = autocast and spec.model_type in FP32_LOGITS_BIAS and base_dtype(setup) == "fp32"
    if spec.model_type in LOSS_UPCASTS or setup.fused_ce or c >= LOSS_FP32 or fp32_bias:
        return None
    tokens = setup.batch * setup.seq
    elems = tokens * spec.vocab_size
    what = f"{tokens:,} tokens x {spec.vocab_size:,} vocab: logits {c} B + log_softmax {c} B"
    if not autocast:
        return LogitsBytes(forward_peak=2 * c * elems, saved=c * elems, backward_peak=3 * c * elems,
                           note=what + f"; backward + two {c} B gradients")
    saved = (c + LOSS_FP32) * elems
    return LogitsBytes(forward_peak=(2 * c + LOSS_FP32) * elems, saved=saved, backward_peak=saved + LOSS_FP32 * elems,
                       note=what + " + nll_loss's fp32 cast 4 B; backward + its fp32 gradient")
