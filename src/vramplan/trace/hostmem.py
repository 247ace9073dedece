"""Refuse before starting when the trace would exhaust host memory.

A fake-tensor trace holds no tensor data: its host cost is the Python objects of
the model and of the autograd graph, which grow with the number of tensors, not
their sizes. A real run (``real=True``, used for checking) holds every byte.
"""

from __future__ import annotations

import os

from vramplan.errors import InputError
from vramplan.trace.setup import TraceSetup
from vramplan.units import format_bytes

BASE_HOST_BYTES = 1536 * 2**20
"""torch + transformers + peft imported, measured here: about 1.5 GiB resident."""
FAKE_BYTES_PER_LAYER = 24 * 2**20
"""Host bytes per traced decoder layer on fake tensors (module objects, fake
tensors and graph nodes of forward + backward); measured on Llama-3.1-8B shapes,
rounded up."""
REAL_BYTES_PER_PARAM_FACTOR = 20
"""Real CPU run: bytes per parameter allowed for fp32 weights (4), gradients (4),
Adam states (8) and slack for activations (4)."""


def available_host_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or ``None`` when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def host_bytes_needed(config: dict, setup: TraceSetup, *, real: bool) -> int:
    """Host bytes the trace needs (an upper estimate)."""
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 1)
    if not real:
        return BASE_HOST_BYTES + layers * FAKE_BYTES_PER_LAYER
    from vramplan.model import count_params
    from vramplan.model.hf_config import spec_from_config

    params = count_params(spec_from_config(config)).total_params
    return BASE_HOST_BYTES + params * REAL_BYTES_PER_PARAM_FACTOR


def check_host_memory(config: dict, setup: TraceSetup, *, real: bool, available: int | None = None) -> None:
    """Raise :class:`InputError` when the trace would need more host memory than is
    available (``VRAMPLAN_HOST_BYTES`` overrides the available figure)."""
    if available is None:
        override = os.environ.get("VRAMPLAN_HOST_BYTES")
        available = int(override) if override else available_host_bytes()
    if available is None:
        return
    need = host_bytes_needed(config, setup, real=real)
    if need > available:
        kind = "a real CPU run" if real else "the fake-tensor trace"
        raise InputError(f"host memory: {kind} needs about {format_bytes(need)}, only {format_bytes(available)} "
                         f"is available; trace fewer layers (--layers) or a smaller batch")
