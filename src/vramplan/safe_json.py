"""Read a JSON file a user pointed at, within bounds: a regular file, at most
:data:`MAX_FILE_BYTES`, nested at most :data:`MAX_DEPTH` deep, with strict numbers.

``json.loads`` alone accepts ``NaN``/``Infinity`` (not JSON: RFC 8259 sec. 6),
turns ``1e400`` into ``inf``, parses a 5,000-digit integer, recurses until Python's
stack runs out on 100k nested brackets, and reads a file of any size whole. Each of
those ends here as a :class:`~vramplan.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from vramplan.errors import ConfigError

MAX_FILE_BYTES = 16 * 2**20
"""Largest config file read (16 MiB; the largest real config.json is ~100 KiB)."""
MAX_DEPTH = 64
"""Deepest nesting of objects and arrays accepted (real configs nest 3-4 deep)."""
MAX_INTEGER_DIGITS = 30
"""Longest integer literal accepted (any real count fits in 20 digits)."""


class _Rejected(ValueError):
    """A literal the strict parser refuses (carried out of the json hooks)."""


def _constant(name: str) -> Any:
    raise _Rejected(f"{name} is not a JSON number")


def _integer(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _Rejected(f"an integer of {len(literal.lstrip('-')):,} digits (at most {MAX_INTEGER_DIGITS})")
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Rejected(f"{literal[:40]} overflows a float")
    return value


def _depth_exceeded(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays deeper than ``limit`` (iterative walk)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads(text: str, source: str = "JSON") -> Any:
    """Parse ``text`` strictly; errors are :class:`ConfigError` naming ``source``."""
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_integer, parse_float=_float)
    except _Rejected as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    if _depth_exceeded(value, MAX_DEPTH):
        raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels")
    return value


def read_text_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``, checked before it is
    read (and again while reading: /proc files report size 0)."""
    shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{shown}: not a regular file")
        if info.st_size > max_bytes:
            raise ConfigError(f"{shown}: {info.st_size:,} bytes; config files are read up to {max_bytes:,} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(f"{shown}: more than {max_bytes:,} bytes; config files are read up to {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not a UTF-8 text file") from None


def load_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """:func:`loads` on :func:`read_text_file`."""
    return loads(read_text_file(path, max_bytes), str(path) if len(str(path)) <= 200 else str(path)[:200] + "...")
