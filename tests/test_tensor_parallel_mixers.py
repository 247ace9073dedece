"""Tensor parallelism on models whose layers mix tokens without softmax attention: the
split follows each mixer's own unit (vLLM's sharding), not a placeholder head count."""

from __future__ import annotations

import pytest

from oracle_hf import hf_config
from vramplan.errors import LayoutError
from vramplan.inference import InferenceSetup, estimate_inference
from vramplan.memory.recurrent_state import layer_state
from vramplan.model.hf_config import spec_from_config
from vramplan.parallel import ParallelLayout, max_tensor_parallel, tensor_parallel_problem

MAMBA = dict(hidden_size=256, num_hidden_layers=2, vocab_size=1000, state_size=16, intermediate_size=512,
             time_step_rank=16)
MAMBA2 = dict(hidden_size=256, num_hidden_layers=2, vocab_size=1000, state_size=16, num_heads=8, head_dim=64,
              n_groups=1, expand=2)


def _spec(model_type, **kw):
    return spec_from_config(hf_config(model_type, **kw).to_dict(), complete=False)


def test_an_attention_free_model_splits_by_its_mixer_not_by_a_head_count():
    spec = _spec("mamba", **MAMBA)
    assert spec.num_attention_layers == 0
    assert tensor_parallel_problem(spec, 2) is None  # 512 inner channels split in two
    assert tensor_parallel_problem(spec, 3) == ("mamba d_inner", 512)
    assert max_tensor_parallel(spec, 8) == 8
    one = estimate_inference(spec, InferenceSetup(context=1024, tp=1))
    two = estimate_inference(spec, InferenceSetup(context=1024, tp=2))
    assert not any("KV heads" in w for w in two.warnings)
    kv = {e: next(c.bytes for c in est.components if c.name == "kv_cache") for e, est in ((1, one), (2, two))}
    assert kv[2] * 2 == kv[1]  # Mamba-1's conv and SSM states split with the inner channels


def test_mamba2_splits_by_heads_and_replicates_groups_that_tp_does_not_divide():
    spec = _spec("mamba2", **MAMBA2)
    assert tensor_parallel_problem(spec, 8) is None
    assert tensor_parallel_problem(spec, 16) == ("mamba_num_heads", 8)
    ssm = spec.ssm
    # vLLM mamba_utils.extra_groups_for_head_shards: one group of B and C grows to tp
    # groups, one per rank; the conv state per rank is (d_inner / tp + 2 d_state) channels.
    for tp in (2, 4, 8):
        assert layer_state(spec, 0, tp=tp).conv_elements == (ssm.d_inner // tp + 2 * ssm.d_state) * ssm.d_conv
        assert layer_state(spec, 0, tp=tp).state_elements * tp == layer_state(spec, 0).state_elements


def test_training_layouts_of_an_attention_free_model_check_the_mixer():
    spec = _spec("mamba", **MAMBA)
    ParallelLayout(dp=1, tp=4).check_model(spec)
    with pytest.raises(LayoutError, match="mamba d_inner=512"):
        ParallelLayout(dp=1, tp=3).check_model(spec)


def test_hybrids_check_attention_heads_and_mixer_units():
    spec = _spec("bamba", hidden_size=192, num_hidden_layers=2, vocab_size=1000, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=512, attn_layer_indices=[1], mamba_n_heads=6,
                 mamba_d_head=64, mamba_n_groups=1, mamba_d_state=16, mamba_expand=2)
    assert tensor_parallel_problem(spec, 2) is None
    assert tensor_parallel_problem(spec, 4) == ("mamba_num_heads", 6)  # the 4 attention heads would split
    assert max_tensor_parallel(spec, 8) == 4
