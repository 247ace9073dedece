"""GGUF headers: metadata and the tensor table, bounded by the file's size.

Layout (ggml ``docs/gguf.md``; ``gguf_init_from_file_impl`` in ``ggml/src/gguf.cpp``):
``"GGUF"``, u32 version (2 or 3), u64 tensor count, u64 key/value count; the
key/values (u64-length strings, a u32 value type, the value; arrays carry a u32 element
type and a u64 count); then per tensor: name, u32 n_dims (at most 4), n_dims x u64
``ne`` (innermost first), u32 ggml type, u64 offset into the data section, which starts
at the next multiple of ``general.alignment`` (32). A tensor of type T takes
``ne[0] / block_elements(T) x block_bytes(T) x ne[1] x ne[2] x ne[3]`` bytes
(``ggml_nbytes``).

Every count and length is checked against the bytes left before it is used, so a file
claiming 2^60 tensors or a string longer than the file fails at once, in bounded
memory. The ``gguf`` package's ``GGUFReader`` builds a numpy view per array element
(about 2 s for a 128k-token vocabulary); this reader skips arrays it does not need,
and the tests hold it against ``GGUFReader`` on files written by ``GGUFWriter``.
"""

from __future__ import annotations

from vramplan.intmath import round_up
import struct
from collections.abc import Callable
from dataclasses import dataclass

from vramplan.errors import ConfigError
from vramplan.gguf_types import GGML_TYPES
from vramplan.sources.safetensors_header import StoredTensor

GGUF_MAGIC = b"GGUF"
GGML_MAX_DIMS = 4
"""``GGML_MAX_DIMS`` in ggml.h."""
DEFAULT_ALIGNMENT = 32
"""``GGUF_DEFAULT_ALIGNMENT`` in gguf.h."""

GGML_TYPE_IDS: dict[int, tuple[str, int, int]] = {
    # enum ggml_type (ggml/include/ggml.h): id -> (name, block elements, block bytes).
    # Sizes of the types vramplan.gguf_types knows come from there; the others from
    # the block structs in ggml-common.h (block_q8_1: 2 halves + 32 int8; block_q8_K:
    # float d + 256 int8 + 16 int16 bsums; block_nvfp4: 4 e4m3 scales + 32 bytes).
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 0, 0), 3: ("Q4_1", 0, 0), 6: ("Q5_0", 0, 0),
    7: ("Q5_1", 0, 0), 8: ("Q8_0", 0, 0), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 0, 0), 11: ("Q3_K", 0, 0),
    12: ("Q4_K", 0, 0), 13: ("Q5_K", 0, 0), 14: ("Q6_K", 0, 0), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 0, 0),
    17: ("IQ2_XS", 0, 0), 18: ("IQ3_XXS", 0, 0), 19: ("IQ1_S", 0, 0), 20: ("IQ4_NL", 0, 0), 21: ("IQ3_S", 0, 0),
    22: ("IQ2_S", 0, 0), 23: ("IQ4_XS", 0, 0), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4),
    27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 0, 0), 30: ("BF16", 0, 0), 34: ("TQ1_0", 0, 0),
    35: ("TQ2_0", 0, 0), 39: ("MXFP4", 0, 0), 40: ("NVFP4", 64, 36),
}
GGML_TYPE_IDS = {i: (n, GGML_TYPES[n].block_elements, GGML_TYPES[n].block_bytes) if n in GGML_TYPES else (n, e, b)
                 for i, (n, e, b) in GGML_TYPE_IDS.items()}

# GGUF value types (enum gguf_type): id -> struct format of a scalar.
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
_KEEP_ARRAY_ITEMS = 4096
"""Arrays longer than this are kept as their length only (token lists, merges)."""


class NeedMoreBytes(Exception):
    """The header runs past the bytes fetched so far (remote reads fetch more)."""

    def __init__(self, needed: int):
        self.needed = needed


@dataclass(frozen=True, kw_only=True)
class GgufHeader:
    """What a GGUF file's header says."""

    version: int
    metadata: dict[str, object]
    """Key -> scalar, string, list (short arrays) or :class:`ArrayLength` (long ones)."""
    tensors: tuple[StoredTensor, ...]
    data_offset: int
    """Byte where the tensor data starts."""
    file_bytes: int


