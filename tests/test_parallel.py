"""Sharding math of vramplan.parallel against oracles we did not write.

* The ZeRO paper's Figure 1 (Rajbhandari et al. 2020): per-device model states for
  Psi = 7.5B, N_d = 64, K = 12.
* DeepSpeed's own estimators (``estimate_zero2/zero3_model_states_mem_needs``), called
  when deepspeed is installed.
* Megatron-LM's ``theoretical_memory_usage.py`` bytes per parameter and most-loaded
  shard for the same configuration.
"""

from __future__ import annotations

import importlib.util

import pytest

from vramplan.catalog import find_model
from vramplan.errors import LayoutError
from vramplan.model import count_params
from vramplan.parallel import (
    MIXED_ADAM,
    ParallelLayout,
    RankParams,
    ZeroConfig,
    bubble_fraction,
    in_flight_microbatches,
    layout_from_gpus,
    rank_params,
    shard_model_states,
    slice_coefficients,
)

GB = 10**9


def _states(params: int, layout: ParallelLayout, largest: int = 0, small: int = 0):
    """Model states of a model known by its parameter count (no tp/pp split)."""
    rp = RankParams(dense=params, experts=0, largest_module=largest, small=small)
    return shard_model_states(recipe=MIXED_ADAM, params=rp, layout=layout, layer_params=0, root_params=0)


# --------------------------------------------------------------------------- ZeRO paper, Figure 1

# Rajbhandari et al. 2020, Figure 1: Psi = 7.5B, N_d = 64, K = 12, per-device memory
# baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB (one decimal, GB = 1e9 B).
ZERO_FIG1 = [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)]


@pytest.mark.parametrize("stage,expected_gb", ZERO_FIG1)
def test_zero_paper_figure_1(stage, expected_gb):
    psi, n_d = 7_500_000_000, 64
    layout = ParallelLayout(dp=n_d, zero_stage=stage)
    s = _states(psi, layout)
    model_states = s.weights_bytes + s.gradients_bytes + s.master_weights_bytes + s.optimizer_bytes
    assert round(model_states / GB, 1) == expected_gb


def test_zero_paper_exact_terms():
    # The figure's formulas, term by term: P_os = 4 Psi + K Psi / N_d = 30 + 1.40625 GB.
    psi, n_d = 7_500_000_000, 64
    s = _states(psi, ParallelLayout(dp=n_d, zero_stage=1))
    assert s.weights_bytes + s.gradients_bytes == 4 * psi
    assert s.master_weights_bytes + s.optimizer_bytes == 12 * psi / n_d


# --------------------------------------------------------------------------- DeepSpeed's estimators

deepspeed_missing = importlib.util.find_spec("deepspeed") is None


@pytest.fixture(scope="module")
def ds():
    if deepspeed_missing:
        pytest.skip("deepspeed not installed (pip install deepspeed; DS_BUILD_OPS=0 works on CPU)")
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    return estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs


# (total params, largest layer params, gpus per node, nodes): DeepSpeed's docs example
# (13B model with 325M largest layer) and two catalog-sized ones.
DS_CASES = [(13_000_000_000, 325_000_000, 8, 1), (7_500_000_000, 131_072_000, 8, 8),
            (8_030_261_248, 525_336_576, 4, 2)]


@pytest.mark.parametrize("total,largest,per_node,nodes", DS_CASES)
def test_zero2_matches_deepspeed(ds, total, largest, per_node, nodes):
    est2, _ = ds
    n = per_node * nodes
    # No offload: DeepSpeed's GPU figure is 2P + 18P/N at the optimizer step (its 18 =
    # 2 fp16 grads + 4 fp32 grads + 4 fp32 params + 8 Adam). We add the reduce bucket
    # (5e8 elements, allocated in full by stage_1_and_2.py), which its estimator leaves out.
    _, gpu = est2(total, num_gpus_per_node=per_node, num_nodes=nodes, cpu_offload=False)
    s = _states(total, ParallelLayout(dp=n, zero_stage=2, gpus_per_node=per_node))
    assert int(s.step_peak_bytes - s.comm_buckets_bytes) == pytest.approx(gpu, abs=2)
    # Optimizer offload: 2P on the GPU (16-bit weights).
    cpu, gpu = est2(total, num_gpus_per_node=per_node, num_nodes=nodes, cpu_offload=True,
                    additional_buffer_factor=1.0)
    s = _states(total, ParallelLayout(dp=n, zero_stage=2, offload="optimizer", gpus_per_node=per_node))
    assert int(s.step_peak_bytes - s.comm_buckets_bytes) == gpu
    if 4 * n <= 16:
        # Host: 16 bytes/param (fp32 master + Adam + fp32 grads) per node. DeepSpeed's own
        # figure is max(4 * gpus, 16) bytes/param: it adds every process loading an fp32
        # copy of the model, which we do not count, so compare only where 16 wins.
        assert s.host_per_gpu_bytes * per_node == pytest.approx(cpu, rel=1e-9)


