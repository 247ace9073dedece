"""Hostile flag values end in one-line errors, quickly (no traceback, no hang)."""

import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

CASES = [
    (["params", "x" * 300], "MODEL: 300 characters; expected at most 250"),
    (["plan", "llama-3.1-8b", "--infer", "--gpu", "h100", "--gpus", str(2**63)], "--gpus: expected an integer"),
    (["infer", "--layers", str(2**63), "--hidden", "4096", "--heads", "32"], "--layers: expected an integer"),
    (["train", "--layers", "32", "--hidden", str(2**40), "--heads", "32"], "--hidden: expected an integer"),
]


@pytest.mark.parametrize("argv,expected", CASES)
def test_hostile_flag_is_a_one_line_error(argv, expected):
    out = subprocess.run([sys.executable, "-m", "vramplan", *argv], capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert expected in out.stderr
