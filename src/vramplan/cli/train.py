"""``vramplan train MODEL``: memory to train or fine-tune a model on one GPU."""

from __future__ import annotations

import click

from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags
from vramplan.cli.common import click_options, console, emit_json, json_option, table, units_option
from vramplan.options import train_options
from vramplan.cli.parallel_options import layout_options

@click.command("train")
@model_argument
@click_options(train_options())
@layout_options
@units_option
@json_option
def command(model: str | None, units: str, as_json: bool, **values) -> None:
    """Memory to train or fine-tune MODEL on one GPU: model states, activations,
    logits and the peak over the step. With layout flags (--gpus, --dp, --tp, --pp,
    --zero, --fsdp, --offload...), the memory of the busiest GPU of that layout."""
    from vramplan import questions

    data = questions.train({"model": model_from_cli(model, pop_arch_flags(values)), **values}).to_dict()
    if as_json:
        emit_json(data)
        return
    _print(data, units)


def _print(data: dict, units: str) -> None:
    from vramplan.cli.render import host_table, print_details
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
    if data["host_components"]:
        out.print(host_table(data["host_components"], units))
    print_details(out, data["details"], units)
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
