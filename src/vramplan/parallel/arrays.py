"""Arithmetic that works on plain numbers and on numpy arrays alike.

The closed-form parallel terms take ``int`` degrees *or* numpy arrays of degrees (one
entry per layout), so the planner evaluates millions of layouts with the very same
arithmetic the per-layout estimate uses. numpy is imported only when an array shows up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from vramplan.intmath import ceil_div

if TYPE_CHECKING:
    from typing import TypeAlias

    import numpy as np

    Ints: TypeAlias = Union[int, np.ndarray]
    """A count or degree: one ``int``, or an integer array with one entry per layout."""
    Reals: TypeAlias = Union[float, int, np.ndarray]
    """A number of bytes, parameters or a share: a scalar, or an array per layout."""
    Flags: TypeAlias = Union[bool, np.ndarray]
    """A yes/no setting: one ``bool``, or a boolean array per layout."""


def _is_array(x: object) -> bool:
    return hasattr(x, "shape") and getattr(x, "ndim", 0) > 0


def minimum(a: Reals, b: Reals) -> Reals:
    """Element-wise min of ints or numpy arrays (plain ``min`` for plain ints)."""
    if _is_array(a) or _is_array(b):
        import numpy as np

        return np.minimum(a, b)
    return min(a, b)


def maximum(a: Reals, b: Reals) -> Reals:
    """Element-wise max of ints or numpy arrays."""
    if _is_array(a) or _is_array(b):
        import numpy as np

        return np.maximum(a, b)
    return max(a, b)


def where(cond: Flags, a: Reals, b: Reals) -> Reals:
    """``a`` where ``cond`` else ``b``, for bools or numpy arrays."""
    if _is_array(cond) or _is_array(a) or _is_array(b):
        import numpy as np

        return np.where(cond, a, b)
    return a if cond else b


cdiv = ceil_div
"""Ceiling division of ints or integer arrays (:func:`vramplan.intmath.ceil_div`)."""
