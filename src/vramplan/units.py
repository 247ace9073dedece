"""Units: parameter counts, memory sizes, bits and bytes.

Bytes stay ``int`` through the whole core; they become GiB or GB only when rendered,
and the unit is always printed with the number.

Binary vs decimal. 1 GiB = 1024**3 bytes (what ``nvidia-smi`` and PyTorch report, in
MiB); 1 GB = 10**9 bytes (what vendors print on the box, and what the rule of thumb
"1B parameters in int8 need 1 GB" means). The two differ by 7.4% at the giga scale.
vramplan shows GiB by default and GB on request, and a bare "G" in user input means
GiB, as it does in ``nvidia-smi`` and in PyTorch's allocator settings.

Bits vs bytes: 1 byte = 8 bits. A lower-case ``b`` in a size ("16Gb") means bits.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Literal

from vramplan.errors import InputError

BITS_PER_BYTE = 8
KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4
KB, MB, GB, TB = 10**3, 10**6, 10**9, 10**12

ByteUnit = Literal["GiB", "GB"]
BYTE_UNITS: tuple[ByteUnit, ...] = ("GiB", "GB")
"""Binary (GiB = 1024**3 B, as nvidia-smi) or decimal (GB = 10**9 B) units of the tables."""

_PARAM_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_NUMBER = r"(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)"
_PARAM_RE = re.compile(rf"^\s*{_NUMBER}\s*(?P<suffix>[kmbgt]?)\s*$", re.IGNORECASE)

_SIZE_UNITS = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "k": KiB, "kib": KiB, "kb": KB,
    "m": MiB, "mib": MiB, "mb": MB,
    "g": GiB, "gib": GiB, "gb": GB,
    "t": TiB, "tib": TiB, "tb": TB,
}
_SIZE_RE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[a-z]*)\s*$", re.IGNORECASE)


MAX_COUNT = 2**53
"""Largest parameter count or byte size accepted (exact in a float64; see
:mod:`vramplan.validate`)."""
_MAX_TEXT_CHARS = 64


def _exact(text: str, field: str, expected: str) -> Decimal:
    """The number in ``text`` as an exact Decimal (never through a float)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"{field}: expected {expected}, got {text!r}") from None
    if not value.is_finite():
        raise InputError(f"{field}: expected {expected}, got {text!r}")
    return value


def _whole(value: Decimal, text: object, field: str, what: str) -> int:
    """``value`` rounded to a whole count in [1, MAX_COUNT]; a value that rounds to 0
    is an error, not a silent zero."""
    if value > MAX_COUNT:
        raise InputError(f"{field}: expected at most {MAX_COUNT:,} {what}, got {text!r}")
    whole = int(value.to_integral_value(rounding="ROUND_HALF_EVEN"))
    if value <= 0:
        raise InputError(f"{field}: expected a positive {what[:-1] if what.endswith('s') else what}, got {text!r}")
    if whole < 1:
        raise InputError(f"{field}: {text!r} is less than one {what[:-1] if what.endswith('s') else what}")
    return whole


def parse_param_count(text: str | int | float, field: str = "parameters") -> int:
    """Parse a parameter count as people write it: ``"7B"``, ``"6.7b"``, ``"110M"``,
    ``"1.5T"``, ``"70e9"``, ``7_000_000_000``. Returns the count as ``int``, computed
    exactly (``Decimal``, never a float: ``"1.1T"`` is 1,100,000,000,000).

    "B" means billion (10**9), as in model names; "M" million; "K" thousand; "T"
    trillion. At most 2**53. Raises :class:`InputError` naming ``field`` for anything else.
    """
    expected = "a parameter count such as '7B', '110M', '1.5T' or '70e9'"
    if isinstance(text, bool):
        raise InputError(f"{field}: expected a parameter count such as '7B', got {text!r}")
    if isinstance(text, int):
        value = Decimal(text)
    elif isinstance(text, float):
        if not math.isfinite(text):
            raise InputError(f"{field}: expected a positive parameter count, got {text!r}")
        value = Decimal(text)
    else:
        raw = str(text)
        m = _PARAM_RE.match(raw.replace("_", "").replace(",", "")) if len(raw) <= _MAX_TEXT_CHARS else None
        if not m:
            raise InputError(f"{field}: expected {expected}, got {raw[:_MAX_TEXT_CHARS]!r}")
        value = _exact(m.group("num"), field, expected) * _PARAM_SUFFIX[m.group("suffix").lower()]
    return _whole(value, text, field, "parameters")


