"""Test-side oracle: run one real training step on CPU and record the tensor memory
PyTorch allocates, with a ``TorchDispatchMode`` that tracks every live storage.

Every aten op's outputs are recorded by storage (keyed by data pointer, held by a
``StorageWeakRef`` so a freed storage drops out); the peak is taken after each op,
when its inputs and outputs are both alive (storages freed since the last sweep are
dropped first, so the peak is exact). Tensors that exist before the step
(parameters, buffers, optimizer states of an earlier step) are counted when the
tracker starts. Allocations made inside a kernel and freed before it returns
(workspaces) are invisible to it, as they are to ``MemTracker``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveStorageTracker(TorchDispatchMode):
    """Live tensor bytes on every device, op by op; ``peak_bytes`` and labelled marks."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        self.phase = "start"
        self.phase_peaks: dict[str, int] = {}

    def add(self, tensor: torch.Tensor) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if ptr == 0 or nbytes == 0:
            return
        known = self.live.get(ptr)
        if known is not None and not known[0].expired():
            return
        if known is not None:
            self.current_bytes -= known[1]
        self.live[ptr] = (StorageWeakRef(storage), nbytes)
        self.current_bytes += nbytes

    def sweep(self) -> None:
        for ptr in [p for p, (ref, _) in self.live.items() if ref.expired()]:
            self.current_bytes -= self.live.pop(ptr)[1]

    def mark(self, phase: str) -> None:
        """Start a new phase; its peak is recorded under ``phase``."""
        self.sweep()
        self.phase = phase
        self.phase_peaks[phase] = self.current_bytes

    def _note_peak(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, 0), self.current_bytes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self.add(t)
        # current_bytes may still count storages freed since the last sweep, so it is an
        # upper bound: only when it passes the phase's high point can the true value
        # have done so, and only then is the sweep (the costly part) needed.
        if self.current_bytes > self.phase_peaks.get(self.phase, 0):
            self.sweep()
            self._note_peak()
        return out


@dataclass
class StepMeasurement:
    """What one measured training step allocated, in bytes."""

    peak_bytes: int
    phase_peaks: dict[str, int] = field(default_factory=dict)
    start_bytes: int = 0


def measure_training_step(model, batch: torch.Tensor, optimizer, *, steps: int = 2, autocast_dtype=None,
                          grad_accum: int = 1) -> StepMeasurement:
    """Run ``steps`` steps (forward with labels = inputs, backward, ``optimizer.step()``,
    ``zero_grad(set_to_none=True)``) and return the peak over all of them.

    Two steps by default, so the second runs with the optimizer states already
    allocated: the steady state every later step repeats. With ``grad_accum > 1`` each
    step runs that many forward/backward passes before ``optimizer.step()``.
    """
    tracker = LiveStorageTracker()
    with torch.no_grad():
        for p in model.parameters():
            tracker.add(p)
        for b in model.buffers():
            tracker.add(b)
    tracker.mark("start")
    start = tracker.current_bytes
    with tracker:
        for _ in range(steps):
            for _ in range(grad_accum):
                tracker.mark("forward")
                with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
                    loss = model(input_ids=batch, labels=batch).loss
                tracker.mark("backward")
                loss.backward()
                del loss
            tracker.mark("optimizer_step")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    tracker.sweep()
    return StepMeasurement(peak_bytes=tracker.peak_bytes, phase_peaks=dict(tracker.phase_peaks), start_bytes=start)
