"""Weight memory: bytes of every parameter tensor in a given storage format.

Quantized formats store the linear weights they cover in their packed layout
(:mod:`vramplan.quant`) and every other tensor — embeddings, norms, biases, skipped
modules — in the format's unquantized dtype. The split is reported so users see
what a format really saves.
"""

from __future__ import annotations

from vramplan.dtypes import get_dtype
from vramplan.estimate import Component
from vramplan.model.spec import ModelSpec
from vramplan.model.tensors import TensorGroup, model_tensors
from vramplan.quant import WeightFormat, get_format


def tensor_group_bytes(group: TensorGroup, fmt: WeightFormat) -> int:
    """Bytes of all ``group.count`` tensors of ``group`` stored in ``fmt``."""
    if fmt.quantizes(group.name, group.role):
        out_f, in_f = group.shape
        return fmt.linear_bytes(out_f, in_f) * group.count
    return get_dtype(fmt.unquantized_dtype).bytes_for(group.numel) * group.count


def weight_bytes_split(spec: ModelSpec, fmt: WeightFormat | str) -> tuple[int, int]:
    """(bytes of quantized tensors, bytes of tensors left unquantized)."""
    fmt = get_format(fmt)
    quantized = unquantized = 0
    for group in model_tensors(spec):
        b = tensor_group_bytes(group, fmt)
        if fmt.quantizes(group.name, group.role):
            quantized += b
        else:
            unquantized += b
    return quantized, unquantized


def weight_bytes(spec: ModelSpec, fmt: WeightFormat | str) -> int:
    """Total bytes of the model's weights in ``fmt``."""
    return sum(weight_bytes_split(spec, fmt))


def weight_components(spec: ModelSpec, fmt: WeightFormat | str, prefix: str = "weights") -> list[Component]:
    """``weights`` (plain dtype) or ``weights/quantized`` + ``weights/unquantized``."""
    fmt = get_format(fmt)
    quantized, unquantized = weight_bytes_split(spec, fmt)
    if not fmt.quantized:
        return [Component(name=prefix, bytes=unquantized,
                          note=f"every parameter in {fmt.name} ({get_dtype(fmt.name).bits} bits)")]
    return [
        Component(name=f"{prefix}/quantized", bytes=quantized,
                  note=f"{fmt.description}: {fmt.bits_per_weight(spec.hidden_size, spec.hidden_size):.3f} bits/weight "
                       "incl. scales"),
        Component(name=f"{prefix}/unquantized", bytes=unquantized,
                  note=f"embeddings, norms, biases and skipped modules in {fmt.unquantized_dtype}"),
    ]
