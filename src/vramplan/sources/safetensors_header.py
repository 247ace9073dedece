"""safetensors headers: read and validate the tensor table, never the weights.

Format (https://huggingface.co/docs/safetensors/index#format, and the reference
parser ``safetensors/src/tensor.rs``): 8 bytes little-endian header length N, N bytes
of UTF-8 JSON mapping each tensor name to ``{"dtype", "shape", "data_offsets":
[begin, end]}`` (offsets relative to the byte after the header), an optional
``__metadata__`` object of strings, then the data. The reference parser refuses
headers over 100 MB, offsets that are not contiguous from 0, and a byte count that is
not ``numel x dtype bits / 8``; so does this module. Unknown dtypes are refused, never
mapped to a guess.

Local files are read with a strict bounded reader here (two ``read`` calls of known
size): the ``safetensors`` package opens a file by mapping it whole and does not
expose offsets, and ``huggingface_hub``'s local reader decodes with ``errors="ignore"``.
Headers fetched from the Hub by ``huggingface_hub`` pass through the same
:func:`tensors_from_header` checks.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

from vramplan.errors import ConfigError

MAX_HEADER_BYTES = 100_000_000
"""Largest header accepted (``MAX_HEADER_SIZE`` = 100 MB in safetensors' tensor.rs)."""

DTYPE_BITS: dict[str, int] = {
    # safetensors Dtype enum (tensor.rs, 0.6+), bits per element.
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}
"""Bits per element of every dtype a safetensors header may name."""

_MAX_DIM = 2**62
"""Largest single dimension accepted; products are checked against the data size."""


@dataclass(frozen=True, kw_only=True)
class StoredTensor:
    """One tensor as a header describes it."""

    name: str
    """Name as stored (``model.layers.0.self_attn.q_proj.weight``)."""
    dtype: str
    """Stored dtype (safetensors name) or ggml type name (GGUF)."""
    shape: tuple[int, ...]
    """Logical shape."""
    nbytes: int
    """Bytes the tensor's data occupies in the file."""

    @property
    def elements(self) -> int:
        return prod(self.shape)


def read_header_bytes(path: Path) -> bytes:
    """The JSON header of a local safetensors file, bounded by the file's size and
    :data:`MAX_HEADER_BYTES`."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ConfigError(f"{path}: truncated safetensors file ({size} bytes; the 8-byte header length is "
                                  "missing)")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise ConfigError(f"{path}: safetensors header length {length:,} bytes exceeds the "
                                  f"{MAX_HEADER_BYTES:,}-byte limit")
            if length > size - 8:
                raise ConfigError(f"{path}: safetensors header length {length:,} bytes runs past the end of the "
                                  f"{size:,}-byte file (truncated?)")
            return f.read(length)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None


def parse_header_json(raw: bytes, where: str) -> dict:
    """Decode a header's bytes: strict UTF-8, a JSON object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: safetensors header is not UTF-8 (byte {exc.start})") from None
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise ConfigError(f"{where}: safetensors header is not JSON ({msg})") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{where}: safetensors header: expected a JSON object, got {type(header).__name__}")
    return header


def _shape(name: str, raw: object, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) > 16:
        raise ConfigError(f"{where}: tensor {name!r}: shape: expected a list of at most 16 integers, got {raw!r:.60}")
    for d in raw:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0 or d > _MAX_DIM:
            raise ConfigError(f"{where}: tensor {name!r}: shape: expected non-negative integers, got {raw!r:.60}")
    return tuple(raw)


def _tensor(name: str, entry: object, where: str) -> tuple[StoredTensor, int, int]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: tensor {name!r}: expected an object with dtype, shape, data_offsets")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise ConfigError(f"{where}: tensor {name!r}: unknown dtype {dtype!r:.40} "
                          f"(expected one of {', '.join(DTYPE_BITS)})")
    shape = _shape(name, entry.get("shape"), where)
    offsets = entry.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or any(isinstance(o, bool) or not isinstance(o, int) or o < 0 for o in offsets)):
        raise ConfigError(f"{where}: tensor {name!r}: data_offsets: expected [begin, end] non-negative integers, "
                          f"got {offsets!r:.60}")
    begin, end = offsets
    bits = prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise ConfigError(f"{where}: tensor {name!r}: {prod(shape)} elements of {dtype} are not a whole number "
                          "of bytes")
    if end - begin != bits // 8:
        raise ConfigError(f"{where}: tensor {name!r}: data_offsets [{begin}, {end}] hold {end - begin} bytes; "
                          f"shape {list(shape)} of {dtype} needs {bits // 8}")
    return StoredTensor(name=name, dtype=dtype, shape=shape, nbytes=bits // 8), begin, end


def tensors_from_header(header: dict, where: str, data_bytes: int | None = None) -> tuple[StoredTensor, ...]:
    """Validate a decoded header and return its tensors in file order.

    The data offsets must tile ``[0, end)`` without gaps or overlaps (as the reference
    parser requires); with ``data_bytes`` (file size minus header) they must also stay
    inside the file."""
    meta = header.get("__metadata__")
    if meta is not None and not isinstance(meta, dict):
        raise ConfigError(f"{where}: __metadata__: expected an object of strings")
    entries = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        entries.append(_tensor(name, entry, where))
    entries.sort(key=lambda e: (e[1], e[2]))
    cursor = 0
    for tensor, begin, end in entries:
        if begin != cursor:
            problem = "overlaps the previous tensor" if begin < cursor else f"leaves a gap after byte {cursor}"
            raise ConfigError(f"{where}: tensor {tensor.name!r}: data_offsets [{begin}, {end}] {problem}")
        cursor = end
    if data_bytes is not None and cursor > data_bytes:
        raise ConfigError(f"{where}: tensor data runs to byte {cursor:,} past the end of the file "
                          f"({data_bytes:,} data bytes; truncated?)")
    return tuple(t for t, _, _ in entries)


def read_safetensors_file(path: Path) -> tuple[StoredTensor, ...]:
    """The tensors of a local ``.safetensors`` file, from its header alone."""
    raw = read_header_bytes(path)
    header = parse_header_json(raw, str(path))
    return tensors_from_header(header, str(path), data_bytes=path.stat().st_size - 8 - len(raw))
