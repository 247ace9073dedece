"""Refuse before starting when a trace would exhaust host memory.

A fake-tensor trace holds no tensor data: its host cost is the imported libraries
plus Python objects (modules, fake tensors, autograd nodes) that grow with the
number of layers, not with their sizes or with batch and sequence. A real CPU run
(``real=True``, used to check the fake trace) holds every byte: it needs what the
fake trace of the same step reports as its peak.
"""

from __future__ import annotations

import os

from vramplan.errors import InputError
from vramplan.units import format_bytes

BASE_HOST_BYTES = 512 * 2**20
"""torch + transformers + peft imported: 390 MiB resident measured here
(torch 2.13 CPU, transformers 5.24), rounded up."""
FAKE_BYTES_PER_LAYER = 4 * 2**20
"""Host bytes per traced decoder layer on fake tensors: Llama-3.1-70B's 80-layer
training step peaked at 428 MiB resident, about 0.5 MiB per layer over the
imports; 8x that for wider layers (MoE experts, MLA) and Python's own slack."""


def available_host_bytes() -> int | None:
    """``VRAMPLAN_HOST_BYTES`` when set, else MemAvailable from /proc/meminfo
    (Linux); ``None`` when unknown (no check then)."""
    override = os.environ.get("VRAMPLAN_HOST_BYTES")
    if override:
        try:
            return int(override)
        except ValueError:
            raise InputError(f"VRAMPLAN_HOST_BYTES: expected a byte count, got {override!r}") from None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def fake_trace_host_bytes(layers: int) -> int:
    """Host bytes a fake-tensor trace of ``layers`` decoder layers needs (upper estimate)."""
    return BASE_HOST_BYTES + layers * FAKE_BYTES_PER_LAYER


def real_run_host_bytes(traced_peak_bytes: int) -> int:
    """Host bytes a real CPU run needs: its tensors (the fake trace's peak) plus the imports."""
    return BASE_HOST_BYTES + traced_peak_bytes


def check_host_memory(need_bytes: int, what: str, available: int | None = None) -> None:
    """Raise :class:`InputError` when ``need_bytes`` exceeds the available host memory."""
    if available is None:
        available = available_host_bytes()
    if available is not None and need_bytes > available:
        raise InputError(f"host memory: {what} needs about {format_bytes(need_bytes)}, only "
                         f"{format_bytes(available)} is available; trace fewer layers (layers extend) or a smaller batch",
                         fields=("layers", "batch"))
