"""``vramplan gpus``: list the built-in GPU catalogue."""

from __future__ import annotations

import click

from vramplan.cli.common import console, emit_json, json_option, table, units_option


@click.command("gpus")
@click.option("--search", "text", default="", help="Only GPUs whose name, alias, vendor or segment contains TEXT.")
@units_option
@json_option
def command(text: str, units: str, as_json: bool) -> None:
    """List the built-in GPUs and accelerators with the memory the runtime reports."""
    from vramplan import questions

    rows = questions.gpus({"search": text})["gpus"]
    if as_json:
        emit_json({"gpus": rows})
        return
    from vramplan.units import format_bytes

    t = table("gpu", "memory", "usable", "HBM GB/s", "bf16 TFLOP/s", "fp8 TFLOP/s", "link GB/s",
              right=("memory", "usable", "HBM GB/s", "bf16 TFLOP/s", "fp8 TFLOP/s", "link GB/s"))
    for r in rows:
        fp8 = "-" if r["fp8_dense_flops"] is None else f"{r['fp8_dense_flops'] / 1e12:,.0f}"
        t.add_row(r["slug"], format_bytes(r["memory_bytes"], units), format_bytes(r["usable_memory_bytes"], units),
                  f"{r['memory_bandwidth_bytes_per_s'] / 1e9:,.0f}", f"{r['bf16_dense_flops'] / 1e12:,.0f}",
                  fp8, f"{r['interconnect_bytes_per_s'] / 1e9:g}")
    console().print(t)
    if not rows:
        click.echo(f"no GPU matches {text!r}", err=True)
