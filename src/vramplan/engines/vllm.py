"""vLLM: a KV cache pool sized from what profiling leaves of ``gpu_memory_utilization``.

vLLM's arithmetic (V1 ``gpu_worker.determine_available_memory``, documented under
"gpu_memory_utilization" in the engine arguments, and logged as "Available KV cache
memory"):

    requested   = gpu_memory_utilization x total GPU memory
    non_kv      = weights + peak activation of the profiling run + non-torch increase
    kv_budget   = requested - non_kv
    num_blocks  = kv_budget // (block_size x bytes per token and layer) // layers
    max concurrency at L tokens = KV pool tokens / tokens one L-token request needs

- weights per TP rank (:func:`~vramplan.memory.weights.weight_split_components`);
- the profiling run (``profile_run``) is one forward of ``max_num_batched_tokens``
  tokens (chunked prefill) plus a dummy sampler pass over ``max_num_seqs`` rows of
  the vocabulary in fp32; the sampler dominates for real vocabularies.
  :data:`SAMPLER_FP32_COPIES` gives its size in fp32 ``max_num_seqs x vocab`` copies;
- non-torch memory: NCCL buffers under TP plus :data:`NON_TORCH_BASE_BYTES`;
- CUDA graphs are captured after the KV cache from what the utilisation left free;
  they are a named component, not part of the budget;
- the CUDA context lies outside the budget too.

Defaults of ``max_num_seqs`` / ``max_num_batched_tokens`` follow vLLM's
``EngineArgs._set_default_args`` for the OpenAI server: 1024 / 8192 on GPUs of 70 GiB
or more other than A100, else 256 / 2048.
"""

from __future__ import annotations

from vramplan.dtypes import FP32_BYTES, get_dtype
from vramplan.engines import Job, base_estimate, with_gpu_verdict
from vramplan.errors import Remark
from vramplan.estimate import Component, Estimate
from vramplan.intmath import largest_true
from vramplan.memory.inference_buffers import ForwardShape, layer_peak_bytes
from vramplan.memory.kv_cache import check_engine_kv_dtype, get_kv_dtype, kv_bytes_per_token_per_layer, kv_cache_bytes
from vramplan.memory.overhead import fixed_overhead_components
from vramplan.memory.weights import weight_split_components
from vramplan.units import GiB, MiB

SAMPLER_FP32_COPIES = 9.59
"""Peak of vLLM's dummy sampler run, in fp32 copies of ``max_num_seqs x vocab``:
logits upcast, temperature, top-k/top-p sort (values + int64 indices), softmax,
cumulative sum, log-softmax for logprobs. Measured from vLLM's own log for
Qwen3-0.6B on an H100 (peak activation 5.56 GiB = 9.59 x 1024 x 151,936 x 4 B; the
model's forward is far smaller), llm-d-benchmark ``config_explorer/
empirical-vllm-memory-results.md``; tests check it on two other models."""

NON_TORCH_BASE_BYTES = 133 * MiB
"""Memory vLLM's profiler sees outside PyTorch on one GPU without TP (kernels loaded
lazily during profiling, library handles): 0.13 GiB in the same logs for four models."""

CUSTOM_ALLREDUCE_MAX_SIZE_BYTES = 8 * MiB
"""``CustomAllreduce(max_size=8192 * 1024)`` (vllm/distributed/device_communicators/
custom_all_reduce.py): the largest all-reduce its one-shot/two-shot kernels take."""

CUSTOM_ALLREDUCE_RANK_DATA_BYTES = 8 * MiB
"""``rank_data = torch.empty(8 * 1024 * 1024, dtype=torch.uint8)``: the table of IPC
pointer tuples registered for CUDA graphs (same file)."""

CUSTOM_ALLREDUCE_WORLD_SIZES = (2, 4, 6, 8)
"""``CustomAllreduce._SUPPORTED_WORLD_SIZES``; other TP sizes fall back to NCCL."""


