"""``vramplan plan`` and ``vramplan gpus`` on the command line: JSON shape, answers,
and one-line errors for bad layouts (exit code 2)."""

from __future__ import annotations

import json

import pytest

from vramplan.cli import main


def _json(capsys, *args: str) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_gpus_lists_the_catalogue(capsys):
    data = _json(capsys, "gpus")
    assert len(data["gpus"]) >= 40
    h100 = [g for g in data["gpus"] if g["slug"] == "h100-sxm"][0]
    assert h100["memory_bytes"] == 85_520_809_984  # 81559 MiB, what the runtime reports
    assert _json(capsys, "gpus", "--search", "mi300")["gpus"][0]["vendor"] == "amd"


def test_plan_training_json(capsys):
    data = _json(capsys, "plan", "llama-3.1-8b", "--gpu", "a100-80gb", "--max-gpus", "8", "--seq", "2048")
    assert data["kind"] == "training" and data["min_gpus"] >= 1
    best = data["candidates"][0]
    assert best["peak_bytes"] <= data["budget_bytes"]
    assert {"layout", "describe", "recipe", "step_s", "tokens_per_s", "host_bytes_per_node"} <= set(best)
    assert data["largest_micro_batch"]["micro_batch_size"] >= 1
    assert data["longest_context"]["seq"] >= 2048
    assert any("MFU" in a for a in data["assumptions"])


def test_plan_nothing_fits_lists_changes(capsys):
    data = _json(capsys, "plan", "llama-3.1-70b", "--gpu", "rtx-4090", "--gpus", "2", "--host-ram", "64GiB")
    assert data["candidates"] == [] and data["changes"]
    assert all(c["min_peak_bytes"] > 0 for c in data["changes"])
    assert {c["change"].split(" (")[0] for c in data["changes"]} >= {"more GPUs", "QLoRA"}


def test_plan_host_memory_flag_and_default(capsys):
    # Without --host-memory a workstation GPU gets 128 GiB per node: Llama-3.1-70B full
    # training (about 1.1 TiB of offloaded fp32 states) does not fit one RTX 4090; with
    # 2 TiB it does, and the table's host column carries what each layout needs.
    data = _json(capsys, "plan", "llama-3.1-70b", "--gpu", "rtx-4090", "--gpus", "1", "--seq", "1024")
    assert data["candidates"] == []
    assert any("host RAM per node" in a and "consumer default" in a for a in data["assumptions"])
    data = _json(capsys, "plan", "llama-3.1-70b", "--gpu", "rtx-4090", "--gpus", "1", "--seq", "1024",
                 "--host-memory", "2TiB")
    assert data["candidates"]
    assert all(128 * 2**30 < c["host_bytes_per_node"] <= 2 * 2**40 for c in data["candidates"])


def test_plan_serving_json(capsys):
    data = _json(capsys, "plan", "qwen2.5-7b", "--infer", "--gpu", "l4", "--max-gpus", "4", "--context", "8192")
    assert data["kind"] == "inference" and data["candidates"]
    assert data["candidates"][0]["peak_bytes"] <= data["budget_bytes"]


@pytest.mark.parametrize("args,needle", [
    (["llama-3.1-8b", "--gpus", "12", "--tp", "5"], "gpus=12 is not a multiple of tp*pp*cp = 5*1*1 = 5"),
    (["llama-3.1-8b", "--gpus", "12", "--dp", "2", "--tp", "4"], "dp*tp*pp*cp = 2*4*1*1 = 8"),
    (["llama-3.1-8b", "--gpus", "24", "--tp", "3"], "tp=3 does not divide num_attention_heads=32"),
    (["llama-3.1-8b", "--gpus", "64", "--pp", "64"], "exceeds num_layers=32"),
    (["mixtral-8x7b", "--gpus", "16", "--ep", "3"], "ep=3: must divide dp*cp = 16*1 = 16"),
    (["mixtral-8x7b", "--gpus", "12", "--ep", "3"], "ep=3 does not divide num_experts=8"),
    (["llama-3.1-8b", "--gpus", "8", "--zero", "2", "--fsdp", "full_shard"], "choose ZeRO or FSDP"),
    (["llama-3.1-8b", "--gpus", "8", "--gpu", "h1000"], "unknown GPU 'h1000'"),
])
def test_bad_layouts_are_one_line_errors(capsys, args, needle):
    argv = ["plan", *args]
    if "--gpu" not in args:
        argv += ["--gpu", "h100"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_train_with_layout_flags_uses_the_distributed_estimate(capsys):
    from vramplan.catalog import find_model
    from vramplan.distributed import TrainingJob, estimate_on_layout as estimate_training
    from vramplan.parallel import ParallelLayout
    from vramplan.training import TrainingSetup

    data = _json(capsys, "train", "llama-3.1-8b", "--seq", "2048", "--gpus", "16", "--tp", "2", "--zero", "1")
    assert data["num_gpus"] == 16 and data["details"]["layout"] == "dp=8 tp=2 pp=1 zero=1"
    direct = estimate_training(TrainingJob(model=find_model("llama-3.1-8b").spec(), setup=TrainingSetup(seq=2048)),
                               ParallelLayout(dp=8, tp=2, zero_stage=1))
    assert data["total_bytes"] == direct.total_bytes
    assert main(["train", "llama-3.1-8b", "--gpus", "16", "--tp", "2", "--zero", "2", "--fsdp", "full_shard"]) == 2
    assert "choose ZeRO or FSDP" in capsys.readouterr().err
