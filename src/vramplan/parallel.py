"""Parallel layouts: how data, tensor, pipeline, context and expert parallelism,
ZeRO / FSDP sharding and offload divide each memory term across GPUs.

:class:`ParallelLayout` is the validated description of one layout. The functions
below it say, term by term, what one GPU holds:

* :func:`slice_coefficients` / :func:`rank_params` — the parameters of one
  tensor/pipeline/expert-parallel rank (Megatron-LM's splits, read from
  :mod:`vramplan.model.tensors`);
* :func:`in_flight_microbatches` — activations a pipeline stage keeps (1F1B and
  interleaved schedules);
* :func:`shard_model_states` — weights, gradients, master weights and optimizer
  states after ZeRO 0/1/2/3, FSDP or Megatron's distributed optimizer, with the
  engine's own buffers and what offload moves to host memory.

The closed-form functions take plain ``int`` degrees *or* numpy integer arrays of
degrees, so the planner (:mod:`vramplan.planner`) evaluates millions of layouts
with the very same arithmetic the per-layout estimate uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vramplan import validate as v
from vramplan.errors import LayoutError

FSDPMode = Literal["none", "full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2"]
Offload = Literal["none", "optimizer", "params"]
Engine = Literal["auto", "ddp", "deepspeed", "fsdp", "megatron"]

FSDP_MODES: tuple[str, ...] = ("none", "full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "fsdp2")
OFFLOADS: tuple[str, ...] = ("none", "optimizer", "params")
ENGINES: tuple[str, ...] = ("auto", "ddp", "deepspeed", "fsdp", "megatron")


# --------------------------------------------------------------------------- engine settings

@dataclass(frozen=True, kw_only=True)
class ZeroConfig:
    """DeepSpeed ZeRO buffer settings. Defaults are DeepSpeed's own
    (``deepspeed/runtime/zero/config.py``, ``DeepSpeedZeroConfig``, v0.19)."""

    reduce_bucket_elements: int = 500_000_000
    """``reduce_bucket_size`` (5e8): elements of the gradient bucket that stages 1-3
    allocate in full (``torch.empty(reduce_bucket_size)`` in ``stage_1_and_2.py`` /
    ``stage3.py``)."""
    allgather_bucket_elements: int = 500_000_000
    """``allgather_bucket_size`` (5e8): elements all-gathered at once after the step
    (stages 1-2). It slices existing flat buffers, so it adds no allocation."""
    prefetch_bucket_elements: int = 50_000_000
    """``stage3_prefetch_bucket_size`` (5e7): parameter elements ZeRO-3 fetches ahead."""
    param_persistence_threshold: int = 100_000
    """``stage3_param_persistence_threshold`` (1e5): ZeRO-3 never partitions a tensor with
    at most this many elements (norms, biases)."""
    max_live_parameters: int = 1_000_000_000
    """``stage3_max_live_parameters`` (1e9): cap on gathered parameter elements ZeRO-3
    keeps resident at once."""
    sub_group_elements: int = 1_000_000_000
    """``sub_group_size`` (1e9): ZeRO-3 runs the optimizer step one sub-group of the
    partition at a time, converting that sub-group's gradients to fp32
    (``_prepare_fp32_grad_for_sub_group`` in ``stage3.py``)."""
    overlap_comm: bool | None = None
    """``overlap_comm``: doubles the stage-1/2 reduce bucket. ``None`` means DeepSpeed's
    default, which is on for stage 3 only (``overlap_comm_valid`` in the config)."""

    def __post_init__(self) -> None:
        for name in ("reduce_bucket_elements", "allgather_bucket_elements", "prefetch_bucket_elements",
                     "param_persistence_threshold", "max_live_parameters", "sub_group_elements"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LayoutError(f"{name}: expected a non-negative integer, got {value!r}")


DEEPSPEED_DEFAULTS = ZeroConfig()
"""DeepSpeed's defaults."""


# --------------------------------------------------------------------------- the layout

def tensor_parallel_problem(spec: Any, tp: int) -> tuple[str, int] | None:
    """The one tensor-parallel admissibility rule (training, serving and the planner):
    ``None`` when ``spec`` splits over ``tp`` ranks, else the (field, value) that ``tp``
    fails. tp must divide the query heads and the MLP widths (Megatron's
    ``ColumnParallelLinear``/``RowParallelLinear``, vLLM's ``divide()`` asserts), and
    divide the KV heads or be a multiple of them (vLLM ``QKVParallelLinear`` then
    replicates KV heads; MLA's latent cache is not split by head, so it is exempt)."""
    if tp == 1:
        return None
    heads, kv = spec.num_attention_heads, spec.num_kv_heads
    if heads % tp:
        return ("num_attention_heads", heads)
    if getattr(spec, "mla", None) is None and kv % tp and tp % kv:
        return ("num_kv_heads", kv)
    if spec.num_dense_layers and spec.intermediate_size % tp:
        return ("intermediate_size", spec.intermediate_size)
    if spec.moe is not None and spec.moe.expert_intermediate_size % tp:
        return ("moe intermediate size", spec.moe.expert_intermediate_size)
    return None


def sequence_splits_evenly(seq_len: Any, *, tp: Any, cp: Any, sp: Any) -> Any:
    """Whether every sequence splits evenly over the layout: context parallelism gives
    each of ``cp`` ranks ``seq_len / cp`` tokens, and sequence parallelism splits those
    over ``tp`` (Korthikanti et al. 2022, section 4.2.2). Arrays broadcast."""
    return seq_len % (cp * where(sp, tp, 1)) == 0


