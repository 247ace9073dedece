"""Training and prefill activations of Gemma 3n and Gemma 4 text models, tensor by
tensor, from what autograd saves (and a forward keeps alive) in transformers 5.24's
``modeling_gemma3n.py`` and ``modeling_gemma4.py``: each layer by its own shape (Gemma 4's full-attention layers
with ``global_head_dim`` and their own KV heads, KV-shared layers without k/v
projections, double-wide MLPs), Gemma 3n's AltUp streams and LAuReL residual, and the
per-layer input embeddings with their gates.

Notation as in :mod:`vramplan.memory.activations`: per token, ``h`` hidden size, ``q``
/ ``kv`` the layer's query / key-value widths, ``i`` its MLP width, ``p`` the per-layer
input width (``hidden_size_per_layer_input``), ``n`` AltUp streams
(``altup_num_inputs``), ``R`` the LAuReL rank, ``L`` layers; ``r`` bytes of the
residual stream (the embedding's dtype), ``c`` of the compute dtype, ``f = 4``.

The norm of both families (``Gemma3nRMSNorm`` / ``Gemma4RMSNorm``) computes
``x.float() * pow(mean(x^2) + eps, -0.5)`` then multiplies by ``weight.float()``: it
keeps the fp32 input (a copy when ``x`` is 16-bit; ``x`` itself when it is fp32), the
fp32 ``mean + eps`` and its ``pow`` (two ``f`` per normalised row), and, when its weight
trains, the fp32 normalised tensor (``f`` per element). ``v_norm`` has no weight.

Queries and keys leave their norms in the projection's dtype and meet ``cos``/``sin``
in the hidden states' dtype (``rotary_emb(hidden_states, ...)``), so on an fp32
residual under autocast they reach attention in fp32 and SDPA saves its own 16-bit
casts; the rotary tables are kept once per layer type.
"""

from __future__ import annotations

from dataclasses import replace

from vramplan.memory.activations import (
    FP32,
    INDEX,
    ActivationContext,
    ActivationPart,
    _part,
    _rotated_keys_in_fp32,
    _scores_per_token,
    sdpa_gets_a_mask,
)
from vramplan.model.spec import ModelSpec

GEMMA_LAYER_FAMILIES = frozenset({"gemma3n_text", "gemma4_text"})
"""Families whose decoder layer this module models. The Gemma 4 assistants (which read
another model's cache) and Gemma 4 unified (``Gemma4UnifiedTextDecoderLayer``, a Gemma 2
layer) keep the generic layer formula."""
NORM_STATS = 2
"""fp32 values a Gemma RMSNorm keeps per normalised row: ``mean(x^2) + eps`` (saved by
``pow(., -0.5)``) and the ``pow`` output (saved by the product)."""


def models(spec: ModelSpec) -> bool:
    """Is ``spec`` a Gemma 3n / Gemma 4 text model whose layers this module prices?"""
    return spec.model_type in GEMMA_LAYER_FAMILIES and not spec.draft_backbone_hidden_size


def _autocast(ctx: ActivationContext) -> bool:
    return ctx.recipe.autocast or ctx.autocast_region


def _norm(ctx: ActivationContext, width: int, rows: int, *, input_bytes: int, input_kept: bool,
          scaled: bool = True) -> int:
    """One Gemma RMSNorm's own saved bytes per token: the fp32 input (a copy of a
    16-bit input; an fp32 input no one else keeps), two fp32 values per row, and the
    fp32 normalised tensor when a trained weight multiplies it. ``input_kept``: an fp32
    input is already counted (the residual stream)."""
    fp32_input = 0 if input_bytes >= FP32 and input_kept else FP32 * width
    normalised = FP32 * width if scaled and not ctx.frozen_base else 0
    return fp32_input + NORM_STATS * FP32 * rows + normalised


def _linear_input(ctx: ActivationContext, width: int, input_bytes: int, readers: int = 1) -> int:
    """A tensor as the trained linears reading it save it: under autocast one ``c``-byte
    cast each when the tensor is wider than ``c``; otherwise the tensor itself, once
    (``input_bytes``; 0 when it is already counted, passed as 0). A frozen base saves
    nothing here (its adapters keep their own inputs, counted with the adapters)."""
    if ctx.frozen_base:
        return 0
    if _autocast(ctx) and input_bytes > ctx.c:
        return readers * ctx.c * width
    return input_bytes * width


