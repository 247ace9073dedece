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
* offload: host-link traffic and the CPU optimizer step (:func:`offload_s`).

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
"""Effective GPU<->host copy bandwidth per GPU for offload (PCIe Gen4 x16: 32 GB/s peak,
~25 GB/s achieved; each GPU of an 8-GPU node has its own x16 link)."""
CPU_ADAM_BYTES_PER_PARAM = 28
"""Host memory traffic of the CPU optimizer step per parameter: DeepSpeed's CPU Adam
(``csrc/includes/cpu_adam.h``, ``Adam_Optimizer::Step_AVX``) streams four fp32 arrays
in (gradient, exp_avg, exp_avg_sq, parameter) and three out (parameter, exp_avg,
exp_avg_sq): 7 x 4 B. The ZeRO-Offload paper (Ren et al. 2021, sec. 5.1) builds its
CPU-Adam as this vectorised streaming loop, so its time is bytes over host memory
bandwidth. PyTorch's CPU AdamW (FSDP's offload) streams at least as much."""
HOST_MEMORY_BYTES_PER_S = {"datacenter": 307e9, "gaudi": 307e9, "tpu": 307e9}
"""Host memory bandwidth one node's CPU optimizer step reaches, by GPU segment: a
two-socket server with 8 DDR5-4800 channels per socket (DGX H100: 2 x Xeon 8480C)
peaks at 2 x 8 x 38.4 GB/s = 614 GB/s; half of that is assumed reached.
``WORKSTATION_MEMORY_BYTES_PER_S`` for everything else."""
WORKSTATION_MEMORY_BYTES_PER_S = 45e9
"""Host memory bandwidth of a desktop (2 DDR5-5600 channels: 89.6 GB/s peak; half reached)."""
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


def flops_per_token(spec: ModelSpec, *, active_params: int, seq: int, extra_per_param: Reals) -> Reals:
    """Training FLOPs per token: ``(6 + extra) x active params`` plus causal attention
    ``6 x layers x query width x seq`` (see ``ATTENTION_FLOPS_PER_TOKEN_FACTOR``)."""
    attention = ATTENTION_FLOPS_PER_TOKEN_FACTOR * spec.num_layers * spec.q_dim * seq
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
    tokens = d.mbs * job.seq / cp  # tokens of one micro-batch on one GPU
    tokens_per_step = d.dp * d.mbs * m * job.seq
    extra = d.extra_flops if d.extra_flops is not None else RECOMPUTE_EXTRA_FLOPS[job.recompute]
    flops = tokens_per_step * flops_per_token(spec, active_params=active_params, seq=job.seq,
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
    * offload: :func:`offload_s`: host-link traffic (overlapped per micro-batch,
      exposed at the step boundary) and the CPU optimizer step (exposed).

    TP, CP and EP traffic is on the critical path (not overlapped); pipeline
    point-to-point sends are left out (a few MB per micro-batch)."""
    import numpy as np

    c = costs if costs is not None else layout_costs(req, job, d, active_params)
    compute = c["compute_s"]
    dp_time = dp_comm_s(req, setting, d, params_on_gpu)
    pcie, cpu_step = offload_s(req, setting, d, params_on_gpu)
    overlapped = np.maximum(np.maximum(compute, dp_time), pcie["overlapped"])
    total = overlapped + c["tp_comm_s"] + c["cp_comm_s"] + c["ep_comm_s"] + pcie["exposed"] + cpu_step
    return {"step_s": total, **c, "dp_comm_s": dp_time, "offload_pcie_s": pcie["overlapped"] + pcie["exposed"],
            "offload_cpu_step_s": cpu_step, "offload_s": pcie["overlapped"] + pcie["exposed"] + cpu_step}


def host_memory_bytes_per_s(gpu: Any) -> float:
    """Host memory bandwidth of a node of ``gpu`` (``HOST_MEMORY_BYTES_PER_S``)."""
    return HOST_MEMORY_BYTES_PER_S.get(gpu.segment, WORKSTATION_MEMORY_BYTES_PER_S)


def offload_s(req: Any, setting: Any, d: dict[str, Any], params_on_gpu: Any) -> tuple[dict[str, Any], Any]:
    """Seconds per step an offload layout spends on the host link and on the CPU
    optimizer step, for arrays of layouts ``d``; zeros without offload. Returns
    ``({"overlapped": s, "exposed": s}, cpu_step_s)``.

    Each GPU owns ``P = params on the GPU / (dp x cp)`` parameters of the offloaded
    partition (ZeRO partitions over the data-parallel ranks) and moves, over its own
    ``HOST_LINK_BYTES_PER_S`` link, per step of ``m`` micro-batches:

    * optimizer offload (ZeRO-Offload, Ren et al. 2021, sec. 4.1: "fp16 gradients to
      the CPU, fp16 parameters back", 2M + 2M bytes for M parameters): its 16-bit
      gradient partition down after every backward (DeepSpeed accumulates offloaded
      gradients on the host, ``stage_1_and_2.py`` ``async_accumulate_grad_in_cpu_via_gpu``),
      ``2 m P`` bytes, overlapped with the backward; the updated 16-bit parameters back
      after the CPU step, ``2 P`` bytes, exposed (they are needed before the next forward);
    * parameter offload (ZeRO-Infinity, Rajbhandari et al. 2021, sec. 5; FSDP
      ``CPUOffload(offload_params=True)``): also the 16-bit parameters up for the
      forward and again for the backward of every micro-batch, ``4 m P`` bytes,
      prefetched and so overlapped; nothing to upload after the step.

    The CPU optimizer step (exposed: it runs after the last backward; ZeRO-Offload's
    one-step delayed update is off by default) streams ``CPU_ADAM_BYTES_PER_PARAM`` per
    parameter of every GPU of the node through host memory:
    ``28 B x P x GPUs per node / host memory bandwidth``. Overlapped traffic joins
    the compute in the step's ``max``; exposed time adds to it."""
    import numpy as np

    zero = 0.0 * params_on_gpu * d.dp
    if setting.offload == "none":
        return {"overlapped": zero, "exposed": zero}, zero
    part = params_on_gpu / (d.dp * d.cp)
    m = d.m
    down = WIRE_BYTES * m * part
    up_overlapped = 2 * WIRE_BYTES * m * part if setting.offload == "params" else zero
    up_exposed = zero if setting.offload == "params" else WIRE_BYTES * part
    link = HOST_LINK_BYTES_PER_S
    gpus_on_node = np.minimum(d.dp * d.tp * d.pp * d.cp, req.gpus_per_node)
    cpu_step = CPU_ADAM_BYTES_PER_PARAM * part * gpus_on_node / host_memory_bytes_per_s(req.gpu)
    return {"overlapped": (down + up_overlapped) / link, "exposed": up_exposed / link}, cpu_step


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
        f"offload: per GPU over a {HOST_LINK_BYTES_PER_S / 1e9:g} GB/s host link, 16-bit gradients down every "
        "micro-batch and (parameter offload) parameters up for forward and backward, overlapped; parameters "
        f"back after the step, exposed; CPU optimizer step {CPU_ADAM_BYTES_PER_PARAM} B/param (DeepSpeed CPU Adam) "
        f"over {host_memory_bytes_per_s(gpu) / 1e9:g} GB/s host memory per node, exposed",
    )
