"""``vramplan train MODEL``: memory to train or fine-tune a model on one GPU."""

from __future__ import annotations

import click

from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags
from vramplan.cli.advice import print_changes, verdict_text
from vramplan.cli.common import click_options, console, emit_json, flag_text, json_option, table, units_option
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


def _print_seed(data: dict, units: str) -> None:
    """The seed article's rule: its arithmetic in its units beside the exact bytes, term by
    term, one total per column (:mod:`vramplan.seed_article`)."""
    from vramplan.units import format_bytes

    seed = data["seed_article"]
    t = table("term", "article (its units)", f"exact ({units})",
              title=f"{data['model']}: the seed article's training rule at --precision {seed['precision']} "
                    f"({seed['bytes_per_value']} B per value)", right=(f"exact ({units})",))
    for term in seed["terms"]:
        t.add_row(term["name"], term["article"], format_bytes(term["exact_bytes"], units))
    stated = f" (article: {seed['article_stated']})" if seed["article_stated"] else ""
    t.add_row("total", f"{seed['article_total_gb']:g}GB{stated}", format_bytes(seed["exact_total_bytes"], units),
              style="bold")
    out = console()
    out.print(t)
    written = f", which it writes as {seed['article_stated']}" if seed["article_stated"] else ""
    weights, acts = seed["terms"][0]["article"].split(" x ")[0], seed["terms"][3]["article"].split(" x ")[0]
    out.print(f"article: {seed['article_line']}{written}")
    out.print(f"its units: {weights} is the count in whole billions (exactly {data['details']['trainable_params']:,} "
              f"params); {acts} is {data['details']['seed_activation_bytes_per_sample']:,} B per sample in decimal "
              "MB; its GB is 1024 of those MB")


def _print(data: dict, units: str) -> None:
    from vramplan.cli.render import host_table, print_details
    from vramplan.units import format_bytes

    for line in data.get("readings", ()):
        console().print(f"read: {flag_text(line, 'train')}")
    if data.get("seed_article"):
        _print_seed(data, units)
        _print_verdict(data, units)
        return
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
    _print_verdict(data, units)


def _print_verdict(data: dict, units: str) -> None:
    from vramplan.units import format_bytes

    out = console()
    if data["verdict"]:
        v = data["verdict"]
        word = "fits" if v["fits"] else "does NOT fit"
        out.print(f"[bold]{v['gpu']}: {word}[/bold] — {verdict_text(v, lambda b: format_bytes(b, units))}")
        fit = data.get("fits") or {}
        if fit.get("largest_micro_batch"):
            out.print(f"largest micro-batch that fits: {fit['largest_micro_batch']}; "
                      f"longest sequence: {fit['largest_seq']}")
        elif fit.get("largest_seq"):
            out.print(f"not even micro-batch 1 at this sequence; longest sequence that fits: {fit['largest_seq']}")
        print_changes(out, data.get("changes", []), lambda b: format_bytes(b, units), "train", data["model"])
    for a in data["assumptions"]:
        out.print(f"assumption: {flag_text(a, 'train')}")
    for w in data["warnings"]:
        out.print(f"warning: {flag_text(w, 'train')}")
