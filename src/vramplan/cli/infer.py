"""``vramplan infer MODEL``: memory to serve a model, per GPU, with a verdict."""

from __future__ import annotations

import click

from vramplan.cli.advice import print_changes, verdict_text
from vramplan.cli.common import click_options, console, emit_json, flag_text, json_option, table, units_option
from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags
from vramplan.options import infer_options


def _list_formats() -> None:
    from vramplan.gguf_types import GGML_TYPES, GGUF_RECIPES
    from vramplan.quant import FORMATS

    out = console()
    t = table("format", "bits/weight", "description", title="Weight formats (--weights)", right=("bits/weight",))
    for f in FORMATS.values():
        t.add_row(f.name, f"{f.bits_per_weight():.3f}", f.description)
    for r in GGUF_RECIPES.values():
        t.add_row(r.name, f"{GGML_TYPES[r.base].bits_per_weight:.3f}", f"GGUF: {r.description}")
    out.print(t)


def _render(est, units: str) -> None:
    from vramplan.units import format_bytes

    def fmt(n: int) -> str:
        return format_bytes(n, units)

    out = console()
    for line in est.readings:
        out.print(f"read: {flag_text(line, 'infer')}")
    d = est.details
    title = (f"{est.model} · {d['engine']} · {d['weights_format']} · batch {d['batch']} x {d['context_tokens']:,} "
             f"tokens · per GPU (tp={d['tp']}) · peak in {est.phase}")
    t = table("component", "memory", "note", title=title, right=("memory",))
    for c in est.components:
        t.add_row(c.name, fmt(c.bytes), c.note)
    t.add_row("total", fmt(est.total_bytes), "", style="bold")
    out.print(t)
    if est.host_components:
        h = table("host component", "memory", "note", title="Host RAM", right=("memory",))
        for c in est.host_components:
            h.add_row(c.name, fmt(c.bytes), c.note)
        h.add_row("total", fmt(est.host_bytes), "", style="bold")
        out.print(h)
    err = d["rule_of_thumb_error"]
    out.print(f"rule of thumb (1.2 x weights {fmt(d['weights_bytes'])}): {fmt(d['rule_of_thumb_bytes'])}"
              + (f", {err:+.0%} against this estimate" if err is not None else ""))
    for key in ("kv_budget_bytes", "kv_blocks", "max_concurrent_sequences", "max_context_at_batch"):
        if d.get(key) is not None:
            value = fmt(d[key]) if key.endswith("bytes") else f"{d[key]:,}"
            out.print(f"vLLM {key.replace('_', ' ')}: {value}")
    if est.verdict is not None:
        v = est.verdict
        word = "fits" if v.fits else "does NOT fit"
        out.print(f"[bold]{v.gpu}: {word}[/bold] — {verdict_text(v.to_dict(), fmt)}")
    for w in est.warnings:
        out.print(f"[yellow]warning:[/yellow] {flag_text(w, 'infer')}")
    print_changes(out, [c.to_dict() for c in est.changes], fmt, "infer", est.model)


@click.command("infer")
@model_argument
@click_options(infer_options())
@units_option
@json_option
def command(model: str | None, list_formats: bool, units: str, as_json: bool, **values) -> None:
    """Memory to serve MODEL: weights, KV cache, activations and overheads per GPU.

    MODEL is a catalog name (llama-3.1-8b), a config.json path, or --layers/--hidden/--heads.
    """
    if list_formats:
        _list_formats()
        return
    from vramplan import questions

    est = questions.infer({"model": model_from_cli(model, pop_arch_flags(values)), **values})
    if as_json:
        emit_json(est.to_dict())
        return
    _render(est, units)
    for key, value in est.solved:
        if key == "n_gpu_layers":
            from vramplan.units import format_bytes

            console().print(f"[bold]--n-gpu-layers[/bold] that fit {values['gpu']}: {value}"
                            + (" (not even 0: the compute buffer and context alone do not fit)" if value < 0 else
                               f"; host RAM for the rest: {format_bytes(est.host_bytes, units)}"))
            continue
        console().print(f"[bold]{key.replace('_', ' ')}[/bold] on {values['gpu']}: {value:,}"
                        + (" (nothing fits)" if value == 0 else ""))
