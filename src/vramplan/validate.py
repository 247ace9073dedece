"""One validator per kind of field, and the documented bounds every number lives in.

Every number that reaches the core (a command-line flag, a config.json key, a query
string, a Python argument) passes through one of these functions. Each checks the
type (a ``bool`` is not an integer, a float is not an integer, a string is not a
number), finiteness and the field's bound, and raises the project's error naming the
field, the bad value and what was expected, on one line.

The bounds are far above any real model or cluster, and far enough below 2**63 that
the planner's vectorised int64 arithmetic cannot overflow on any product it forms
(see :data:`INT64_SAFE`):

==================  ==========  ==================================================
bound               value       why
==================  ==========  ==================================================
``LAYERS_MAX``      10**4       decoder layers (largest published: ~200)
``HIDDEN_MAX``      10**6       hidden, head and rank widths
``WIDTH_MAX``       10**7       MLP widths (intermediate, expert, shared expert)
``HEADS_MAX``       10**5       attention heads, key/value heads
``EXPERTS_MAX``     10**5       routed or shared experts (largest published: 384)
``VOCAB_MAX``       10**7       vocabulary rows (largest published: ~256k)
``GPUS_MAX``        10**6       GPUs, nodes and parallel degrees
``LENGTH_MAX``      2**31       tokens: sequence, context, prompt, positions
``BATCH_MAX``       2**31       sequences: micro-batch, global batch, accumulation
``SIZE_MAX``        2**53       bytes and parameter counts (exact in a float64)
==================  ==========  ==================================================
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from vramplan.errors import InputError, VramplanError

LAYERS_MAX = 10**4
HIDDEN_MAX = 10**6
WIDTH_MAX = 10**7
HEADS_MAX = 10**5
EXPERTS_MAX = 10**5
VOCAB_MAX = 10**7
GPUS_MAX = 10**6
LENGTH_MAX = 2**31
BATCH_MAX = 2**31
SIZE_MAX = 2**53
INT64_SAFE = 2**62
"""Largest magnitude an int64 intermediate may reach before the planner reports an
overflow (half of int64's range, so a sum of two such terms still fits)."""

_REPR_CHARS = 60


def shown(value: object) -> str:
    """``repr(value)`` cut to one short line (a 5,000-digit integer prints as its
    first digits and its length)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        digits = len(str(abs(value)))
        return f"{str(value)[:12]}... ({digits} digits)"
    text = repr(value).replace("\n", " ")
    return text if len(text) <= _REPR_CHARS else text[:_REPR_CHARS - 3] + "..."


def _range_text(lo: int | float, hi: int | float) -> str:
    return f"from {lo:,} to {hi:,}"


def integer_problem(value: object, lo: int, hi: int) -> str | None:
    """Why ``value`` is not an integer in ``[lo, hi]`` (``None`` when it is).
    Integral ``numbers.Integral`` values (numpy integers too) pass; bools, floats and
    strings do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        kind = "a bool" if isinstance(value, bool) else type(value).__name__
        return f"expected an integer {_range_text(lo, hi)}, got {shown(value)} ({kind})"
    if int(value) < lo and lo in (0, 1):
        return f"expected a {'positive' if lo else 'non-negative'} integer, got {shown(int(value))}"
    if not lo <= int(value) <= hi:
        return f"expected an integer {_range_text(lo, hi)}, got {shown(int(value))}"
    return None


def integer(field: str, value: object, lo: int = 1, hi: int = SIZE_MAX, *,
            error: type[VramplanError] = InputError) -> int:
    """``value`` as an ``int`` in ``[lo, hi]``, else ``error`` naming ``field``."""
    problem = integer_problem(value, lo, hi)
    if problem:
        raise error(f"{field}: {problem}")
    return int(value)  # type: ignore[arg-type]


def optional_integer(field: str, value: object, lo: int = 1, hi: int = SIZE_MAX, *,
                     error: type[VramplanError] = InputError) -> int | None:
    """:func:`integer`, with ``None`` passed through."""
    return None if value is None else integer(field, value, lo, hi, error=error)


def real_problem(value: object, lo: float, hi: float, *, lo_open: bool = False,
                 hi_open: bool = False) -> str | None:
    """Why ``value`` is not a finite real number in the interval (``None`` when it is)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    expected = f"expected a number in {left}{lo:g}, {hi:g}{right}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{expected}, got {shown(value)} ({type(value).__name__})"
    x = float(value)
    if not math.isfinite(x):
        return f"{expected}, got {shown(value)} (not finite)"
    if x < lo or x > hi or (lo_open and x == lo) or (hi_open and x == hi):
        return f"{expected}, got {shown(value)}"
    return None


def real(field: str, value: object, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False,
         error: type[VramplanError] = InputError) -> float:
    """``value`` as a finite ``float`` in the interval, else ``error`` naming ``field``."""
    problem = real_problem(value, lo, hi, lo_open=lo_open, hi_open=hi_open)
    if problem:
        raise error(f"{field}: {problem}")
    return float(value)  # type: ignore[arg-type]


def flag(field: str, value: object, *, error: type[VramplanError] = InputError) -> bool:
    """``value`` if it is a ``bool`` (``'yes'``, ``1`` and ``None`` are not)."""
    if not isinstance(value, bool):
        raise error(f"{field}: expected true or false, got {shown(value)} ({type(value).__name__})")
    return value


def choice(field: str, value: object, allowed: Iterable[object], *,
           error: type[VramplanError] = InputError) -> object:
    """``value`` if it is one of ``allowed`` (compared without hashing, so a list or a
    dict gives this error rather than a TypeError)."""
    options = tuple(allowed)
    if isinstance(value, bool) or not any(type(value) is type(a) and value == a for a in options):
        raise error(f"{field}: expected one of {', '.join(str(a) for a in options)}, got {shown(value)}")
    return value


def text(field: str, value: object, *, max_chars: int = 1000, error: type[VramplanError] = InputError) -> str:
    """``value`` if it is a non-empty string of at most ``max_chars`` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        raise error(f"{field}: expected a non-empty name of at most {max_chars:,} characters, got {shown(value)}")
    return value


def integers(field: str, values: object, lo: int = 1, hi: int = SIZE_MAX, *, max_items: int = 4096,
             error: type[VramplanError] = InputError) -> tuple[int, ...]:
    """A non-empty tuple of integers in ``[lo, hi]``; the error names the bad item."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)):
        raise error(f"{field}: expected a list of integers, got {shown(values)}")
    if not values or len(values) > max_items:
        raise error(f"{field}: expected 1 to {max_items:,} values, got {len(values):,}")
    return tuple(integer(f"{field}[{i}]", v, lo, hi, error=error) for i, v in enumerate(values))


def names(field: str, values: object, *, allowed: Iterable[str] | None = None, max_items: int = 4096,
          error: type[VramplanError] = InputError) -> tuple[str, ...]:
    """A non-empty tuple of non-empty strings (each one of ``allowed`` when given)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)):
        raise error(f"{field}: expected a list of names, got {shown(values)}")
    if not values or len(values) > max_items:
        raise error(f"{field}: expected 1 to {max_items:,} names, got {len(values):,}")
    options = tuple(allowed) if allowed is not None else None
    out = []
    for i, v in enumerate(values):
        text(f"{field}[{i}]", v, max_chars=200, error=error)
        if options is not None:
            choice(f"{field}[{i}]", v, options, error=error)
        out.append(v)
    return tuple(out)


def comma_list(field: str, raw: str) -> tuple[str, ...]:
    """``"q_proj, v_proj"`` -> ``("q_proj", "v_proj")``; a list with no names in it
    (``",,,"``, ``" "``) is an error, not an empty selection."""
    items = tuple(t.strip() for t in raw.split(","))
    named = tuple(t for t in items if t)
    if not named:
        raise InputError(f"{field}: expected comma-separated names, got {shown(raw)} (no names in it)")
    return named


def size_bytes(field: str, value: object, lo: int = 0) -> int:
    """A byte count in ``[lo, 2**53]``."""
    return integer(field, value, lo, SIZE_MAX)


def int64_safe(field: str, array) -> None:
    """Raise :class:`InputError` when a numpy int64 result left the safe range (an
    overflow wrapped it, or it is too large to be exact): the planner never reports a
    wrapped number."""
    import numpy as np

    a = np.asarray(array)
    if a.size and a.dtype.kind in "iu" and (int(a.max()) >= INT64_SAFE or int(a.min()) < 0):
        raise InputError(f"{field}: the figures exceed {INT64_SAFE:,} (int64 overflow); the model or "
                         "layout is far outside what can be planned")
