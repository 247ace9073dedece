"""What images cost a multimodal model: their tokens, their pixels and the tower's tensors.

Each image adds :func:`vramplan.model.towers.image_tokens` tokens to the sequence (so
to the KV cache and the text model's prefill, or to the training sequence). The image
processor hands the model the pixels in fp32 (``pixel_values``: every patch of every
image of the batch, ``channels x [temporal_patch x] patch^2`` values each), which stay
bound for the whole forward (and the whole training step).

Notation: ``N`` patches of the batch's images, ``h`` the tower's width, ``i`` its MLP
width, ``d`` its head dim, ``a`` its heads, ``c`` bytes of the compute dtype, ``f = 4``.

**Inference** (transformers' Qwen-VL towers, ``Qwen2_5_VisionTransformerPretrainedModel``
/ ``Qwen3VLVisionModel``, checked against the trace): the tower runs before the first
text layer, while the text embeddings ``inputs_embeds`` exist and no KV cache yet. Its
high point, beside the weights, holds: the fp32 pixels and their cast to the tower's
dtype (``pixel_values.type(self.visual.dtype)``, bound through the call), the text
embeddings, the rotary tables (``cos`` and ``sin``, ``N x d`` fp32 each, reordered for
the window attention), the residual ``N h c`` and the largest stage of a block:

- attention: the norm output (``N h c``) and the fused ``qkv`` output (``3 N h c``) while
  ``apply_rotary_pos_emb_vision`` rotates q and k in fp32 (``q.float()``, ``k.float()``,
  the rotated q, and for k its two products and their sum: ``6 N h f``);
- MLP: the norm output and the MLP's widest live set (gated: ``act(gate)``, ``up`` and
  their product, ``3 N i c``; plain: ``2 N i c``).

Qwen3-VL adds its resampled learned positions (``pos_embeds``, ``N h f``, bound in the
forward) and the deepstack features collected so far (all of them at the last block).

Mllama's tower (``MllamaVisionModel``) keeps every layer's output and a quadratic
aspect-ratio mask over each image's tiles (:func:`_mllama_tower_bytes`).

Other towers (CLIP / SigLIP / Pixtral) keep the rough block rule (q/k/v, output or the
MLP's hidden tensors, no fp32 rotary), not checked against the trace.

**Training**: the pixels are held through the step. Under LoRA/QLoRA the tower is
frozen and nothing below it needs a gradient: it saves nothing. Under full fine-tuning
the tower trains and autograd keeps, until the backward reaches it (after every text
layer), per block what a decoder layer of the same shape keeps
(:mod:`vramplan.memory.activations` on :func:`tower_view`: the residual stream is in
the compute dtype, the patch embedding's convolution returning it under autocast), with
the tower's own terms: the fused ``qkv`` output kept by the value view, ``q``/``k``
rotated to new tensors, the per-window attention outputs *and* their concatenation
(``torch.cat`` before ``proj``), plus, once: the convolution's input cast, the rotary
tables (``q * cos`` saves ``cos``), and each patch merger (its norm, the two linears'
inputs, the GELU input; Qwen3-VL's deepstack mergers with a LayerNorm over the merged
``merge^2 h`` features).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from vramplan.errors import InputError
from vramplan.intmath import ceil_div
from vramplan.model.spec import ModelSpec, TowerSpec
from vramplan.model.towers import image_patches

MAX_IMAGES = 10_000
"""Largest ``--images`` accepted per sequence."""

FP32 = 4
"""Bytes of an fp32 element (processor pixels, rotary tables, norm statistics)."""
PIXEL_BYTES = FP32
"""Image processors return ``pixel_values`` in fp32 (``BatchFeature`` of float32 arrays)."""

QWEN_TOWERS = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
"""Towers whose activations follow the Qwen-VL modeling code (fused ``qkv``, rotary in fp32)."""
TOWER_BLOCKS: dict[str, tuple[str, str]] = {
    # tower model_type -> (norm, MLP activation), from the modeling files' block classes
    "qwen2_vl": ("layernorm", "quick_gelu"),  # Qwen2VLVisionBlock: LayerNorm, VisionMlp fc1/fc2
    "qwen2_5_vl": ("rmsnorm", "silu"),  # Qwen2_5_VLVisionBlock: Qwen2_5_VLRMSNorm, gated Qwen2_5_VLMLP
    "qwen3_vl": ("layernorm", "gelu_pytorch_tanh"),  # Qwen3VLVisionBlock: LayerNorm, linear_fc1/fc2
    "qwen3_vl_moe": ("layernorm", "gelu_pytorch_tanh"),
    "clip_vision_model": ("layernorm", "quick_gelu"),  # CLIPEncoderLayer: LayerNorm, CLIPMLP fc1/fc2
    "siglip_vision_model": ("layernorm", "gelu_pytorch_tanh"),  # SiglipEncoderLayer
}
VIT_TOWERS = ("clip_vision_model", "siglip_vision_model")
"""CLIP / SigLIP towers (LLaVA, Gemma 3): learned positions, no rotary, q/k/v apart."""
ROTARY_FP32_LIVE = 6
"""``N h`` fp32 tensors live at the high point of ``apply_rotary_pos_emb_vision``: the
fp32 q and k, the rotated q, and for k ``k * cos``, ``rotate_half(k) * sin`` and their sum."""
QKV_AND_NORM = 4
"""``N h c`` tensors beside them: the fused qkv output (3) and the norm output (1)."""
ROTARY_TABLES = 2
"""``cos`` and ``sin``, ``N x d`` fp32 each."""
GATED_MLP_LIVE = 3
"""``N i c`` tensors at a gated MLP's high point: ``act(gate)``, ``up``, their product."""
PLAIN_MLP_LIVE = 2
"""``N i c`` tensors at a plain MLP's high point: ``fc1`` output and its activation."""