@pytest.mark.parametrize("total,largest,per_node,nodes", DS_CASES)
@pytest.mark.parametrize("offload", ["none", "optimizer", "params"])
def test_zero3_matches_deepspeed(ds, total, largest, per_node, nodes, offload):
    _, est3 = ds
    n = per_node * nodes
    cpu, gpu, largest_mem = est3(total, largest, num_gpus_per_node=per_node, num_nodes=nodes,
                                 cpu_offload=offload != "none", cpu_offload_params=offload == "params",
                                 zero_init=True, additional_buffer_factor=1.0)
    # Persistence threshold 0 and no prefetch bucket: DeepSpeed's estimator counts the
    # largest layer's 16-bit weights and gradients (4 bytes/param) and ignores both. Its
    # stage-3 "18" bytes/param/N is 2 (16-bit weights) + 4 (fp32 weights) + 8 (Adam) + 4
    # (fp32 gradients); it leaves out the 16-bit gradient partition that stage3.py keeps
    # until the step, which we count (+2 P/N) — the one deliberate difference. The fp32
    # gradients come one sub-group at a time; a sub-group larger than the partition
    # makes them whole, as the estimator assumes.
    zero = ZeroConfig(prefetch_bucket_elements=0, param_persistence_threshold=0, sub_group_elements=10**12)
    layout = ParallelLayout(dp=n, zero_stage=3, offload=offload, gpus_per_node=per_node, zero=zero)
    s = _states(total, layout, largest=largest)
    ours = s.weights_bytes + s.gradients_bytes + s.master_weights_bytes + s.optimizer_bytes + s.gathered_params_bytes + s.unsharded_grads_bytes
    ours += s.step_temporaries_bytes
    fp16_grad_partition = 2 * total / n if offload == "none" else 0
    assert int(ours - fp16_grad_partition) == pytest.approx(gpu, abs=2)
    if offload != "none":
        # Host, per node (zero_init=True): 16 (optimizer offload) or 18 (also params) bytes/param / nodes.
        assert s.host_per_gpu_bytes * per_node == pytest.approx(cpu, rel=1e-9)


def test_zero3_buffers_at_deepspeed_defaults():
    # stage3_prefetch_bucket_size 5e7 elements (16-bit) and reduce_bucket_size 5e8 (16-bit),
    # DeepSpeedZeroConfig defaults.
    s = _states(7_000_000_000, ParallelLayout(dp=8, zero_stage=3), largest=500_000_000)
    assert s.gathered_params_bytes == 2 * (500_000_000 + 50_000_000)
    assert s.comm_buckets_bytes == 2 * 500_000_000


def test_zero12_overlap_comm_doubles_the_bucket():
    one = _states(10**9, ParallelLayout(dp=8, zero_stage=2)).comm_buckets_bytes
    two = _states(10**9, ParallelLayout(dp=8, zero_stage=2, zero=ZeroConfig(overlap_comm=True))).comm_buckets_bytes
    assert two == 2 * one == 2 * 2 * 500_000_000


# --------------------------------------------------------------------------- Megatron-LM

def test_megatron_bytes_per_parameter():
    # megatron/training/theoretical_memory_usage.py: 18 bytes/param without the
    # distributed optimizer, 6 + 12/dp with it.
    p, dp = 10**9, 8
    plain = _states(p, ParallelLayout(dp=dp, tp=2, engine="megatron"))
    assert plain.resident_bytes == 18 * p
    dist = _states(p, ParallelLayout(dp=dp, tp=2, zero_stage=1, engine="megatron"))
    assert dist.resident_bytes == pytest.approx((6 + 12 / dp) * p)


