"""``vramplan trace`` and ``vramplan validate`` at the command line: JSON shape,
the SVG, and one-line errors for what cannot be traced."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET

import pytest

from trace_models import tiny_llama
from vramplan.cli import main

pytest.importorskip("torch")
pytestmark = pytest.mark.exact


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_trace_json_and_svg(capsys, write_config, tmp_path):
    folder = write_config(tiny_llama())
    svg = tmp_path / "timeline.svg"
    code, out, err = _run(capsys, "trace", str(folder / "config.json"), "--batch", "2", "--seq", "32",
                          "--svg", str(svg), "--gpu", "rtx-4090", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["kind"] == "training" and data["phase"] in ("forward", "backward", "optimizer_step")
    assert data["total_bytes"] == sum(c["bytes"] for c in data["components"]) == data["details"]["peak_bytes"]
    assert data["verdict"]["fits"] is True
    # the one fit rule: the traced (allocated) peak + the named process overheads
    v = data["verdict"]
    assert v["peak_bytes"] == data["total_bytes"]
    assert {c["name"] for c in v["overheads"]} >= {"overhead/cuda_context", "overhead/cublas_workspace"}
    assert v["required_bytes"] == v["peak_bytes"] + sum(c["bytes"] for c in v["overheads"])
    root = ET.fromstring(svg.read_text())
    assert root.tag.endswith("svg") and any(el.tag.endswith("polygon") for el in root.iter())


def test_trace_table_for_inference(capsys, write_config):
    folder = write_config(tiny_llama())
    code, out, err = _run(capsys, "trace", str(folder), "--infer", "--seq", "16", "--decode", "2")
    assert code == 0, err
    assert "kv_cache" in out and "peak in prefill" in out.replace("\n", " ")


def test_unknown_model_type_is_one_line(capsys, write_config):
    folder = write_config({**tiny_llama(), "model_type": "no-such-arch"})
    code, _, err = _run(capsys, "trace", str(folder / "config.json"), "--json")
    assert code == 2 and err.count("\n") == 1
    message = json.loads(err)["error"]["message"]  # --json: the JSON error shape
    assert message.startswith("model_type") and "no-such-arch" in message


def test_refuses_before_running_out_of_host_memory(capsys, write_config, monkeypatch):
    monkeypatch.setenv("VRAMPLAN_HOST_BYTES", str(2**20))
    folder = write_config(tiny_llama())
    code, _, err = _run(capsys, "trace", str(folder / "config.json"), "--json")
    assert code == 2
    err = json.loads(err)["error"]["message"]
    assert err.startswith("host memory:") and "needs about" in err and "1.00 MiB" in err and "fake-tensor trace" in err


def test_bad_layers_value(capsys):
    code, _, err = _run(capsys, "trace", "llama-3.2-1b", "--layers", "many")
    assert code == 2 and "--layers" in err


def test_missing_extra_names_the_install_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    code, _, err = _run(capsys, "trace", "llama-3.2-1b")
    assert code == 3
    assert 'pip install "vramplan[exact]"' in err


def test_validate_without_a_gpu_says_so(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: see test_validate_on_gpu")
    code, _, err = _run(capsys, "validate", "--model", "qwen2.5-0.5b", "--infer")
    assert code == 2 and "no CUDA GPU" in err


def test_validate_on_gpu(capsys):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    code, out, err = _run(capsys, "validate", "--model", "qwen2.5-0.5b", "--infer", "--json")
    assert code == 0, err
    case = json.loads(out)["cases"][0]
    assert abs(case["trace_error"]) < 0.05


def test_real_run_needs_the_traced_peak_in_host_memory(monkeypatch):
    from vramplan.errors import InputError
    from vramplan.trace import TraceSetup
    from vramplan.trace.hostmem import fake_trace_host_bytes
    from vramplan.trace.run import run_trace

    room = fake_trace_host_bytes(2)  # enough for the fake trace of 2 layers, not for the real run
    monkeypatch.setenv("VRAMPLAN_HOST_BYTES", str(room))
    setup = TraceSetup(batch_size=2, seq=32)
    assert run_trace(tiny_llama(), setup).peak_bytes > room - fake_trace_host_bytes(0)
    with pytest.raises(InputError, match="host memory: a real CPU run needs about"):
        run_trace(tiny_llama(), setup, real=True)


@pytest.mark.parametrize("kw,field", [
    (dict(mode="serve"), "mode"), (dict(batch_size=0), "batch_size"), (dict(precision="fp8"), "precision"),
    (dict(optimizer="lion"), "optimizer"), (dict(dropout=1.5), "dropout"), (dict(method="dora"), "method"),
])
def test_setup_errors_name_the_field(kw, field):
    from vramplan.errors import InputError
    from vramplan.trace import TraceSetup

    with pytest.raises(InputError, match=f"^{field}: "):
        TraceSetup(**kw)


def test_lora_without_matching_modules_says_why():
    from vramplan.errors import InputError
    from vramplan.trace import TraceSetup
    from vramplan.trace.run import run_trace

    with pytest.raises(InputError, match="lora_targets: none of c_attn is a module"):
        run_trace(tiny_llama(), TraceSetup(method="lora", lora_targets=("c_attn",), seq=8))
