"""``vramplan trace MODEL --train|--infer``: exact mode, one real step on fake tensors."""

from __future__ import annotations

import click

from vramplan.cli.advice import verdict_text
from vramplan import validate as v

from vramplan.cli.common import BoundedFloat, BoundedInt, console, emit_json, flag_text, json_option, table, units_option
from vramplan.errors import InputError
from vramplan.memory.vision_tower import MAX_IMAGES
from vramplan.model.towers import MAX_IMAGE_SIDE

FULL_TRACE_MAX_LAYERS = 48
"""``--layers auto`` traces every layer up to this depth (an 8B model takes about
15 s here); deeper models are traced at two short depths and extended per layer."""


def _render(result, est, units: str, svg_path: str | None) -> None:
    from vramplan.units import format_bytes

    def fmt(n: int) -> str:
        return format_bytes(n, units)

    s = result.setup
    what = (f"train {s.method} {s.precision} {s.optimizer}/{s.optimizer_impl}" if s.training
            else f"infer {s.precision if s.precision == 'fp32' else 'bf16'} +{s.decode_tokens} decode")
    images = f" + {s.images} image(s)" if s.images else ""
    title = (f"{result.model} · {what} · batch {s.batch_size} x {s.seq} tokens{images} · {s.attention}"
             f"{' · recompute' if s.recompute else ''} · peak in {result.peak_phase}")
    t = table("component", "memory", "share", title=title, right=("memory", "share"))
    for c in est.components:
        t.add_row(c.name, fmt(c.bytes), f"{c.bytes / max(est.total_bytes, 1):.1%}")
    t.add_row("peak (allocated)", fmt(est.total_bytes), "", style="bold")
    out = console()
    out.print(t)
    out.print("phases: " + ", ".join(f"{p} {fmt(b)}" for p, b in est.phases))
    if est.verdict is not None:
        v = est.verdict
        word = "fits" if v.fits else "does NOT fit"
        out.print(f"[bold]{v.gpu}: {word}[/bold] — {verdict_text(v.to_dict(), fmt)}")
    for a in est.assumptions:
        out.print(f"note: {flag_text(a, 'trace')}")
    out.print(f"traced in {result.seconds:.1f} s" + (f"; timeline written to {svg_path}" if svg_path else ""))


@click.command("trace")
@click.argument("model")
@click.option("--train/--infer", "train", default=True, help="Trace a training step (default) or prefill + decode.")
@click.option("--batch", type=BoundedInt(1, v.BATCH_MAX), default=1, show_default=True, help="Sequences per step.")
@click.option("--seq", type=BoundedInt(1, v.LENGTH_MAX), default=512, show_default=True,
              help="Tokens per sequence (training) or prompt tokens (inference).")
@click.option("--input-len", type=BoundedInt(1, v.LENGTH_MAX), default=None,
              help="Encoder-decoder models (T5, BART): encoder input tokens per sequence (default: --seq, "
                   "which is then the decoder's).")
@click.option("--images", type=BoundedInt(0, MAX_IMAGES), default=0, show_default=True,
              help="Multimodal wrappers: images per sequence; builds the whole wrapper (tower, projector, text "
                   "model) and feeds their tokens and pixels as its processor makes them.")
@click.option("--image-size", type=BoundedInt(1, MAX_IMAGE_SIDE), default=None,
              help="Side in pixels of the square images (dynamic-resolution towers; default as infer/train).")
@click.option("--decode", type=BoundedInt(0, v.LENGTH_MAX), default=4, show_default=True, help="Inference: decode steps.")
@click.option("--precision", type=click.Choice(["fp32", "bf16-mixed", "bf16"]), default="bf16-mixed",
              show_default=True, help="fp32; fp32 weights under CUDA autocast; or pure bf16.")
@click.option("--optimizer", type=click.Choice(["adamw", "adam", "sgd"]), default="adamw", show_default=True)
@click.option("--optimizer-impl", type=click.Choice(["foreach", "fused", "forloop"]), default="foreach",
              show_default=True, help="foreach is PyTorch's default on CUDA.")
@click.option("--method", type=click.Choice(["full", "lora", "qlora"]), default="full", show_default=True,
              help="qlora: bitsandbytes' NF4 double-quant base, its tensors modelled on fake tensors.")
@click.option("--load-dtype", type=click.Choice(["fp32", "bf16"]), default=None,
              help="dtype the weights are loaded in, when not the precision's default.")
@click.option("--lora-targets", default=None, help="Comma-separated module names, or all-linear.")
@click.option("--logits", type=click.Choice(["last", "all"]), default="last", show_default=True,
              help="Inference: the last position's logits (generate) or every position's.")
@click.option("--lora-rank", type=BoundedInt(1, v.HIDDEN_MAX), default=16, show_default=True)
@click.option("--recompute", is_flag=True, help="Full activation recomputation (gradient checkpointing).")
@click.option("--attention", type=click.Choice(["sdpa", "eager"]), default="sdpa", show_default=True)
@click.option("--cache", type=click.Choice(["static", "dynamic"]), default="static", show_default=True,
              help="Inference KV cache: preallocated or grown by concatenation.")
