"""LongCat-Flash: two MLA + MLP sub-blocks and one MoE block (with zero-compute
experts) per layer, against transformers building a small model (parameters) and
running it on the CPU (the MLA cache, one cache layer per sub-block, to the byte)."""

from __future__ import annotations

import pytest

from oracle_hf import build_model, cache_bytes, forward_cache
from vramplan.memory.kv_cache import kv_cache_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

TINY = dict(hidden_size=64, vocab_size=100, num_layers=3, num_attention_heads=4, num_key_value_heads=4,
            ffn_hidden_size=96, expert_ffn_hidden_size=32, n_routed_experts=4, zero_expert_num=2, moe_topk=2,
            kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
            head_dim=8, pad_token_id=0, bos_token_id=1, eos_token_id=2)  # head_dim: the rotary slice



@pytest.mark.exact
def test_parameters_equal_the_meta_build_less_the_zero_experts_projections():
    """transformers' LongcatFlashExperts sizes ``gate_up_proj`` for routed plus
    zero-compute experts (``total_experts``) but only ever multiplies the routed ones;
    the checkpoint holds the routed experts' weights only (LongCat-Flash: 560B)."""
    config, model = build_model("longcat_flash", "meta", **TINY)
    spec = spec_from_config(config.to_dict(), complete=False)
    experts = [m for name, m in model.named_modules() if name.endswith("mlp.experts")]
    unused = sum(e.gate_up_proj[e.num_routed_experts:].numel() for e in experts)
    assert unused == TINY["num_layers"] * TINY["zero_expert_num"] * 2 * 32 * 64
    assert count_params(spec).total_params == sum(p.numel() for p in model.parameters()) - unused
    assert spec.num_layers == 2 * TINY["num_layers"] and spec.num_moe_layers == TINY["num_layers"]


@pytest.mark.exact
@pytest.mark.parametrize("tokens", [3, 7])
def test_cache_equals_transformers_cache_after_a_forward(tokens):
    pytest.importorskip("torch")

    config, model = build_model("longcat_flash", "cpu", **TINY)
    batch = 2
    measured = cache_bytes(forward_cache(model, batch, tokens), min_dim=3)
    spec = spec_from_config(config.to_dict(), complete=False)
    assert kv_cache_bytes(spec, context_tokens=tokens, batch=batch, dtype="bf16", mla_cache="latent") == measured


def test_published_layout_without_transformers():
    # LongCat-Flash-Chat config.json: 28 layers of two sub-blocks, 512 experts + 256 zero experts
    cfg = {"model_type": "longcat_flash", "hidden_size": 6144, "num_layers": 28, "num_attention_heads": 64,
           "ffn_hidden_size": 12288, "expert_ffn_hidden_size": 2048, "n_routed_experts": 512,
           "zero_expert_num": 256, "moe_topk": 12, "kv_lora_rank": 512, "q_lora_rank": 1536,
           "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 131072}
    total = count_params(spec_from_config(cfg, complete=False)).total_params
    assert 560e9 < total < 561e9  # "560B total parameters" (LongCat-Flash technical report, 2025)
