"""A post-training job as the frameworks that run it spell it.

Every field name below was read from the framework's own code:

- TRL: ``GRPOConfig`` fields (trl/trainer/grpo_config.py, huggingface/trl@f2cd577):
  ``use_vllm``, ``vllm_mode`` ("colocate" | "server"), ``vllm_gpu_memory_utilization``
  (default 0.3), ``vllm_tensor_parallel_size``, ``vllm_max_model_length``,
  ``vllm_enable_sleep_mode`` (TRL then calls ``llm.sleep(level=2)``,
  trl/generation/vllm_generation.py), ``num_generations``, ``generation_batch_size``,
  ``max_completion_length``, ``beta``; ``per_device_train_batch_size``,
  ``gradient_checkpointing`` and ``bf16`` from ``transformers.TrainingArguments``.
  Server mode: ``trl vllm-serve`` takes ``--tensor_parallel_size``,
  ``--gpu_memory_utilization``, ``--max_model_len`` (trl/scripts/vllm_serve.py).
- verl: Hydra overrides of ``verl.trainer.main_ppo`` (volcengine/verl@b178a3c):
  ``actor_rollout_ref.rollout.*`` from verl/trainer/config/rollout/rollout.yaml
  (``gpu_memory_utilization``, ``tensor_model_parallel_size``, ``free_cache_engine``,
  ``max_num_seqs``, ``max_model_len``, ``n``, ``log_prob_micro_batch_size_per_gpu``),
  ``fsdp_config.param_offload`` / ``optimizer_offload`` from
  verl/trainer/config/engine/fsdp.yaml, ``model.enable_gradient_checkpointing`` and
  ``model.lora_rank`` from verl/trainer/config/model/hf_model.yaml, the actor's
  ``ppo_micro_batch_size_per_gpu``, ``use_kl_loss``, ``kl_loss_coef`` from
  verl/trainer/config/actor/actor.yaml; the recipe layout of
  examples/grpo_trainer/run_qwen2-7b.sh.
- OpenRLHF: ``openrlhf.cli.train_ppo_ray`` arguments (OpenRLHF/OpenRLHF@3c3be62; the
  dotted names since ed62d0e, which replaced ``--colocate_all_models``,
  ``--vllm_gpu_memory_utilization``, ``--vllm_enable_sleep``, ``--n_samples_per_prompt``
  by ``--train.colocate_all``, ``--vllm.gpu_memory_utilization``, ``--vllm.enable_sleep``,
  ``--rollout.n_samples_per_prompt``).
"""

from __future__ import annotations

from vramplan.intmath import ceil_div
from vramplan.errors import InputError
from vramplan.jobs.footprints import score_micro_batch
from vramplan.jobs.roles import RLJob

FRAMEWORKS = ("trl", "verl", "openrlhf")


def _hub(job: RLJob) -> str:
    from vramplan.model.resolve import resolve_model

    spec = resolve_model(job.model)
    return getattr(spec, "hub_id", None) or spec.name


def _checkpointing(job: RLJob) -> bool:
    return job.policy.setup.recompute_policy == "full"


def trl(job: RLJob) -> str:
    """A ``GRPOConfig(...)`` snippet (and the ``trl vllm-serve`` line in server mode)."""
    if job.algo != "grpo":
        raise InputError(f"export trl: written for GRPOTrainer; algo {job.algo} has its own TRL trainer",
                         fields=("export", "algo"))
    e, setup = job.rollout, job.policy.setup
    colocated = job.placement == "colocated"
    lines = ["from trl import GRPOConfig", "", "config = GRPOConfig(",
             "    use_vllm=True,", f"    vllm_mode={'colocate' if colocated else 'server'!r},"]
    if colocated:
        lines += [f"    vllm_gpu_memory_utilization={e.gpu_memory_utilization},",
                  f"    vllm_tensor_parallel_size={e.tp},",
                  f"    vllm_enable_sleep_mode={e.sleep_level > 0},"]
        if e.sleep_level == 1:
            lines.append("    # TRL sleeps the engine at level 2 (weights discarded, reloaded at each sync)")
    lines += [f"    vllm_max_model_length={e.max_model_len or job.sequence_tokens},",
              f"    num_generations={job.generations},",
              f"    generation_batch_size={job.prompts_per_step * job.generations},",
              f"    max_completion_length={job.completion_tokens},",
              f"    per_device_train_batch_size={setup.batch},",
              f"    gradient_checkpointing={_checkpointing(job)},",
              f"    beta={job.effective_kl_coef},",
              f"    bf16={setup.precision.startswith('bf16')},", ")"]
    if setup.method != "full":
        lines += ["# with peft_config=LoraConfig(r=%d, target_modules='all-linear') passed to GRPOTrainer"
                  % setup.lora_rank]
    if setup.method == "qlora":
        lines += ["# QLoRA: model_init_kwargs={'quantization_config': BitsAndBytesConfig(load_in_4bit=True, "
                  "bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True)}"]
    accelerate = {"fsdp": "fsdp1.yaml", "zero2": "deepspeed_zero2.yaml", "zero3": "deepspeed_zero3.yaml",
                  "zero3-offload": "deepspeed_zero3.yaml with offload_optimizer_device: cpu",
                  "none": "multi_gpu.yaml" if job.trainer_gpus > 1 else "single_gpu.yaml"}[job.sharding]
    if job.trainer_gpus > 1:
        lines.append(f"# launch: accelerate launch --config_file examples/accelerate_configs/{accelerate} "
                     f"--num_processes {job.trainer_gpus} ...")
    if not colocated:
        lines += [f"# on the {job.engine_gpus} engine GPUs:",
                  f"# trl vllm-serve --model {_hub(job)} --tensor_parallel_size {e.tp} "
                  f"--data_parallel_size {job.engine_gpus // e.tp} "
                  f"--gpu_memory_utilization {e.gpu_memory_utilization} "
                  f"--max_model_len {e.max_model_len or job.sequence_tokens}"]
    return "\n".join(lines) + "\n"


