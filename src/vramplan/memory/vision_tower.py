"""What images cost a multimodal model at inference: text tokens and the tower's forward.

Each image adds :func:`vramplan.model.towers.image_tokens` tokens to the sequence (so
to the KV cache and the text model's prefill). Before the text model runs, the vision
tower encodes the images; its high point is one tower block's live tensors over every
patch of the batch's images (analytical, the same shape as a decoder layer's: the
residual and its norm, plus q/k/v and the attention output or the MLP's hidden
tensors, whichever is larger; SDPA attention, no score matrix), beside the pixel
patches and the projected image embeddings. transformers frees it before the first
text layer runs, so counting it at the prefill peak is an upper bound by at most its
own size. Not checked against the trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.errors import InputError
from vramplan.model.spec import ModelSpec, TowerSpec
from vramplan.model.towers import image_patches

MAX_IMAGES = 10_000
"""Largest ``--images`` accepted per sequence."""


@dataclass(frozen=True, kw_only=True)
class ImageCost:
    """What ``images`` images per sequence add."""

    tokens: int
    """Text tokens per sequence (all images)."""
    patches_per_image: int
    """Patches the tower encodes per image."""
    tower_activation_bytes: int
    """The tower's forward high point for the whole batch."""


def check_images(spec: ModelSpec, images: int) -> TowerSpec | None:
    """The vision tower, or a one-line error when images are asked of a model without one."""
    if isinstance(images, bool) or not isinstance(images, int) or not 0 <= images <= MAX_IMAGES:
        raise InputError(f"images: expected a count in 0..{MAX_IMAGES:,}, got {images!r}")
    tower = spec.vision_tower
    if images and tower is None:
        raise InputError(f"images: {spec.name} has no vision tower vramplan reads "
                         "(supported: LLaVA, Gemma 3, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Mistral 3)")
    return tower


def tower_block_bytes(tower: TowerSpec, patches: int, act_bytes: int) -> int:
    """One tower block's live tensors over ``patches`` patches."""
    h, width = tower.hidden_size, tower.intermediate_size
    attention = 2 * h + 3 * h + h
    mlp = 2 * h + (3 if tower.mlp_gated else 2) * width
    return patches * max(attention, mlp) * act_bytes


def image_cost(spec: ModelSpec, *, images: int, batch: int, image_size: int | None, act_bytes: int) -> ImageCost:
    """Tokens and tower activations of ``images`` images in each of ``batch`` sequences."""
    tower = check_images(spec, images)
    if tower is None or not images:
        return ImageCost(tokens=0, patches_per_image=0, tower_activation_bytes=0)
    patches, tokens = image_patches(tower, image_size)
    all_patches = batch * images * patches
    pixels = tower.tensors[0].shape  # the patch embedding: (hidden, channels, [time,] patch, patch)
    per_patch_pixels = 1
    for d in pixels[1:]:
        per_patch_pixels *= d
    block = tower_block_bytes(tower, all_patches, act_bytes)
    embeds = batch * images * tokens * spec.hidden_size * act_bytes
    return ImageCost(tokens=images * tokens, patches_per_image=patches,
                     tower_activation_bytes=block + all_patches * per_patch_pixels * act_bytes + embeds)
