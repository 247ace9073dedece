"""Every command in docs/parallel.md's first example block runs and exits 0."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vramplan.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "parallel.md"


def _examples() -> list[str]:
    block = re.search(r"```\n(vramplan .*?)```", DOC.read_text(), re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("vramplan ")]


@pytest.mark.parametrize("line", _examples())
def test_doc_example_runs(line, capsys):
    assert main(shlex.split(line)[1:]) == 0
    assert capsys.readouterr().out.strip()
