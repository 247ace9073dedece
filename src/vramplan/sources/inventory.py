"""A checkpoint's tensor inventory held against its architecture.

Every stored tensor is placed in one of three places: a decoder layer the
architecture has (``...layers.<i>.`` / GGUF ``blk.<i>.`` with ``i < num_layers``), the
text model outside the blocks (embeddings, final norm, output head), or a part the
architecture does not explain (a vision tower, a projector, multi-token-prediction
layers past the last decoder layer), which becomes its own component, never folded in
silently. Quantized layouts need no table: the bytes are the stored bytes (GPTQ/AWQ
``qweight``/``qzeros``/``scales``/``g_idx``, bitsandbytes ``absmax``/``quant_map``,
FP8 ``weight_scale_inv``, MXFP4 ``_blocks``/``_scales``) because they sit under the
module they quantize.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from vramplan.model.params import count_params
from vramplan.model.spec import ModelSpec
from vramplan.model.stored import FileFormat, ModelSource, StoredCheckpoint, StoredPart
from vramplan.sources.safetensors_header import StoredTensor
from vramplan.units import format_params

_LAYER = re.compile(r"^(.*?)(?:layers|h|blk|blocks|block)\.(\d+)\.")
"""A decoder-layer tensor: ``<prefix>layers.<i>.`` (HF), ``h.<i>.`` (GPT-2), ``blk.<i>.`` (GGUF)."""

_EMBEDDING = re.compile(r"(?:^|\.)(?:embed_tokens|wte|wpe|embed_positions|embed_in|token_embd|position_embd)\.")
_TEXT_TOP = ("lm_head.", "embed_out.", "output.", "output_norm.", "token_embd.", "position_embd.", "rope_freqs.",
             "norm.", "final_layernorm.", "ln_f.", "wte.", "wpe.")
"""Top-level names of the text model outside the blocks (HF and GGUF spellings)."""

_PACKED_DTYPES = {"I32", "U8", "I8", "F4", "U32", "F8_E8M0"}
_PACKED_SUFFIXES = (".qweight", ".qzeros", ".absmax", ".quant_map", "_blocks", "_scales", ".weight_packed")


def _decoder_prefix(names: Iterable[str], num_layers: int) -> str | None:
    """The prefix of the text model's decoder layers: among prefixes of layer-indexed
    tensors, the one with most tensors whose highest index is at least
    ``num_layers - 1`` (a vision tower's own ``layers.<i>`` lose on either count)."""
    counts: Counter[str] = Counter()
    highest: dict[str, int] = {}
    for name in names:
        m = _LAYER.match(name)
        if m:
            counts[m.group(1)] += 1
            highest[m.group(1)] = max(highest.get(m.group(1), -1), int(m.group(2)))
    fitting = [p for p in counts if highest[p] >= num_layers - 1]
    pool = fitting or list(counts)
    return max(pool, key=lambda p: counts[p]) if pool else None


def _text_root(prefix: str | None) -> str:
    """``model.`` for ``model.layers.``, ``model.language_model.`` for Gemma 3's wrapper."""
    return prefix or ""


def _extra_name(name: str, prefix: str | None, layer: int | None, num_layers: int) -> str:
    """The group an unexplained tensor is reported in: blocks past the last decoder
    layer (DeepSeek-V3's multi-token-prediction layer is ``model.layers.61``) together,
    anything else by its first two name parts (``model.vision_tower``, ``mm``)."""
    if layer is not None:
        return f"{prefix}layers.{num_layers}+"
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


def _outside_blocks(name: str, root: str) -> bool:
    """A text-model tensor outside the blocks: ``<root>norm.weight``, or a top-level head
    (``lm_head.weight``, GGUF ``output.weight``) whatever the root."""
    inner = name[len(root):] if name.startswith(root) else name
    return inner.startswith(_TEXT_TOP)


def _is_packed(t: StoredTensor) -> bool:
    return t.name.endswith(_PACKED_SUFFIXES) or (t.dtype in _PACKED_DTYPES and t.name.endswith(".weight")
                                                 and len(t.shape) >= 2)


def build_checkpoint(spec: ModelSpec, tensors: Iterable[StoredTensor], source: ModelSource,
                     file_format: FileFormat, gguf: bool = False,
                     parts: tuple[tuple[str, tuple[StoredTensor, ...]], ...] = ()) -> StoredCheckpoint:
    """Place each of ``tensors`` (see the module docstring) and sum their bytes.
    ``parts`` are whole files known to lie outside the architecture (a GGUF ``mmproj``
    vision projector), each reported under its own name."""
    tensors = tuple(tensors)
    prefix = _decoder_prefix((t.name for t in tensors), spec.num_layers)
    root = _text_root(prefix)
    per_layer = [0] * spec.num_layers
    embedding = output = elements = 0
    packed = False
    extras: dict[str, list[int]] = {}
    by_dtype: Counter[str] = Counter()
    for t in tensors:
        by_dtype[t.dtype] += t.nbytes
        m = _LAYER.match(t.name)
        layer = int(m.group(2)) if m and m.group(1) == prefix else None
        if layer is not None and layer < spec.num_layers:
            per_layer[layer] += t.nbytes
        elif layer is None and t.name.startswith(root) and _EMBEDDING.search("." + t.name[len(root):]):
            embedding += t.nbytes
        elif layer is None and _outside_blocks(t.name, root):
            output += t.nbytes
        else:
            part = extras.setdefault(_extra_name(t.name, prefix, layer, spec.num_layers), [0, 0, 0])
            part[0] += 1
            part[1] += t.elements
            part[2] += t.nbytes
            continue
        elements += t.elements
        packed = packed or (not gguf and _is_packed(t))
    for part_name, part_tensors in parts:
        extras[part_name] = [len(part_tensors), sum(t.elements for t in part_tensors),
                             sum(t.nbytes for t in part_tensors)]
        for t in part_tensors:
            by_dtype[t.dtype] += t.nbytes
    stored_parts = tuple(StoredPart(name=n, num_tensors=c, elements=e, bytes=b)
                         for n, (c, e, b) in sorted(extras.items()))
    return StoredCheckpoint(source=source, file_format=file_format,
                            num_tensors=len(tensors) + sum(len(p) for _, p in parts),
                            bytes_by_dtype=tuple(by_dtype.most_common()), per_layer_bytes=tuple(per_layer),
                            embedding_bytes=embedding, output_bytes=output, extra_parts=stored_parts,
                            explained_elements=elements, packed=packed)


def checkpoint_notes(spec: ModelSpec, stored: StoredCheckpoint) -> tuple[str, ...]:
    """What the headers say that the architecture does not: parts it does not explain,
    and a parameter count that disagrees with its own."""
    notes = []
    for part in stored.extra_parts:
        notes.append(f"checkpoint holds {part.num_tensors} tensors the architecture does not explain: {part.name} "
                     f"({part.bytes:,} bytes); counted as weights/{part.name}")
    arch = count_params(spec).total_params
    if stored.packed:
        notes.append("quantized checkpoint: weights are the bytes as stored; header element counts are packed, "
                     "not compared with the architecture's parameter count")
    elif stored.explained_elements != arch:
        notes.append(f"parameters: the headers hold {stored.explained_elements:,} "
                     f"({format_params(stored.explained_elements)}), the architecture counts {arch:,} "
                     f"({format_params(arch)}): they disagree by {stored.explained_elements - arch:+,}")
    return tuple(notes)
