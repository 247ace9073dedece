"""Vision towers of multimodal checkpoints: their parameters and the tokens an image adds.

A multimodal checkpoint (Qwen2-VL / Qwen2.5-VL / Qwen3-VL, Gemma 3, LLaVA-1.5,
Mistral 3) holds, beside its text model, a vision encoder and a projector into the
text model's width. :func:`read_towers` lists their parameter tensors from the
wrapper's ``vision_config`` (shapes as the transformers modeling files build them,
checked against the meta build in tests/test_towers.py); :func:`image_tokens` gives
the text tokens one image costs, by the model's processor rule:

- LLaVA (``processing_llava.py``, ``_expand_image_tokens``): ``(H // patch) x
  (W // patch) + 1``, less the CLS token under ``vision_feature_select_strategy
  == "default"``: 576 at 336 px, patch 14. Images are resized to ``image_size``.
- Gemma 3 (``processing_gemma3.py``, ``full_image_sequence``): ``mm_tokens_per_image``
  image tokens between ``<start_of_image>`` and ``<end_of_image>``, wrapped in two
  ``"\\n\\n"`` text tokens: 256 + 4. Images are resized to ``image_size`` (896).
- Qwen2-VL / Qwen2.5-VL / Qwen3-VL (``processing_qwen2_vl.py`` ``merge_length``;
  ``image_processing_qwen2_vl.py`` ``smart_resize``): the image is resized to
  multiples of ``patch x merge`` within [min_pixels, max_pixels] (56x56 ..
  28x28x1280 for patch 14), and costs ``(H/patch)(W/patch) / merge^2`` tokens plus
  ``<|vision_start|>`` and ``<|vision_end|>``.
- Mistral 3 / Pixtral (``processing_pixtral.py``, ``_get_num_multimodal_tokens``):
  resized to fit ``longest_edge`` (the tower's ``image_size``), then
  ``rows x (cols + 1)`` tokens of ``patch x spatial_merge`` pixels (each row ends in
  ``[IMG_BREAK]``, the last in ``[IMG_END]``).

Video and audio inputs are not modelled; towers of other wrappers are named in a
note and not counted.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from vramplan.errors import ConfigError, InputError
from vramplan.model.spec import TowerSpec, TowerTensors

Config = dict[str, Any]

DEFAULT_IMAGE_SIDE = 1024
"""Side (pixels) of the square image assumed for dynamic-resolution towers when
``--image-size`` is not given."""

MAX_IMAGE_SIDE = 100_000
"""Largest ``--image-size`` accepted (pixels per side)."""


def _int(cfg: Config, key: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"vision_config.{key}: missing (needed to count the vision tower)")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10_000_000:
        raise ConfigError(f"vision_config.{key}: expected a positive integer, got {value!r}")
    return value


def _t(name: str, role: str, shape: tuple[int, ...], count: int = 1) -> TowerTensors:
    return TowerTensors(name=name, role=role, shape=shape, count=count)  # type: ignore[arg-type]


def _linear(name: str, out_f: int, in_f: int, count: int = 1, bias: bool = True) -> list[TowerTensors]:
    rows = [_t(f"{name}.weight", "linear", (out_f, in_f), count)]
    return rows + ([_t(f"{name}.bias", "bias", (out_f,), count)] if bias else [])


def _norm(name: str, dim: int, count: int = 1, bias: bool = True) -> list[TowerTensors]:
    rows = [_t(f"{name}.weight", "norm", (dim,), count)]
    return rows + ([_t(f"{name}.bias", "norm", (dim,), count)] if bias else [])


def _vit_layers(prefix: str, h: int, width: int, depth: int, *, gated: bool = False, bias: bool = True,
                norm_bias: bool = True, fused_qkv: bool = False) -> list[TowerTensors]:
    """One ViT block x depth: two norms, attention (q/k/v/out or fused qkv), MLP."""
    rows = _norm(f"{prefix}.norm1", h, depth, norm_bias) + _norm(f"{prefix}.norm2", h, depth, norm_bias)
    if fused_qkv:
        rows += _linear(f"{prefix}.attn.qkv", 3 * h, h, depth, bias)
    else:
        for name in ("q_proj", "k_proj", "v_proj"):
            rows += _linear(f"{prefix}.attn.{name}", h, h, depth, bias)
    rows += _linear(f"{prefix}.attn.proj", h, h, depth, bias)
    if gated:
        rows += _linear(f"{prefix}.mlp.gate_proj", width, h, depth, bias)
    rows += _linear(f"{prefix}.mlp.up_proj", width, h, depth, bias)
    rows += _linear(f"{prefix}.mlp.down_proj", h, width, depth, bias)
    return rows


# ---- CLIP / SigLIP towers (LLaVA, Gemma 3) ------------------------------------------
def _clip_like(v: Config) -> tuple[list[TowerTensors], dict[str, int]]:
    """transformers ``CLIPVisionTransformer`` / ``SiglipVisionTransformer``."""
    h, width = _int(v, "hidden_size", 768), _int(v, "intermediate_size", 3072)
    depth, patch = _int(v, "num_hidden_layers", 12), _int(v, "patch_size", 16)
    image, channels = _int(v, "image_size", 224), _int(v, "num_channels", 3)
    patches = (image // patch) ** 2
    clip = v.get("model_type") in ("clip_vision_model", "git_vision_model")  # GIT's image encoder is CLIP's
    rows: list[TowerTensors] = []
    if clip:
        rows.append(_t("embeddings.class_embedding", "other", (h,)))
    rows.append(_t("embeddings.patch_embedding.weight", "other", (h, channels, patch, patch)))
    if not clip:
        rows.append(_t("embeddings.patch_embedding.bias", "bias", (h,)))
    rows.append(_t("embeddings.position_embedding.weight", "embedding", (patches + (1 if clip else 0), h)))
    if clip:
        rows += _norm("pre_layrnorm", h)
    rows += _vit_layers("encoder.layers", h, width, depth)
    rows += _norm("post_layernorm", h)
    if not clip and v.get("vision_use_head", True):  # SiglipMultiheadAttentionPoolingHead
        rows += [_t("head.probe", "other", (1, 1, h))]
        rows += _linear("head.attention.in_proj", 3 * h, h) + _linear("head.attention.out_proj", h, h)
        rows += _norm("head.layernorm", h) + _linear("head.mlp.fc1", width, h) + _linear("head.mlp.fc2", h, width)
    return rows, dict(hidden=h, width=width, depth=depth, heads=_int(v, "num_attention_heads", 12), patch=patch,
                      image=image)


def _git(cfg: Config, text_hidden: int) -> TowerSpec:
    """GIT (modeling_git.py): a CLIP image encoder inside the causal LM, ``visual_projection``
    (linear + LayerNorm) into the text width, one learned temporal embedding per frame
    with ``num_image_with_embedding``; every patch and the CLS token become text tokens."""
    v = cfg["vision_config"]
    rows, d = _clip_like(v)
    proj = _linear("visual_projection.0", text_hidden, d["hidden"]) + _norm("visual_projection.1", text_hidden)
    frames = cfg.get("num_image_with_embedding")
    if frames is not None:
        rows.append(_t("img_temporal_embedding", "other", (1, 1, d["hidden"]), _int(cfg, "num_image_with_embedding")))
    return TowerSpec(kind="vision", model_type="git_vision_model", depth=d["depth"], hidden_size=d["hidden"],
                     intermediate_size=d["width"], num_heads=d["heads"], mlp_gated=False, tensors=tuple(rows),
                     projector=tuple(proj), patch_size=d["patch"], image_size=d["image"],
                     tokens_per_image=(d["image"] // d["patch"]) ** 2 + 1)


def _whisper_encoder(cfg: Config, text_hidden: int) -> TowerSpec:
    """Whisper's audio encoder (modeling_whisper.py ``WhisperEncoder``): two convolutions
    over ``num_mel_bins`` (kernel 3), a ``max_source_positions`` position table, pre-norm
    blocks (no bias on ``k_proj``), a final LayerNorm; its output feeds the decoder's
    cross-attention directly (no projector)."""
    def key(name: str, default: int) -> int:
        value = cfg.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10_000_000:
            raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        return value

    d, mel = key("d_model", 384), key("num_mel_bins", 80)
    depth, width, heads = key("encoder_layers", 4), key("encoder_ffn_dim", 1536), key("encoder_attention_heads", 6)
    rows = [_t("conv1.weight", "other", (d, mel, 3)), _t("conv1.bias", "bias", (d,)),
            _t("conv2.weight", "other", (d, d, 3)), _t("conv2.bias", "bias", (d,)),
            _t("embed_positions.weight", "embedding", (key("max_source_positions", 1500), d))]
    rows += _norm("layers.self_attn_layer_norm", d, depth) + _norm("layers.final_layer_norm", d, depth)
    rows += _linear("layers.self_attn.q_proj", d, d, depth) + _linear("layers.self_attn.k_proj", d, d, depth, False)
    rows += _linear("layers.self_attn.v_proj", d, d, depth) + _linear("layers.self_attn.out_proj", d, d, depth)
    rows += _linear("layers.fc1", width, d, depth) + _linear("layers.fc2", d, width, depth)
    rows += _norm("layer_norm", d)
    return TowerSpec(kind="audio", model_type="whisper_encoder", depth=depth, hidden_size=d, intermediate_size=width,
                     num_heads=heads, mlp_gated=False, tensors=tuple(rows), projector=())


def _llava(cfg: Config, text_hidden: int) -> TowerSpec:
    v = cfg["vision_config"]
    rows, d = _clip_like(v)
    layers = cfg.get("vision_feature_layer", -2)
    n_layers = len(layers) if isinstance(layers, list) else 1
    bias = cfg.get("multimodal_projector_bias", True) is not False
    proj = _linear("multi_modal_projector.linear_1", text_hidden, d["hidden"] * n_layers, bias=bias)
    proj += _linear("multi_modal_projector.linear_2", text_hidden, text_hidden, bias=bias)
    cls = 1 if v.get("model_type") == "clip_vision_model" else 0
    strategy_drops = cfg.get("vision_feature_select_strategy", "default") == "default"
    tokens = (d["image"] // d["patch"]) ** 2 + cls - (1 if strategy_drops else 0)
    # hidden_states[i] is block i's output (0: the embeddings): -2 reads all blocks but the last
    chosen = [i if i >= 0 else d["depth"] + 1 + i for i in (layers if isinstance(layers, list) else [layers])
              if isinstance(i, int) and not isinstance(i, bool)]
    used = max(chosen) if chosen and all(0 <= i <= d["depth"] for i in chosen) else None
    return TowerSpec(kind="vision", model_type=str(v.get("model_type")), depth=d["depth"], hidden_size=d["hidden"],
                     intermediate_size=d["width"], num_heads=d["heads"], mlp_gated=False, tensors=tuple(rows),
                     projector=tuple(proj), patch_size=d["patch"], image_size=d["image"], tokens_per_image=tokens,
                     feature_layers=used)


GEMMA3_IMAGE_MARKERS = 4
"""``"\\n\\n" <start_of_image> ... <end_of_image> "\\n\\n"`` around the image tokens
(``Gemma3Processor.full_image_sequence``)."""


def _gemma3(cfg: Config, text_hidden: int) -> TowerSpec:
    v = cfg["vision_config"]
    rows, d = _clip_like(v)
    proj = [_t("multi_modal_projector.mm_input_projection_weight", "linear", (d["hidden"], text_hidden)),
            _t("multi_modal_projector.mm_soft_emb_norm.weight", "norm", (d["hidden"],))]
    tokens = _int(cfg, "mm_tokens_per_image", 256) + GEMMA3_IMAGE_MARKERS
    return TowerSpec(kind="vision", model_type=str(v.get("model_type")), depth=d["depth"], hidden_size=d["hidden"],
                     intermediate_size=d["width"], num_heads=d["heads"], mlp_gated=False, tensors=tuple(rows),
                     projector=tuple(proj), patch_size=d["patch"], image_size=d["image"], tokens_per_image=tokens)


# ---- Qwen-VL towers -----------------------------------------------------------------
QWEN_IMAGE_MARKERS = 2
"""``<|vision_start|>`` and ``<|vision_end|>`` around each image's tokens (chat template)."""


