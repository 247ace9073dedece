"""The analytical estimate of the same setup a trace runs, for side-by-side
comparison (benchmarks/bench_accuracy.py, ``vramplan validate``)."""

from __future__ import annotations

from vramplan.trace.setup import TraceSetup


def analytical_estimate(model, setup: TraceSetup):
    """The analytical :class:`~vramplan.estimate.Estimate` of ``setup``, or ``None``
    when the estimator for its mode is not part of this installation."""
    return None


def analytical_total(model, setup: TraceSetup) -> int | None:
    est = analytical_estimate(model, setup)
    return None if est is None else est.total_bytes
