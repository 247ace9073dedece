"""Trace a few decoder layers and extend the result to all of them.

Decoder layers repeat: every byte a step holds is either per layer (weights,
gradients, states, saved activations of one layer) or not (embeddings, head,
logits, inputs). So each phase's breakdown at its highest point is affine in the
layer count. Tracing ``q + 2p`` and ``q + 3p`` layers, where ``q`` leading layers
break the pattern (DeepSeek's dense first layers) and ``p`` is the pattern's
period (1; 2 for Gemma 2's sliding/full alternation; 6 for Gemma 3's 5:1), gives
the slope per period; the full model's value is ``v(k1) + (v(k2) - v(k1)) * (L - k1) / p``.
Two periods (not one) in the shorter trace keep the peak at the same point of the
step in both traces: with a single layer, the last layer is also the first.
When ``L - q`` is not a multiple of ``p`` the last partial period is prorated.

A phase's high point can fall at another moment in the two traces (a backward
that peaks at the loss with two layers and at its end with three, where the
gradients of all layers exist): its components then do not grow together, and
extending each one (a component cannot go below zero) would add up moments that
never coexist. So each phase's total is extended as a total, and the peak phase is
the one whose extended total is highest; the components shown are extended one by one.
"""

from __future__ import annotations

from dataclasses import replace

from vramplan.trace.result import TraceResult
from vramplan.trace.setup import TraceSetup

MAX_PREFIX_LAYERS = 4
"""Leading layers allowed to differ from the repeating pattern."""
MAX_PERIOD_LAYERS = 8
"""Longest layer pattern looked for."""
BASE_PERIODS = 2
"""Periods of layers in the shorter trace (see the module docstring)."""


def layer_signature(config: dict) -> tuple[tuple[str, bool, str], ...]:
    """Per layer: (attention kind, is MoE, token mixer), from the ModelSpec reader (a
    hybrid's Mamba / linear-attention layers repeat with the attention ones)."""
    from vramplan.model.hf_config import spec_from_config

    spec = spec_from_config(config)
    kinds = spec.layer_types or ("full_attention",) * spec.num_layers
    moe = spec.moe_layers or (False,) * spec.num_layers
    return tuple(zip(kinds, moe, (spec.mixer(i) for i in range(spec.num_layers))))


def prefix_and_period(signature: tuple) -> tuple[int, int]:
    """(q, p) with the shortest period ``p`` (then the shortest prefix ``q``) such
    that ``signature[q:]`` repeats with period ``p``."""
    n = len(signature)
    for p in range(1, min(MAX_PERIOD_LAYERS, n) + 1):
        for q in range(min(MAX_PREFIX_LAYERS, n - p) + 1):
            rest = signature[q:]
            if all(rest[i] == rest[i % p] for i in range(len(rest))):
                return q, p
    return 0, n


def traced_layer_counts(config: dict) -> tuple[int, int, int] | None:
    """(k1, k2, period) to trace, or ``None`` when the model is too short to gain."""
    signature = layer_signature(config)
    q, p = prefix_and_period(signature)
    k1, k2 = q + BASE_PERIODS * p, q + (BASE_PERIODS + 1) * p
    if k2 >= len(signature):
        return None
    return k1, k2, p


def _vec(pairs) -> dict[str, int]:
    return dict(pairs)


def _extend(v1: dict[str, int], v2: dict[str, int], steps: float) -> tuple[tuple[str, int], ...]:
    out = {}
    for name in dict.fromkeys([*v2, *v1]):
        value = v1.get(name, 0) + (v2.get(name, 0) - v1.get(name, 0)) * steps
        out[name] = max(0, round(value))
    return tuple(sorted(((n, b) for n, b in out.items() if b > 0), key=lambda kv: -kv[1]))


def _total(pairs1, pairs2, steps: float) -> int:
    """A phase's total at full depth, extended as one number."""
    t1, t2 = sum(b for _, b in pairs1), sum(b for _, b in pairs2)
    return max(0, round(t1 + (t2 - t1) * steps))


def combine(small: TraceResult, large: TraceResult, *, total_layers: int, period: int) -> TraceResult:
    """The full-depth result from traces of ``small.layers_traced`` and
    ``large.layers_traced`` layers (``period`` apart)."""
    steps = (total_layers - small.layers_traced) / period
    b1, b2 = dict(small.phase_breakdowns), dict(large.phase_breakdowns)
    phases = {p: _extend(_vec(b1.get(p, ())), _vec(b2[p]), steps) for p in b2}
    totals = {p: _total(b1.get(p, ()), b2[p], steps) for p in b2}
    peak_phase = max(totals, key=lambda p: totals[p])
    at_peak = phases[peak_phase]
    return replace(large, layers_traced=large.layers_traced, num_layers=total_layers,
                   peak_bytes=totals[peak_phase], peak_phase=peak_phase, at_peak=at_peak,
                   phase_highs=tuple((p, totals[p]) for p in phases),
                   phase_breakdowns=tuple(phases.items()), extrapolated=True,
                   seconds=small.seconds + large.seconds)


def trace_extrapolated(model, setup: TraceSetup, *, progress=None) -> TraceResult:
    """Trace two short depths of ``model`` and extend to its full depth; falls back
    to a full trace when the model is too short for that to save anything."""
    from vramplan.trace.run import resolve_config, run_trace

    from vramplan.model.hf_config import text_config

    name, config = resolve_config(model)
    counts = traced_layer_counts(dict(text_config(config)))
    if counts is None:
        return run_trace(config, replace(setup, layers=None), progress=progress)
    k1, k2, period = counts
    small = run_trace(config, replace(setup, layers=k1), progress=progress)
    large = run_trace(config, replace(setup, layers=k2), progress=progress)
    total = small.num_layers
    return replace(combine(small, large, total_layers=total, period=period), model=name, setup=setup)
