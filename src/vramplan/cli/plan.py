"""``vramplan plan MODEL --train|--infer --gpu NAME [--gpus N | --max-gpus N]``: the
parallel layouts that fit, ranked, and the answers to "how many GPUs", "how large a
batch", "how long a context"."""

from __future__ import annotations

from typing import Any

import click

from vramplan.cli.common import console, emit_json, json_option, table, units_option
from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags
from vramplan.cli.parallel_options import layout_options, pop_layout_flags

from vramplan.export import ENGINES as EXPORTS
from vramplan.training import METHODS


@click.command("plan")
@model_argument
@click.option("--train/--infer", "training", default=True, help="Plan training (default) or serving.")
@click.option("--gpu", "gpu_name", required=True, help="GPU kind (see `vramplan gpus`).")
@click.option("--max-gpus", type=click.IntRange(min=1), default=None,
              help="Try GPU counts up to N (powers of two, then whole nodes) and report the fewest that fit.")
@click.option("--headroom", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              help="Share of each GPU's memory to keep free.")
@click.option("--seq", "--seq-len", "--context", "seq_len", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Tokens per sequence (training) or context held in the KV cache (serving).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Training: micro-batch size per GPU (default: try 1, 2, 4, 8). Serving: concurrent sequences.")
@click.option("--global-batch", type=click.IntRange(min=1), default=None,
              help="Sequences per optimizer step (default: 4M tokens' worth, at least one per GPU).")
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default=None,
              help="Activation recomputation (default: try each).")
@click.option("--attention", type=click.Choice(["flash", "sdpa", "eager"]), default="sdpa", show_default=True,
              help="Attention kernel (eager keeps the s x s scores).")
@click.option("--precision", default="bf16-mixed", show_default=True,
              help="fp32, bf16-mixed, fp16-mixed, bf16, fp16 (as `vramplan train`); each engine applies its own "
                   "mixed-precision recipe, printed with the plan.")
@click.option("--optimizer", default="adamw", show_default=True, help="As `vramplan train` (adamw, adamw-8bit, sgd...).")
@click.option("--method", type=click.Choice(METHODS), default="full", show_default=True,
              help="Full training, LoRA on a 16-bit base, or QLoRA on an NF4 base.")
@click.option("--lora-rank", type=click.IntRange(min=1), default=16, show_default=True, help="LoRA rank r.")
@click.option("--weights", default="bf16", show_default=True, help="Serving: weight format (bf16, fp8, awq-int4...).")
@click.option("--kv-dtype", default="fp16", show_default=True, help="Serving: KV-cache dtype.")
@click.option("--mfu", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Model FLOPs utilisation of large matrix multiplies (default 0.44); each layout's is scaled "
                   "down for small per-GPU multiplies.")
@click.option("--host-memory", "--host-ram", "host_ram", default=None,
              help="Host RAM per node offload may use (e.g. 1TiB, 512GiB); layouts needing more are dropped. "
                   "Default: 1 TiB for datacenter GPUs, 128 GiB otherwise.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Layouts to list.")
@click.option("--export", "export_to", type=click.Choice(EXPORTS), default=None,
              help="Print the best layout as a config for this engine instead of the table.")
@layout_options
@units_option
@json_option
def command(model: str | None, training: bool, gpu_name: str, max_gpus: int | None, headroom: float, seq_len: int,
            batch: int | None, global_batch: int | None, recompute: str | None, attention: str, precision: str,
            optimizer: str, method: str, lora_rank: int, weights: str, kv_dtype: str, mfu: float | None, host_ram: str | None, top: int,
            export_to: str | None, units: str, as_json: bool, **rest: Any) -> None:
    """Find the GPU counts and parallel layouts on which MODEL fits, fastest first.

    With --gpus N the layouts of exactly N GPUs are searched; with --max-gpus N every
    count up to N, reporting the fewest that fit. Layout flags (--tp 8, --zero 3,
    --fsdp full_shard...) fix that part of the layout and search the rest.
    """
    from vramplan.plans import plan_inference, plan_training
    from vramplan.training import TrainingSetup

    flags = pop_layout_flags(rest)
    spec = model_from_cli(model, pop_arch_flags(rest))
    if training:
        from vramplan.units import parse_bytes

        host = parse_bytes(host_ram, "--host-memory") if host_ram is not None else None
        setup = TrainingSetup(method=method, precision=precision, optimizer=optimizer, batch=batch or 1,
                              seq=seq_len, attention=attention, lora_rank=lora_rank)
        report = plan_training(spec, gpu_name, setup, flags, max_gpus=max_gpus, headroom=headroom,
                               micro_batch=batch, recompute=recompute, global_batch=global_batch, mfu=mfu,
                               host_bytes_per_node=host, top=top)
    else:
        report = plan_inference(spec, gpu_name, flags, context=seq_len, batch=batch or 1, weights=weights,
                                kv_dtype=kv_dtype, max_gpus=max_gpus, headroom=headroom, top=top)
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
            t.add_row(str(lay["num_gpus"]), c["describe"], str(c["micro_batch_size"]), str(lay["micro_batches"]),
                      c["recompute"], fb(c["peak_bytes"]), host, f"{c['step_s']:.2f}", f"{c['tokens_per_s']:,.0f}")
    out.print(t)
    if data["min_gpus"] is not None:
        out.print(f"fewest GPUs that fit: {data['min_gpus']}")
    if data["kind"] == "training" and data["candidates"]:
        out.print(f"recipe: {data['candidates'][0]['recipe']}")
        if data.get("largest_micro_batch"):
            b = data["largest_micro_batch"]
            out.print(f"largest micro-batch: {b['micro_batch_size']} sequences per GPU ({b['describe']})")
        if data.get("longest_context"):
            c = data["longest_context"]
            out.print(f"longest context: {c['seq_len']:,} tokens ({c['describe']}, recompute {c['recompute']})")
    if not data["candidates"]:
        out.print("[bold red]nothing fits[/bold red]; smallest per-GPU peak: "
                  f"{fb(data.get('min_peak_bytes', 0))}")
        for ch in data.get("changes", []):
            verdict = f"fits on {ch['min_gpus']} GPUs" if ch["fits"] else "still does not fit"
            out.print(f"  - {ch['change']}: needs {fb(ch['min_peak_bytes'])} per GPU ({verdict})")
    for a in data.get("assumptions", []):
        out.print(f"assumes: {a}")
