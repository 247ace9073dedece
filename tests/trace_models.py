"""Tiny configs for exact-mode tests: real catalog configs shrunk to a few layers
and small widths, same family quirks."""

from __future__ import annotations

import copy

from conftest import catalog_config


def tiny_llama(layers: int = 2, hidden: int = 128, vocab: int = 1000, **extra) -> dict:
    """Llama-3.2-1B's config shrunk (GQA 4 query / 2 kv heads, head dim 32)."""
    cfg = copy.deepcopy(catalog_config("llama-3.2-1b"))
    cfg.update(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=4,
               num_key_value_heads=2, head_dim=hidden // 4, vocab_size=vocab, bos_token_id=1, eos_token_id=2,
               max_position_embeddings=4096)
    cfg.update(extra)
    return cfg


def tiny_qwen3_moe(layers: int = 4) -> dict:
    """Qwen3-30B-A3B shrunk: 8 experts, top-2, the first layer dense."""
    cfg = copy.deepcopy(catalog_config("qwen3-30b-a3b"))
    cfg.update(num_hidden_layers=layers, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
               num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=8, num_experts_per_tok=2,
               vocab_size=500, mlp_only_layers=[0], bos_token_id=1, eos_token_id=2)
    return cfg


def tiny_gemma2(layers: int = 6) -> dict:
    """Gemma-2-2B shrunk: alternating sliding / full attention."""
    cfg = copy.deepcopy(catalog_config("gemma-2-2b"))
    cfg.update(num_hidden_layers=layers, hidden_size=64, intermediate_size=128, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, vocab_size=500, sliding_window=16, bos_token_id=1,
               eos_token_id=2, pad_token_id=0)
    cfg.pop("layer_types", None)
    return cfg


def tiny_deepseek(layers: int = 4) -> dict:
    """DeepSeek-V2-Lite shrunk: MLA attention, first layer dense, then MoE."""
    cfg = copy.deepcopy(catalog_config("deepseek-v2-lite"))
    cfg.update(num_hidden_layers=layers, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
               num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, num_experts_per_tok=2,
               n_shared_experts=1, first_k_dense_replace=1, kv_lora_rank=16, qk_rope_head_dim=8,
               qk_nope_head_dim=16, v_head_dim=16, vocab_size=500, bos_token_id=1, eos_token_id=2,
               n_group=1, topk_group=1)
    cfg.pop("q_lora_rank", None)
    return cfg
