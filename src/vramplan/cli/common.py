"""Pieces shared by the subcommands: output (JSON or a rich table) and model input."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def units_option(func: Any) -> Any:
    """``--units GiB|GB`` (declared in :data:`vramplan.options.COMMON_OPTIONS`)."""
    from vramplan.options import COMMON_OPTIONS

    return click_options(COMMON_OPTIONS)(func)


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout, naming the model's source when it was
    read from files (:func:`vramplan.cli.model_options.remember_source`)."""
    ctx = click.get_current_context(silent=True)
    source = ctx.meta.get("vramplan.model_source") if ctx is not None else None
    if source and isinstance(data, dict):
        data = {**data, **source}
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


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


class TokensType(click.ParamType):
    """A token count on the command line: ``4096``, ``32k``, ``128K``, ``1M``
    (:func:`vramplan.units.parse_tokens`), within ``option``'s bounds when one is given."""

    name = "tokens"

    def __init__(self, option=None) -> None:
        self.option = option

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from vramplan.errors import InputError
        from vramplan.units import parse_tokens

        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        try:
            if self.option is None:
                return parse_tokens(text, "value")
            return self.option.parse(text, self.option.all_flags[0])
        except InputError as exc:
            prefix = "value: " if self.option is None else f"Invalid value for '{self.option.all_flags[0]}': "
            self.fail(str(exc).removeprefix(prefix), param, ctx)


TOKENS = TokensType()
"""The click type of a token-count option declared outside :mod:`vramplan.options`."""


def click_options(options) -> Any:
    """A decorator adding click options built from the core's declarations
    (:mod:`vramplan.options`), in their order."""

    def param(o) -> Any:
        if o.kind == "flag":
            return click.option(*o.all_flags, o.name, is_flag=True, help=o.help)
        if o.kind == "switch":
            return click.option(f"{o.all_flags[0]}/{o.off_flag}", o.name, default=o.default, help=o.help)
        kind: Any = {"int": int, "float": float, "str": str, "tokens": None}[o.kind]
        if o.kind == "tokens":
            kind = TokensType(o)
        elif o.choices:
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