@dataclass(frozen=True, kw_only=True)
class ImageCost:
    """What ``images`` images per sequence add, for the whole batch."""

    tokens: int
    """Text tokens per sequence (all images)."""
    patches_per_image: int
    """Patches the tower encodes per image."""
    pixel_bytes: int
    """The processor's fp32 ``pixel_values`` of the batch's images."""
    tower_activation_bytes: int
    """Inference: the tower's forward at its high point, beside the weights (pixels and
    text embeddings included)."""


def check_images(spec: ModelSpec, images: int) -> TowerSpec | None:
    """The vision tower, or a one-line error when images are asked of a model without one."""
    if isinstance(images, bool) or not isinstance(images, int) or not 0 <= images <= MAX_IMAGES:
        raise InputError(f"images: expected a count in 0..{MAX_IMAGES:,}, got {images!r}")
    tower = spec.vision_tower
    if images and tower is None:
        raise InputError(f"images: {spec.name} has no vision tower vramplan reads "
                         "(supported: LLaVA, Gemma 3, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Mistral 3)")
    return tower


def pixel_values_per_patch(tower: TowerSpec) -> int:
    """Values per patch in ``pixel_values``: the patch embedding's input width
    (``channels x [temporal_patch x] patch^2``)."""
    embedding = next(t for t in tower.tensors if "patch" in t.name and len(t.shape) >= 2)
    return math.prod(embedding.shape[1:])


def _head_dim(tower: TowerSpec) -> int:
    return tower.hidden_size // tower.num_heads


def tower_block_bytes(tower: TowerSpec, patches: int, act_bytes: int) -> int:
    """One tower block's live tensors over ``patches`` patches at its high point,
    beside the residual (see the module docstring)."""
    h, width, c = tower.hidden_size, tower.intermediate_size, act_bytes
    mlp = h * c + (GATED_MLP_LIVE if tower.mlp_gated else PLAIN_MLP_LIVE) * width * c
    if tower.model_type in QWEN_TOWERS:
        attention = QKV_AND_NORM * h * c + ROTARY_FP32_LIVE * h * FP32
    else:  # q, k, v and the norm output, or the attention output beside them
        attention = (2 + 3 + 1) * h * c
    return patches * max(attention, mlp)