@dataclass(frozen=True)
class ArrayLength:
    """A long array read only for its length (``tokenizer.ggml.tokens``)."""

    length: int


class _Cursor:
    def __init__(self, buf: bytes | memoryview, file_bytes: int, where: str):
        self.buf, self.pos, self.file_bytes, self.where = buf, 0, file_bytes, where

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end > self.file_bytes:
            raise ConfigError(f"{self.where}: GGUF {what} runs past the end of the {self.file_bytes:,}-byte file "
                              f"(needs {n:,} bytes at offset {self.pos:,})")
        if end > len(self.buf):
            raise NeedMoreBytes(end)

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def count(self, what: str, min_item_bytes: int) -> int:
        n = self.unpack("<Q", what)
        left = self.file_bytes - self.pos
        if n * min_item_bytes > left:
            raise ConfigError(f"{self.where}: GGUF {what} {n:,} cannot fit in the {left:,} bytes left of the file")
        return n

    def string(self, what: str) -> str:
        n = self.count(f"{what} length", 1)
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{self.where}: GGUF {what} is not UTF-8") from None

    def skip_strings(self, n: int, what: str) -> None:
        buf, pos, limit = self.buf, self.pos, min(len(self.buf), self.file_bytes)
        length_at = _U64.unpack_from
        try:
            for _ in range(n):  # the hot loop of a 128k-token vocabulary: one unpack per string
                pos += 8 + length_at(buf, pos)[0]
        except (struct.error, OverflowError):  # a length field past the bytes at hand
            self.pos = pos
            self.need(8, f"{what} string length")
            raise
        self.pos = pos
        if pos > self.file_bytes:
            raise ConfigError(f"{self.where}: GGUF {what} strings run past the end of the file")
        if pos > len(buf):
            raise NeedMoreBytes(pos)


def _value(c: _Cursor, vtype: int, key: str, depth: int = 0):
    if vtype in _SCALARS:
        return c.unpack(_SCALARS[vtype], f"value of {key}")
    if vtype == _STRING:
        return c.string(f"value of {key}")
    if vtype == _ARRAY:
        if depth:
            raise ConfigError(f"{c.where}: GGUF key {key!r}: nested arrays are not supported")
        etype = c.unpack("<I", f"array type of {key}")
        if etype not in _SCALARS and etype != _STRING:
            raise ConfigError(f"{c.where}: GGUF key {key!r}: unknown array element type {etype}")
        size = 8 if etype == _STRING else struct.calcsize(_SCALARS[etype])
        n = c.count(f"array length of {key}", size)
        if n > _KEEP_ARRAY_ITEMS:
            if etype == _STRING:
                c.skip_strings(n, key)
            else:
                c.need(n * size, f"array {key}")
                c.pos += n * size
            return ArrayLength(n)
        return [_value(c, etype, key, depth + 1) for _ in range(n)]
    raise ConfigError(f"{c.where}: GGUF key {key!r}: unknown value type {vtype}")


def _tensor_info(c: _Cursor) -> tuple[StoredTensor, int]:
    name = c.string("tensor name")
    n_dims = c.unpack("<I", f"n_dims of {name}")
    if not 1 <= n_dims <= GGML_MAX_DIMS:
        raise ConfigError(f"{c.where}: GGUF tensor {name!r}: n_dims {n_dims}, expected 1 to {GGML_MAX_DIMS}")
    ne = [c.unpack("<Q", f"shape of {name}") for _ in range(n_dims)]
    type_id = c.unpack("<I", f"type of {name}")
    offset = c.unpack("<Q", f"offset of {name}")
    if type_id not in GGML_TYPE_IDS:
        raise ConfigError(f"{c.where}: GGUF tensor {name!r}: unknown ggml type {type_id} "
                          f"(known: {', '.join(n for n, _, _ in GGML_TYPE_IDS.values())})")
    type_name, block, block_bytes = GGML_TYPE_IDS[type_id]
    if any(d >= 2**62 for d in ne):
        raise ConfigError(f"{c.where}: GGUF tensor {name!r}: shape {ne} overflows")
    if ne[0] % block:
        raise ConfigError(f"{c.where}: GGUF tensor {name!r}: row of {ne[0]} is not a multiple of {type_name}'s "
                          f"block of {block}")
    rows = 1
    for d in ne[1:]:
        rows *= d
    nbytes = ne[0] // block * block_bytes * rows
    shape = tuple(reversed(ne))  # outermost first, as PyTorch and safetensors write shapes
    return StoredTensor(name=name, dtype=type_name, shape=shape, nbytes=nbytes), offset


