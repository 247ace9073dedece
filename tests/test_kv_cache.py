"""KV cache bytes against what transformers really caches, and published figures.

Oracle 1: a tiny model of each attention kind is built by transformers on CPU from a
config; after a forward of N tokens with ``use_cache=True`` the cache's key/value
tensors' ``nbytes`` must equal :func:`kv_cache_bytes` (transformers' cache is not
paged: block_size None). Sliding-window layers are checked with N beyond the window.

Oracle 2: published per-token figures.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.errors import InputError, LayoutError
from vramplan.memory.kv_cache import (
    get_kv_dtype,
    kv_bytes_per_token,
    kv_cache_bytes,
    kv_replication_warning,
)
from vramplan.memory.weights import check_tensor_parallel
from vramplan.model import resolve_model
from vramplan.model.hf_config import spec_from_config
from vramplan.units import KiB

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, vocab_size=256,
            max_position_embeddings=512, torch_dtype="float32")

TINY_CONFIGS = {
    "llama-mha": dict(TINY, model_type="llama", num_attention_heads=4, num_key_value_heads=4),
    "llama-gqa": dict(TINY, model_type="llama", num_attention_heads=8, num_key_value_heads=2),
    "llama-mqa": dict(TINY, model_type="llama", num_attention_heads=4, num_key_value_heads=1),
    "qwen3-head-dim": dict(TINY, model_type="qwen3", num_attention_heads=4, num_key_value_heads=2, head_dim=32),
    "mistral-sliding": dict(TINY, model_type="mistral", num_attention_heads=4, num_key_value_heads=2,
                            sliding_window=8),
    "gemma2-local-global": dict(TINY, model_type="gemma2", num_attention_heads=4, num_key_value_heads=2,
                                head_dim=16, sliding_window=8),
    "deepseek-v3-mla": dict(TINY, model_type="deepseek_v3", num_attention_heads=4, num_key_value_heads=4,
                            q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16,
                            v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                            n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1),
}


def _real_cache_bytes(cfg: dict, tokens: int, batch: int) -> int:
    """Bytes of the storages a transformers cache holds after a forward of ``tokens``
    tokens and one decode step (the storage, not the view: a sliding layer's cropped
    view keeps the storage ``torch.cat`` made)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.AutoConfig.for_model(**cfg)
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_cfg).eval()
    ids = torch.randint(0, cfg["vocab_size"], (batch, tokens))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        out = model(input_ids=ids[:, -1:], past_key_values=cache, use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
    storages = {}
    for layer in cache.layers:
        for t in (layer.keys, layer.values):
            if t is not None and t.numel():
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("tokens", [5, 13])
def test_kv_bytes_match_transformers_cache(name, tokens):
    cfg = TINY_CONFIGS[name]
    spec = spec_from_config(cfg)
    expected = _real_cache_bytes(cfg, tokens, batch=2)
    # transformers 5 caches MLA's compressed latent + rope key, as vLLM does; a sliding
    # layer holds `window` tokens of storage once decoding.
    assert kv_cache_bytes(spec, context_tokens=tokens + 1, batch=2, dtype="fp32", mla_cache="latent") == expected


def test_llama2_7b_fp16_is_512_kib_per_token():
    # Published: 2 (K,V) x 32 layers x 4096 hidden x 2 bytes = 512 KiB/token (e.g. the
    # vLLM paper, Kwon et al. 2023, sec. 3: "~800 KB per token for OPT-13B"; for
    # Llama-2-7B the same arithmetic gives 0.5 MiB, quoted by NVIDIA's "Mastering LLM
    # Techniques: Inference Optimization" blog).
    assert kv_bytes_per_token(resolve_model("llama-2-7b"), "fp16") == 512 * KiB


def test_opt13b_style_figure_from_vllm_paper():
    # vLLM paper sec. 3: OPT-13B, 2 x 5120 hidden x 40 layers x 2 B = 819,200 B ("800 KB").
    from vramplan.model import custom_spec

    spec = custom_spec(layers=40, hidden=5120, heads=40, vocab=50272)
    assert kv_bytes_per_token(spec, "fp16") == 819_200


def test_deepseek_mla_latent_matches_v2_paper():
    # DeepSeek-V2 paper Table 1: MLA caches (d_c + d_h^R) x l elements per token,
    # d_c = 512, d_h^R = 64 (= 4.5 d_h with d_h = 128).
    spec = resolve_model("deepseek-v3")
    assert kv_bytes_per_token(spec, "bf16") == (512 + 64) * spec.num_layers * 2
    assert 512 + 64 == 4.5 * 128


def test_llama3_8b_gqa_and_qwen3_head_dim():
    # Llama-3.1-8B: 8 KV heads x 128 x 2 (K,V) x 32 layers x 2 B = 131,072 B/token.
    assert kv_bytes_per_token(resolve_model("llama-3.1-8b"), "bf16") == 131_072
    # Qwen3-8B: explicit head_dim 128, 8 KV heads, 36 layers -> 2*8*128*36*2 = 147,456.
    assert kv_bytes_per_token(resolve_model("qwen3-8b"), "bf16") == 147_456


def test_sliding_window_caps_catalog_models():
    # Mistral 7B v0.1: window 4096, every layer slides: a 32k context costs as much as 4k.
    m = resolve_model("mistral-7b-v0.1")
    assert kv_cache_bytes(m, context_tokens=32768, batch=1) == kv_cache_bytes(m, context_tokens=4096, batch=1)
    # Gemma 2 9B: half the layers global, so 8k tokens cost less than 2x 4k tokens.
    g = resolve_model("gemma-2-9b")
    four_k, eight_k = (kv_cache_bytes(g, context_tokens=n, batch=1) for n in (4096, 8192))
    assert four_k < eight_k < 2 * four_k


def test_llamacpp_block_dtypes():
    # q8_0: 34 bytes per 32 elements; q4_0: 18 bytes per 32 (ggml-common.h), checked
    # against the gguf package's own table.
    gguf = pytest.importorskip("gguf")
    for name in ("q8_0", "q4_0", "q5_0", "q5_1", "q4_1", "iq4_nl"):
        d = get_kv_dtype(name)
        assert (d.block_elements, d.block_bytes) == gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name.upper()]]
    spec = resolve_model("llama-2-7b")
    assert kv_bytes_per_token(spec, "q8_0") == 512 * KiB * 34 // 64


