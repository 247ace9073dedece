"""The planner's fast path gives exactly the answers of the plain one.

The planner computes the model-state bytes once per distinct (dp, tp, pp, cp, ep),
evaluates an engine setting only on the layouts its rules let it run, keeps the degree
grid between a plan's searches, and answers "longest context" with one full search
fewer. The reference here does none of that: every engine setting over every layout,
each stage with :func:`vramplan.distributed.stage_terms` and
:func:`vramplan.distributed.training_terms` (what the single-layout estimate uses), the longest context by trying every rung of the ladder
with a full search. ``PlanReport.to_dict()`` (what ``vramplan plan --json`` prints)
must be identical, number for number.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vramplan.planner as planner
from vramplan.distributed import (
    ActivationCoefficients,
    BackwardActivations,
    StatePeaks,
    backward_peak_bytes,
    engine_setup,
    job_states,
    stage_terms,
    training_terms,
)
from vramplan.memory.overhead import Overheads
from vramplan.model import count_params
from vramplan.parallel import LayoutRequest, ParallelLayout, slice_coefficients
from vramplan.parallel_rules import engine_runs
from vramplan.plans import plan_training
from vramplan.step_time import RECOMPUTE_EXTRA_FLOPS, layout_costs, step_time_s
from vramplan.training import TrainingSetup


def reference_search(req: planner.PlanRequest, *, top: int, any_fit: bool = False) -> planner.PlanResult:
    """The plain search: every engine setting over every layout, per-layout arithmetic
    from :func:`training_terms`, no sharing between layouts or settings."""
    job, spec = req.job, req.job.model
    counts = count_params(spec)
    active = counts.active_params
    recomputes = planner._recomputes(req)
    run_setup = engine_setup(job.setup, "deepspeed")
    per_recompute = [ActivationCoefficients.from_setup(spec, replace(run_setup, recompute=r)) for r in recomputes]
    d = planner._all_degrees(req)
    evaluated = fitting = 0
    min_peak, min_gpus, least, no_offload, pool = math.inf, None, None, None, []
    per_gpu_rate = req.global_batch is None and len(req.gpu_counts) > 1
    if d.size:
        size = d.size
        d = d.with_recomputes(np.array([RECOMPUTE_EXTRA_FLOPS[r] for r in recomputes], dtype=float))
        acts = ActivationCoefficients(**{f.name: np.repeat(np.array([getattr(a, f.name) for a in per_recompute],
                                                                     dtype=float), size)
                                         for f in fields(ActivationCoefficients)})
        costs = layout_costs(req, job, d, active)
        pipelined = d.pp > 1
        last_rows = d.select(pipelined)
        last_acts = ActivationCoefficients(**{f.name: getattr(acts, f.name)[pipelined] for f in fields(acts)})
        for setting in req.engines:
            layout = setting.layout(req.gpus_per_node)
            coeffs = slice_coefficients(spec, layout.zero.param_persistence_threshold)
            states = job_states(job, setting.engine)

            def terms(stage, rows, a):
                degrees = dict(tp=rows.tp, pp=rows.pp, cp=rows.cp, ep=rows.ep, sp=rows.sp, micro_batch_size=rows.mbs,
                               micro_batches=rows.m)
                shared = stage_terms(coeffs, a, stage=stage, virtual_stages=req.virtual_stages, **degrees)
                return training_terms(job, layout, stage=stage, coeffs=coeffs, acts=a, states=states, shared=shared,
                                      overhead=rows.overhead_bytes, dp=rows.dp, **degrees)

            first = terms("first", d, acts)
            peak = first.peak_bytes.copy()
            host = first.states.host_per_gpu_bytes + 0 * peak
            if last_rows.size:
                last = terms("last", last_rows, last_acts)
                peak[pipelined] = np.maximum(peak[pipelined], last.peak_bytes)
                host[pipelined] = np.maximum(host[pipelined], last.states.host_per_gpu_bytes)
            host = host * np.minimum(d.num_gpus, req.gpus_per_node)
            runnable = engine_runs(setting, req.virtual_stages, d)
            evaluated += int(runnable.sum())
            host_ok = (host <= req.host_budget_bytes) & runnable
            if host_ok.any():
                min_peak = min(min_peak, float(peak[host_ok].min()))
            slack = np.floor(Overheads().allocator_slack_fraction * (peak - d.overhead_bytes))
            fits = (peak + slack <= req.budget_bytes) & host_ok
            if not fits.any():
                continue
            fitting += int(fits.sum())
            if any_fit:
                break
            sub = d.select(fits)
            smallest = int(sub.num_gpus.min())
            here = (smallest, float(peak[fits][sub.num_gpus == smallest].min()))
            least = here if least is None else min(least, here)
            min_gpus = least[0]
            if setting.offload == "none":
                no_offload = smallest if no_offload is None else min(no_offload, smallest)
            times = step_time_s(req, job, setting, sub, first.gpu_params[fits], active,
                                costs={k: v[fits] for k, v in costs.items()})
            fit_peak, fit_host = peak[fits], host[fits]
            score = -times["tokens_per_step"] / times["step_s"] / sub.num_gpus if per_gpu_rate else times["step_s"]
            best = np.argpartition(score, top)[:top] if score.size > top else np.arange(score.size)
            for i in best[np.argsort(score[best], kind="stable")]:
                key = (planner.OFFLOAD_RANKS_LAST and setting.offload != "none", float(score[i]),
                       int(sub.num_gpus[i]), float(fit_peak[i]))
                pool.append((key, (req, setting, recomputes[int(sub.recompute[i])], sub, times, fit_peak, fit_host,
                                   int(i))))
    pool.sort(key=lambda entry: entry[0])
    return planner.PlanResult(
        candidates=tuple(planner._candidate(*args) for _, args in pool[:top]), evaluated=evaluated, fitting=fitting,
        min_gpus=min_gpus, min_peak_bytes=int(min_peak) if math.isfinite(min_peak) else 0,
        min_gpus_peak_bytes=int(least[1]) if least else None, min_gpus_without_offload=no_offload,
        assumptions=planner.assumptions(req))


def reference_longest_context(req, limit=None, *, best_at_request=None):
    """Every rung of the ladder searched in full; the longest that fits."""
    found = None
    for seq in planner.context_ladder(req, limit):
        result = reference_search(replace(req, job=req.job.with_setup(seq=seq)), top=1)
        if result.candidates:
            found = (seq, result.candidates[0])
    return found


SETUPS = [
    ("llama-3.2-1b", "rtx-4090", TrainingSetup(seq=2048), None, {"max_gpus": 4}),
    ("llama-3.1-8b", "h100", None, None, {"max_gpus": 16}),
    ("llama-3.1-8b", "a100-80gb", TrainingSetup(seq=2048, attention="eager"), None, {"max_gpus": 8}),
    ("llama-3.1-8b", "h100", None, LayoutRequest(gpus=16), {"micro_batch": 4, "recompute": "full"}),
    ("llama-3.1-70b", "h100", TrainingSetup(method="lora"), None, {"max_gpus": 64}),
    ("llama-3.1-70b", "a100-40gb", TrainingSetup(method="qlora", seq=8192), None, {"max_gpus": 16}),
    ("llama-3.1-70b", "h100", None, LayoutRequest(zero="3"), {"max_gpus": 64}),
    ("llama-3.1-70b", "h100", None, LayoutRequest(fsdp="full_shard", offload="params"), {"max_gpus": 32}),
    ("llama-3.1-70b", "h100", None, LayoutRequest(gpus=64, virtual_stages=2), {"global_batch": 512}),
    ("llama-3.1-405b", "rtx-4090", None, LayoutRequest(gpus=8), {}),  # nothing fits: the cheapest changes
    ("qwen2.5-0.5b", "l4", TrainingSetup(precision="fp16-mixed", optimizer="adamw-8bit"), None, {"max_gpus": 4}),
    ("mixtral-8x7b", "h100", None, None, {"max_gpus": 64}),
    ("deepseek-v2-lite", "h100", TrainingSetup(seq=8192), None, {"max_gpus": 32}),
    ("qwen3-30b-a3b", "h200", None, LayoutRequest(gpus=64, ep=8), {}),
    ("gpt-oss-20b", "h100", None, None, {"max_gpus": 64}),
]


@pytest.mark.parametrize("model,gpu,setup,layout,kwargs", SETUPS, ids=[f"{s[0]}-{s[1]}-{i}" for i, s in
                                                                     enumerate(SETUPS)])
def test_fast_plan_is_the_reference_plan(model, gpu, setup, layout, kwargs, monkeypatch):
    fast = plan_training(model, gpu, setup, layout, **kwargs).to_dict()
    with monkeypatch.context() as m:
        m.setattr(planner, "plan", lambda req, *, top=10: reference_search(req, top=top))
        m.setattr(planner, "any_layout_fits", lambda req: reference_search(req, top=1, any_fit=True).fitting > 0)
        m.setattr(planner, "longest_context", reference_longest_context)
        slow = plan_training(model, gpu, setup, layout, **kwargs).to_dict()
    assert fast == slow


def test_the_reference_is_what_it_claims():
    # The monkeypatched names are the ones plan_training calls: a reference that never
    # ran would make the comparison above vacuous.
    calls = []
    with pytest.MonkeyPatch.context() as m:
        m.setattr(planner, "plan", lambda req, *, top=10: calls.append(req) or reference_search(req, top=top))
        plan_training("llama-3.2-1b", "rtx-4090", TrainingSetup(seq=2048), max_gpus=2)
    assert calls


@settings(max_examples=200, deadline=None)
@given(base=st.floats(0, 2**50), grads=st.floats(0, 2**45), high=st.floats(0, 2**45),
       current=st.floats(0, 2**45), m=st.integers(1, 4), persist=st.booleans())
def test_backward_peak_is_the_weighted_sum_it_replaced(base, grads, high, current, m, persist):
    # backward_peak_bytes picks "gradients resident" or "gradients forming" instead of
    # weighting both by 0/1; with finite non-negative terms the figures are identical.
    layout = ParallelLayout(engine="deepspeed") if persist else ParallelLayout(fsdp="full_shard")
    got = backward_peak_bytes(StatePeaks(backward_base_bytes=base, gradients_bytes=grads, step_peak_bytes=0.0),
                              BackwardActivations(high_bytes=high, current_layer_bytes=current), layout,
                              micro_batches=m)
    p = 1 if (m > 1 or persist) else 0
    weighted = base + p * (grads + high) + (1 - p) * max(high, current + grads)
    assert got == weighted