def parse_gguf(buf: bytes | memoryview, file_bytes: int, where: str) -> GgufHeader:
    """Parse a GGUF header from ``buf`` (the file's first bytes; the whole file locally).
    Raises :class:`NeedMoreBytes` when ``buf`` is too short but the file is not."""
    c = _Cursor(buf, file_bytes, where)
    c.need(4, "magic")
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise ConfigError(f"{where}: not a GGUF file (magic {bytes(buf[:4])!r}, expected b'GGUF')")
    c.pos = 4
    version = c.unpack("<I", "version")
    if version not in (2, 3):
        raise ConfigError(f"{where}: GGUF version {version} is not supported (expected 2 or 3)")
    n_tensors = c.count("tensor count", 8 + 4 + 8 + 4 + 8)
    n_kv = c.count("key/value count", 8 + 4 + 1)
    metadata: dict[str, object] = {}
    for _ in range(n_kv):
        key = c.string("key")
        vtype = c.unpack("<I", f"type of {key}")
        metadata[key] = _value(c, vtype, key)
    infos = [_tensor_info(c) for _ in range(n_tensors)]
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ConfigError(f"{where}: general.alignment: expected a power of two, got {alignment!r}")
    data_offset = round_up(c.pos, alignment)
    data_bytes = file_bytes - data_offset
    spans = sorted((off, off + t.nbytes, t.name) for t, off in infos)
    cursor = 0
    for begin, end, name in spans:
        if begin % alignment:
            raise ConfigError(f"{where}: GGUF tensor {name!r}: offset {begin} is not aligned to {alignment}")
        if begin < cursor:
            raise ConfigError(f"{where}: GGUF tensor {name!r}: data at offset {begin} overlaps the previous tensor")
        cursor = end
    if cursor > data_bytes:
        raise ConfigError(f"{where}: GGUF tensor data runs to byte {data_offset + cursor:,}, past the end of the "
                          f"{file_bytes:,}-byte file (truncated?)")
    return GgufHeader(version=version, metadata=metadata, tensors=tuple(t for t, _ in infos),
                      data_offset=data_offset, file_bytes=file_bytes)


def read_gguf_file(path) -> GgufHeader:
    """The header of a local GGUF file (memory-mapped: only the header's pages are read)."""
    import mmap

    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size == 0:
                raise ConfigError(f"{path}: empty file, not a GGUF file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                view = memoryview(mm)
                try:
                    return parse_gguf(view, size, str(path))
                finally:
                    view.release()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_gguf_ranged(fetch: Callable[[int, int], bytes], file_bytes: int, where: str,
                     first_bytes: int = 1 << 20, max_header_bytes: int = 1 << 30) -> GgufHeader:
    """Read a remote GGUF header with ranged reads: fetch the first ``first_bytes`` and
    double until the header parses (as gguf-parser does), never past
    ``max_header_bytes``. ``fetch(start, end)`` returns bytes ``[start, end)``."""
    buf = b""
    want = min(first_bytes, file_bytes)
    while True:
        if want > len(buf):
            chunk = fetch(len(buf), want)
            if len(chunk) != want - len(buf):
                raise ConfigError(f"{where}: server returned {len(chunk)} bytes for a {want - len(buf)}-byte range")
            buf += chunk
        try:
            return parse_gguf(buf, file_bytes, where)
        except NeedMoreBytes as more:
            if len(buf) >= max_header_bytes:
                raise ConfigError(f"{where}: GGUF header is larger than {max_header_bytes:,} bytes") from None
            want = min(file_bytes, max_header_bytes, max(more.needed, 2 * len(buf)))
