"""Overheads: memory a GPU process holds beside the tensors of the model.

Each term is a named component under the ``overhead`` category, with its source in
the note, and every default is a field of :class:`Overheads` the user can override.
Nothing here is a hidden factor: the allocator slack, the one proportional term, is
stated as a fraction of the bytes it applies to and shown as its own line.

Typical values and where they come from:

- **CUDA context** (``cuda_context_bytes``): the driver's per-process state, code
  modules and the runtime's heap, paid once per GPU before any tensor exists. With
  lazy module loading (``CUDA_MODULE_LOADING=LAZY``, the default since CUDA 11.7 and
  PyTorch 1.13) it is about 300-600 MiB and grows with the GPU and driver; eager loading
  of all PyTorch kernels costs 1-2 GiB. It is what ``nvidia-smi`` shows for a process
  that has only called ``torch.cuda.init()``; ``torch.cuda.memory_reserved()`` never
  sees it. vLLM counts it in its "non-torch memory" (``vllm/utils`` ``MemorySnapshot``).
- **cuBLAS workspace** (``cublas_workspace_bytes``): PyTorch gives every cuBLAS handle
  a workspace sized by ``CUBLAS_WORKSPACE_CONFIG`` (``:SIZE_KiB:COUNT`` pairs, summed).
  NVIDIA's ``cublasSetWorkspace`` documentation recommends 4 MiB before Hopper and
  32 MiB on Hopper and later; PyTorch defaults to ``:4096:2:16:8`` (8 MiB + 128 KiB)
  before Hopper and ``:4096:8`` (32 MiB) on Hopper (``aten/src/ATen/cuda/CublasHandlePool.cpp``).
  cuBLASLt shares that workspace in recent PyTorch. Parse a config with
  :func:`cublas_workspace_bytes`.
- **Attention-library workspace** (``attention_workspace_bytes``): FlashAttention 2
  keeps no persistent workspace (its split-KV decode scratch is per call and counted
  with the activations); FlashInfer takes a fixed float workspace when its wrapper is
  built (vLLM passes 256 MiB, ``FLASHINFER_WORKSPACE_BUFFER_SIZE``). Engines set it.
- **NCCL buffers** under tensor or data parallelism (:func:`nccl_buffer_bytes`): per
  channel and per peer connection NCCL allocates one receive buffer per protocol:
  Simple ``NCCL_BUFFSIZE`` (default 4 MiB, NCCL environment-variable docs), LL128
  (120 elements x 640 threads x 8 steps x 8 B = 4,915,200 B) and LL (8 lines x 512
  threads x 8 steps x 16 B = 524,288 B), the sizes in NCCL's ``src/include/device.h``.
  A ring connects each rank to 2 neighbours per channel. NVLink SHARP (NVLS) buffers
  on NVSwitch systems are not included.
- **Allocator slack** (``allocator_slack_fraction``): PyTorch's caching allocator
  reserves more than it hands out (block rounding to 512 B, 2 MiB small-block segments,
  large blocks split and cached). The gap ``memory_reserved - memory_allocated`` is a
  few percent of the tensors in steady inference; ``expandable_segments:True`` in
  ``PYTORCH_CUDA_ALLOC_CONF`` brings it near zero. Engines that pre-allocate one pool
  (vLLM's KV cache, llama.cpp's buffers) apply it only to what they allocate piecemeal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.validate import SIZE_MAX, integer
from vramplan.units import KiB, MiB

CUDA_CONTEXT_BYTES_TYPICAL = 500 * MiB
"""Middle of the 300-600 MiB that a lazily loaded CUDA context takes on current
drivers (see the module docstring)."""

CUBLAS_WORKSPACE_CONFIG_HOPPER = ":4096:8"
"""PyTorch's default on Hopper and later: 8 workspaces of 4096 KiB = 32 MiB, the size
NVIDIA recommends for sm90 (cuBLAS docs, ``cublasSetWorkspace``)."""

CUBLAS_WORKSPACE_CONFIG_PRE_HOPPER = ":4096:2:16:8"
"""PyTorch's default before Hopper: 2 x 4096 KiB + 8 x 16 KiB = 8 MiB + 128 KiB."""

NCCL_SIMPLE_BUFFSIZE_BYTES = 4 * MiB
"""``NCCL_BUFFSIZE`` default: 4 MiB per channel and peer (NCCL env-variable docs)."""

NCCL_LL128_BUFFSIZE_BYTES = 120 * 640 * 8 * 8
"""LL128 protocol buffer: 120 elements per thread x 640 threads x 8 steps x 8 B
(``NCCL_LL128_ELEMS_PER_THREAD``, ``NCCL_LL128_MAX_NTHREADS``, ``NCCL_STEPS``,
``sizeof(uint64_t)`` in NCCL ``src/include/device.h``)."""