def custom_allreduce_bytes(tp: int) -> int:
    """Bytes per GPU of vLLM's custom all-reduce under ``tp`` ranks on one node: two
    IPC buffers made with ``cudaMalloc`` outside PyTorch's allocator (the metadata +
    scratch buffer of ``meta_size() + max_size`` and the registered input buffer of
    ``max_size``; ``meta_size()``, a few KiB of signal flags, is left out) + the 8 MiB
    ``rank_data`` tensor. Peers' buffers are mapped through CUDA IPC and take no local
    memory. 0 for one GPU or an unsupported TP size. Departs from vLLM where it disables
    the kernels at run time (PCIe-only with more than two GPUs, no P2P, multi-node)."""
    if tp not in CUSTOM_ALLREDUCE_WORLD_SIZES:
        return 0
    return 2 * CUSTOM_ALLREDUCE_MAX_SIZE_BYTES + CUSTOM_ALLREDUCE_RANK_DATA_BYTES


CUDA_GRAPH_BYTES_DEFAULT = 512 * MiB
"""CUDA graph pool when not given: vLLM logs -0.45 to 1.03 GiB across models
(same source); graphs share one pool sized by the largest captured batch."""

VLLM_KV_DTYPES = ("fp16", "bf16", "fp32", "fp8", "fp8_e5m2")
"""``--kv-cache-dtype``: auto (the model dtype) or fp8 / fp8_e4m3 / fp8_e5m2."""

LARGE_GPU_BYTES = 70 * GiB
"""vLLM picks larger scheduler defaults on GPUs with at least this much memory."""

SCHEDULER_DEFAULTS_LARGE_GPU = (1024, 8192)
"""(max_num_seqs, max_num_batched_tokens) of vLLM's OpenAI server on such GPUs
(H100, H200, MI300X; not A100): ``EngineArgs._set_default_args``."""

SCHEDULER_DEFAULTS = (256, 2048)
"""The same defaults on every other GPU."""


