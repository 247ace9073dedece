"""Pieces shared by the subcommands: output (JSON or a rich table) and model input."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import click

from vramplan.validate import SIZE_MAX

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def units_option(func: Any) -> Any:
    """``--units GiB|GB`` (declared in :data:`vramplan.options.COMMON_OPTIONS`)."""
    from vramplan.options import COMMON_OPTIONS

    return click_options(COMMON_OPTIONS)(func)


def emit_json(data: Any) -> None:
    """Write ``data`` (a result's ``to_dict()``) as indented JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def flag_message(exc: Exception, flags: dict[str, str]) -> str:
    """The message of a core error as the command line shows it: each field it names
    (:attr:`vramplan.errors.VramplanError.fields`) replaced by its flag in ``flags``
    (field -> flag, :func:`vramplan.options.flags_by_field`)."""
    from vramplan.errors import UnknownNameError, VramplanError

    if not isinstance(exc, VramplanError):
        return str(exc)
    if isinstance(exc, UnknownNameError):  # "unknown optimizer 'x'": the kind is a word, the hint names fields
        return exc.lead + (f" ({_flagged(exc.hint, exc.fields, flags)})" if exc.hint else "")
    return _flagged(str(exc), exc.fields, flags)


def _flagged(text: str, fields: tuple[str, ...], flags: dict[str, str]) -> str:
    for name in sorted(fields, key=len, reverse=True):
        if name in flags:
            text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", flags[name], text)
    return text


def console():
    """A rich Console (imported lazily: rich is slow to import)."""
    from rich.console import Console

    return Console()


def table(*columns: str, title: str | None = None, right: tuple[str, ...] = ()):
    """A rich Table with the given columns; ``right`` columns are right-aligned."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left")
    return t


def _fail(problem: str, param: click.Parameter | None) -> None:
    """Raise the project's InputError ``--flag: problem`` (one line, exit 2; the web
    API answers it as a 400 with the JSON error shape)."""
    from vramplan.errors import InputError

    name = param.opts[0] if param is not None and param.opts else (param.name if param is not None else "value")
    raise InputError(f"{name}: {problem}")


class BoundedInt(click.ParamType):
    """An integer flag in ``[lo, hi]`` checked by :func:`vramplan.validate.integer_problem`
    (the bounds documented there); ``2**63``, ``1e3`` or ``nan`` fail with one line
    naming the flag, the value and the bound."""

    name = "integer"

    def __init__(self, lo: int = 1, hi: int = 2**31) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from vramplan.validate import integer_problem, shown

        if isinstance(value, str):
            text = value.strip()
            if len(text) > 40 or not text.lstrip("+-").isdigit() or not text.isascii():
                _fail(f"expected an integer from {self.lo:,} to {self.hi:,}, got {shown(value)}", param)
            value = int(text)
        problem = integer_problem(value, self.lo, self.hi)
        if problem:
            _fail(problem, param)
        return int(value)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "INTEGER"


class BoundedFloat(click.ParamType):
    """A finite number flag in an interval (``nan``, ``inf`` and ``1e400`` fail)."""

    name = "number"

    def __init__(self, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> None:
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from vramplan.validate import real_problem, shown

        if isinstance(value, str):
            raw = value
            try:
                value = float(raw.strip()) if len(raw) <= 40 else None
            except ValueError:
                value = None
            if value is None:
                _fail(f"expected a number, got {shown(raw)}", param)
        problem = real_problem(value, self.lo, self.hi, lo_open=self.lo_open, hi_open=self.hi_open)
        if problem:
            _fail(problem, param)
        return float(value)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "FLOAT"


def click_options(options) -> Any:
    """A decorator adding click options built from the core's declarations
    (:mod:`vramplan.options`), in their order."""

    def param(o) -> Any:
        if o.kind == "flag":
            return click.option(*o.all_flags, o.name, is_flag=True, help=o.help)
        if o.multiple:
            return click.option(*o.all_flags, o.name, multiple=True, help=o.help)
        if o.kind == "switch":
            return click.option(f"{o.all_flags[0]}/{o.off_flag}", o.name, default=o.default, help=o.help)
        kind: Any = {"int": int, "float": float, "str": str}[o.kind]
        if o.choices:
            kind = click.Choice(list(o.choices))
        elif o.kind == "int":
            # Bounded by the declaration, and always within 2**53 (vramplan.validate).
            kind = BoundedInt(o.minimum if o.minimum is not None else -SIZE_MAX,
                              o.maximum if o.maximum is not None else SIZE_MAX)
        elif o.kind == "float":
            kind = BoundedFloat(o.minimum if o.minimum is not None else -math.inf,
                                o.maximum if o.maximum is not None else math.inf,
                                lo_open=bool(o.min_open), hi_open=bool(o.max_open))
        extra = {"required": True} if o.required else {"default": o.default}
        return click.option(*o.all_flags, o.name, type=kind, show_default=o.show_default or None, help=o.help,
                            **extra)

    def decorate(func: Any) -> Any:
        for o in reversed(tuple(options)):
            func = param(o)(func)
        return func

    return decorate
