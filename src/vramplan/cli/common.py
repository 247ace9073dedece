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


def flag_text(text: str, question: str) -> str:
    """A line of the core's (a warning, an assumption, a reading: :class:`vramplan.errors.Remark`)
    as the ``question`` command shows it: each field it names replaced by its flag
    (:func:`vramplan.cli.command_flags`, the mapping errors are shown with)."""
    from vramplan.cli import command_flags
    from vramplan.errors import fields_named

    return _flagged(str(text), fields_named(text), command_flags(question), count=1)


def settings_flags(question: str, settings: dict[str, Any]) -> tuple[str, ...]:
    """The command-line flags that set ``settings`` (option name -> value, the
    ``settings`` of a change the core proposes) for ``question``, in the spelling of
    :mod:`vramplan.options`."""
    from vramplan.options import options_of

    options = {o.name: o for o in options_of(question)}
    out: list[str] = []
    for name, value in settings.items():
        o = options[name]
        if o.kind == "flag":
            if value:
                out.append(o.all_flags[0])
        elif o.kind == "switch":
            out.append(o.all_flags[0] if value else o.off_flag)
        else:
            out += [o.all_flags[0], str(value)]
    return tuple(out)


def _flagged(text: str, fields: tuple[str, ...], flags: dict[str, str], count: int = 0) -> str:
    """``text`` with each of ``fields`` (a whole word) replaced by its flag: every
    occurrence, or the first ``count``."""
    for name in sorted(fields, key=len, reverse=True):
        if name in flags:
            text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", flags[name], text, count=count)
    return text


PIPED_WIDTH = 120
"""Columns of output written to a pipe or file when ``COLUMNS`` is not set (rich would
assume 80): wide enough for every table without folding its cells."""


def console():
    """A rich Console (imported lazily: rich is slow to import): the terminal's width,
    or ``COLUMNS``, or ``PIPED_WIDTH`` when the output is not a terminal."""
    import os

    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=PIPED_WIDTH)


def table(*columns: str, title: str | None = None, right: tuple[str, ...] = ()):
    """A rich Table with the given columns; ``right`` columns are right-aligned. Nothing
    is cut short when the table is wider than the terminal (80 columns when piped): the
    first column (the name) never wraps; the others wrap, folding a long word rather
    than ending it in an ellipsis."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="right" if col in right else "left", overflow="fold", no_wrap=i == 0)
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


class TokensType(click.ParamType):
    """A token count on the command line: ``4096``, ``32k``, ``128K``, ``1M``
    (:func:`vramplan.units.parse_tokens`), within ``option``'s bounds when one is given."""

    name = "tokens"

    def __init__(self, option=None) -> None:
        self.option = option

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from vramplan.errors import InputError
        from vramplan.units import parse_tokens

        from vramplan.validate import integer_problem

        try:
            count = parse_tokens(value, "value")
        except InputError as exc:
            _fail(str(exc).removeprefix("value: "), param)
        lo, hi = 1, SIZE_MAX
        if self.option is not None:
            lo = int(self.option.minimum) if self.option.minimum is not None else lo
            hi = int(self.option.maximum) if self.option.maximum is not None else hi
        problem = integer_problem(count, lo, hi)
        if problem:
            _fail(problem, param)
        return count

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "TOKENS"



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
        kind: Any = {"int": int, "float": float, "str": str, "tokens": None}[o.kind]
        if o.kind == "tokens":
            kind = TokensType(o)
        elif o.choices:
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
