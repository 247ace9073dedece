"""Invariants of the estimates for the families with their own memory structure (Gemma 3n
and Gemma 4 MoE, Gemma 4 assistants, Mllama, dots3, Hunyuan v4, A.X K2, LongCat-Flash,
DeepSeek-V4): more batch or context never costs less, in training and in serving
(hypothesis over the published layouts' default configs, read without transformers)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vramplan.errors import VramplanError
from vramplan.model.hf_config import spec_from_config

BASE = dict(hidden_size=256, vocab_size=1000, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512,
            num_hidden_layers=4, max_position_embeddings=65536)
MLA = dict(kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32,
           moe_intermediate_size=64, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
           index_n_heads=2, index_head_dim=32, index_topk=64, num_key_value_heads=4)
CONFIGS = {
    "gemma3n": dict(BASE, model_type="gemma3n_text", head_dim=64, num_kv_shared_layers=2, sliding_window=512,
                    hidden_size_per_layer_input=16, vocab_size_per_layer_input=1000, laurel_rank=8),
    "gemma4_moe": dict(BASE, model_type="gemma4_text", head_dim=64, global_head_dim=128, sliding_window=512,
                       enable_moe_block=True, num_experts=8, top_k_experts=2, moe_intermediate_size=64,
                       hidden_size_per_layer_input=0),
    "mllama": dict(BASE, model_type="mllama_text_model", cross_attention_layers=[1]),
    "dots3": dict(BASE, **MLA, model_type="dots3_note_text", sliding_window=512),
    "hy_v4": dict(BASE, **MLA, model_type="hy_v4", hc_mult=4),
    "axk2": dict(BASE, **MLA, model_type="axk2"),
    "longcat_flash": dict(BASE, **MLA, model_type="longcat_flash", ffn_hidden_size=512, expert_ffn_hidden_size=64,
                          zero_expert_num=4, moe_topk=2, num_layers=2),
    "deepseek_v4": dict(BASE, model_type="deepseek_v4", num_key_value_heads=1, head_dim=64, q_lora_rank=48,
                        moe_intermediate_size=64, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
                        o_groups=2, o_lora_rank=32, index_n_heads=2, index_head_dim=32, sliding_window=128),
}
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def _spec(name: str):
    return spec_from_config(dict(CONFIGS[name]), name=name, complete=False)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_family_reads_without_transformers(name):
    assert _spec(name).model_type == CONFIGS[name]["model_type"]


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), batch=st.integers(1, 8), seq=st.integers(16, 4096),
       field=st.sampled_from(["batch", "seq"]), more=st.integers(1, 1024))
def test_training_is_monotone(name, batch, seq, field, more):
    from vramplan.training import TrainingSetup, estimate_training

    setup = TrainingSetup(batch=batch, seq=seq)
    try:
        base = estimate_training(_spec(name), setup)
        bigger = estimate_training(_spec(name), replace(setup, **{field: getattr(setup, field) + more}))
    except VramplanError:
        assume(False)
        return
    assert bigger.total_bytes >= base.total_bytes, (name, field, base.total_bytes, bigger.total_bytes)


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), batch=st.integers(1, 16), context=st.integers(1, 32768),
       field=st.sampled_from(["batch", "context"]), more=st.integers(1, 4096))
def test_inference_is_monotone(name, batch, context, field, more):
    from vramplan.inference import InferenceSetup, estimate_inference

    setup = InferenceSetup(engine="hf", batch=batch, context=context)
    try:
        base = estimate_inference(_spec(name), setup)
        bigger = estimate_inference(_spec(name), replace(setup, **{field: getattr(setup, field) + more}))
    except VramplanError:
        assume(False)
        return
    assert bigger.total_bytes >= base.total_bytes, (name, field, base.total_bytes, bigger.total_bytes)
