"""What each engine can run: the compatibility table of parallel layouts, with the
engine source each rule comes from.

A layout the memory model accepts can still be one no engine runs: DeepSpeed's
pipeline engine refuses ZeRO-2/3, FSDP's original wrapper does not compose with a
pipeline schedule, llama.cpp splits a model over GPUs by layer. The planner keeps only
layouts this table allows (:func:`training_allowed`, vectorised over arrays of
degrees), and every export writes only a layout its engine accepts
(:func:`export_problem`). One rule, one owner: each :class:`Rule` states the
condition in words, the engine, and the file (and version) where the engine enforces
or documents it.

Training rules bind the layout's resolved engine (``deepspeed``, ``fsdp``,
``megatron``, ``ddp``); serving rules bind the engine an export writes for
(``vllm``, ``llamacpp``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from vramplan.errors import LayoutError

FSDP1_MODES = ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard")
"""FSDP sharding strategies of PyTorch's original ``FullyShardedDataParallel``
wrapper (FSDP1); ``fsdp2`` is ``fully_shard``."""


@dataclass(frozen=True, kw_only=True)
class EngineChoice:
    """The categorical part of a training layout a rule looks at."""

    engine: str
    """The resolved engine: ``deepspeed``, ``fsdp``, ``megatron`` or ``ddp``."""
    zero_stage: int = 0
    """DeepSpeed ZeRO stage (Megatron: 1 = distributed optimizer)."""
    fsdp: str = "none"
    """FSDP mode (``none`` outside FSDP)."""
    offload: str = "none"
    """``none``, ``optimizer`` or ``params``."""
    virtual_stages: int = 1
    """Interleaved pipeline chunks per rank."""

    @classmethod
    def of(cls, layout: Any) -> EngineChoice:
        """The choice a :class:`~vramplan.parallel.ParallelLayout` makes."""
        return cls(engine=layout.resolved_engine, zero_stage=layout.zero_stage, fsdp=layout.fsdp,
                   offload=layout.offload, virtual_stages=layout.virtual_stages)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One thing an engine refuses, and where the engine says so."""

    engine: str
    """The engine the rule binds."""
    name: str
    """A short identifier (``deepspeed-pipeline-zero``)."""
    rule: str
    """The condition, in words."""
    source: str
    """The engine file (or document) and version that enforces or states it."""
    applies: Callable[[EngineChoice], bool]
    """Whether the rule binds this choice of engine, stage, mode and offload."""
    breaks: Callable[..., Any]
    """Given degrees ``tp, pp, cp`` (ints or numpy arrays): true where the layout
    breaks the rule."""

    def describe(self) -> str:
        return f"{self.rule} ({self.source})"


def _never(**_: Any) -> bool:
    return False


def _always(*, tp: Any, **_: Any) -> Any:
    return tp > 0  # an array of True shaped like the degrees (degrees are >= 1)


