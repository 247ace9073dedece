"""Pipeline schedules: how many micro-batches a stage holds, and the bubble."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from vramplan.parallel.arrays import minimum, where

if TYPE_CHECKING:
    from vramplan.parallel.arrays import Ints, Reals


def in_flight_microbatches(*, pp: Ints, micro_batches: Ints, virtual_stages: Ints = 1,
                           stage: Literal["first", "last"] = "first") -> Reals:
    """Micro-batches whose activations a pipeline stage holds at its peak, in units of
    "one micro-batch through all of this stage's layers".

    1F1B (PipeDream-Flush; Narayanan et al. 2021, sec. 2.2): stage ``i`` of ``p`` runs
    ``p - i`` warm-up forwards before its first backward, so the first stage holds
    ``min(p, m)`` micro-batches and the last one. Interleaved 1F1B with ``v`` model
    chunks per rank (same paper, sec. 2.2.2) holds ``p * (1 + (p - 1) / (p * v))``
    micro-batch-stages on the first rank, the factor in Megatron-LM's
    ``theoretical_memory_usage.py``. Returned as a float for the interleaved case.
    Without a pipeline (``pp == 1``) gradient accumulation runs one micro-batch at a time.
    """
    if stage == "last":
        return 1 + 0 * pp
    plain = minimum(pp, micro_batches)
    interleaved = pp * (1 + (pp - 1) / (pp * virtual_stages))
    return where(virtual_stages > 1, interleaved, plain)


def bubble_fraction(*, pp: Ints, micro_batches: Ints, virtual_stages: Ints = 1) -> Reals:
    """Idle fraction of a pipelined step: ``(p - 1) / (v * m + p - 1)`` of the ideal
    time (Narayanan et al. 2021: bubble ``(p - 1) / m`` of compute for 1F1B, divided by
    ``v`` when interleaved); as a share of the whole step."""
    return (pp - 1) / (virtual_stages * micro_batches + pp - 1)

