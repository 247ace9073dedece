"""``vramplan rl MODEL --algo grpo``: memory of a post-training job with several models."""

from __future__ import annotations

import click

from vramplan.cli.advice import verdict_text
from vramplan.cli.common import (click_options, console, emit_json, flag_text, json_option, settings_flags, table,
                                 units_option)
from vramplan.options import rl_options


@click.command("rl")
@click.argument("model")
@click_options(rl_options())
@units_option
@json_option
def command(model: str, units: str, as_json: bool, export: str | None, no_solve: bool, **flags) -> None:
    """Per-GPU memory of a post-training job (GRPO, PPO, DPO...): each phase (rollout,
    weight sync, scoring, training) by role, the peak and what sets it, host RAM per
    node, and the settings that make it fit."""
    from vramplan import questions

    values = {"model": model, **flags}
    if export:
        from vramplan.export.rl import render

        click.echo(render(export, questions.rl_job(values)), nl=False)
        return
    data = questions.rl({**values, "no_solve": no_solve}).to_dict()
    if as_json:
        emit_json(data)
        return
    _print(data, units)


TABLE_WIDTH = 110
"""Columns the table is laid out in at least (eight roles and the total fit)."""


def _print(data: dict, units: str) -> None:
    from vramplan.units import GB, GiB, format_bytes

    out = console()
    if out.width < TABLE_WIDTH:  # a role per column: keep the table whole when piped (80 columns)
        from rich.console import Console

        out = Console(width=TABLE_WIDTH)
    scale = GiB if units == "GiB" else GB

    def b(n: int | None) -> str:
        return "-" if n is None else format_bytes(n, units)

    def cell(n: int) -> str:
        return f"{n / scale:.2f}"

    out.print(f"{data['model']}: {data['algo']} on {data['gpus']} x {data['gpu']}, {data['placement']}; "
              f"roles: {', '.join(data['roles'])}")
    for g in data["groups"]:
        roles = sorted({r for p in g["phases"] for r in p["by_role"]})
        t = table("phase", *roles, "total", title=f"{g['group']} GPUs ({g['num_gpus']}), per GPU, {units}",
                  right=(*roles, "total"))
        t.columns[0].min_width = max(len(p["phase"]) + (7 if p["phase"] == g["peak_phase"] else 0)
                                     for p in g["phases"])
        for col in t.columns:
            col.no_wrap = True
            col.min_width = max(col.min_width or 0, len(str(col.header)))
        for p in g["phases"]:
            mark = " (peak)" if p["phase"] == g["peak_phase"] else ""
            t.add_row(p["phase"] + mark, *[cell(p["by_role"].get(r, 0)) for r in roles], cell(p["total_bytes"]))
        out.print(t)
        word = "fits" if g["fits"] else "does NOT fit"
        out.print(f"{g['group']}: peak {b(g['peak_bytes'])} in {g['peak_phase']} (set by {g['peak_role']}); "
                  f"{word}: {verdict_text(g['verdict'], b)}")
    r = data["rollout"]
    if r:
        out.print(f"rollout: {r['instances']} vLLM instance(s) x tp {r['tp']} at gpu_memory_utilization "
                  f"{r['gpu_memory_utilization']}; KV pool {b(r['kv_pool_bytes'])} per GPU, "
                  f"{r['sequences_per_instance']} sequences per instance need {b(r['kv_needed_bytes'])}; "
                  f"{r['concurrent_sequences']} at once, {r['waves']} wave(s)")
    if data["host"]:
        out.print(f"host RAM per node: {b(data['host_bytes_per_node'])} ("
                  + "; ".join(f"{h['role']} {h['name']} {b(h['bytes_per_node'])}" for h in data["host"]) + ")")
    s = data["solvers"]
    u = s["gpu_memory_utilization"]
    if u["smallest"] is not None and u["largest"] is not None:
        out.print(f"gpu_memory_utilization that works: {u['smallest']} .. {u['largest']}")
    elif u["smallest"] is not None:
        out.print(f"gpu_memory_utilization: vLLM starts from {u['smallest']}, but no value fits every phase")
    if s["longest_completion_tokens"] is not None:
        out.print(f"longest completion that fits: {s['longest_completion_tokens']} tokens; most generations in one "
                  f"wave: {s['most_generations']}")
    if s["placements"]:
        best = s["placements"][0]
        where = "colocated" if best["placement"] == "colocated" else \
            f"split {best['engine_gpus']} engine + {best['trainer_gpus']} trainer GPUs"
        out.print(f"best placement on {data['gpus']} GPUs: {where} ({'fits' if best['fits'] else 'does not fit'})")
    for c in data["advice"]:
        out.print(f"advice: {' '.join(settings_flags('rl', c['settings']))} ({c['change']}): peak {b(c['peak_bytes'])} "
                  f"({'fits' if c['fits'] else 'still too big'})")
    for a in data["assumptions"]:
        out.print(f"assumption: {flag_text(a, 'rl')}")
    for w in data["warnings"]:
        out.print(f"warning: {flag_text(w, 'rl')}")
