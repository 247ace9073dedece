"""A model read from files names its source (``source``, ``checkpoint``) in the core's
answer itself: the Python API, the web API and ``--json`` give the same dict."""

from __future__ import annotations

import json

import pytest

from test_sources_fixtures import LLAMA, state_dict, write_checkpoint, write_gguf
from vramplan.cli import main
from vramplan.inference import InferenceSetup, estimate_inference
from vramplan.parallel import LayoutRequest, ParallelLayout
from vramplan.plans import plan_training
from vramplan.training import TrainingSetup, estimate_training


def cli_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def roundtrip(data: dict) -> dict:
    return json.loads(json.dumps(data))


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    return str(write_checkpoint(tmp_path_factory.mktemp("src") / "ckpt", LLAMA, state_dict(LLAMA), shards=2))


CASES = [
    (["train"], lambda d: estimate_training(d)),
    (["train", "--gpu", "h100", "--seq", "512"], lambda d: estimate_training(d, TrainingSetup(seq=512), gpu="h100")),
    (["train", "--gpus", "2", "--fsdp", "full_shard"],
     lambda d: estimate_training(d, layout=ParallelLayout(dp=2, fsdp="full_shard"))),
    (["infer"], lambda d: estimate_inference(d)),
    (["infer", "--engine", "vllm", "--gpu", "h100"], lambda d: estimate_inference(d, InferenceSetup(engine="vllm",
                                                                                                   gpu="h100"))),
    (["plan", "--gpu", "h100", "--max-gpus", "2"],
     lambda d: plan_training(d, "h100", TrainingSetup(seq=4096), LayoutRequest(), max_gpus=2)),
]


@pytest.mark.parametrize("argv, api", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_api_dict_equals_cli_json_for_a_checkpoint_dir(capsys, checkpoint_dir, argv, api):
    data = roundtrip(api(checkpoint_dir).to_dict())
    assert data["source"]["kind"] == "local" and data["source"]["path"] == checkpoint_dir
    assert data["checkpoint"]["file_format"] == "safetensors"
    assert data == cli_json(capsys, argv[0], checkpoint_dir, *argv[1:])


def test_params_and_web_answer_name_the_source(capsys, checkpoint_dir):
    from vramplan import questions
    from vramplan.web.api import answer

    cli = cli_json(capsys, "params", checkpoint_dir)
    assert cli["source"]["kind"] == "local"
    assert roundtrip(questions.params({"model": checkpoint_dir})) == cli
    for question in ("train", "infer", "params"):
        web = roundtrip(answer(question, {"model": checkpoint_dir}))
        assert web["source"] == cli["source"] and web["checkpoint"] == cli["checkpoint"]


def test_a_gguf_file_names_its_source_in_the_api(capsys, tmp_path):
    (path,) = write_gguf(tmp_path / "m-Q8_0.gguf", LLAMA, "Q8_0")
    setup = InferenceSetup(engine="llamacpp")
    data = roundtrip(estimate_inference(str(path), setup).to_dict())
    assert data["source"]["kind"] == "gguf"
    assert data == cli_json(capsys, "infer", str(path), "--engine", "llamacpp")


def test_a_catalog_model_has_no_source_keys():
    data = estimate_training("llama-3.2-1b").to_dict()
    assert "source" not in data and "checkpoint" not in data
