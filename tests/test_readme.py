"""Every command shown in the README runs (the README cannot drift from the CLI)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vramplan.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = {"serve"}  # starts a server that runs until stopped


def readme_commands() -> list[str]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ vramplan "):
                commands.append(line[2:].split("  #")[0].strip())
    return commands


def test_readme_has_commands():
    assert len(readme_commands()) >= 10


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, capsys):
    argv = shlex.split(command)[1:]
    if argv[0] in SKIP:
        pytest.skip(f"{argv[0]} runs until stopped")
    if argv[0] == "trace":
        pytest.importorskip("torch")
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err


def test_readme_python_example_runs():
    block = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})


def test_readme_first_lines_are_the_two_setup_commands():
    block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].startswith("pip install") and "vramplan " in block[0]
    assert "pytest" in block[1]
