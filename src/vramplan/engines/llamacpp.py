"""llama.cpp: GGUF weights and KV split by layer between the GPU and host RAM.

- ``--n-gpu-layers N`` puts the *last* N decoder layers on the GPU
  (``llama_model::load_tensors``: ``i_gpu_start = n_layer - n_gpu_layers``); N greater
  than the layer count also moves the output head and final norm. The token
  embedding always stays in host memory (its ``get_rows`` runs on the CPU).
- The KV cache of a layer lives with the layer (``--no-kv-offload`` off). Cells:
  ``context x batch`` (``-np`` slots share one unified cache of ``n_ctx`` cells),
  padded to 256 (``llama_kv_cache`` pads ``n_ctx``); sliding layers keep
  ``n_swa x slots + n_ubatch`` cells (``llama_kv_cache_iswa``). K and V default to
  f16 (``--cache-type-k/-v``); MLA models cache the latent (K: ``kv_lora_rank +
  rope``, V: ``kv_lora_rank``).
- The compute buffer is reserved for the worst ``n_ubatch`` pass, fp32 activations
  (:func:`compute_buffer_bytes`): without flash attention the ``KQ`` scores of
  ``n_ubatch x n_kv x heads`` dominate at long context, else the logits of
  ``n_ubatch`` tokens or the MLP.
- The output buffer (host) holds ``slots x vocab`` fp32 logits; the host compute
  buffer the graph inputs (f32 mask, fetched embeddings).
"""

from __future__ import annotations

from dataclasses import replace

from vramplan.dtypes import FP16_BYTES, FP32_BYTES
from vramplan.engines import Job, base_estimate, with_gpu_verdict
from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.gguf_types import GgufRecipe, get_recipe
from vramplan.intmath import round_up
from vramplan.memory.inference_buffers import ForwardShape, mlp_phase_bytes
from vramplan.memory.kv_cache import check_engine_kv_dtype, get_kv_dtype, kv_bytes_per_token_per_layer
from vramplan.memory.overhead import fixed_overhead_components
from vramplan.memory.stored_weights import stored_applies, stored_layer_split
from vramplan.memory.weights import LayerWeights, gguf_group_bytes, layer_weights
from vramplan.model.spec import ModelSpec
from vramplan.quant import WeightFormat

F16_BYTES = FP16_BYTES
"""The flash-attention mask is f16."""