@click.option("--dropout", type=BoundedFloat(0.0, 1.0, hi_open=True), default=None,
              help="Override every dropout probability of the config.")
@click.option("--layers", type=click.Choice(["auto", "all", "extend"]), default="auto", show_default=True,
              help="all: trace every layer; extend: trace two short depths and extend per layer; "
                   f"auto: all up to {FULL_TRACE_MAX_LAYERS} layers, else extend.")
@click.option("--gpu", default=None, help="GPU whose usable memory the verdict and the chart use.")
@click.option("--svg", "svg_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the memory timeline as an SVG here.")
@units_option
@json_option
def command(model: str, train: bool, batch: int, seq: int, input_len: int | None, images: int, image_size: int | None,
            decode: int, precision: str, optimizer: str,
            optimizer_impl: str, method: str, load_dtype: str | None, lora_targets: str | None, logits: str,
            lora_rank: int, recompute: bool, attention: str, cache: str,
            dropout: float | None, layers: str, gpu: str | None, svg_path: str | None, units: str,
            as_json: bool) -> None:
    """Trace one real step of MODEL on PyTorch fake tensors (no GPU, no weights) and
    report the peak, its phase and what is live at it, under CUDA's allocation rules.

    MODEL is a catalog name (llama-3.1-8b) or a config.json path. Needs the exact
    extra: pip install "vramplan[exact]".
    """
    from vramplan.trace.deps import require_exact
    from vramplan.trace.setup import TraceSetup

    setup = TraceSetup(mode="train" if train else "infer", batch_size=batch, seq=seq, input_len=input_len,
                       decode_tokens=decode, images=images, image_size=image_size,
                       precision=precision, optimizer=optimizer, optimizer_impl=optimizer_impl, method=method,
                       lora_rank=lora_rank, recompute=recompute, attention=attention, cache=cache, dropout=dropout,
                       load_dtype=load_dtype, logits=logits,
                       **({"lora_targets": tuple(t.strip() for t in lora_targets.split(",") if t.strip())}
                          if lora_targets else {}))
    capacity = None
    gpu_spec = None
    if gpu is not None:
        from vramplan.gpus import one_gpu

        gpu_spec = one_gpu(gpu)
        capacity = gpu_spec.usable_memory_bytes
    if svg_path:
        _check_writable(svg_path)
    require_exact()
    result = _run(model, setup, layers, quiet=as_json)
    est = result.to_estimate()
    if gpu_spec is not None:
        from vramplan.memory.overhead import fit_verdict

        est = fit_verdict(est, gpu_spec.slug, capacity)
    if svg_path:
        from pathlib import Path

        from vramplan.trace.svg import timeline_svg

        svg = timeline_svg(result, capacity_bytes=capacity, gpu=gpu_spec.slug if gpu_spec else "", unit=units)
        try:
            Path(svg_path).write_text(svg, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--svg {svg_path}: cannot write ({exc.strerror})") from None
    if as_json:
        emit_json({**est.to_dict(), "trace": {"seconds": round(result.seconds, 2),
                                              "layers_traced": result.layers_traced,
                                              "extrapolated": result.extrapolated, "svg": svg_path}})
        return
    _render(result, est, units, svg_path)


def _check_writable(svg_path: str) -> None:
    """Fail before the (slow) trace when the SVG cannot be written: a missing folder,
    a folder given as the file, no write permission."""
    import os
    from pathlib import Path

    folder = Path(svg_path).expanduser().parent
    if not folder.is_dir():
        raise InputError(f"--svg {svg_path}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--svg {svg_path}: folder {str(folder)!r} is not writable")


def _run(model: str, setup, layers: str, *, quiet: bool):
    """Trace with a progress spinner on stderr (none with --json)."""
    from dataclasses import replace

    from vramplan.trace.build import num_layers
    from vramplan.trace.extrapolate import trace_extrapolated
    from vramplan.trace.run import resolve_config, run_trace

    from vramplan.model.hf_config import SUPPORTED_MODEL_TYPES, spec_from_config, text_config

    _, config = resolve_config(model)
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str) or \
            not isinstance(text_config(config).get("model_type"), str) or \
            text_config(config)["model_type"] in SUPPORTED_MODEL_TYPES:
        spec_from_config(config)  # the same checks (and bounds) as every other command, before torch sees it
    depth = num_layers(dict(text_config(config)))
    extrapolate = layers == "extend" or (layers == "auto" and depth > FULL_TRACE_MAX_LAYERS)

    def go(progress):
        if extrapolate:
            return trace_extrapolated(model, setup, progress=progress)
        return run_trace(model, replace(setup, layers=None), progress=progress)

    if quiet:
        return go(None)
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    steps = ["forward", "backward", "optimizer step"] if setup.training else \
        ["prefill"] + [f"decode {i + 1}" for i in range(setup.decode_tokens)]
    runs = 2 if extrapolate else 1
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"tracing {steps[0]}", total=len(steps) * runs)
        done = [0]

        def tick():
            done[0] += 1
            bar.update(task, advance=1, description=f"tracing {steps[done[0] % len(steps)]}")

        return go(tick)
