"""Pieces shared by the subcommands: output (JSON or a rich table) and model input."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click

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
        elif o.minimum is not None or o.maximum is not None:
            rng = click.IntRange if o.kind == "int" else click.FloatRange
            kind = rng(min=o.minimum, max=o.maximum, min_open=o.min_open, max_open=o.max_open)
        extra = {"required": True} if o.required else {"default": o.default}
        return click.option(*o.all_flags, o.name, type=kind, show_default=o.show_default or None, help=o.help,
                            **extra)

    def decorate(func: Any) -> Any:
        for o in reversed(tuple(options)):
            func = param(o)(func)
        return func

    return decorate
