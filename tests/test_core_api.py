"""The Python API answers every question the command line answers, with the same JSON:
``estimate_training(...)``, ``estimate_inference(...)``, ``plan_training(...)`` and
``plan_inference(...)`` return typed results whose ``to_dict()`` equals ``--json``; the
edges (web/, export/) never import the command line."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from vramplan.cli import main
from vramplan.inference import InferenceSetup, estimate_inference
from vramplan.model import custom_spec
from vramplan.parallel import LayoutRequest, ParallelLayout, layout_from_gpus
from vramplan.plans import plan_inference, plan_training
from vramplan.training import TrainingSetup, estimate_training

SRC = Path(__file__).resolve().parents[1] / "src" / "vramplan"


def cli_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def roundtrip(data: dict) -> dict:
    """What the JSON of ``data`` reads back as (tuples become lists)."""
    return json.loads(json.dumps(data))


TRAIN_CASES = [
    (["llama-3.2-1b"], lambda: estimate_training("llama-3.2-1b")),
    (["llama-3.2-1b", "--gpu", "h100"], lambda: estimate_training("llama-3.2-1b", gpu="h100")),
    (["llama-3.1-8b", "--method", "qlora", "--gpu", "rtx-4090"],
     lambda: estimate_training("llama-3.1-8b", TrainingSetup(method="qlora"), gpu="rtx-4090")),
    (["qwen2.5-0.5b", "--method", "lora", "--lora-rank", "8", "--seq", "1024"],
     lambda: estimate_training("qwen2.5-0.5b", TrainingSetup(method="lora", lora_rank=8, seq=1024))),
    (["gpt2", "--precision", "fp16-mixed", "--optimizer", "sgd", "--dropout"],
     lambda: estimate_training("gpt2", TrainingSetup(precision="fp16-mixed", optimizer="sgd", dropout=True))),
    (["llama-3.2-1b", "--recompute", "full", "--batch", "4", "--attention", "flash"],
     lambda: estimate_training("llama-3.2-1b", TrainingSetup(recompute="full", batch=4, attention="flash"))),
    (["llama-2-7b", "--activation-model", "seed"],
     lambda: estimate_training("llama-2-7b", TrainingSetup(activation_model="seed"))),
    (["7B"], lambda: estimate_training("7B")),
    (["llama-3.1-8b", "--gpus", "8", "--zero", "3", "--gpu", "h100"],
     lambda: estimate_training("llama-3.1-8b", layout=layout_from_gpus(8, zero_stage=3), gpu="h100")),
    (["llama-3.1-8b", "--gpus", "8", "--tp", "2", "--pp", "2", "--grad-accum", "4"],
     lambda: estimate_training("llama-3.1-8b", TrainingSetup(grad_accum=4), layout_from_gpus(8, tp=2, pp=2))),
    (["llama-3.1-8b", "--gpus", "4", "--fsdp", "full_shard", "--offload", "params"],
     lambda: estimate_training("llama-3.1-8b", layout=layout_from_gpus(4, fsdp="full_shard", offload="params"))),
    (["llama-3.2-1b", "--gpus", "1"], lambda: estimate_training("llama-3.2-1b", layout=ParallelLayout())),
    (["--layers", "2", "--hidden", "64", "--heads", "4", "--vocab", "100"],
     lambda: estimate_training(custom_spec(layers=2, hidden=64, heads=4, vocab=100))),
]


@pytest.mark.parametrize("argv, api", TRAIN_CASES, ids=[" ".join(a) for a, _ in TRAIN_CASES])
def test_estimate_training_is_the_train_json(argv, api, capsys):
    assert roundtrip(api().to_dict()) == cli_json(capsys, "train", *argv)


INFER_CASES = [
    (["llama-3.1-8b"], lambda: estimate_inference("llama-3.1-8b")),
    (["llama-3.1-8b", "--gpu", "rtx-4090", "--weights", "awq"],
     lambda: estimate_inference("llama-3.1-8b", InferenceSetup(gpu="rtx-4090", weights="awq"))),
    (["llama-3.1-8b", "--engine", "vllm", "--gpu", "h100"],
     lambda: estimate_inference("llama-3.1-8b", InferenceSetup(engine="vllm", gpu="h100"))),
    (["llama-3.1-8b", "--engine", "llamacpp", "--weights", "Q4_K_M", "--n-gpu-layers", "20"],
     lambda: estimate_inference("llama-3.1-8b", InferenceSetup(engine="llamacpp", weights="Q4_K_M", n_gpu_layers=20))),
    (["llama-3.1-70b", "--tp", "4", "--batch", "8", "--context", "8192"],
     lambda: estimate_inference("llama-3.1-70b", InferenceSetup(tp=4, batch=8, context=8192))),
    (["qwen2.5-0.5b", "--kv-dtype", "fp8", "--attention", "eager", "--prompt", "512", "--context", "1024"],
     lambda: estimate_inference("qwen2.5-0.5b", InferenceSetup(kv_dtype="fp8", attention="eager", prompt=512,
                                                              context=1024))),
    (["llama-3.1-8b", "--gpu", "l4", "--max-context"],
     lambda: estimate_inference("llama-3.1-8b", InferenceSetup(gpu="l4"), solve_context=True)),
    (["llama-3.1-8b", "--gpu", "h100", "--max-batch", "--context", "8192"],
     lambda: estimate_inference("llama-3.1-8b", InferenceSetup(gpu="h100", context=8192), solve_batch=True)),
    (["llama-3.1-8b", "--gpu", "h100", "--reserve", "2GiB"],
     lambda: estimate_inference("llama-3.1-8b", InferenceSetup(gpu="h100", reserve_bytes=2 * 2**30))),
    (["llama-3.1-8b", "--prefill-chunk", "512"],
     lambda: estimate_inference("llama-3.1-8b", InferenceSetup(prefill_chunk=512))),
    (["mixtral-8x7b", "--engine", "vllm", "--tp", "2", "--gpu", "h100", "--enforce-eager"],
     lambda: estimate_inference("mixtral-8x7b", InferenceSetup(engine="vllm", tp=2, gpu="h100",
                                                              enforce_eager=True))),
    (["gpt2", "--batch", "4"], lambda: estimate_inference("gpt2", InferenceSetup(batch=4))),
]


@pytest.mark.parametrize("argv, api", INFER_CASES, ids=[" ".join(a) for a, _ in INFER_CASES])
def test_estimate_inference_is_the_infer_json(argv, api, capsys):
    assert roundtrip(api().to_dict()) == cli_json(capsys, "infer", *argv)


PLAN_CASES = [
    (["llama-3.2-1b", "--gpu", "rtx-4090", "--gpus", "2"],
     lambda: plan_training("llama-3.2-1b", "rtx-4090", layout=LayoutRequest(gpus=2))),
    (["llama-3.2-1b", "--gpu", "rtx-4090", "--max-gpus", "4", "--seq", "2048"],
     lambda: plan_training("llama-3.2-1b", "rtx-4090", TrainingSetup(seq=2048), max_gpus=4)),
    (["llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--tp", "2", "--recompute", "selective"],
     lambda: plan_training("llama-3.1-8b", "h100", TrainingSetup(seq=4096), LayoutRequest(gpus=8, tp=2),
                           recompute="selective")),
    (["llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--zero", "3", "--batch", "2", "--top", "3"],
     lambda: plan_training("llama-3.1-8b", "h100", layout=LayoutRequest(gpus=8, zero="3"), micro_batch=2, top=3)),
    (["llama-3.1-8b", "--gpu", "rtx-4090", "--gpus", "1", "--method", "qlora", "--seq", "1024"],
     lambda: plan_training("llama-3.1-8b", "rtx-4090", TrainingSetup(method="qlora", seq=1024),
                           LayoutRequest(gpus=1))),
    (["llama-3.1-70b", "--gpu", "rtx-4090", "--gpus", "1", "--seq", "1024"],
     lambda: plan_training("llama-3.1-70b", "rtx-4090", TrainingSetup(seq=1024), LayoutRequest(gpus=1))),
    (["qwen2.5-0.5b", "--gpu", "l4", "--gpus", "2", "--precision", "fp16-mixed", "--optimizer", "adamw-8bit"],
     lambda: plan_training("qwen2.5-0.5b", "l4", TrainingSetup(precision="fp16-mixed", optimizer="adamw-8bit",
                                                               seq=4096), LayoutRequest(gpus=2))),
    (["llama-3.1-8b", "--gpu", "h100", "--gpus", "16", "--global-batch", "64", "--headroom", "0.1", "--mfu", "0.5"],
     lambda: plan_training("llama-3.1-8b", "h100", layout=LayoutRequest(gpus=16), global_batch=64, headroom=0.1,
                           mfu=0.5)),
    (["llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--fsdp", "full_shard", "--host-memory", "512GiB"],
     lambda: plan_training("llama-3.1-8b", "h100", layout=LayoutRequest(gpus=8, fsdp="full_shard"),
                           host_bytes_per_node=512 * 2**30)),
    (["llama-3.1-70b", "--infer", "--gpu", "h100", "--max-gpus", "8"],
     lambda: plan_inference("llama-3.1-70b", "h100", max_gpus=8)),
    (["llama-3.1-8b", "--infer", "--gpu", "l4", "--gpus", "8", "--tp", "4", "--batch", "16", "--context", "8192"],
     lambda: plan_inference("llama-3.1-8b", "l4", LayoutRequest(gpus=8, tp=4), batch=16, context=8192)),
    (["llama-3.1-8b", "--infer", "--gpu", "rtx-4090", "--gpus", "2", "--weights", "fp8", "--kv-dtype", "fp8"],
     lambda: plan_inference("llama-3.1-8b", "rtx-4090", LayoutRequest(gpus=2), weights="fp8", kv_dtype="fp8")),
]


@pytest.mark.parametrize("argv, api", PLAN_CASES, ids=[" ".join(a) for a, _ in PLAN_CASES])
def test_plan_report_is_the_plan_json(argv, api, capsys):
    assert roundtrip(api().to_dict()) == cli_json(capsys, "plan", *argv)


# ---- edges import the core, never each other ------------------------------------------
def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("edge", ["web", "export"])
def test_edges_never_import_the_command_line(edge):
    files = sorted((SRC / edge).rglob("*.py"))
    assert files
    for f in files:
        bad = sorted(m for m in _imports(f) if m == "vramplan.cli" or m.startswith("vramplan.cli."))
        assert not bad, f"{f.relative_to(SRC)} imports {bad}"


def test_core_never_imports_an_edge():
    edges = ("vramplan.cli", "vramplan.web", "vramplan.export")
    for f in sorted(SRC.glob("*.py")):
        if f.name == "__main__.py":
            continue
        bad = sorted(m for m in _imports(f) if any(m == e or m.startswith(e + ".") for e in edges))
        assert not bad, f"{f.name} imports {bad}"


def test_web_and_export_run_without_the_command_line_loaded():
    import subprocess
    import sys

    code = ("import sys, vramplan.web.api as api, vramplan.export as ex;"
            "s, b = api.handle('/api/plan', {'model': 'llama-3.2-1b', 'gpu': 'rtx-4090', 'gpus': '1'});"
            "assert s == 200, b;"
            "from vramplan.plans import plan_training;"
            "ex.export_config('deepspeed', plan_training('llama-3.2-1b', 'rtx-4090', max_gpus=2));"
            "print(sorted(m for m in sys.modules if m.startswith('vramplan.cli') or m == 'click'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC.parent), "PATH": ""})
    assert out.stdout.strip() == "[]"


def test_engines_do_not_import_inference_at_run_time():
    # inference.py hands a setup to an engine; the engines import it only for type hints
    for f in sorted((SRC / "engines").glob("*.py")):
        tree = ast.parse(f.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "vramplan.inference":
                assert id(node) in typing_only, f"{f.name}:{node.lineno} imports vramplan.inference at run time"
