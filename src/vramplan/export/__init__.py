"""Configs for the engines that will run a planned layout: DeepSpeed (JSON), PyTorch
FSDP through accelerate (YAML), Megatron-LM (command-line arguments), vLLM and
llama.cpp (command lines). Each module has the same shape: ``render(...) -> str``, over
the core's :class:`~vramplan.plans.PlanReport` objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vramplan.errors import InputError
from vramplan.plans import EXPORTS as ENGINES
from vramplan.plans import SERVING_EXPORTS as SERVING_ENGINES

if TYPE_CHECKING:
    from vramplan.plans import PlanReport


def exportable(engine: str, report: PlanReport) -> tuple[int, Any]:
    """The best candidate of ``report`` that ``engine`` runs, and its rank (1 = the
    plan's best): the first one :func:`vramplan.parallel_rules.export_problem` passes."""
    from vramplan.parallel_rules import export_problem

    problems = []
    for rank, cand in enumerate(report.candidates, start=1):
        problem = export_problem(engine, cand, report.spec)
        if problem is None:
            return rank, cand
        problems.append(problem)
    hint, fields = {"deepspeed": ("zero 1, 2 or 3", ("zero",)),
                    "fsdp": ("data parallelism alone (tp, pp and cp of 1) and an FSDP strategy", ()),
                    "megatron": ("zero 0 or zero 1 (distributed optimizer)", ("zero",)),
                    "vllm": ("tp N", ("tp",)), "llamacpp": ("tp 1", ("tp",))}[engine]
    raise InputError(f"export {engine}: none of the {len(report.candidates)} layouts listed runs on {engine} "
                     f"(best: {problems[0]}); plan with {hint}", fields=("export", *fields))


def export_config(engine: str, report: PlanReport) -> str:
    """The best candidate of ``report`` that ``engine`` runs (its own rules:
    :mod:`vramplan.parallel_rules`) as a config for ``engine``. Errors name the plan's
    fields (``export``, ``zero``, ``tp``...), as every core error does."""
    if engine not in ENGINES:
        raise InputError(f"export: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if not report.candidates:
        raise InputError("export: no layout fits, nothing to write (drop export to see what would fit)")
    if report.kind == "training" and engine in SERVING_ENGINES:
        raise InputError(f"export {engine}: a serving engine, for a serving plan", fields=("export",))
    if report.kind != "training" and engine not in SERVING_ENGINES:
        raise InputError(f"export {engine}: a training engine, for a training plan", fields=("export",))
    rank, best = exportable(engine, report)
    if report.kind == "training":
        if engine == "deepspeed":
            from vramplan.export.deepspeed import render
        elif engine == "fsdp":
            from vramplan.export.fsdp import render
        else:
            from vramplan.export.megatron import render
        setup = report.setup
        return render(best, report.spec, seq=setup.seq, precision=setup.precision, rank=rank)
    if engine == "vllm":
        from vramplan.export.vllm import render
    else:
        from vramplan.export.llamacpp import render
    job = report.job
    return render(best, report.spec, context=job.context, usable_bytes=report.gpu.usable_memory_bytes,
                  kv_dtype=job.kv_dtype, batch=job.batch, rank=rank)
