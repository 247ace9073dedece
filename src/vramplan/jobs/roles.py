"""The roles of a post-training job and how they are placed: typed inputs, validated.

A GRPO/PPO/DPO run holds several models at once (the roles): the **policy** being
trained, a frozen **reference** for the KL term, **reward** models, a **critic**
(PPO), and a **rollout engine** (vLLM) that generates completions with the policy's
weights. :class:`RLJob` says which roles exist, what each one runs, and where they
sit (``colocated``: every role on every GPU; ``split``: engine GPUs and trainer GPUs).

Defaults follow the frameworks' own, each cited where it is set:

- TRL ``GRPOConfig`` (trl/trainer/grpo_config.py): ``vllm_mode="colocate"``,
  ``vllm_gpu_memory_utilization=0.3``, ``num_generations=8``,
  ``max_completion_length=512``, ``beta=0.0`` (no reference model loaded),
  ``gradient_checkpointing=True``; ``GRPOTrainer`` drops the reference model when
  ``beta == 0`` or the policy is a PEFT model (the adapters are disabled instead).
- verl ``rollout.yaml`` (verl/trainer/config/rollout/rollout.yaml):
  ``gpu_memory_utilization: 0.5``, ``free_cache_engine: True``, ``max_num_seqs: 256``,
  ``max_num_batched_tokens: 8192``; the engine sleeps at level 2 in the hybrid engine
  (``vllm_async_server.py``: ``collective_rpc("sleep", kwargs={"level": 2})``).
- OpenRLHF ``train_ppo_ray.py``: ``--vllm.gpu_memory_utilization 0.95``,
  ``--vllm.enable_sleep`` (level 1, ``vllm_engine.py``: ``sleep(self, level=1)``),
  ``--train.colocate_all``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vramplan.errors import InputError
from vramplan.validate import integer
from vramplan.training import TrainingSetup

Algo = Literal["grpo", "ppo", "dpo", "rloo", "online-dpo"]
Placement = Literal["colocated", "split"]


@dataclass(frozen=True, kw_only=True)
class AlgoSpec:
    """Which roles an algorithm runs."""

    name: str
    rollout: bool
    """Generates completions online (needs a rollout engine)."""
    critic: bool
    """Trains a value model (PPO)."""
    reward_model: bool
    """Scores with a learned reward model by default (PPO); GRPO/RLOO default to rule-based rewards."""
    kl_coef: float
    """Default KL weight; the reference exists when it is above 0 and the policy is fully trained."""
    sequences_per_sample: int
    """Sequences one training sample puts through the model: 2 for DPO (chosen + rejected,
    TRL ``DPOTrainer.concatenated_forward``), else 1."""
    source: str


ALGOS: dict[str, AlgoSpec] = {
    "grpo": AlgoSpec(name="grpo", rollout=True, critic=False, reward_model=False, kl_coef=0.001,
                     sequences_per_sample=1, source="DeepSeekMath (Shao et al. 2024); verl kl_loss_coef 0.001"),
    "rloo": AlgoSpec(name="rloo", rollout=True, critic=False, reward_model=False, kl_coef=0.05,
                     sequences_per_sample=1, source="Ahmadian et al. 2024; TRL RLOOConfig beta 0.05"),
    "ppo": AlgoSpec(name="ppo", rollout=True, critic=True, reward_model=True, kl_coef=0.01,
                    sequences_per_sample=1, source="Ouyang et al. 2022; OpenRLHF --algo.kl.init_coef 0.01"),
    "dpo": AlgoSpec(name="dpo", rollout=False, critic=False, reward_model=False, kl_coef=0.1,
                    sequences_per_sample=2, source="Rafailov et al. 2023; TRL DPOConfig beta 0.1"),
    "online-dpo": AlgoSpec(name="online-dpo", rollout=True, critic=False, reward_model=True, kl_coef=0.1,
                           sequences_per_sample=2, source="Guo et al. 2024; TRL OnlineDPOConfig beta 0.1"),
}

SLEEP_LEVELS = (0, 1, 2)
"""vLLM sleep mode (docs.vllm.ai features/sleep_mode): 0 = the engine keeps its memory
while the trainer runs; 1 = weights offloaded to CPU RAM, KV cache discarded; 2 = both
discarded (weights reloaded from the trainer at the next sync)."""

ENGINES = ("vllm",)
"""Rollout engines modelled (SGLang's memory model is not built here)."""


@dataclass(frozen=True, kw_only=True)
class TrainerRole:
    """A trained role (policy, critic): a single-GPU setup plus what it offloads while
    the engine generates."""

    model: Any = None
    """Model name or ModelSpec; ``None``: the job's model."""
    setup: TrainingSetup = field(default_factory=lambda: TrainingSetup(recompute="full"))
    """Method, precision, optimizer, micro-batch (``seq`` is replaced by prompt + completion).
    Default: full recomputation (TRL ``GRPOConfig.gradient_checkpointing=True``, verl
    ``enable_gradient_checkpointing=True`` in its examples)."""
    offload_params: bool = False
    """Parameters to CPU outside their own compute (verl ``fsdp_config.param_offload``,
    OpenRLHF ``--ds.enable_sleep``)."""
    offload_optimizer: bool = False
    """Optimizer states (and fp32 master) to CPU outside the update (verl
    ``fsdp_config.optimizer_offload``, OpenRLHF ``--ds.enable_sleep``)."""


@dataclass(frozen=True, kw_only=True)
class FrozenRole:
    """A role that only runs forward passes (reference, reward model)."""

    model: Any = None
    """Model name or ModelSpec; ``None``: the job's model."""
    weights: str = "bf16"
    """Weights format (``bf16``, ``fp16``, ``fp32``...)."""
    offload: bool = False
    """Weights in CPU RAM outside its forward (verl ``ref.fsdp_config.param_offload``,
    OpenRLHF ``--ref.offload`` / ``--reward.offload``)."""


@dataclass(frozen=True, kw_only=True)
class RolloutEngine:
    """The generation engine: vLLM with the policy's weights, synced every step."""

    engine: str = "vllm"
    """Engine name (only vLLM is modelled)."""
    tp: int = 1
    """Tensor-parallel size of one engine instance (TRL ``vllm_tensor_parallel_size``,
    verl ``rollout.tensor_model_parallel_size``, OpenRLHF ``--vllm.tensor_parallel_size``)."""
    gpu_memory_utilization: float = 0.5
    """Share of each GPU's memory vLLM takes for weights, activations and the KV pool
    (verl's default 0.5; TRL colocate 0.3; OpenRLHF 0.95)."""
    max_model_len: int | None = None
    """Longest sequence the engine accepts; ``None``: prompt + completion."""
    max_num_seqs: int | None = None
    """Sequences per engine step; ``None``: vLLM's default for the GPU (TRL colocate passes
    ``per_device_train_batch_size x vllm_tensor_parallel_size x steps_per_generation``)."""
    max_num_batched_tokens: int | None = None
    """Tokens per engine step (sizes the profiling run); ``None``: vLLM's default for the
    GPU (TRL colocate passes 4096, trl/generation/vllm_generation.py)."""
    sleep_level: int = 1
    """What the engine frees while the trainer runs (:data:`SLEEP_LEVELS`); colocated only."""
    kv_dtype: str | None = None
    """KV cache dtype; ``None``: the compute dtype."""
    enforce_eager: bool = False
    """No CUDA graphs."""
    weights: str | None = None
    """Engine weights format; ``None``: the checkpoint's (bf16)."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"engine: expected one of {', '.join(ENGINES)}, got {self.engine!r} "
                             "(SGLang's memory model is not built)")
        u = self.gpu_memory_utilization
        if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0 < u <= 1:
            raise InputError(f"gpu_memory_utilization: expected a fraction in (0, 1], got {u!r}")
        integer("tp", self.tp)
        for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
            if getattr(self, name) is not None:
                integer(name, getattr(self, name))
        if self.sleep_level not in SLEEP_LEVELS:
            raise InputError(f"sleep_level: expected 0, 1 or 2, got {self.sleep_level!r}")


@dataclass(frozen=True, kw_only=True)
class RLJob:
    """One post-training job: roles, batch shape and placement."""

    model: Any
    """The policy's model (name or ModelSpec); roles default to it."""
    algo: str = "grpo"
    """One of :data:`ALGOS`."""
    gpu: str
    """GPU name (``vramplan gpus``)."""
    gpus: int = 8
    """GPUs in the job (all nodes)."""
    gpus_per_node: int = 8
    """GPUs in one node (host RAM is reported per node)."""
    placement: str = "colocated"
    """``colocated`` (every role on every GPU) or ``split`` (engine and trainer GPUs)."""
    rollout_gpus: int | None = None
    """Split: GPUs running the engine; ``None``: half the GPUs (a multiple of the engine tp)."""
    policy: TrainerRole = field(default_factory=TrainerRole)
    """The trained policy."""
    critic: TrainerRole | None = None
    """PPO's value model; ``None``: the policy's setup (when the algorithm has a critic)."""
    reference: FrozenRole | None = None
    """The frozen reference; ``None``: the policy's model in bf16 (when one is needed)."""
    rewards: tuple[FrozenRole, ...] | None = None
    """Reward models; ``None``: one on the policy's model for algorithms that use one, else none."""
    kl_coef: float | None = None
    """KL weight; ``None``: the algorithm's default. 0 drops the reference (TRL ``beta=0``)."""
    rollout: RolloutEngine = field(default_factory=RolloutEngine)
    """The rollout engine (ignored by offline algorithms)."""
    sharding: str = "fsdp"
    """How trainer roles shard over their GPUs: ``fsdp`` (full_shard, verl's default),
    ``zero2``/``zero3`` (DeepSpeed, OpenRLHF's ``--ds.zero_stage``), ``zero3-offload``
    (ZeRO-3 with the optimizer step in host memory: DeepSpeed ``offload_optimizer``,
    OpenRLHF ``--ds.adam_offload``) or ``none`` (DDP)."""
    prompts_per_step: int = 64
    """Prompts per rollout step, whole job (verl ``data.train_batch_size``, OpenRLHF
    ``--rollout.batch_size``)."""
    generations: int = 8
    """Completions per prompt (TRL ``num_generations``, verl ``rollout.n``, OpenRLHF
    ``--rollout.n_samples_per_prompt``)."""
    prompt_tokens: int = 512
    """Longest prompt (verl ``data.max_prompt_length``)."""
    completion_tokens: int = 512
    """Longest completion (TRL ``max_completion_length``, verl ``data.max_response_length``)."""
    engine_process: str = "shared"
    """Colocated: ``shared`` — the engine runs in the trainer's process (TRL
    ``vllm_mode="colocate"``, verl's hybrid worker): one CUDA context per GPU;
    ``separate`` — its own process beside the trainer's (OpenRLHF's vLLM Ray actors
    with ``--train.colocate_all``): a second CUDA context that sleep does not free."""
    score_micro_batch: int | None = None
    """Sequences per GPU in one reference/reward/old-log-prob forward (verl
    ``log_prob_micro_batch_size_per_gpu``); ``None``: the policy's micro-batch."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            from vramplan.naming import close_matches

            hint = close_matches(str(self.algo), tuple(ALGOS))
            raise InputError(f"algo: expected one of {', '.join(ALGOS)}, got {self.algo!r}"
                             + (f"; did you mean {hint[0]!r}?" if hint else ""))
        if self.placement not in ("colocated", "split"):
            raise InputError(f"placement: expected colocated or split, got {self.placement!r}")
        if self.engine_process not in ("shared", "separate"):
            raise InputError(f"engine_process: expected shared or separate, got {self.engine_process!r}")
        if self.sharding not in SHARDINGS:
            raise InputError(f"sharding: expected one of {', '.join(SHARDINGS)}, got {self.sharding!r}")
        for name in ("gpus", "gpus_per_node", "prompts_per_step", "generations", "prompt_tokens",
                     "completion_tokens"):
            integer(name, getattr(self, name))
        for name in ("rollout_gpus", "score_micro_batch"):
            if getattr(self, name) is not None:
                integer(name, getattr(self, name))
        if self.kl_coef is not None and (isinstance(self.kl_coef, bool) or not self.kl_coef >= 0):
            raise InputError(f"kl_coef: expected a number >= 0, got {self.kl_coef!r}")
        if self.gpus > MAX_GPUS:
            raise InputError(f"gpus: expected at most {MAX_GPUS:,}, got {self.gpus:,}")
        if self.placement == "split" and self.gpus < 2:
            raise InputError(f"gpus: a split placement needs at least 2 GPUs, got {self.gpus}")

    @property
    def spec(self) -> AlgoSpec:
        return ALGOS[self.algo]

    @property
    def has_rollout(self) -> bool:
        return self.spec.rollout

    @property
    def sequence_tokens(self) -> int:
        """Tokens of one sequence (prompt + completion): the trainer's ``seq``."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def effective_kl_coef(self) -> float:
        return self.spec.kl_coef if self.kl_coef is None else self.kl_coef

    @property
    def has_reference(self) -> bool:
        """A separate reference model: KL weight above 0 and a fully trained policy (with
        LoRA the base with adapters disabled is the reference, as TRL does)."""
        return self.effective_kl_coef > 0 and self.policy.setup.method == "full"

    @property
    def critic_role(self) -> TrainerRole | None:
        if not self.spec.critic:
            return None
        return self.critic or self.policy

    @property
    def reward_roles(self) -> tuple[FrozenRole, ...]:
        if self.rewards is not None:
            return self.rewards
        return (FrozenRole(),) if self.spec.reward_model else ()

    @property
    def reference_role(self) -> FrozenRole | None:
        if not self.has_reference:
            return None
        return self.reference or FrozenRole()

    @property
    def engine_gpus(self) -> int:
        """GPUs the engine runs on: all (colocated) or the split's engine share."""
        if not self.has_rollout:
            return 0
        if self.placement == "colocated":
            return self.gpus
        if self.rollout_gpus is not None:
            return self.rollout_gpus
        half = max(self.rollout.tp, (self.gpus // 2) // self.rollout.tp * self.rollout.tp)
        return half

    @property
    def trainer_gpus(self) -> int:
        """GPUs the trained and frozen roles shard over."""
        if self.placement == "split" and self.has_rollout:
            return self.gpus - self.engine_gpus
        return self.gpus

    @property
    def rollout_sequences(self) -> int:
        """Sequences generated per rollout step (prompts x generations)."""
        return self.prompts_per_step * (self.generations if self.has_rollout else 1)


SHARDINGS = ("fsdp", "zero2", "zero3", "zero3-offload", "none")

MAX_GPUS = 1 << 17
"""The largest job answered (131,072 GPUs)."""
