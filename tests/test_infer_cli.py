"""``vramplan infer``: JSON shape, the rule of thumb beside the table, solvers, one-line errors."""

from __future__ import annotations

import json

import pytest

from vramplan.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_shape(capsys):
    code, out, err = run(capsys, "infer", "llama-3.1-8b", "--context", "8192", "--batch", "2", "--json")
    assert code == 0 and not err
    data = json.loads(out)
    assert isinstance(data["total_bytes"], int) and data["phase"] in ("prefill", "decode")
    assert data["total_bytes"] == sum(c["bytes"] for c in data["components"])
    assert all({"name", "bytes", "note", "category"} <= set(c) for c in data["components"])
    assert {"rule_of_thumb_bytes", "rule_of_thumb_error", "weights_bytes"} <= set(data["details"])
    assert data["verdict"] is None and data["solved"] == {}


def test_json_keys_do_not_depend_on_engine(capsys):
    keys = []
    for engine, extra in (("hf", ()), ("vllm", ()), ("llamacpp", ("--weights", "Q4_K_M"))):
        _, out, _ = run(capsys, "infer", "qwen3-8b", "--engine", engine, "--gpu", "l40s", "--json", *extra)
        keys.append(set(json.loads(out)))
    assert keys[0] == keys[1] == keys[2]


def test_table_prints_rule_of_thumb_and_verdict(capsys):
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--context", "32768")
    assert code == 0
    assert "rule of thumb (1.2 x weights" in out and "rtx-4090" in out and "GiB" in out


def test_vllm_table_shows_concurrency(capsys):
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100", "--context", "16000")
    assert code == 0 and "max concurrent sequences" in out


def test_llamacpp_host_table(capsys):
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--engine", "llamacpp", "--weights", "Q4_K_M",
                       "--n-gpu-layers", "10")
    assert code == 0 and "Host RAM" in out


def test_max_context_solver(capsys):
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--max-context", "--json")
    data = json.loads(out)
    assert code == 0 and data["solved"]["max_context"] == data["details"]["context_tokens"] > 0
    assert data["verdict"]["fits"]


def test_max_batch_solver(capsys):
    code, out, _ = run(capsys, "infer", "llama-3.1-8b", "--gpu", "h100", "--context", "8192", "--max-batch",
                       "--json")
    data = json.loads(out)
    assert data["solved"]["max_batch"] == data["details"]["batch"] > 1


def test_list_formats(capsys):
    code, out, _ = run(capsys, "infer", "--list-formats")
    assert code == 0 and "Q4_K_M" in out and "nf4-dq" in out


@pytest.mark.parametrize("args,needle", [
    (("--weights", "q4km"), "did you mean 'Q4_K_M'"),
    (("--weights", "mxfp4"), "no such tensors"),
    (("--tp", "3"), "--tp 3: must divide num_attention_heads=32"),
    (("--gpu", "rtx4099"), "did you mean 'rtx-4090'"),
    (("--context", "200000", "--strict"), "max_position_embeddings=131,072"),
    (("--kv-dtype", "fp9"), "unknown kv cache dtype 'fp9'"),
    (("--max-context",), "--max-context: needs --gpu"),
    (("--gpu-memory-utilization", "0"), "--gpu-memory-utilization: expected a number in (0, 1]"),
    (("--engine", "llamacpp", "--weights", "awq"), "llama.cpp runs GGUF"),
])
def test_bad_input_is_one_line_exit_2(capsys, args, needle):
    code, out, err = run(capsys, "infer", "llama-3.1-8b", *args)
    assert code == 2 and not out
    assert err.count("\n") == 1 and needle in err


def test_param_count_model_is_refused(capsys):
    code, _, err = run(capsys, "infer", "7B")
    assert code == 2 and "no architecture" in err


def test_zero_batch_is_a_usage_error(capsys):
    code, _, err = run(capsys, "infer", "llama-3.1-8b", "--batch", "0")
    assert code == 2 and "--batch" in err


def _doc_lines():
    from pathlib import Path

    return (Path(__file__).resolve().parents[1] / "docs" / "inference.md").read_text().splitlines()


@pytest.mark.parametrize("line", [ln for ln in _doc_lines() if ln.startswith("$ vramplan ")])
def test_doc_commands_run(capsys, line):
    import shlex

    code, _, err = run(capsys, *shlex.split(line)[2:])
    assert code == 0, err


@pytest.mark.parametrize("row", [ln for ln in _doc_lines() if ln.startswith("| `") and "GiB |" in ln])
def test_doc_rule_of_thumb_table(capsys, row):
    import shlex

    cells = [c.strip() for c in row.strip("|").split("|")]
    args = shlex.split(cells[0].strip("`"))
    _, out, _ = run(capsys, "infer", *args, "--json")
    data = json.loads(out)
    assert f"{data['total_bytes'] / 2**30:.2f} GiB" == cells[1]
    assert f"{data['details']['rule_of_thumb_bytes'] / 2**30:.2f} GiB" == cells[2]


def test_inference_core_stays_light():
    import subprocess
    import sys

    code = ("import sys, vramplan.inference, vramplan.engines.hf, vramplan.engines.vllm, "
            "vramplan.engines.llamacpp; "
            "heavy = [m for m in ('torch', 'transformers', 'gguf', 'numpy') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy[:2] else 0)")
    import os
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
