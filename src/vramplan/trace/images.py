"""Images for a traced multimodal wrapper, shaped as its processor makes them.

``vramplan trace MODEL --images N --image-size S`` builds the whole wrapper
(``AutoModelForImageTextToText``: tower, projector, text model) and feeds each
sequence N images of S x S pixels: the image tokens inserted in ``input_ids``
(markers included) before ``seq`` text tokens, and the pixel tensors the image
processor returns for them:

- Qwen2-VL / Qwen2.5-VL / Qwen3-VL (``image_processing_qwen2_vl.py``): each image
  resized by ``smart_resize``, cut into ``temporal_patch_size x patch x patch`` patches
  (a still image is repeated over the temporal patch), ``pixel_values`` of shape
  ``(patches of all images, channels x temporal_patch_size x patch^2)`` in fp32,
  ``image_grid_thw`` = ``(1, H / patch, W / patch)`` per image, and the processor's
  ``mm_token_type_ids`` (1 on image tokens) from which the model computes its 3-D
  rotary positions;
- fixed-resolution towers (LLaVA, Gemma 3, PaliGemma): ``pixel_values`` of shape
  ``(images, channels, image_size, image_size)`` in fp32;
- Mllama (``image_processing_mllama.py``): ``pixel_values`` of shape ``(batch, images,
  max_num_tiles, channels, image_size, image_size)`` (padded to the largest tile count),
  ``aspect_ratio_ids``, ``aspect_ratio_mask`` and the ``cross_attention_mask``
  (``processing_mllama.py``) of a square image filling one tile; one ``<|image|>`` token
  per image in ``input_ids``.

The token count comes from :func:`vramplan.model.towers.image_patches`, the rule the
estimate uses; the model's forward checks it (``get_placeholder_mask`` raises when the
image tokens and the tower's features differ in number).

The tower's forward computes index tensors from ``image_grid_thw`` and
``input_ids`` (``.tolist()``, boolean masks, per-image loops) that fake tensors cannot
answer. :func:`constant_inputs` makes those inputs *constant* fake tensors (their values
kept beside them, as FakeTensorMode does for scalars) and runs transformers' index
helpers (``transformers.vision_utils.get_vision_*``, the model's ``get_rope_index``) on
the real values; the helpers' outputs are small integer tensors. Every activation stays
a fake tensor of its real shape.
"""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from vramplan.errors import InputError

QWEN_VL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
FIXED_RESOLUTION_TYPES = ("llava", "gemma3", "paligemma")
TILED_TYPES = ("mllama",)
TRACEABLE_TYPES = QWEN_VL_TYPES + FIXED_RESOLUTION_TYPES + TILED_TYPES
"""Wrappers whose image inputs the trace can build."""

CONSTANT_NUMEL_MAX = 1 << 24
"""Largest constant tensor kept while images are traced (``input_ids`` of a batch,
position ids); FakeTensorMode's own limit is one element."""

PROCESSOR_PIXEL_DTYPE = "float32"
"""Image processors return ``pixel_values`` in fp32 (the model casts them to its dtype)."""


@dataclass(frozen=True, kw_only=True)
class ImageInputs:
    """What one traced step feeds the wrapper (real tensors: made constant in the trace)."""

    input_ids: Any
    """``(batch, images x tokens_per_image + seq)`` token ids, image tokens first."""
    pixel_shape: tuple[int, ...]
    """Shape of ``pixel_values`` (fp32; fake in the trace)."""
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    """Other processor outputs: ``image_grid_thw``, ``mm_token_type_ids``, ``token_type_ids``."""
    tokens_per_image: int = 0
    """Text tokens one image adds (markers included)."""
    patches_per_image: int = 0
    """Patches the tower encodes per image."""


def check_traceable(model_type: str, images: int) -> None:
    """One-line error for ``images`` on a wrapper whose inputs the trace cannot build."""
    if images and model_type not in TRACEABLE_TYPES:
        raise InputError(f"images: tracing images is supported for {', '.join(TRACEABLE_TYPES)}; "
                         f"{model_type!r} is not one of them")


def _token(cfg, *names: str) -> int:
    for name in names:
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    raise InputError(f"images: the config has none of {', '.join(names)}")


