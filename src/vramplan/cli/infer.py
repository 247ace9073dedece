"""``vramplan infer MODEL``: memory to serve a model, per GPU, with a verdict."""

from __future__ import annotations

import click

from vramplan import validate as v

from vramplan.cli.common import BoundedFloat, BoundedInt, console, emit_json, json_option, table, units_option
from vramplan.cli.model_options import model_argument, model_from_cli, pop_arch_flags


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
        out.print(f"[bold]{v.gpu}: {word}[/bold] — needs {fmt(v.required_bytes)} of {fmt(v.capacity_bytes)}, "
                  f"headroom {fmt(v.headroom_bytes)}" + (f" (keeping {fmt(v.reserve_bytes)} free)"
                                                          if v.reserve_bytes else ""))
    for w in est.warnings:
        out.print(f"[yellow]warning:[/yellow] {w}")


@click.command("infer")
@model_argument
@click.option("--engine", type=click.Choice(["hf", "vllm", "llamacpp"]), default="hf", show_default=True,
              help="transformers generate, vLLM, or llama.cpp.")
@click.option("--weights", default=None, help="Weights format (bf16, nf4-dq, gptq-int4-g128, awq, fp8, Q4_K_M...); "
                                              "default: the checkpoint's own.")
@click.option("--kv-dtype", default=None, help="KV cache dtype: fp16, bf16, fp8, int8, q8_0, q4_0 (default: compute dtype).")
@click.option("--batch", type=BoundedInt(1, v.BATCH_MAX), default=1, show_default=True, help="Sequences held at once.")
@click.option("--context", type=BoundedInt(1, v.LENGTH_MAX), default=None,
              help="Tokens per sequence, prompt + generated (default min(4096, max positions)).")
@click.option("--prompt", type=BoundedInt(1, v.LENGTH_MAX), default=None, help="Prompt tokens prefilled (default: --context).")
@click.option("--prefill-chunk", type=BoundedInt(1, v.LENGTH_MAX), default=None, help="Chunked prefill: tokens per pass.")
@click.option("--tp", type=BoundedInt(1, v.GPUS_MAX), default=1, show_default=True, help="Tensor-parallel GPUs.")
@click.option("--attention", type=click.Choice(["sdpa", "eager", "flash"]), default="sdpa", show_default=True,
              help="transformers attention implementation.")
@click.option("--gpu", default=None, help="GPU for the verdict (see `vramplan gpus`).")
@click.option("--gpu-memory-utilization", type=BoundedFloat(0, 1, lo_open=True), default=0.9, show_default=True, help="vLLM's share of the GPU.")
@click.option("--max-num-seqs", type=BoundedInt(1, v.BATCH_MAX), default=None, help="vLLM max_num_seqs.")
@click.option("--max-num-batched-tokens", type=BoundedInt(1, v.LENGTH_MAX), default=None, help="vLLM max_num_batched_tokens.")
@click.option("--block-size", type=BoundedInt(1, v.LENGTH_MAX), default=16, show_default=True, help="vLLM KV block size.")
@click.option("--enforce-eager", is_flag=True, help="vLLM without CUDA graphs.")
@click.option("--n-gpu-layers", type=BoundedInt(0, v.LAYERS_MAX + 1), default=None, help="llama.cpp layers on the GPU (default all).")
@click.option("--n-ubatch", type=BoundedInt(1, v.LENGTH_MAX), default=512, show_default=True, help="llama.cpp micro-batch.")
@click.option("--no-flash-attn", is_flag=True, help="llama.cpp without flash attention.")
@click.option("--cuda-context", default=None, help="Override the CUDA context size (e.g. 600MiB).")
@click.option("--reserve", default=None, help="Memory to keep free on the GPU (e.g. 2GiB).")
@click.option("--max-context", "solve_context", is_flag=True, help="Find the longest context that fits --gpu.")
@click.option("--max-batch", "solve_batch", is_flag=True, help="Find the largest batch that fits --gpu.")
@click.option("--strict", is_flag=True, help="Context beyond max positions is an error, not a warning.")
@click.option("--list-formats", is_flag=True, help="List the weight formats and exit.")
@units_option
@json_option
def command(model: str | None, engine: str, weights: str | None, kv_dtype: str | None, batch: int,
            context: int | None, prompt: int | None, prefill_chunk: int | None, tp: int, attention: str,
            gpu: str | None, gpu_memory_utilization: float, max_num_seqs: int | None,
            max_num_batched_tokens: int | None, block_size: int, enforce_eager: bool, n_gpu_layers: int | None,
            n_ubatch: int, no_flash_attn: bool, cuda_context: str | None, reserve: str | None, solve_context: bool,
            solve_batch: bool, strict: bool, list_formats: bool, units: str, as_json: bool, **arch: int | None) -> None:
    """Memory to serve MODEL: weights, KV cache, activations and overheads per GPU.

    MODEL is a catalog name (llama-3.1-8b), a config.json path, or --layers/--hidden/--heads.
    """
    if list_formats:
        _list_formats()
        return
    from dataclasses import replace

    from vramplan.inference import InferenceSetup, estimate_inference, max_batch, max_context
    from vramplan.memory.overhead import Overheads
    from vramplan.units import parse_bytes

    spec = model_from_cli(model, pop_arch_flags(arch))
    overheads = Overheads()
    if cuda_context is not None:
        overheads = replace(overheads, cuda_context_bytes=parse_bytes(cuda_context, "--cuda-context"))
    setup = InferenceSetup(
        engine=engine, weights=weights, kv_dtype=kv_dtype, batch=batch, context=context, prompt=prompt,
        prefill_chunk=prefill_chunk, tp=tp, attention=attention, gpu=gpu,
        gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens, block_size=block_size, enforce_eager=enforce_eager,
        n_gpu_layers=n_gpu_layers, n_ubatch=n_ubatch, flash_attention=not no_flash_attn, strict=strict,
        reserve_bytes=parse_bytes(reserve, "--reserve") if reserve else 0, overheads=overheads)
    solved: dict[str, int] = {}
    if solve_context:
        solved["max_context"] = max_context(spec, setup)
        setup = replace(setup, context=max(1, solved["max_context"]), prompt=None)
    if solve_batch:
        solved["max_batch"] = max_batch(spec, setup)
        setup = replace(setup, batch=max(1, solved["max_batch"]))
    est = estimate_inference(spec, setup)
    if as_json:
        emit_json({**est.to_dict(), "solved": solved})
        return
    _render(est, units)
    for key, value in solved.items():
        console().print(f"[bold]{key.replace('_', ' ')}[/bold] on {gpu}: {value:,}"
                        + (" (nothing fits)" if value == 0 else ""))
