"""Hybrid and recurrent families against transformers: Falcon-H1 (Mamba-2 beside attention
in every layer), Zamba / Zamba2 (Mamba with shared attention blocks), Kimi Linear and
Bailing-hybrid (Kimi delta attention), Lara-mini and OLMo-hybrid (gated delta-nets),
LFM3 (gated short convolutions), RecurrentGemma (RG-LRU), RWKV-4 and xLSTM.

For each, a small config of the family is built by transformers and run forward on the
CPU; every tensor its cache holds (and RecurrentGemma's per-layer state, which the model
keeps on its recurrent blocks) is summed to the byte and compared with vramplan's cache
term (attention KV + recurrent and conv state). The same small configs are built on the
meta device and their parameters compared with vramplan's count, so the variants the
default configs leave off (Falcon-H1's gated norm and biases, Zamba2's two shared blocks
with attention adapters) are checked too."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle_hf import cache_tensors, hf_config, model_from_config
from vramplan.memory.kv_cache import kv_bytes_per_token, kv_cache_bytes
from vramplan.memory.recurrent_state import layer_state, recurrent_state_bytes
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)

TINY = {
    "falcon_h1": dict(hidden_size=64, num_hidden_layers=2, vocab_size=100, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=96, mamba_d_ssm=64, mamba_n_heads=8, mamba_d_head=8,
                      mamba_n_groups=2, mamba_d_state=8, mamba_d_conv=4, mamba_rms_norm=True, mamba_proj_bias=True,
                      projectors_bias=True, **_IDS),
    "zamba": dict(hidden_size=64, num_hidden_layers=6, vocab_size=100, num_attention_heads=4, num_key_value_heads=4,
                  intermediate_size=96, attn_layer_period=2, attn_layer_offset=1, mamba_d_state=8, n_mamba_heads=2,
                  mamba_dt_rank=8, use_mamba_kernels=False, **_IDS),
    "zamba2": dict(hidden_size=64, num_hidden_layers=5, vocab_size=100, num_attention_heads=4, num_key_value_heads=4,
                   intermediate_size=96, layers_block_type=["mamba", "hybrid", "mamba", "hybrid", "hybrid"],
                   hybrid_layer_ids=[1, 3, 4], mamba_d_state=8, n_mamba_heads=4, mamba_headdim=32, mamba_ngroups=1,
                   adapter_rank=8, num_mem_blocks=2, use_shared_attention_adapter=True, use_mem_eff_path=False,
                   use_mamba_kernels=False, **_IDS),
    "kimi_linear": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4,
                        num_key_value_heads=4, intermediate_size=96, moe_intermediate_size=32, num_experts=4,
                        num_experts_per_token=2, num_shared_experts=1, kv_lora_rank=16, qk_rope_head_dim=8,
                        qk_nope_head_dim=8, v_head_dim=16, linear_head_dim=16, linear_num_heads=4,
                        mlp_layer_types=["dense", "sparse", "sparse", "sparse"],
                        layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
                        **_IDS),
    "bailing_hybrid": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4,
                           num_key_value_heads=4, intermediate_size=96, moe_intermediate_size=32, num_experts=4,
                           num_experts_per_token=2, num_shared_experts=1, kv_lora_rank=16, qk_rope_head_dim=8,
                           qk_nope_head_dim=8, v_head_dim=16, linear_head_dim=16, linear_num_heads=4,
                           first_k_dense_replace=1, num_expert_group=1, topk_group=1, num_nextn_predict_layers=0,
                           mlp_layer_types=["dense", "sparse", "sparse", "sparse"],
                           layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
                           **_IDS),
    "lara_mini": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                      num_experts=4, num_experts_per_tok=2, linear_num_key_heads=2, linear_num_value_heads=4,
                      linear_key_head_dim=16, linear_value_head_dim=8, linear_conv_kernel_dim=4, sliding_window=8,
                      layer_types=["linear_attention", "sliding_attention", "linear_attention", "full_attention"],
                      **_IDS),
    "olmo_hybrid": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4,
                        num_key_value_heads=4, intermediate_size=96, linear_num_key_heads=2, linear_num_value_heads=2,
                        linear_key_head_dim=16, linear_value_head_dim=24, linear_conv_kernel_dim=4,
                        layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
                        **_IDS),
    "lfm3": dict(hidden_size=64, num_hidden_layers=4, vocab_size=100, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=16, intermediate_size=96, conv_L_cache=3, sliding_window=8,
                 layer_types=["conv", "full_attention", "conv", "sliding_attention"], **_IDS),
    "recurrent_gemma": dict(hidden_size=64, num_hidden_layers=3, vocab_size=100, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=16, intermediate_size=96, lru_width=64,
                            attention_window_size=8, **_IDS),
    # qk_dim_factor 1: transformers 5.24's native chunkwise mLSTM kernel fails on CPU when q/k heads are narrower
    "xlstm": dict(hidden_size=64, embedding_dim=64, num_hidden_layers=2, num_blocks=2, vocab_size=100, num_heads=4,
                  chunk_size=4, qk_dim_factor=1.0, pad_token_id=1, bos_token_id=0, eos_token_id=2),
    "rwkv": dict(hidden_size=64, num_hidden_layers=2, vocab_size=100, attention_hidden_size=64, intermediate_size=96,
                 bos_token_id=0, eos_token_id=0),
}
"""Small configs of each family: every layer kind present, heads, groups and widths
chosen so that each dimension is distinct where the family allows it. Sliding windows
are longer than the prompt: right after a prefill longer than its window, transformers'
``DynamicSlidingWindowLayer`` keeps ``window - 1`` tokens, while vramplan counts the
``window`` tokens it holds while decoding (tests/test_kv_cache.py covers the cap)."""

BATCH, TOKENS = 2, 7


def _config(model_type: str):
    return hf_config(model_type, skip_unknown=True, **TINY[model_type])


def cache_bytes_after_forward(config) -> int:
    """Bytes transformers keeps for ``BATCH`` sequences after a bf16 prefill of ``TOKENS``
    random tokens: every tensor of the cache object it returns, plus, for RecurrentGemma
    (whose recurrent blocks keep their own state, ``conv1d_state`` and
    ``rg_lru.recurrent_states``, and whose causal-LM output returns no cache), those
    tensors and the ``DynamicCache`` passed in for its attention layers; for RWKV, the
    ``state`` list the model returns."""
    import torch
    import transformers

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16).eval()
        ids = torch.randint(3, 100, (BATCH, TOKENS))
        with torch.no_grad():
            if config.model_type == "recurrent_gemma":
                model._setup_cache(config, BATCH, ids.device, torch.bfloat16)
                cache = transformers.DynamicCache(config=config)
                model(input_ids=ids, use_cache=True, cache=cache)
                blocks = [layer.temporal_block for layer in model.model.layers]
                state = [b.conv1d_state for b in blocks if getattr(b, "conv1d_state", None) is not None]
                state += [b.rg_lru.recurrent_states for b in blocks if hasattr(b, "rg_lru")]
                tensors = cache_tensors(cache) + state
            elif config.model_type == "xlstm":  # xLSTMCache under ``cache``
                tensors = cache_tensors(model(input_ids=ids, use_cache=True).cache)
            elif config.model_type == "rwkv":  # RwkvModel returns its state list, not a Cache
                tensors = list(model(input_ids=ids, use_cache=True).state)
            else:
                out = model(input_ids=ids, use_cache=True)
                tensors = cache_tensors(out.past_key_values)
    # integer tensors are position counters (sliding layers, xLSTMCache.seqlen_offset), not state
    return sum(t.numel() * t.element_size() for t in tensors if t.dtype.is_floating_point)


@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_kv_plus_state_equals_transformers_cache(model_type):
    pytest.importorskip("torch")
    config = _config(model_type)
    measured = cache_bytes_after_forward(config)
    spec = spec_from_config(config.to_dict(), complete=False)
    assert spec.is_hybrid
    assert kv_cache_bytes(spec, context_tokens=TOKENS, batch=BATCH, dtype="bf16") == measured


@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_small_configs_count_as_the_meta_build(model_type):
    pytest.importorskip("torch")

    config = _config(model_type)
    model = model_from_config(config, "meta")
    ours = count_params(spec_from_config(config.to_dict(), complete=False)).total_params
    assert ours == sum(p.numel() for p in model.parameters())


def _spec(model_type: str):
    return spec_from_config({"model_type": model_type, **TINY[model_type]}, complete=False)


def test_falcon_h1_keeps_kv_and_a_mamba_state_in_every_layer():
    spec = _spec("falcon_h1")
    assert spec.num_attention_layers == spec.num_layers == 2
    state = layer_state(spec, 0)
    assert state.state_elements == 8 * 8 * 8  # mamba heads x head dim x d_state
    assert state.conv_elements == (64 + 2 * 2 * 8) * 4  # (d_ssm + 2 groups d_state) x d_conv
    assert kv_bytes_per_token(spec, "bf16") == 2 * 2 * 2 * 16 * 2  # layers x K,V x kv heads x head_dim x 2 B


def test_zamba_attention_kv_only_in_hybrid_layers_and_state_in_all():
    spec = _spec("zamba")
    hybrid = [i for i in range(spec.num_layers) if spec.mixer(i) == "attention"]
    assert hybrid == [2, 4]
    assert all(layer_state(spec, i).state_elements == 128 * 8 for i in range(spec.num_layers))
    # shared block: heads of 2 x hidden / heads = 32 dims, K and V, bf16, in the 2 hybrid layers
    assert kv_bytes_per_token(spec, "bf16") == 2 * 2 * 4 * 32 * 2


def test_recurrent_gemma_reads_its_attention_window_and_layer_pattern():
    spec = _spec("recurrent_gemma")
    assert spec.sliding_window == 8
    assert [spec.mixer(i) for i in range(3)] == ["rg_lru", "rg_lru", "attention"]
    assert layer_state(spec, 0).state_elements == 64 and layer_state(spec, 0).conv_elements == 64 * 3


def test_recurrent_state_does_not_grow_with_context():
    for model_type in TINY:
        spec = _spec(model_type)
        state = recurrent_state_bytes(spec, batch=3)
        assert state > 0, model_type
        short = kv_cache_bytes(spec, context_tokens=10, batch=3, dtype="bf16")
        long = kv_cache_bytes(spec, context_tokens=1000, batch=3, dtype="bf16")
        assert long >= short >= state, model_type


@pytest.mark.exact
def test_family_defaults_match_the_config_classes():
    """The defaults the reader uses without transformers are the config classes' own."""
    transformers = pytest.importorskip("transformers")
    from vramplan.model.families import FAMILIES

    for model_type in TINY:
        full = transformers.AutoConfig.for_model(model_type).to_dict()
        for key, value in FAMILIES[model_type].defaults.items():
            assert full.get(key) == value, (model_type, key)


