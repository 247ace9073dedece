"""DeepSpeed ZeRO stages 0-3 with ZeRO-Offload / ZeRO-Infinity: the model-state
bytes one GPU holds (see :func:`vramplan.parallel.sharding.shard_model_states` for
the sources)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramplan.parallel.arrays import minimum
from vramplan.parallel.states import FP32_BYTES, ShardedStates, StateBytesPerParam

if TYPE_CHECKING:
    from vramplan.parallel.arrays import Reals
    from vramplan.parallel.layout import ParallelLayout
    from vramplan.parallel.slicing import RankParams
    from vramplan.parallel.states import Split


def deepspeed_states(r: StateBytesPerParam, params: RankParams, layout: ParallelLayout, split: Split,
                     total: Reals, trainable: Reals, frac: float, zeros: Reals) -> ShardedStates:
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


