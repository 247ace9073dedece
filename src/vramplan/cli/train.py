"""``vramplan train MODEL``: memory to train or fine-tune a model on one GPU."""

from __future__ import annotations

import click

from vramplan import validate as v

from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags
from vramplan.cli.common import BoundedFloat, BoundedInt, console, emit_json, json_option, table, units_option
from vramplan.cli.parallel_options import layout_options, pop_layout_flags
from vramplan.errors import InputError

_CHOICE_HELP = {
    "method": "full, lora or qlora",
    "precision": "fp32, bf16-mixed, fp16-mixed, bf16, fp16",
    "optimizer": "adamw, adamw-fused, adamw-8bit, paged-adamw-8bit, sgd, sgd-momentum, adafactor, lion",
}


@click.command("train")
@model_argument
@click.option("--method", default="full", show_default=True, help=_CHOICE_HELP["method"])
@click.option("--precision", default="bf16-mixed", show_default=True, help=_CHOICE_HELP["precision"])
@click.option("--optimizer", default="adamw", show_default=True, help=_CHOICE_HELP["optimizer"])
@click.option("--batch", type=BoundedInt(1, v.BATCH_MAX), default=1, show_default=True, help="Micro-batch size.")
@click.option("--seq", type=BoundedInt(1, v.LENGTH_MAX), default=2048, show_default=True, help="Tokens per sequence.")
@click.option("--grad-accum", type=BoundedInt(1, v.BATCH_MAX), default=1, show_default=True, help="Micro-batches per optimizer step.")
@click.option("--recompute", default=None, help="none, selective or full [default: full for qlora, else none].")
@click.option("--attention", default="sdpa", show_default=True, help="flash, sdpa or eager.")
@click.option("--lora-rank", type=BoundedInt(1, v.HIDDEN_MAX), default=16, show_default=True, help="LoRA rank r.")
@click.option("--lora-targets", default=None,
              help="Comma-separated linear modules [default: every linear module of the blocks].")
@click.option("--fused-ce", is_flag=True, help="Fused linear cross entropy (Liger-Kernel).")
@click.option("--dropout", is_flag=True, help="Dropout active in the model (GPT-2 style).")
@click.option("--activation-model", default="derived", show_default=True,
              help="derived (this tool's) or seed (the seed article's rule of thumb).")
@click.option("--seed-bytes", type=BoundedInt(1, 8), default=1, show_default=True,
              help="Bytes per value for --activation-model seed (the article's int8: 1).")
@click.option("--gpu", default=None, help="GPU to check the fit on (e.g. h100, rtx-4090).")
@click.option("--strict", is_flag=True, help="Turn warnings (sequence beyond max positions) into errors.")
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
    targets = v.comma_list("--lora-targets", lora_targets) if lora_targets is not None else None
    if targets is not None and method == "full":
        raise InputError(f"--lora-targets {lora_targets}: given with --method full (full fine-tuning has no "
                         "adapters); use --method lora or qlora, or drop --lora-targets")
    setup = TrainingSetup(method=method, precision=precision, optimizer=optimizer, batch=batch, seq=seq,
                          grad_accum=grad_accum, recompute=recompute, attention=attention, lora_rank=lora_rank,
                          lora_targets=targets, fused_ce=fused_ce, dropout=dropout,
                          activation_model=activation_model, seed_dtype_bytes=seed_bytes, strict=strict)
    flags = pop_layout_flags(layout_flags)
    if flags.given:
        _distributed(model, setup, flags, gpu, units, as_json)
        return
    est = estimate_training(model, setup)
    fit = None
    if gpu:
        est, fit = _with_gpu(model, setup, est, gpu)
    _output(est, fit, units, as_json)


def _output(est, fit: dict | None, units: str, as_json: bool) -> None:
    """The estimate as JSON (with ``fits``) or as the table, host terms included."""
    data = {**est.to_dict(), "fits": fit}
    if as_json:
        emit_json(data)
        return
    _print(data, units)
    for c in data["host_components"]:
        console().print(f"host: {c['name']} {c['bytes']:,} B ({c['note']})")


def _distributed(model, setup, flags, gpu: str | None, units: str, as_json: bool) -> None:
    """Per-GPU memory of ``setup`` on the layout the flags describe (vramplan.distributed)."""
    from vramplan.distributed import TrainingJob, estimate_training
    from vramplan.errors import InputError

    spec = model  # already resolved by model_from_cli
    if not hasattr(spec, "num_layers"):
        raise InputError(f"MODEL {spec.name!r}: layout flags need an architecture (a catalog model or config.json)")
    layout = flags.layout()
    est = estimate_training(TrainingJob(model=spec, setup=setup), layout, num_gpus=flags.total_gpus())
    if gpu:
        from vramplan.gpus import find_gpu

        g = find_gpu(gpu)
        est = est.with_verdict(g.slug, g.usable_memory_bytes)
    _output(est, None, units, as_json)


def _with_gpu(model, setup, est, gpu_name: str):
    from vramplan.gpus import find_gpu
    from vramplan.training import largest_micro_batch, largest_sequence

    gpu = find_gpu(gpu_name)
    capacity = gpu.usable_memory_bytes
    est = est.with_verdict(gpu.slug, capacity)
    fit = {"largest_micro_batch": None, "largest_seq": None}
    if setup.activation_model == "derived" and hasattr(model, "num_layers"):  # batch/seq need an architecture
        fit = {"largest_micro_batch": largest_micro_batch(model, setup, capacity),
               "largest_seq": largest_sequence(model, setup, capacity)}
    return est, fit


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
