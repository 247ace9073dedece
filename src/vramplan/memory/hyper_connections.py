"""Training activations of hyper-connections: the ``hc_mult`` residual streams and the
fp32 weights that read and write them, per decoder layer and micro-batch.

Source: transformers 5.24 ``modeling_hy_v4.py`` (``HYV4HyperConnection``,
``HYV4HyperHead``, ``HYV4DecoderLayer``, ``HYV4Model``), and the DeepSeek-V4 form it
follows (``DeepseekV4HyperConnection``). Per token, with ``N`` streams of ``h``, ``s``
the stream's element size (the residual's: the embedding output's dtype), ``f = 4``:

- the model expands the embedding output to ``N`` streams (``.contiguous()``, ``s N h``),
  and every sub-block (attention, MLP) writes new streams,
  ``(post.float() * out.float() + residual.float()).to(dtype)``: ``s N h`` each, kept by
  the next hyper-connection's reads (``F.linear(flat, fn)``, ``square`` in the
  unweighted norm, ``pre * streams``). With 16-bit streams ``flat =
  streams.flatten(2).float()`` is a second, fp32 copy (``f N h``), saved by the linear
  and the norm.
- each hyper-connection runs with autocast off, in fp32: the ``fn`` projection's output
  and its product with the norm's ``rsqrt`` (``2 x 2N`` each: pre and post logits), the
  two sigmoids' outputs and the two ``+ eps`` sums (``N`` each: ``pre`` read by the
  collapse, ``post`` by the write-back), the norm's ``rsqrt`` (1): ``f (8N + 1)``.
  The collapsed sub-block input (``sum(pre * streams)``) is what the block's norm
  saves as its input: the layer formula's residual term.
- the write-back's product saves the sub-block output upcast to fp32 (``out.float()``,
  ``f h``; in fp32 the output itself).
- after the last layer ``HYV4HyperHead`` collapses the streams once more: its
  projection, the product, the sigmoid and the ``+ eps`` sum (``N`` each) and the
  ``rsqrt``: ``f (4N + 1)``, plus the fp32 copy of 16-bit streams.

Where a base is frozen (LoRA) the projection ``fn`` gets no gradient, and its matmul
keeps no copy of ``flat``; the other readers still keep the streams.

DeepSeek-V4's form (``DeepseekV4HyperConnection``, ``DeepseekV4DecoderLayer``) runs
under autocast and also mixes the streams: ``F.linear`` saves its compute-dtype cast of
the normalised streams and its ``(2 + N) N``-wide output; the mixing matrix ``comb``
(``N x N``: a softmax, ``+ eps``, then ``hc_sinkhorn_iters`` row and column
normalisations, each ``comb / (comb.sum(...) + eps)`` keeping its input and the sum)
keeps ``2 I`` matrices of ``N x N`` and ``2 I - 1`` vectors of ``N``, with the pre and
post weights' sigmoid, ``+ eps`` and ``2 x`` outputs (4 more); the write-back
``post * out + comb.T @ streams`` keeps the sub-block output as it is and, under
autocast, the matmul's compute-dtype casts of the streams and of ``comb``. Its head
(``DeepseekV4HyperHead``) keeps the cast of the normalised streams, the projection
output, the sigmoid and ``+ eps`` outputs.
"""

from __future__ import annotations

from vramplan.model.spec import ModelSpec

FP32 = 4
"""Bytes of an fp32 element: the mixing runs with autocast off, in fp32."""

SUB_BLOCKS_PER_LAYER = 2
"""Hyper-connections per decoder layer: before attention (``attn_hc``) and before the
MLP (``ffn_hc``)."""
MIX_FLOATS_PER_STREAM = 8
"""fp32 elements per stream a hyper-connection keeps: projection output and its
normalised product (2 each: pre, post), two sigmoid outputs, two ``+ eps`` sums."""
HEAD_FLOATS_PER_STREAM = 4
"""Those of ``HYV4HyperHead`` (pre only): projection, product, sigmoid, ``+ eps``."""
SCALE_PRODUCTS = {"layer": 2, "head": 1}
"""Of those, the normalised projections (pre and post; the head's pre) that ``logits *
scale`` keeps only for the scale's gradient: not kept under a frozen base."""


