"""PyTorch FSDP (1 and 2) strategies under MixedPrecision: the model-state bytes one
GPU holds (see :func:`vramplan.parallel.sharding.shard_model_states` for the sources)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramplan.parallel.arrays import maximum, minimum
from vramplan.parallel.states import ShardedStates, StateBytesPerParam

if TYPE_CHECKING:
    from vramplan.parallel.arrays import Ints, Reals
    from vramplan.parallel.layout import ParallelLayout
    from vramplan.parallel.slicing import RankParams
    from vramplan.parallel.states import Split


def fsdp_states(r: StateBytesPerParam, params: RankParams, layout: ParallelLayout, split: Split,
                total: Reals, frac: float, zeros: Reals, layer_params: Ints, root_params: Ints,
                n_dense: Ints, n_expert: Ints, model_parallel: Ints) -> ShardedStates:
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


