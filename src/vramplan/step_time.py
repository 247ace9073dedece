"""Estimated time of one training step for arrays of parallel layouts (the planner's ranking).

Every function takes numpy arrays of degrees (one entry per layout) and returns seconds
per optimizer step. The model is a sum of closed-form terms, each with its source:

* compute: the model's FLOPs (Kaplan et al. 2020 for the parameter part, the PaLM paper's
  appendix B for attention) over ``GPUs x peak x MFU``, where the MFU shrinks for small
  per-GPU matrix multiplies (:func:`gemm_efficiency`), and the pipeline bubble;
* tensor-parallel all-reduces, context-parallel ring passes and expert-parallel
  all-to-alls on the critical path (not overlapped);
* data-parallel collectives (:func:`dp_collectives_per_step`: how many times per step
  each engine moves the 16-bit parameters or gradients) overlapped with compute;
* offload traffic over the host link.

It ranks layouts; it is not a wall-clock prediction (see docs/parallel.md, "Known gaps").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from vramplan.distributed import TrainingJob
    from vramplan.gpus import GpuSpec
    from vramplan.model.spec import ModelSpec
    from vramplan.parallel.arrays import Flags, Ints, Reals
    from vramplan.planner import Degrees, EngineSetting, PlanRequest

DEFAULT_MFU = 0.44
"""Model FLOPs utilisation of large matrix multiplies (the ``--mfu`` default). Each
layout's MFU is this x :func:`gemm_efficiency` of its per-GPU MLP multiply. 0.44 puts
Llama 3 405B's own layout (TP=8, 8,192-token micro-batches, H100 SXM: efficiency 0.91)
at 40%, the middle of the 38-43% BF16 MFU reported for it (Llama 3 paper, Dubey et al.
2024, sec. 3.3.2 and Table 4)."""
INTER_NODE_BYTES_PER_S = 50e9
"""Per-GPU network bandwidth between nodes: one 400 Gb/s NIC per GPU (ConnectX-7 /
InfiniBand NDR, as in the Llama 3 cluster, sec. 3.3.1), 50 GB/s per direction."""
HOST_LINK_BYTES_PER_S = 25e9
"""Effective GPU<->host copy bandwidth for offload (PCIe Gen4 x16: 32 GB/s peak, ~25 GB/s achieved)."""
TRAINING_FLOPS_PER_PARAM_TOKEN = 6
"""Forward 2 + backward 4 FLOPs per parameter per token (Kaplan et al. 2020, sec. 2.1)."""
ATTENTION_FLOPS_PER_TOKEN_FACTOR = 6
"""Attention score and value products, training FLOPs per token per layer per query
width per context token: 12 in the PaLM paper (Chowdhery et al. 2022, appendix B: 6N +
12 L H Q T), halved because a causal kernel (flash attention) skips the masked half."""
RECOMPUTE_EXTRA_FLOPS = {"none": 0, "selective": 0, "full": 2}
"""Extra FLOPs per parameter-token: full recomputation reruns the forward (+2); selective
recomputes only attention scores, which 6N leaves out."""
WIRE_BYTES = 2
"""Bytes per value of activations, parameters and gradients on the wire (16-bit)."""
TP_ALL_REDUCES_PER_LAYER = 4
"""Tensor-parallel all-reduces per layer per micro-batch: 2 in the forward (after
attention and after the MLP) and 2 in the backward (Shoeybi et al. 2019, sec. 3); with
sequence parallelism each becomes a reduce-scatter + all-gather of the same volume
(Korthikanti et al. 2022, sec. 4.2.2)."""
EP_ALL_TO_ALLS_PER_LAYER = 4
"""Expert-parallel all-to-alls per MoE layer per micro-batch: dispatch and combine in
the forward, and their two mirrors in the backward (GShard, Lepikhin et al. 2020,
sec. 3.2; DeepSpeed-MoE, Rajbhandari et al. 2022)."""
CP_RING_PASSES = 3
"""Context-parallel ring passes of the local K and V per layer per micro-batch: K/V in
the forward, K/V again and dK/dV in the backward (ring attention, Liu et al. 2023)."""


def gemm_efficiency(*, tokens: Reals, k: Reals, n: Reals, ridge_flops_per_byte: float) -> Reals:
    """Share of the large-GEMM MFU a ``tokens x k`` by ``k x n`` 16-bit multiply reaches,
    from its arithmetic intensity ``AI = tokens k n / (tokens k + k n + tokens n)``
    FLOPs per byte (2 FLOPs per multiply-add over 2 bytes per value read or written)
    against the GPU's ridge point (peak FLOP/s over memory bandwidth): ``AI / (AI +
    ridge)``. A smooth form of the roofline (Williams et al. 2009) in the sense of
    NVIDIA's "Matrix Multiplication Background" guide (math-bound only once the
    intensity clears the ops:byte ratio); dimensionless, in (0, 1). Departs from
    measured GEMMs by ignoring tile and wave quantisation."""
    ai = tokens * k * n / (tokens * k + k * n + tokens * n)
    return ai / (ai + ridge_flops_per_byte)


def mlp_gemm_shape(spec: ModelSpec, *, tokens: Reals, tp: Ints, ep: Ints) -> tuple[Reals, int, Reals]:
    """(tokens, k, n) of the per-GPU MLP up-projection for one micro-batch: the dense
    column-parallel ``hidden -> ffn / tp`` multiply; for MoE models a routed expert's,
    which sees ``tokens x top-k x ep / experts`` tokens (its share of the expert-parallel
    group's routed tokens; expert weights split by tp like the dense MLP)."""
    import numpy as np

    if spec.moe is None:
        return tokens, spec.hidden_size, spec.intermediate_size / tp
    routed = tokens * spec.moe.experts_per_token * ep / spec.moe.num_experts
    return np.maximum(routed, 1), spec.hidden_size, spec.moe.expert_intermediate_size / tp


def flops_per_token(spec: ModelSpec, *, active_params: int, seq_len: int, extra_per_param: Reals) -> Reals:
    """Training FLOPs per token: ``(6 + extra) x active params`` plus causal attention
    ``6 x layers x query width x seq`` (see ``ATTENTION_FLOPS_PER_TOKEN_FACTOR``)."""
    attention = ATTENTION_FLOPS_PER_TOKEN_FACTOR * spec.num_layers * spec.q_dim * seq_len
    return (TRAINING_FLOPS_PER_PARAM_TOKEN + extra_per_param) * active_params + attention


def dp_collectives_per_step(setting: EngineSetting, micro_batches: Ints) -> tuple[Ints, Ints]:
    """(inside the sharding group, across replicas): how many times per optimizer step a
    GPU's slice of the 16-bit parameters (or gradients) crosses the data-parallel group
    as a ring all-gather or reduce-scatter (an all-reduce counts 2), for ``m``
    micro-batches:

    * DDP / Megatron: one gradient all-reduce at the accumulation boundary: 2;
    * Megatron distributed optimizer: reduce-scatter + parameter all-gather: 2;
    * DeepSpeed ZeRO-1: all-reduce at the boundary (stages 1-2 all-reduce,
      deepspeedai/DeepSpeed#5758) + parameter all-gather after the step: 3;
    * ZeRO-2: all-reduce after *every* backward (the GPU keeps only its gradient
      partition, deepspeedai/DeepSpeed#2252) + the all-gather: 2m + 1;
    * ZeRO-3, FSDP FULL_SHARD / FSDP2: all-gather in the forward, again in the backward,
      reduce-scatter of the gradients, every micro-batch: 3m (ZeRO paper sec. 7.2.2);
    * FSDP SHARD_GRAD_OP: parameters stay gathered from forward to backward: 2m;
    * FSDP NO_SHARD: an all-reduce per step (``no_sync`` accumulation): 2;
    * HYBRID_SHARD: 3m inside the node, plus an all-reduce of the gradient shard across
      replicas per step (2, of a 1/group-sized slice: the caller scales it).
    """
    m = micro_batches
    zero = 0 * m
    if setting.fsdp in ("full_shard", "fsdp2"):
        return 3 * m, zero
    if setting.fsdp == "hybrid_shard":
        return 3 * m, zero + 2
    if setting.fsdp == "shard_grad_op":
        return 2 * m, zero
    if setting.fsdp == "no_shard":
        return zero + 2, zero
    if setting.engine == "megatron":
        return zero + 2, zero
    return {0: zero + 2, 1: zero + 3, 2: 2 * m + 1, 3: 3 * m}[setting.zero_stage], zero


def link_bytes_per_s(gpu: GpuSpec, spans_nodes: Flags) -> Reals:
    """Per-GPU bandwidth of a collective: the GPU's scale-up link inside a node, the
    slower of it and ``INTER_NODE_BYTES_PER_S`` when the group spans nodes."""
    import numpy as np

    return np.where(spans_nodes, min(INTER_NODE_BYTES_PER_S, gpu.interconnect_bytes_per_s),
                    gpu.interconnect_bytes_per_s)


def dp_comm_s(req: PlanRequest, setting: EngineSetting, d: Degrees, params_on_gpu: Ints) -> Reals:
    """Seconds per step of data-parallel collectives (:func:`dp_collectives_per_step`),
    each moving ``(g-1)/g x 2 B x params on the GPU`` per GPU over a ring of ``g`` GPUs.
    Ranks are placed tp, then cp, then dp, then pp (Megatron's order): the dp x cp
    group spans nodes when ``tp cp dp`` exceeds a node. Hybrid sharding shards over the
    data-parallel ranks of one node and all-reduces the shard across nodes. Expert
    parameters are treated like dense ones."""
    import numpy as np

    group = d.dp * d.cp
    inside, across = dp_collectives_per_step(setting, d.m)
    node = req.gpus_per_node
    if setting.fsdp == "hybrid_shard":
        shard = np.maximum(np.minimum(group, node // np.minimum(d.tp, node)), 1)
        replicas = group // shard
        inner = inside * (shard - 1) / shard * WIRE_BYTES * params_on_gpu / req.gpu.interconnect_bytes_per_s
        outer = across * (replicas - 1) / replicas * WIRE_BYTES * params_on_gpu / shard
        return inner + outer / link_bytes_per_s(req.gpu, replicas > 1)
    spans = d.tp * group > node
    return inside * (group - 1) / group * WIRE_BYTES * params_on_gpu / link_bytes_per_s(req.gpu, spans)


def layout_costs(req: PlanRequest, job: TrainingJob, d: Degrees, active_params: int) -> dict[str, np.ndarray]:
    """The engine-independent parts of :func:`step_time_s` for arrays of layouts ``d``
    (seconds per step: compute with bubble, TP, CP and EP traffic; plus MFU, bubble
    and tokens per step). The planner computes them once for all engine settings."""
    import numpy as np

    from vramplan.parallel import bubble_fraction, stage_layers

    spec, gpu = job.model, req.gpu
    n_gpus = d.dp * d.tp * d.pp * d.cp
    tp, cp, ep, m = d.tp, d.cp, d.ep, d.m
    tokens = d.mbs * job.seq_len / cp  # tokens of one micro-batch on one GPU
    tokens_per_step = d.dp * d.mbs * m * job.seq_len
    extra = d.extra_flops if d.extra_flops is not None else RECOMPUTE_EXTRA_FLOPS[job.recompute]
    flops = tokens_per_step * flops_per_token(spec, active_params=active_params, seq_len=job.seq_len,
                                              extra_per_param=extra)
    ridge = gpu.bf16_dense_flops / gpu.memory_bandwidth_bytes_per_s
    gm, gk, gn = mlp_gemm_shape(spec, tokens=tokens, tp=tp, ep=ep)
    mfu = req.mfu * gemm_efficiency(tokens=gm, k=gk, n=gn, ridge_flops_per_byte=ridge)
    bubble = bubble_fraction(pp=d.pp, micro_batches=m, virtual_stages=req.virtual_stages)
    compute = flops / (n_gpus * gpu.bf16_dense_flops * mfu) / (1 - bubble)
    layers = stage_layers(spec.num_layers, d.pp)
    activation = tokens * spec.hidden_size * WIRE_BYTES
    tp_time = TP_ALL_REDUCES_PER_LAYER * 2 * (tp - 1) / tp * activation * layers * m / gpu.interconnect_bytes_per_s
    kv_chunk = 2 * tokens * spec.kv_dim * WIRE_BYTES
    cp_time = CP_RING_PASSES * (cp - 1) * kv_chunk * layers * m / link_bytes_per_s(gpu, tp * cp > req.gpus_per_node)
    if spec.moe is not None:
        moe_layers = np.minimum(layers, spec.num_moe_layers)
        routed = activation * spec.moe.experts_per_token * (ep - 1) / ep
        ep_time = EP_ALL_TO_ALLS_PER_LAYER * routed * moe_layers * m / link_bytes_per_s(gpu, tp * ep > req.gpus_per_node)
    else:
        ep_time = 0 * compute
    return {"compute_s": compute, "mfu": mfu, "bubble": bubble, "tp_comm_s": tp_time, "cp_comm_s": cp_time,
            "ep_comm_s": ep_time, "tokens_per_step": tokens_per_step}


def step_time_s(req: PlanRequest, job: TrainingJob, setting: EngineSetting, d: Degrees, params_on_gpu: Ints,
                active_params: int, costs: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Estimated seconds per optimizer step, and its parts, for arrays of layouts ``d``
    (dp, tp, pp, cp, ep, mbs, m, optional extra_flops); ``costs``: the layouts'
    :func:`layout_costs`, when the caller has them.

    * compute: :func:`flops_per_token` x tokens over ``GPUs x peak bf16 x MFU x
      gemm_efficiency`` (per-GPU MLP multiply of ``mbs x seq / cp`` tokens), divided
      by ``1 - bubble`` (Narayanan et al. 2021: ``(p-1)/(v m + p - 1)``);
    * tensor parallelism: ``TP_ALL_REDUCES_PER_LAYER`` ring all-reduces (``2 (t-1)/t``)
      of ``tokens x hidden x 2 B`` per layer per micro-batch over the scale-up link;
    * context parallelism: ``CP_RING_PASSES x (cp-1)`` local K+V chunks per layer per
      micro-batch, across nodes when ``tp cp`` exceeds a node;
    * expert parallelism: ``EP_ALL_TO_ALLS_PER_LAYER`` all-to-alls of ``tokens x top-k
      x hidden x 2 B x (ep-1)/ep`` per MoE layer per micro-batch, across nodes when
      ``tp ep`` exceeds a node;
    * data parallelism: :func:`dp_comm_s`, overlapped with compute (the step takes the
      longer of the two, as FSDP/ZeRO prefetching aims for; Llama 3 paper sec. 3.3.2);
    * offload: 16-bit gradients down and parameters back, 4 B per parameter on the GPU's
      share, over ``HOST_LINK_BYTES_PER_S``.

    TP, CP and EP traffic is on the critical path (not overlapped); pipeline
    point-to-point sends are left out (a few MB per micro-batch)."""
    import numpy as np

    c = costs if costs is not None else layout_costs(req, job, d, active_params)
    compute = c["compute_s"]
    dp_time = dp_comm_s(req, setting, d, params_on_gpu)
    offload_time = (2 * WIRE_BYTES * params_on_gpu / (d["dp"] * d["cp"]) / HOST_LINK_BYTES_PER_S
                    if setting.offload != "none" else 0 * compute)
    total = np.maximum(compute, dp_time) + c["tp_comm_s"] + c["cp_comm_s"] + c["ep_comm_s"] + offload_time
    return {"step_s": total, **c, "dp_comm_s": dp_time, "offload_s": offload_time}


def assumptions(req: PlanRequest) -> tuple[str, ...]:
    """The step-time model's assumptions, in words (printed with the plan)."""
    gpu = req.gpu
    ridge = gpu.bf16_dense_flops / gpu.memory_bandwidth_bytes_per_s
    return (
        f"compute: 6 x active params x tokens FLOPs (+2 with full recompute) + causal attention "
        f"6 x layers x q width x seq per token, at {req.mfu:.0%} MFU of {gpu.bf16_dense_flops / 1e12:g} TFLOP/s "
        f"dense bf16 x GEMM efficiency AI/(AI + {ridge:.0f}) of the per-GPU MLP multiply "
        "(mbs x seq/cp tokens, hidden, ffn/tp)",
        "pipeline bubble (p-1)/(v m + p - 1) of the step (1F1B)",
        f"TP: 4 all-reduces of tokens x hidden x 2 B per layer per micro-batch over {gpu.interconnect} "
        f"({gpu.interconnect_bytes_per_s / 1e9:g} GB/s), not overlapped; ranks placed tp, cp, dp, pp",
        "CP: ring attention, 3 x (cp-1) local K/V chunks per layer per micro-batch; EP: 4 all-to-alls of "
        "routed tokens per MoE layer per micro-batch; neither overlapped",
        "DP: 16-bit collectives per step: DDP/Megatron 2, ZeRO-1 3, ZeRO-2 2m+1, ZeRO-3/FSDP full shard 3m "
        "(parameters gathered again every micro-batch), SHARD_GRAD_OP 2m; overlapped with compute; "
        f"{INTER_NODE_BYTES_PER_S / 1e9:g} GB/s per GPU across nodes (400 Gb/s NIC per GPU)",
        f"offload: 4 bytes/param over {HOST_LINK_BYTES_PER_S / 1e9:g} GB/s host link per step",
    )
