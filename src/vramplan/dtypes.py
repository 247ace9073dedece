"""Storage formats of tensors: bits per element, and the spellings people use.

One table (:data:`DTYPES`). ``bits`` is the storage cost of one element *before*
any per-block scale or zero point; block-quantized formats (GPTQ, AWQ, NF4 with its
absmax, MXFP4, GGUF k-quants) add those in :mod:`vramplan.quant`, which builds on
this table.

Sources: IEEE 754 (fp64/fp32/fp16), Google Brain bfloat16, NVIDIA TF32 (computed
with a 10-bit mantissa but *stored* as a 32-bit float, so 4 bytes), Micikevicius
et al. 2022 "FP8 Formats for Deep Learning" (e4m3, e5m2), Dettmers et al. 2023
"QLoRA" (nf4), the OCP Microscaling spec v1.0 (mxfp4 = e2m1 elements).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramplan.intmath import ceil_div
from vramplan.naming import lookup, normalize_name

DTypeKind = Literal["float", "int", "uint", "bool"]


@dataclass(frozen=True, kw_only=True)
class DType:
    """One element format."""

    name: str
    """Canonical name, e.g. ``"bf16"``."""
    bits: int
    """Storage bits per element (scales of block formats not included)."""
    kind: DTypeKind
    """Float, signed int, unsigned int or bool."""
    torch_name: str | None = None
    """The ``torch.<name>`` dtype that stores it, or ``None`` when torch has none
    (4-bit formats are packed two to a ``uint8``)."""
    aliases: tuple[str, ...] = ()
    """Other spellings accepted on input."""

    @property
    def bytes_per_element(self) -> float:
        """``bits / 8``; 0.5 for 4-bit formats."""
        return self.bits / 8

    @property
    def element_bytes(self) -> int:
        """Whole bytes of one element (``bits // 8``); a packed sub-byte format has none."""
        if self.bits % 8:
            raise ValueError(f"{self.name}: {self.bits}-bit elements are packed; use bytes_for(n)")
        return self.bits // 8

    def bytes_for(self, num_elements: int) -> int:
        """Bytes to store ``num_elements`` elements, packed, rounded up to a whole byte."""
        return ceil_div(num_elements * self.bits, 8)


_TABLE: tuple[DType, ...] = (
    DType(name="fp64", bits=64, kind="float", torch_name="float64", aliases=("float64", "double", "f64")),
    DType(name="fp32", bits=32, kind="float", torch_name="float32", aliases=("float32", "float", "f32", "single")),
    DType(name="tf32", bits=32, kind="float", torch_name="float32", aliases=("tensorfloat32",)),
    DType(name="fp16", bits=16, kind="float", torch_name="float16", aliases=("float16", "half", "f16")),
    DType(name="bf16", bits=16, kind="float", torch_name="bfloat16", aliases=("bfloat16",)),
    DType(name="fp8-e4m3", bits=8, kind="float", torch_name="float8_e4m3fn",
          aliases=("fp8", "float8", "e4m3", "float8-e4m3fn", "float8-e4m3", "fp8-e4m3fn", "f8-e4m3")),
    DType(name="fp8-e5m2", bits=8, kind="float", torch_name="float8_e5m2",
          aliases=("e5m2", "float8-e5m2", "f8-e5m2")),
    DType(name="int64", bits=64, kind="int", torch_name="int64", aliases=("long", "i64")),
    DType(name="int32", bits=32, kind="int", torch_name="int32", aliases=("int", "i32")),
    DType(name="int16", bits=16, kind="int", torch_name="int16", aliases=("short", "i16")),
    DType(name="int8", bits=8, kind="int", torch_name="int8", aliases=("i8",)),
    DType(name="uint8", bits=8, kind="uint", torch_name="uint8", aliases=("u8", "byte")),
    DType(name="int4", bits=4, kind="int", aliases=("i4", "uint4")),
    DType(name="nf4", bits=4, kind="float", aliases=("normalfloat4",)),
    DType(name="fp4", bits=4, kind="float", aliases=("fp4-e2m1", "e2m1", "float4")),
    DType(name="mxfp4", bits=4, kind="float", aliases=("mx-fp4",)),
    DType(name="bool", bits=8, kind="bool", torch_name="bool"),
)


def _index() -> dict[str, DType]:
    table: dict[str, DType] = {}
    for dtype in _TABLE:
        for key in (dtype.name, *dtype.aliases):
            table[normalize_name(key)] = dtype
            table[normalize_name(key).replace("-", "")] = dtype
    return table


DTYPES: dict[str, DType] = _index()
"""Every accepted spelling (normalised) -> its :class:`DType`."""


def get_dtype(name: str | DType, field: str = "dtype") -> DType:
    """Look up a dtype by any spelling: ``"bfloat16"``, ``"torch.float16"``, ``"half"``,
    ``"BF16"``. Unknown names raise :class:`~vramplan.errors.UnknownNameError`."""
    if isinstance(name, DType):
        return name
    key = normalize_name(str(name)).removeprefix("torch.")
    if key in DTYPES:
        return DTYPES[key]
    return lookup(field, key.replace("-", ""), DTYPES)


def dtype_names() -> list[str]:
    """Canonical names, in table order."""
    return [d.name for d in _TABLE]


FP32, FP16, BF16 = get_dtype("fp32"), get_dtype("fp16"), get_dtype("bf16")
FP32_BYTES: int = FP32.element_bytes
"""Bytes of one fp32 value (4): the one place a dtype's byte size is written."""
FP16_BYTES: int = FP16.element_bytes
"""Bytes of one fp16 value (2)."""
BF16_BYTES: int = BF16.element_bytes
"""Bytes of one bf16 value (2)."""