def scheduler_defaults(job: Job) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens): the user's, else vLLM's defaults for the GPU."""
    large = job.gpu is not None and job.gpu.memory_bytes >= LARGE_GPU_BYTES and "a100" not in job.gpu.slug
    seqs, tokens = SCHEDULER_DEFAULTS_LARGE_GPU if large else SCHEDULER_DEFAULTS
    return job.setup.max_num_seqs or seqs, job.setup.max_num_batched_tokens or tokens


def profile_peak_bytes(job: Job, max_num_seqs: int, max_num_batched_tokens: int, act_bytes: int) -> int:
    """Peak activation of vLLM's profiling run: the larger of one layer's forward over
    ``max_num_batched_tokens`` (flash attention, no score matrix) and the sampler."""
    shape = ForwardShape(sequences=1, query_tokens=max_num_batched_tokens, kv_tokens=max_num_batched_tokens,
                         act_bytes=act_bytes, held_hidden=1)
    forward = layer_peak_bytes(job.spec, shape, tp=job.setup.tp, impl="flash", moe_impl="fused")
    sampler = round(SAMPLER_FP32_COPIES * max_num_seqs * job.spec.vocab_size * FP32_BYTES)
    return max(forward, sampler)


def kv_budget_bytes(total_bytes: int, utilization: float, weights: int, activation_peak: int, non_torch: int) -> int:
    """vLLM's KV cache memory: ``utilization x total - (weights + peak activation +
    non-torch)`` (negative: vLLM refuses to start)."""
    return int(utilization * total_bytes) - (weights + activation_peak + non_torch)


def _max_context_at_batch(job: Job, budget: int, dtype: str) -> int:
    """Longest context whose paged KV for ``batch`` sequences fits ``budget`` (bisection)."""
    def need(ctx: int) -> int:
        return kv_cache_bytes(job.spec, context_tokens=ctx, batch=job.setup.batch, dtype=dtype, tp=job.setup.tp,
                              block_size=job.setup.block_size)

    return largest_true(lambda ctx: need(ctx) <= budget, 1, job.spec.max_position_embeddings)


def build(job: Job) -> Estimate:
    setup, spec = job.setup, job.spec
    kv_dtype = get_kv_dtype(setup.kv_dtype or job.compute_dtype)
    check_engine_kv_dtype(kv_dtype, "vLLM", VLLM_KV_DTYPES)
    act_bytes = get_dtype(job.compute_dtype).element_bytes
    seqs, batched = scheduler_defaults(job)
    weights = weight_split_components(spec, job.weights, setup.tp)
    weight_bytes = sum(c.bytes for c in weights)
    peak = profile_peak_bytes(job, seqs, batched, act_bytes)
    fixed = fixed_overhead_components(setup.overheads, comm_group_ranks=setup.tp)
    nccl = sum(c.bytes for c in fixed if c.name == "overhead/nccl")
    allreduce = custom_allreduce_bytes(setup.tp)
    non_torch = NON_TORCH_BASE_BYTES + nccl + allreduce
    kv_needed = kv_cache_bytes(spec, context_tokens=job.context, batch=setup.batch, dtype=kv_dtype.name,
                               tp=setup.tp, block_size=setup.block_size)
    graphs = 0 if setup.enforce_eager else (setup.cuda_graph_bytes if setup.cuda_graph_bytes is not None
                                              else CUDA_GRAPH_BYTES_DEFAULT)
    context_bytes = setup.overheads.cuda_context_bytes
    components = weights + [
        Component(name="activations/profile_peak", bytes=peak,
                  note=f"profiling run: {batched} batched tokens, sampler over {seqs} seqs x vocab "
                       f"({SAMPLER_FP32_COPIES} fp32 copies)"),
        Component(name="kv_cache", bytes=kv_needed,
                  note=f"{setup.batch} x {job.context} tokens in {setup.block_size}-token blocks, {kv_dtype.name}"),
        Component(name="overhead/non_torch", bytes=NON_TORCH_BASE_BYTES,
                  note="memory outside PyTorch seen by vLLM's profiler (0.13 GiB in vLLM logs)"),
        *[c for c in fixed if c.name in ("overhead/nccl", "overhead/cuda_context")],
        *([Component(name="overhead/custom_allreduce", bytes=allreduce,
                     note=f"vLLM custom all-reduce over {setup.tp} GPUs: 2 x 8 MiB IPC buffers + 8 MiB rank_data "
                          "(custom_all_reduce.py)")] if allreduce else []),
        Component(name="buffers/cuda_graphs", bytes=graphs,
                  note="CUDA graph pool (captured after the KV cache)" if graphs else "enforce_eager: no graphs"),
    ]
    per_token_layer = kv_bytes_per_token_per_layer(spec, kv_dtype, tp=setup.tp)
    details: dict = {"kv_dtype": kv_dtype.name, "block_size": setup.block_size, "max_num_seqs": seqs,
                     "max_num_batched_tokens": batched, "gpu_memory_utilization": setup.gpu_memory_utilization,
                     "kv_budget_bytes": None, "kv_blocks": None, "kv_pool_tokens": None,
                     "max_concurrent_sequences": None, "max_context_at_batch": None}
    warnings: tuple[str, ...] = ()
    reserve = 0
    if job.gpu is not None:
        total = job.gpu.usable_memory_bytes
        budget = kv_budget_bytes(total, setup.gpu_memory_utilization, weight_bytes, peak, non_torch)
        blocks = max(0, budget) // (setup.block_size * per_token_layer) // spec.num_layers
        per_seq = kv_cache_bytes(spec, context_tokens=job.context, batch=1, dtype=kv_dtype.name, tp=setup.tp,
                                 block_size=setup.block_size)
        details.update(kv_budget_bytes=budget, kv_blocks=blocks, kv_pool_tokens=blocks * setup.block_size,
                       max_concurrent_sequences=max(0, budget) // per_seq,
                       max_context_at_batch=_max_context_at_batch(job, max(0, budget), kv_dtype.name))
        if budget <= 0:
            # vLLM raises at start-up when no KV block fits ("No available memory for the
            # cache blocks"): the verdict is "does not fit" and the warning says why.
            warnings += (Remark("vLLM would refuse to start: no memory left for the KV cache "
                                f"({setup.gpu_memory_utilization:g} x {total / GiB:.2f} GiB leaves "
                                f"{budget / GiB:.2f} GiB after weights and activations); raise "
                                "gpu_memory_utilization or use tp", fields=("gpu_memory_utilization", "tp")),)
        elif per_seq > budget:
            warnings += (Remark(f"vLLM would refuse to start: one sequence of {job.context:,} tokens needs "
                                f"{per_seq / GiB:.2f} GiB of KV cache, the budget is {budget / GiB:.2f} GiB "
                                "(lower context, i.e. max_model_len)", fields=("context",)),)
        # Memory vLLM leaves outside its utilisation share holds the context and graphs.
        reserve = max(0, total - int(setup.gpu_memory_utilization * total) - context_bytes - graphs)
    est = base_estimate(job, "prefill", components, details=details, warnings=warnings)
    return with_gpu_verdict(est, job, reserve_bytes=reserve)
