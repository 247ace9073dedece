"""Exact mode: run the real model's real step on PyTorch fake tensors and record
every allocation, by category, as the CUDA caching allocator would see it.

The modules, in the order a trace uses them:

    setup.py       TraceSetup: what to run (train or infer, sizes, precision, optimizer...)
    deps.py        import torch/transformers/peft, or say how to install them
    cuda_rules.py  make the CPU run allocate as CUDA would (autocast lists, SDPA kernels,
                   dropout masks); the 512-byte allocator rounding lives in recorder.py
    build.py       the transformers model from a config dict, on fake tensors
    recorder.py    a TorchDispatchMode that follows every storage from birth to death
    step.py        one training step (forward, loss, backward, optimizer.step) or
                   prefill + decode steps, with phases marked
    result.py      TraceResult: the timeline, the peak, and an Estimate of it
    extrapolate.py trace a few layers and extend the result to all of them
    meta_params.py parameter counts of any type transformers builds (the meta build)
    hostmem.py     refuse before starting when host memory would run out
    svg.py         the timeline as a hand-written SVG

Nothing here is imported by the core; the command line imports it lazily.
"""

from __future__ import annotations

from vramplan.trace.setup import TraceSetup

__all__ = ["TraceSetup", "trace"]


def trace(model, setup: TraceSetup, *, progress=None):
    """Trace one step of ``model`` (catalog name, config.json path, or config dict)
    under ``setup``; returns a :class:`~vramplan.trace.result.TraceResult`."""
    from vramplan.trace.run import run_trace

    return run_trace(model, setup, progress=progress)
