"""Name normalisation and "did you mean" look-ups shared by every table
(models, GPUs, dtypes, optimizers, formats)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from vramplan.errors import UnknownNameError

T = TypeVar("T")

_SEPARATORS = re.compile(r"[\s_]+")


def normalize_name(name: str) -> str:
    """Lower-case, trim, and treat spaces and underscores as hyphens: ``"Llama 3.1_8B"``
    becomes ``"llama-3.1-8b"``."""
    return _SEPARATORS.sub("-", name.strip().lower())


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` known names that look like ``name`` (for error messages)."""
    known = list(known)
    key = normalize_name(name)
    found = difflib.get_close_matches(key, known, n=n, cutoff=0.6)
    if not found:
        found = [k for k in known if key and (key in k or k in key)][:n]
    return found


def lookup(kind: str, name: str, table: Mapping[str, T], hint: str = "", *, fields: tuple[str, ...] = ()) -> T:
    """``table[normalize_name(name)]``, or an :class:`UnknownNameError` naming the
    closest keys (and ``fields``, the fields the hint names). ``table`` keys must
    already be normalised."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownNameError(kind, str(name), (), hint or f"expected one of: {', '.join(sorted(table)[:12])}",
                               fields=fields)
    key = normalize_name(name)
    try:
        return table[key]
    except KeyError:
        raise UnknownNameError(kind, name, close_matches(key, table), hint, fields=fields) from None
