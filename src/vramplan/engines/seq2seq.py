"""transformers serving of encoder-decoder (T5, BART) and encoder-only (BERT) models.

Encoder-decoder, ``generate``:

- ``encode``: the encoder runs once over ``input_tokens`` per sequence; its high point
  is one encoder layer's live tensors (the decoder-layer formulas of
  :mod:`vramplan.memory.inference_buffers` on the encoder's widths, attending to all
  input tokens) beside the residual stream;
- ``decode``: the self-attention cache of the decoded tokens
  (:func:`vramplan.memory.kv_cache.kv_cache_bytes` on the decoder stack), the
  cross-attention K/V fixed by the input (:mod:`vramplan.memory.cross_attention`), the
  encoder output ``generate`` keeps, one decoder layer's live tensors for one new
  token, and the last position's logits.

Encoder-only (masked-LM forward): no KV cache; one forward over the whole sequence,
whose high point is one layer's live tensors or every position's logits.

The activation terms apply the decoder formulas to these stacks; the caches are checked
against transformers objects (tests/test_encoder_decoder.py) and the peaks against
``vramplan trace --infer`` (tests/test_encdec_training_trace.py).
"""

from __future__ import annotations

from dataclasses import replace

from vramplan.dtypes import get_dtype
from vramplan.engines import Job, base_estimate, peak_of, with_gpu_verdict
from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.memory.cross_attention import cross_kv_bytes, encoder_output_bytes
from vramplan.memory.inference_buffers import (ForwardShape, attention_phase_bytes, eager_probs_bytes, hf_layer_flow,
                                               layer_peak_bytes, logits_bytes, mlp_phase_bytes)
from vramplan.memory.kv_cache import check_engine_kv_dtype, get_kv_dtype, kv_cache_bytes
from vramplan.memory.overhead import allocator_slack_component, fixed_overhead_components
from vramplan.memory.weights import weight_split_components
from vramplan.model.spec import ModelSpec
from vramplan.quant import WeightFormat

HELD_HIDDEN = 2
"""The embedding output and the layer input stay bound through each layer (as for decoders)."""
HEAD_HIDDEN = 2
"""Encoder-only masked-LM forward at its vocabulary projection: the last hidden state
(``sequence_output``, bound in ``BertForMaskedLM.forward``) and the head transform's
output (dense, activation, LayerNorm) the projection reads, ``t x h`` each."""
RELATIVE_BIAS_TYPES = frozenset({"t5", "mt5"})
"""Encoder-decoders whose encoder's first layer computes a relative-position bias that
every layer then reads (``T5Attention.compute_bias``, ``has_relative_attention_bias`` on
layer 0 only)."""
BUCKET_BYTES_PER_PAIR = 6 * 8 + 1
"""Bytes per (query, key) pair alive at the high point of T5's bidirectional
``_relative_position_bucket`` (at ``torch.where``): six int64 ``s x s`` tensors (the
relative positions in ``compute_bias``, the sign buckets, their absolute values, the
logarithmic buckets before and after the ``min`` clamp, the ``where`` output) and the
``is_small`` bool mask. Measured on the trace (fake CUDA run) at 1,024-4,096 tokens."""
ENCODE_HIDDEN = 2
"""At layer 0's bias: the embedding output and the first norm's output (``t x h`` each)."""
CROSS_KV_PROJECTIONS = 2
"""The first decoder step projects each layer's cross-attention k and v over the input
tokens (``t_in x heads x d_kv`` each); a ``StaticCache`` copies them in, so one layer's
pair is alive beside the caches at a time."""


def encoder_view(spec: ModelSpec) -> ModelSpec:
    """The encoder stack as a plain stack of layers (for the per-layer formulas)."""
    enc = spec.encoder
    if enc is None:
        return replace(spec, architecture="decoder")
    return replace(spec, architecture="decoder", encoder=None, num_layers=enc.num_layers,
                   num_attention_heads=enc.num_attention_heads, num_kv_heads=enc.num_attention_heads,
                   head_dim=enc.head_dim, intermediate_size=enc.intermediate_size)


