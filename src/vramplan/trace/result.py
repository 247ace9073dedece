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


class _Replay:
    """Running totals per category while the recorder's events are replayed."""

    def __init__(self, names: list[str], n_events: int):
        self.running = [0] * len(names)
        self.total = 0
        self.phase = "load"
        self.peak: tuple[int, tuple[int, ...], str] = (-1, tuple(self.running), "load")
        self.phase_highs: list[list] = []
        self.phase_best: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.samples: list[tuple[int, tuple[int, ...]]] = []
        self.bucket = max(1, n_events // MAX_TIMELINE_SAMPLES)
        self._bucket_best: tuple[int, int, tuple[int, ...]] | None = None

    def start_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_highs.append([phase, self.total])
        self._note_phase_high()  # what the phase starts with counts

    def _note_phase_high(self) -> None:
        if self.total > self.phase_best.get(self.phase, (-1, ()))[0]:
            self.phase_best[self.phase] = (self.total, tuple(self.running))

    def apply(self, i: int, column: int, delta: int) -> None:
        self.running[column] += delta
        self.total += delta
        if self.phase_highs:
            self.phase_highs[-1][1] = max(self.phase_highs[-1][1], self.total)
            self._note_phase_high()
        if self.total > self.peak[0]:
            self.peak = (self.total, tuple(self.running), self.phase)
        if self._bucket_best is None or self.total > self._bucket_best[0]:
            self._bucket_best = (self.total, i, tuple(self.running))
        if (i + 1) % self.bucket == 0:
            self.flush()

    def flush(self) -> None:
        """Keep the highest point of the current bucket as a timeline sample."""
        if self._bucket_best is not None:
            self.samples.append((self._bucket_best[1], self._bucket_best[2]))
            self._bucket_best = None


def _columns(recorder: Recorder) -> tuple[list[str], dict[int, int]]:
    """Component names in order of first appearance, and each block's column."""
    names: list[str] = []
    column: dict[int, int] = {}
    for block in recorder.blocks:
        name = category_of(block)
        if name not in names:
            names.append(name)
        column[id(block)] = names.index(name)
    return names, column


def summarize(recorder: Recorder, *, model: str, setup: TraceSetup, layers_traced: int, num_layers: int,
              seconds: float = 0.0) -> TraceResult:
    """Replay the recorder's events: running totals per category, the peak, the
    highest point of each phase, and a thinned timeline."""
    names, column = _columns(recorder)
    starts = sorted(recorder.marks)
    replay = _Replay(names, len(recorder.events))
    mark_i = 0
    for i, (block, delta) in enumerate(recorder.events):
        while mark_i < len(starts) and starts[mark_i][0] <= i:
            replay.start_phase(starts[mark_i][1])
            mark_i += 1
        replay.apply(i, column[id(block)], delta)
    replay.flush()
    peak, peak_vec, peak_phase = replay.peak
    if peak < 0:
        peak, peak_vec, peak_phase = 0, tuple(replay.running), replay.phase
    return TraceResult(model=model, setup=setup, layers_traced=layers_traced, num_layers=num_layers,
                       peak_bytes=peak, peak_phase=peak_phase, at_peak=_named(names, peak_vec),
                       phase_highs=tuple((p, b) for p, b in replay.phase_highs),
                       phase_breakdowns=tuple((p, _named(names, vec)) for p, (_, vec) in replay.phase_best.items()),
                       categories=tuple(names), timeline=tuple(replay.samples), phase_starts=tuple(starts),
                       seconds=seconds)


def _named(names: list[str], vec) -> tuple[tuple[str, int], ...]:
    """(name, bytes) pairs with bytes > 0, largest first."""
    return tuple(sorted(((n, vec[j]) for j, n in enumerate(names) if vec[j] > 0), key=lambda kv: -kv[1]))