@pytest.mark.exact
def test_extrapolated_trace_of_a_hybrid_equals_the_full_trace(tmp_path):
    """The exact mode's per-layer extrapolation sees the token mixer of each layer and
    cuts Zamba2's per-layer lists: a few Mamba / hybrid layer pairs traced and extended
    give the full-depth trace's peak."""
    pytest.importorskip("torch")
    import json

    import transformers

    from vramplan.trace.extrapolate import trace_extrapolated, traced_layer_counts
    from vramplan.trace.run import resolve_config, run_trace
    from vramplan.trace.setup import TraceSetup

    cfg = hf_config(
        "zamba2", hidden_size=128, num_hidden_layers=10, vocab_size=1000, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=256, layers_block_type=["mamba", "hybrid"] * 5, mamba_d_state=16,
        n_mamba_heads=4, mamba_headdim=64, adapter_rank=8, use_mem_eff_path=False, use_mamba_kernels=False,
        chunk_size=32, **_IDS).to_dict()
    cfg["torch_dtype"] = "bfloat16"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert traced_layer_counts(cfg)[2] == 2  # the Mamba / hybrid pair is the period
    setup = TraceSetup(batch_size=1, seq=128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extended = trace_extrapolated(str(path), setup).peak_bytes
        full = run_trace(resolve_config(str(path))[1], setup).peak_bytes
    assert extended == full


@pytest.mark.parametrize("model_type,key,value", [
    ("zamba2", "layers_block_type", ["mamba", "hybrid"]),
    ("zamba", "layers_block_type", ["mamba", "attention", "mamba", "hybrid", "mamba", "mamba"]),
    ("recurrent_gemma", "block_types", ["recurrent", "local"]),
    ("kimi_linear", "layer_types", ["linear_attention"] * 3),
    ("falcon_h1", "mamba_n_heads", 7),
])
def test_contradictory_layer_lists_fail_in_one_line_naming_the_field(model_type, key, value):
    from vramplan.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        spec_from_config({"model_type": model_type, **TINY[model_type], key: value}, complete=False)
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith(key.split("_")[0]) or key in str(exc.value)


@settings(max_examples=40, deadline=None)
@given(model_type=st.sampled_from(sorted(TINY)), context=st.integers(1, 100_000), more=st.integers(0, 20_000),
       batch=st.integers(1, 32), extra=st.integers(0, 8))
def test_more_context_or_batch_never_needs_less_cache(model_type, context, more, batch, extra):
    spec = _spec(model_type)
    base = kv_cache_bytes(spec, context_tokens=context, batch=batch, dtype="bf16")
    assert kv_cache_bytes(spec, context_tokens=context + more, batch=batch, dtype="bf16") >= base
    assert kv_cache_bytes(spec, context_tokens=context, batch=batch + extra, dtype="bf16") >= base
    assert base >= recurrent_state_bytes(spec, batch=batch)