def _qwen_vl(cfg: Config, text_hidden: int) -> TowerSpec:
    """transformers ``Qwen2VisionTransformerPretrainedModel`` (qwen2_vl),
    ``Qwen2_5_VisionTransformerPretrainedModel`` (qwen2_5_vl), ``Qwen3VLVisionModel``."""
    mtype = cfg["model_type"]
    v = cfg["vision_config"]
    depth, heads = _int(v, "depth", 32), _int(v, "num_heads", 16)
    patch, tpatch = _int(v, "patch_size", 16 if mtype.startswith("qwen3") else 14), _int(v, "temporal_patch_size", 2)
    merge, channels = _int(v, "spatial_merge_size", 2), _int(v, "in_channels", 3)
    if mtype == "qwen2_vl":
        h, width, out = _int(v, "embed_dim", 1280), _int(v, "embed_dim", 1280) * _int(v, "mlp_ratio", 4), \
            _int(v, "hidden_size", 3584)
    else:
        h, width = _int(v, "hidden_size"), _int(v, "intermediate_size")
        out = _int(v, "out_hidden_size", text_hidden)
    qwen3 = mtype.startswith("qwen3")
    gated = mtype.startswith("qwen2_5")
    rows = [_t("patch_embed.proj.weight", "other", (h, channels, tpatch, patch, patch))]
    if qwen3:
        rows += [_t("patch_embed.proj.bias", "bias", (h,)),
                 _t("pos_embed.weight", "embedding", (_int(v, "num_position_embeddings", 2304), h))]
    rows += _vit_layers("blocks", h, width, depth, gated=gated, norm_bias=not gated, fused_qkv=True)
    merged = h * merge * merge
    proj = _norm("merger.ln_q", h, bias=not gated) + _linear("merger.mlp.0", merged, merged) \
        + _linear("merger.mlp.2", out, merged)
    if qwen3:
        deep = v.get("deepstack_visual_indexes", [8, 16, 24])
        n = len(deep) if isinstance(deep, list) else 0
        if n:
            proj += _norm("deepstack_merger.norm", merged, n) + _linear("deepstack_merger.linear_fc1", merged, merged, n) \
                + _linear("deepstack_merger.linear_fc2", out, merged, n)
    return TowerSpec(kind="vision", model_type=mtype, depth=depth, hidden_size=h, intermediate_size=width,
                     num_heads=heads, mlp_gated=gated, tensors=tuple(rows), projector=tuple(proj), patch_size=patch,
                     merge=merge)


