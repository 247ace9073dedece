"""RL post-training jobs: the composition against the single-job estimates it is built
from, properties over the inputs, solvers checked by re-estimating, one-line errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.cli import main
from vramplan.distributed import TrainingJob, default_overhead_bytes, training_terms
from vramplan.distributed import estimate_on_layout as estimate_training
from vramplan.gpus import find_gpu
from vramplan.inference import InferenceSetup, estimate_inference
from vramplan.jobs import FrozenRole, RLJob, RolloutEngine, TrainerRole, estimate_rl
from vramplan.jobs.footprints import ROLLOUT_BYTES_PER_TOKEN, layer_params
from vramplan.jobs.solvers import (advice, longest_completion, most_generations, placement_options,
                                   utilization_range)
from vramplan.memory.kv_cache import kv_bytes_per_token_per_layer
from vramplan.memory.weights import weight_components
from vramplan.model import resolve_model
from vramplan.parallel import ParallelLayout
from vramplan.training import TrainingSetup
from vramplan.training import estimate_training as estimate_single_gpu

SMALL = "qwen2.5-0.5b"


def grpo(**kw) -> RLJob:
    base = dict(model="qwen2.5-7b", algo="grpo", gpu="h100-sxm", gpus=8,
                policy=TrainerRole(setup=TrainingSetup(batch=2, recompute="full")),
                rollout=RolloutEngine(tp=2, gpu_memory_utilization=0.6, sleep_level=2),
                prompts_per_step=256, generations=8, prompt_tokens=512, completion_tokens=1024)
    base.update(kw)
    return RLJob(**base)


def _phase_terms(est, group, phase, role=None):
    p = est.group(group).phase(phase)
    return {(t.role, t.component.name): t.component.bytes for t in p.terms if role in (None, t.role)}


# ---- composition, to the byte ----------------------------------------------------------
def _vllm(job: RLJob, sequences: int):
    spec = resolve_model(job.model)
    return estimate_inference(spec, InferenceSetup(
        engine="vllm", gpu=job.gpu, gpu_memory_utilization=job.rollout.gpu_memory_utilization, tp=job.rollout.tp,
        batch=sequences, context=job.sequence_tokens, prompt=job.prompt_tokens))


def _kv_pool(job: RLJob, vllm) -> int:
    spec = resolve_model(job.model)
    return vllm.details["kv_blocks"] * vllm.details["block_size"] * \
        kv_bytes_per_token_per_layer(spec, vllm.details["kv_dtype"], tp=job.rollout.tp) * spec.num_layers


def _fsdp_terms(job: RLJob):
    spec = resolve_model(job.model)
    setup = replace(job.policy.setup, seq=job.sequence_tokens)
    layout = ParallelLayout(dp=job.gpus, fsdp="full_shard")
    tjob = TrainingJob(model=spec, setup=setup, overhead_bytes=default_overhead_bytes(job.gpus))
    return estimate_training(tjob, layout), training_terms(tjob, layout, stage="first")


def test_colocated_rollout_is_the_vllm_estimate_plus_what_stays_of_the_trainer():
    job = grpo(reference=FrozenRole(offload=False))
    est = estimate_rl(job)
    sequences = job.prompts_per_step * job.generations // (job.gpus // job.rollout.tp)
    vllm = _vllm(job, sequences)
    engine = sum(c.bytes for c in vllm.components if c.name not in ("kv_cache", "overhead/cuda_context")) \
        + _kv_pool(job, vllm)
    _, terms = _fsdp_terms(job)
    resident = round(terms.states.weights_bytes) + round(terms.states.master_weights_bytes + terms.states.optimizer_bytes)
    spec = resolve_model(job.model)
    reference = -(-sum(c.bytes for c in weight_components(spec, "bf16")) // job.gpus)
    expected = engine + resident + round(terms.overhead_bytes) + reference
    assert est.group("all").phase("rollout").total_bytes == expected


def test_vllm_takes_its_utilization_share_of_the_gpu():
    """vLLM's arithmetic: weights + profiling peak + non-torch + KV pool = utilization x
    memory, less what does not fill a whole block in every layer."""
    job = grpo()
    est = estimate_rl(job)
    terms = _phase_terms(est, "all", "rollout", role="rollout")
    inside = sum(b for (_, name), b in terms.items() if name != "buffers/cuda_graphs")
    requested = int(job.rollout.gpu_memory_utilization * find_gpu(job.gpu).usable_memory_bytes)
    spec = resolve_model(job.model)
    one_block_all_layers = 16 * kv_bytes_per_token_per_layer(spec, "bf16", tp=2) * spec.num_layers
    assert requested - one_block_all_layers < inside <= requested


def test_training_phase_is_the_layout_estimate_plus_the_sleeping_engine():
    job = grpo(reference=FrozenRole(offload=True))
    est = estimate_rl(job)
    training, _ = _fsdp_terms(job)
    vllm = _vllm(job, job.prompts_per_step * job.generations // 4)
    asleep = sum(c.bytes for c in vllm.components if c.name in (
        "overhead/non_torch", "overhead/nccl", "overhead/custom_allreduce", "buffers/cuda_graphs"))
    batch = job.prompts_per_step * job.generations // job.gpus * job.sequence_tokens * ROLLOUT_BYTES_PER_TOKEN
    assert est.group("all").phase("training/policy").total_bytes == training.total_bytes + asleep + batch


def test_one_gpu_qlora_training_is_the_single_gpu_estimate():
    job = RLJob(model=SMALL, gpu="rtx-4090", gpus=1,
                policy=TrainerRole(setup=TrainingSetup(method="qlora", batch=2)),
                rollout=RolloutEngine(gpu_memory_utilization=0.3, sleep_level=0),
                prompts_per_step=8, generations=4, prompt_tokens=256, completion_tokens=256)
    est = estimate_rl(job)
    single = estimate_single_gpu(SMALL, replace(job.policy.setup, seq=512))
    engine_awake = sum(b for (_, _n), b in _phase_terms(est, "all", "rollout", role="rollout").items())
    batch = 32 * 512 * ROLLOUT_BYTES_PER_TOKEN
    assert est.group("all").phase("training/policy").total_bytes == \
        single.total_bytes + default_overhead_bytes(1) + engine_awake + batch  # sleep 0: the engine stays
    assert est.roles == ("policy", "rollout")  # LoRA: the base with adapters off is the reference
    assert dict(est.rollout.to_dict())["kv_pool_bytes"] > 0


def test_split_engine_gpus_hold_the_whole_vllm_estimate_and_trainer_gpus_no_engine():
    job = grpo(placement="split", rollout_gpus=4)
    est = estimate_rl(job)
    vllm = _vllm(job, job.prompts_per_step * job.generations // 2)
    engine = sum(c.bytes for c in vllm.components if c.name != "kv_cache") + _kv_pool(job, vllm)
    assert est.group("engine").phase("rollout").total_bytes == engine
    sync = layer_params(resolve_model(job.model)) * 2
    assert est.group("engine").phase("weight_sync").total_bytes == engine + sync
    assert all(t.role != "rollout" for p in est.group("trainer").phases for t in p.terms)
    assert est.group("trainer").num_gpus == 4


def test_host_ram_per_node_counts_offloads_and_the_level_1_weight_backup():
    job = grpo(policy=TrainerRole(setup=TrainingSetup(batch=2), offload_params=True, offload_optimizer=True),
               rollout=RolloutEngine(tp=2, gpu_memory_utilization=0.6, sleep_level=1))
    est = estimate_rl(job)
    _, terms = _fsdp_terms(replace(job, policy=replace(job.policy, setup=TrainingSetup(batch=2, recompute="full"))))
    host = {(h.role, h.name): h.bytes_per_node for h in est.host}
    states = round(terms.states.weights_bytes) + round(terms.states.master_weights_bytes + terms.states.optimizer_bytes)
    assert host[("policy", "offloaded")] == states * 8
    vllm = _vllm(job, job.prompts_per_step * job.generations // 4)
    assert host[("rollout", "weights")] == vllm.get("weights") * 8
    # the offloaded states are not on the GPU while the engine generates
    assert ("policy", "optimizer") not in _phase_terms(est, "all", "rollout")


def test_reference_only_when_kl_and_full_training():
    assert "reference" in estimate_rl(grpo()).roles
    assert "reference" not in estimate_rl(grpo(kl_coef=0.0)).roles
    lora = grpo(policy=TrainerRole(setup=TrainingSetup(method="lora")))
    assert "reference" not in estimate_rl(lora).roles


def test_ppo_and_dpo_roles_and_phases():
    ppo = estimate_rl(RLJob(model=SMALL, algo="ppo", gpu="a100-sxm-80gb", gpus=4))
    assert ppo.roles == ("policy", "critic", "reference", "reward", "rollout")
    assert {p.name for p in ppo.group("all").phases} >= {"training/critic", "scoring/reward", "scoring/critic"}
    dpo = estimate_rl(RLJob(model=SMALL, algo="dpo", gpu="a100-sxm-80gb", gpus=4))
    assert dpo.rollout is None and [p.name for p in dpo.group("all").phases] == \
        ["scoring/reference", "scoring/policy", "training/policy"]


def test_critic_and_reward_models_have_a_value_head_not_the_lm_head():
    from vramplan.jobs.footprints import value_model_spec

    big = RLJob(model="qwen2.5-7b", algo="ppo", gpu="h100-sxm", gpus=1)  # untied head
    spec = resolve_model("qwen2.5-7b")
    head = spec.vocab_size * spec.hidden_size * 2  # the bf16 vocab x hidden matrix a value model does not have
    reward = dict(_phase_terms(estimate_rl(big), "all", "rollout", role="reward"))[("reward", "weights")]
    assert reward == sum(c.bytes for c in weight_components(spec, "bf16")) - head
    job = RLJob(model=SMALL, algo="ppo", gpu="a100-sxm-80gb", gpus=1)
    est = estimate_rl(job)
    critic = est.group("all").phase("training/critic").by_role()["critic"]
    policy = est.group("all").phase("training/policy").by_role()["policy"]
    assert critic < policy
    single = estimate_single_gpu(value_model_spec(resolve_model(SMALL)),
                                 TrainingSetup(recompute="full", fused_ce=True, seq=job.sequence_tokens))
    assert critic == single.total_bytes + default_overhead_bytes(1)


# ---- properties ---------------------------------------------------------------------------
jobs = st.builds(
    lambda gens, comp, util, level, gpus, tp: RLJob(
        model=SMALL, gpu="a100-sxm-80gb", gpus=gpus, generations=gens, completion_tokens=comp,
        prompts_per_step=16, rollout=RolloutEngine(tp=tp, gpu_memory_utilization=util, sleep_level=level)),
    st.integers(1, 64), st.integers(16, 4096), st.sampled_from([0.2, 0.4, 0.6, 0.8]), st.sampled_from([0, 1, 2]),
    st.sampled_from([2, 4, 8]), st.sampled_from([1, 2]))


def _peaks(est):
    return [g.peak_bytes for g in est.groups]


@settings(max_examples=25, deadline=None)
@given(jobs, st.integers(1, 32))
def test_more_generations_never_less_memory(job, more):
    a, b = estimate_rl(job), estimate_rl(replace(job, generations=job.generations + more))
    for pa, pb in zip(a.groups[0].phases, b.groups[0].phases):
        assert pb.total_bytes >= pa.total_bytes


@settings(max_examples=25, deadline=None)
@given(jobs)
def test_deeper_sleep_never_more(job):
    by_level = [estimate_rl(replace(job, rollout=replace(job.rollout, sleep_level=n))) for n in (0, 1, 2)]
    for shallow, deep in zip(by_level, by_level[1:]):
        for ps, pd in zip(shallow.groups[0].phases, deep.groups[0].phases):
            assert pd.total_bytes <= ps.total_bytes
    # level 1 trades GPU memory for host RAM (the weight backup); level 2 keeps neither
    assert by_level[2].host_bytes_per_node <= by_level[1].host_bytes_per_node


@settings(max_examples=25, deadline=None)
@given(jobs, st.integers(1, 4))
def test_split_never_more_per_trainer_gpu_than_colocated(job, engine_instances):
    engine_gpus = engine_instances * job.rollout.tp
    colocated = estimate_rl(job)
    split = estimate_rl(replace(job, placement="split", gpus=job.gpus + engine_gpus, rollout_gpus=engine_gpus))
    assert split.group("trainer").num_gpus == job.gpus
    assert split.group("trainer").peak_bytes <= colocated.group("all").peak_bytes


@settings(max_examples=15, deadline=None)
@given(jobs)
def test_an_engine_in_its_own_process_adds_exactly_its_cuda_context(job):
    shared, separate = estimate_rl(job), estimate_rl(replace(job, engine_process="separate"))
    context = separate.group("all").phase("rollout").total_bytes - shared.group("all").phase("rollout").total_bytes
    assert context == _vllm(job, 1).get("overhead/cuda_context") > 0
    for ps, pp in zip(shared.groups[0].phases, separate.groups[0].phases):
        assert pp.total_bytes - ps.total_bytes in (0, context)


# ---- solvers, checked by re-estimating ----------------------------------------------------
def test_largest_utilization_is_the_boundary():
    job = grpo(policy=TrainerRole(setup=TrainingSetup(batch=4, recompute="full")))
    rng = utilization_range(job)
    assert rng.smallest is not None and rng.largest is not None and rng.smallest <= rng.largest
    at = lambda u: replace(job, rollout=replace(job.rollout, gpu_memory_utilization=u))  # noqa: E731
    assert estimate_rl(at(rng.largest)).fits
    if rng.largest < 1:
        assert not estimate_rl(at(round(rng.largest + 0.01, 2))).fits
    assert estimate_rl(at(rng.smallest)).rollout.starts
    if rng.smallest > 0.01:
        assert not estimate_rl(at(round(rng.smallest - 0.01, 2))).rollout.starts


def test_longest_completion_and_most_generations_are_boundaries():
    job = RLJob(model=SMALL, gpu="rtx-4090", gpus=1, prompts_per_step=8, generations=4,
                policy=TrainerRole(setup=TrainingSetup(method="lora", batch=4, recompute="full")),
                rollout=RolloutEngine(gpu_memory_utilization=0.3))
    n = longest_completion(job)
    assert n > 0
    assert estimate_rl(replace(job, completion_tokens=n)).fits
    assert not estimate_rl(replace(job, completion_tokens=n + 1)).fits
    g = most_generations(job)
    assert g > 0
    assert estimate_rl(replace(job, generations=g)).rollout.waves == 1
    nxt = estimate_rl(replace(job, generations=g + 1))
    assert nxt.rollout.waves > 1 or not nxt.fits


def test_placement_options_cover_every_split_and_rank_fitting_first():
    opts = placement_options(grpo())
    assert {(o.placement, o.engine_gpus) for o in opts} == {("colocated", 8), ("split", 2), ("split", 4),
                                                           ("split", 6)}
    fits = [o.fits for o in opts]
    assert fits == sorted(fits, reverse=True)


def test_advice_changes_fit_when_they_say_so():
    job = grpo(policy=TrainerRole(setup=TrainingSetup(batch=40, recompute="full")))
    assert not estimate_rl(job).fits
    changes = advice(job)
    assert changes and changes[0].fits
    half = next(c for c in changes if c.settings == {"micro_batch": 20})  # option names, not flags
    again = estimate_rl(grpo(policy=TrainerRole(setup=TrainingSetup(batch=20, recompute="full"))))
    assert (again.fits, max(g.peak_bytes for g in again.groups)) == (half.fits, half.peak_bytes)


# ---- bad input: one line, exit 2 ----------------------------------------------------------
@pytest.mark.parametrize("args, field", [
    (["--gpu-memory-utilization", "0"], "--gpu-memory-utilization"),
    (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
    (["--reference-model", "llama-3.1-8b"], "--reference-model"),
    (["--rollout-tp", "8"], "--rollout-tp"),
    (["--algo", "grpoo"], "--algo"),
    (["--sleep-level", "3"], "--sleep-level"),
    (["--placement", "split", "--rollout-gpus", "8"], "--rollout-gpus"),
    (["--max-model-len", "100"], "--max-model-len"),
])
def test_bad_input_is_one_line(args, field, capsys):
    code = main(["rl", "qwen2.5-7b", "--gpu", "h100-sxm", "--no-solve", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and field in err


def test_json_is_the_report(capsys):
    import json

    assert main(["rl", SMALL, "--gpu", "a100-sxm-80gb", "--gpus", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    job = RLJob(model=SMALL, gpu="a100-sxm-80gb", gpus=2, policy=TrainerRole(setup=TrainingSetup(recompute="full")))
    assert data["peak_bytes"] == estimate_rl(job).peak_group.peak_bytes
    assert set(data["solvers"]) == {"gpu_memory_utilization", "longest_completion_tokens", "most_generations",
                                    "placements"}


def test_python_api_is_exported_lazily():
    import vramplan

    assert vramplan.RLJob is RLJob and vramplan.estimate_rl is estimate_rl


# ---- one fit rule: rl judges a trainer as train does ------------------------------------------
@pytest.mark.parametrize("gpus, gpu", [(1, "rtx-4090"), (1, "h100-sxm"), (8, "a100-40gb"), (8, "h100-sxm")])
def test_a_trainers_fit_is_trains_fit(gpus, gpu):
    """An offline job whose GPUs hold only the policy (DPO with a LoRA policy: no reference
    model, no engine) is a training job: its training phase needs exactly what ``train``
    says the same step needs on the same GPU, overheads and allocator slack included
    (one rule, :func:`vramplan.memory.overhead.fit_verdict`)."""
    from vramplan.jobs.footprints import trainer_layout, trainer_setup

    job = RLJob(model="qwen2.5-7b", algo="dpo", gpu=gpu, gpus=gpus,
                policy=TrainerRole(setup=TrainingSetup(method="lora", batch=2)))
    est = estimate_rl(job)
    assert est.roles == ("policy",)
    group = est.groups[0]
    trained = group.verdicts[[p.name for p in group.phases].index("training/policy")]
    spec = resolve_model("qwen2.5-7b")
    layout = trainer_layout(job, spec) if gpus > 1 else None
    train = estimate_single_gpu(spec, trainer_setup(job, job.policy), layout, gpu=gpu)
    assert trained.required_bytes == train.verdict.required_bytes
    assert trained.overhead_bytes == train.verdict.overhead_bytes - (
        sum(c.bytes for c in train.verdict.overheads if c.name != "overhead/allocator_slack"))
    assert any(c.name == "overhead/allocator_slack" for c in trained.overheads)
    assert trained.fits is train.verdict.fits and trained.headroom_bytes == train.verdict.headroom_bytes


def test_the_engines_pools_carry_no_allocator_slack():
    """vLLM allocates its weights, KV pool and graphs as pools: the slack of a rollout
    phase is over the trainer's tensors only."""
    est = estimate_rl(grpo())
    group = est.groups[0]
    i = [p.name for p in group.phases].index("rollout")
    rollout, verdict = group.phases[i], group.verdicts[i]
    trainer_tensors = sum(t.component.bytes for t in rollout.terms
                          if t.role != "rollout" and t.component.category != "overhead")
    slack = sum(c.bytes for c in verdict.overheads if c.name == "overhead/allocator_slack")
    assert slack == int(trainer_tensors * 0.03)
