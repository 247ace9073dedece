"""A ``llama-server`` command line for a planned serving layout (flags from
llama.cpp's ``common/arg.cpp``: -ngl, -c, -np, --split-mode, --tensor-split, -ctk/-ctv)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramplan.model import ModelSpec
    from vramplan.planner import InferenceCandidate

_KV = {"fp16": "f16", "bf16": "bf16", "q8_0": "q8_0", "q4_0": "q4_0", "fp8": "q8_0"}


def arguments(candidate: InferenceCandidate, spec: ModelSpec, *, context: int, usable_bytes: int, kv_dtype: str,
              batch: int) -> list[str]:
    """Every layer on the GPUs (``-ngl`` = layers + 1 for the output layer); more than
    one GPU per replica splits by layer (llama.cpp's default, like a pipeline), evenly."""
    gpus = candidate.tp * candidate.pp
    args = ["-m", f"{spec.name}.gguf", "-ngl", str(spec.num_layers + 1), "-c", str(context * batch),
            "-np", str(batch)]
    if gpus > 1:
        args += ["--split-mode", "layer", "--tensor-split", ",".join(["1"] * gpus)]
    cache = _KV.get(kv_dtype, kv_dtype)
    if cache != "f16":
        args += ["-ctk", cache, "-ctv", cache]
    return args


def render(candidate: InferenceCandidate, spec: ModelSpec, *, rank: int = 1, **kw: Any) -> str:
    """The ``llama-server`` line (``rank``: the layout's place in the plan, noted when not the first)."""
    from vramplan.export.checks import require_runnable

    require_runnable("llamacpp", candidate, spec)
    line = "llama-server " + " ".join(arguments(candidate, spec, **kw)) + "\n"
    return line + (f"# layout {rank} of the plan: the first that llama.cpp runs\n" if rank > 1 else "")