def verl(job: RLJob) -> str:
    """Hydra overrides for ``python3 -m verl.trainer.main_ppo`` (the hybrid engine)."""
    if not job.has_rollout:
        raise InputError(f"export verl: verl.trainer.main_ppo runs online algorithms; algo {job.algo} is offline",
                         fields=("export", "algo"))
    if job.placement != "colocated":
        raise InputError("export verl: main_ppo colocates the rollout in the actor workers; split placement is "
                         "verl's examples/split_placement recipe, not these overrides", fields=("export",))
    if job.sharding != "fsdp":
        raise InputError(f"export verl: verl's actor shards with FSDP (or Megatron); got sharding {job.sharding}, "
                         "use sharding fsdp", fields=("export", "sharding"))
    e, pol, setup = job.rollout, job.policy, job.policy.setup
    estimator = "gae" if job.algo == "ppo" else "grpo" if job.algo == "grpo" else "rloo"
    ref = job.reference_role
    out = [f"algorithm.adv_estimator={estimator}",
           f"data.train_batch_size={job.prompts_per_step}",
           f"data.max_prompt_length={job.prompt_tokens}",
           f"data.max_response_length={job.completion_tokens}",
           f"actor_rollout_ref.model.path={_hub(job)}",
           f"actor_rollout_ref.model.enable_gradient_checkpointing={_checkpointing(job)}",
           f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={setup.batch}",
           f"actor_rollout_ref.actor.use_kl_loss={job.effective_kl_coef > 0 and job.algo != 'ppo'}",
           f"actor_rollout_ref.actor.kl_loss_coef={job.effective_kl_coef}",
           f"actor_rollout_ref.actor.fsdp_config.param_offload={pol.offload_params}",
           f"actor_rollout_ref.actor.fsdp_config.optimizer_offload={pol.offload_optimizer}",
           "actor_rollout_ref.rollout.name=vllm",
           f"actor_rollout_ref.rollout.tensor_model_parallel_size={e.tp}",
           f"actor_rollout_ref.rollout.gpu_memory_utilization={e.gpu_memory_utilization}",
           f"actor_rollout_ref.rollout.free_cache_engine={e.sleep_level > 0}",
           f"actor_rollout_ref.rollout.n={job.generations}",
           f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={score_micro_batch(job)}",
           f"actor_rollout_ref.rollout.max_model_len={e.max_model_len or job.sequence_tokens}"]
    if e.max_num_seqs:
        out.append(f"actor_rollout_ref.rollout.max_num_seqs={e.max_num_seqs}")
    if setup.method != "full":
        out.append(f"actor_rollout_ref.model.lora_rank={setup.lora_rank}")
    if ref is not None:
        out += [f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={score_micro_batch(job)}",
                f"actor_rollout_ref.ref.fsdp_config.param_offload={ref.offload}"]
    if job.critic_role is not None:
        out += [f"critic.model.path={_hub(job)}", f"critic.ppo_micro_batch_size_per_gpu={job.critic_role.setup.batch}"]
    if job.reward_roles:
        out += ["reward_model.enable=True", f"reward_model.model.path={_hub(job)}"]
    nodes = ceil_div(job.gpus, job.gpus_per_node)
    out += [f"trainer.n_gpus_per_node={min(job.gpus, job.gpus_per_node)}", f"trainer.nnodes={nodes}"]
    comment = "# verl sleeps the engine at level 2 in the hybrid engine (vllm_async_server.py)\n" \
        if e.sleep_level == 1 else ""
    return comment + "python3 -m verl.trainer.main_ppo \\\n" + " \\\n".join(f"    {o}" for o in out) + "\n"


