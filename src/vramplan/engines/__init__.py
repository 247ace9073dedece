"""Serving engines: how transformers, vLLM and llama.cpp each spend GPU memory.

Every engine module has the same shape: ``build(job) -> Estimate`` for a
:class:`Job` (the resolved model, weights, context and setup). This package holds
what they share: the resolved job, the default KV dtype, and the verdict.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.memory.kv_cache import kv_replication_warning
from vramplan.memory.weights import WeightsChoice, resolve_weights
from vramplan.model.spec import ModelSpec
from vramplan.options import DEFAULT_CONTEXT_TOKENS
from vramplan.quant import WeightFormat

if TYPE_CHECKING:
    from vramplan.gpus import GpuSpec
    from vramplan.inference import InferenceSetup


def resolved_context(spec: ModelSpec, setup: InferenceSetup) -> tuple[int, tuple[str, ...]]:
    """(context tokens, warnings): the default, and the check against max positions
    (a warning, or an error under ``strict``)."""
    if setup.context is None:
        return min(DEFAULT_CONTEXT_TOKENS, spec.max_position_embeddings), ()
    limit = spec.max_position_embeddings
    if setup.context > limit:
        msg = (f"context {setup.context:,} exceeds {spec.name}'s max_position_embeddings={limit:,}: "
               "quality is not guaranteed beyond it")
        if setup.strict:
            raise InputError(msg, fields=("context",))
        return setup.context, (msg,)
    return setup.context, ()


@dataclass(frozen=True, kw_only=True)
class Job:
    """One inference question with every default resolved."""

    spec: ModelSpec
    """The model."""
    setup: InferenceSetup
    """What the user asked for."""
    weights: WeightsChoice
    """The weights format, resolved (the checkpoint's own by default)."""
    context: int
    """Tokens held per sequence."""
    prompt: int
    """Prompt tokens prefilled."""
    gpu: GpuSpec | None
    """The GPU, when named."""
    warnings: tuple[str, ...]
    """Warnings gathered while resolving."""

    @property
    def compute_dtype(self) -> str:
        """The dtype activations run in: the format's unquantized dtype (fp32 checkpoints
        are served in bf16 by vLLM and llama.cpp; transformers computes in the dtype the
        weights are loaded in, fp32 included)."""
        dtype = self.weights.unquantized_dtype if isinstance(self.weights, WeightFormat) else "fp16"
        return "bf16" if dtype == "fp32" and self.setup.engine != "hf" else dtype


def resolve_job(spec: ModelSpec, setup: InferenceSetup) -> Job:
    """Resolve the context (and its warning), the weights format, the GPU and the TP
    warnings of ``setup`` for ``spec``."""
    context, warnings = resolved_context(spec, setup)
    weights = resolve_weights(spec, setup.weights)
    gpu = None
    if setup.gpu is not None:
        from vramplan.gpus import read_gpu

        reading = read_gpu(setup.gpu)
        if reading.count not in (None, setup.tp):
            raise InputError(f"gpu: {setup.gpu} is {reading.count} GPUs, but tp is {setup.tp}; give one count",
                             fields=("tp",))
        gpu = reading.spec
    replicated = kv_replication_warning(spec, setup.tp)
    if replicated:
        warnings += (replicated,)
    prompt = setup.prompt if setup.prompt is not None else context
    return Job(spec=spec, setup=setup, weights=weights, context=context, prompt=min(prompt, context), gpu=gpu,
               warnings=warnings + spec.notes)


def run_engine(spec: ModelSpec, setup: InferenceSetup) -> Estimate:
    """Resolve the job and hand it to ``vramplan.engines.<setup.engine>``."""
    job = resolve_job(spec, setup)
    module = importlib.import_module(f"vramplan.engines.{'hf' if setup.engine == 'hf' else setup.engine}")
    return module.build(job)


def with_gpu_verdict(estimate: Estimate, job: Job, reserve_bytes: int = 0) -> Estimate:
    """The verdict on ``job.gpu`` (none when no GPU was named)."""
    if job.gpu is None:
        return estimate
    return estimate.with_verdict(job.gpu.slug, job.gpu.usable_memory_bytes,
                                 reserve_bytes=reserve_bytes + job.setup.reserve_bytes)


def peak_of(phases: dict[str, list[Component]]) -> tuple[str, list[Component], tuple[tuple[str, int], ...]]:
    """(peak phase, its components, the timeline) from per-phase component lists."""
    timeline = tuple((name, sum(c.bytes for c in comps)) for name, comps in phases.items())
    peak = max(timeline, key=lambda item: item[1])[0]
    return peak, phases[peak], timeline


def base_estimate(job: Job, phase: str, components: list[Component], *, details: dict | None = None,
                  warnings: tuple[str, ...] = (), phases: tuple[tuple[str, int], ...] = (),
                  host_components: tuple[Component, ...] = ()) -> Estimate:
    """The :class:`Estimate` an engine returns, with the details every engine shares
    (engine, weights format, context, prompt, batch, tp) before its own."""
    shared = {"engine": job.setup.engine, "weights_format": getattr(job.weights, "name", str(job.weights)),
              "context_tokens": job.context, "prompt_tokens": job.prompt, "batch": job.setup.batch,
              "tp": job.setup.tp}
    return Estimate(model=job.spec.name, kind="inference", components=tuple(components), phase=phase,
                    phases=phases, host_components=host_components, num_gpus=job.setup.tp,
                    details={**shared, **(details or {})}, warnings=job.warnings + warnings)
