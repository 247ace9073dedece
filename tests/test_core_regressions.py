"""Regressions: faults found while moving every answer into the core, one test each."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramplan.cli import main
from vramplan.errors import InputError, LayoutError
from vramplan.estimate import Verdict
from vramplan.parallel import ParallelLayout

STATIC = Path(__file__).resolve().parents[1] / "src" / "vramplan" / "web" / "static"


def cli_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def cli_error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


@pytest.mark.parametrize("layout", [("--gpus", "8", "--fsdp", "full_shard"), ("--gpus", "1"), ("--gpus", "8", "--zero", "3")])
def test_grad_accum_counts_with_layout_flags(layout, capsys):
    # --grad-accum and --micro-batches are one count: gradients accumulate over the
    # micro-batches either way (it used to be dropped once a layout flag was given)
    accum = cli_json(capsys, "train", "llama-3.1-8b", *layout, "--grad-accum", "4")
    micro = cli_json(capsys, "train", "llama-3.1-8b", *layout, "--micro-batches", "4")
    assert accum == micro
    assert cli_error(capsys, "train", "llama-3.1-8b", *layout, "--grad-accum", "4", "--micro-batches", "2") \
        .count("--grad-accum 4 and --micro-batches 2")


def test_one_gpu_is_the_layout_of_one_gpu(capsys):
    # the same job, same overhead, same keys, with or without --gpus 1
    for extra in ((), ("--gpu", "h100"), ("--grad-accum", "4"), ("--method", "qlora")):
        single = cli_json(capsys, "train", "llama-3.2-1b", *extra)
        layout = cli_json(capsys, "train", "llama-3.2-1b", "--gpus", "1", *extra)
        assert single == layout


def test_serving_plan_fixes_tp_before_the_top_cut(capsys):
    # --tp 8 with --top 1: the single fastest layout with tp = 8 (the filter used to run
    # on the top-1 list, leaving nothing)
    data = cli_json(capsys, "plan", "llama-3.1-8b", "--infer", "--gpu", "h100", "--max-gpus", "8", "--tp", "8",
                    "--top", "1")
    assert [c["tp"] for c in data["candidates"]] == [8]
    free = cli_json(capsys, "plan", "llama-3.1-8b", "--infer", "--gpu", "h100", "--max-gpus", "8", "--top", "50")
    best = next(c for c in free["candidates"] if c["tp"] == 8)
    assert data["candidates"][0] == best


@pytest.mark.parametrize("precision, enabled", [("fp16-mixed", "fp16"), ("bf16-mixed", "bf16"), ("fp16", "fp16"),
                                                ("fp32", None)])
def test_deepspeed_export_writes_the_plan_precision(precision, enabled, capsys):
    assert main(["plan", "llama-3.2-1b", "--gpu", "h100", "--gpus", "8", "--zero", "2", "--precision", precision,
                 "--export", "deepspeed"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert [k for k in ("fp16", "bf16") if cfg.get(k, {}).get("enabled")] == ([enabled] if enabled else [])
    if importlib.util.find_spec("deepspeed") is not None:
        # DeepSpeed's own reading of the config (deepspeed/runtime/precision_config.py)
        from deepspeed.runtime.precision_config import get_bfloat16_config, get_float16_config

        assert get_float16_config(cfg).enabled == (enabled == "fp16")
        assert get_bfloat16_config(cfg).enabled == (enabled == "bf16")


def test_megatron_and_fsdp_exports_write_the_plan_precision(capsys):
    assert main(["plan", "llama-3.2-1b", "--gpu", "h100", "--gpus", "8", "--zero", "1", "--tp", "2",
                 "--precision", "fp16-mixed", "--export", "megatron"]) == 0
    out = capsys.readouterr().out
    assert "--fp16" in out and "--bf16" not in out
    assert main(["plan", "llama-3.2-1b", "--gpu", "h100", "--gpus", "8", "--fsdp", "full_shard",
                 "--precision", "fp16-mixed", "--export", "fsdp"]) == 0
    assert "mixed_precision: fp16" in capsys.readouterr().out


def _fields_read_for_changes(js: str) -> list[set[str]]:
    """Fields the page reads from each entry of a ``changes`` list, one set per list drawn."""
    out: list[set[str]] = []
    for m in re.finditer(r"\.changes \|\| \[\]\)\.map\(\((\w+)\)", js):
        fields: set[str] = set()
        var, end = m.group(1), js.find(".join(", m.end())
        block = js[m.end():end]
        fields |= set(re.findall(rf"\b{var}\.(\w+)", block))
        for helper in re.findall(rf"(\w+)\({var}\)", block):  # helpers handed the entry
            body = re.search(rf"function {helper}\((\w+)\)\s*\{{(.*?)\n\}}", js, re.S)
            if body:
                fields |= set(re.findall(rf"\b{body.group(1)}\.(\w+)", body.group(2)))
        out.append(fields)
    return out


def test_page_reads_only_fields_the_changes_json_has(capsys):
    plan = cli_json(capsys, "plan", "llama-3.1-70b", "--gpu", "rtx-4090", "--gpus", "1", "--seq", "1024")
    assert plan["candidates"] == [] and plan["changes"]
    plan_keys = set(plan["changes"][0])
    assert plan_keys == {"change", "settings", "peak_bytes", "min_peak_bytes", "fits", "min_gpus"}
    train = cli_json(capsys, "train", "llama-3.1-8b", "--gpu", "rtx-4090")
    estimate_keys = set(train["changes"][0])
    assert estimate_keys == {"change", "settings", "peak_bytes", "fits", "required_bytes", "host_bytes"}
    js = "\n".join(p.read_text() for p in sorted(STATIC.glob("*.js")))
    lists = _fields_read_for_changes(js)
    assert len(lists) >= 2 and all(lists)
    for read in lists:  # each list the page draws reads the fields of one of the two shapes
        assert read <= plan_keys or read <= estimate_keys, f"the page reads {sorted(read)}, which no JSON has"


def test_trace_comparison_never_stands_in_adamw(monkeypatch):
    from vramplan.trace import compare
    from vramplan.trace.setup import TraceSetup

    sgd = TraceSetup(optimizer="sgd", optimizer_impl="forloop")
    assert compare.training_setup(sgd).optimizer == "sgd-momentum"  # torch SGD(momentum=0.9): one buffer
    monkeypatch.setattr(compare, "OPTIMIZER_NAMES",
                        {k: v for k, v in compare.OPTIMIZER_NAMES.items() if k != ("sgd", "foreach")})
    with pytest.raises(InputError, match="optimizer 'sgd' with optimizer_impl 'foreach'"):
        compare.training_setup(TraceSetup(optimizer="sgd"))


def test_sequence_must_split_over_cp_and_sp(capsys):
    err = cli_error(capsys, "train", "llama-3.1-8b", "--seq", "1001", "--cp", "2", "--gpus", "2")
    assert "--seq 1001 is not divisible by --cp 2" in err
    err = cli_error(capsys, "train", "llama-3.1-8b", "--seq", "1002", "--cp", "2", "--tp", "2", "--sp", "--gpus", "4")
    assert "--cp x --tp = 2 x 2 with --sp" in err
    err = cli_error(capsys, "plan", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--seq", "1001", "--cp", "2")
    assert "--seq 1001 is not divisible by --cp 2" in err


@given(seq=st.integers(1, 10_000), tp=st.sampled_from([1, 2, 4, 8]), cp=st.sampled_from([1, 2, 4, 8]),
       sp=st.booleans())
def test_sequence_split_rule(seq, tp, cp, sp):
    layout = ParallelLayout(dp=1, tp=tp, cp=cp, sequence_parallel=sp and tp > 1)
    per_rank = seq / cp / (tp if layout.sequence_parallel else 1)
    if per_rank == int(per_rank):
        layout.check_sequence(seq)
    else:
        with pytest.raises(LayoutError, match=f"^seq {seq} is not divisible"):
            layout.check_sequence(seq)


@given(capacity=st.integers(1, 2**45), required=st.integers(0, 2**45), reserve=st.integers(0, 2**40))
def test_headroom_counts_the_reserve(capacity, required, reserve):
    v = Verdict(gpu="x", capacity_bytes=capacity, peak_bytes=required, reserve_bytes=reserve)
    assert v.required_bytes == required + reserve
    assert v.headroom_bytes == capacity - required - reserve
    assert v.fits == (v.headroom_bytes >= 0)


def test_headroom_in_the_infer_json(capsys):
    data = cli_json(capsys, "infer", "llama-3.1-8b", "--gpu", "h100", "--reserve", "2GiB")
    v = data["verdict"]
    assert v["reserve_bytes"] == 2 * 2**30
    assert v["required_bytes"] == v["peak_bytes"] + v["overhead_bytes"] + v["reserve_bytes"]
    assert v["headroom_bytes"] == v["capacity_bytes"] - v["required_bytes"]


def test_one_tensor_parallel_rule_for_training_serving_and_planning(capsys):
    # qwen2.5-0.5b: 14 heads, 2 KV heads, intermediate 4864. tp = 7 divides the heads but
    # neither divides nor is a multiple of the KV heads: every path refuses it alike.
    from vramplan.catalog import find_model
    from vramplan.parallel import tensor_parallel_problem
    from vramplan.planner import enumerate_degrees

    spec = find_model("qwen2.5-0.5b").spec()
    assert tensor_parallel_problem(spec, 7) == ("num_kv_heads", 2)
    assert "tp=7 and num_kv_heads=2" in cli_error(capsys, "train", "qwen2.5-0.5b", "--gpus", "7", "--tp", "7")
    assert "--tp 7" in cli_error(capsys, "infer", "qwen2.5-0.5b", "--tp", "7")
    assert 7 not in set(enumerate_degrees(spec, 14, 14, 64, (1,))["tp"])
    # tp = 14 is a multiple of the KV heads but does not divide the MLP width 4864
    assert tensor_parallel_problem(spec, 14) == ("intermediate_size", 4864)
    planned = set(enumerate_degrees(spec, 14, 14, 64, (1,))["tp"])
    assert planned == {tp for tp in (1, 2, 7, 14) if tensor_parallel_problem(spec, tp) is None} == {1, 2}


@pytest.mark.parametrize("model, gpu, counts, seq", [
    ("llama-3.2-1b", "rtx-4090", (1, 2, 4, 8), 4096),
    ("llama-3.1-8b", "h100", (8, 16), 4096),
    ("qwen2.5-0.5b", "l4", (1,), 2048),
    ("llama-3.1-70b", "a100-80gb", (8, 16, 32), 8192),
    ("mixtral-8x7b", "h100", (8,), 1024),
])
def test_longest_context_bisection_is_the_linear_scan(model, gpu, counts, seq):
    # The scan it replaces: every rung in order until the first that does not fit.
    from vramplan.catalog import find_model
    from vramplan.distributed import TrainingJob
    from vramplan.gpus import find_gpu
    from vramplan.planner import PlanRequest, context_ladder, longest_context, plan
    from vramplan.training import TrainingSetup

    req = PlanRequest(job=TrainingJob(model=find_model(model).spec(), setup=TrainingSetup(seq=seq)),
                      gpu=find_gpu(gpu), gpu_counts=counts)
    scanned = None
    for rung in context_ladder(req):
        result = plan(PlanRequest(**{**req.__dict__, "job": req.job.with_setup(seq=rung)}), top=1)
        if not result.candidates:
            break
        scanned = (rung, result.candidates[0])
    first = plan(req, top=1).candidates
    assert longest_context(req) == scanned
    assert longest_context(req, best_at_request=first[0] if first else None) == scanned
