"""The command line: JSON shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vramplan.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_params_json_shape(capsys):
    code, out, err = run(capsys, "params", "llama-3.1-8b", "--json")
    assert code == 0 and not err
    data = json.loads(out)
    assert set(data) >= {"model", "total_params", "active_params", "components"}
    # Llama-3.1-8B: 8,030,261,248 parameters (Hugging Face model card / transformers count)
    assert data["total_params"] == 8_030_261_248 == sum(c["params"] for c in data["components"])
    assert all(set(c) == {"name", "params"} for c in data["components"])


def test_params_moe_active(capsys):
    code, out, _ = run(capsys, "params", "mixtral-8x7b", "--json")
    data = json.loads(out)
    # Mixtral paper: 47B total, 13B active per token
    assert round(data["total_params"] / 1e9) == 47 and round(data["active_params"] / 1e9) == 13


def test_params_table(capsys):
    code, out, _ = run(capsys, "params", "gpt2")
    assert code == 0 and "124,439,808" in out


@pytest.mark.parametrize("args, text", [
    (("params", "llama-9"), "unknown model 'llama-9'"),
    (("params", "./missing.json"), "no such file"),
    (("params", "--", "-3B"), "unknown model '-3B'"),
    (("params", "-3B"), "No such option '-3' (see 'vramplan params --help')"),
    (("params", "gpt2", "--layers", "x"), "--layers: expected an integer from 1 to"),
    (("params", "--layers", "2"), "missing --hidden, --heads"),
    (("params", "gpt2", "--layers", "2"), "given together"),
    (("params", "--layers", "2", "--hidden", "10", "--heads", "3"), "--heads: 3 does not divide --hidden 10"),
])
def test_bad_input_one_line_exit_2(capsys, args, text):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert text in err and err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_models_search_json(capsys):
    code, out, _ = run(capsys, "models", "--search", "qwen3", "--json")
    slugs = [m["slug"] for m in json.loads(out)["models"]]
    from vramplan.catalog import catalog

    assert slugs == sorted(e.slug for e in catalog() if "qwen3" in e.slug)
    assert {"qwen3-235b-a22b", "qwen3-30b-a3b", "qwen3-8b"} <= set(slugs)


def test_catalog_has_required_models():
    from vramplan.catalog import catalog

    slugs = {e.slug for e in catalog()}
    required = {"llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
                "llama-3.2-1b", "llama-3.2-3b", "mistral-7b-v0.1", "mixtral-8x7b", "mixtral-8x22b", "qwen2.5-0.5b",
                "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b", "qwen3-8b", "qwen3-30b-a3b",
                "qwen3-235b-a22b", "deepseek-v3", "gemma-2-2b", "gemma-2-9b", "gemma-2-27b", "gemma-3-27b",
                "phi-3-mini", "phi-4", "gpt2", "gpt2-xl", "olmo-2-7b", "gpt-oss-20b", "gpt-oss-120b", "pythia-1b"}
    assert required <= slugs


def test_console_script_and_no_heavy_imports():
    code = ("import sys, vramplan, vramplan.cli, vramplan.model, vramplan.memory.weights;"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_debug_shows_traceback():
    from vramplan.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        main(["--debug", "params", "nope-model"])


def test_public_api_names_resolve_lazily():
    import vramplan

    for name in vramplan.__all__:
        assert getattr(vramplan, name) is not None, name
    with pytest.raises(AttributeError):
        vramplan.no_such_name  # noqa: B018


def test_python_api_end_to_end():
    import vramplan

    est = vramplan.estimate_inference("llama-2-7b", vramplan.InferenceSetup(batch=1, context=4096))
    # Llama-2-7B fp16 KV cache: 2 (K, V) x 32 layers x 32 heads x 128 dims x 2 B = 512 KiB per token
    assert est.get("kv_cache") == 4096 * 512 * 1024
    assert est.to_dict()["total_bytes"] == est.total_bytes
