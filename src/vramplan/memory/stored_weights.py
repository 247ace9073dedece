"""Weights as the checkpoint stores them: Σ of the tensor bytes its headers give.

When a model was read from its files (:attr:`ModelSpec.checkpoint`) and is served in
its own format, the weights are the stored bytes, exactly: packed GPTQ/AWQ int32 with
scales and zeros, bitsandbytes uint8 with absmax and quant maps, FP8 with scale
tensors, MXFP4 blocks with E8M0 scales, GGUF tensors in their ggml types; no format
table is needed. Tensors the architecture does not explain (a vision tower, an
``mmproj`` projector, multi-token-prediction layers) are their own components.

Tensor parallelism: the stored bytes are split in the proportion the format's own
per-rank arithmetic gives (:func:`vramplan.memory.weights.weight_bytes_per_rank`),
so replicated norms and whole row-parallel biases stay whole; parts the architecture
does not explain are counted whole on every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from vramplan.estimate import Component
from vramplan.model.spec import ModelSpec
from vramplan.model.stored import StoredCheckpoint


def stored_applies(spec: ModelSpec, choice, engine_gguf: bool = False) -> bool:
    """The stored bytes apply: the model came from safetensors headers and ``choice``
    is the checkpoint's own format (or from GGUF headers, for llama.cpp)."""
    stored = spec.checkpoint
    if stored is None:
        return False
    if stored.file_format == "gguf":
        return engine_gguf
    if engine_gguf:
        return False
    if getattr(choice, "name", "").startswith(STORED_FORMAT_PREFIX):
        return True
    from vramplan.memory.weights import choice_name, resolve_weights

    own = resolve_weights(replace(spec, checkpoint=None), None)
    return choice_name(choice) == choice_name(own)


STORED_FORMAT_PREFIX = "as-stored"


def stored_format(spec: ModelSpec):
    """A :class:`~vramplan.quant.WeightFormat` for a checkpoint whose
    ``quantization_config`` names a method the format table does not know (hqq,
    torchao, aqlm ...): its bytes are the stored bytes, and its linear layout is priced
    at the checkpoint's average stored bits per parameter (used only to split it over
    tensor-parallel ranks)."""
    from math import ceil

    from vramplan.model.params import count_params
    from vramplan.quant import WeightFormat

    method = str(spec.quantization_config.get("quant_method", "unknown"))
    bits = 8 * spec.checkpoint.explained_bytes / max(1, count_params(replace(spec, checkpoint=None)).total_params)
    return WeightFormat(name=f"{STORED_FORMAT_PREFIX}:{method}",
                        description=f"{method} checkpoint as stored ({bits:.2f} bits/parameter on average)",
                        linear_bytes=lambda out_f, in_f: ceil(out_f * in_f * bits / 8),
                        unquantized_dtype=spec.dtype, skip_modules=())


def stored_weight_components(spec: ModelSpec, choice, tp: int = 1,
                             layers: Callable[[int], bool] | None = None) -> list[Component] | None:
    """The weight components from the stored bytes, or ``None`` when they do not apply
    (then the format's arithmetic is used)."""
    if not stored_applies(spec, choice):
        return None
    stored: StoredCheckpoint = spec.checkpoint
    inside = sum(b for i, b in enumerate(stored.per_layer_bytes) if layers is None or layers(i))
    outside = stored.embedding_bytes + stored.output_bytes if layers is None or layers(-1) else 0
    text_bytes = inside + outside
    where = ""
    if tp > 1:
        from vramplan.memory.weights import weight_bytes_per_rank

        plain = replace(spec, checkpoint=None)
        per_rank = sum(weight_bytes_per_rank(plain, choice, tp))
        whole = sum(weight_bytes_per_rank(plain, choice, 1))
        text_bytes = text_bytes * per_rank // whole
        where = f", split over tp={tp} as the format splits"
    components = [Component(name="weights", bytes=text_bytes,
                            note=f"as stored: {stored.num_tensors} tensors in the {stored.file_format} headers"
                                 f"{where}")]
    if layers is None or layers(-1):
        components += [Component(name=f"weights/{part.name}", bytes=part.bytes,
                                 note=f"{part.num_tensors} tensors the architecture does not explain, as stored")
                       for part in stored.extra_parts]
    return components


def stored_layer_split(spec: ModelSpec) -> tuple[tuple[int, ...], int, int]:
    """(bytes per decoder layer, embedding bytes, output bytes + unexplained parts) of a
    GGUF checkpoint, as llama.cpp places them."""
    stored: StoredCheckpoint = spec.checkpoint
    return stored.per_layer_bytes, stored.embedding_bytes, stored.output_bytes + stored.extra_bytes
