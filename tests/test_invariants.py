"""Invariants of every estimate (hypothesis over catalog models and random layouts):

- more batch, sequence, context, accumulation or LoRA rank never needs less memory;
- more sharding (ZeRO stage, more data-parallel GPUs, TP, CP) never needs more per GPU,
  except by the buffers the estimate names for it (``buffers/*`` and the NCCL
  overhead; e.g. ZeRO-3's gathered parameters and unsharded gradients, DeepSpeed's
  ``stage3_prefetch_bucket_size``);
- ``fits`` holds exactly when ``headroom_bytes >= 0``;
- every byte figure is a whole number, finite and non-negative;
- the planner's chosen layout, estimated directly, has the peak the planner reported.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import catalog_slugs
from vramplan.errors import VramplanError

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
SLUGS = catalog_slugs()
SMALL = ("gpt2", "llama-3.2-1b", "qwen2.5-0.5b", "pythia-1b", "gemma-3-1b", "deepseek-v2-lite", "mixtral-8x7b",
         "qwen1.5-moe-a2.7b", "llama-3.1-8b", "qwen3-30b-a3b")
NAMED_BUFFERS = ("buffers/", "overhead")
"""Component name prefixes an increase under more sharding may come from."""


def _sane(est) -> None:
    for c in est.components:
        assert isinstance(c.bytes, int) and c.bytes >= 0, (c.name, c.bytes)
    assert isinstance(est.total_bytes, int) and est.total_bytes >= 0
    assert est.total_bytes == sum(c.bytes for c in est.components)


def _by_name(est) -> dict[str, int]:
    return {c.name: c.bytes for c in est.components}


def _explained_rise(before, after) -> int:
    """Bytes the named buffers grew by from ``before`` to ``after``."""
    a, b = _by_name(before), _by_name(after)
    return sum(max(0, b.get(n, 0) - a.get(n, 0)) for n in set(a) | set(b) if n.startswith(NAMED_BUFFERS))


# --------------------------------------------------------------------------- single GPU training

@SETTINGS
@given(model=st.sampled_from(SLUGS), method=st.sampled_from(["full", "lora", "qlora"]),
       batch=st.integers(1, 8), seq=st.integers(16, 4096), accum=st.integers(1, 4), rank=st.integers(1, 64),
       field=st.sampled_from(["batch", "seq", "grad_accum", "lora_rank"]), more=st.integers(1, 1024))
def test_training_is_monotone(model, method, batch, seq, accum, rank, field, more):
    from vramplan.training import TrainingSetup, estimate_training

    setup = TrainingSetup(method=method, batch=batch, seq=seq, grad_accum=accum, lora_rank=rank)
    try:
        base = estimate_training(model, setup)
        bigger = estimate_training(model, replace(setup, **{field: getattr(setup, field) + more}))
    except VramplanError:
        assume(False)
        return
    _sane(base)
    _sane(bigger)
    assert bigger.total_bytes >= base.total_bytes, (field, base.total_bytes, bigger.total_bytes)


# --------------------------------------------------------------------------- inference

@SETTINGS
@given(model=st.sampled_from(SLUGS), engine=st.sampled_from(["hf", "vllm", "llamacpp"]),
       batch=st.integers(1, 16), context=st.integers(16, 32768), field=st.sampled_from(["batch", "context"]),
       more=st.integers(1, 4096), gpu=st.sampled_from(["h100", "rtx-4090", "a100-40gb", "l4"]))
def test_inference_is_monotone_and_fits_iff_headroom(model, engine, batch, context, field, more, gpu):
    from vramplan.inference import InferenceSetup, estimate_inference

    weights = "Q4_K_M" if engine == "llamacpp" else None
    setup = InferenceSetup(engine=engine, weights=weights, batch=batch, context=context, gpu=gpu)
    try:
        base = estimate_inference(model, setup)
        bigger = estimate_inference(model, replace(setup, **{field: getattr(setup, field) + more}))
    except VramplanError:
        assume(False)
        return
    for est in (base, bigger):
        _sane(est)
        assert est.verdict.fits == (est.verdict.headroom_bytes >= 0)
    if engine != "vllm":  # vLLM preallocates its share: the total does not follow the context
        assert bigger.total_bytes >= base.total_bytes, (field, base.total_bytes, bigger.total_bytes)


# --------------------------------------------------------------------------- sharding

def _layout_estimate(model, layout, setup=None):
    from vramplan.distributed import TrainingJob, estimate_on_layout as estimate_training
    from vramplan.model import resolve_model

    job = TrainingJob(model=resolve_model(model), setup=setup)
    return estimate_training(job, layout, num_gpus=layout.num_gpus)


@SETTINGS
@given(model=st.sampled_from(SMALL), dp=st.sampled_from([2, 4, 8, 16]), stage=st.sampled_from([0, 1, 2]))
def test_higher_zero_stage_never_costs_more_than_its_named_buffers(model, dp, stage):
    from vramplan.parallel import ParallelLayout

    base = ParallelLayout(dp=dp, zero_stage=stage, engine="deepspeed")
    try:
        before = _layout_estimate(model, base)
        after = _layout_estimate(model, replace(base, zero_stage=stage + 1))
    except VramplanError:
        assume(False)
        return
    _sane(before)
    _sane(after)
    assert after.total_bytes <= before.total_bytes + _explained_rise(before, after)


@SETTINGS
@given(model=st.sampled_from(SMALL), dp=st.sampled_from([2, 4, 8]), stage=st.sampled_from([1, 2, 3]))
def test_more_data_parallel_gpus_never_cost_more_than_named_buffers(model, dp, stage):
    from vramplan.parallel import ParallelLayout

    base = ParallelLayout(dp=dp, zero_stage=stage, engine="deepspeed")
    try:
        before = _layout_estimate(model, base)
        after = _layout_estimate(model, replace(base, dp=dp * 2))
    except VramplanError:
        assume(False)
        return
    assert after.total_bytes <= before.total_bytes + _explained_rise(before, after)


@SETTINGS
@given(model=st.sampled_from(SMALL), degree=st.sampled_from(["tp", "cp"]), start=st.sampled_from([1, 2]))
def test_more_tp_or_cp_never_costs_more_than_named_buffers(model, degree, start):
    """Within one engine (Megatron-LM): switching engine changes the recipe (DDP's AMP
    keeps 16 B/param, Megatron's bf16 params with fp32 main grads 18 B/param, per
    Megatron-LM's distributed-optimizer docs), which is not "more sharding"."""
    from vramplan.parallel import ParallelLayout

    base = ParallelLayout(engine="megatron", **{degree: start})
    try:
        before = _layout_estimate(model, base)
        after = _layout_estimate(model, replace(base, **{degree: start * 2}))
    except VramplanError:
        assume(False)
        return
    assert after.total_bytes <= before.total_bytes + _explained_rise(before, after), \
        (degree, start, before.total_bytes, after.total_bytes)


@pytest.mark.parametrize("model", ["gpt2", "llama-3.2-1b"])
def test_inference_tp_rise_is_the_named_nccl_buffers(model):
    from vramplan.inference import InferenceSetup, estimate_inference

    for tp in (1, 2):
        try:
            before = estimate_inference(model, InferenceSetup(tp=tp))
            after = estimate_inference(model, InferenceSetup(tp=tp * 2))
        except VramplanError:
            continue
        assert after.total_bytes <= before.total_bytes + _explained_rise(before, after)


# --------------------------------------------------------------------------- planner

@settings(SETTINGS, max_examples=12)
@given(model=st.sampled_from(("gpt2", "llama-3.2-1b", "qwen2.5-0.5b", "llama-3.1-8b", "mixtral-8x7b")),
       gpus=st.sampled_from([1, 2, 4, 8, 16]), seq=st.sampled_from([512, 2048, 4096]))
def test_planner_choice_reestimated_gives_the_same_peak(model, gpus, seq):
    from vramplan.distributed import TrainingJob, estimate_on_layout as estimate_training
    from vramplan.gpus import find_gpu
    from vramplan.model import resolve_model
    from vramplan.planner import PlanRequest, plan
    from vramplan.training import TrainingSetup

    job = TrainingJob(model=resolve_model(model), setup=TrainingSetup(seq=seq))
    result = plan(PlanRequest(job=job, gpu=find_gpu("h100"), gpu_counts=(gpus,)), top=3)
    for cand in result.candidates:
        assert cand.peak_bytes >= 0
        setup = replace(job.setup, batch=cand.micro_batch_size, recompute=cand.recompute)
        direct = estimate_training(replace(job, setup=setup), cand.layout, num_gpus=cand.layout.num_gpus)
        _sane(direct)
        assert abs(direct.total_bytes - cand.peak_bytes) <= max(2, cand.peak_bytes * 1e-9), \
            (cand.layout.describe(), direct.total_bytes, cand.peak_bytes)


@pytest.mark.parametrize("model", ["mixtral-8x7b", "deepseek-v2-lite"])
def test_cp_rise_from_one_gpu_is_the_engine_recipe(model):
    """cp 1 -> 2 switches DDP (torch AMP: fp32 params + fp32 grads + Adam m, v = 16 B
    per parameter) to Megatron-LM (bf16 params + fp32 main grads + fp32 main params +
    m, v = 18 B per parameter; Megatron Core's distributed-optimizer table). The
    states grow by exactly 2 B per parameter; the rest of the rise is named buffers."""
    from vramplan.model import count_params, resolve_model
    from vramplan.parallel import ParallelLayout

    states = ("weights", "master_weights", "gradients", "optimizer")
    ddp = _layout_estimate(model, ParallelLayout(cp=1))
    megatron = _layout_estimate(model, ParallelLayout(cp=2))
    assert ParallelLayout(cp=2).resolved_engine == "megatron" and ParallelLayout().resolved_engine == "ddp"
    grew = sum(_by_name(megatron).get(n, 0) for n in states) - sum(_by_name(ddp).get(n, 0) for n in states)
    assert grew == 2 * count_params(resolve_model(model)).total_params
    assert megatron.total_bytes - ddp.total_bytes <= grew + _explained_rise(ddp, megatron)