def looks_like_param_count(text: str) -> bool:
    """True when ``text`` parses as a parameter count with a suffix ("7B", "110m", "70e9")."""
    m = _PARAM_RE.match(text.replace("_", ""))
    return bool(m) and (bool(m.group("suffix")) or "e" in m.group("num").lower())


def parse_bytes(text: str | int | float, field: str = "memory") -> int:
    """Parse a memory size into bytes: ``"24GB"`` (decimal, 24e9), ``"24GiB"``
    (binary), ``"80G"`` (binary, as nvidia-smi and PyTorch mean it), ``"512MiB"``,
    a bare number (bytes). A lower-case ``b`` after a prefix means bits ("16Gb" =
    16e9 bits = 2e9 bytes). Computed exactly (``Decimal``); a size under one byte
    (``"0.4"``, ``"1e-9GB"``) or over 2**53 bytes is an error naming ``field``.
    """
    expected = "a size such as '24GiB', '80GB' or '512MiB'"
    if isinstance(text, bool):
        raise InputError(f"{field}: expected a size such as '24GiB' or '80GB', got {text!r}")
    if isinstance(text, (int, float)):
        if isinstance(text, float) and not math.isfinite(text):
            raise InputError(f"{field}: expected a positive size, got {text!r}")
        value, bits = Decimal(text), False
    else:
        raw = str(text)
        m = _SIZE_RE.match(raw.replace("_", "").replace(",", "")) if len(raw) <= _MAX_TEXT_CHARS else None
        if not m:
            raise InputError(f"{field}: expected {expected}, got {raw[:_MAX_TEXT_CHARS]!r}")
        raw_unit = m.group("unit")
        # "Gb", "Mb" (upper-case prefix, lower-case b) and "bit(s)" are bits; any other
        # spelling ("GB", "gb", "GiB") is bytes.
        bits = bool(re.fullmatch(r"[KMGT]b|[KMGT]?bits?", raw_unit))
        unit = re.sub(r"bits?$", "", raw_unit).lower() if bits else raw_unit.lower()
        if unit not in _SIZE_UNITS:
            raise InputError(
                f"{field}: unknown unit {raw_unit!r} in {text!r}; expected B, KiB, MiB, GiB, TiB, KB, MB, GB, TB")
        value = _exact(m.group("num"), field, expected) * _SIZE_UNITS[unit]
    if bits:
        value /= BITS_PER_BYTE
    if value <= 0:
        raise InputError(f"{field}: expected a positive size, got {text!r}")
    return _whole(value, text, field, "bytes")


def bits_to_bytes(bits: float) -> int:
    """Whole bytes needed to hold ``bits`` bits (rounded up)."""
    return math.ceil(bits / BITS_PER_BYTE)


def format_bytes(num_bytes: int | float, unit: ByteUnit = "GiB", digits: int = 2) -> str:
    """Render bytes with the unit in the label: ``format_bytes(15 * GiB) == "15.00 GiB"``.
    ``unit="GiB"`` picks among B/KiB/MiB/GiB/TiB (powers of 1024); ``unit="GB"``
    among B/KB/MB/GB/TB (powers of 1000)."""
    if unit == "GiB":
        steps = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))
    elif unit == "GB":
        steps = (("TB", TB), ("GB", GB), ("MB", MB), ("KB", KB))
    else:
        raise InputError(f"unit: expected 'GiB' or 'GB', got {unit!r}")
    sign = "-" if num_bytes < 0 else ""
    magnitude = abs(num_bytes)
    for label, size in steps:
        if magnitude >= size:
            return f"{sign}{magnitude / size:.{digits}f} {label}"
    return f"{sign}{int(magnitude)} B"


def format_params(count: int) -> str:
    """``8030261248`` -> ``"8.03B"``; ``124439808`` -> ``"124.44M"``."""
    for label, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(count) >= size:
            return f"{count / size:.2f}{label}"
    return str(count)