TRAINING_RULES: tuple[Rule, ...] = (
    Rule(engine="deepspeed", name="deepspeed-pipeline-zero",
         rule="DeepSpeed's pipeline engine runs ZeRO stage 0 or 1 only: with pp > 1 the ZeRO stage must be < 2",
         source="deepspeed/runtime/pipe/engine.py, PipelineEngine.__init__: assert zero_optimization_stage() < "
                "ZeroStageEnum.gradients, \"ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism\" "
                "(DeepSpeed 0.19.8)",
         applies=lambda c: c.engine == "deepspeed" and c.zero_stage >= 2,
         breaks=lambda *, pp, **_: pp > 1),
    Rule(engine="deepspeed", name="deepspeed-offload-param-stage",
         rule="DeepSpeed parameter offload (offload_param, ZeRO-Infinity) needs ZeRO stage 3",
         source="deepspeed/runtime/zero/config.py, DeepSpeedZeroConfig.offload_param: \"Valid only with "
                "stage 3\" (DeepSpeed 0.19.8)",
         applies=lambda c: c.engine == "deepspeed" and c.offload == "params" and c.zero_stage != 3,
         breaks=_always),
    Rule(engine="deepspeed", name="deepspeed-offload-optimizer-stage",
         rule="DeepSpeed optimizer offload (offload_optimizer, ZeRO-Offload) needs ZeRO stage 1, 2 or 3",
         source="deepspeed/runtime/zero/config.py, DeepSpeedZeroConfig.offload_optimizer: \"Valid for ZeRO "
                "stage 1, 2, 3\" (DeepSpeed 0.19.8)",
         applies=lambda c: c.engine == "deepspeed" and c.offload == "optimizer" and c.zero_stage == 0,
         breaks=_always),
    Rule(engine="deepspeed", name="deepspeed-no-ring-context-parallel",
         rule="DeepSpeed has no ring-attention context parallelism (cp must be 1): its sequence parallelism "
              "is Ulysses, an all-to-all over attention heads that this plan does not model",
         source="deepspeed/sequence/layer.py, _SeqAllToAll / DistributedAttention (heads scattered across "
                "the sequence-parallel group); ring context parallelism is Megatron-Core's "
                "--context-parallel-size",
         applies=lambda c: c.engine == "deepspeed",
         breaks=lambda *, cp, **_: cp > 1),
    Rule(engine="deepspeed", name="deepspeed-no-interleaved-pipeline",
         rule="DeepSpeed's pipeline engine has one 1F1B schedule: no interleaved (virtual) stages",
         source="deepspeed/runtime/pipe/schedule.py, TrainSchedule (the only training schedule)",
         applies=lambda c: c.engine == "deepspeed" and c.virtual_stages > 1,
         breaks=_always),
    Rule(engine="megatron", name="megatron-distributed-optimizer",
         rule="Megatron-LM shards optimizer states only (--use-distributed-optimizer, ZeRO-1 equivalent); "
              "ZeRO-2/3 sharding is another engine",
         source="megatron/training/arguments.py, --use-distributed-optimizer; "
                "megatron/core/optimizer/distrib_optimizer.py (shards the fp32 main params and optimizer state)",
         applies=lambda c: c.engine == "megatron" and c.zero_stage > 1,
         breaks=_always),
    Rule(engine="megatron", name="megatron-no-offload",
         rule="Megatron-LM layouts here keep optimizer states on the GPU (Megatron-Core's hybrid CPU "
              "optimizer is not modelled)",
         source="megatron/core/optimizer/cpu_offloading/hybrid_optimizer.py (HybridDeviceOptimizer: a "
                "different split of the step than ZeRO-Offload)",
         applies=lambda c: c.engine == "megatron" and c.offload != "none",
         breaks=_always),
    Rule(engine="fsdp", name="fsdp1-no-pipeline",
         rule="FSDP1 (FullyShardedDataParallel: full_shard, shard_grad_op, hybrid_shard, no_shard) does not "
              "compose with a pipeline schedule: pp must be 1 (PyTorch pipelines compose with FSDP2, "
              "fully_shard, per stage)",
         source="torch/distributed/pipelining (docs: composes with FSDP2/fully_shard, as torchtitan's "
                "parallelize applies fully_shard to each pipeline stage)",
         applies=lambda c: c.engine == "fsdp" and c.fsdp in FSDP1_MODES,
         breaks=lambda *, pp, **_: pp > 1),
    Rule(engine="fsdp", name="fsdp1-no-tensor-or-context-parallel",
         rule="FSDP1 runs data-parallel sharding only: tp and cp must be 1 (tensor and context parallelism "
              "compose with FSDP2 on a DeviceMesh)",
         source="accelerate/parallelism_config.py: \"ParallelismConfig is only compatible "
                "DistributedType.FSDP (version 2)\"; accelerate's context_parallel: \"currently supported "
                "with FSDP2\" (accelerate/accelerator.py)",
         applies=lambda c: c.engine == "fsdp" and c.fsdp in FSDP1_MODES,
         breaks=lambda *, tp, cp, **_: (tp > 1) | (cp > 1)),
    Rule(engine="fsdp", name="fsdp-offload-params",
         rule="FSDP offloads parameters, gradients and the optimizer step together (offload params); it has "
              "no optimizer-only offload",
         source="torch/distributed/fsdp/api.py, CPUOffload(offload_params=True); FSDP2 CPUOffloadPolicy "
                "(torch/distributed/fsdp/_fully_shard/_fsdp_api.py)",
         applies=lambda c: c.engine == "fsdp" and c.offload == "optimizer",
         breaks=_always),
    Rule(engine="ddp", name="ddp-shards-nothing",
         rule="plain DDP shards and offloads nothing",
         source="torch/nn/parallel/distributed.py (DistributedDataParallel replicates the model and the "
                "optimizer on every rank)",
         applies=lambda c: c.engine == "ddp" and (c.zero_stage > 0 or c.offload != "none"),
         breaks=_always),
)
"""Every training rule."""


def _llamacpp_row_split(*, tp: Any, **_: Any) -> Any:
    return tp > 1


SERVING_RULES: tuple[Rule, ...] = (
    Rule(engine="vllm", name="vllm-tensor-parallel-heads",
         rule="vLLM's tensor parallelism splits attention heads: tp must divide the query heads and divide "
              "(or be a multiple of) the KV heads",
         source="vllm/config (\"Total number of attention heads must be divisible by tensor parallel size\"); "
                "vllm/model_executor/layers/linear.py QKVParallelLinear (replicates KV heads when tp > KV "
                "heads); vramplan.parallel.tensor_parallel_problem applies it",
         applies=lambda c: c.engine == "vllm",
         breaks=lambda *, tp, spec=None, **_: spec is not None and _tp_problem(spec, tp)),
    Rule(engine="llamacpp", name="llamacpp-layer-split",
         rule="llama.cpp spreads one model over GPUs by whole layers (--split-mode layer, its default, like "
              "pipeline stages): a plan with tp > 1 has no llama.cpp form (row split is not modelled)",
         source="llama.cpp include/llama.h, enum llama_split_mode: LLAMA_SPLIT_MODE_LAYER \"split layers and "
                "KV across GPUs\"; common/arg.cpp --split-mode",
         applies=lambda c: c.engine == "llamacpp",
         breaks=_llamacpp_row_split),
)
"""Every serving rule (checked on exports: a serving plan is engine-neutral)."""


