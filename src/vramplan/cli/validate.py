"""``vramplan validate --device cuda``: real steps on a GPU against the trace and
the analytical estimate."""

from __future__ import annotations

import click

from vramplan import validate as v

from vramplan.cli.common import BoundedFloat, BoundedInt, console, emit_json, json_option, table, units_option

DEFAULT_CASES: tuple[tuple[str, str, int, int], ...] = (
    # (model, mode, batch, tokens): small and mid-sized models that fit a 24 GiB card
    ("qwen2.5-0.5b", "train", 2, 512),
    ("llama-3.2-1b", "train", 1, 1024),
    ("qwen2.5-0.5b", "infer", 4, 1024),
    ("llama-3.2-1b", "infer", 1, 2048),
    ("llama-3.2-3b", "infer", 1, 4096),
)
"""Cases run when no --model is given."""


@click.command("validate")
@click.option("--device", type=click.Choice(["cuda"]), default="cuda", show_default=True,
              help="Where the real steps run.")
@click.option("--model", "models", multiple=True, help="Model(s) to run (default: a built-in set of small ones).")
@click.option("--train/--infer", "train", default=None, help="Only training or only inference (default both).")
@click.option("--batch", type=BoundedInt(1, v.BATCH_MAX), default=None, help="Sequences per step (with --model).")
@click.option("--seq", type=BoundedInt(1, v.LENGTH_MAX), default=None, help="Tokens per sequence (with --model).")
@units_option
@json_option
def command(device: str, models: tuple[str, ...], train: bool | None, batch: int | None, seq: int | None,
            units: str, as_json: bool) -> None:
    """Run real steps on the GPU and compare torch.cuda.max_memory_allocated() and
    max_memory_reserved() with the trace and the analytical estimate."""
    from vramplan.trace.deps import require_exact

    require_exact()
    from vramplan.trace.compare import analytical_total
    from vramplan.trace.gpu import measure_on_cuda
    from vramplan.trace.run import resolve_config, run_trace
    from vramplan.trace.setup import TraceSetup

    modes = ("train", "infer") if train is None else (("train",) if train else ("infer",))
    if models:
        cases = [(m, mode, batch or 1, seq or 512) for m in models for mode in modes]
    else:
        cases = [c for c in DEFAULT_CASES if c[1] in modes]
    rows = []
    for model, mode, b, s in cases:
        setup = TraceSetup(mode=mode, batch_size=b, seq=s)
        _, config = resolve_config(model)
        measured = measure_on_cuda(config, setup)
        traced = run_trace(config, setup).peak_bytes
        analytical = analytical_total(model, setup)
        rows.append({"model": model, "mode": mode, "batch": b, "tokens": s, "device": measured.device_name,
                     "max_memory_allocated": measured.allocated_bytes,
                     "max_memory_reserved": measured.reserved_bytes, "trace": traced, "analytical": analytical,
                     "trace_error": traced / measured.allocated_bytes - 1,
                     "analytical_error": (analytical / measured.allocated_bytes - 1) if analytical else None})
    if as_json:
        emit_json({"device": device, "cases": rows})
        return
    from vramplan.units import format_bytes

    t = table("model", "mode", "batch x tokens", "allocated", "reserved", "trace", "err", "analytical", "err",
              title=f"real steps on {rows[0]['device'] if rows else device}",
              right=("allocated", "reserved", "trace", "err", "analytical"))
    for r in rows:
        t.add_row(r["model"], r["mode"], f"{r['batch']} x {r['tokens']}",
                  format_bytes(r["max_memory_allocated"], units), format_bytes(r["max_memory_reserved"], units),
                  format_bytes(r["trace"], units), f"{r['trace_error']:+.1%}",
                  format_bytes(r["analytical"], units) if r["analytical"] else "n/a",
                  f"{r['analytical_error']:+.1%}" if r["analytical_error"] is not None else "")
    console().print(t)
