"""Oracle: our parameter count equals what transformers builds from the same config,
to the parameter, for every catalog model and for tiny variants of each family."""

from __future__ import annotations

import copy

import pytest

from conftest import catalog_config, catalog_slugs
from oracle_hf import build_meta_model, hf_param_count
from vramplan.model import count_params
from vramplan.model.hf_config import FLAT_WRAPPERS, spec_from_config, text_config

pytestmark = pytest.mark.exact


@pytest.mark.parametrize("slug", catalog_slugs())
def test_catalog_total_matches_transformers(slug):
    cfg = catalog_config(slug)
    ours = count_params(spec_from_config(cfg, name=slug)).total_params
    expected = hf_param_count(cfg)
    if cfg["model_type"] in ("t5", "mt5", "umt5") and cfg.get("tie_word_embeddings") is False:
        # transformers 5 builds T5-family heads tied whatever the file says (configuration_t5.py
        # forces tie_word_embeddings=True); the checkpoint stores lm_head.weight apart
        expected += cfg["vocab_size"] * cfg["d_model"]
    assert ours == expected


def _tiny(cfg: dict) -> dict:
    """Shrink a config: 2-4 layers, small widths, same family quirks."""
    cfg = copy.deepcopy(text_config(cfg))
    heads = 4
    kv = 2 if cfg.get("num_key_value_heads", cfg.get("num_attention_heads")) != cfg.get("num_attention_heads") else 4
    layers = 4
    if cfg["model_type"] == "gpt2":
        cfg.update(n_layer=2, n_embd=64, n_head=4, n_positions=128)
        return cfg
    cfg.update(num_hidden_layers=layers, hidden_size=64, num_attention_heads=heads, num_key_value_heads=kv,
               intermediate_size=96, max_position_embeddings=256)
    if "num_kv_heads" in cfg:  # Falcon's name for KV heads
        cfg["num_kv_heads"] = kv
    if "head_dim" in cfg:
        cfg["head_dim"] = 24  # explicit head_dim != hidden/heads (Qwen3, Gemma)
    if cfg.get("layer_types"):
        cfg["layer_types"] = cfg["layer_types"][:layers]
    for key in ("moe_intermediate_size", "shared_expert_intermediate_size"):
        if cfg.get(key):
            cfg[key] = 32
    for key in ("num_experts", "num_local_experts", "n_routed_experts"):
        if cfg.get(key):
            cfg[key] = 8
    if cfg.get("num_experts_per_tok"):
        cfg["num_experts_per_tok"] = 2
    if cfg.get("first_k_dense_replace"):
        cfg["first_k_dense_replace"] = 1
    if cfg.get("n_group"):
        cfg.update(n_group=2, topk_group=1)
    if cfg.get("kv_lora_rank"):
        cfg.update(kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, head_dim=8)
        if cfg.get("q_lora_rank"):
            cfg["q_lora_rank"] = 24
    if cfg.get("mlp_only_layers"):
        cfg["mlp_only_layers"] = [0]
    return cfg


def _one_per_model_type() -> list[str]:
    seen: dict[str, str] = {}
    from vramplan.model import encoder_decoder

    for slug in catalog_slugs():
        if encoder_decoder.reads(catalog_config(slug)):  # tests/test_encoder_decoder.py shrinks these
            continue
        if catalog_config(slug)["model_type"] in FLAT_WRAPPERS:  # no causal-LM class; tests/test_towers.py
            continue
        seen.setdefault(text_config(catalog_config(slug))["model_type"], slug)
    return sorted(seen.values())


COMPONENT_OF_HF_NAME = (
    # (substring of the transformers parameter name, our component); first match wins
    ("mamba.", "ssm"), ("linear_attn.", "ssm"),
    ("embed_tokens", "embeddings"), ("wte", "embeddings"), ("embed_in", "embeddings"), ("word_embeddings", "embeddings"),
    ("wpe", "position_embeddings"),
    ("lm_head.bias", "biases"), ("lm_head", "head"), ("embed_out", "head"),
    ("norm", "norms"), ("ln_", "norms"),
    ("shared_expert", "shared_experts"),
    ("experts", "experts"),
    ("mlp.gate.", "router"), ("mlp.router", "router"), ("block_sparse_moe.gate", "router"),
    ("bias", "biases"),
    ("attn", "attention"), ("attention", "attention"),
    ("mlp", "mlp"), ("feed_forward", "mlp"),
)


def _hf_components(model) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        for key, component in COMPONENT_OF_HF_NAME:
            if key in name:
                # biases of experts count as experts (ours: expert biases are in "biases"; fold them back below)
                out[component] = out.get(component, 0) + p.numel()
                break
        else:
            raise AssertionError(f"unmapped transformers parameter {name}")
    return out


@pytest.mark.parametrize("slug", _one_per_model_type())
def test_tiny_variant_matches_transformers_by_component(slug):
    cfg = _tiny(catalog_config(slug))
    counts = count_params(spec_from_config(cfg, name=slug))
    model = build_meta_model(cfg)
    assert counts.total_params == sum(p.numel() for p in model.parameters())
    hf = _hf_components(model)
    ours = dict(counts.components)
    # Components that name-matching assigns unambiguously in every family:
    for component in ("embeddings", "position_embeddings", "head", "norms"):
        assert ours.get(component, 0) == hf.get(component, 0), component
