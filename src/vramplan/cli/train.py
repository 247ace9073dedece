"""``vramplan train MODEL``: memory to train or fine-tune a model on one GPU."""

from __future__ import annotations

import click

from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags
from vramplan.cli.common import click_options, console, emit_json, json_option, table, units_option
from vramplan.options import train_options
from vramplan.cli.parallel_options import layout_options, pop_layout_flags

@click.command("train")
@model_argument
@click_options(train_options())
@layout_options
@units_option
@json_option
def command(model: str | None, method: str, precision: str, optimizer: str, batch: int, seq: int, grad_accum: int,
            recompute: str | None, attention: str, lora_rank: int, lora_targets: str | None, fused_ce: bool,
            dropout: bool, activation_model: str, seed_bytes: int, gpu: str | None, strict: bool, units: str,
            as_json: bool, **layout_flags) -> None:
    """Memory to train or fine-tune MODEL on one GPU: model states, activations,
    logits and the peak over the step. With layout flags (--gpus, --dp, --tp, --pp,
    --zero, --fsdp, --offload...), the memory of the busiest GPU of that layout."""
    from vramplan.training import TrainingSetup, estimate_training

    model = model_from_cli(model, pop_arch_flags(layout_flags))
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else None
    setup = TrainingSetup(method=method, precision=precision, optimizer=optimizer, batch=batch, seq=seq,
                          grad_accum=grad_accum, recompute=recompute, attention=attention, lora_rank=lora_rank,
                          lora_targets=targets, fused_ce=fused_ce, dropout=dropout,
                          activation_model=activation_model, seed_dtype_bytes=seed_bytes, strict=strict)
    flags = pop_layout_flags(layout_flags)
    est = estimate_training(model, setup, flags.layout() if flags.given else None, gpu=gpu)
    if as_json:
        emit_json(est.to_dict())
        return
    data = est.to_dict()
    _print(data, units)
    for c in data["host_components"]:
        console().print(f"host: {c['name']} {c['bytes']:,} B ({c['note']})")


def _print(data: dict, units: str) -> None:
    from vramplan.units import format_bytes

    total = data["total_bytes"]
    t = table("component", units, "share", "note", title=f"{data['model']}: training, peak in {data['phase']}",
              right=(units, "share"))
    for c in data["components"]:
        t.add_row(c["name"], format_bytes(c["bytes"], units), f"{c['bytes'] / total:.1%}" if total else "-",
                  c["note"])
    t.add_row("total", format_bytes(total, units), "100.0%", "", style="bold")
    out = console()
    out.print(t)
    out.print("phases: " + ", ".join(f"{p['phase']} {format_bytes(p['bytes'], units)}" for p in data["phases"]))
    for key, value in data["details"].items():
        out.print(f"{key}: {value}")
    if data["verdict"]:
        v = data["verdict"]
        word = "fits" if v["fits"] else "does NOT fit"
        out.print(f"{v['gpu']}: {word}; headroom {format_bytes(v['headroom_bytes'], units)}")
        fit = data.get("fits") or {}
        if fit.get("largest_micro_batch") is not None:
            out.print(f"largest micro-batch that fits: {fit['largest_micro_batch']}; "
                      f"longest sequence: {fit['largest_seq']}")
    for a in data["assumptions"]:
        out.print(f"assumption: {a}")
    for w in data["warnings"]:
        out.print(f"warning: {w}")