def _stream_bytes_per_token(spec: ModelSpec, ctx) -> int:
    """One set of ``N`` streams as the next hyper-connection keeps it: in their own
    dtype, plus the fp32 ``flat`` copy when they are 16-bit."""
    n, h = spec.hyper_connection_streams, spec.hidden_size
    return n * h * ctx.r + (n * h * FP32 if ctx.r < FP32 else 0)


def _mix_floats_per_stream(ctx, where: str) -> int:
    """The mixing weights' fp32 elements kept per stream (``where``: a layer's
    hyper-connection or the head's)."""
    kept = MIX_FLOATS_PER_STREAM if where == "layer" else HEAD_FLOATS_PER_STREAM
    return kept - (SCALE_PRODUCTS[where] if ctx.frozen_base else 0)


def layer_bytes_per_token(spec: ModelSpec, ctx, layer: int = 0) -> int:
    """What one decoder layer's two hyper-connections keep beyond the layer formula,
    per token: each sub-block's input streams, its fp32 mixing weights and its output's
    fp32 upcast. Under a frozen base the first layer's attention hyper-connection reads
    the frozen embedding's output, which needs no gradient: it keeps nothing but the
    write-back's upcast."""
    n, h = spec.hyper_connection_streams, spec.hidden_size
    if not n:
        return 0
    if spec.hyper_connection_residual_mix:
        return residual_mix_layer_bytes_per_token(spec, ctx)
    mixing = _stream_bytes_per_token(spec, ctx) + FP32 * (_mix_floats_per_stream(ctx, "layer") * n + 1)
    reading = SUB_BLOCKS_PER_LAYER - (1 if ctx.frozen_base and layer == 0 else 0)
    return reading * mixing + SUB_BLOCKS_PER_LAYER * FP32 * h


def head_bytes_per_token(spec: ModelSpec, ctx) -> int:
    """After the last layer: the last streams and the head's mixing weights."""
    n = spec.hyper_connection_streams
    if not n:
        return 0
    if spec.hyper_connection_residual_mix:
        linear = _mixing_linear_bytes(ctx)
        return n * spec.hidden_size * (ctx.r + linear) + linear * n + FP32 * (2 * n + 1)
    return _stream_bytes_per_token(spec, ctx) + FP32 * (_mix_floats_per_stream(ctx, "head") * n + 1)


def _mixing_linear_bytes(ctx) -> int:
    """Element size of what DeepSeek-V4's mixing projection saves: its input cast to the
    compute dtype under autocast, else the fp32 normalised streams (and its output alike)."""
    return ctx.c if (ctx.recipe.autocast or ctx.autocast_region) else FP32


SINKHORN_EXTRA_VECTORS = 3
"""``N``-wide fp32 vectors DeepSeek-V4's mixing keeps besides the Sinkhorn sums: the
pre weight's sigmoid and ``+ eps``, the post weight's sigmoid and ``2 x`` (4), less the
first column normalisation's missing row sum (``2 I - 1`` sums for ``I`` iterations)."""


def residual_mix_layer_bytes_per_token(spec: ModelSpec, ctx) -> int:
    """DeepSeek-V4's two hyper-connections of one layer, per token (see the module
    docstring): the streams (in their dtype, and cast for the mixing matmul under
    autocast), the projection's saved input and output, the Sinkhorn iterations'
    matrices and sums, the write-back's cast of ``comb`` and the sub-block output."""
    n, h, iters = spec.hyper_connection_streams, spec.hidden_size, spec.hyper_connection_sinkhorn_iters
    autocast = ctx.recipe.autocast or ctx.autocast_region
    linear = _mixing_linear_bytes(ctx)
    streams = n * h * (ctx.r + (ctx.c if autocast else 0) + linear)
    mixing = linear * (2 + n) * n + FP32 * (2 * iters * n * n + (2 * iters + SINKHORN_EXTRA_VECTORS) * n + 1)
    write_back = (ctx.c if autocast else 0) * n * n + ctx.c * h
    return SUB_BLOCKS_PER_LAYER * (streams + mixing + write_back)


def checkpoint_bytes_per_token(spec: ModelSpec, ctx) -> int:
    """A checkpointed layer's input under full recomputation: its ``N`` streams."""
    return spec.hyper_connection_streams * spec.hidden_size * ctx.r
