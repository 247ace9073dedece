"""A trace's outcome: the memory timeline by category, its peak, and the peak as
an :class:`~vramplan.estimate.Estimate` (so every renderer shows it)."""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.estimate import Component, Estimate
from vramplan.trace.recorder import Block, Recorder
from vramplan.trace.setup import TraceSetup

MAX_TIMELINE_SAMPLES = 1500
"""Timeline points kept for drawing (each bucket keeps its highest point, and the
peak is always kept)."""

NOTES: dict[str, str] = {
    "weights": "parameters as stored (traced)",
    "master_weights": "fp32 parameters updated by the optimizer under autocast (traced)",
    "gradients": "parameter .grad tensors (traced)",
    "optimizer": "optimizer.state tensors (traced)",
    "adapters": "LoRA adapter parameters, gradients and states (traced)",
    "activations": "allocated in the forward, live at the peak (traced)",
    "logits": "output logits and the loss's fp32 work tensors (traced)",
    "kv_cache": "tensors allocated by the cache's update (traced)",
    "buffers": "temporaries of backward / optimizer step (traced)",
}


def category_of(block: Block) -> str:
    """Component name of a block: what it was named, else its region label, else
    by the phase and module it was born in."""
    if block.category:
        return block.category
    if block.label:
        return block.label
    if block.phase in ("forward", "prefill", "decode"):
        return f"activations/{block.module or 'other'}"
    if block.phase == "backward":
        return "activations/recomputed" if block.module else "buffers/backward"
    if block.phase == "optimizer_step":
        return "buffers/optimizer_step"
    return "buffers/other"


@dataclass(frozen=True, kw_only=True)
class TraceResult:
    """Per-GPU memory of one traced step."""

    model: str
    """Model name."""
    setup: TraceSetup
    """What was traced."""
    layers_traced: int
    """Decoder layers actually run (fewer than the model's when extrapolated)."""
    num_layers: int
    """Decoder layers of the model."""
    peak_bytes: int
    """Highest sum of live blocks (as ``torch.cuda.max_memory_allocated()`` counts)."""
    peak_phase: str
    """Phase in which the peak occurs."""
    at_peak: tuple[tuple[str, int], ...]
    """(component name, bytes) live at the peak; sums to ``peak_bytes``."""
    phase_highs: tuple[tuple[str, int], ...]
    """(phase, highest bytes in it), in step order."""
    phase_breakdowns: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()
    """(phase name, (component, bytes) at that phase's highest point), one per phase
    name (repeated decode steps keep the highest)."""
    categories: tuple[str, ...] = ()
    """Component names of the timeline columns."""
    timeline: tuple[tuple[int, tuple[int, ...]], ...] = ()
    """(event index, bytes per category) samples, in order."""
    phase_starts: tuple[tuple[int, str], ...] = ()
    """(event index, phase) where each phase begins."""
    extrapolated: bool = False
    """Numbers were extended from fewer traced layers (see extrapolate.py)."""
    seconds: float = 0.0
    """Wall time of the trace."""
    notes: tuple[str, ...] = ()
    """What the trace had to change from the setup (shown as warnings)."""

    def to_estimate(self) -> Estimate:
        kind = "training" if self.setup.training else "inference"
        comps = tuple(Component(name=name, bytes=b, note=NOTES.get(name.split("/")[0], "traced"))
                      for name, b in self.at_peak if b > 0)
        phases = _merged_phases(self.phase_highs)
        notes = ["exact mode: PyTorch fake tensors, CUDA allocation rules (512-byte blocks, CUDA "
                 "autocast lists, flash/efficient SDPA, fused dropout); CUDA context and library "
                 "workspaces are not traced"]
        if self.extrapolated:
            notes.append(f"traced {self.layers_traced} of {self.num_layers} layers and extended per layer")
        return Estimate(model=self.model, kind=kind, components=comps, phase=self.peak_phase, phases=phases,
                        details={"peak_bytes": self.peak_bytes, "layers_traced": self.layers_traced,
                                 "trace_seconds": round(self.seconds, 2)},
                        assumptions=tuple(notes), warnings=self.notes)


def _merged_phases(highs: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """One entry per phase name (decode steps merge), keeping the highest."""
    out: dict[str, int] = {}
    for phase, b in highs:
        out[phase] = max(out.get(phase, 0), b)
    return tuple(out.items())


def summarize(recorder: Recorder, *, model: str, setup: TraceSetup, layers_traced: int, num_layers: int,
              seconds: float = 0.0) -> TraceResult:
    """Replay the recorder's events: running totals per category, the peak, the
    highest point of each phase, and a thinned timeline."""
    names: list[str] = []
    column: dict[int, int] = {}
    for block in recorder.blocks:
        name = category_of(block)
        if name not in names:
            names.append(name)
        column[id(block)] = names.index(name)
    running = [0] * len(names)
    total = 0
    peak, peak_vec, peak_phase = -1, tuple(running), "load"
    starts = sorted(recorder.marks)
    phase_high: list[list] = []
    phase_best: dict[str, tuple[int, tuple[int, ...]]] = {}
    mark_i = 0
    phase = "load"
    samples: list[tuple[int, tuple[int, ...]]] = []
    bucket = max(1, len(recorder.events) // MAX_TIMELINE_SAMPLES)
    best_in_bucket: tuple[int, int, tuple[int, ...]] | None = None
    for i, (block, delta) in enumerate(recorder.events):
        while mark_i < len(starts) and starts[mark_i][0] <= i:
            phase = starts[mark_i][1]
            phase_high.append([phase, total])
            if total > phase_best.get(phase, (-1, ()))[0]:
                phase_best[phase] = (total, tuple(running))  # what the phase starts with counts
            mark_i += 1
        running[column[id(block)]] += delta
        total += delta
        if phase_high:
            phase_high[-1][1] = max(phase_high[-1][1], total)
            if total > phase_best.get(phase, (-1, ()))[0]:
                phase_best[phase] = (total, tuple(running))
        if total > peak:
            peak, peak_vec, peak_phase = total, tuple(running), phase
        if best_in_bucket is None or total > best_in_bucket[0]:
            best_in_bucket = (total, i, tuple(running))
        if (i + 1) % bucket == 0:
            samples.append((best_in_bucket[1], best_in_bucket[2]))
            best_in_bucket = None
    if best_in_bucket is not None:
        samples.append((best_in_bucket[1], best_in_bucket[2]))
    if peak < 0:
        peak, peak_vec, peak_phase = 0, tuple(running), phase
    at_peak = _named(names, peak_vec)
    breakdowns = tuple((p, _named(names, vec)) for p, (_, vec) in phase_best.items())
    return TraceResult(model=model, setup=setup, layers_traced=layers_traced, num_layers=num_layers,
                       peak_bytes=peak, peak_phase=peak_phase, at_peak=at_peak,
                       phase_highs=tuple((p, b) for p, b in phase_high), phase_breakdowns=breakdowns,
                       categories=tuple(names),
                       timeline=tuple(samples), phase_starts=tuple(starts), seconds=seconds)


def _named(names: list[str], vec) -> tuple[tuple[str, int], ...]:
    """(name, bytes) pairs with bytes > 0, largest first."""
    return tuple(sorted(((n, vec[j]) for j, n in enumerate(names) if vec[j] > 0), key=lambda kv: -kv[1]))
