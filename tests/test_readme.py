"""Every command shown in the README runs (the README cannot drift from the CLI)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vramplan.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = {"serve"}  # starts a server that runs until stopped


README_COLUMNS = "100"
"""The terminal width the README's example output was rendered at (``COLUMNS=100``)."""
ELISION = re.compile(r"^[│|]\s*\.\.\.\s")
"""A table row the README shortens to ``│ ...``: stands for any number of real rows."""


def readme_commands() -> list[str]:
    return [command for command, _ in readme_examples()]


def readme_examples() -> list[tuple[str, list[str]]]:
    """Every ``$ vramplan ...`` line of every console block, with the output lines the
    README shows under it (empty when it shows none)."""
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ vramplan "):
                examples.append((line[2:].split("  #")[0].strip(), []))
            elif line.startswith("$ "):
                continue
            elif examples and line.strip():
                examples[-1][1].append(line.rstrip())
    return examples


def _run(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", README_COLUMNS)
    argv = shlex.split(command)[1:]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_readme_has_commands():
    assert len(readme_commands()) >= 10


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, capsys, monkeypatch):
    argv = shlex.split(command)[1:]
    if argv[0] in SKIP:
        pytest.skip(f"{argv[0]} runs until stopped")
    if argv[0] == "trace":
        pytest.importorskip("torch")
    _run(command, capsys, monkeypatch)


@pytest.mark.parametrize("command,shown", [e for e in readme_examples() if e[1]], ids=lambda v: v if isinstance(v, str) else "")
def test_readme_output_is_the_real_output(command, shown, capsys, monkeypatch):
    # Every output line the README shows is a line the command prints, in the same order;
    # a "│ ..." row stands for rows left out.
    real = [line.rstrip() for line in _run(command, capsys, monkeypatch).splitlines()]
    at = 0
    for line in shown:
        if ELISION.match(line):
            continue
        assert line in real[at:], f"README line not in the output of `{command}` (in order):\n{line}"
        at = real.index(line, at) + 1


def test_readme_has_example_output():
    assert any(shown for _, shown in readme_examples())


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_first_lines_are_the_two_setup_commands():
    block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].startswith("pip install") and "vramplan " in block[0]
    assert "pytest" in block[1]
