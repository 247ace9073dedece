"""A bare parameter count gets the rough method (weights + gradients + optimizer
states), and it must agree with the same terms of the architecture-aware estimate."""

from __future__ import annotations

import json

import pytest

from vramplan.cli import main
from vramplan.model import ParamOnlyModel
from vramplan.model import resolve_model
from vramplan.training import TrainingSetup, estimate_training, model_states

LLAMA2_7B_PARAMS = 6_738_415_616  # Hugging Face count of meta-llama/Llama-2-7b-hf


@pytest.mark.parametrize("precision, optimizer", [("bf16-mixed", "adamw"), ("bf16", "adamw-fused"),
                                                   ("fp32", "sgd-momentum"), ("bf16-mixed", "adamw-8bit")])
def test_bare_count_equals_model_states_of_the_architecture(precision, optimizer):
    setup = TrainingSetup(precision=precision, optimizer=optimizer)
    bare = estimate_training(ParamOnlyModel(name="6.74B", total_params=LLAMA2_7B_PARAMS), setup)
    states = model_states(resolve_model("llama-2-7b"), setup)
    architecture = sum(c.bytes for c in states.weights) + states.gradients + states.optimizer_states
    ours = bare.get("weights") + bare.get("gradients") + bare.get("optimizer")
    # exact for per-element layouts; 8-bit keeps tensors under 4096 elements (norms) in fp32
    assert ours == pytest.approx(architecture, rel=1e-3 if "8bit" in optimizer else 0)
    assert bare.get("buffers") == pytest.approx(states.step_temporaries, rel=1e-3 if "8bit" in optimizer else 0)
    assert "need the architecture" in bare.warnings[0]


def test_cli_bare_count_and_custom_architecture(capsys):
    assert main(["train", "7B", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # bf16-mixed AdamW (foreach): fp32 weights 4 + fp32 grads 4 + exp_avg/exp_avg_sq 8 + foreach temporary 4
    assert data["total_bytes"] == 7_000_000_000 * 20
    assert main(["train", "--layers", "2", "--hidden", "64", "--heads", "4", "--vocab", "100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_bytes"] > 0


@pytest.mark.parametrize("args, text", [
    (["train", "7B", "--method", "lora"], "LoRA adapters need the architecture"),
    (["train", "7B", "--optimizer", "adafactor"], "factored states need each tensor's shape"),
    (["train", "7B", "--gpus", "8", "--zero", "3"], "a parallel layout needs an architecture"),
])
def test_bare_count_limits_are_one_line_errors(args, text, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert text in err and err.count("\n") == 1
