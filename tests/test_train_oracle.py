"""The estimate against PyTorch itself: tiny models built by transformers on CPU run
two real training steps (forward, loss, backward, optimizer.step(), zero_grad), and
a dispatch-mode tracker records every live tensor storage (tests/train_measure.py).

Settings match what the estimate models for CUDA: foreach optimizers (the CUDA
default; CPU would pick the per-tensor loop), ``use_cache=False``, and eager
attention for MLA (CPU SDPA falls back to the math kernel when the q/k and v head
dims differ, which CUDA's kernels do not). CPU autocast casts linear/matmul to
bf16 as CUDA does; Llama-family code upcasts softmax and the loss explicitly, so
the op-list differences between the two autocast backends do not reach these models.
Two CPU-only behaviours are kept out rather than modelled: dropout masks (CPU keeps
them in the input dtype, CUDA in bool; corrected in ``measure_as_cuda``), and MoE
experts under autocast (transformers runs them through ``torch._grouped_mm``, which
CPU autocast leaves in fp32), so the MoE case runs in pure bf16.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.exact, pytest.mark.slow]

pytest.importorskip("torch")
pytest.importorskip("transformers")

from train_cases import CASES, estimate, measure_as_cuda  # noqa: E402

PEAK_TOLERANCE = 0.05
"""Target of the issue: at most 5 % error on the tensor-memory peak."""
PHASE_TOLERANCE = 0.05
"""Each phase's high point is held to the same target."""


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def measured(request):
    case = request.param
    if case.method == "lora":
        pytest.importorskip("peft")
    return case, measure_as_cuda(case), estimate(case)


def test_peak_within_target(measured):
    case, m, e = measured
    err = (e.total_bytes - m.peak_bytes) / m.peak_bytes
    assert abs(err) <= PEAK_TOLERANCE, f"{case.name}: estimate {e.total_bytes:,} vs measured {m.peak_bytes:,}"


def test_each_phase_within_target(measured):
    case, m, e = measured
    for phase, est in e.phases:
        got = m.phase_peaks[phase]
        assert abs(est - got) / got <= PHASE_TOLERANCE, f"{case.name} {phase}: {est:,} vs {got:,}"


def test_optimizer_step_is_exact_to_a_fraction(measured):
    """Weights + gradients + states + step temporaries: the model-state arithmetic
    alone; only the optimizer's scalar ``step`` tensors are left out (4 B each)."""
    case, m, e = measured
    est = dict(e.phases)["optimizer_step"]
    assert abs(est - m.phase_peaks["optimizer_step"]) / m.phase_peaks["optimizer_step"] < 0.001
