"""What a model and a sequence admit: the one tensor-parallel rule and the one
sequence-split rule. Training (:meth:`ParallelLayout.check_model`,
:meth:`ParallelLayout.check_sequence`), serving (:func:`vramplan.memory.weights.check_tensor_parallel`),
both planners and the engines all ask these two functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramplan.parallel.arrays import where

if TYPE_CHECKING:
    from vramplan.model.spec import ModelSpec
    from vramplan.parallel.arrays import Flags, Ints


def tensor_parallel_problem(spec: ModelSpec, tp: int) -> tuple[str, int] | None:
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


def sequence_splits_evenly(seq: Ints, *, tp: Ints, cp: Ints, sp: Flags) -> Flags:
    """Whether every sequence splits evenly over the layout: context parallelism gives
    each of ``cp`` ranks ``seq / cp`` tokens, and sequence parallelism splits those
    over ``tp`` (Korthikanti et al. 2022, section 4.2.2). Arrays broadcast."""
    return seq % (cp * where(sp, tp, 1)) == 0