NCCL_LL_BUFFSIZE_BYTES = 8 * 512 * 8 * 16
"""LL protocol buffer: 8 lines per thread x 512 threads x 8 steps x 16 B per line
(``NCCL_LL_LINES_PER_THREAD``, ``NCCL_LL_MAX_NTHREADS``, ``NCCL_STEPS``,
``sizeof(ncclLLFifoLine)``)."""

NCCL_RING_PEERS = 2
"""A ring links each rank to its previous and next rank on every channel."""

_WORKSPACE_PAIR = re.compile(r":(\d+):(\d+)")


def cublas_workspace_bytes(config: str) -> int:
    """Bytes of one cuBLAS handle's workspace for a ``CUBLAS_WORKSPACE_CONFIG`` value.

    The value is a list of ``:SIZE_KiB:COUNT`` pairs; the workspace is their sum
    (PyTorch ``parseChosenWorkspaceSize`` in ``CublasHandlePool.cpp``):
    ``":4096:8"`` -> 32 MiB, ``":4096:2:16:8"`` -> 8 MiB + 128 KiB.
    """
    text = config.strip()
    pairs = _WORKSPACE_PAIR.findall(text)
    if not pairs or "".join(f":{a}:{b}" for a, b in pairs) != text:
        raise InputError(f"cublas workspace config: expected ':SIZE_KiB:COUNT' pairs such as ':4096:8', got {config!r}")
    return sum(int(size) * KiB * int(count) for size, count in pairs)


def nccl_buffer_bytes(*, peers_in_group: int, channels: int, buffsize_bytes: int = NCCL_SIMPLE_BUFFSIZE_BYTES) -> int:
    """Bytes of NCCL protocol buffers on one rank of a communicator of ``peers_in_group``
    ranks (0 for a single rank).

    ``channels x min(ranks - 1, 2 ring neighbours) x (Simple + LL128 + LL buffers)``;
    sizes from NCCL ``src/include/device.h`` and the ``NCCL_BUFFSIZE`` docs. Departs
    from NCCL in leaving out tree and NVLS connections, set up lazily by newer NCCL
    only when those algorithms run.
    """
    if peers_in_group <= 1:
        return 0
    neighbours = min(peers_in_group - 1, NCCL_RING_PEERS)
    per_connection = buffsize_bytes + NCCL_LL128_BUFFSIZE_BYTES + NCCL_LL_BUFFSIZE_BYTES
    return channels * neighbours * per_connection


@dataclass(frozen=True, kw_only=True)
class Overheads:
    """The per-GPU overheads of one process; every default is documented above and
    can be overridden."""

    cuda_context_bytes: int = CUDA_CONTEXT_BYTES_TYPICAL
    """CUDA context and loaded kernels (300-600 MiB typical with lazy loading)."""
    cublas_workspace_config: str = CUBLAS_WORKSPACE_CONFIG_HOPPER
    """``CUBLAS_WORKSPACE_CONFIG`` of the process; PyTorch's Hopper default by default."""
    cublas_handles: int = 1
    """cuBLAS handles holding a workspace (one per thread and stream that runs matmuls)."""
    attention_workspace_bytes: int = 0
    """Persistent workspace of the attention library (FlashInfer: 256 MiB in vLLM)."""
    nccl_channels: int = 16
    """NCCL channels per communicator (NCCL picks 2-32 from the topology; 16 is
    typical on 8-GPU NVLink nodes, fewer over PCIe)."""
    nccl_buffsize_bytes: int = NCCL_SIMPLE_BUFFSIZE_BYTES
    """``NCCL_BUFFSIZE``: Simple-protocol buffer per channel and peer."""
    allocator_slack_fraction: float = 0.03
    """Reserved-but-unallocated share of PyTorch's caching allocator over the bytes
    allocated piecemeal (a few percent in steady inference; 0 with
    ``expandable_segments:True``)."""

    def __post_init__(self) -> None:
        for name in ("cuda_context_bytes", "attention_workspace_bytes", "nccl_buffsize_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{name}: expected a non-negative number of bytes, got {value!r}")
        for name in ("cublas_handles", "nccl_channels"):
            integer(name, getattr(self, name), 1, SIZE_MAX)
        if not 0 <= self.allocator_slack_fraction < 1:
            raise InputError(f"allocator_slack_fraction: expected a fraction in [0, 1), got "
                             f"{self.allocator_slack_fraction!r}")
        cublas_workspace_bytes(self.cublas_workspace_config)


