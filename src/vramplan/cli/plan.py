"""``vramplan plan MODEL --train|--infer --gpu NAME [--gpus N | --max-gpus N]``: the
parallel layouts that fit, ranked, and the answers to "how many GPUs", "how large a
batch", "how long a context"."""

from __future__ import annotations

import click

from vramplan.cli.common import (click_options, console, emit_json, flag_text, json_option, settings_flags, table,
                                 units_option)
from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags
from vramplan.cli.parallel_options import layout_options
from vramplan.options import plan_options

@click.command("plan")
@model_argument
@click_options(plan_options())
@layout_options
@units_option
@json_option
def command(model: str | None, export_to: str | None, units: str, as_json: bool, **values) -> None:
    """Find the GPU counts and parallel layouts on which MODEL fits, fastest first.

    With --gpus N the layouts of exactly N GPUs are searched; with --max-gpus N
    every count up to N, reporting the fewest that fit. Layout flags (--tp 8,
    --zero 3, --fsdp full_shard...) fix that part of the layout and search the
    rest.
    """
    from vramplan import questions

    report = questions.plan({"model": model_from_cli(model, pop_arch_flags(values)), **values})
    if export_to:
        from vramplan.export import export_config

        click.echo(export_config(export_to, report))
        return
    if as_json:
        emit_json(report.to_dict())
        return
    _render(report.to_dict(), units)


def _render(data: dict, units: str) -> None:
    from vramplan.units import format_bytes

    out = console()
    fb = lambda b: format_bytes(b, units)  # noqa: E731
    out.print(f"[bold]{data['model']}[/bold] on {data['gpu']}: budget {fb(data['budget_bytes'])} per GPU, "
              f"{data['evaluated']:,} layouts evaluated")
    if data["kind"] == "inference":
        t = table("GPUs", "tp", "pp", "replicas", "per GPU", "weights", "KV cache", "other", "decode ms/token",
                  right=("GPUs", "tp", "pp", "replicas", "per GPU", "weights", "KV cache", "other", "decode ms/token"))
        for c in data["candidates"]:
            t.add_row(str(c["num_gpus"]), str(c["tp"]), str(c["pp"]), str(c["replicas"]), fb(c["peak_bytes"]),
                      fb(c["weights_bytes"]), fb(c["kv_cache_bytes"]), fb(c["other_bytes"]),
                      f"{c['decode_ms_per_token']:.1f}")
    else:
        t = table("GPUs", "layout", "mbs", "m", "recompute", "per GPU", "host/node", "step s", "tokens/s",
                  right=("GPUs", "mbs", "m", "per GPU", "host/node", "step s", "tokens/s"))
        for c in data["candidates"]:
            lay = c["layout"]
            host = fb(c["host_bytes_per_node"]) if c["host_bytes_per_node"] else "-"
            t.add_row(str(lay["num_gpus"]), f"{c['describe']} ({lay['engine']})", str(c["micro_batch_size"]),
                      str(lay["micro_batches"]),
                      c["recompute"], fb(c["peak_bytes"]), host, f"{c['step_s']:.2f}", f"{c['tokens_per_s']:,.0f}")
    out.print(t)
    if data["min_gpus"] is not None:
        without = data.get("min_gpus_without_offload")
        note = ""
        if data["kind"] == "training" and without != data["min_gpus"]:
            note = (f" (with CPU offload, ranked after layouts without it; without offload: {without})"
                    if without else " (with CPU offload only)")
        out.print(f"fewest GPUs that fit: {data['min_gpus']}{note}")
    if data["kind"] == "training" and data["candidates"]:
        out.print(f"recipe: {data['candidates'][0]['recipe']}")
        if data.get("largest_micro_batch"):
            b = data["largest_micro_batch"]
            out.print(f"largest micro-batch: {b['micro_batch_size']} sequences per GPU ({b['describe']})")
        if data.get("longest_context"):
            c = data["longest_context"]
            out.print(f"longest context: {c['seq']:,} tokens ({c['describe']}, recompute {c['recompute']})")
    if not data["candidates"]:
        smallest = data.get("min_peak_bytes")
        out.print("[bold red]nothing fits[/bold red]"
                  + (f"; smallest per-GPU peak: {fb(smallest)}" if smallest is not None else ""))
        for ch in data.get("changes", []):
            verdict = f"fits on {ch['min_gpus']} GPUs" if ch["fits"] else "still does not fit"
            out.print(f"  - {ch['change']}: needs {fb(ch['min_peak_bytes'])} per GPU ({verdict}): "
                      f"add {' '.join(settings_flags('plan', ch['settings']))}")
    for a in data.get("assumptions", []):
        out.print(f"assumes: {flag_text(a, 'plan')}")
