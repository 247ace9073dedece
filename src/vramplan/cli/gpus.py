"""``vramplan gpus``: list the built-in GPU catalogue."""

from __future__ import annotations

import click

from vramplan.cli.common import console, emit_json, json_option, table, units_option


def gpu_row(spec) -> dict:
    """One catalogue entry as a JSON-ready dict (bytes and FLOP/s as numbers)."""
    return {"slug": spec.slug, "name": spec.name, "vendor": spec.vendor, "segment": spec.segment,
            "memory_nominal": spec.memory_nominal, "memory_bytes": spec.memory_bytes,
            "usable_memory_bytes": spec.usable_memory_bytes, "memory_note": spec.memory_note,
            "memory_bandwidth_bytes_per_s": spec.memory_bandwidth_bytes_per_s,
            "bf16_dense_flops": spec.bf16_dense_flops, "fp8_dense_flops": spec.fp8_dense_flops,
            "interconnect": spec.interconnect, "interconnect_bytes_per_s": spec.interconnect_bytes_per_s,
            "unified_memory": spec.unified_memory, "gpu_memory_fraction": spec.gpu_memory_fraction,
            "aliases": list(spec.aliases), "source": spec.source}


@click.command("gpus")
@click.option("--search", "text", default="", help="Only GPUs whose name, alias, vendor or segment contains TEXT.")
@units_option
@json_option
def command(text: str, units: str, as_json: bool) -> None:
    """List the built-in GPUs and accelerators with the memory the runtime reports."""
    from vramplan.gpus import search_gpus

    rows = [gpu_row(g) for g in search_gpus(text)]
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