def _layer(spec: ModelSpec, shape: ForwardShape, job: Job, note: str) -> Component:
    view = replace(spec, architecture="decoder", encoder=None)
    return Component(name="activations/layer",
                     bytes=layer_peak_bytes(view, shape, tp=job.setup.tp, impl=job.setup.attention,
                                            flow=hf_layer_flow(view)), note=note)


def position_bias_bytes(spec: ModelSpec, *, input_tokens: int, batch: int, act_bytes: int, attention: str,
                        phases: tuple[int, int]) -> int:
    """The encoder's high point for a T5-family model with its relative-position bias, in
    place of one layer's live tensors (``phases``: its attention and MLP phases), or the
    larger phase for the others.

    ``compute_bias`` materialises the bias once per sequence length, ``1 x heads x s x s``
    in the weights' dtype (an embedding lookup over the bucket indices), and every encoder
    layer reads it: it is held through the stack. Under SDPA each layer adds it to a
    float mask, a contiguous ``heads x s x s`` copy of its own (``create_position_bias_mask``);
    eager attention adds it to the scores (counted with the layer). The larger of that and
    the bucket computation's high point in layer 0 (:data:`BUCKET_BYTES_PER_PAIR`, beside
    the layer's input, its norm and q, k, v) is the encoder's peak above the weights."""
    attention_phase, mlp_phase = phases
    if spec.model_type not in RELATIVE_BIAS_TYPES or spec.encoder is None:
        return max(phases)
    enc = spec.encoder
    pairs = input_tokens * input_tokens
    bias = enc.num_attention_heads * pairs * act_bytes
    held = max(attention_phase + bias * (2 if attention == "sdpa" else 1), mlp_phase + bias)
    tokens = batch * input_tokens
    inner = enc.num_attention_heads * enc.head_dim
    buckets = BUCKET_BYTES_PER_PAIR * pairs + tokens * act_bytes * (ENCODE_HIDDEN * spec.hidden_size + 3 * inner)
    return max(held, buckets)


def _layer_phases(spec: ModelSpec, shape: ForwardShape, job: Job) -> tuple[int, int]:
    """(attention phase, MLP phase) of one layer's live tensors (as :func:`_layer` sums them)."""
    view = replace(spec, architecture="decoder", encoder=None)
    flow, impl, tp = hf_layer_flow(view), job.setup.attention, job.setup.tp
    probs = eager_probs_bytes(view, shape, tp=tp) if impl == "eager" else 0
    return (attention_phase_bytes(view, shape, tp=tp, impl=impl, flow=flow),
            mlp_phase_bytes(view, shape, tp=tp, flow=flow) + probs)


