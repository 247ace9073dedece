"""``vramplan plan MODEL --train|--infer --gpu NAME [--gpus N | --max-gpus N]``: the
parallel layouts that fit, ranked, and the answers to "how many GPUs", "how large a
batch", "how long a context"."""

from __future__ import annotations

from typing import Any

import click

from vramplan import validate as v

from vramplan.cli.common import BoundedFloat, BoundedInt, console, emit_json, json_option, table, units_option
from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags
from vramplan.cli.parallel_options import LayoutFlags, layout_options, pop_layout_flags
from vramplan.errors import InputError

METHODS = ("full", "lora", "qlora")
EXPORTS = ("deepspeed", "fsdp", "megatron", "vllm", "llamacpp")


@click.command("plan")
@model_argument
@click.option("--train/--infer", "training", default=True, help="Plan training (default) or serving.")
@click.option("--gpu", "gpu_name", required=True, help="GPU kind (see `vramplan gpus`).")
@click.option("--max-gpus", type=BoundedInt(1, v.GPUS_MAX), default=None,
              help="Try GPU counts up to N (powers of two, then whole nodes) and report the fewest that fit.")
@click.option("--headroom", type=BoundedFloat(0, 1, hi_open=True), default=0.05, show_default=True,
              help="Share of each GPU's memory to keep free.")
@click.option("--seq", "--seq-len", "--context", "seq_len", type=BoundedInt(1, v.LENGTH_MAX), default=4096, show_default=True,
              help="Tokens per sequence (training) or context held in the KV cache (serving).")
@click.option("--batch", type=BoundedInt(1, v.BATCH_MAX), default=None,
              help="Training: micro-batch size per GPU (default: try 1, 2, 4, 8). Serving: concurrent sequences.")