def layer_parts(spec: ModelSpec, ctx: ActivationContext, layer: int) -> list[ActivationPart]:
    """Everything layer ``layer`` of a Gemma 3n / Gemma 4 model saves for backward, per
    micro-batch and GPU, named by part (without recomputation)."""
    ctx = _stream_context(spec, ctx)
    h, c, r = spec.hidden_size, ctx.c, ctx.r
    residual_norm = _norm(ctx, h, 1, input_bytes=r, input_kept=True)  # reads the residual stream
    block_norm = _norm(ctx, h, 1, input_bytes=c, input_kept=False)  # reads a linear's output
    width = spec.layer_intermediate_sizes[layer] if spec.layer_intermediate_sizes else spec.intermediate_size
    attn_readers = 1 if spec.is_kv_shared(layer) else (2 if _keys_are_values(spec, layer) else 3)
    # under a frozen base the first layer's input needs no gradient: what reads it before
    # the first adapter (AltUp's prediction, input_layernorm, LAuReL) keeps nothing
    before_adapters = not (ctx.frozen_base and layer == 0)
    parts: list[ActivationPart] = []
    if spec.altup_inputs > 1:
        if before_adapters:
            parts += _altup_predict_parts(spec, ctx)
        attn_readers += 1 if spec.laurel_rank else 0
    else:
        # the layer input (the previous layer's output), kept by input_layernorm itself
        # when fp32 (a 16-bit one is kept as the norm's fp32 copy)
        parts.append(_part("residual", _kept_residual(ctx, h) if before_adapters else 0, ctx, sharded=False))
    parts.append(_part("norms", residual_norm if before_adapters else 0, ctx, sharded=False))  # input_layernorm
    # q, k, v (and LAuReL's left linear) read the norm output, in the residual's dtype
    parts.append(_part("linear_inputs", _linear_input(ctx, h, r, attn_readers), ctx, sharded=False))
    if spec.altup_inputs > 1 and spec.laurel_rank and before_adapters:
        parts.append(_part("laurel", _laurel_per_token(spec, ctx), ctx, sharded=False))
    parts += _attention_parts(spec, ctx, layer)
    # post_attention_layernorm on o_proj's output; the post-attention sum (LAuReL's
    # average in Gemma 3n), kept by pre_feedforward_layernorm
    post_attention = block_norm + _kept_residual(ctx, h)
    mlp_inputs = _linear_input(ctx, h, r, 2)
    # gate, act(gate), up and their product, kept by down_proj (by its adapter's own cast
    # under peft's input cast); gelu_pytorch_tanh is one op
    # (QLoRA: bitsandbytes' Linear4bit returns gate and up in the fp32 input's dtype)
    lo = ctx.linear_output_bytes or c
    mlp = lo * width * 3 + (0 if ctx.inputs_saved_by_adapters else c * width)
    if spec.sparse_mlp_layers and spec.sparse_mlp_layers[layer]:
        # Gemma 3n's _gaussian_topk: relu(gate - (mean + k std)) is the activation's input
        # and its own output (both kept), std keeps its input (the gate) and one value a row
        mlp += c * width + c
    parts += [_part("norms/post_attention", post_attention + residual_norm, ctx, sharded=False),
              _part("linear_inputs/mlp", mlp_inputs, ctx, sharded=False),
              _part("mlp", mlp, ctx, sharded=True),
              _part("norms/post_feedforward", block_norm, ctx, sharded=False)]
    if spec.is_moe_layer(layer) and spec.moe is not None:
        parts += _moe_block_parts(spec, ctx)
    if spec.altup_inputs > 1:
        parts += _altup_correct_parts(spec, ctx)
    if spec.per_layer_input_size:
        parts.append(_part("per_layer_input", _per_layer_gate_per_token(spec, ctx), ctx, sharded=False))
    return parts


def _stream_context(spec: ModelSpec, ctx: ActivationContext) -> ActivationContext:
    """Gemma 3n's residual streams are fp32 under autocast whatever the embeddings' dtype:
    the target magnitude ``mean(x^2) ** 0.5`` comes out of autocast's fp32 ``pow``, the
    scaled AltUp projections with it, and ``torch.stack`` promotes the embeddings' stream
    to their dtype."""
    if spec.altup_inputs > 1 and _autocast(ctx) and ctx.r < FP32:
        return replace(ctx, residual_bytes=FP32)
    return ctx