LLAMACPP_KV_DTYPES = ("fp32", "fp16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
"""``--cache-type-k/-v`` choices (``common/arg.cpp`` ``kv_cache_types``)."""

KV_PAD_CELLS = 256
"""llama.cpp pads the KV cache to a multiple of 256 cells."""

_PLAIN_TO_GGUF = {"fp32": "F32", "fp16": "F16", "bf16": "BF16", "mxfp4": "MXFP4_MOE"}


def gguf_recipe(job: Job) -> GgufRecipe:
    """The GGUF recipe: as given, or the checkpoint's dtype converted as-is."""
    if isinstance(job.weights, GgufRecipe):
        return job.weights
    if isinstance(job.weights, WeightFormat) and job.weights.name in _PLAIN_TO_GGUF:
        return get_recipe(_PLAIN_TO_GGUF[job.weights.name])
    raise InputError(f"weights {job.weights.name}: llama.cpp runs GGUF files; choose a GGUF recipe such as "
                     "Q4_K_M, Q5_K_M, Q8_0 or F16", fields=("weights",))


def _pad(cells: int) -> int:
    return round_up(cells, KV_PAD_CELLS)


def kv_cells_per_layer(spec: ModelSpec, context: int, slots: int, n_ubatch: int) -> list[int]:
    """KV cells each layer holds (all sequences together)."""
    full = _pad(context * slots)
    kinds = spec.attention_kinds()
    cells = []
    for kind in kinds:
        if kind == "sliding_attention" and spec.sliding_window is not None:
            cells.append(min(full, _pad(spec.sliding_window * slots + n_ubatch)))
        else:
            cells.append(full)
    return cells


def kv_bytes_per_cell(spec: ModelSpec, dtype: str) -> int:
    """Bytes of one cell (token) in one layer: K and V rows in the cache type."""
    if spec.mla is not None:
        d = get_kv_dtype(dtype)
        return d.row_bytes(spec.mla.kv_lora_rank + spec.mla.qk_rope_head_dim) + d.row_bytes(spec.mla.kv_lora_rank)
    return kv_bytes_per_token_per_layer(spec, dtype)


HIDDEN_BUFFERS_AT_ATTENTION = 4
"""fp32 hidden-sized tensors alive beside the scores: the residual, the normed input,
Q and the attention output."""


def compute_buffer_bytes(spec: ModelSpec, *, n_ubatch: int, n_kv: int, flash_attention: bool) -> int:
    """GPU compute buffer llama.cpp reserves for one ``n_ubatch`` pass (worst case:
    every token outputs logits, all ``n_kv`` cells attended), fp32 activations; ggml's
    allocator reuses memory between nodes, so the buffer is the largest moment of:

    - attention: without flash attention the ``KQ`` scores (``n_ubatch x n_kv x heads``
      fp32) and the f32 ``KQ_mask`` (``n_ubatch x n_kv``); with it only the f16 mask;
      plus :data:`HIDDEN_BUFFERS_AT_ATTENTION` hidden-sized tensors;
    - the MLP (:func:`~vramplan.memory.inference_buffers.mlp_phase_bytes` at 4 bytes);
    - the output: ``n_ubatch x vocab`` fp32 logits.

    Fits llama.cpp's logged "CUDA0 compute buffer size" (tests/test_infer_engines.py).
    """
    h = spec.hidden_size
    hidden = HIDDEN_BUFFERS_AT_ATTENTION * n_ubatch * h * FP32_BYTES
    if flash_attention:
        attention = n_ubatch * n_kv * F16_BYTES + hidden
    else:
        attention = n_ubatch * n_kv * spec.num_attention_heads * FP32_BYTES + n_ubatch * n_kv * FP32_BYTES + hidden
    mlp = mlp_phase_bytes(spec, ForwardShape(sequences=1, query_tokens=n_ubatch, kv_tokens=n_kv,
                                             act_bytes=FP32_BYTES))
    output = n_ubatch * spec.vocab_size * FP32_BYTES
    return max(attention, mlp, output)


def host_compute_buffer_bytes(spec: ModelSpec, *, n_ubatch: int, n_kv: int) -> int:
    """Host-side compute buffer (``CUDA_Host compute buffer``): the graph inputs built
    on the CPU — the f32 ``KQ_mask`` of ``n_ubatch x n_kv`` and the token embeddings
    fetched by ``get_rows`` (``n_ubatch x h`` fp32)."""
    return n_ubatch * n_kv * FP32_BYTES + n_ubatch * spec.hidden_size * FP32_BYTES


def build(job: Job) -> Estimate:
    setup, spec = job.setup, job.spec
    if setup.tp != 1:
        raise InputError(f"tp {setup.tp}: llama.cpp splits by layer (n_gpu_layers), not by tensor parallelism "
                         "here; use tp=1", fields=("tp", "n_gpu_layers"))
    recipe = gguf_recipe(job)
    kv_dtype = get_kv_dtype(setup.kv_dtype or "fp16")
    check_engine_kv_dtype(kv_dtype, "llama.cpp", LLAMACPP_KV_DTYPES)
    n = spec.num_layers
    ngl = n + 1 if setup.n_gpu_layers is None else min(setup.n_gpu_layers, n + 1)
    first_gpu = n - min(ngl, n)
    on_gpu = [i >= first_gpu for i in range(n)]
    lw = layer_weights(spec, gguf_group_bytes(spec, recipe))
    if setup.weights is None and stored_applies(spec, None, engine_gguf=True):  # a GGUF file: its stored bytes
        per_layer, embedding, output = stored_layer_split(spec)
        lw = LayerWeights(per_layer_bytes=per_layer, embedding_bytes=embedding, output_bytes=output)
        recipe = replace(recipe, name="as stored")
    cells = kv_cells_per_layer(spec, job.context, setup.batch, setup.n_ubatch)
    cell_bytes = kv_bytes_per_cell(spec, kv_dtype.name)
    kv = [c * cell_bytes for c in cells]
    output_on_gpu = ngl > n
    gpu_weights = sum(b for b, g in zip(lw.per_layer_bytes, on_gpu) if g) + (lw.output_bytes if output_on_gpu else 0)
    host_weights = lw.embedding_bytes + sum(b for b, g in zip(lw.per_layer_bytes, on_gpu) if not g) + \
        (0 if output_on_gpu else lw.output_bytes)
    gpu_kv = sum(b for b, g in zip(kv, on_gpu) if g)
    host_kv = sum(kv) - gpu_kv
    compute = compute_buffer_bytes(spec, n_ubatch=min(setup.n_ubatch, max(cells)), n_kv=max(cells),
                                   flash_attention=setup.flash_attention)
    where = f"{min(ngl, n)}/{n} layers" + (" + output" if output_on_gpu else "")
    components = [
        Component(name="weights", bytes=gpu_weights, note=f"GGUF {recipe.name}: {where} on the GPU"),
        Component(name="kv_cache", bytes=gpu_kv,
                  note=f"{cells[-1]} cells x {kv_dtype.name} for the GPU layers (n_ctx padded to {KV_PAD_CELLS})"),
        Component(name="buffers/compute", bytes=compute,
                  note=f"ggml compute buffer for n_ubatch={setup.n_ubatch}, fp32 activations (reserved even "
                       "with no layer offloaded: large matmuls still run on the GPU)"
                       f"{'' if setup.flash_attention else ' + KQ scores (no flash attention)'}"),
        *[c for c in fixed_overhead_components(setup.overheads) if c.name == "overhead/cuda_context"],
    ]
    host = [
        Component(name="weights", bytes=host_weights, note="token embedding (always host) + CPU layers"),
        Component(name="kv_cache", bytes=host_kv, note="KV of the CPU layers"),
        Component(name="logits", bytes=setup.batch * spec.vocab_size * FP32_BYTES,
                  note="output buffer: one fp32 row of logits per sequence"),
        Component(name="buffers/compute",
                  bytes=host_compute_buffer_bytes(spec, n_ubatch=min(setup.n_ubatch, max(cells)), n_kv=max(cells)),
                  note="host compute buffer: f32 KQ mask + token embeddings of one micro-batch"),
    ]
    details = {"gguf_recipe": recipe.name, "kv_dtype": kv_dtype.name, "n_gpu_layers": min(ngl, n + 1),
               "kv_cells": max(cells), "gguf_file_bytes": lw.total_bytes,
               "gguf_bits_per_weight": round(8 * lw.total_bytes / _params(spec), 3)}
    est = base_estimate(job, "prefill", components, host_components=tuple(host), details=details)
    return with_gpu_verdict(est, job)


def _params(spec: ModelSpec) -> int:
    from vramplan.model.params import count_params

    return count_params(spec).total_params
