"""``vramplan models``: list the built-in model catalog."""

from __future__ import annotations

import click

from vramplan.cli.common import console, emit_json, json_option, table


@click.command("models")
@click.option("--search", "text", default="", help="Only models whose name, Hub id or family contains TEXT.")
@json_option
def command(text: str, as_json: bool) -> None:
    """List the built-in models (their configs ship with vramplan)."""
    from vramplan.catalog import search_models
    from vramplan.model import count_params

    rows = []
    for entry in search_models(text):
        spec = entry.spec()
        counts = count_params(spec)
        rows.append({"slug": entry.slug, "hub_id": entry.hub_id, "name": entry.name, "family": entry.family,
                     "model_type": spec.model_type, "total_params": counts.total_params,
                     "active_params": counts.active_params, "attention": spec.attention_kind,
                     "layers": spec.num_layers, "max_position_embeddings": spec.max_position_embeddings,
                     "dtype": spec.dtype})
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
