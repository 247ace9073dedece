"""The analytical estimate against the trace on small configs of representative families
(the configs and setups of ``benchmarks/bench_families.py``, whose full table is
docs/families.md).

Oracle: ``vramplan trace`` (transformers' own modeling code on fake tensors under CUDA's
allocation rules; tests/test_trace_step.py checks it against a real CPU run). Goal: the
tensor peak within 3 %. Families with a known gap are marked ``xfail(strict=True)``
naming it: when a fix lands the case passes, the mark fails the test and must go.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_families import FAMILIES, GOAL_WORST_ERROR  # noqa: E402

from vramplan.trace.setup import TraceSetup  # noqa: E402


def _gap(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)


CASES = [
    # (family, mode, setup changes, mark)
    ("Qwen3.5", "full", {}, None),  # gated delta-net + attention hybrid
    ("Kimi K2 / DeepSeek-V3", "full", {}, None),  # MLA + shared/routed experts + a dense layer
    ("GLM-4", "lora", {}, None),
    ("Cohere2 (Command R7B / A)", "full", {}, None),  # sliding + global layers, parallel block
    ("Falcon (40B layout)", "full", {}, None),  # plain MLP, parallel attention, grouped KV
    ("Nemotron-H", "full", {}, None),  # Mamba-2, MoE, attention and MLP-only blocks
    ("MiniCPM3 (MLA)", "infer", {}, None),
    ("OPT", "infer", {}, None),
    ("BERT", "full", {}, None),
    ("BART", "full", {}, None),
    ("ChatGLM3 (remote code)", "full", {}, None),  # its keys read, traced as transformers' glm
    ("Gemma 3n", "full", {}, None),  # AltUp streams, LAuReL, per-layer embeddings, KV sharing
    ("MiniMax-01", "full", {}, None),  # lightning attention beside softmax attention
    ("Mamba", "full", {"seq": 64}, None),  # Mamba-1's selective scan (PyTorch path: one step per token)
    ("T5", "lora", {}, None),
    ("Llama 4", "full", {}, None),  # every expert on every token (Llama4TextMoe), chunked attention
    ("Falcon (7B layout)", "full", {}, _gap("multi-query K/V (1 head) reach SDPA without enable_gqa: CUDA runs the "
                                            "math path (fp32 probabilities); the estimate prices flash")),
    ("Mamba-2", "infer", {}, None),  # the chunked scan's prefill temporaries
    ("DeepSeek-V3.2 (DSA)", "infer", {}, None),  # the indexer's prefill scores
]


def _family(name: str):
    return next(f for f in FAMILIES if f.name == name)


@pytest.mark.exact
@pytest.mark.parametrize(
    "name,mode,changes",
    [pytest.param(n, m, c, marks=mark or (), id=re.sub(r"[^A-Za-z0-9.]+", "-", f"{n}-{m}")) for n, m, c, mark in CASES])
def test_estimate_within_goal_of_trace(name, mode, changes):
    pytest.importorskip("torch")
    import transformers

    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.run import run_trace

    transformers.logging.set_verbosity_error()
    family = _family(name)
    setup = TraceSetup(**{**family.setup(mode), **changes})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = run_trace(family.trace_config(), setup)
        if any("traced with eager" in n for n in traced.notes):
            setup = TraceSetup(**{**family.setup(mode), **changes, "attention": "eager"})
        estimate = analytical_estimate(family.config(), setup)
    error = tensor_bytes(estimate) / traced.peak_bytes - 1
    assert abs(error) <= GOAL_WORST_ERROR, (f"{error:+.2%}", tensor_bytes(estimate), traced.peak_bytes)


def test_every_family_named_in_the_cases_exists():
    """A renamed family in the benchmark fails here, not as a StopIteration deep in a case."""
    names = {f.name for f in FAMILIES}
    assert {n for n, *_ in CASES} <= names


def test_known_gaps_are_recorded_in_the_benchmark():
    """The benchmark records a cause (its table says *gap*) for exactly the cases expected to fail."""
    for name, mode, _, mark in CASES:
        gap = _family(name).gap(mode)
        assert bool(gap) == bool(mark), (name, mode, gap)
