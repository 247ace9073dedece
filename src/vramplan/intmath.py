"""Integer arithmetic the estimates share: ceiling division and the one bisection
solver (the largest value a monotone test accepts).

Every "how many blocks / pages / nodes" rounds up with :func:`ceil_div`, and every
"largest batch / context / utilisation that fits" is :func:`largest_true`, so the
rounding and the search boundary are written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ceil_div(a: Any, b: Any) -> Any:
    """``ceil(a / b)`` for integers (or numpy integer arrays) without going through a
    float: ``-(-a // b)``."""
    return -(-a // b)


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return ceil_div(n, multiple) * multiple


def largest_true(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest ``n`` in ``[lo, hi]`` with ``ok(n)``, for a test that holds up to a
    boundary and fails beyond it (memory grows with the value); ``lo - 1`` when
    ``ok(lo)`` fails. Tries ``lo``, then ``hi`` (often everything fits), then bisects:
    at most ``2 + ceil(log2(hi - lo))`` calls."""
    if not ok(lo):
        return lo - 1
    if hi <= lo or ok(hi):
        return max(lo, hi)
    good, bad = lo, hi  # ok(good) holds, ok(bad) fails
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if ok(mid) else (good, mid)
    return good
