"""Configs for the engines that will run a planned layout: DeepSpeed (JSON), PyTorch
FSDP through accelerate (YAML), Megatron-LM (command-line arguments), vLLM and
llama.cpp (command lines). Each module has the same shape: ``render(...) -> str``, over
the core's :class:`~vramplan.plans.PlanReport` objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramplan.errors import InputError
from vramplan.plans import EXPORTS as ENGINES
from vramplan.plans import SERVING_EXPORTS as SERVING_ENGINES

if TYPE_CHECKING:
    from vramplan.plans import PlanReport


def export_config(engine: str, report: PlanReport) -> str:
    """The best candidate of ``report`` as a config for ``engine``."""
    if engine not in ENGINES:
        raise InputError(f"export: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if not report.candidates:
        raise InputError("--export: no layout fits, nothing to export (drop --export to see what would fit)")
    best = report.candidates[0]
    if report.kind == "training":
        if engine in SERVING_ENGINES:
            raise InputError(f"--export {engine}: a serving engine; use it with --infer")
        if engine == "deepspeed":
            from vramplan.export.deepspeed import render
        elif engine == "fsdp":
            from vramplan.export.fsdp import render
        else:
            from vramplan.export.megatron import render
        setup = report.setup
        return render(best, report.spec, seq_len=setup.seq, precision=setup.precision)
    if engine == "vllm":
        from vramplan.export.vllm import render
    elif engine == "llamacpp":
        from vramplan.export.llamacpp import render
    else:
        raise InputError(f"--export {engine}: a training engine; use it with --train")
    job = report.job
    return render(best, report.spec, context=job.context, usable_bytes=report.gpu.usable_memory_bytes,
                  kv_dtype=job.kv_dtype, batch=job.batch)