@click.option("--global-batch", type=BoundedInt(1, v.BATCH_MAX), default=None,
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
@click.option("--lora-rank", type=BoundedInt(1, v.HIDDEN_MAX), default=16, show_default=True, help="LoRA rank r.")
@click.option("--weights", default="bf16", show_default=True, help="Serving: weight format (bf16, fp8, awq-int4...).")
@click.option("--kv-dtype", default="fp16", show_default=True, help="Serving: KV-cache dtype.")
@click.option("--mfu", type=BoundedFloat(0, 1, lo_open=True), default=None,
              help="Model FLOPs utilisation of large matrix multiplies (default 0.44); each layout's is scaled "
                   "down for small per-GPU multiplies.")
@click.option("--host-memory", "--host-ram", "host_ram", default=None,
              help="Host RAM per node offload may use (e.g. 1TiB, 512GiB); layouts needing more are dropped. "
                   "Default: 1 TiB for datacenter GPUs, 128 GiB otherwise.")
@click.option("--top", type=BoundedInt(1, 10**4), default=10, show_default=True, help="Layouts to list.")
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
    from vramplan.gpus import find_gpu
    from vramplan.model import ParamOnlyModel

    flags = pop_layout_flags(rest)
    spec = model_from_cli(model, pop_arch_flags(rest))
    if isinstance(spec, ParamOnlyModel):
        raise InputError(f"MODEL {spec.name!r}: a bare parameter count has no architecture; planning needs "
                         "a catalog model, a config.json, or --layers/--hidden/--heads")
    gpu = find_gpu(gpu_name)
    counts = _gpu_counts(flags, max_gpus)
    _check_flags(flags, spec)
    if training:
        from vramplan.units import parse_bytes

        host = parse_bytes(host_ram, "--host-memory") if host_ram is not None else None
        data = _plan_training(spec, gpu, counts, flags, headroom=headroom, seq_len=seq_len, batch=batch,
                              global_batch=global_batch, recompute=recompute, attention=attention,
                              precision=precision, optimizer=optimizer, method=method, lora_rank=lora_rank,
                              mfu=mfu, top=top, host=host)
    else:
        data = _plan_serving(spec, gpu, counts, flags, headroom=headroom, context=seq_len, batch=batch or 1,
                             weights=weights, kv_dtype=kv_dtype, top=top)
    if export_to:
        _export(export_to, data, spec, training)
        return
    if as_json:
        emit_json(data)
        return
    _render(data, units)


def _check_flags(flags: LayoutFlags, spec) -> None:
    """Reject degrees that cannot work before searching: with --gpus the degrees given
    must divide it (the error prints every factor), and tp/pp/ep must suit the model."""
    from vramplan.parallel import ParallelLayout

    if not flags.any_degree and flags.zero is None and flags.fsdp is None:
        return
    from dataclasses import replace

    flags = replace(flags, virtual_stages=None, micro_batches=None)  # searched with the rest
    if flags.total_gpus() is not None:
        flags.layout().check_model(spec)
        return
    ParallelLayout(dp=flags.dp or 1, tp=flags.tp or 1, pp=flags.pp or 1, cp=flags.cp or 1,
                   ep=flags.ep or 1, zero_stage=int(flags.zero or 0), fsdp=flags.fsdp or "none",
                   offload=flags.offload or "none").check_model(spec)


def _gpu_counts(flags: LayoutFlags, max_gpus: int | None) -> tuple[int, ...]:
    from vramplan.planner import gpu_counts_up_to

    total = flags.total_gpus()
    if total is not None and max_gpus is not None:
        raise InputError(f"--gpus {total} and --max-gpus {max_gpus}: give one or the other")
    if total is not None:
        return (total,)
    return gpu_counts_up_to(max_gpus or flags.node_size(), flags.node_size())


def _plan_training(spec, gpu, counts, flags: LayoutFlags, *, headroom, seq_len, batch, global_batch, recompute,
                   attention, precision, optimizer, method, lora_rank, mfu, top, host) -> dict:
    from vramplan.distributed import TrainingJob, check_attention_for_cp
    from vramplan.planner import (
        DEFAULT_MFU,
        PlanRequest,
        cheapest_changes,
        engine_settings,
        largest_micro_batch,
        longest_context,
        plan,
    )

    from vramplan.training import TrainingSetup

    setup = TrainingSetup(method=method, precision=precision, optimizer=optimizer, batch=batch or 1, seq=seq_len,
                          attention=attention, lora_rank=lora_rank)
    job = TrainingJob(model=spec, setup=setup)
    check_attention_for_cp(job, flags.cp or 1)
    fixed = tuple((k, v) for k, v in (("dp", flags.dp), ("tp", flags.tp), ("pp", flags.pp), ("cp", flags.cp),
                                      ("ep", flags.ep), ("m", flags.micro_batches)) if v is not None)
    if flags.sp:
        fixed += (("sp", 1),)
    engines = engine_settings(zero=int(flags.zero) if flags.zero is not None else None, fsdp=flags.fsdp,
                              offload=flags.offload)
    if not engines:
        raise InputError(f"--zero {flags.zero} --fsdp {flags.fsdp} --offload {flags.offload}: no engine setting "
                         "matches; ZeRO offload needs stage 2 or 3, FSDP offloads with --offload params")
    req = PlanRequest(job=job, gpu=gpu, gpu_counts=counts, headroom=headroom, gpus_per_node=flags.node_size(),
                      global_batch=global_batch, mfu=mfu or DEFAULT_MFU,
                      micro_batch_sizes=(batch,) if batch else (1, 2, 4, 8),
                      recomputes=(recompute,) if recompute else ("none", "selective", "full"),
                      fixed_degrees=fixed, engines=engines, host_bytes_per_node=host,
                      virtual_stages=flags.virtual_stages or 1)
    result = plan(req, top=top)
    if result.evaluated == 0:
        from vramplan.errors import LayoutError

        raise LayoutError(f"no layout of {', '.join(map(str, counts))} GPU(s) satisfies the fixed degrees "
                          f"{dict(fixed) or '(none)'} with global batch {global_batch or 'default'}: the degrees "
                          "must multiply to the GPU count, tp stays inside a node of "
                          f"{flags.node_size()} GPUs, and dp x micro-batch must divide the global batch")
    data: dict[str, Any] = {"model": spec.name, "kind": "training", "gpu": gpu.slug,
                            "budget_bytes": req.budget_bytes, "gpu_counts": list(counts),
                            "seq_len": seq_len, "precision": precision, "method": method, **result.to_dict()}
    for cand in data["candidates"]:
        from vramplan.parallel import RECIPES

        cand["recipe"] = RECIPES[cand["layout"]["engine"]]
    if result.candidates:
        biggest = largest_micro_batch(req)
        ctx = longest_context(req)
        data["largest_micro_batch"] = biggest.to_dict() if biggest else None
        data["longest_context"] = {"seq_len": ctx[0], **ctx[1].to_dict()} if ctx else None
        data["changes"] = []
    else:
        data["largest_micro_batch"] = None
        data["longest_context"] = None
        data["changes"] = [c.to_dict() for c in cheapest_changes(req)]
    return data


def _plan_serving(spec, gpu, counts, flags: LayoutFlags, *, headroom, context, batch, weights, kv_dtype,
                  top) -> dict:
    from vramplan.planner import InferenceJob, plan_inference

    job = InferenceJob(model=spec, weights=weights, context=context, batch=batch, kv_dtype=kv_dtype)
    cands, evaluated = plan_inference(job, gpu, counts, headroom=headroom, gpus_per_node=flags.node_size(), top=top)
    if flags.tp is not None or flags.pp is not None:
        cands = tuple(c for c in cands if (flags.tp is None or c.tp == flags.tp)
                      and (flags.pp is None or c.pp == flags.pp))
    return {"model": spec.name, "kind": "inference", "gpu": gpu.slug, "budget_bytes":
            int(gpu.usable_memory_bytes * (1 - headroom)), "usable_bytes": gpu.usable_memory_bytes,
            "gpu_counts": list(counts), "context": context,
            "batch": batch, "weights": weights, "kv_dtype": kv_dtype, "evaluated": evaluated,
            "candidates": [c.to_dict() for c in cands], "min_gpus": cands[0].num_gpus if cands else None,
            "assumptions": ["memory per (tp, sequences per replica) from vramplan.inference (engine hf: weights, "
                            "KV cache, prefill activations, logits, overheads)",
                            "pipeline stages keep their share of weights and KV cache, all of the rest",
                            "decode time: bytes each GPU reads per token / HBM bandwidth, pipeline stages in turn"]}


def _export(engine: str, data: dict, spec, training: bool) -> None:
    from vramplan.export import export_config

    if not data["candidates"]:
        raise InputError("--export: no layout fits, nothing to export (drop --export to see what would fit)")
    click.echo(export_config(engine, data, spec, training=training))


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
