"""ZeRO / FSDP / Megatron / DDP sharding: the model-state bytes on one GPU of a
layout, by engine (:func:`shard_model_states`). DeepSpeed's stages are in
:mod:`vramplan.parallel.deepspeed`, FSDP's strategies in :mod:`vramplan.parallel.fsdp`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramplan.parallel.arrays import maximum, where
from vramplan.parallel.deepspeed import deepspeed_states
from vramplan.parallel.fsdp import fsdp_states
from vramplan.parallel.states import FP32_BYTES, ShardedStates, StateBytesPerParam

if TYPE_CHECKING:
    from vramplan.parallel.arrays import Ints, Reals
    from vramplan.parallel.layout import ParallelLayout
    from vramplan.parallel.slicing import RankParams


def shard_model_states(*, recipe: StateBytesPerParam, params: RankParams, layout: ParallelLayout,
                       layer_params: Ints, root_params: Ints, dp: Ints | None = None, cp: Ints | None = None,
                       ep: Ints | None = None,
                       tp: Ints | None = None, pp: Ints | None = None, trainable_fraction: float = 1.0) -> ShardedStates:
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

    group_share = dense / n_dense + experts / n_expert  # parameters per rank of the data-parallel group

    def split(bytes_per_param: float, dense_degree: Ints = n_dense, expert_degree: Ints = n_expert) -> Reals:
        """Bytes of a term split across the data-parallel group (experts across theirs)."""
        if dense_degree is n_dense and expert_degree is n_expert:
            return bytes_per_param * group_share
        return bytes_per_param * (dense / dense_degree + experts / expert_degree)

    if engine == "deepspeed":
        return deepspeed_states(r, params, layout, split, total, trainable, trainable_fraction, zeros)
    if engine == "fsdp":
        return fsdp_states(r, params, layout, split, total, trainable_fraction, zeros, layer_params, root_params,
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


