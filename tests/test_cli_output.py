"""What the command line prints for people (labelled details with units, no ``None``,
host RAM in GiB, tables that are not cut short) and for programs (``--json`` errors in
the JSON error shape the web API answers, on stderr, exit 2)."""

from __future__ import annotations

import json
import re

import pytest

from vramplan.cli import main
from vramplan.errors import InputError


def _out(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["train", "llama-3.1-8b", "--method", "qlora", "--gpu", "rtx-4090"],
    ["train", "llama-3.1-8b", "--gpus", "8", "--zero", "3", "--offload", "params", "--gpu", "h100"],
    ["train", "llama-3.1-70b", "--gpus", "64", "--tp", "8", "--pp", "2", "--zero", "1", "--seq", "8192"],
    ["train", "7B", "--precision", "bf16"],
])
def test_details_have_labels_and_units_never_none(capsys, argv):
    out = _out(capsys, *argv)
    # (assumption lines quote the core's own words; the DeepSpeed one prints a config repr)
    body = "\n".join(line for line in out.splitlines() if not line.startswith(("assumption:", "allgather", "max_live")))
    assert "None" not in body
    assert not re.search(r"^\w+_\w+: ", out, flags=re.M)  # no raw snake_case keys
    assert not re.search(r"\d{1,3}(,\d{3}){3,} B\b", out)  # no raw byte counts


def test_host_ram_is_a_table_in_gib(capsys):
    out = _out(capsys, "train", "llama-3.1-8b", "--gpus", "8", "--zero", "3", "--offload", "params", "--gpu", "h100")
    data = json.loads(_out(capsys, "train", "llama-3.1-8b", "--gpus", "8", "--zero", "3", "--offload", "params",
                           "--gpu", "h100", "--json"))
    host = data["host_components"][0]["bytes"]
    assert "Host RAM" in out and f"{host / 2**30:.2f} GiB" in out


@pytest.mark.parametrize("argv,kind", [
    (["train", "no-such-model", "--json"], "UnknownNameError"),
    (["train", "llama-3.1-8b", "--batch", "0", "--json"], "InputError"),
    (["train", "llama-3.1-8b", "--no-such-flag", "--json"], "UsageError"),
    (["plan", "llama-3.1-70b", "--gpu", "h100", "--gpus", "16", "--zero", "3", "--pp", "2", "--json"], "LayoutError"),
])
def test_json_errors_are_the_json_error_shape_on_stderr(capsys, argv, kind):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    body = json.loads(err)
    assert body["ok"] is False and body["error"]["type"] == kind and body["error"]["message"]
    assert set(body) == set(InputError("x").to_dict()) and set(body["error"]) == set(InputError("x").to_dict()["error"])


def test_errors_without_json_stay_one_line(capsys):
    assert main(["train", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("columns", ["80", None])
def test_tables_are_not_cut_short(capsys, monkeypatch, columns):
    # Piped (not a terminal) or at 80 columns: names and layouts are whole, nothing ends in "…".
    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
    for argv in (["models"], ["gpus"], ["plan", "llama-3.1-70b", "--train", "--gpu", "h100", "--gpus", "32"]):
        out = _out(capsys, *argv)
        assert "…" not in out
        if columns:
            assert max(len(line) for line in out.splitlines()) <= int(columns)
    out = _out(capsys, "models")
    assert "deepseek-v2-lite" in out and "llama-3.1-70b" in out
