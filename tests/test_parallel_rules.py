"""The engines' own rules (vramplan.parallel_rules): no plan candidate and no export
breaks them, the rules quote what the installed engines say, and DeepSpeed's own
config parser accepts every DeepSpeed export."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.errors import InputError, LayoutError
from vramplan.export import export_config
from vramplan.parallel import ParallelLayout
from vramplan.parallel_rules import (
    SERVING_RULES,
    TRAINING_RULES,
    EngineChoice,
    broken_rules,
    export_problem,
    layout_rules_broken,
    training_allowed,
)
from vramplan.plans import TRAINING_EXPORTS, plan_inference, plan_training
from vramplan.parallel import LayoutRequest

needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
needs_accelerate = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                                      reason="accelerate not installed")

PLANS = [
    ("llama-3.1-70b", "h100", dict(max_gpus=64)),
    ("llama-3.1-70b", "a100-80gb", dict(layout=LayoutRequest(gpus=32))),
    ("llama-3.1-8b", "h100", dict(layout=LayoutRequest(gpus=8))),
    ("llama-3.1-8b", "rtx-4090", dict(max_gpus=8)),
    ("qwen2.5-7b", "l40s", dict(max_gpus=16)),
    ("mixtral-8x7b", "h100", dict(layout=LayoutRequest(gpus=16))),
    ("llama-3.1-70b", "h100", dict(layout=LayoutRequest(gpus=32, zero=1))),
    ("llama-3.1-70b", "h100", dict(layout=LayoutRequest(gpus=16, offload="params"))),
    ("llama-3.1-8b", "h100", dict(layout=LayoutRequest(gpus=16, fsdp="full_shard"))),
    ("llama-3.1-8b", "h100", dict(layout=LayoutRequest(gpus=16, fsdp="fsdp2"))),
]


@pytest.fixture(scope="module", params=PLANS, ids=lambda p: f"{p[0]}-{p[1]}-{p[2]}")
def report(request):
    model, gpu, kw = request.param
    return plan_training(model, gpu, top=10, **kw)


def test_no_candidate_breaks_an_engine_rule(report):
    assert report.candidates
    answers = list(report.candidates)
    if report.largest_micro_batch:
        answers.append(report.largest_micro_batch)
    if report.longest_context:
        answers.append(report.longest_context[1])
    for cand in answers:
        assert layout_rules_broken(cand.layout) == (), cand.layout.describe()
        lay = cand.layout
        # The rule the issue quotes, checked directly: no ZeRO-2/3 in DeepSpeed's pipeline engine.
        if lay.resolved_engine == "deepspeed" and lay.pp > 1:
            assert lay.zero_stage < 2


def test_every_export_is_runnable_or_refused_in_one_line(report):
    for engine in TRAINING_EXPORTS:
        try:
            text = export_config(engine, report)
        except InputError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"export {engine}: none of the")
            assert exc.fields[0] == "export"  # a field: the command line shows --export
            assert all(export_problem(engine, c, report.spec) for c in report.candidates)
            continue
        assert text
        if engine == "deepspeed":
            cfg = json.loads(text)
            if "pipeline" in cfg:
                assert cfg["zero_optimization"]["stage"] < 2
            assert "offload_param" not in cfg["zero_optimization"] or cfg["zero_optimization"]["stage"] == 3
            rank = cfg["_vramplan"]["plan_rank"]
            # the export is the best candidate DeepSpeed runs: every better one is another engine's
            assert all(export_problem("deepspeed", c) for c in report.candidates[:rank - 1])


def test_top_70b_deepspeed_export_never_pairs_zero3_with_a_pipeline():
    # Before: the best 70B layout on up to 64 H100 exported "stage": 3 with "pipeline": {"stages": 2}.
    cfg = json.loads(export_config("deepspeed", plan_training("llama-3.1-70b", "h100", max_gpus=64)))
    assert not ("pipeline" in cfg and cfg["zero_optimization"]["stage"] >= 2)


@settings(max_examples=200, deadline=None)
@given(engine=st.sampled_from(["deepspeed", "fsdp", "megatron", "ddp"]), zero=st.integers(0, 3),
       fsdp=st.sampled_from(["none", "full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2"]),
       offload=st.sampled_from(["none", "optimizer", "params"]), virtual=st.integers(1, 3),
       degrees=st.lists(st.tuples(st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4, 8]),
                                  st.sampled_from([1, 2, 4])), min_size=1, max_size=12))
def test_vectorised_filter_matches_rule_by_rule(engine, zero, fsdp, offload, virtual, degrees):
    choice = EngineChoice(engine=engine, zero_stage=zero, fsdp=fsdp, offload=offload, virtual_stages=virtual)
    tp, pp, cp = (np.array(x) for x in zip(*degrees))
    mask = training_allowed(choice, tp=tp, pp=pp, cp=cp)
    for i, (t, p, c) in enumerate(degrees):
        assert bool(mask[i]) == (broken_rules(choice, tp=t, pp=p, cp=c) == ())


def test_layouts_the_engines_refuse_are_named():
    refused = [ParallelLayout(dp=4, pp=2, zero_stage=3, engine="deepspeed"),
               ParallelLayout(dp=4, pp=2, zero_stage=2, engine="deepspeed"),
               ParallelLayout(dp=4, cp=2, zero_stage=1, engine="deepspeed"),
               ParallelLayout(dp=4, pp=2, fsdp="full_shard"),
               ParallelLayout(dp=4, tp=2, fsdp="hybrid_shard")]
    for lay in refused:
        assert layout_rules_broken(lay), lay.describe()
    accepted = [ParallelLayout(dp=4, pp=2, zero_stage=1, engine="deepspeed"),
                ParallelLayout(dp=8, zero_stage=3, offload="params", engine="deepspeed"),
                ParallelLayout(dp=2, tp=2, pp=2, cp=2, fsdp="fsdp2"),
                ParallelLayout(dp=2, tp=4, pp=2, cp=2, zero_stage=1, engine="megatron")]
    for lay in accepted:
        assert layout_rules_broken(lay) == (), lay.describe()


def test_fixed_degrees_no_engine_runs_fail_naming_the_rule():
    with pytest.raises(LayoutError, match=r"--pp 2 --zero 3: DeepSpeed's pipeline engine .*pipe/engine\.py"):
        plan_training("llama-3.1-70b", "h100", layout=LayoutRequest(gpus=16, pp=2, zero=3))


def test_serving_exports_follow_llamacpp_and_vllm_rules():
    report = plan_inference("llama-3.1-70b", "a100-80gb", max_gpus=8, context=8192, batch=16)
    line = export_config("llamacpp", report)
    assert "llama-server" in line
    rank = int(re.search(r"layout (\d+) of the plan", line).group(1)) if "layout" in line else 1
    assert report.candidates[rank - 1].tp == 1
    assert all(c.tp > 1 for c in report.candidates[:rank - 1])
    assert export_problem("vllm", report.candidates[0], report.spec) is None


# --------------------------------------------------------------------------- sources

def _installed(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).parent


@needs_deepspeed
def test_deepspeed_rules_quote_the_installed_source():
    root = _installed("deepspeed")
    pipe = (root / "runtime/pipe/engine.py").read_text()
    assert "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism" in pipe
    assert re.search(r"zero_optimization_stage\(\s*\)\s*<\s*ZeroStageEnum\.gradients", pipe)
    zero = (root / "runtime/zero/config.py").read_text()
    assert "Valid only with stage 3" in zero and "Valid for ZeRO stage 1, 2, 3" in zero
    rules = {r.name: r for r in TRAINING_RULES}
    assert "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism" in rules["deepspeed-pipeline-zero"].source


@needs_accelerate
def test_fsdp1_rule_quotes_accelerate():
    text = (_installed("accelerate") / "parallelism_config.py").read_text()
    assert "ParallelismConfig is only compatible DistributedType.FSDP (version 2)" in text


def test_every_rule_has_a_source_and_binds_an_engine():
    for r in TRAINING_RULES + SERVING_RULES:
        assert r.source and r.rule and r.engine in ("deepspeed", "fsdp", "megatron", "ddp", "vllm", "llamacpp")
    assert len({r.name for r in TRAINING_RULES + SERVING_RULES}) == len(TRAINING_RULES + SERVING_RULES)


@needs_deepspeed
@pytest.mark.parametrize("flags", [dict(max_gpus=64), dict(layout=LayoutRequest(gpus=32, zero=1)),
                                   dict(layout=LayoutRequest(gpus=16, zero=3, offload="params")),
                                   dict(layout=LayoutRequest(gpus=16, zero=2, offload="optimizer"))])
def test_deepspeed_config_parser_accepts_the_export(monkeypatch, flags):
    # DeepSpeed's own DeepSpeedConfig parses the export with the data-parallel world size
    # the layout has (its batch assertion: train_batch = micro x accumulation x dp), and the
    # condition PipelineEngine.__init__ asserts holds on the parsed stage.
    import deepspeed.runtime.config as ds_config
    from deepspeed.runtime.pipe.engine import PipelineEngine
    from deepspeed.runtime.zero.config import ZeroStageEnum

    cfg = json.loads(export_config("deepspeed", plan_training("llama-3.1-70b", "h100", **flags)))
    meta = cfg.pop("_vramplan")
    dp = meta["num_gpus"] // (meta["tp"] * meta["pp"])

    class Mpu:
        def get_data_parallel_world_size(self):
            return dp

        def get_data_parallel_rank(self):
            return 0

    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    parsed = ds_config.DeepSpeedConfig(cfg, mpu=Mpu())
    assert parsed.world_size == dp and parsed.train_batch_size == cfg["train_batch_size"]
    if meta["pp"] > 1:
        assert "ZeroStageEnum.gradients" in inspect.getsource(PipelineEngine.__init__)
        assert parsed.zero_optimization_stage < ZeroStageEnum.gradients


# --------------------------------------------------------------------------- offload in the step time

def test_no_offload_layout_that_fits_ranks_above_offload_layouts():
    # Llama 3.1 70B on 32 H100: layouts without offload fit, so every one of them ranks
    # above every offload layout.
    report = plan_training("llama-3.1-70b", "h100", layout=LayoutRequest(gpus=32), top=10)
    offload = [c.layout.offload != "none" for c in report.candidates]
    assert offload[0] is False
    assert offload == sorted(offload)
    with_offload = plan_training("llama-3.1-70b", "h100", layout=LayoutRequest(gpus=32, offload="params"), top=1)
    assert with_offload.candidates  # offload layouts fit too: the order is a choice, not a lack


def test_offload_pays_the_host_link_and_the_cpu_step():
    from vramplan.distributed import TrainingJob
    from vramplan.gpus import find_gpu
    from vramplan.planner import EngineSetting, PlanRequest, plan
    from vramplan.catalog import find_model
    from vramplan.step_time import CPU_ADAM_BYTES_PER_PARAM, HOST_LINK_BYTES_PER_S, host_memory_bytes_per_s
    from vramplan.training import TrainingSetup

    spec = find_model("llama-3.1-8b").spec()
    gpu = find_gpu("h100")
    base = PlanRequest(job=TrainingJob(model=spec, setup=TrainingSetup(seq=4096)), gpu=gpu, gpu_counts=(8,),
                       fixed_degrees=(("dp", 8),), micro_batch_sizes=(1,), recomputes=("full",))
    by = {}
    for setting in (EngineSetting("deepspeed", 3), EngineSetting("deepspeed", 3, offload="optimizer"),
                    EngineSetting("deepspeed", 3, offload="params")):
        by[setting.offload] = plan(replace(base, engines=(setting,)), top=1).candidates[0]
    none, opt, par = by["none"], by["optimizer"], by["params"]
    assert none.parts["offload_s"] == 0
    # Same degrees: the offload layouts are slower by at least their exposed terms.
    part = 8.03e9 / 8  # Llama 3.1 8B parameters over 8 data-parallel ranks (params on GPU / dp)
    cpu_step = CPU_ADAM_BYTES_PER_PARAM * part * 8 / host_memory_bytes_per_s(gpu)
    assert opt.parts["offload_cpu_step_s"] == pytest.approx(cpu_step, rel=0.01)
    upload = 2 * part / HOST_LINK_BYTES_PER_S
    assert opt.step_s >= none.step_s + cpu_step + upload * 0.99
    assert par.step_s >= none.step_s + cpu_step * 0.99
    # Parameter offload moves the parameters every micro-batch: more host traffic than optimizer offload.
    assert par.parts["offload_pcie_s"] > opt.parts["offload_pcie_s"]


def test_docs_table_lists_every_rule():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "parallel.md").read_text()
    for r in TRAINING_RULES + SERVING_RULES:
        assert f"`{r.name}`" in doc, r.name


def test_train_on_a_refused_layout_warns_with_the_rule(capsys):
    from vramplan.cli import main

    assert main(["train", "llama-3.1-70b", "--gpus", "16", "--tp", "2", "--pp", "2", "--zero", "3", "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("deepspeed/runtime/pipe/engine.py" in w for w in warnings)
    assert main(["train", "llama-3.1-70b", "--gpus", "16", "--tp", "2", "--pp", "2", "--zero", "1", "--json"]) == 0
    assert not any("does not run this layout" in w for w in json.loads(capsys.readouterr().out)["warnings"])


def test_fewest_gpus_says_when_it_needs_offload():
    report = plan_training("llama-3.1-70b", "h100", max_gpus=64)
    res = report.result
    assert res.min_gpus_without_offload is not None and res.min_gpus_without_offload >= res.min_gpus
    first_offload = next((i for i, c in enumerate(report.candidates) if c.layout.offload != "none"),
                         len(report.candidates))
    assert all(c.layout.offload != "none" for c in report.candidates[first_offload:])
    if res.min_gpus < res.min_gpus_without_offload:
        fewest = plan_training("llama-3.1-70b", "h100", layout=LayoutRequest(gpus=res.min_gpus), top=3)
        assert fewest.candidates and all(c.layout.offload != "none" for c in fewest.candidates)