def _kept_residual(ctx: ActivationContext, width: int) -> int:
    """A residual-stream tensor a Gemma norm reads: kept as it is when fp32, else as the
    norm's fp32 copy (counted with the norm)."""
    return ctx.r * width if ctx.r >= FP32 else 0


def _keys_are_values(spec: ModelSpec, layer: int) -> bool:
    """Gemma 4's ``attention_k_eq_v``: full-attention layers have no ``v_proj``."""
    return spec.attention_k_eq_v and spec.attention_kinds()[layer] == "full_attention"


def _attention_parts(spec: ModelSpec, ctx: ActivationContext, layer: int) -> list[ActivationPart]:
    """Gemma3nTextAttention / Gemma4TextAttention with this layer's head width and KV
    heads. q_norm and k_norm keep an fp32 copy of the projection's output, two values
    per head row and the fp32 normalised tensor; v_norm (no weight) the copy and the
    row values. A KV-shared layer projects only queries and attends to the keys and
    values an earlier layer stored (``shared_kv_states``): SDPA saves them as they are
    unless it casts or repeats them.

    The kernel is the one PyTorch picks (:func:`sdpa_kernel`). Flash and
    memory-efficient save q, k, v, the output and the fp32 log-sum-exp; the math
    fallback (``_scaled_dot_product_attention_math``) saves the scaled queries, keys and
    values repeated to the query heads (``repeat_interleave`` under ``enable_gqa``), the
    ``a x s`` probabilities and the output's contiguous copy; eager as
    :func:`vramplan.memory.activations._scores_per_token` counts it, with ``repeat_kv``'s
    copies."""
    c, a = ctx.c, spec.num_attention_heads
    d, kv_heads = spec.layer_head_dim(layer), spec.layer_num_kv_heads(layer)
    q, kv = a * d, kv_heads * d
    shared = spec.is_kv_shared(layer)
    norms = _norm(ctx, q, a, input_bytes=c, input_kept=False)  # q_norm
    if not shared:
        norms += _norm(ctx, kv, kv_heads, input_bytes=c, input_kept=False)  # k_norm
        norms += _norm(ctx, kv, kv_heads, input_bytes=c, input_kept=False, scaled=False)  # v_norm
    kernel = ctx.attention if ctx.attention in ("eager", "flash") else sdpa_kernel(spec, ctx, layer)
    if kernel in ("eager", "math"):
        k_width = v_width = q
    elif kernel == "flash" and ctx.attention == "flash":  # flash-attn takes grouped keys as they are
        k_width = v_width = kv
    else:
        k_width, v_width = _sdpa_kv_widths(spec, ctx, layer)
    # keys promoted to fp32 by fp32 cos/sin are cast back by autocast; a shared layer's
    # keys and values are otherwise the producer layer's tensors
    keys_cast = _autocast(ctx) and ctx.r > c
    keys = c * k_width if not shared or keys_cast or k_width != kv else 0
    values = c * v_width if not shared or v_width != kv else 0
    # eager's output copy is kept only by o_proj, whose adapter keeps its own cast instead
    adapter_copy = ctx.inputs_saved_by_adapters and ctx.attention_output_saved_by_adapter
    output = 0 if kernel == "eager" and adapter_copy else c * q
    if kernel == "math":
        output += c * q  # the scaled queries (the cast query itself is not kept)
        tail = _part("attention/scores", c * a * ctx.seq, ctx, sharded=True)
    elif kernel == "eager":
        tail = _part("attention/scores", _scores_per_token(spec, ctx, a), ctx, sharded=True)
    else:
        tail = _part("attention/lse", FP32 * a, ctx, sharded=True)
    queries = 0 if kernel == "math" else c * q
    return [_part("attention/qkv", queries + keys + values, ctx, sharded=True),
            _part("attention/qk_norm", norms, ctx, sharded=True),
            _part("attention/output", output, ctx, sharded=True), tail]


FLASH_MAX_HEAD_DIM = 256
"""Largest head dim PyTorch's flash kernel takes (sdp_utils.cpp, ``check_head_dim_size_flash``):
Gemma 4's 512-wide full-attention heads never run on it."""
HEAD_DIM_MULTIPLE = {2: 8, 4: 4}
"""Head-dim alignment of the flash and memory-efficient kernels by element size: 8 in
fp16/bf16, 4 in fp32 (sdp_utils.cpp)."""