MLLAMA_PATCH_MULTIPLE = 8
"""``MllamaVisionModel`` pads each tile's patches (and class token) to a multiple of 8."""
MLLAMA_BLOCK_LIVE = 6
"""``N h c`` tensors of a Mllama tower block at its high point: the norm output, q, k, v,
the attention output and its projection (SDPA with the aspect-ratio mask: no flash)."""


def _mllama_tower_bytes(tower: TowerSpec, *, media: int, act_bytes: int) -> int:
    """``MllamaVisionModel`` at its last global layer, beside the weights, for ``media``
    images of the batch: the fp32 pixels of every padded tile, the convolution's output
    (``patch_embeds``, bound in the forward), the aspect-ratio attention mask
    (``media x (tiles x L)^2`` in the model dtype, ``L`` the tile's patches and class token
    padded to 8), every layer's output so far (``MllamaVisionEncoder`` collects them all in
    ``encoder_states``; the local ones feed the intermediate features) and the block's
    live tensors."""
    side = tower.image_size or DEFAULT_TILE_SIDE
    grid = (side // tower.patch_size) ** 2
    padded = ceil_div(grid + 1, MLLAMA_PATCH_MULTIPLE) * MLLAMA_PATCH_MULTIPLE
    states = media * tower.tiles * padded
    c, h = act_bytes, tower.hidden_size
    pixels = media * tower.tiles * grid * pixel_values_per_patch(tower) * PIXEL_BYTES
    mask = media * (tower.tiles * padded) ** 2 * c
    patch_embeds = media * tower.tiles * grid * h * c
    return pixels + patch_embeds + mask + (tower.depth + MLLAMA_BLOCK_LIVE) * states * h * c


DEFAULT_TILE_SIDE = 560
"""Llama 3.2 Vision's tile side when a config names none."""


def _inference_tower_bytes(spec: ModelSpec, tower: TowerSpec, *, patches: int, text_tokens: int,
                           act_bytes: int) -> int:
    pixels = patches * pixel_values_per_patch(tower)
    tables = ROTARY_TABLES * patches * _head_dim(tower) * FP32 if tower.model_type in QWEN_TOWERS else 0
    return (pixels * (PIXEL_BYTES + act_bytes) + text_tokens * spec.hidden_size * act_bytes + tables
            + _interpolated_positions_bytes(tower, patches) + _deepstack_output_bytes(tower, patches, act_bytes)
            + patches * tower.hidden_size * act_bytes + tower_block_bytes(tower, patches, act_bytes))


def _interpolated_positions_bytes(tower: TowerSpec, patches: int) -> int:
    """Qwen3-VL's learned positions resampled to each image's grid (``pos_embeds``: the
    bilinear taps' weighted sum, fp32 since the weights are), bound through the blocks."""
    return patches * tower.hidden_size * FP32 if any(t.name == "pos_embed.weight" for t in tower.tensors) else 0


def _deepstack_output_bytes(tower: TowerSpec, patches: int, act_bytes: int) -> int:
    """Qwen3-VL's deepstack features (one per ``deepstack_visual_indexes`` entry, each
    ``patches / merge^2`` rows of the text width), collected through the blocks."""
    width = next((t.shape[0] for t in tower.projector if t.name == "deepstack_merger.linear_fc2.weight"), 0)
    return _deepstack_count(tower) * patches // tower.merge ** 2 * width * act_bytes


def image_cost(spec: ModelSpec, *, images: int, batch: int, image_size: int | None, act_bytes: int,
               text_tokens: int = 0) -> ImageCost:
    """Tokens, pixels and the tower's inference high point of ``images`` images in each
    of ``batch`` sequences of ``text_tokens`` text tokens besides the images'."""
    tower = check_images(spec, images)
    if tower is None or not images:
        return ImageCost(tokens=0, patches_per_image=0, pixel_bytes=0, tower_activation_bytes=0)
    patches, tokens = image_patches(tower, image_size)
    all_patches = batch * images * patches
    sequence_tokens = batch * (text_tokens + images * tokens)
    if tower.model_type == "mllama":
        forward = _mllama_tower_bytes(tower, media=batch * images, act_bytes=act_bytes)
    else:
        forward = _inference_tower_bytes(spec, tower, patches=all_patches, text_tokens=sequence_tokens,
                                         act_bytes=act_bytes)
    return ImageCost(tokens=images * tokens, patches_per_image=patches,
                     pixel_bytes=all_patches * pixel_values_per_patch(tower) * PIXEL_BYTES,
                     tower_activation_bytes=forward)


HELD_FEATURE_COPIES = 2
"""LLaVA (``LlavaModel.forward``): the projected image features stay bound in the forward
while the text model runs, beside their ``.to(...)`` result; the tower's selected hidden
state and its last one (returned as ``image_outputs``) too: two of each."""
GEMMA3_TEXT_MASKS = 2
"""Gemma 3 with images: the image tokens attend to each other both ways, so the text
model builds explicit boolean masks (one full, one sliding: ``batch x L^2`` bytes each)
instead of SDPA's ``is_causal``."""


def text_prefill_held_bytes(spec: ModelSpec, *, images: int, batch: int, prompt_tokens: int,
                            act_bytes: int) -> int:
    """What the wrapper keeps beside the text model's own tensors through the text
    prefill with ``images`` images per sequence of ``prompt_tokens`` tokens (images'
    included), beyond the pixels: LLaVA's image features and tower states
    (:data:`HELD_FEATURE_COPIES`), Gemma 3's explicit masks (:data:`GEMMA3_TEXT_MASKS`)
    and image features. Mllama: :func:`vramplan.inference` adds its own."""
    tower = check_images(spec, images)
    if tower is None or not images:
        return 0
    patches, tokens = image_patches(tower, None)
    media = batch * images
    if tower.model_type in ("clip_vision_model", "siglip_vision_model") and \
            tower.projector[0].name == "multi_modal_projector.linear_1.weight":  # LLaVA: an MLP per image token
        states = media * ((tower.image_size or 0) // tower.patch_size) ** 2 + (
            media if tower.model_type == "clip_vision_model" else 0)
        return HELD_FEATURE_COPIES * (media * tokens * spec.hidden_size + states * tower.hidden_size) * act_bytes
    if tower.projector and tower.projector[0].name.startswith("multi_modal_projector.mm_"):  # Gemma 3
        features = media * (tokens - GEMMA3_FEATURE_MARKERS) * spec.hidden_size * (act_bytes + FP32)
        return GEMMA3_TEXT_MASKS * batch * prompt_tokens ** 2 + features
    return 0


GEMMA3_FEATURE_MARKERS = 4
"""Gemma 3's marker tokens around an image's features (no features of their own)."""


# ---- training ---------------------------------------------------------------------------
def tower_view(tower: TowerSpec) -> ModelSpec:
    """The tower's blocks as a stack of decoder layers of the same shape, for the
    per-layer activation formulas (:mod:`vramplan.memory.activations`)."""
    norm, act = TOWER_BLOCKS.get(tower.model_type, ("layernorm", "gelu"))
    return ModelSpec(name=f"{tower.model_type} vision tower", model_type=f"{tower.model_type}_vision",
                     num_layers=tower.depth, hidden_size=tower.hidden_size, num_attention_heads=tower.num_heads,
                     num_kv_heads=tower.num_heads, head_dim=_head_dim(tower), intermediate_size=tower.intermediate_size,
                     vocab_size=1, max_position_embeddings=1, norm=norm, mlp_gated=tower.mlp_gated, hidden_act=act,
                     attention_qkv_bias=True, mlp_bias=True)  # type: ignore[arg-type]


def training_image_components(spec: ModelSpec, setup, ctx) -> tuple[tuple, tuple[str, ...]]:
    """(components alive through the forward and backward, warnings) of the images of a
    training step: the fp32 pixels, and under full fine-tuning the tower's saved tensors
    (Qwen-VL towers; other towers: a warning that they are not counted)."""
    from vramplan.estimate import Component

    tower = check_images(spec, setup.images)
    if tower is None or not setup.images:
        return (), ()
    patches, _ = image_patches(tower, setup.image_size)
    n = setup.batch * setup.images * patches
    comps = [Component(name="activations/pixel_values", bytes=n * pixel_values_per_patch(tower) * PIXEL_BYTES,
                       note=f"the processor's fp32 pixels of {setup.batch} x {setup.images} image(s) of {patches} "
                            "patches, held through the step")]
    warnings: tuple[str, ...] = ()
    if spec.num_cross_attention_layers:
        warnings += ("with images the cross-attention layers run (a text-only batch skips them): their activations, "
                     "the vision states and the cross-attention mask are not counted; measure with `vramplan trace` "
                     "and the same images",)
    if setup.method == "full":
        policy = setup.recompute_policy
        if tower.model_type in VIT_TOWERS and _vit_projector(tower) != "other":
            media = setup.batch * setup.images
            saved = vit_training_bytes(spec, tower, ctx, media=media, recompute=policy)
            comps.append(Component(name="activations/vision_tower", bytes=saved,
                                   note=f"the trained tower's saved tensors: {tower.feature_layers or tower.depth} "
                                        f"blocks over {media} image(s) and the projector"))
        elif tower.model_type in QWEN_TOWERS:
            saved = tower_training_bytes(spec, tower, ctx, patches=n, recompute=policy)
            comps.append(Component(name="activations/vision_tower", bytes=saved,
                                   note=f"the trained tower's saved tensors: {tower.depth} blocks over {n} patches, "
                                        "rotary tables, patch embedding and mergers"))
        else:
            warnings += (f"full fine-tuning trains the {tower.model_type} vision tower: its weights, gradients and "
                        "optimizer states are counted, its saved activations are not",)
    return tuple(comps), warnings


def _block_bytes(view: ModelSpec, tctx, recompute: str, *, extra: int = 0) -> int:
    """One tower block's saved tensors (``extra``: the tower's own beyond a decoder layer's);
    under full recomputation (``gradient_checkpointing_enable`` reaches the tower's
    ``GradientCheckpointingLayer`` blocks too) only its input."""
    from vramplan.memory import activations as act

    if recompute == "full":
        return act.checkpointed_layer_bytes(view, tctx)
    return act.saved_layer_bytes(act.layer_activation_parts(view, tctx, 0), recompute) + extra


def tower_training_bytes(spec: ModelSpec, tower: TowerSpec, ctx, *, patches: int, recompute: str = "none") -> int:
    """What a trained Qwen-VL tower keeps for backward over ``patches`` patches (see the
    module docstring); ``ctx`` is the text model's
    :class:`~vramplan.memory.activations.ActivationContext`."""
    view = tower_view(tower)
    c = ctx.c
    tctx = replace(ctx, batch=1, seq=patches, cp=1, residual_bytes=c, frozen_base=False,
                   inputs_saved_by_adapters=False, linear_output_bytes=None)
    h, n = tower.hidden_size, patches
    per_block = _block_bytes(view, tctx, recompute, extra=n * h * c)  # + the windows' outputs joined by torch.cat
    conv_input = n * pixel_values_per_patch(tower) * (c if ctx.recipe.autocast else ctx.r)
    tables = ROTARY_TABLES * n * _head_dim(tower) * FP32
    mergers = _merger_bytes(tower, n, c, postshuffle=False) + _deepstack_count(tower) * _merger_bytes(
        tower, n, c, postshuffle=True)
    return tower.depth * per_block + conv_input + tables + mergers


def _vit_projector(tower: TowerSpec) -> str:
    """``llava`` (an MLP per patch), ``gemma3`` (pooled soft embeddings) or ``other``."""
    first = tower.projector[0].name if tower.projector else ""
    return {"multi_modal_projector.linear_1.weight": "llava",
            "multi_modal_projector.mm_input_projection_weight": "gemma3"}.get(first, "other")


def vit_training_bytes(spec: ModelSpec, tower: TowerSpec, ctx, *, media: int, recompute: str = "none") -> int:
    """What a trained CLIP / SigLIP tower and its projector keep for backward over
    ``media`` images: per block what a pre-norm decoder layer of the same shape keeps
    (the residual in the text model's residual dtype: the fp32 learned positions promote
    the convolution's output), for the blocks whose output the text reads; the
    convolution's input cast; CLIP's ``pre_layrnorm`` input; SigLIP's ``post_layernorm``
    input (Gemma 3 reads the last block); the projector: LLaVA's two linears' inputs and
    the GELU input per patch, Gemma 3's average pool input (the patches in fp32), its
    RMSNorm (fp32 normalised and the ``1 + weight`` product) and the matmul's input cast."""
    clip = tower.model_type == "clip_vision_model"
    grid = ((tower.image_size or 0) // tower.patch_size) ** 2
    tokens = grid + (1 if clip else 0)
    tctx = replace(ctx, batch=media, seq=tokens, cp=1, frozen_base=False, inputs_saved_by_adapters=False,
                   linear_output_bytes=None)
    view = tower_view(tower)
    blocks = tower.feature_layers or tower.depth
    total = blocks * _block_bytes(view, tctx, recompute)
    h, c, r, n = tower.hidden_size, ctx.c, ctx.r, media * tokens
    total += media * grid * pixel_values_per_patch(tower) * (c if ctx.recipe.autocast else r)
    layer_norm = n * (h * r + 2 * FP32)  # a LayerNorm's input and its mean and rstd per token
    if clip:
        total += layer_norm  # pre_layrnorm
    if _vit_projector(tower) == "llava":
        features = media * (tower.tokens_per_image or grid)
        total += features * (h * c + 2 * spec.hidden_size * c)
    else:  # Gemma 3: post_layernorm, the pool's fp32 input, the soft-embedding norm and the projection's input
        pooled = media * ((tower.tokens_per_image or GEMMA3_FEATURE_MARKERS) - GEMMA3_FEATURE_MARKERS)
        total += layer_norm + n * h * r + pooled * (h * (2 * FP32 + c) + FP32)
    return total


def _deepstack_count(tower: TowerSpec) -> int:
    """Qwen3-VL's deepstack mergers (``deepstack_merger_list``), 0 elsewhere."""
    return next((t.count for t in tower.projector if t.name == "deepstack_merger.linear_fc1.weight"), 0)


def _merger_bytes(tower: TowerSpec, patches: int, c: int, *, postshuffle: bool) -> int:
    """A patch merger's saved tensors over ``patches`` patches: its norm (RMSNorm in
    Qwen2.5-VL: fp32 upcast, rsqrt, normalised; LayerNorm: autocast's fp32 copy, mean and
    rstd per row, over ``h`` or the merged ``merge^2 h``), the first linear's input cast,
    the GELU input and the second linear's input (each ``N h c``: merged rows are
    ``merge^2`` patches wide)."""
    n, h = patches, tower.hidden_size
    rows = n if not postshuffle else n // tower.merge ** 2
    if TOWER_BLOCKS.get(tower.model_type, ("layernorm", ""))[0] == "rmsnorm" and not postshuffle:
        norm = n * h * (FP32 + c) + rows * FP32
    else:
        norm = n * h * FP32 + 2 * rows * FP32
    return norm + 3 * n * h * c
