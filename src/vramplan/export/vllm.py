"""A ``vllm serve`` command line for a planned serving layout (flags from vLLM's
``EngineArgs``: --tensor-parallel-size, --pipeline-parallel-size, --max-model-len,
--gpu-memory-utilization, --kv-cache-dtype, --max-num-seqs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramplan.model import ModelSpec
    from vramplan.planner import InferenceCandidate

_KV = {"fp16": "auto", "bf16": "auto", "fp8": "fp8", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"}


UTILIZATION_STEP = 0.01
"""``--gpu-memory-utilization`` is written to two decimals, rounded up."""


def arguments(candidate: InferenceCandidate, spec: ModelSpec, *, context: int, usable_bytes: int, kv_dtype: str,
              batch: int) -> list[str]:
    """The ``vllm serve`` arguments. ``--gpu-memory-utilization`` is the planned peak
    over the GPU's usable memory, rounded up, so the KV pool vLLM pre-allocates in the
    rest of that share holds the planned batch x context."""
    import math

    model = spec.hub_id or spec.name
    share = math.ceil(candidate.peak_bytes / usable_bytes / UTILIZATION_STEP) * UTILIZATION_STEP
    util = min(1.0, share)
    args = [model, "--tensor-parallel-size", str(candidate.tp),
            "--pipeline-parallel-size", str(candidate.pp), "--max-model-len", str(context),
            "--max-num-seqs", str(batch), "--gpu-memory-utilization", f"{util:.2f}"]
    args += ["--kv-cache-dtype", _KV.get(kv_dtype, kv_dtype)]
    return args


def render(candidate: InferenceCandidate, spec: ModelSpec, *, rank: int = 1, **kw: Any) -> str:
    """The ``vllm serve`` line (``rank``: the layout's place in the plan, noted when not the first)."""
    from vramplan.export.checks import require_runnable

    require_runnable("vllm", candidate, spec)
    lines = "vllm serve " + " ".join(arguments(candidate, spec, **kw))
    if candidate.replicas > 1:
        lines += f"\n# run {candidate.replicas} replicas of this server behind a load balancer"
    if rank > 1:
        lines += f"\n# layout {rank} of the plan: the first that vLLM runs"
    return lines + "\n"