GQA_SDPA_MAX_HEAD_DIM = 256
"""transformers passes grouped keys to SDPA as they are (``enable_gqa``) only without a
mask and for heads up to 256 wide (``use_gqa_in_sdpa`` in integrations/sdpa_attention.py,
CUDA); otherwise ``repeat_kv`` widens them to the query heads first."""


def _repeats_kv(spec: ModelSpec, ctx: ActivationContext, layer: int) -> bool:
    """Does transformers repeat layer ``layer``'s keys and values before SDPA?"""
    return sdpa_gets_a_mask(spec, ctx, layer) or spec.layer_head_dim(layer) > GQA_SDPA_MAX_HEAD_DIM


def _sdpa_kv_widths(spec: ModelSpec, ctx: ActivationContext, layer: int) -> tuple[int, int]:
    """Widths of the keys and values SDPA saves in layer ``layer``, per token: as they are
    under ``enable_gqa``; repeated to the query width by ``repeat_kv`` (a copy, except for
    one key/value head, where it stays a view that only autocast's cast of fp32 keys
    writes out), as :func:`vramplan.memory.activations._sdpa_kv_widths` counts it."""
    a, d, kv_heads = spec.num_attention_heads, spec.layer_head_dim(layer), spec.layer_num_kv_heads(layer)
    q, kv = a * d, kv_heads * d
    if kv == q or not _repeats_kv(spec, ctx, layer):
        return kv, kv
    if kv_heads > 1:
        return q, q
    return (q if _rotated_keys_in_fp32(ctx) else kv), kv


def sdpa_kernel(spec: ModelSpec, ctx: ActivationContext, layer: int) -> str:
    """The kernel PyTorch's SDPA picks for layer ``layer`` on a CUDA GPU of compute
    capability 8.0 or more (sdp_utils.cpp ``select_sdp_backend``): ``flash`` in 16 bits
    without a mask for heads up to 256 wide; ``efficient`` when queries and keys have
    as many heads (keys repeated by ``repeat_kv`` under a mask or past 256-wide heads,
    :func:`_repeats_kv`; otherwise passed grouped with ``enable_gqa``, which only flash
    and math take); else ``math``."""
    d = spec.layer_head_dim(layer)
    masked = sdpa_gets_a_mask(spec, ctx, layer)
    multiple = HEAD_DIM_MULTIPLE.get(ctx.c, HEAD_DIM_MULTIPLE[FP32])
    if ctx.c < FP32 and not masked and d <= FLASH_MAX_HEAD_DIM and d % multiple == 0:
        return "flash"
    same_heads = _repeats_kv(spec, ctx, layer) or spec.layer_num_kv_heads(layer) == spec.num_attention_heads
    return "efficient" if same_heads and d % multiple == 0 else "math"