# ---- Mistral 3 (Pixtral tower) --------------------------------------------------------
def _mistral3(cfg: Config, text_hidden: int) -> TowerSpec:
    """transformers ``PixtralVisionModel`` + ``Mistral3MultiModalProjector``."""
    v = cfg["vision_config"]
    h, width = _int(v, "hidden_size", 1024), _int(v, "intermediate_size", 4096)
    depth, heads, patch = _int(v, "num_hidden_layers", 24), _int(v, "num_attention_heads", 16), _int(v, "patch_size", 14)
    head_dim = _int(v, "head_dim", h // heads)
    merge = _int(cfg, "spatial_merge_size", 2)
    rows = [_t("patch_conv.weight", "other", (h, _int(v, "num_channels", 3), patch, patch))]
    rows += _norm("ln_pre", h, bias=False)
    rows += _norm("layers.attention_norm", h, depth, False) + _norm("layers.ffn_norm", h, depth, False)
    for name in ("q_proj", "k_proj", "v_proj"):
        rows += _linear(f"layers.attention.{name}", heads * head_dim, h, depth, False)
    rows += _linear("layers.attention.o_proj", h, heads * head_dim, depth, False)
    for name in ("gate_proj", "up_proj"):
        rows += _linear(f"layers.feed_forward.{name}", width, h, depth, False)
    rows += _linear("layers.feed_forward.down_proj", h, width, depth, False)
    layers = cfg.get("vision_feature_layer", -1)
    n_layers = len(layers) if isinstance(layers, list) else 1
    bias = cfg.get("multimodal_projector_bias", False) is True
    proj = _norm("multi_modal_projector.norm", h * n_layers, bias=False)
    proj += _linear("multi_modal_projector.patch_merger.merging_layer", h * n_layers, h * n_layers * merge * merge,
                    bias=False)
    proj += _linear("multi_modal_projector.linear_1", text_hidden, h * n_layers, bias=bias)
    proj += _linear("multi_modal_projector.linear_2", text_hidden, text_hidden, bias=bias)
    return TowerSpec(kind="vision", model_type=str(v.get("model_type", "pixtral")), depth=depth, hidden_size=h,
                     intermediate_size=width, num_heads=heads, mlp_gated=True, tensors=tuple(rows),
                     projector=tuple(proj), patch_size=patch, merge=merge, image_size=_int(v, "image_size", 1540))


def _llava_next(cfg: Config, text_hidden: int) -> TowerSpec:
    """LLaVA-NeXT / -OneVision / -NeXT-Video: the LLaVA tower and projector plus the
    learned ``image_newline`` row (``text_hidden``). Images are tiled ("anyres"): the
    token count depends on the grid chosen per image, not modelled (--images refused)."""
    tower = _llava(cfg, text_hidden)
    return replace(tower, projector=tower.projector + (_t("image_newline", "other", (text_hidden,)),),
                   tokens_per_image=None, token_rule="anyres")


def _paligemma(cfg: Config, text_hidden: int) -> TowerSpec:
    """PaliGemma: SigLIP + one linear to ``projection_dim``; ``(image_size / patch)^2``
    image tokens (``PaliGemmaProcessor``: ``image_seq_length = num_image_tokens``)."""
    v = cfg["vision_config"]
    rows, d = _clip_like(v)
    proj = _linear("multi_modal_projector.linear", _int(v, "projection_dim", 2048), d["hidden"])
    return TowerSpec(kind="vision", model_type=str(v.get("model_type")), depth=d["depth"], hidden_size=d["hidden"],
                     intermediate_size=d["width"], num_heads=d["heads"], mlp_gated=False, tensors=tuple(rows),
                     projector=tuple(proj), patch_size=d["patch"], image_size=d["image"],
                     tokens_per_image=(d["image"] // d["patch"]) ** 2)


def _side(v: Config, key: str, default: int) -> int:
    value = v.get(key, default)
    if isinstance(value, list) and value and all(x == value[0] for x in value):
        value = value[0]
    return _int({key: value}, key)


def _internvl(cfg: Config, text_hidden: int) -> TowerSpec:
    """InternVL: InternViT (``InternVLVisionModel``: layer-scale lambdas, optional q/k
    RMSNorms, LayerNorm or RMSNorm blocks) + ``InternVLMultiModalProjector`` over the
    pixel-shuffled ``hidden / downsample_ratio^2`` features. Images are tiled (up to
    12 tiles of 448 px + a thumbnail): tokens per image not modelled (--images refused)."""
    v = cfg["vision_config"]
    h, width = _int(v, "hidden_size", 1024), _int(v, "intermediate_size", 4096)
    depth, heads = _int(v, "num_hidden_layers", 24), _int(v, "num_attention_heads", 16)
    patch, image = _side(v, "patch_size", 14), _side(v, "image_size", 448)
    layer_norm = v.get("norm_type", "layer_norm") == "layer_norm"
    rows = [_t("embeddings.cls_token", "other", (1, 1, h))]
    if v.get("use_absolute_position_embeddings", True):
        rows.append(_t("embeddings.position_embeddings", "embedding", (1, (image // patch) ** 2 + 1, h)))
    rows += [_t("embeddings.patch_embeddings.projection.weight", "other", (h, _int(v, "num_channels", 3), patch, patch)),
             _t("embeddings.patch_embeddings.projection.bias", "bias", (h,))]
    bias = v.get("attention_bias", False) is True
    for name in ("q_proj", "k_proj", "v_proj"):
        rows += _linear(f"encoder.layer.attention.{name}", h, h, depth, bias)
    rows += _linear("encoder.layer.attention.projection_layer", h, h, depth)
    if v.get("use_qk_norm"):
        rows += _norm("encoder.layer.attention.q_norm", h, depth, False) +             _norm("encoder.layer.attention.k_norm", h, depth, False)
    rows += _linear("encoder.layer.mlp.fc1", width, h, depth) + _linear("encoder.layer.mlp.fc2", h, width, depth)
    rows += _norm("encoder.layer.layernorm_before", h, depth, layer_norm) +         _norm("encoder.layer.layernorm_after", h, depth, layer_norm)
    rows += [_t("encoder.layer.lambda", "other", (h,), 2 * depth)]
    if not v.get("use_mean_pooling", True):
        rows += _norm("layernorm", h)
    ratio = cfg.get("downsample_ratio", 0.5)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
        raise ConfigError(f"downsample_ratio: expected a number in (0, 1], got {ratio!r}")
    shuffled = h * int(1 / ratio) ** 2
    proj = _norm("multi_modal_projector.layer_norm", shuffled) +         _linear("multi_modal_projector.linear_1", text_hidden, shuffled) +         _linear("multi_modal_projector.linear_2", text_hidden, text_hidden)
    return TowerSpec(kind="vision", model_type="internvl", depth=depth, hidden_size=h, intermediate_size=width,
                     num_heads=heads, mlp_gated=False, tensors=tuple(rows), projector=tuple(proj), patch_size=patch,
                     image_size=image, token_rule="tiles")


def _llama4(cfg: Config, text_hidden: int) -> TowerSpec:
    """Llama 4: ``Llama4VisionModel`` (unfolded linear patch embedding, class token,
    positions, LayerNorm blocks with biases, pixel-shuffle adapter MLP) +
    ``Llama4MultiModalProjector``. Images are tiled (336/448 px tiles + a global view):
    tokens per image not modelled (--images refused)."""
    v = cfg["vision_config"]
    h, width = _int(v, "hidden_size", 768), _int(v, "intermediate_size", 5632)
    depth, heads = _int(v, "num_hidden_layers", 34), _int(v, "num_attention_heads", 16)
    patch, image, channels = _int(v, "patch_size", 14), _int(v, "image_size", 448), _int(v, "num_channels", 3)
    rows = [_t("class_embedding", "other", (h,)),
            _t("positional_embedding_vlm", "embedding", ((image // patch) ** 2 + 1, h)),
            _t("patch_embedding.linear.weight", "linear", (h, channels * patch * patch))]
    rows += _norm("layernorm_pre", h) + _norm("layernorm_post", h)
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        rows += _linear(f"model.layers.self_attn.{name}", h, h, depth)
    rows += _linear("model.layers.mlp.fc1", width, h, depth) + _linear("model.layers.mlp.fc2", h, width, depth)
    rows += _norm("model.layers.input_layernorm", h, depth) + _norm("model.layers.post_attention_layernorm", h, depth)
    out_dim = _int(v, "projector_output_dim", 4096)
    rows += _linear("vision_adapter.mlp.fc1", _int(v, "projector_input_dim", 4096), width, bias=False)
    rows += _linear("vision_adapter.mlp.fc2", out_dim, out_dim, bias=False)
    proj = _linear("multi_modal_projector.linear_1", text_hidden, _int(v, "vision_output_dim", 7680), bias=False)
    return TowerSpec(kind="vision", model_type="llama4", depth=depth, hidden_size=h, intermediate_size=width,
                     num_heads=heads, mlp_gated=False, tensors=tuple(rows), projector=tuple(proj), patch_size=patch,
                     image_size=image, token_rule="tiles")


MLLAMA_IMAGE_TOKENS = 1
"""Text tokens an image adds to a Mllama prompt: its ``<|image|>`` token alone; the image's
vision states reach the text through the cross-attention layers, not the context."""


def _mllama(cfg: Config, text_hidden: int) -> TowerSpec:
    """Mllama (Llama 3.2 Vision): ``MllamaVisionModel`` (patch convolution without bias, a
    class token, gated position embeddings with a per-aspect-ratio tile table, pre- and
    post-tile embeddings, LayerNorms, ``num_hidden_layers`` local and ``num_global_layers``
    gated global LayerNorm blocks, q/k/v/o without bias) + ``multi_modal_projector``
    (``vision_output_dim`` -> text width, with bias). Each image is padded to
    ``max_num_tiles`` tiles of ``image_size`` px (``MllamaImageProcessor``): ``max_num_tiles x
    ((image_size / patch)^2 + 1)`` vision states, cross-attended by the text, and one
    ``<|image|>`` token in the prompt."""
    v = cfg["vision_config"]
    h, width = _int(v, "hidden_size", 1280), _int(v, "intermediate_size", 5120)
    local, glob = _int(v, "num_hidden_layers", 32), _int(v, "num_global_layers", 8)
    heads, channels = _int(v, "attention_heads", _int(v, "num_attention_heads", 16)), _int(v, "num_channels", 3)
    patch, image, tiles = _side(v, "patch_size", 14), _side(v, "image_size", 448), _int(v, "max_num_tiles", 4)
    ratios = v.get("supported_aspect_ratios") or [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]
    if not isinstance(ratios, list):
        raise ConfigError(f"vision_config.supported_aspect_ratios: expected a list of [rows, columns], got {ratios!r}")
    ratio_rows = len(ratios) + 1  # id 0 pads (no image)
    positions = (image // patch) ** 2 + 1
    rows = [_t("patch_embedding.weight", "other", (h, channels, patch, patch)),
            _t("class_embedding", "other", (h,)),
            _t("gated_positional_embedding.gate", "other", (1,)),
            _t("gated_positional_embedding.embedding", "embedding", (positions, h)),
            _t("gated_positional_embedding.tile_embedding.weight", "embedding", (ratio_rows, tiles * positions * h))]
    for name in ("pre_tile_positional_embedding", "post_tile_positional_embedding"):
        rows += [_t(f"{name}.embedding.weight", "embedding", (ratio_rows, tiles * h)),
                 _t(f"{name}.gate", "other", (1,))]
    rows += _norm("layernorm_pre", h) + _norm("layernorm_post", h)
    for stack, depth in (("transformer.layers", local), ("global_transformer.layers", glob)):
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            rows += _linear(f"{stack}.self_attn.{name}", h, h, depth, bias=False)
        rows += _linear(f"{stack}.mlp.fc1", width, h, depth) + _linear(f"{stack}.mlp.fc2", h, width, depth)
        rows += _norm(f"{stack}.input_layernorm", h, depth) + _norm(f"{stack}.post_attention_layernorm", h, depth)
    rows += [_t("global_transformer.layers.gate_attn", "other", (1,), glob),
             _t("global_transformer.layers.gate_ffn", "other", (1,), glob)]
    proj = _linear("multi_modal_projector", text_hidden, _int(v, "vision_output_dim", 7680))
    return TowerSpec(kind="vision", model_type="mllama", depth=local + glob, hidden_size=h, intermediate_size=width,
                     num_heads=heads, mlp_gated=False, tensors=tuple(rows), projector=tuple(proj), patch_size=patch,
                     image_size=image, tiles=tiles, tokens_per_image=MLLAMA_IMAGE_TOKENS)


def _qwen2_audio(cfg: Config, text_hidden: int) -> TowerSpec:
    """Qwen2-Audio: ``Qwen2AudioEncoder`` (Whisper-style: two convolutions over the mel
    bins, learned positions, LayerNorm blocks; ``k_proj`` without bias) + one linear
    projector. Audio tokens are not modelled."""
    a = cfg["audio_config"]
    h, width = _int(a, "d_model", 1280), _int(a, "encoder_ffn_dim", 5120)
    depth, heads, mels = _int(a, "encoder_layers", 32), _int(a, "encoder_attention_heads", 20), _int(a, "num_mel_bins", 128)
    rows = [_t("conv1.weight", "other", (h, mels, 3)), _t("conv1.bias", "bias", (h,)),
            _t("conv2.weight", "other", (h, h, 3)), _t("conv2.bias", "bias", (h,)),
            _t("embed_positions.weight", "embedding", (_int(a, "max_source_positions", 1500), h))]
    rows += _linear("layers.self_attn.k_proj", h, h, depth, False)
    for name in ("q_proj", "v_proj", "out_proj"):
        rows += _linear(f"layers.self_attn.{name}", h, h, depth)
    rows += _linear("layers.fc1", width, h, depth) + _linear("layers.fc2", h, width, depth)
    rows += _norm("layers.self_attn_layer_norm", h, depth) + _norm("layers.final_layer_norm", h, depth)
    rows += _norm("layer_norm", h)
    proj = _linear("multi_modal_projector.linear", text_hidden, h)
    return TowerSpec(kind="audio", model_type="qwen2_audio", depth=depth, hidden_size=h, intermediate_size=width,
                     num_heads=heads, mlp_gated=False, tensors=tuple(rows), projector=tuple(proj), patch_size=1,
                     token_rule="tiles")


def _omni_towers(cfg: Config, text_hidden: int) -> tuple[TowerSpec, TowerSpec]:
    """Qwen2.5-Omni thinker: the Qwen2.5-VL vision tower (q/k/v apart, same counts) and
    ``Qwen2_5OmniAudioEncoder`` (the Qwen2-Audio blocks with sinusoidal positions, a
    LayerNorm and a projection to ``output_dim``, and two learned bos/eos rows)."""
    vision = _qwen_vl({**cfg, "model_type": "qwen2_5_vl"}, text_hidden)
    vision = replace(vision, model_type="qwen2_5_vl")
    a = cfg["audio_config"]
    h, width = _int(a, "d_model", 1280), _int(a, "encoder_ffn_dim", 5120)
    depth, mels, out = _int(a, "encoder_layers", 32), _int(a, "num_mel_bins", 128), _int(a, "output_dim", text_hidden)
    rows = [_t("conv1.weight", "other", (h, mels, 3)), _t("conv1.bias", "bias", (h,)),
            _t("conv2.weight", "other", (h, h, 3)), _t("conv2.bias", "bias", (h,)),
            _t("audio_bos_eos_token.weight", "embedding", (2, out))]
    rows += _linear("layers.self_attn.k_proj", h, h, depth, False)
    for name in ("q_proj", "v_proj", "out_proj"):
        rows += _linear(f"layers.self_attn.{name}", h, h, depth)
    rows += _linear("layers.fc1", width, h, depth) + _linear("layers.fc2", h, width, depth)
    rows += _norm("layers.self_attn_layer_norm", h, depth) + _norm("layers.final_layer_norm", h, depth)
    rows += _norm("ln_post", h) + _linear("proj", out, h)
    audio = TowerSpec(kind="audio", model_type="qwen2_5_omni", depth=depth, hidden_size=h, intermediate_size=width,
                      num_heads=_int(a, "encoder_attention_heads", 20), mlp_gated=False, tensors=tuple(rows),
                      projector=(), patch_size=1, token_rule="tiles")
    return vision, audio


AUDIO_READERS = {"qwen2_audio": _qwen2_audio}
"""Wrapper ``model_type`` -> its audio tower reader."""

READERS = {
    "llava": _llava, "gemma3": _gemma3, "qwen2_vl": _qwen_vl, "qwen2_5_vl": _qwen_vl, "qwen3_vl": _qwen_vl,
    "qwen3_vl_moe": _qwen_vl, "mistral3": _mistral3, "llava_next": _llava_next, "llava_onevision": _llava_next,
    "llava_next_video": _llava_next, "paligemma": _paligemma, "internvl": _internvl, "llama4": _llama4,
    "mllama": _mllama,
}
"""Wrapper ``model_type`` -> its tower reader."""

TOWER_CONFIG_KEYS = ("vision_config", "audio_config")


def read_towers(cfg: Config, text_hidden: int) -> tuple[tuple[TowerSpec, ...], tuple[str, ...]]:
    """(towers counted, towers present but not counted) of a multimodal wrapper config."""
    if cfg.get("model_type") == "whisper":  # decoders holding their own encoder (not wrappers)
        return (_whisper_encoder(cfg, text_hidden),), ()
    if cfg.get("model_type") == "git" and isinstance(cfg.get("vision_config"), dict):
        return (_git(cfg, text_hidden),), ()
    present = tuple(k.removesuffix("_config") for k in TOWER_CONFIG_KEYS if isinstance(cfg.get(k), dict))
    if cfg.get("model_type") == "qwen2_5_omni_thinker" and present == ("vision", "audio"):
        return _omni_towers(cfg, text_hidden), ()
    audio = AUDIO_READERS.get(str(cfg.get("model_type")))
    if audio is not None and present == ("audio",):
        return (audio(cfg, text_hidden),), ()
    reader = READERS.get(str(cfg.get("model_type")))
    if reader is None or "vision" not in present:
        return (), present
    if str(cfg.get("model_type")).startswith("llava") and cfg["vision_config"].get("model_type") not in (
            "clip_vision_model", "siglip_vision_model", None):
        return (), present
    return (reader(cfg, text_hidden),), tuple(p for p in present if p != "vision")


def _smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """``image_processing_qwen2_vl.smart_resize`` (transformers), the same arithmetic."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


QWEN_PIXEL_BOUNDS = {"qwen2_vl": (56 * 56, 28 * 28 * 1280), "qwen2_5_vl": (56 * 56, 28 * 28 * 1280),
                     "qwen3_vl": (65_536, 16_777_216), "qwen3_vl_moe": (65_536, 16_777_216)}
"""(min_pixels, max_pixels) of the Qwen-VL image processors: ``Qwen2VLImageProcessor``'s
defaults ``size = {"shortest_edge": 56*56, "longest_edge": 28*28*1280}``; Qwen3-VL's
``preprocessor_config.json`` ``size = {"shortest_edge": 65536, "longest_edge": 16777216}``."""


def image_patches(tower: TowerSpec, image_side: int | None = None) -> tuple[int, int]:
    """(patches the tower encodes, text tokens it emits) for one square image of
    ``image_side`` pixels (the tower's fixed resolution when it has one)."""
    if image_side is not None and (isinstance(image_side, bool) or not isinstance(image_side, int)
                                   or not 0 < image_side <= MAX_IMAGE_SIDE):
        raise InputError(f"image_size: expected pixels per side in 1..{MAX_IMAGE_SIDE:,}, got {image_side!r}")
    if tower.token_rule != "resize":
        raise InputError(f"images: the image-token rule of {tower.model_type} ({tower.token_rule}: each image is cut "
                         "into a grid of tiles chosen per image) is not modelled; add the image tokens to context or seq "
                         "yourself")
    if tower.model_type == "mllama":  # tiles of image_size px, each its patches and a class token
        side = tower.image_size or DEFAULT_IMAGE_SIDE
        return tower.tiles * ((side // tower.patch_size) ** 2 + 1), MLLAMA_IMAGE_TOKENS
    if tower.tokens_per_image is not None:  # fixed resolution: every image is resized to image_size
        side = tower.image_size or image_side or DEFAULT_IMAGE_SIDE
        return (side // tower.patch_size) ** 2, tower.tokens_per_image
    side = image_side or DEFAULT_IMAGE_SIDE
    if tower.model_type == "pixtral":
        unit = tower.patch_size * tower.merge
        longest = tower.image_size or side
        s = min(side, longest)  # resized to fit longest_edge
        rows = cols = (s - 1) // unit + 1
        return rows * cols * tower.merge ** 2, rows * (cols + 1)
    grid_h, grid_w = qwen_grid(tower, side)
    patches = grid_h * grid_w
    return patches, patches // tower.merge ** 2 + QWEN_IMAGE_MARKERS


def qwen_grid(tower: TowerSpec, image_side: int | None = None) -> tuple[int, int]:
    """(rows, columns) of patches of one square image of ``image_side`` pixels in a Qwen-VL
    tower: the processor's ``image_grid_thw`` without its temporal 1."""
    unit = tower.patch_size * tower.merge
    side = image_side or DEFAULT_IMAGE_SIDE
    h, w = _smart_resize(side, side, unit, *QWEN_PIXEL_BOUNDS[tower.model_type])
    return h // tower.patch_size, w // tower.patch_size


def image_tokens(tower: TowerSpec, image_side: int | None = None) -> int:
    """Text tokens one image adds to the sequence (see the module docstring)."""
    return image_patches(tower, image_side)[1]