def openrlhf(job: RLJob) -> str:
    """Arguments for ``python3 -m openrlhf.cli.train_ppo_ray``."""
    if not job.has_rollout:
        raise InputError(f"export openrlhf: train_ppo_ray runs online algorithms; use openrlhf.cli.train_dpo "
                         f"for algo {job.algo}", fields=("export", "algo"))
    e, pol, setup = job.rollout, job.policy, job.policy.setup
    node = min(job.trainer_gpus, job.gpus_per_node)
    nodes = ceil_div(job.trainer_gpus, job.gpus_per_node)
    estimator = {"grpo": "group_norm", "rloo": "rloo", "ppo": "gae"}.get(job.algo, "group_norm")
    zero = {"zero2": 2, "zero3": 3, "zero3-offload": 3, "fsdp": 3, "none": 0}[job.sharding]
    args = ["--actor.model_name_or_path", _hub(job),
            "--actor.num_nodes", str(nodes), "--actor.num_gpus_per_node", str(node),
            "--vllm.num_engines", str(job.engine_gpus // e.tp), "--vllm.tensor_parallel_size", str(e.tp),
            "--vllm.gpu_memory_utilization", str(e.gpu_memory_utilization),
            "--rollout.batch_size", str(job.prompts_per_step),
            "--rollout.n_samples_per_prompt", str(job.generations),
            "--rollout.max_new_tokens", str(job.completion_tokens),
            "--data.max_len", str(e.max_model_len or job.sequence_tokens),
            "--train.micro_batch_size", str(setup.batch),
            "--rollout.micro_batch_size", str(score_micro_batch(job)),
            "--ds.zero_stage", str(zero), "--algo.advantage.estimator", estimator,
            "--algo.kl.init_coef", str(job.effective_kl_coef)]
    if job.has_reference and job.algo != "ppo":
        args.append("--algo.kl.use_loss")
    if e.enforce_eager:
        args.append("--vllm.enforce_eager")
    if job.reference_role is not None:
        args += ["--ref.num_nodes", str(nodes), "--ref.num_gpus_per_node", str(node)]
        if job.reference_role.offload:
            args.append("--ref.offload")
    if job.critic_role is not None:
        args += ["--critic.model_name_or_path", _hub(job), "--critic.num_nodes", str(nodes),
                 "--critic.num_gpus_per_node", str(node)]
    if job.reward_roles:
        args += ["--reward.model_name_or_path", _hub(job), "--reward.num_nodes", str(nodes),
                 "--reward.num_gpus_per_node", str(node)]
        if all(r.offload for r in job.reward_roles):
            args.append("--reward.offload")
    if _checkpointing(job):
        args.append("--actor.gradient_checkpointing_enable")
    if setup.method != "full":
        args += ["--ds.lora.rank", str(setup.lora_rank)]
    if setup.method == "qlora":
        args.append("--ds.load_in_4bit")
    if job.placement == "colocated":
        args.append("--train.colocate_all")
        if e.sleep_level > 0:
            args.append("--vllm.enable_sleep")
        if pol.offload_params or pol.offload_optimizer:
            args.append("--ds.enable_sleep")
    if job.sharding == "zero3-offload":
        args.append("--ds.adam_offload")
    pairs, i = [], 0
    while i < len(args):
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            pairs.append(f"{args[i]} {args[i + 1]}")
            i += 2
        else:
            pairs.append(args[i])
            i += 1
    comment = "# OpenRLHF sleeps the engine at level 1 (vllm_engine.py)\n" if e.sleep_level == 2 else ""
    return comment + "python3 -m openrlhf.cli.train_ppo_ray \\\n" + " \\\n".join(f"    {p}" for p in pairs) + "\n"


def render(framework: str, job: RLJob) -> str:
    """``job`` as ``framework`` (one of :data:`FRAMEWORKS`) spells it."""
    fns = {"trl": trl, "verl": verl, "openrlhf": openrlhf}
    if framework not in fns:
        raise InputError(f"export: expected one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    return fns[framework](job)
