"""The TRL, verl and OpenRLHF renderings of an RL job use the frameworks' own names.

TRL: every keyword of the snippet is accepted by the real ``trl.GRPOConfig`` (skipped
where trl is not installed). verl and OpenRLHF are heavy (Ray, vLLM, Megatron); their
names are pinned below from their sources at the cited commits."""

from __future__ import annotations

import ast

import pytest

from vramplan.export.rl import openrlhf, render, trl, verl
from vramplan.jobs import FrozenRole, RLJob, RolloutEngine, TrainerRole
from vramplan.training import TrainingSetup

JOB = RLJob(model="qwen2.5-7b", gpu="h100-sxm", gpus=8, prompts_per_step=1024, generations=5,
            prompt_tokens=512, completion_tokens=1024, reference=FrozenRole(offload=True),
            policy=TrainerRole(setup=TrainingSetup(batch=8, recompute="full")),
            rollout=RolloutEngine(tp=2, gpu_memory_utilization=0.6, sleep_level=2))

VERL_KEYS = {
    # volcengine/verl@b178a3cd: verl/trainer/config/{rollout/rollout.yaml, engine/fsdp.yaml,
    # model/hf_model.yaml, actor/actor.yaml, ref/*.yaml, critic/critic.yaml, ppo_trainer.yaml}
    "algorithm.adv_estimator", "data.train_batch_size", "data.max_prompt_length", "data.max_response_length",
    "actor_rollout_ref.model.path", "actor_rollout_ref.model.enable_gradient_checkpointing",
    "actor_rollout_ref.model.lora_rank", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    "actor_rollout_ref.actor.use_kl_loss", "actor_rollout_ref.actor.kl_loss_coef",
    "actor_rollout_ref.actor.fsdp_config.param_offload", "actor_rollout_ref.actor.fsdp_config.optimizer_offload",
    "actor_rollout_ref.rollout.name", "actor_rollout_ref.rollout.tensor_model_parallel_size",
    "actor_rollout_ref.rollout.gpu_memory_utilization", "actor_rollout_ref.rollout.free_cache_engine",
    "actor_rollout_ref.rollout.n", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
    "actor_rollout_ref.rollout.max_model_len", "actor_rollout_ref.rollout.max_num_seqs",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", "actor_rollout_ref.ref.fsdp_config.param_offload",
    "critic.model.path", "critic.ppo_micro_batch_size_per_gpu", "reward_model.enable", "reward_model.model.path",
    "trainer.n_gpus_per_node", "trainer.nnodes",
}

OPENRLHF_FLAGS = {
    # OpenRLHF/OpenRLHF@3c3be623: openrlhf/cli/train_ppo_ray.py add_argument names
    "--actor.model_name_or_path", "--actor.num_nodes", "--actor.num_gpus_per_node", "--vllm.num_engines",
    "--vllm.tensor_parallel_size", "--vllm.gpu_memory_utilization", "--vllm.enable_sleep",
    "--rollout.batch_size", "--rollout.n_samples_per_prompt", "--rollout.max_new_tokens", "--data.max_len",
    "--train.micro_batch_size", "--rollout.micro_batch_size", "--ds.zero_stage", "--algo.advantage.estimator",
    "--algo.kl.init_coef", "--ref.num_nodes", "--ref.num_gpus_per_node", "--ref.offload",
    "--critic.model_name_or_path", "--critic.num_nodes", "--critic.num_gpus_per_node",
    "--reward.model_name_or_path", "--reward.num_nodes", "--reward.num_gpus_per_node", "--reward.offload",
    "--actor.gradient_checkpointing_enable", "--ds.lora.rank", "--ds.load_in_4bit", "--train.colocate_all",
    "--ds.enable_sleep", "--ds.adam_offload", "--algo.kl.use_loss", "--vllm.enforce_eager",
}


def _grpo_kwargs(snippet: str) -> dict:
    call = next(n for n in ast.walk(ast.parse(snippet)) if isinstance(n, ast.Call))
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def test_trl_snippet_is_a_valid_grpo_config():
    trl_mod = pytest.importorskip("trl")
    kwargs = _grpo_kwargs(trl(JOB))
    assert kwargs["vllm_mode"] == "colocate" and kwargs["vllm_gpu_memory_utilization"] == 0.6
    kwargs["bf16"] = False  # the CPU test machine has no bf16 GPU
    config = trl_mod.GRPOConfig(output_dir="/tmp/vramplan-grpo", use_cpu=True, **kwargs)
    assert config.num_generations == 5 and config.vllm_tensor_parallel_size == 2
    assert config.vllm_enable_sleep_mode is True


def test_trl_defaults_match_the_cited_source():
    trl_mod = pytest.importorskip("trl")
    config = trl_mod.GRPOConfig(output_dir="/tmp/vramplan-grpo", use_cpu=True, bf16=False)
    assert (config.vllm_mode, config.vllm_gpu_memory_utilization, config.beta, config.num_generations,
            config.max_completion_length) == ("colocate", 0.3, 0.0, 8, 512)


def test_verl_overrides_use_verl_keys():
    text = verl(JOB)
    keys = {line.strip().rstrip(" \\").split("=")[0] for line in text.splitlines()[1:]}
    assert keys <= VERL_KEYS
    assert "actor_rollout_ref.rollout.gpu_memory_utilization=0.6" in text
    ppo = RLJob(model="qwen2.5-7b", algo="ppo", gpu="h100-sxm", gpus=8)
    assert {line.strip().rstrip(" \\").split("=")[0] for line in verl(ppo).splitlines()[2:]} <= VERL_KEYS


@pytest.mark.parametrize("job", [JOB, RLJob(model="qwen2.5-7b", algo="ppo", gpu="h100-sxm", gpus=8,
                                            placement="split",
                                            policy=TrainerRole(setup=TrainingSetup(method="qlora"),
                                                               offload_optimizer=True))])
def test_openrlhf_arguments_exist(job):
    text = openrlhf(job)
    flags = {tok for tok in text.split() if tok.startswith("--")}
    assert flags <= OPENRLHF_FLAGS


def test_offline_and_unknown_exports_are_one_line_errors():
    from vramplan.errors import InputError

    dpo = RLJob(model="qwen2.5-7b", algo="dpo", gpu="h100-sxm", gpus=8)
    for fn in (verl, openrlhf):
        with pytest.raises(InputError, match="^export (verl|openrlhf): ") as info:
            fn(dpo)
        assert info.value.fields == ("export", "algo")  # fields, not flags: the command line shows flags
    with pytest.raises(InputError, match="expected one of trl, verl, openrlhf"):
        render("nemo", JOB)
