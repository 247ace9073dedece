"""``vramplan models``: list the built-in model catalog."""

from __future__ import annotations

import click

from vramplan.cli.common import console, emit_json, json_option, table


@click.command("models")
@click.option("--search", "text", default="", help="Only models whose name, Hub id or family contains TEXT.")
@json_option
def command(text: str, as_json: bool) -> None:
    """List the built-in models (their configs ship with vramplan)."""
    from vramplan import questions

    rows = questions.models({"search": text})["models"]
    if as_json:
        emit_json({"models": rows})
        return
    from vramplan.units import format_params

    t = table("model", "Hub id", "type", "params", "active", "attn", "layers", "context", "dtype",
              right=("params", "active", "layers", "context"))
    for r in rows:
        t.add_row(r["slug"], r["hub_id"], r["model_type"], format_params(r["total_params"]),
                  format_params(r["active_params"]), r["attention"], str(r["layers"]),
                  f"{r['max_position_embeddings']:,}", r["dtype"])
    console().print(t)
    if not rows:
        click.echo(f"no model matches {text!r}", err=True)
