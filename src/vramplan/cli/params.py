"""``vramplan params MODEL``: parameter counts by component."""

from __future__ import annotations

import click

from vramplan.cli.common import console, emit_json, json_option, table
from vramplan.cli.model_options import model_argument, pop_arch_flags


@click.command("params")
@model_argument
@json_option
def command(model: str | None, as_json: bool, **arch: int | None) -> None:
    """Count MODEL's parameters by component.

    MODEL is a catalog name (llama-3.1-8b), a Hub id in the catalog
    (meta-llama/Llama-3.1-8B), a path to a config.json or a directory holding one,
    or a parameter count (7B). Without MODEL, --layers --hidden --heads (and
    optionally --kv-heads --intermediate --vocab ...) describe a custom architecture.
    """
    from vramplan import questions

    data = questions.params({"model": model, **pop_arch_flags(arch), **arch})
    if as_json:
        emit_json(data)
        return
    from vramplan.units import format_params

    total = data["total_params"]
    t = table("component", "parameters", "", "share", title=f"{data['model']}", right=("parameters", "", "share"))
    for c in data["components"]:
        t.add_row(c["name"], f"{c['params']:,}", format_params(c["params"]), f"{c['params'] / total:.1%}")
    t.add_row("total", f"{total:,}", format_params(total), "100.0%", style="bold")
    if data["active_params"] is None:
        t.add_row("active per token", "unknown", "", data.get("active_params_reason", "num_experts_per_tok unset"))
    elif data["active_params"] != total:
        t.add_row("active per token", f"{data['active_params']:,}", format_params(data["active_params"]),
                  f"{data['active_params'] / total:.1%}")
    out = console()
    out.print(t)
    for note in data["notes"]:
        out.print(f"note: {note}")