def _laurel_per_token(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Gemma3nTextLaurelBlock: ``linear_left``'s output (kept by ``linear_right``) and
    ``post_laurel_norm`` on ``linear_right``'s output (its input cast is counted with
    the attention's readers)."""
    return ctx.c * spec.laurel_rank + _norm(ctx, spec.hidden_size, 1, input_bytes=ctx.c, input_kept=False)


def _per_layer_gate_per_token(spec: ModelSpec, ctx: ActivationContext) -> int:
    """The per-layer input block: ``per_layer_input_gate`` reads the layer's residual
    (its cast, or the tensor itself), its output and ``act_fn``'s (each kept by the next
    op), their product with the layer's slice of the per-layer inputs as
    ``per_layer_projection`` saves it (``c p``), and ``post_per_layer_input_norm`` on
    the projection's output."""
    h, p, c, r = spec.hidden_size, spec.per_layer_input_size, ctx.c, ctx.r
    # frozen per-layer inputs: act_fn's output needs no keeping, the frozen projection no
    # input; the gate's output in the linears' output dtype (fp32 from QLoRA's Linear4bit)
    gate = (ctx.linear_output_bytes or c) * p if ctx.frozen_base else 3 * c * p
    return _linear_input(ctx, h, r) + gate + _norm(ctx, h, 1, input_bytes=c, input_kept=False)


def _moe_block_parts(spec: ModelSpec, ctx: ActivationContext) -> list[ActivationPart]:
    """Gemma 4's MoE block beside the dense MLP, from the shared MoE terms and the
    block's norms (post_feedforward_layernorm_1 and _2, pre_feedforward_layernorm_2,
    the router's weightless norm)."""
    from vramplan.memory.activations import _moe_parts

    h, r = spec.hidden_size, ctx.r
    block_norm = _norm(ctx, h, 1, input_bytes=ctx.c, input_kept=False)
    norms = (2 * block_norm  # post_feedforward_layernorm_1 on the MLP output, _2 on the experts'
             + _norm(ctx, h, 1, input_bytes=r, input_kept=True)  # pre_feedforward_layernorm_2
             + _norm(ctx, h, 1, input_bytes=r, input_kept=True, scaled=False))  # router.norm
    # the router's scaled input (hidden * scale) kept by the scale's product and read by proj
    router_input = (0 if ctx.frozen_base else r * h) + _linear_input(ctx, h, r)
    # autocast casts no 3-D expert weight (``grouped_mm``): the experts compute in their
    # weights' dtype on pre_feedforward_layernorm_2's output, fp32 under a mixed recipe
    experts_ctx = replace(ctx, recipe=replace(ctx.recipe, compute_dtype=ctx.recipe.weight_dtype)) \
        if ctx.recipe.autocast and not ctx.frozen_base else ctx
    return _moe_parts(spec, spec.moe, experts_ctx) + [_part("moe/norms", norms + router_input, ctx, sharded=False)]


def _altup_predict_parts(spec: ModelSpec, ctx: ActivationContext) -> list[ActivationPart]:
    """Gemma3nTextAltUp.predict: the layer's ``n`` input streams (kept by the router
    norm's view of the active one, and by the prediction matmul without autocast), the
    router (norm, ``modality_router`` input, fp32 ``tanh`` output), the coefficient map
    (its input and ``n x n`` output) and the matmul's cast of the streams, and the
    predictions, kept whole by ``input_layernorm``'s view of the active one."""
    h, n, c, r = spec.hidden_size, spec.altup_inputs, ctx.c, ctx.r
    streams = r * n * h
    router = _router_per_token(spec, ctx)
    coefs = _linear_input(ctx, n, r) + c * n * n
    matmul = c * n * h if _autocast(ctx) and r > c else 0  # for the coefficients' gradient
    predictions = _kept_residual(ctx, n * h)  # 16-bit: only input_layernorm's fp32 copy of one
    return [_part("altup/streams", streams, ctx, sharded=False),
            _part("altup/predict", router + coefs + matmul + predictions, ctx, sharded=False)]


def _router_per_token(spec: ModelSpec, ctx: ActivationContext) -> int:
    """``compute_router_modalities``: ``router_norm`` on an fp32-or-cast input already
    kept, its scaled output as ``modality_router`` saves it, and ``tanh``'s fp32 output."""
    h, n, r = spec.hidden_size, spec.altup_inputs, ctx.r
    norm = _norm(ctx, h, 1, input_bytes=r, input_kept=True)
    return norm + _linear_input(ctx, h, r) + FP32 * n


def _altup_correct_parts(spec: ModelSpec, ctx: ActivationContext) -> list[ActivationPart]:
    """Gemma3nTextAltUp.correct and the per-layer tail: the layer's new residual
    (kept by the router norm), the router, the correction coefficients (``+ 1.0``
    output), the innovation repeated over the ``n`` streams, and the clone of the
    corrected active stream kept by ``correct_output_scale``'s product."""
    h, n, c, r = spec.hidden_size, spec.altup_inputs, ctx.c, ctx.r
    activated = _kept_residual(ctx, h)
    router = _router_per_token(spec, ctx)
    coefs = _linear_input(ctx, n, r) + c * n
    innovation = r * n * h
    first = 0 if ctx.frozen_base else r * h  # a frozen scale needs no copy of its input
    return [_part("altup/correct", activated + router + coefs + innovation + first, ctx, sharded=False)]


def checkpointed_layer_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Full recomputation keeps each layer's input: Gemma 3n's ``n`` AltUp streams (in
    their dtype, fp32 under autocast), one residual for Gemma 4."""
    ctx = _stream_context(spec, ctx)
    return _part("checkpoints", ctx.r * spec.hidden_size * max(1, spec.altup_inputs), ctx, sharded=False).bytes


# ---- outside the layers ---------------------------------------------------------------
def model_level_parts(spec: ModelSpec, ctx: ActivationContext) -> list[ActivationPart]:
    """What the model keeps outside its layers: the per-layer inputs (the projection of
    the embeddings, its norm, the scaled sum every layer reads a slice of), Gemma 3n's
    AltUp streams in and out (the ``n - 1`` projections, their magnitude
    normalisation, the last layer's streams), the rotary tables of each layer type
    and the sliding-window mask."""
    if not models(spec):
        return []
    parts = []
    if spec.per_layer_input_size:
        parts.append(_part("per_layer_inputs", _per_layer_inputs_per_token(spec, ctx), ctx, sharded=False))
    if spec.altup_inputs > 1:
        parts.append(_part("altup/embed_unembed", _altup_outside_per_token(spec, ctx), ctx, sharded=False))
    fixed = _rotary_table_bytes(spec, ctx) + _sliding_mask_bytes(spec, ctx)
    if fixed:
        parts.append(ActivationPart(name="rotary_and_mask", bytes=fixed, sharded=False))
    return parts


def _per_layer_inputs_per_token(spec: ModelSpec, ctx: ActivationContext) -> int:
    """``project_per_layer_inputs``: ``per_layer_model_projection`` reads the embeddings
    (its cast), ``per_layer_projection_norm`` normalises its ``L x p`` output per layer
    slice, and the scaled sum with the per-layer embeddings (residual dtype) is kept
    for the layers' gates. Gemma 3n's table lookup keeps its int64 indices
    (``torch.where`` on the ids)."""
    h, lp, r = spec.hidden_size, spec.num_layers * spec.per_layer_input_size, ctx.r
    if ctx.frozen_base:  # no gradient reaches the frozen projection and table
        return r * lp
    cast = ctx.c * h if _autocast(ctx) and r > ctx.c else 0
    norm = _norm(ctx, lp, spec.num_layers, input_bytes=ctx.c, input_kept=False)
    indices = INDEX if spec.altup_inputs else 0
    return cast + norm + r * lp + indices


def _altup_outside_per_token(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Gemma3nTextModel.forward around the layers: the embeddings (kept by ``pow`` for
    the target magnitude and by the projections), each of the ``n - 1``
    ``altup_projections`` and ``altup_unembed_projections``: its input cast, its output
    in the residual dtype and that times the target magnitude (kept by the division),
    with per-row magnitudes; and the last layer's ``n`` streams (kept by ``pow``)."""
    ctx = _stream_context(spec, ctx)
    h, n, c, r = spec.hidden_size, spec.altup_inputs, ctx.c, ctx.r
    # under autocast: the input's cast, or, frozen, the 16-bit output kept by the product
    # with the target magnitude
    cast = c * h if _autocast(ctx) and r > c else 0
    per_projection = cast + 2 * r * h + 4 * r  # .to(r) output, its product; mean, clamp, sqrt rows
    magnitude = 2 * r  # the target magnitude: mean and its pow
    unembed = (n - 1) * per_projection + magnitude + r * n * h
    if ctx.frozen_base:  # the frozen embeddings' streams need no gradient
        return unembed
    embeddings = FP32 * h if r < FP32 and _autocast(ctx) else r * h
    return embeddings + (n - 1) * per_projection + magnitude + unembed


def _rotary_table_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """cos and sin of each layer type, ``seq x head_dim`` in the residual dtype (one
    row of positions for the whole batch), kept by the rotary products."""
    widths = {kind: spec.layer_head_dim(i) for i, kind in enumerate(spec.attention_kinds())}
    return sum(2 * ctx.seq // ctx.cp * d * ctx.r for d in widths.values())


def _sliding_mask_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """The sliding-window layers' boolean ``seq x seq`` mask (one for the batch), built
    when SDPA needs it (:func:`vramplan.memory.activations.sdpa_gets_a_mask`)."""
    kinds = spec.attention_kinds()
    if "sliding_attention" not in kinds:
        return 0
    layer = kinds.index("sliding_attention")
    if ctx.attention == "eager" or sdpa_gets_a_mask(spec, ctx, layer):
        return ctx.seq * ctx.seq // ctx.cp
    return 0


def model_level_weight_cast_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Autocast's 16-bit copies of the model-level linears: ``per_layer_model_projection``
    (``h x L p``) and Gemma 3n's ``2 (n - 1)`` AltUp projections (``h x h``)."""
    if not models(spec) or not ctx.recipe.autocast or ctx.frozen_base:
        return 0
    h = spec.hidden_size
    params = h * spec.num_layers * spec.per_layer_input_size
    if spec.altup_inputs > 1:
        params += 2 * (spec.altup_inputs - 1) * h * h
    return ctx.c * params // ctx.tp


# ---- inference: the live tensors of one forward ---------------------------------------
ALTUP_EMBED_HELD = 2
"""Besides the ``n - 1`` scaled AltUp streams that ``temp_hidden_states`` keeps bound
through the whole forward, Gemma3nTextModel.forward keeps the embeddings
(``hidden_states_0``) and the last projection's output (``altup_proj``): hidden-sized."""
ALTUP_MLP_HELD = 6
"""Hidden-sized tensors Gemma3nTextDecoderLayer.forward keeps bound while its MLP runs:
the normed active prediction, LAuReL's output, the attention output, ``attn_gated``,
``attn_laurel`` and the MLP's normed input."""


def layer_view(spec: ModelSpec, layer: int) -> ModelSpec:
    """``spec`` with layer ``layer``'s head width, KV heads and MLP width as uniform
    widths, for the per-layer formulas of :mod:`vramplan.memory.inference_buffers`."""
    width = spec.layer_intermediate_sizes[layer] if spec.layer_intermediate_sizes else spec.intermediate_size
    return replace(spec, head_dim=spec.layer_head_dim(layer), num_kv_heads=spec.layer_num_kv_heads(layer),
                   intermediate_size=width, layer_head_dims=(), layer_kv_heads=(), layer_intermediate_sizes=())


def forward_layer_peak_bytes(spec: ModelSpec, shape, *, tp: int, impl: str, repeat_kv: bool, flow,
                             shared_kv_held: bool) -> int:
    """The live bytes at the high point of a Gemma 3n / Gemma 4 forward (no gradient),
    inside its most demanding layer, each layer priced by its own widths
    (:func:`vramplan.memory.inference_buffers.layer_peak_bytes`), plus what the model
    keeps bound through every layer: the per-layer inputs (``L x p``), Gemma 3n's AltUp
    streams (the embedding stage's ``n - 1`` scaled streams, the layer's ``n`` input
    streams and ``n`` predictions, bound in place of one residual) and, with
    ``shared_kv_held``, the keys and values ``shared_kv_states`` holds for the KV-shared
    layers when the cache hands a sliding layer its new keys rather than its storage."""
    from vramplan.memory.inference_buffers import layer_peak_bytes

    c, h, n = shape.act_bytes, spec.hidden_size, spec.altup_inputs
    held = spec.num_layers * spec.per_layer_input_size
    if n > 1:  # beyond the generic held tensors (the embeddings and one residual)
        held += (n - 1 + ALTUP_EMBED_HELD + 2 * n - shape.held_hidden) * h
    if shared_kv_held and spec.kv_shared_layers and any(spec.kv_shared_layers):
        kinds = spec.attention_kinds()
        producer = max(i for i in range(spec.num_layers) if kinds[i] == "sliding_attention"
                       and not spec.is_kv_shared(i)) if "sliding_attention" in kinds else None
        if producer is not None:
            held += 2 * spec.layer_num_kv_heads(producer) * spec.layer_head_dim(producer) // tp
    peak = 0
    for layer in range(spec.num_layers):
        view = layer_view(spec, layer)
        # eager's repeat_kv copies this layer's keys and values when it groups its query heads;
        # one key/value head stays a view (expand + reshape over a size-1 dim)
        repeated = (repeat_kv or impl == "eager") and 1 < view.num_kv_heads < view.num_attention_heads
        layer_bytes = layer_peak_bytes(view, shape, tp=tp, impl=impl, repeat_kv=repeated, flow=flow)
        if n > 1:
            # AltUp layer at its down projection: its bound hidden-sized tensors, gate, act, up,
            # their product and the output
            mlp = shape.tokens * c * ((shape.held_hidden + ALTUP_MLP_HELD + 1) * h + 4 * view.intermediate_size // tp)
            layer_bytes = max(layer_bytes, mlp)
        peak = max(peak, layer_bytes)
    return peak + shape.tokens * c * held