def test_megatron_most_loaded_shard_llama_8b():
    # Megatron's most loaded shard for pp > 1 is (transformer block / pp + embedding) / tp
    # (theoretical_memory_usage.py). For Llama-3.1-8B (untied, 32 layers, vocab 128256,
    # h 4096) with tp=2, pp=4 we hold the first stage's 8 layers + the embedding; the
    # final norm (4096, replicated) sits on the last stage, where Megatron's block
    # divides it by pp as well.
    spec = find_model("llama-3.1-8b").spec()
    c = slice_coefficients(spec)
    total = count_params(spec).total_params
    embedding = 128256 * 4096
    block = total - 2 * embedding  # transformer layers + final norm
    first = rank_params(c, tp=2, pp=4, ep=1, stage="first")
    megatron = (block / 4 + embedding) / 2
    # Two deliberate differences, both exact: Megatron's formula divides the layer norms by
    # tp though every tp rank holds them whole (8 layers x 2 norms x 4096, half of it
    # missing), and charges 1/(pp*tp) of the final norm to this stage, which holds none.
    replicated_norms = 8 * 2 * 4096
    assert first.total == megatron + replicated_norms / 2 - 4096 / (4 * 2)
    # pp = 1: the whole model plus the untied head, / tp; all 64 layer norms and the final one replicated.
    whole = rank_params(c, tp=2, pp=1, ep=1, stage="first")
    assert whole.total == (block + 2 * embedding) / 2 + (32 * 2 * 4096 + 4096) / 2


# --------------------------------------------------------------------------- pipeline schedules

def test_1f1b_in_flight():
    # PipeDream-Flush 1F1B: stage 0 holds min(p, m) micro-batches, the last stage one.
    assert in_flight_microbatches(pp=4, micro_batches=8) == 4
    assert in_flight_microbatches(pp=4, micro_batches=2) == 2
    assert in_flight_microbatches(pp=4, micro_batches=8, stage="last") == 1
    # Interleaved (Megatron): p * (1 + (p-1)/(p v)) = 4 * (1 + 3/8) = 5.5.
    assert in_flight_microbatches(pp=4, micro_batches=8, virtual_stages=2) == pytest.approx(5.5)


def test_bubble_fraction():
    # Narayanan et al. 2021: bubble (p-1)/m of ideal compute -> (p-1)/(m+p-1) of the step.
    assert bubble_fraction(pp=4, micro_batches=8) == pytest.approx(3 / 11)
    assert bubble_fraction(pp=1, micro_batches=8) == 0
    assert bubble_fraction(pp=4, micro_batches=8, virtual_stages=2) == pytest.approx(3 / 19)


# --------------------------------------------------------------------------- FSDP

def test_fsdp_full_shard_holds_fp32_shards_and_a_16bit_unit():
    p, layer, root = 8 * 10**9, 200 * 10**6, 10**9
    rp = RankParams(dense=p, experts=0, largest_module=0, small=0)
    s = shard_model_states(recipe=MIXED_ADAM, params=rp, layout=ParallelLayout(dp=8, fsdp="full_shard"),
                           layer_params=layer, root_params=root)
    assert s.weights_bytes == 4 * p / 8          # fp32 sharded parameters (the master copy)
    assert s.gradients_bytes == 4 * p / 8        # fp32 sharded gradients
    assert s.optimizer_bytes == 8 * p / 8
    assert s.master_weights_bytes == 0
    assert s.gathered_params_bytes == 2 * (root + 2 * layer)
    grad_op = shard_model_states(recipe=MIXED_ADAM, params=rp,
                                 layout=ParallelLayout(dp=8, fsdp="shard_grad_op"),
                                 layer_params=layer, root_params=root)
    assert grad_op.gathered_params_bytes == 2 * p


def test_hybrid_shard_shards_inside_a_node():
    p = 8 * 10**9
    rp = RankParams(dense=p, experts=0, largest_module=0, small=0)
    s = shard_model_states(recipe=MIXED_ADAM, params=rp,
                           layout=ParallelLayout(dp=32, fsdp="hybrid_shard", gpus_per_node=8),
                           layer_params=0, root_params=0)
    assert s.optimizer_bytes == 8 * p / 8


# --------------------------------------------------------------------------- bad layouts