def fixed_overhead_components(overheads: Overheads, *, comm_group_ranks: int = 1) -> list[Component]:
    """The overheads that do not scale with the model: CUDA context, cuBLAS workspace,
    attention-library workspace and NCCL buffers (for a communicator of
    ``comm_group_ranks`` ranks; none for one GPU). Zero-byte terms are left out."""
    cublas = cublas_workspace_bytes(overheads.cublas_workspace_config) * overheads.cublas_handles
    nccl = nccl_buffer_bytes(peers_in_group=comm_group_ranks, channels=overheads.nccl_channels,
                             buffsize_bytes=overheads.nccl_buffsize_bytes)
    terms = [
        Component(name="overhead/cuda_context", bytes=overheads.cuda_context_bytes,
                  note="driver context and lazily loaded kernels; 300-600 MiB typical (CUDA lazy loading)"),
        Component(name="overhead/cublas_workspace", bytes=cublas,
                  note=f"CUBLAS_WORKSPACE_CONFIG={overheads.cublas_workspace_config} x {overheads.cublas_handles} "
                       "handle(s) (PyTorch CublasHandlePool; cuBLAS docs)"),
        Component(name="overhead/attention_workspace", bytes=overheads.attention_workspace_bytes,
                  note="attention library's persistent workspace (FlashInfer float buffer)"),
        Component(name="overhead/nccl", bytes=nccl,
                  note=f"{overheads.nccl_channels} channels x ring neighbours x (Simple "
                       f"{overheads.nccl_buffsize_bytes // MiB} MiB + LL128 + LL) buffers (NCCL device.h, "
                       f"NCCL_BUFFSIZE) for {comm_group_ranks} ranks"),
    ]
    return [t for t in terms if t.bytes > 0]


def allocator_slack_component(overheads: Overheads, piecemeal_bytes: int) -> Component | None:
    """``allocator_slack_fraction x piecemeal_bytes``: what PyTorch's caching allocator
    reserves beyond the tensors it hands out; ``None`` when zero."""
    slack = int(piecemeal_bytes * overheads.allocator_slack_fraction)
    if slack <= 0:
        return None
    return Component(name="overhead/allocator_slack", bytes=slack,
                     note=f"{overheads.allocator_slack_fraction:.0%} of {piecemeal_bytes:,} B allocated piecemeal "
                          "(caching-allocator reserved - allocated)")


def fit_overhead_components(overheads: Overheads, *, piecemeal_bytes: int, comm_group_ranks: int = 1) -> list[Component]:
    """The non-tensor overheads a PyTorch process holds beside ``piecemeal_bytes`` of
    tensors allocated one by one: :func:`fixed_overhead_components` (CUDA context,
    cuBLAS workspace, attention workspace, NCCL) and :func:`allocator_slack_component`
    over those tensors. This is the one list every fit verdict counts beside a
    tensor-only peak (training, traced steps) and that transformers serving holds
    among its components."""
    slack = allocator_slack_component(overheads, piecemeal_bytes)
    return fixed_overhead_components(overheads, comm_group_ranks=comm_group_ranks) + ([slack] if slack else [])


def fit_verdict(est: Estimate, gpu_slug: str, capacity_bytes: int, *, reserve_bytes: int = 0,
                overheads: Overheads | None = None, comm_group_ranks: int = 1, pooled_bytes: int = 0) -> Estimate:
    """``est`` with its verdict: the tensor peak plus the process overheads it does not
    already hold (:func:`vramplan.memory.overhead.fit_overhead_components`: CUDA
    context, cuBLAS workspace, allocator slack over the tensors; NCCL for a group of
    ``comm_group_ranks``) plus ``reserve_bytes``, against ``capacity_bytes``.

    ``pooled_bytes``: bytes of ``est`` an engine allocates as one pool rather than
    tensor by tensor (a colocated vLLM engine's weights, KV pool and graphs in a
    post-training job): the allocator slack does not apply to them."""
    overheads = overheads or Overheads()
    held = est.get("overhead")
    if held:  # the estimate already holds the fixed terms; add the slack only
        slack = allocator_slack_component(overheads, est.total_bytes - held - pooled_bytes)
        extra = [slack] if slack else []
    else:
        extra = fit_overhead_components(overheads, piecemeal_bytes=est.total_bytes - pooled_bytes,
                                        comm_group_ranks=comm_group_ranks)
    return est.with_verdict(gpu_slug, capacity_bytes, reserve_bytes=reserve_bytes, overheads=tuple(extra))
