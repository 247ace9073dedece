"""ModelScope ids through the real ``modelscope`` package against a loopback server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_sources_fixtures import (LLAMA, data_bytes_of_files, modelscope_server, state_dict,  # noqa: F401
                                   transformers_params, write_checkpoint)
from vramplan.errors import ConfigError
from vramplan.model import count_params, resolve_model

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def ms_repo(modelscope_server, tmp_path):
    d = write_checkpoint(tmp_path / "ms-ckpt", LLAMA, state_dict(LLAMA), shards=2)
    modelscope_server.add_dir("org/tiny", d)
    return d


def test_modelscope_id_reads_config_and_headers(modelscope_server, ms_repo):
    spec = resolve_model("modelscope:org/tiny")
    assert spec.checkpoint.source.kind == "modelscope" and spec.checkpoint.source.repo == "org/tiny"
    assert spec.checkpoint.total_bytes == data_bytes_of_files(ms_repo)
    assert count_params(spec).total_params == transformers_params(LLAMA)
    ranges = [r for p, r in modelscope_server.requests if "00001-of" in p]
    assert ranges and all(r and r.startswith("bytes=") for r in ranges)  # headers only, by ranged reads


@pytest.mark.parametrize("command", [["params"], ["infer"], ["train"], ["plan", "--gpu", "h100"]])
def test_every_command_takes_a_modelscope_id(modelscope_server, ms_repo, command):
    r = subprocess.run([sys.executable, "-m", "vramplan", *command, "modelscope:org/tiny", "--json"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["source"]["kind"] == "modelscope"


def test_missing_modelscope_repo_one_line(modelscope_server, ms_repo):
    with pytest.raises(ConfigError) as exc:
        resolve_model("modelscope:org/missing")
    assert "\n" not in str(exc.value) and "modelscope:org/missing" in str(exc.value)


def test_second_run_without_modelscope_uses_the_kept_headers(modelscope_server, ms_repo, monkeypatch):
    first = resolve_model("modelscope:org/tiny")
    modelscope_server.close()
    again = resolve_model("modelscope:org/tiny")
    assert again.checkpoint.total_bytes == first.checkpoint.total_bytes
    assert any("unreachable" in n for n in again.notes)