@dataclass(frozen=True, kw_only=True)
class ParallelLayout:
    """One way to lay a job out on ``dp * tp * pp * cp`` GPUs (expert parallelism
    re-slices the ``dp * cp`` ranks of the MoE layers, as in Megatron-Core)."""

    dp: int = 1
    """Data-parallel replicas (ZeRO / FSDP shard across these)."""
    tp: int = 1
    """Tensor-parallel degree (Megatron-LM column/row splits)."""
    pp: int = 1
    """Pipeline stages."""
    cp: int = 1
    """Context-parallel degree (sequence split for attention)."""
    ep: int = 1
    """Expert-parallel degree (experts split across ranks); must divide dp * cp."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism: norm/dropout activations split by tp too."""
    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage: 1 shards optimizer states, 2 also gradients, 3 also parameters.
    With ``engine="megatron"``, 1 means Megatron's distributed optimizer."""
    fsdp: FSDPMode = "none"
    """PyTorch FSDP sharding strategy (exclusive with ZeRO)."""
    offload: Offload = "none"
    """Move optimizer states (ZeRO-Offload) or parameters too (ZeRO-Infinity) to host memory."""
    micro_batches: int = 1
    """Micro-batches per step (pipeline schedules hold up to ``pp`` in flight)."""
    virtual_stages: int = 1
    """Model chunks per pipeline rank (Megatron's interleaved 1F1B); 1 = plain 1F1B."""
    gpus_per_node: int = 8
    """GPUs in one node (hybrid sharding shards inside a node; offload reports host RAM per node)."""
    engine: Engine = "auto"
    """Whose mixed-precision recipe and buffers apply; ``auto`` picks FSDP for ``fsdp``,
    DeepSpeed for ZeRO or offload, Megatron-LM for tp/pp/cp/ep > 1, else PyTorch DDP."""
    zero: ZeroConfig = field(default_factory=ZeroConfig)
    """DeepSpeed bucket settings (used when the engine is DeepSpeed)."""

    def __post_init__(self) -> None:
        for name, hi in (("dp", v.GPUS_MAX), ("tp", v.GPUS_MAX), ("pp", v.GPUS_MAX), ("cp", v.GPUS_MAX),
                         ("ep", v.GPUS_MAX), ("micro_batches", v.BATCH_MAX), ("virtual_stages", v.LAYERS_MAX),
                         ("gpus_per_node", v.GPUS_MAX)):
            v.integer(name, getattr(self, name), 1, hi, error=LayoutError)
        v.flag("sequence_parallel", self.sequence_parallel, error=LayoutError)
        v.choice("zero_stage", self.zero_stage, (0, 1, 2, 3), error=LayoutError)
        for name in ("fsdp", "offload", "engine"):
            if not isinstance(getattr(self, name), str):
                raise LayoutError(f"{name}: expected a name, got {v.shown(getattr(self, name))}")
        if not isinstance(self.zero, ZeroConfig):
            raise LayoutError(f"zero: expected a ZeroConfig, got {v.shown(self.zero)}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise LayoutError(f"zero_stage: expected 0, 1, 2 or 3, got {self.zero_stage!r}")
        if self.fsdp not in FSDP_MODES:
            raise LayoutError(f"fsdp: expected one of {', '.join(FSDP_MODES)}, got {self.fsdp!r}")
        if self.offload not in OFFLOADS:
            raise LayoutError(f"offload: expected none, optimizer or params, got {self.offload!r}")
        if self.engine not in ENGINES:
            raise LayoutError(f"engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.sequence_parallel and self.tp == 1:
            raise LayoutError("sequence_parallel with tp=1: Megatron sequence parallelism splits activations "
                              "across the tensor-parallel group; it needs tp > 1")
        if self.zero_stage and self.fsdp != "none":
            raise LayoutError(f"zero_stage={self.zero_stage} and fsdp={self.fsdp!r}: choose ZeRO or FSDP, not both")
        if (self.dp * self.cp) % self.ep:
            raise LayoutError(f"ep={self.ep}: must divide dp*cp = {self.dp}*{self.cp} = {self.dp * self.cp}")
        if self.offload == "params" and self.zero_stage != 3 and self.fsdp == "none":
            raise LayoutError(f"offload='params' with zero_stage={self.zero_stage}: parameter offload "
                              "(ZeRO-Infinity) needs zero_stage=3 or an FSDP mode")
        if self.virtual_stages > 1 and self.pp == 1:
            raise LayoutError(f"virtual_stages={self.virtual_stages} with pp=1: interleaving needs pp > 1")
        if self.virtual_stages > 1 and self.micro_batches % self.pp:
            raise LayoutError(f"virtual_stages={self.virtual_stages}: micro_batches={self.micro_batches} must be "
                              f"a multiple of pp={self.pp} (Megatron's interleaved schedule)")
        engine = self.resolved_engine
        if engine == "fsdp" and self.fsdp == "none":
            raise LayoutError("engine='fsdp' needs an fsdp mode (full_shard, shard_grad_op, hybrid_shard, "
                              "no_shard or fsdp2)")
        if engine == "megatron" and self.zero_stage > 1:
            raise LayoutError(f"engine='megatron' with zero_stage={self.zero_stage}: Megatron's distributed "
                              "optimizer shards optimizer states only (zero_stage 0 or 1)")
        if engine == "megatron" and self.offload != "none":
            raise LayoutError(f"engine='megatron' with offload={self.offload!r}: offload is a DeepSpeed/FSDP "
                              "feature here")
        if engine in ("ddp", "megatron") and self.fsdp != "none":
            raise LayoutError(f"engine={engine!r} with fsdp={self.fsdp!r}: FSDP is its own engine")
        if engine == "ddp" and (self.zero_stage or self.offload != "none"):
            raise LayoutError(f"engine='ddp' with zero_stage={self.zero_stage}, offload={self.offload!r}: "
                              "plain DDP shards nothing")
        if engine == "fsdp" and self.offload == "optimizer":
            raise LayoutError("fsdp with offload='optimizer': FSDP offloads parameters, gradients and the "
                              "optimizer step together; use offload='params'")

    # ---- derived facts ----------------------------------------------------------------
    @property
    def num_gpus(self) -> int:
        """dp x tp x pp x cp."""
        return self.dp * self.tp * self.pp * self.cp

    @property
    def num_nodes(self) -> int:
        """Nodes the layout spans (GPUs / GPUs per node, rounded up)."""
        return -(-self.num_gpus // self.gpus_per_node)

    @property
    def is_single_device(self) -> bool:
        """One GPU, nothing sharded or offloaded: the single-GPU training model applies."""
        return self.num_gpus == 1 and self.resolved_engine == "ddp"

    @property
    def resolved_engine(self) -> str:
        """The engine whose recipe applies (``engine`` with ``auto`` resolved)."""
        if self.engine != "auto":
            return self.engine
        if self.fsdp != "none":
            return "fsdp"
        if self.zero_stage or self.offload != "none":
            return "deepspeed"
        if self.tp > 1 or self.pp > 1 or self.cp > 1 or self.ep > 1:
            return "megatron"
        return "ddp"

    def check_gpus(self, num_gpus: int) -> None:
        """Raise :class:`LayoutError` unless dp x tp x pp x cp equals ``num_gpus``."""
        if self.num_gpus != num_gpus:
            raise LayoutError(f"dp*tp*pp*cp = {self.dp}*{self.tp}*{self.pp}*{self.cp} = {self.num_gpus}, "
                              f"but gpus is {num_gpus}: the degrees must multiply to the GPU count",
                              fields=("gpus",))

    def check_model(self, spec: Any) -> None:
        """Raise :class:`LayoutError` when the layout cannot split ``spec``: tp must divide
        the attention heads (and divide, or be a multiple of, the KV heads), pp must not
        exceed the layers, ep must divide the routed experts."""
        problem = tensor_parallel_problem(spec, self.tp)
        if problem is not None:
            name, value = problem
            if name == "num_kv_heads":
                raise LayoutError(f"tp={self.tp} and num_kv_heads={value}: tp must divide the KV heads or be a "
                                  f"multiple of them (layout {self.describe()})")
            raise LayoutError(f"tp={self.tp} does not divide {name}={value} (layout {self.describe()})")
        if self.pp * self.virtual_stages > spec.num_layers:
            raise LayoutError(f"pp*virtual_stages = {self.pp}*{self.virtual_stages} = "
                              f"{self.pp * self.virtual_stages} exceeds num_layers={spec.num_layers}")
        if self.ep > 1:
            if spec.moe is None:
                raise LayoutError(f"ep={self.ep} but {spec.name} has no experts (dense model): use ep=1")
            if spec.moe.num_experts % self.ep:
                raise LayoutError(f"ep={self.ep} does not divide num_experts={spec.moe.num_experts}")

    def check_sequence(self, seq_len: int) -> None:
        """Raise :class:`LayoutError` when a sequence of ``seq_len`` tokens does not split
        evenly over the layout (:func:`sequence_splits_evenly`)."""
        if not sequence_splits_evenly(seq_len, tp=self.tp, cp=self.cp, sp=self.sequence_parallel):
            if seq_len % self.cp:
                raise LayoutError(f"seq_len={seq_len} is not divisible by cp={self.cp}: context parallelism gives "
                                  "each rank an equal share of every sequence")
            raise LayoutError(f"seq_len={seq_len} is not divisible by cp*tp = {self.cp}*{self.tp} with "
                              "sequence_parallel: sequence parallelism splits each rank's tokens over tp")

    def describe(self) -> str:
        parts = [f"dp={self.dp}", f"tp={self.tp}", f"pp={self.pp}"]
        if self.cp > 1:
            parts.append(f"cp={self.cp}")
        if self.ep > 1:
            parts.append(f"ep={self.ep}")
        if self.sequence_parallel:
            parts.append("sp")
        if self.virtual_stages > 1:
            parts.append(f"vpp={self.virtual_stages}")
        if self.zero_stage:
            parts.append(f"zero={self.zero_stage}")
        if self.fsdp != "none":
            parts.append(f"fsdp={self.fsdp}")
        if self.offload != "none":
            parts.append(f"offload={self.offload}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {"dp": self.dp, "tp": self.tp, "pp": self.pp, "cp": self.cp, "ep": self.ep,
                "sequence_parallel": self.sequence_parallel, "zero_stage": self.zero_stage,
                "fsdp": self.fsdp, "offload": self.offload, "micro_batches": self.micro_batches,
                "virtual_stages": self.virtual_stages, "gpus_per_node": self.gpus_per_node,
                "num_gpus": self.num_gpus, "num_nodes": self.num_nodes, "engine": self.resolved_engine}


SINGLE_GPU = ParallelLayout()
"""The layout of one GPU: nothing divided."""


def layout_from_gpus(num_gpus: int, *, tp: int = 1, pp: int = 1, cp: int = 1, dp: int | None = None,
                     **kwargs: Any) -> ParallelLayout:
    """A layout on ``num_gpus`` GPUs with ``dp`` inferred from the rest when not given
    (torchtitan's "one degree may be inferred"). Raises :class:`LayoutError`, printing
    every factor, when the degrees do not multiply to ``num_gpus``."""
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise LayoutError(f"gpus: expected a positive integer, got {num_gpus!r}")
    model_parallel = tp * pp * cp
    if dp is None:
        if num_gpus % model_parallel:
            raise LayoutError(f"gpus={num_gpus} is not a multiple of tp*pp*cp = {tp}*{pp}*{cp} = {model_parallel}")
        dp = num_gpus // model_parallel
    layout = ParallelLayout(dp=dp, tp=tp, pp=pp, cp=cp, **kwargs)
    layout.check_gpus(num_gpus)
    return layout


# --------------------------------------------------------------------------- array helpers

def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and getattr(x, "ndim", 0) > 0


def minimum(a: Any, b: Any) -> Any:
    """Element-wise min of ints or numpy arrays (plain ``min`` for plain ints)."""
    if _is_array(a) or _is_array(b):
        import numpy as np

        return np.minimum(a, b)
    return min(a, b)


def maximum(a: Any, b: Any) -> Any:
    """Element-wise max of ints or numpy arrays."""
    if _is_array(a) or _is_array(b):
        import numpy as np

        return np.maximum(a, b)
    return max(a, b)


def where(cond: Any, a: Any, b: Any) -> Any:
    """``a`` where ``cond`` else ``b``, for bools or numpy arrays."""
    if _is_array(cond) or _is_array(a) or _is_array(b):
        import numpy as np

        return np.where(cond, a, b)
    return a if cond else b


def cdiv(a: Any, b: Any) -> Any:
    """Ceiling division of ints or integer arrays."""
    return -(-a // b)


# --------------------------------------------------------------------------- model-parallel slice

@dataclass(frozen=True, kw_only=True)
class SliceCoefficients:
    """A model's parameters grouped by how tensor/pipeline/expert parallelism divides
    them (Megatron-LM: column- and row-parallel linears split by tp, norms and the
    router replicated, the vocabulary split by tp, experts split by ep and then by the
    expert tensor-parallel degree, which defaults to tp). Per layer counts are for
    the largest layer of each kind."""

    num_layers: int
    """Decoder blocks."""
    num_moe_layers: int
    """Blocks whose MLP is the MoE block."""
    attn_split_per_layer: int
    """Per layer: parameters split by tp (q/o projections, column-parallel biases, MLA up-projections)."""
    kv_split_per_layer: int
    """Per layer: k/v projections, split by ``min(tp, kv_heads)`` (heads are replicated when tp > kv_heads)."""
    num_kv_heads: int
    """KV heads (caps how far k/v split)."""
    replicated_per_layer: int
    """Per layer: parameters every tp rank holds (norms, row-parallel biases, router, MLA down-projections)."""
    dense_mlp_per_layer: int
    """Per dense layer: MLP parameters split by tp."""
    moe_shared_per_layer: int
    """Per MoE layer: shared-expert parameters split by tp."""
    moe_replicated_per_layer: int
    """Per MoE layer: router and shared-expert gate, replicated."""
    moe_experts_per_layer: int
    """Per MoE layer: all routed-expert parameters (split by ep x tp)."""
    embedding: int
    """Token embedding (vocab-parallel, split by tp) — on the first stage."""
    position_embedding: int
    """Learned position table (replicated) — on the first stage."""
    head: int
    """Output head (split by tp) — on the last stage; for tied embeddings and pp > 1
    Megatron keeps a copy of the embedding here (0 when tied and pp = 1)."""
    head_tied: bool
    """The head shares the embedding matrix."""
    final_norm: int
    """Final norm (replicated) — on the last stage."""
    largest_tensor: int
    """Elements of the largest single module (weight + bias), before tp: what ZeRO-3
    gathers at once (DeepSpeed's ``largest_layer_params``)."""
    largest_tensor_split: bool
    """Whether that module is split by tp."""
    small_per_layer: int
    """Per layer: elements in tensors at or below ZeRO-3's persistence threshold
    (never partitioned), computed with the default threshold."""
    small_other: int
    """Outside the layers: elements in such small tensors (final norm)."""

    @property
    def total_params(self) -> int:
        """Parameters of the whole model (tied head counted once)."""
        dense_layers = self.num_layers - self.num_moe_layers
        per_layer = self.attn_split_per_layer + self.kv_split_per_layer + self.replicated_per_layer
        return (self.num_layers * per_layer + dense_layers * self.dense_mlp_per_layer
                + self.num_moe_layers * (self.moe_shared_per_layer + self.moe_replicated_per_layer
                                         + self.moe_experts_per_layer)
                + self.embedding + self.position_embedding + self.final_norm
                + (0 if self.head_tied else self.head))


_COLUMN_SPLIT = ("q_proj", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj")
"""Column-parallel linears: their output (and bias) is split by tp."""
_ROW_SPLIT = ("o_proj", "down_proj")
"""Row-parallel linears: their input is split; their bias is added once after the all-reduce."""


def slice_coefficients(spec: Any, persistence_threshold: int = DEEPSPEED_DEFAULTS.param_persistence_threshold
                       ) -> SliceCoefficients:
    """Group every tensor of ``spec`` (from :func:`vramplan.model.tensors.model_tensors`)
    by how Megatron-LM's tensor, pipeline and expert parallelism split it."""
    from vramplan.model.tensors import model_tensors

    n_layers = spec.num_layers
    n_moe = spec.num_moe_layers
    n_dense = n_layers - n_moe
    attn = kv = rep = dense = shared = experts = moe_rep = 0
    emb = pos = head = final_norm = 0
    small_per_layer = small_other = 0
    module_sizes: dict[str, int] = {}
    module_split: dict[str, bool] = {}
    for g in model_tensors(spec):
        module = g.name.rsplit(".", 1)[0]
        module_sizes[module] = module_sizes.get(module, 0) + g.numel
        leaf = g.module
        if g.numel <= persistence_threshold:
            if g.per_layer:
                small_per_layer += g.params // n_layers if g.count >= n_layers else g.params
            else:
                small_other += g.params
        if not g.per_layer:
            if g.component == "embeddings":
                emb += g.params
            elif g.component == "position_embeddings":
                pos += g.params
            elif g.component == "head":
                head += g.params
            else:
                final_norm += g.params
            module_split[module] = g.component in ("embeddings", "head")
            continue
        if g.name.startswith("mlp.experts."):
            experts += g.params
            module_split[module] = True
            continue
        if g.name.startswith(("mlp.gate.", "mlp.shared_expert_gate.")):
            moe_rep += g.params  # router and shared-expert gate: replicated, MoE layers only
            module_split[module] = False
            continue
        if g.component == "shared_experts" and leaf in _COLUMN_SPLIT + _ROW_SPLIT and g.role == "linear":
            shared += g.params
            module_split[module] = True
            continue
        if g.component == "mlp" and g.role == "linear":
            dense += g.params
            module_split[module] = True
            continue
        is_column = leaf in _COLUMN_SPLIT
        is_row_weight = leaf in _ROW_SPLIT and g.role == "linear"
        if g.component == "mlp" and g.role == "bias" and is_column:
            dense += g.params
        elif leaf in ("k_proj", "v_proj"):
            kv += g.params
            module_split[module] = True
        elif (is_column or is_row_weight) or leaf == "sinks":
            attn += g.params
            module_split[module] = True
        else:
            rep += g.params
            module_split.setdefault(module, False)
    largest_module = max(module_sizes, key=module_sizes.__getitem__)
    tied = bool(spec.tie_word_embeddings)
    return SliceCoefficients(
        num_layers=n_layers, num_moe_layers=n_moe,
        attn_split_per_layer=attn // n_layers, kv_split_per_layer=kv // n_layers,
        num_kv_heads=spec.num_kv_heads, replicated_per_layer=rep // n_layers,
        dense_mlp_per_layer=dense // n_dense if n_dense else 0,
        moe_shared_per_layer=shared // n_moe if n_moe else 0,
        moe_replicated_per_layer=moe_rep // n_moe if n_moe else 0,
        moe_experts_per_layer=experts // n_moe if n_moe else 0,
        embedding=emb, position_embedding=pos, head=emb if tied else head, head_tied=tied,
        final_norm=final_norm, largest_tensor=module_sizes[largest_module],
        largest_tensor_split=module_split.get(largest_module, False),
        small_per_layer=small_per_layer, small_other=small_other,
    )


def stage_layers(num_layers: int, pp: Any) -> Any:
    """Decoder blocks on the busiest pipeline stage: ``ceil(layers / pp)`` (Megatron
    splits evenly; uneven counts put the remainder on some stages)."""
    return cdiv(num_layers, pp)


@dataclass(frozen=True)
class RankParams:
    """Parameters one GPU holds for its tensor/pipeline/expert slice."""

    dense: Any
    """Parameters sharded across the whole ``dp * cp`` group (everything but routed experts)."""
    experts: Any
    """Routed-expert parameters (sharded across the expert-data-parallel group ``dp*cp/ep``)."""
    largest_module: Any
    """Elements of the largest single module on this rank (what ZeRO-3 gathers at once)."""
    small: Any
    """Elements in tensors at or below the ZeRO-3 persistence threshold."""

    @property
    def total(self) -> Any:
        return self.dense + self.experts


def rank_params(c: SliceCoefficients, *, tp: Any, pp: Any, ep: Any, stage: Literal["first", "last"]) -> RankParams:
    """Parameters on one GPU of the ``stage`` pipeline stage (the first holds the
    embedding, the last the final norm and the head; with ``pp == 1`` one stage holds
    all), after tp and ep splits.

    Source: Megatron-LM's placement (``megatron/core/models/gpt/gpt_model.py``: embedding
    on the first stage, output layer on the last, a copy of tied embeddings on the last
    stage when pp > 1) and its ``theoretical_memory_usage.py`` (most loaded shard =
    (block / pp + embedding) / tp). Departure: per stage we count ``ceil(L/pp)`` layers
    with the MoE layers first, an upper bound that is exact for uniform models.
    """
    layers = stage_layers(c.num_layers, pp)
    moe_layers = minimum(layers, c.num_moe_layers)
    dense_layers = minimum(layers, c.num_layers - c.num_moe_layers)
    # Every layer: attention split by tp, k/v by min(tp, kv_heads), norms etc. replicated.
    kv_div = minimum(tp, c.num_kv_heads)
    per_layer = c.attn_split_per_layer // tp + c.kv_split_per_layer // kv_div + c.replicated_per_layer
    dense = (layers * per_layer + dense_layers * (c.dense_mlp_per_layer // tp)
             + moe_layers * (c.moe_shared_per_layer // tp + c.moe_replicated_per_layer))
    experts = moe_layers * (c.moe_experts_per_layer // (ep * tp))
    single = pp == 1
    first_extra = c.embedding // tp + c.position_embedding
    head = c.head // tp
    if c.head_tied:
        head = where(single, 0, head)  # one tied matrix when embedding and head share a stage
    last_extra = c.final_norm + head
    if stage == "first":
        dense = dense + first_extra + where(single, last_extra, 0)
    else:
        dense = dense + last_extra + where(single, first_extra, 0)
    largest = c.largest_tensor // tp if c.largest_tensor_split else c.largest_tensor + 0 * tp
    small = layers * c.small_per_layer + c.small_other
    return RankParams(dense=dense, experts=experts, largest_module=largest, small=small)


# --------------------------------------------------------------------------- pipeline schedules

def in_flight_microbatches(*, pp: Any, micro_batches: Any, virtual_stages: Any = 1,
                           stage: Literal["first", "last"] = "first") -> Any:
    """Micro-batches whose activations a pipeline stage holds at its peak, in units of
    "one micro-batch through all of this stage's layers".

    1F1B (PipeDream-Flush; Narayanan et al. 2021, sec. 2.2): stage ``i`` of ``p`` runs
    ``p - i`` warm-up forwards before its first backward, so the first stage holds
    ``min(p, m)`` micro-batches and the last one. Interleaved 1F1B with ``v`` model
    chunks per rank (same paper, sec. 2.2.2) holds ``p * (1 + (p - 1) / (p * v))``
    micro-batch-stages on the first rank, the factor in Megatron-LM's
    ``theoretical_memory_usage.py``. Returned as a float for the interleaved case.
    Without a pipeline (``pp == 1``) gradient accumulation runs one micro-batch at a time.
    """
    if stage == "last":
        return 1 + 0 * pp
    plain = minimum(pp, micro_batches)
    interleaved = pp * (1 + (pp - 1) / (pp * virtual_stages))
    return where(virtual_stages > 1, interleaved, plain)


def bubble_fraction(*, pp: Any, micro_batches: Any, virtual_stages: Any = 1) -> Any:
    """Idle fraction of a pipelined step: ``(p - 1) / (v * m + p - 1)`` of the ideal
    time (Narayanan et al. 2021: bubble ``(p - 1) / m`` of compute for 1F1B, divided by
    ``v`` when interleaved); as a share of the whole step."""
    return (pp - 1) / (virtual_stages * micro_batches + pp - 1)


# --------------------------------------------------------------------------- model states

@dataclass(frozen=True, kw_only=True)
class StateBytesPerParam:
    """Bytes per trainable parameter of each model-state term, as a single GPU holds
    them (from the training recipe: e.g. bf16 mixed precision with AdamW is weights 2,
    gradients 2, master weights 4, optimizer 8 — the ZeRO paper's 2 + 2 + K, K = 12)."""

    weights: float
    """The compute copy of the weights (2 for bf16)."""
    gradients: float
    """Gradients in the compute dtype (2 for bf16)."""
    master_weights: float
    """fp32 master copy beside low-precision weights (4), 0 when training in one dtype."""
    optimizer: float
    """All optimizer states (8 for Adam's fp32 exp_avg + exp_avg_sq)."""

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.master_weights + self.optimizer


MIXED_ADAM = StateBytesPerParam(weights=2, gradients=2, master_weights=4, optimizer=8)
"""bf16/fp16 mixed precision with Adam: the ZeRO paper's 2 + 2 + 12 (Rajbhandari et al. 2020, sec. 3.1)."""

RECIPES: dict[str, str] = {
    "ddp": "PyTorch DDP: every rank holds the full recipe (weights, master, gradients, optimizer) "
           "plus all-reduce buckets the size of the gradients",
    "deepspeed": "DeepSpeed: 16-bit weights and gradients; fp32 master + optimizer states in the "
                 "partitioned optimizer state (2 + 2 + 12 bytes/param for Adam, ZeRO paper)",
    "fsdp": "PyTorch FSDP MixedPrecision: sharded fp32 parameters (the master copy) and fp32 gradients; "
            "a 16-bit copy of each unit is gathered while it computes",
    "megatron": "Megatron-LM: 16-bit weights, fp32 gradient buffer (main_grad), fp32 master + Adam "
                "(18 bytes/param; distributed optimizer: 6 + 12/dp)",
}
"""The mixed-precision recipe each engine follows, in words (shown with every estimate)."""


FP32_BYTES = 4
"""Bytes of one fp32 value."""


@dataclass(frozen=True)
class ShardedStates:
    """Model-state bytes on one GPU after sharding (floats or arrays), plus host RAM."""

    weights: Any
    master_weights: Any
    gradients: Any
    optimizer: Any
    gathered_params: Any
    """Parameters gathered for compute (ZeRO-3 live set, FSDP units)."""
    unsharded_grads: Any
    """Full-size gradients of the unit/module being reduced (FSDP, ZeRO-3)."""
    comm_buckets: Any
    """Reduce buckets (DeepSpeed ipg buffers, DDP buckets)."""
    step_temporaries: Any
    """Held only during the optimizer step (DeepSpeed's fp32 gradient partition)."""
    host_per_gpu: Any
    """Bytes each GPU's process keeps in host RAM (offloaded states)."""

    @property
    def resident(self) -> Any:
        """Bytes held across the whole step."""
        return self.weights + self.master_weights + self.gradients + self.optimizer + self.comm_buckets

    @property
    def backward_peak(self) -> Any:
        """Model-state bytes at the backward peak (without activations)."""
        return self.resident + self.gathered_params + self.unsharded_grads

    @property
    def step_peak(self) -> Any:
        """Model-state bytes during the optimizer step."""
        return self.resident + self.step_temporaries


def shard_model_states(*, recipe: StateBytesPerParam, params: RankParams, layout: ParallelLayout,
                       layer_params: Any, root_params: Any, dp: Any = None, cp: Any = None, ep: Any = None,
                       tp: Any = None, pp: Any = None, trainable_fraction: float = 1.0) -> ShardedStates:
    """Model-state bytes on one GPU of ``layout`` holding ``params``, by engine.

    ``layer_params`` / ``root_params`` are the parameters of one FSDP unit (one decoder
    layer on this rank) and of the root unit (embedding, final norm, head). ``dp``,
    ``cp``, ``ep`` may be arrays (the planner); they default to the layout's.
    ``trainable_fraction`` scales gradients and optimizer states (LoRA trains a small
    share; frozen weights get no state).

    Sources, per engine (see :data:`RECIPES`):

    * ZeRO (Rajbhandari et al. 2020, sec. 5 and Fig. 1): stage 1 divides master +
      optimizer by N_d, stage 2 also gradients, stage 3 also weights. DeepSpeed's
      buffers at their defaults (:class:`ZeroConfig`): the reduce bucket
      (``reduce_bucket_size`` elements of the gradient dtype, doubled by
      ``overlap_comm``); for stage 3 the largest module's gathered 16-bit weights and
      gradients (``4 * largest_layer_params`` in ``estimate_zero3_model_states_mem_needs``)
      plus the prefetch bucket, capped by ``stage3_max_live_parameters``, and tensors
      under the persistence threshold kept whole. During the step DeepSpeed
      materialises the fp32 gradient partition (the ``4`` of the estimator's ``18 =
      2 + 4 + 4 + 8``). Offload (ZeRO-Offload, ZeRO-Infinity) moves master, optimizer
      and the fp32 gradient partition (and with ``params`` the 16-bit partition) to the
      host.
    * FSDP (Zhao et al. 2023, "PyTorch FSDP", sec. 3-4; torch ``MixedPrecision``):
      parameters are stored sharded in fp32 (they are the master copy) with fp32
      gradients; the 16-bit copy of the unit in compute is gathered (one unit plus the
      backward-prefetched next one), the root unit stays gathered from forward to
      backward (FSDP2 ``reshard_after_forward`` is False for the root), and the unit's
      unsharded 16-bit gradients exist until reduce-scattered. SHARD_GRAD_OP keeps all
      gathered parameters from forward to backward; NO_SHARD shards nothing.
    * Megatron-LM (``theoretical_memory_usage.py``): 2-byte weights, a 4-byte fp32
      gradient buffer, 12 bytes of fp32 master + Adam, the latter divided by dp with
      the distributed optimizer (``zero_stage=1``).
    * DDP: the recipe as one GPU holds it plus buckets the size of the gradients.
    """
    dp = layout.dp if dp is None else dp
    cp = layout.cp if cp is None else cp
    ep = layout.ep if ep is None else ep
    tp = layout.tp if tp is None else tp
    pp = layout.pp if pp is None else pp
    engine = layout.resolved_engine
    dense, experts = params.dense, params.experts
    total = dense + experts
    trainable = total * trainable_fraction
    n_dense = dp * cp
    n_expert = maximum((dp * cp) // ep, 1)
    r = recipe
    zeros = 0 * total

    def split(bytes_per_param: float, dense_degree: Any = n_dense, expert_degree: Any = n_expert) -> Any:
        """Bytes of a term split across the data-parallel group (experts across theirs)."""
        return bytes_per_param * (dense / dense_degree + experts / expert_degree)

    if engine == "deepspeed":
        return _deepspeed(r, params, layout, split, total, trainable, trainable_fraction, zeros)
    if engine == "fsdp":
        return _fsdp(r, params, layout, split, total, trainable_fraction, zeros, layer_params, root_params,
                     n_dense, n_expert, tp * pp)
    if engine == "megatron":
        # Megatron accumulates gradients in an fp32 main_grad buffer under mixed precision.
        grad_bytes = max(r.gradients, FP32_BYTES) if r.master_weights else r.gradients
        distributed = layout.zero_stage == 1  # the distributed optimizer shards master + Adam over dp
        master = split(r.master_weights) * trainable_fraction if distributed else r.master_weights * trainable
        optim = split(r.optimizer) * trainable_fraction if distributed else r.optimizer * trainable
        return ShardedStates(r.weights * total, master, grad_bytes * trainable, optim, zeros, zeros, zeros,
                             zeros, zeros)
    # PyTorch DDP: the whole recipe on every rank, plus buckets as large as the gradients
    # (none on a single GPU, where DDP is not used).
    grads = r.gradients * trainable
    buckets = where(n_dense > 1, grads, zeros)
    return ShardedStates(r.weights * total, r.master_weights * trainable, grads, r.optimizer * trainable,
                         zeros, zeros, buckets, zeros, zeros)


def _deepspeed(r: StateBytesPerParam, params: RankParams, layout: ParallelLayout, split: Any, total: Any,
               trainable: Any, frac: float, zeros: Any) -> ShardedStates:
    """DeepSpeed ZeRO stages 0-3 with offload; see :func:`shard_model_states`."""
    stage = layout.zero_stage
    zero = layout.zero
    if stage == 3:
        # Partitioned 16-bit weights; tensors under the persistence threshold stay whole.
        weights = split(r.weights) + r.weights * params.small
    else:
        weights = r.weights * total
    grads = split(r.gradients) * frac if stage >= 2 else r.gradients * trainable
    master = split(r.master_weights) * frac if stage >= 1 else r.master_weights * trainable
    optim = split(r.optimizer) * frac if stage >= 1 else r.optimizer * trainable
    # The optimizer step converts the 16-bit gradient partition to fp32 (with a master copy
    # only): whole in stages 1-2 (stage_1_and_2.py), one sub-group at a time in stage 3.
    fp32_grads = split(FP32_BYTES) * frac if stage >= 1 else FP32_BYTES * trainable
    if stage == 3:
        fp32_grads = minimum(fp32_grads, FP32_BYTES * zero.sub_group_elements)
    fp32_grads = fp32_grads if r.master_weights else zeros
    gathered = unsharded = zeros
    if stage == 0:
        # Stage 0 all-reduces flattened buckets of at most reduce_bucket_size elements.
        buckets = minimum(r.gradients * zero.reduce_bucket_elements, r.gradients * trainable)
    else:
        overlap = zero.overlap_comm if zero.overlap_comm is not None else stage == 3
        copies = 2 if overlap and stage in (1, 2) else 1  # stage 1/2 double-buffer with overlap_comm
        buckets = copies * r.gradients * zero.reduce_bucket_elements + zeros
    if stage == 3:
        live = minimum(params.largest_module + zero.prefetch_bucket_elements, zero.max_live_parameters)
        gathered = r.weights * live
        unsharded = r.gradients * params.largest_module * frac
    host = zeros
    if layout.offload != "none":
        # ZeRO-Offload: master, optimizer and the fp32 gradient partition live on the host;
        # from stage 2 the 16-bit gradient partition is copied straight into that fp32 buffer.
        host = master + optim + (split(FP32_BYTES) * frac if r.master_weights else split(r.gradients) * frac)
        master = optim = fp32_grads = zeros
        if stage >= 2:
            grads = zeros
    if layout.offload == "params":
        # ZeRO-Infinity: the 16-bit weight partition moves too; persistent small tensors stay.
        host = host + weights - r.weights * params.small
        weights = r.weights * params.small + zeros
    return ShardedStates(weights, master, grads, optim, gathered, unsharded, buckets, fp32_grads, host)


def _fsdp(r: StateBytesPerParam, params: RankParams, layout: ParallelLayout, split: Any, total: Any,
          frac: float, zeros: Any, layer_params: Any, root_params: Any, n_dense: Any,
          n_expert: Any, model_parallel: Any) -> ShardedStates:
    """PyTorch FSDP (1 and 2) strategies with MixedPrecision; see :func:`shard_model_states`."""
    mode = layout.fsdp
    if mode == "no_shard":
        dense_degree, expert_degree = 1, 1
    elif mode == "hybrid_shard":
        # Shard inside a node, replicate across nodes.
        dense_degree = minimum(n_dense, maximum(layout.gpus_per_node // model_parallel, 1))
        expert_degree = maximum(minimum(dense_degree, n_expert), 1)
    else:
        dense_degree, expert_degree = n_dense, n_expert
    # Under MixedPrecision the stored (sharded) parameter is the fp32 master copy.
    stored = r.master_weights if r.master_weights else r.weights
    weights = split(stored, dense_degree, expert_degree)
    grads = split(stored, dense_degree, expert_degree) * frac if r.gradients else zeros
    optim = split(r.optimizer, dense_degree, expert_degree) * frac
    if mode == "shard_grad_op":
        gathered = r.weights * total  # parameters stay unsharded from forward to the end of backward
    else:
        gathered = r.weights * (root_params + 2 * layer_params)  # root + current unit + prefetched unit
    unsharded = r.gradients * maximum(layer_params, root_params) * frac
    host = zeros
    if layout.offload == "params":
        # CPUOffload / CPUOffloadPolicy: sharded parameters, gradients and the optimizer step on the host.
        host = weights + grads + optim
        weights = grads = optim = zeros
    return ShardedStates(weights, zeros, grads, optim, gathered, unsharded, zeros, zeros, host)


@dataclass(frozen=True, kw_only=True)
class LayoutRequest:
    """The parts of a layout a user fixed (``None`` where not given): the GPU count,
    nodes, degrees and engine settings; :meth:`layout` completes it into a
    :class:`ParallelLayout`, the planner searches the rest."""

    gpus: int | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    dp: int | None = None
    tp: int | None = None
    pp: int | None = None
    cp: int | None = None
    ep: int | None = None
    zero: str | None = None
    fsdp: str | None = None
    offload: str | None = None
    micro_batches: int | None = None
    virtual_stages: int | None = None
    sp: bool = False

    @property
    def given(self) -> bool:
        """Whether any part of the layout was given."""
        return any(v is not None for k, v in self.__dict__.items() if k != "sp") or self.sp

    @property
    def any_degree(self) -> bool:
        return any(v is not None for v in (self.dp, self.tp, self.pp, self.cp, self.ep))

    def node_size(self) -> int:
        """GPUs per node from --gpus-per-node, or --gpus / --nodes, or 8."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        if self.nodes is not None and self.gpus is not None:
            if self.gpus % self.nodes:
                raise LayoutError(f"gpus {self.gpus} is not a multiple of nodes {self.nodes}", fields=("gpus", "nodes"))
            return self.gpus // self.nodes
        return 8

    def total_gpus(self) -> int | None:
        """--gpus, or --nodes x --gpus-per-node."""
        if self.gpus is not None:
            return self.gpus
        if self.nodes is not None:
            from vramplan.validate import GPUS_MAX

            total = self.nodes * self.node_size()
            if total > GPUS_MAX:
                raise LayoutError(f"nodes {self.nodes:,} x {self.node_size()} GPUs per node = {total:,} GPUs; "
                                  f"expected at most {GPUS_MAX:,} GPUs in all", fields=("nodes",))
            return total
        return None

    def layout(self):
        """The :class:`~vramplan.parallel.ParallelLayout` the flags describe; dp is
        inferred from the GPU count when not given. Raises LayoutError printing every
        factor when they disagree."""
        kw = dict(ep=self.ep or 1, sequence_parallel=self.sp, zero_stage=int(self.zero or 0),
                  fsdp=self.fsdp or "none", offload=self.offload or "none",
                  micro_batches=self.micro_batches or 1, virtual_stages=self.virtual_stages or 1,
                  gpus_per_node=self.node_size())
        total = self.total_gpus()
        if total is None:
            return ParallelLayout(dp=self.dp or 1, tp=self.tp or 1, pp=self.pp or 1, cp=self.cp or 1, **kw)
        return layout_from_gpus(total, dp=self.dp, tp=self.tp or 1, pp=self.pp or 1, cp=self.cp or 1, **kw)