def _tp_problem(spec: Any, tp: Any) -> bool:
    from vramplan.parallel import tensor_parallel_problem

    return tensor_parallel_problem(spec, int(tp)) is not None


def broken_rules(choice: EngineChoice, *, tp: int = 1, pp: int = 1, cp: int = 1) -> tuple[Rule, ...]:
    """The training rules one layout breaks (empty when its engine runs it)."""
    return tuple(r for r in TRAINING_RULES if r.applies(choice) and bool(r.breaks(tp=tp, pp=pp, cp=cp)))


def training_allowed(choice: EngineChoice, *, tp: Any, pp: Any, cp: Any) -> Any:
    """Vectorised: true where the layouts with degree arrays ``tp, pp, cp`` (and the
    engine ``choice``) break no training rule."""
    import numpy as np

    ok = np.ones(np.shape(tp), dtype=bool)
    for r in TRAINING_RULES:
        if r.applies(choice):
            ok &= ~np.asarray(r.breaks(tp=tp, pp=pp, cp=cp), dtype=bool)
    return ok


def layout_rules_broken(layout: Any) -> tuple[Rule, ...]:
    """The training rules a :class:`~vramplan.parallel.ParallelLayout` breaks."""
    return broken_rules(EngineChoice.of(layout), tp=layout.tp, pp=layout.pp, cp=layout.cp)


def check_layout(layout: Any) -> None:
    """Raise :class:`LayoutError` naming the first rule ``layout`` breaks, and its source."""
    broken = layout_rules_broken(layout)
    if broken:
        raise LayoutError(f"{layout.describe()}: {broken[0].describe()}")


# --------------------------------------------------------------------------- exports

TRAINING_EXPORT_ENGINES = {"deepspeed": ("deepspeed",), "megatron": ("megatron",), "fsdp": ("fsdp",)}
"""Which resolved engines each training export writes: an export runs the candidate
on the engine whose recipe and buffers the estimate modelled."""


def export_problem(export: str, candidate: Any, spec: Any = None) -> str | None:
    """Why ``candidate`` (a training or serving plan candidate) cannot be written for
    ``export``, or ``None`` when it can."""
    if export in TRAINING_EXPORT_ENGINES:
        lay = candidate.layout
        engine = lay.resolved_engine
        if engine not in TRAINING_EXPORT_ENGINES[export]:
            return f"{lay.describe()} is a {engine} layout, not {export}"
        broken = layout_rules_broken(lay)
        if broken:
            return broken[0].describe()
        if export == "fsdp" and (lay.tp > 1 or lay.pp > 1 or lay.cp > 1):
            return (f"{lay.describe()}: accelerate's FSDP config writes data-parallel sharding only "
                    "(tp, pp and cp of 1)")
        return None
    choice = EngineChoice(engine=export)
    for r in SERVING_RULES:
        if r.applies(choice) and bool(r.breaks(tp=candidate.tp, pp=candidate.pp, cp=1, spec=spec)):
            return r.describe()
    return None


def table() -> tuple[Rule, ...]:
    """Every rule, training first (the table docs/parallel.md prints)."""
    return TRAINING_RULES + SERVING_RULES


def engine_runs(setting: Any, virtual_stages: int, d: dict[str, Any]) -> Any:
    """The planner's filter: true where the layouts of degree arrays ``d`` (``tp``,
    ``pp``, ``cp``) on engine setting ``setting`` (a planner ``EngineSetting``) break
    no training rule."""
    choice = EngineChoice(engine=setting.engine, zero_stage=setting.zero_stage, fsdp=setting.fsdp,
                          offload=setting.offload, virtual_stages=virtual_stages)
    return training_allowed(choice, tp=d.tp, pp=d.pp, cp=d.cp)


def fixed_layout_problem(settings: Any, virtual_stages: int, *, tp: int, pp: int, cp: int) -> Rule | None:
    """When every engine setting of ``settings`` (planner ``EngineSetting``s) breaks a
    rule at the degrees the user fixed, the first rule broken; else ``None``."""
    first = None
    for s in settings:
        choice = EngineChoice(engine=s.engine, zero_stage=s.zero_stage, fsdp=s.fsdp, offload=s.offload,
                              virtual_stages=virtual_stages)
        broken = broken_rules(choice, tp=tp, pp=pp, cp=cp)
        if not broken:
            return None
        first = first or broken[0]
    return first
