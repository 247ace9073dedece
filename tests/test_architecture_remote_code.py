"""Remote-code families (``auto_map`` configs transformers does not ship): read from
their JSON keys, checked against parameter counts their publishers or the Hub state.

transformers cannot build these, so the oracle is a published figure: an exact count
where one is published, else the rounded size the model card gives, compared at the
precision it is given."""

from __future__ import annotations

import pytest

from conftest import catalog_config
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config


def _params(slug: str):
    return count_params(spec_from_config(catalog_config(slug), name=slug, complete=False))


EXACT = {
    # InternLM2.5-7B-Chat: the Hub's safetensors parameter count, 7,737,708,544 (quoted in a stored
    # evaluation harness's model-size table, corpus file id 12439498600, and printed by chatllm.cpp when
    # it loads the checkpoint, docs/tool_calling.md).
    "internlm2.5-7b": 7_737_708_544,
    # ChatGLM3-6B: the published index's total_size 12,487,168,064 B in fp16, less the 64-byte
    # rotary inv_freq buffer, over 2 bytes.
    "chatglm3-6b": (12_487_168_064 - 64) // 2,
}


@pytest.mark.parametrize("slug", sorted(EXACT))
def test_exact_published_counts(slug):
    assert _params(slug).total_params == EXACT[slug]


def test_minicpm_2b_matches_its_model_card():
    """MiniCPM README: "2.4B parameters excluding embeddings (2.7B in total)"."""
    p = _params("minicpm-2b")
    embeddings = dict(p.components)["embeddings"]
    assert round(p.total_params / 1e9, 1) == 2.7
    assert round((p.total_params - embeddings) / 1e9, 1) == 2.4


def test_qwen1_1_8b_matches_its_model_card():
    """Qwen (v1) README and technical report: Qwen-1.8B."""
    assert round(_params("qwen-1.8b").total_params / 1e9, 1) == 1.8


def test_remote_code_configs_are_read_without_transformers_completing_them():
    """An ``auto_map`` config is never handed to AutoConfig (no remote code runs): the
    reader's result is the same with and without completion."""
    for slug in ("internlm2.5-7b", "chatglm3-6b", "minicpm-2b", "qwen-1.8b", "baichuan2-7b"):
        cfg = {**catalog_config(slug), "auto_map": {"AutoConfig": "configuration_x.XConfig"}}
        assert count_params(spec_from_config(cfg, complete=True)) == count_params(spec_from_config(cfg, complete=False))