def test_paged_rounding_vllm_block_16():
    spec = resolve_model("llama-3.1-8b")
    one = kv_bytes_per_token(spec, "bf16")
    assert kv_cache_bytes(spec, context_tokens=17, batch=3, dtype="bf16", block_size=16) == 3 * 32 * one


def test_tp_splits_heads_and_replicates_beyond_kv_heads():
    spec = resolve_model("llama-3.1-8b")  # 8 KV heads
    full = kv_bytes_per_token(spec, "bf16")
    assert kv_bytes_per_token(spec, "bf16", tp=8) == full // 8
    assert kv_replication_warning(spec, 8) is None
    big = resolve_model("llama-3.1-70b")  # 64 heads, 8 KV heads
    assert kv_bytes_per_token(big, "bf16", tp=16) == kv_bytes_per_token(big, "bf16", tp=8)
    assert "replicated" in kv_replication_warning(big, 16)


def test_bad_tp_and_sizes():
    spec = resolve_model("llama-3.1-8b")
    with pytest.raises(LayoutError, match="num_attention_heads=32"):
        check_tensor_parallel(spec, 3)
    with pytest.raises(InputError, match="context_tokens: expected a positive integer"):
        kv_cache_bytes(spec, context_tokens=0, batch=1)
    with pytest.raises(InputError, match="did you mean"):
        get_kv_dtype("fp9")


@settings(max_examples=40, deadline=None)
@given(ctx=st.integers(1, 200_000), batch=st.integers(1, 64), extra=st.integers(1, 5000))
def test_kv_monotonic_in_context_and_batch(ctx, batch, extra):
    spec = resolve_model("gemma-2-9b")
    base = kv_cache_bytes(spec, context_tokens=ctx, batch=batch)
    assert kv_cache_bytes(spec, context_tokens=ctx + extra, batch=batch) >= base
    assert kv_cache_bytes(spec, context_tokens=ctx, batch=batch + 1) > base
