"""Extending a trace of a few layers to the full depth gives the full trace's
numbers (oracle: the full trace of a mid-sized model, layer by layer)."""

from __future__ import annotations

import pytest

from trace_models import tiny_deepseek, tiny_gemma2, tiny_llama

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.exact

from vramplan.trace import TraceSetup  # noqa: E402
from vramplan.trace.extrapolate import prefix_and_period, trace_extrapolated, traced_layer_counts  # noqa: E402
from vramplan.trace.run import run_trace  # noqa: E402


def test_prefix_and_period():
    full, slide, dense, moe = "full_attention", "sliding_attention", False, True
    assert prefix_and_period(((full, dense),) * 8) == (0, 1)
    assert prefix_and_period(((slide, dense), (full, dense)) * 4) == (0, 2)
    assert prefix_and_period(((full, dense),) + ((full, moe),) * 7) == (1, 1)  # DeepSeek first_k_dense_replace=1
    assert prefix_and_period((((slide, dense),) * 5 + ((full, dense),)) * 3) == (0, 6)  # Gemma 3's 5:1


def test_traced_layer_counts_follow_the_pattern():
    assert traced_layer_counts(tiny_llama(layers=8)) == (2, 3, 1)
    assert traced_layer_counts(tiny_gemma2(layers=10)) == (4, 6, 2)
    assert traced_layer_counts(tiny_deepseek(layers=8)) == (3, 4, 1)
    assert traced_layer_counts(tiny_llama(layers=3)) is None  # nothing to gain


@pytest.mark.parametrize("make,kw", [
    (lambda: tiny_llama(layers=8, hidden=128, vocab=2000), dict(batch_size=2, seq=128)),
    (lambda: tiny_llama(layers=8, hidden=128, vocab=2000), dict(mode="infer", batch_size=2, seq=128)),
    (lambda: tiny_llama(layers=8, hidden=128, vocab=2000), dict(method="lora", recompute=True, seq=64)),
    (lambda: tiny_deepseek(layers=8), dict(batch_size=2, seq=64)),
    (lambda: tiny_gemma2(layers=10), dict(batch_size=2, seq=64)),
], ids=["llama-train", "llama-infer", "llama-lora-recompute", "deepseek-moe-train", "gemma2-train"])
def test_extrapolation_equals_full_trace(make, kw):
    config, setup = make(), TraceSetup(**kw)
    full = run_trace(config, setup)
    extended = trace_extrapolated(config, setup)
    assert extended.extrapolated and extended.layers_traced < full.layers_traced
    assert extended.peak_phase == full.peak_phase
    assert extended.peak_bytes == full.peak_bytes
    assert dict(extended.at_peak) == dict(full.at_peak)
