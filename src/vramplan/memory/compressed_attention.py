"""Training activations of DeepSeek-V4's compressed attention, per layer and token.

Source: transformers 5.24 ``modeling_deepseek_v4.py`` (``DeepseekV4Attention``,
``DeepseekV4HCACompressor``, ``DeepseekV4CSACompressor``), which runs eager attention
only. One shared key=value head of ``d = head_dim`` is read over the sequence (the
window is a mask) and, in compressed layers, over ``s / rate`` compressed entries
appended to it. Per token, with ``a`` heads, ``c`` the compute dtype's bytes and
``f = 4``:

- the query latent's fp32 norm (``q_a_norm``, an fp32 module on the 16-bit
  projection): the upcast, ``rsqrt``, the normalised tensor and ``q_b_proj``'s cast of
  it; the per-head unweighted norm on ``q_b_proj``'s output (``q_b_norm``): the output
  itself, its fp32 upcast, the per-head ``rsqrt`` and its cast;
- the key/value norm (``kv_norm``, fp32): the upcast, ``rsqrt``, the normalised tensor;
- eager attention with a sink per head over ``k = s + s / rate`` keys: the query after
  RoPE, the key and the value repeated to every head (``repeat_kv``, copies), the fp32
  softmax over ``k + 1`` columns, its cast, the int64 row maxima; the output made
  contiguous (``o_a_proj``'s input) and the grouped projection's output (``o_b_proj``'s
  input, ``o_groups x o_lora_rank``);
- the compressor of a compressed layer: the gated window sum keeps the key/value
  series (``rate``-token windows: the ``kv_proj`` output, ``d``; overlapping windows of
  the sparse layers: a new ``2 rate``-slot tensor, ``2 d``), the fp32 softmax of the
  gates and its cast, and per compressed entry the sum and its fp32 norm. Its indexer
  only returns top-k positions: nothing it computes reaches the loss, so it keeps
  nothing.

The block's input projections (``q_a_proj``, ``kv_proj``; a compressed layer's
compressor ``kv_proj`` and ``gate_proj`` too) are counted with the norm's readers.
"""

from __future__ import annotations

from vramplan.model.spec import ModelSpec

FP32 = 4
"""Bytes of an fp32 element (the fp32 norms, the softmax)."""
INDEX = 8
"""Bytes of an int64 row-maximum index."""
OVERLAPPING_SERIES = 2
"""Key/value series per token of a compressed-sparse layer (``2 x head_dim`` wide
``kv_proj``: the current window's and the next's)."""


def input_projections(spec: ModelSpec, layer: int) -> int:
    """Linears reading the block's normed input: ``q_a_proj`` and ``kv_proj``, and a
    compressed layer's compressor ``kv_proj`` and ``gate_proj``."""
    ca = spec.compressed_attention
    return 2 + (2 if ca is not None and ca.layer_rates[layer] else 0)


def layer_bytes_per_token(spec: ModelSpec, ctx, layer: int) -> int:
    """What one compressed-attention block keeps for backward, per token (without its
    input norm and input projections' inputs)."""
    ca = spec.compressed_attention
    if ca is None:
        return 0
    c, f, a, d = ctx.c, FP32, spec.num_attention_heads, ca.head_dim
    upcast = f if c < FP32 else 0  # the fp32 norms' copies of a 16-bit input
    rate = ca.layer_rates[layer]
    keys = ctx.seq + (ctx.seq // rate if rate else 0)  # per sequence: the tokens and the compressed entries
    query_latent = upcast * ca.q_lora_rank + f + f * ca.q_lora_rank + c * ca.q_lora_rank
    query_norm = c * a * d + f * a * d + (f + c) * a
    kv_norm = upcast * d + f + f * d
    repeated_kv = 2 * c * a * d * keys // ctx.seq  # key and value, per sequence, spread over its tokens
    attention = (c * a * d + repeated_kv + a * keys * (f + c) + a * (f + INDEX)
                 + c * a * d + c * ca.o_groups * ca.o_lora_rank)
    compressor = 0
    if rate:
        series = OVERLAPPING_SERIES if ca.is_indexed(layer) else 1
        compressor = series * d * (c + f + c) + (f + f) * d // rate
    return query_latent + query_norm + kv_norm + attention + compressor


def indexer_moment_bytes_per_token(spec: ModelSpec, act_bytes: int) -> int:
    """At inference, what a compressed-sparse layer holds while its indexer scores, per
    token, besides the scores (:func:`vramplan.memory.sparse_indexer.compressed_scores_transient_bytes`):
    the normed query latent, the rotated query and key=value, the two compressors'
    projections (the attention's ``2 d`` wide, the indexer's ``2 d_i``), their gates plus
    position bias in fp32, and the ``2 rate``-slot key/value (compute dtype) and gate
    (fp32) tensors they fill, one set of ``2 rate`` slots per ``rate`` tokens; and the
    indexer's query after RoPE. 0 without compressed-sparse layers."""
    ca = spec.compressed_attention
    if ca is None or not any(ca.is_indexed(i) for i in range(spec.num_layers)):
        return 0
    c, d, di = act_bytes, ca.head_dim, ca.index_head_dim
    attention = c * (ca.q_lora_rank + spec.num_attention_heads * d + d)

    def compressor(width: int) -> int:
        series = OVERLAPPING_SERIES * width
        return 2 * c * series + FP32 * series + c * series + FP32 * series  # kv, gate; gate + bias; slots

    return attention + compressor(d) + compressor(di) + c * ca.index_heads * di