def build(job: Job, input_tokens: int) -> Estimate:
    setup, spec = job.setup, job.spec
    if setup.engine != "hf":
        raise InputError(f"engine: {setup.engine} is not modelled for {spec.model_type} "
                         f"({spec.architecture.replace('_', '-')}); it is estimated for transformers only (engine hf)")
    if not isinstance(job.weights, WeightFormat):
        raise InputError(f"weights: {job.weights.name} is not a transformers weights format; use fp16")
    kv_dtype = get_kv_dtype(setup.kv_dtype or job.compute_dtype)
    check_engine_kv_dtype(kv_dtype, "transformers EncoderDecoderCache", ("fp32", "fp16", "bf16"))
    act = get_dtype(job.compute_dtype).bits // 8
    weights = weight_split_components(spec, job.weights, setup.tp)
    b = setup.batch
    phases: dict[str, list[Component]] = {}
    if spec.architecture == "encoder":
        shape = ForwardShape(sequences=b, query_tokens=job.context, kv_tokens=job.context, act_bytes=act,
                             held_hidden=HELD_HIDDEN)
        layer = [_layer(spec, shape, job, f"one layer's live tensors for {b} x {job.context} tokens "
                                           "(bidirectional attention)")]
        rows = b * job.context
        head = [Component(name="logits", bytes=logits_bytes(spec, rows=rows, act_bytes=act, fp32_copy=False),
                          note="every position's masked-LM logits (compute dtype)"),
                Component(name="activations/head", bytes=HEAD_HIDDEN * rows * spec.hidden_size * act,
                          note="the encoder's last hidden state (still bound in the masked-LM forward) and the "
                               "head transform's output the vocabulary projection reads")]
        phases["forward"] = weights + max(layer, head, key=lambda c: sum(x.bytes for x in c))
    else:
        enc = encoder_view(spec)
        shape = ForwardShape(sequences=b, query_tokens=input_tokens, kv_tokens=input_tokens, act_bytes=act,
                             held_hidden=HELD_HIDDEN)
        layer = _layer(enc, shape, job, f"one encoder layer's live tensors for {b} x {input_tokens} input tokens")
        peak = position_bias_bytes(spec, input_tokens=input_tokens, batch=b, act_bytes=act,
                                   attention=setup.attention, phases=_layer_phases(enc, shape, job))
        if peak != layer.bytes:
            layer = Component(name="activations/layer", bytes=peak,
                              note=f"one encoder layer's live tensors for {b} x {input_tokens} input tokens beside the "
                                   f"relative-position bias ({spec.encoder.num_attention_heads} heads x "
                                   f"{input_tokens}^2, held by every layer), or the bucket indices' computation")
        phases["encode"] = weights + [layer]
        out = encoder_output_bytes(spec, input_tokens=input_tokens, batch=b, act_bytes=act)
        decode_shape = ForwardShape(sequences=b, query_tokens=1, kv_tokens=max(job.context, input_tokens),
                                    act_bytes=act, held_hidden=HELD_HIDDEN)
        phases["decode"] = weights + [
            Component(name="kv_cache/self_attention",
                      bytes=kv_cache_bytes(spec, context_tokens=job.context, batch=b, dtype=kv_dtype, tp=setup.tp),
                      note=f"decoder self-attention: {job.context} tokens per sequence, {kv_dtype.name}, batch {b}"),
            Component(name="kv_cache/cross_attention",
                      bytes=cross_kv_bytes(spec, input_tokens=input_tokens, batch=b, dtype=kv_dtype, tp=setup.tp),
                      note=f"cross-attention K/V of {spec.num_layers} decoder layers over {input_tokens} input tokens "
                           "(EncoderDecoderCache)"),
            Component(name="activations/encoder_output", bytes=out,
                      note=f"the encoder's last hidden state ({input_tokens} tokens), kept by generate"),
            _layer(spec, decode_shape, job, "one decoder layer's live tensors for one new token"),
            Component(name="activations/cross_kv_projection",
                      bytes=CROSS_KV_PROJECTIONS * b * input_tokens * spec.num_attention_heads * spec.head_dim
                      * act // setup.tp,
                      note="one decoder layer's cross-attention k and v over the input, projected in the first "
                           "decoder step before the static cache copies them"),
            Component(name="logits", bytes=logits_bytes(spec, rows=b, act_bytes=act),
                      note="last position only + its fp32 copy"),
        ]
    for name, comps in list(phases.items()):
        fixed = fixed_overhead_components(setup.overheads, comm_group_ranks=setup.tp)
        slack = allocator_slack_component(setup.overheads, sum(c.bytes for c in comps))
        phases[name] = comps + fixed + ([slack] if slack else [])
    phase, components, timeline = peak_of(phases)
    details = {"kv_dtype": kv_dtype.name, "attention": setup.attention, "architecture": spec.architecture,
               "input_tokens": input_tokens if spec.architecture == "encoder_decoder" else None}
    est = base_estimate(job, phase, components, phases=timeline, details=details)
    return with_gpu_verdict(est, job)
