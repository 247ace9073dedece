"""The model-parallel slice: which parameters one tensor/pipeline/expert-parallel
rank holds (Megatron-LM's splits, read from :mod:`vramplan.model.tensors`), and the
units FSDP gathers (one decoder layer, the root).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vramplan.parallel.arrays import cdiv, maximum, minimum, where
from vramplan.parallel.zero_config import DEEPSPEED_DEFAULTS

if TYPE_CHECKING:
    from vramplan.model.spec import ModelSpec
    from vramplan.parallel.arrays import Ints

Stage = Literal["first", "last"]
"""A pipeline stage: the first holds the embedding, the last the final norm and the head."""


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


def slice_coefficients(spec: ModelSpec, persistence_threshold: int = DEEPSPEED_DEFAULTS.param_persistence_threshold
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


def stage_layers(num_layers: int, pp: Ints) -> Ints:
    """Decoder blocks on the busiest pipeline stage: ``ceil(layers / pp)`` (Megatron
    splits evenly; uneven counts put the remainder on some stages)."""
    return cdiv(num_layers, pp)


@dataclass(frozen=True)
class RankParams:
    """Parameters one GPU holds for its tensor/pipeline/expert slice."""

    dense: Ints
    """Parameters sharded across the whole ``dp * cp`` group (everything but routed experts)."""
    experts: Ints
    """Routed-expert parameters (sharded across the expert-data-parallel group ``dp*cp/ep``)."""
    largest_module: Ints
    """Elements of the largest single module on this rank (what ZeRO-3 gathers at once)."""
    small: Ints
    """Elements in tensors at or below the ZeRO-3 persistence threshold."""

    @property
    def total(self) -> Ints:
        return self.dense + self.experts


def rank_params(c: SliceCoefficients, *, tp: Ints, pp: Ints, ep: Ints, stage: Stage) -> RankParams:
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


def layer_params(c: SliceCoefficients, *, tp: Ints, ep: Ints) -> Ints:
    """Parameters of the largest decoder layer on one tp/ep rank (one FSDP unit)."""
    per_layer = c.attn_split_per_layer // tp + c.kv_split_per_layer // minimum(tp, c.num_kv_heads) \
        + c.replicated_per_layer
    moe = c.moe_shared_per_layer // tp + c.moe_replicated_per_layer + c.moe_experts_per_layer // (ep * tp)
    dense = c.dense_mlp_per_layer // tp
    return per_layer + (maximum(dense, moe) if c.num_moe_layers else dense)


def root_params(c: SliceCoefficients, *, tp: Ints) -> Ints:
    """Parameters outside the decoder layers on one tp rank (FSDP's root unit)."""
    return c.embedding // tp + c.position_embedding + c.final_norm + (0 if c.head_tied else c.head // tp)
