"""``vramplan train``: JSON shape, verdicts, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from vramplan.cli import main
from vramplan.errors import InputError, UnknownNameError
from vramplan.training import TrainingSetup, estimate_training


def run(capsys, *args):
    code = main(["train", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_shape(capsys):
    code, out, _ = run(capsys, "llama-3.2-1b", "--batch", "2", "--seq", "1024", "--json")
    assert code == 0
    data = json.loads(out)
    assert isinstance(data["total_bytes"], int)
    assert data["phase"] in ("forward", "backward", "optimizer_step")
    assert [p["phase"] for p in data["phases"]] == ["forward", "backward", "optimizer_step"]
    assert sum(c["bytes"] for c in data["components"]) == data["total_bytes"]
    assert all({"name", "bytes", "note"} <= set(c) for c in data["components"])
    assert data["verdict"] is None and data["fits"] is None


def test_gpu_verdict_and_solvers(capsys):
    code, out, _ = run(capsys, "llama-3.1-8b", "--method", "qlora", "--gpu", "rtx-4090", "--json")
    data = json.loads(out)
    assert code == 0 and data["verdict"]["fits"] is True
    assert data["fits"]["largest_micro_batch"] >= 1
    assert data["fits"]["largest_seq"] >= 2048
    # the solver's answer fits under the verdict's rule (peak + overheads + reserve) and one more does not
    b = data["fits"]["largest_micro_batch"]
    assert estimate_training("llama-3.1-8b", TrainingSetup(method="qlora", batch=b), gpu="rtx-4090").verdict.fits
    assert not estimate_training("llama-3.1-8b", TrainingSetup(method="qlora", batch=b + 1), gpu="rtx-4090").verdict.fits


def test_table_output(capsys):
    code, out, _ = run(capsys, "llama-3.2-1b", "--method", "lora", "--units", "GB")
    assert code == 0 and "GB" in out and "peak in" in out


@pytest.mark.parametrize("args, expected", [
    (["--optimizer", "adamx"], "unknown optimizer 'adamx'; did you mean"),
    (["--precision", "bf16mixed"], "unknown precision 'bf16mixed'; did you mean"),
    (["--method", "qlora2"], "--method: expected one of full, lora, qlora, got 'qlora2'"),
    (["--method", "lora", "--lora-targets", "qkv"], "--lora-targets: 'qkv' is not a linear module"),
    (["--seq", "200000", "--strict"], "--seq: 200000 exceeds llama-3.2-1b's max_position_embeddings"),
    (["--batch", "0"], "batch: expected a positive integer, got 0"),
    (["--method", "qlora", "--precision", "fp32"], "--precision: QLoRA computes in bf16 or fp16"),
])
def test_bad_input_is_one_line(capsys, args, expected):
    code, out, err = run(capsys, "llama-3.2-1b", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1


def test_sequence_beyond_positions_warns_without_strict():
    e = estimate_training("llama-3.2-1b", TrainingSetup(seq=200_000))
    assert any("max_position_embeddings" in w for w in e.warnings)


def test_qlora_on_a_quantized_checkpoint_is_refused():
    from dataclasses import replace

    from vramplan.model.resolve import resolve_model

    spec = replace(resolve_model("llama-3.2-1b"), quantization_json='{"quant_method": "gptq"}')
    with pytest.raises(InputError, match="already quantized"):
        estimate_training(spec, TrainingSetup(method="qlora"))


def test_unknown_names_are_lookup_errors():
    with pytest.raises(UnknownNameError):
        TrainingSetup(optimizer="adamw-9bit")


def test_parameter_count_gives_model_states_only():
    est = estimate_training("7B", TrainingSetup())
    assert {c.category for c in est.components} <= {"weights", "gradients", "optimizer", "buffers"}
    assert "need the architecture" in est.warnings[0]