@pytest.mark.parametrize("kwargs,needle", [
    (dict(zero_stage=2, fsdp="full_shard"), "choose ZeRO or FSDP"),
    (dict(dp=3, ep=2), "ep=2: must divide dp*cp = 3*1 = 3"),
    (dict(tp=0), "tp: expected a positive integer, got 0"),
    (dict(offload="params", zero_stage=2), "needs zero_stage=3"),
    (dict(fsdp="full_shard", offload="optimizer"), "use offload='params'"),
    (dict(engine="megatron", zero_stage=3), "distributed optimizer"),
    (dict(pp=2, virtual_stages=2, micro_batches=3), "multiple of pp=2"),
    (dict(fsdp="bogus"), "fsdp: expected one of"),
])
def test_bad_layouts(kwargs, needle):
    with pytest.raises(LayoutError, match=None) as err:
        ParallelLayout(**kwargs)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_gpu_count_mismatch_prints_every_factor():
    with pytest.raises(LayoutError) as err:
        ParallelLayout(dp=2, tp=4, pp=2).check_gpus(12)
    assert "dp*tp*pp*cp = 2*4*2*1 = 16" in str(err.value) and "12" in str(err.value)
    with pytest.raises(LayoutError, match=r"tp\*pp\*cp = 3\*1\*1 = 3"):
        layout_from_gpus(8, tp=3)
    assert layout_from_gpus(16, tp=4, pp=2).dp == 2


@pytest.mark.parametrize("model,kwargs,needle", [
    ("llama-3.1-8b", dict(tp=3, dp=1), "tp=3 does not divide num_attention_heads=32"),
    ("llama-3.1-8b", dict(pp=64), "pp*virtual_stages = 64*1 = 64 exceeds num_layers=32"),
    ("mixtral-8x7b", dict(dp=3, ep=3), "ep=3 does not divide num_experts=8"),
    ("llama-3.1-8b", dict(dp=2, ep=2), "has no experts"),
])
def test_layout_against_model(model, kwargs, needle):
    spec = find_model(model).spec()
    with pytest.raises(LayoutError) as err:
        ParallelLayout(**kwargs).check_model(spec)
    assert needle in str(err.value)


def test_tp_beyond_kv_heads_replicates_kv():
    # Llama-3.1-8B has 8 KV heads; tp=16 is rejected by heads (32 % 16 == 0 is fine, so
    # use 32 heads / tp 16): k/v split at most 8 ways.
    spec = find_model("llama-3.1-8b").spec()
    ParallelLayout(tp=16).check_model(spec)
    c = slice_coefficients(spec)
    r8 = rank_params(c, tp=8, pp=1, ep=1, stage="first")
    r16 = rank_params(c, tp=16, pp=1, ep=1, stage="first")
    kv_per_layer = c.kv_split_per_layer // 8
    assert r16.dense > r8.dense / 2  # k/v stop shrinking past 8
    assert kv_per_layer == 2 * 4096 * 128  # one KV head's k and v per rank


# --------------------------------------------------------------------------- Megatron's activation scaling

def test_activation_scaling_follows_megatron_first_stage():
    # megatron/training/theoretical_memory_usage.py, compute_activation_memory: the first
    # pipeline stage holds p micro-batches of L/p layers, i.e. L layers' worth (x
    # min(1, m/p) when m < p), x (1 + (p-1)/(p v)) when interleaved; with sequence
    # parallelism everything divides by tp.
    from vramplan.distributed import ActivationCoefficients, stage_terms
    from vramplan.training import TrainingSetup

    spec = find_model("llama-3.1-8b").spec()  # 32 layers
    c = slice_coefficients(spec)
    a = ActivationCoefficients.from_setup(spec, TrainingSetup(seq=2048, precision="bf16"))

    def kept(tp=1, pp=1, m=8, v=1, sp=False):
        t = stage_terms(c, a, stage="first", virtual_stages=v, tp=tp, pp=pp, cp=1, ep=1, sp=sp,
                        micro_batch_size=1, micro_batches=m)
        current = a.layer_backward_per_seq * (a.sharded_fraction / tp + (1 - a.sharded_fraction) * (1 / tp if sp else 1))
        return t.activations_bytes - current

    whole = kept()
    assert whole == pytest.approx(32 * a.layer_kept_per_seq)
    assert kept(pp=4, m=8) == pytest.approx(whole)                       # p in flight x L/p layers
    assert kept(pp=4, m=2) == pytest.approx(whole * 2 / 4)               # m < p: min(1, m/p)
    assert kept(pp=4, m=8, v=2) == pytest.approx(whole * (1 + 3 / 8))   # interleaved penalty
    assert kept(tp=4, sp=True) == pytest.approx(whole / 4)               # TP + SP: all / t
    no_sp = kept(tp=4)                                                   # TP only: the replicated share stays
    assert whole / 4 < no_sp < whole