def image_inputs(config: dict, hf, *, batch: int, seq: int, images: int, image_size: int | None) -> ImageInputs:
    """The processor's outputs for ``batch`` sequences of ``images`` images and ``seq``
    text tokens (see the module docstring). ``config`` is the wrapper's config.json,
    ``hf`` transformers' config object of the model built."""
    import torch

    from vramplan.model.hf_config import spec_from_config
    from vramplan.model.towers import qwen_grid, image_patches

    model_type = str(config.get("model_type"))
    check_traceable(model_type, images)
    tower = spec_from_config(config).vision_tower
    if tower is None:
        raise InputError(f"images: {model_type!r} has no vision tower vramplan reads")
    patches, tokens = image_patches(tower, image_size)
    image_id = _token(hf, "image_token_id", "image_token_index")
    vocab = hf.get_text_config().vocab_size
    special = [v for v in (getattr(hf, k, None) for k in ("image_token_id", "image_token_index", "video_token_id",
                                                           "vision_start_token_id", "vision_end_token_id",
                                                           "boi_token_index", "eoi_token_index")) if isinstance(v, int)]
    text_ids_below = min([vocab, *special])
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(0, text_ids_below, (batch, seq), generator=generator)
    if model_type in QWEN_VL_TYPES:
        start, end = _token(hf, "vision_start_token_id"), _token(hf, "vision_end_token_id")
        block = [start] + [image_id] * (tokens - 2) + [end]
        types = [0] + [1] * (tokens - 2) + [0]
        grid_h, grid_w = qwen_grid(tower, image_size)
        v = hf.vision_config
        per_patch = v.in_channels * v.temporal_patch_size * v.patch_size ** 2
        kwargs = {"image_grid_thw": torch.tensor([[1, grid_h, grid_w]] * (batch * images)),
                  "mm_token_type_ids": torch.cat([torch.tensor(types * images).repeat(batch, 1),
                                                  torch.zeros(batch, seq, dtype=torch.long)], dim=1).int()}
        pixel_shape: tuple[int, ...] = (batch * images * patches, per_patch)
    elif model_type in TILED_TYPES:
        block = [image_id] * tokens
        v = hf.vision_config
        pixel_shape = (batch, images, v.max_num_tiles, v.num_channels, v.image_size, v.image_size)
        one_tile = torch.zeros(batch, images, v.max_num_tiles, dtype=torch.long)
        one_tile[..., 0] = 1  # a square image fills one tile ([1, 1], aspect ratio id 1); the rest is padding
        length = images * tokens + seq
        kwargs = {"aspect_ratio_ids": torch.ones(batch, images, dtype=torch.long), "aspect_ratio_mask": one_tile,
                  # the processor's mask: every token attends to the images' used tiles
                  "cross_attention_mask": one_tile[:, None].expand(batch, length, images, v.max_num_tiles).clone()}
    else:
        block = _fixed_block(model_type, hf, image_id, tokens)
        v = hf.vision_config
        pixel_shape = (batch * images, v.num_channels, v.image_size, v.image_size)
        kwargs = {}
        if model_type == "gemma3":  # the processor's token_type_ids: 1 on image tokens
            kwargs["token_type_ids"] = torch.cat([
                torch.tensor([int(t == image_id) for t in block] * images).repeat(batch, 1),
                torch.zeros(batch, seq, dtype=torch.long)], dim=1)
    ids = torch.cat([torch.tensor(block * images).repeat(batch, 1), text], dim=1)
    return ImageInputs(input_ids=ids, pixel_shape=pixel_shape, forward_kwargs=kwargs, tokens_per_image=tokens,
                       patches_per_image=patches)


def _fixed_block(model_type: str, hf, image_id: int, tokens: int) -> list[int]:
    """One image's ``tokens`` tokens: Gemma 3 ``"\\n\\n" <start_of_image> image x
    mm_tokens_per_image <end_of_image> "\\n\\n"``; LLaVA / PaliGemma the image token alone."""
    if model_type != "gemma3":
        return [image_id] * tokens
    from vramplan.model.towers import GEMMA3_IMAGE_MARKERS

    newline = 108  # "\n\n" in Gemma's tokenizer; any text token allocates the same
    boi, eoi = _token(hf, "boi_token_index", "boi_token_id"), _token(hf, "eoi_token_index", "eoi_token_id")
    return [newline, boi] + [image_id] * (tokens - GEMMA3_IMAGE_MARKERS) + [eoi, newline]


# ---- constant index tensors -------------------------------------------------------------
def _on_constants(fn, fake_mode):
    """``fn`` run on the values of constant fake tensor arguments, its tensor outputs
    returned as constant fake tensors; any other call goes to ``fn`` as is."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.utils._python_dispatch import _disable_current_modes
    from torch.utils._pytree import tree_map_only

    def constant(t):
        return fake_mode.fake_tensor_converter.from_real_tensor(fake_mode, t, make_constant=True)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        fakes = [a for a in (*args, *kwargs.values()) if isinstance(a, FakeTensor)]
        if not fakes or any(a.constant is None for a in fakes):
            return fn(*args, **kwargs)

        def real(a):
            return a.constant if isinstance(a, FakeTensor) else a

        with _disable_current_modes():
            out = fn(*(real(a) for a in args), **{k: real(a) for k, a in kwargs.items()})
        return tree_map_only(torch.Tensor, constant, out)

    return wrapped


@contextmanager
def constant_inputs(model, fake_mode):
    """While active, constant fake tensors up to :data:`CONSTANT_NUMEL_MAX` elements
    stay constant through ops on constants only, and transformers' vision index helpers
    and the model's ``get_rope_index`` run on real values (see the module docstring)."""
    import torch._subclasses.fake_tensor as fake_tensor
    import transformers.vision_utils as vision_utils

    originals = {name: getattr(vision_utils, name) for name in dir(vision_utils) if name.startswith("get_vision_")}
    patched: list[tuple[Any, str, Any]] = []
    for module in list(sys.modules.values()):
        if module is None or not getattr(module, "__name__", "").startswith("transformers"):
            continue
        for name, fn in originals.items():
            if getattr(module, name, None) is fn:
                patched.append((module, name, fn))
    for base in {m for m in model.modules() if hasattr(type(m), "get_rope_index")}:
        patched.append((base, "get_rope_index", None))
    limit = fake_tensor.CONSTANT_NUMEL_LIMIT
    try:
        for owner, name, fn in patched:
            setattr(owner, name, _on_constants(fn if fn is not None else getattr(owner, name), fake_mode))
        fake_tensor.CONSTANT_NUMEL_LIMIT = CONSTANT_NUMEL_MAX
        yield
    finally:
        fake_tensor.CONSTANT_NUMEL_LIMIT = limit
        for owner, name, fn in patched:
            if fn is None:
                delattr(owner, name)  # the instance attribute; the class method shows again
            else:
                setattr(owner, name, fn)


def as_constant(t, fake_mode):
    """A real tensor as a constant fake tensor of ``fake_mode`` (a real run: itself)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    if not isinstance(fake_mode, FakeTensorMode):
        return t
    return fake_mode.fake_tensor_converter.from_real_tensor(fake_mode, t, make_constant=True)
