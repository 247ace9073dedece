"""docs/rl.md cannot drift: every ``$ vramplan ...`` block runs, and every line the doc
shows under it is in the command's real output."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vramplan.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "rl.md"


def _blocks() -> list[tuple[str, list[str]]]:
    out = []
    for body in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S):
        lines = body.rstrip("\n").splitlines()
        assert lines[0].startswith("$ vramplan ")
        out.append((lines[0][2:], [ln for ln in lines[1:] if ln.strip()]))
    return out


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_doc_has_the_three_recipes():
    commands = [c for c, _ in _blocks()]
    assert any("--gpus 8" in c and "qwen2.5-7b" in c for c in commands)
    assert any("--placement split" in c and "qwen2.5-32b" in c for c in commands)
    assert any("--method qlora" in c and "rtx-4090" in c for c in commands)


@pytest.mark.parametrize("command, shown", _blocks(), ids=lambda v: v if isinstance(v, str) else "")
def test_doc_block_is_the_real_output(command, shown, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "110")
    assert main(shlex.split(command)[1:]) == 0
    real = _squash(capsys.readouterr().out)
    for line in shown:
        assert _squash(line) in real, line
