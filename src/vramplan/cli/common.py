"""Pieces shared by the subcommands: output (JSON or a rich table) and model input."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
units_option = click.option("--units", type=click.Choice(["GiB", "GB"]), default="GiB", show_default=True,
                            help="Binary (GiB = 1024^3 B, as nvidia-smi) or decimal (GB = 10^9 B) units.")


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
