"""Measure the same step on a real CUDA GPU: ``torch.cuda.max_memory_allocated()``
and ``max_memory_reserved()`` around one steady-state step, real weights
initialised on the GPU, PyTorch's own CUDA autocast and SDPA kernel choice."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from vramplan.errors import InputError
from vramplan.trace.setup import TraceSetup


@dataclass(frozen=True, kw_only=True)
class Measured:
    """Peak memory of one real step on the GPU."""

    allocated_bytes: int
    """``torch.cuda.max_memory_allocated()`` over the step (weights and states included)."""
    reserved_bytes: int
    """``torch.cuda.max_memory_reserved()``: what the caching allocator held from the driver."""
    device_name: str
    """``torch.cuda.get_device_name()``."""


class _NoRecorder:
    """Stands in for the recorder on the GPU: no bookkeeping."""

    def adopt(self, t, category):
        pass

    def mark(self, t, category):
        pass

    def in_phase(self, phase):
        return nullcontext()

    def module_hooks(self, model=None):
        return nullcontext()

    def recording(self):
        return nullcontext()


class _CudaAutocast:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    @contextmanager
    def autocast(self):
        import torch

        if not self.enabled:
            yield
            return
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield


def measure_on_cuda(config: dict, setup: TraceSetup) -> Measured:
    """Run ``setup`` on ``config``'s model on ``cuda:0`` and read the allocator's peaks."""
    import torch

    if not torch.cuda.is_available():
        raise InputError("device cuda: no CUDA GPU is visible to PyTorch", fields=("device",))
    from vramplan.trace.build import build_model
    from vramplan.trace.step import run_inference, run_training_step

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with torch.device("cuda"):
        model = build_model(config, setup, None)
        model.to("cuda")
        rules = _CudaAutocast(setup.autocast)
        torch.cuda.reset_peak_memory_stats()
        if setup.training:
            run_training_step(model, setup, _NoRecorder(), rules, None, measure_from_step=True)
        else:
            run_inference(model, setup, _NoRecorder(), rules, None)
        torch.cuda.synchronize()
        out = Measured(allocated_bytes=torch.cuda.max_memory_allocated(), reserved_bytes=torch.cuda.max_memory_reserved(),
                       device_name=torch.cuda.get_device_name())
    del model
    torch.cuda.empty_cache()
    return out
