"""One fit rule (peak + named overheads + reserve) and the shared advisor: every change
it offers is re-run through the real command line and must say what it claimed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan import questions
from vramplan.cli import main
from vramplan.memory.overhead import (
    CUBLAS_WORKSPACE_CONFIG_HOPPER,
    CUDA_CONTEXT_BYTES_TYPICAL,
    Overheads,
    cublas_workspace_bytes,
)
from vramplan.units import GiB


def run_json(capsys, *args: str) -> dict:
    code = main([*args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def flags(question: str, change: dict) -> list[str]:
    """The command line's flags for a change's ``settings`` (option names: the JSON, like
    the Python API, names fields; the command line renders them as flags)."""
    from vramplan.cli.common import settings_flags

    return list(settings_flags(question, change["settings"]))


def run_fail(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- one fit rule -------------------------------------------------------------------------
def test_train_verdict_counts_named_overheads_and_reserve(capsys):
    """The example that used to fit with 628 KiB to spare (tensor memory only): the
    verdict now adds the CUDA context, the cuBLAS workspace (PyTorch's Hopper default
    ':4096:8' = 32 MiB) and 3 % allocator slack over the tensors, and --reserve."""
    data = run_json(capsys, "train", "llama-3.1-8b", "--method", "qlora", "--gpu", "rtx-4090", "--seq", "7885",
                    "--reserve", "1GiB")
    v = data["verdict"]
    names = {c["name"]: c["bytes"] for c in v["overheads"]}
    assert names["overhead/cuda_context"] == CUDA_CONTEXT_BYTES_TYPICAL
    assert names["overhead/cublas_workspace"] == cublas_workspace_bytes(CUBLAS_WORKSPACE_CONFIG_HOPPER) == 32 * 2**20
    assert names["overhead/allocator_slack"] == int(data["total_bytes"] * Overheads().allocator_slack_fraction)
    assert v["peak_bytes"] == data["total_bytes"]
    assert v["reserve_bytes"] == GiB
    assert v["required_bytes"] == v["peak_bytes"] + sum(names.values()) + GiB
    assert v["headroom_bytes"] == v["capacity_bytes"] - v["required_bytes"]
    assert v["fits"] is (v["headroom_bytes"] >= 0) is False


@pytest.mark.parametrize("reserve", [None, "2GiB"])
def test_training_solvers_leave_the_rule_s_room(reserve):
    values = {"model": "llama-3.1-8b", "method": "qlora", "gpu": "rtx-4090", "reserve": reserve}
    fit = questions.train(values).fits
    assert fit.largest_micro_batch >= 1 and fit.largest_seq >= 1
    assert questions.train({**values, "batch": fit.largest_micro_batch}, advise=False).verdict.fits
    assert not questions.train({**values, "batch": fit.largest_micro_batch + 1}, advise=False).verdict.fits
    assert questions.train({**values, "seq": fit.largest_seq}, advise=False).verdict.fits
    assert not questions.train({**values, "seq": fit.largest_seq + 1}, advise=False).verdict.fits


def test_layout_verdict_adds_the_slack_beside_its_own_fixed_overhead(capsys):
    data = run_json(capsys, "train", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--zero", "3")
    v = data["verdict"]
    assert data["by_category"]["overhead"] > 0  # the layout holds the CUDA context, cuBLAS and NCCL itself
    assert [c["name"] for c in v["overheads"]] == ["overhead/allocator_slack"]
    assert v["required_bytes"] == v["peak_bytes"] + v["overhead_bytes"]


def test_infer_verdict_has_the_same_shape(capsys):
    data = run_json(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--reserve", "1GiB")
    v = data["verdict"]
    assert v["required_bytes"] == v["peak_bytes"] + v["overhead_bytes"] + v["reserve_bytes"]
    assert v["reserve_bytes"] == GiB
    assert data["by_category"]["overhead"] > 0  # serving holds its overheads among the components


# ---- the advisor: each claim re-run through the CLI -----------------------------------------
def _check_claims(capsys, base: list[str], changes: list[dict]) -> None:
    for ch in changes:
        again = run_json(capsys, *base, *flags(base[0], ch))
        assert again["total_bytes"] == ch["peak_bytes"], ch
        assert again["verdict"]["fits"] is ch["fits"], ch
        assert again["verdict"]["required_bytes"] == ch["required_bytes"], ch
        assert again["host_bytes"] == ch["host_bytes"], ch


def test_full_fine_tune_on_a_4090_answers_with_changes(capsys):
    base = ["train", "llama-3.1-8b", "--gpu", "rtx-4090"]
    data = run_json(capsys, *base)
    assert data["verdict"]["fits"] is False
    changes = data["changes"]
    assert changes and all(set(c) >= {"change", "settings", "peak_bytes", "fits"} for c in changes)
    assert changes[0]["fits"]  # fitting changes come first
    fits = [c["fits"] for c in changes]
    assert fits == sorted(fits, reverse=True)
    shown = [" ".join(flags("train", c)) for c in changes]
    assert "--method qlora" in shown and {"method": "qlora"} in [c["settings"] for c in changes]
    assert any("--offload" in f for f in shown)
    offload = next(c for c in changes if "offload" in c["settings"])
    assert offload["host_bytes"] > 0
    _check_claims(capsys, base, changes)


def test_training_micro_batch_and_sequence_changes(capsys):
    base = ["train", "llama-3.1-8b", "--method", "qlora", "--gpu", "rtx-4090", "--batch", "8", "--seq", "4096"]
    data = run_json(capsys, *base)
    assert data["verdict"]["fits"] is False
    smaller = next(c for c in data["changes"] if "batch" in c["settings"])
    b, accum = smaller["settings"]["batch"], smaller["settings"]["grad_accum"]
    assert smaller["fits"] and b == data["fits"]["largest_micro_batch"] and b * accum >= 8
    _check_claims(capsys, base, data["changes"])


def test_serving_changes(capsys):
    base = ["infer", "llama-3.1-70b", "--gpu", "rtx-4090", "--batch", "8", "--context", "8192"]
    data = run_json(capsys, *base)
    assert data["verdict"]["fits"] is False
    shown = [" ".join(flags("infer", c)) for c in data["changes"]]
    assert "--kv-dtype fp8" in shown and any(f.startswith("--tp") for f in shown)
    assert any(f.startswith("--engine llamacpp --weights Q4_K_M --n-gpu-layers") for f in shown)
    _check_claims(capsys, base, data["changes"])


def test_llamacpp_fit_solves_gpu_layers(capsys):
    base = ["infer", "llama-3.1-70b", "--gpu", "rtx-4090", "--engine", "llamacpp", "--weights", "Q4_K_M"]
    data = run_json(capsys, *base, "--fit")
    layers = data["solved"]["n_gpu_layers"]
    assert 0 < layers < 80 and data["verdict"]["fits"] and data["host_bytes"] > 0
    assert data["details"]["n_gpu_layers"] == layers
    one_more = run_json(capsys, *base, "--n-gpu-layers", str(layers + 1))
    assert not one_more["verdict"]["fits"]
    # without --fit the advisor names the same count
    plain = run_json(capsys, *base)
    assert {"n_gpu_layers": layers} in [c["settings"] for c in plain["changes"]]
    _check_claims(capsys, base, plain["changes"])


def test_fit_needs_llamacpp(capsys):
    code, _, err = run_fail(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--fit")
    assert code == 2 and "--engine llamacpp" in err


def test_fitting_jobs_carry_no_changes(capsys):
    assert run_json(capsys, "train", "llama-3.2-1b", "--gpu", "h100")["changes"] == []
    assert run_json(capsys, "infer", "llama-3.2-1b", "--gpu", "h100")["changes"] == []


def test_table_lists_the_changes(capsys):
    code = main(["train", "llama-3.1-8b", "--gpu", "rtx-4090"])
    out = capsys.readouterr().out
    assert code == 0 and "what to change" in out and "--method qlora" in out


# ---- plan --infer: no silent empty plan ------------------------------------------------------
@pytest.mark.parametrize("flags, expected", [
    (["--weights", "Q4_K_M"], "--engine llamacpp"),
    (["--weights", "mxfp4"], "mxfp4"),
    (["--kv-dtype", "bogus"], "bogus"),
    (["--weights", "no-such-format"], "no-such-format"),
])
def test_plan_infer_refuses_what_it_cannot_estimate(capsys, flags, expected):
    code, out, err = run_fail(capsys, "plan", "llama-3.1-8b", "--infer", "--gpu", "rtx-4090", *flags)
    assert code == 2 and expected in err and "nothing fits" not in out


def test_plan_infer_with_the_llamacpp_engine(capsys):
    data = run_json(capsys, "plan", "llama-3.1-8b", "--infer", "--gpu", "rtx-4090", "--weights", "Q4_K_M",
                    "--engine", "llamacpp")
    assert data["engine"] == "llamacpp" and data["candidates"]
    best = data["candidates"][0]
    assert best["num_gpus"] == 1 and best["tp"] == 1
    single = run_json(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--weights", "Q4_K_M", "--engine",
                      "llamacpp", "--context", str(data["context"]))
    assert best["peak_bytes"] == single["total_bytes"]


def test_plan_changes_carry_flags_that_do_what_they_say(capsys):
    base = ["plan", "llama-3.1-70b", "--gpu", "rtx-4090", "--max-gpus", "8", "--seq", "8192", "--top", "1"]
    data = run_json(capsys, *base)
    assert not data["candidates"] and data["changes"]
    for ch in data["changes"]:
        assert set(ch) >= {"change", "settings", "peak_bytes", "fits"} and ch["peak_bytes"] == ch["min_peak_bytes"]
        assert ch["settings"], ch  # every change the planner tries has its settings
        again = run_json(capsys, *base, *flags("plan", ch))
        assert bool(again["candidates"]) is ch["fits"], ch
        if ch["fits"]:
            assert again["min_gpus"] == ch["min_gpus"], ch


def test_serving_plan_with_nothing_fitting_says_what_to_change(capsys):
    base = ["plan", "llama-3.1-405b", "--infer", "--gpu", "rtx-4090", "--top", "1"]
    data = run_json(capsys, *base)
    assert not data["candidates"] and data["min_peak_bytes"] > data["budget_bytes"]
    assert data["changes"] and data["changes"][0]["fits"]
    for ch in data["changes"]:
        again = run_json(capsys, *base, *flags("plan", ch))
        assert bool(again["candidates"]) is ch["fits"], ch
        if ch["fits"]:
            assert again["min_gpus"] == ch["min_gpus"] and again["candidates"][0]["peak_bytes"] == ch["peak_bytes"]
        else:
            assert again["min_peak_bytes"] == ch["peak_bytes"], ch


# ---- properties ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 16), seq=st.sampled_from([256, 1024, 4096, 16384]),
       method=st.sampled_from(["full", "lora", "qlora"]), reserve_mib=st.integers(0, 4096),
       gpu=st.sampled_from(["rtx-4090", "a100-80gb", "h100"]))
def test_every_training_verdict_is_the_one_sum(batch, seq, method, reserve_mib, gpu):
    """required = peak + overheads + reserve; fits exactly when the headroom is not
    negative; the overheads are the named process terms, the slack their stated share."""
    est = questions.train({"model": "llama-3.2-1b", "batch": batch, "seq": seq, "method": method, "gpu": gpu,
                           "reserve": f"{reserve_mib}MiB" if reserve_mib else None}, advise=False)
    v = est.verdict
    assert v.peak_bytes == est.total_bytes
    assert v.required_bytes == v.peak_bytes + sum(c.bytes for c in v.overheads) + reserve_mib * 2**20
    assert v.fits is (v.capacity_bytes - v.required_bytes >= 0)
    slack = {c.name: c.bytes for c in v.overheads}["overhead/allocator_slack"]
    assert slack == int(est.total_bytes * Overheads().allocator_slack_fraction)


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 64), context=st.sampled_from([2048, 8192, 32768]), reserve_gib=st.integers(0, 8))
def test_llamacpp_fit_is_the_boundary(batch, context, reserve_gib):
    values = {"model": "llama-3.1-8b", "engine": "llamacpp", "weights": "Q4_K_M", "gpu": "rtx-4090",
              "batch": batch, "context": context, "reserve": f"{reserve_gib}GiB" if reserve_gib else None}
    layers = questions.infer({**values, "fit": True}, advise=False).solved[0][1]
    if layers >= 0:
        assert questions.infer({**values, "n_gpu_layers": layers}, advise=False).verdict.fits
    if layers < 33:
        assert not questions.infer({**values, "n_gpu_layers": layers + 1}, advise=False).verdict.fits
