"""transformers ``generate`` with a dynamic or a static cache.

What it holds, per GPU (``tp`` ranks split each layer as in Megatron-LM):

- weights in their stored format (:mod:`vramplan.memory.weights`);
- the KV cache (:func:`cache_terms`), one of
  - a ``DynamicCache`` (``generate``'s default): K/V of every token seen, grown by
    ``torch.cat`` at each step, so the layer being updated briefly holds its old and
    new cache together (``DynamicLayer.update``) — the ``buffers/cache_concat`` term,
    counted in place of the layer's own tensors when larger (the concat runs before the
    attention kernel); sliding layers keep ``window`` tokens of storage in decode and
    the whole prompt's right after prefill (``DynamicSlidingWindowLayer`` keeps a view
    of the concatenation);
  - a ``StaticCache`` (``cache_implementation="static"``): every layer preallocates
    ``max_cache_len`` = the context at its first update (``StaticLayer.lazy_initialization``),
    a sliding or chunked layer ``min(window, context)`` (``StaticSlidingWindowLayer``),
    so the prefill already holds the whole cache; a full-attention layer returns its
    whole ``max_cache_len`` storage to the attention (keys over the context); a full
    sliding layer rolls its window in decode (``self.keys.roll(-1)``, the same for the
    values: ``buffers/cache_roll``);
  MLA models cache the compressed latent (transformers 5);
- the last step's fp32 logits stay bound through the next forward
  (``buffers/previous_logits``);
- prefill of the whole prompt in one forward (or ``prefill_chunk`` tokens at a
  time), whose peak is the larger of the attention and MLP phases of one layer
  (:mod:`vramplan.memory.inference_buffers`);
- logits of the last position only: ``generate`` passes ``logits_to_keep=1`` and
  copies them to fp32 (``GenerationMixin._sample``); they live after the last layer,
  when the layer's tensors are gone, so a phase's high point holds one or the other.
  With ``logits="all"`` (a plain forward: perplexity, scoring) the prefill's head
  writes every position's logits in the compute dtype (``lm_head(hidden_states)``,
  no upcast without labels) beside the final norm's output it reads;
- bitsandbytes dequantizes one weight at a time to the compute dtype for prefill
  matmuls (``bnb.matmul_4bit`` beyond one token): the largest such weight is a
  transient ``buffers/dequant``;
- overheads (:mod:`vramplan.memory.overhead`), with allocator slack over
  everything PyTorch allocates piecemeal.

The peak is the larger of prefill (cache of the prompt + prefill activations) and
the last decode step (cache of the full context + its update transient).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from vramplan.dtypes import FP32_BYTES, get_dtype
from vramplan.engines import Job, base_estimate, peak_of, with_gpu_verdict
from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.memory import gemma_activations, mixer_activations
from vramplan.memory.inference_buffers import (ForwardShape, attention_mask_bytes, hf_layer_flow, layer_peak_bytes,
                                              logits_bytes)
from vramplan.memory.kv_cache import (KVDType, check_engine_kv_dtype, get_kv_dtype, kv_cache_bytes, kv_row_elements,
                                      layer_kv_bytes_per_token, tokens_held)
from vramplan.memory.overhead import fit_overhead_components
from vramplan.memory.weights import buffer_components, shard_shape, weight_split_components
from vramplan.model.tensors import model_tensors
from vramplan.quant import WeightFormat

SLIDING_DECODE_EXTRA_TOKENS = 0
"""In decode a sliding layer's cache is a view of ``window - 1`` tokens on the storage
``torch.cat`` made for ``window`` tokens: memory holds ``window`` (tests/test_kv_cache.py)."""

HF_KV_DTYPES = ("fp32", "fp16", "bf16", "fp8", "fp8_e5m2")
"""Dtypes a transformers cache holds: the model's (or one the user casts to; fp8 via a
cast of the cache tensors)."""

HELD_HIDDEN = 2
"""Hidden-sized tensors a transformers model keeps alive through every layer: the
embedding output (``inputs_embeds``) and the layer's input."""

HELD_POSITION_EMBEDDINGS = 1
"""GPT-2 also keeps its learned position embeddings bound (``position_embeds`` in
``GPT2Model.forward``) for the whole forward."""


def held_hidden(job: Job) -> int:
    """Hidden-sized tensors held through each layer by the transformers model; with
    hyper-connections the layer's input is its ``hc_mult`` streams."""
    streams = max(job.spec.hyper_connection_streams - 1, 0)
    return HELD_HIDDEN + streams + (HELD_POSITION_EMBEDDINGS if job.spec.learned_position_embeddings else 0)


TOKEN_ID_BYTES = 8
"""``generate`` keeps the ids (and the attention mask) as int64, 8 bytes a token."""

_DEQUANT_FORMATS = ("nf4", "fp4", "int8")
"""bitsandbytes formats that dequantize a whole weight for multi-token matmuls."""


def _kv(job: Job, tokens: int, dtype: str, sliding_extra_tokens: int) -> int:
    return kv_cache_bytes(job.spec, context_tokens=tokens, batch=job.setup.batch, dtype=dtype, tp=job.setup.tp,
                          sliding_extra_tokens=sliding_extra_tokens)


def _attention_layers(job: Job) -> list[int]:
    return [i for i in range(job.spec.num_layers) if job.spec.mixer(i) == "attention"]


@dataclass(frozen=True, kw_only=True)
class AttendedKeys:
    """Keys per sequence one forward's layers attend to, by attention kind (None: the
    model has no layer of that kind)."""

    full: int | None
    """A full-attention layer's keys."""
    sliding: int | None
    """A sliding (or chunked) layer's keys."""
    sliding_reads_new_keys: bool = False
    """The sliding layers attend over the forward's new keys and values, not their
    cache storage (:attr:`~vramplan.memory.inference_buffers.ForwardShape.kv_outside_cache`)."""
    full_unallocated_bytes: int = 0
    """Cache bytes not yet allocated while the last full layer runs: a first forward
    allocates each layer's cache at its first update (``lazy_initialization``), so the
    layers after it hold none yet."""
    sliding_unallocated_bytes: int = 0
    """The same for the last sliding layer."""

    @property
    def widest(self) -> int:
        return max(k for k in (self.full, self.sliding) if k is not None)

    def layer_shapes(self, shape: ForwardShape) -> tuple[tuple[ForwardShape, int], ...]:
        """``shape`` as the last layer of each kind sees it, with the cache bytes of the
        layers after it (not yet allocated then)."""
        out = [(replace(shape, kv_tokens=self.full), self.full_unallocated_bytes)] if self.full is not None else []
        if self.sliding is not None:
            out.append((replace(shape, kv_tokens=self.sliding, kv_outside_cache=self.sliding_reads_new_keys),
                        self.sliding_unallocated_bytes))
        return tuple(out)


def dynamic_attended_keys(job: Job, seen_tokens: int) -> AttendedKeys:
    """A ``DynamicCache`` returns every layer its concatenation: all ``seen_tokens``
    (a sliding layer drops its oldest keys after the forward)."""
    return AttendedKeys(full=seen_tokens, sliding=None)


def static_attended_keys(job: Job, query_tokens: int, seen_tokens: int, dtype: KVDType) -> AttendedKeys:
    """Keys attended in a forward of ``query_tokens`` new tokens that brings each
    sequence to ``seen_tokens`` with a ``StaticCache``: a full-attention layer returns
    its whole ``max_cache_len`` storage (``StaticLayer.update``: the context); a
    sliding layer (``StaticSlidingWindowLayer.update``) its window storage while the new
    tokens fit it, else the keys it concatenates: the new ones after what it held (at
    most ``window - 1`` of them), the new keys themselves when the window was empty
    (then kept beside the window). A window no shorter than the context behaves as a
    full layer. In the first forward (``seen_tokens == query_tokens``) the layers after
    the last one of a kind have not allocated their storage yet."""
    spec, context = job.spec, job.context
    full: list[int] = []
    sliding: list[int] = []
    for i in _attention_layers(job):
        storage = tokens_held(spec, i, context)
        if storage < context:
            sliding.append(max(storage, min(seen_tokens, storage - 1 + query_tokens)))
        else:
            full.append(storage)
    if not full and not sliding:
        return AttendedKeys(full=seen_tokens, sliding=None)
    layers = _attention_layers(job)
    windows = [tokens_held(spec, i, context) for i in layers]
    storage_bytes = [job.setup.batch * w * layer_kv_bytes_per_token(spec, i, dtype, tp=job.setup.tp)
                     for i, w in zip(layers, windows)]

    def unallocated(kind_is_sliding: bool) -> int:
        if seen_tokens > query_tokens:
            return 0
        last = max(n for n, w in enumerate(windows) if (w < context) == kind_is_sliding)
        return sum(storage_bytes[last + 1:])

    return AttendedKeys(full=max(full) if full else None, sliding=max(sliding) if sliding else None,
                        sliding_reads_new_keys=any(w < min(context, query_tokens) for w in windows),
                        full_unallocated_bytes=unallocated(False) if full else 0,
                        sliding_unallocated_bytes=unallocated(True) if sliding else 0)


def static_roll_bytes(job: Job, dtype: KVDType) -> int:
    """A full sliding layer's decode update in a ``StaticCache``: ``self.keys.roll(-1)``
    and ``self.values.roll(-1)`` are new window-sized tensors, both alive while they are
    copied back (``StaticSlidingWindowLayer.update``); the largest such layer, 0 when no
    window is full at the last step (the context fits every window)."""
    spec, setup = job.spec, job.setup
    rolled = [tokens_held(spec, i, job.context) * layer_kv_bytes_per_token(spec, i, dtype, tp=setup.tp)
              for i in _attention_layers(job) if tokens_held(spec, i, job.context) < job.context]
    return setup.batch * max(rolled, default=0)


def _dequant_bytes(job: Job, act_bytes: int) -> int:
    """The largest linear weight of one rank in the compute dtype, for bitsandbytes."""
    fmt = job.weights
    if not isinstance(fmt, WeightFormat) or not fmt.name.startswith(_DEQUANT_FORMATS):
        return 0
    sizes = [shard_shape(g, job.spec, job.setup.tp) for g in model_tensors(job.spec)
             if fmt.quantizes(g.name, g.role)]
    return max((s[0] * s[1] for s in sizes), default=0) * act_bytes


def _transients(job: Job, shape: ForwardShape, phase: str, in_layer: list[Component], keys: AttendedKeys,
                apart: list[Component] | None = None) -> list[Component]:
    """The short-lived terms at a phase's high point: inside a decoder layer (its live
    tensors, the widest kind of layer's by ``keys``; the mask built for the forward;
    ``in_layer`` extras alive throughout) or after the last layer (the logits),
    whichever moment holds more. The two never coexist: the mask and layer tensors are
    freed before the head runs. ``apart`` are in-layer transients of another moment
    than the layer's own peak (the cache update runs before the attention kernel): the
    larger of the two counts."""
    setup = job.setup
    # eager repeats K/V to every query head; JetMoE repeats them for its attention experts whatever the kernel
    repeat = (setup.attention == "eager" or job.spec.attention_experts > 0) \
        and job.spec.num_kv_heads < job.spec.num_attention_heads
    shape = replace(shape, kv_tokens=keys.widest)
    layer_peak = layer_peak_bytes
    if gemma_activations.models(job.spec):  # each layer by its own widths, AltUp streams, per-layer inputs
        layer_peak = partial(gemma_activations.forward_layer_peak_bytes,
                             shared_kv_held=keys.sliding_reads_new_keys)
    layer_bytes, unallocated = max((layer_peak(job.spec, s, tp=setup.tp, impl=setup.attention,
                                               repeat_kv=repeat, flow=hf_layer_flow(job.spec)) - later, later)
                                   for s, later in keys.layer_shapes(shape))
    if any(mixer_activations.mixer_layers_modelled(job.spec, "mamba")):  # the Mamba-1 scan's tensors
        layer_bytes = max(layer_bytes, mixer_activations.mamba1_prefill_bytes(
            job.spec, shape.tokens, shape.act_bytes, shape.held_hidden, setup.tp))
    layer = Component(name="activations/layer", bytes=layer_bytes,
                      note=f"{phase}: one layer's live tensors for {shape.sequences} x {shape.query_tokens} tokens "
                           f"({setup.attention} attention over {shape.kv_tokens} keys)"
                           + (f", less {unallocated:,} B of cache the later layers have not allocated yet"
                              if unallocated else ""))
    apart_bytes = sum(c.bytes for c in apart or [])
    layer_moment = [
        *([layer] if layer.bytes >= apart_bytes else apart or []),
        Component(name="activations/attention_mask",
                  bytes=attention_mask_bytes(job.spec, shape, setup.attention, sliding_kv_tokens=keys.sliding,
                                             per_sequence=setup.cache == "static"),
                  note=f"{setup.attention} mask built once per forward (masking_utils)"
                       + (", per sequence (generate's contiguous copy with a static cache)"
                          if setup.cache == "static" else "")),
        *in_layer,
    ]
    if setup.logits == "all" and phase == "prefill":
        tokens = shape.sequences * shape.query_tokens
        # soft-capping (Gemma 2: logits / cap, tanh, * cap) writes each step to a new
        # tensor while the previous one is still bound: two copies at once
        copies = 2 if job.spec.final_logit_softcapping else 1
        head_moment = [
            Component(name="logits", bytes=copies * logits_bytes(job.spec, rows=tokens, act_bytes=shape.act_bytes,
                                                                 fp32_copy=False),
                      note=f"every position's logits ({tokens:,} x {job.spec.vocab_size:,} vocab, compute dtype)"
                           + (", twice inside the soft-capping" if copies == 2 else "")),
            Component(name="activations/final_hidden", bytes=tokens * job.spec.hidden_size * shape.act_bytes,
                      note="the final norm's output, read by the head")]
    else:
        head_moment = [Component(name="logits", bytes=logits_bytes(job.spec, rows=setup.batch,
                                                                   act_bytes=shape.act_bytes),
                                 note="last position only (generate: logits_to_keep=1) + its fp32 copy")]
    return max(layer_moment, head_moment, key=lambda comps: sum(c.bytes for c in comps))


def build(job: Job) -> Estimate:
    setup, spec = job.setup, job.spec
    if not isinstance(job.weights, WeightFormat):
        raise InputError(f"weights {job.weights.name}: transformers dequantizes GGUF files to 16-bit on load "
                         "(from_pretrained(gguf_file=...)); use weights fp16, or engine llamacpp",
                         fields=("weights", "engine"))
    kv_dtype = get_kv_dtype(setup.kv_dtype or job.compute_dtype)
    check_engine_kv_dtype(kv_dtype, "transformers cache", HF_KV_DTYPES)
    act_bytes = get_dtype(job.compute_dtype).element_bytes
    weights = weight_split_components(spec, job.weights, setup.tp) + buffer_components(spec, job.compute_dtype,
                                                                                       setup.tp)
    chunk = min(job.prompt, setup.prefill_chunk or job.prompt)
    kv_note = f"{kv_dtype.name}, batch {setup.batch}"

    static = setup.cache == "static"
    cache_name = "StaticCache" if static else "DynamicCache"
    if static:
        # every layer's storage is preallocated at its first update: the whole cache from prefill on
        prefill_kv = Component(name="kv_cache", bytes=_kv(job, job.context, kv_dtype.name, 0),
                               note=f"{cache_name} preallocated for {job.context} tokens (sliding layers: their "
                                    f"window), {kv_note}")
        prefill_keys = static_attended_keys(job, chunk, job.prompt, kv_dtype)
    else:
        # After prefill a sliding layer keeps a view of its last window - 1 tokens, but the
        # view holds the whole prompt's storage until the first decode step: no cap yet.
        prefill_kv = Component(name="kv_cache", bytes=_kv(job, job.prompt, kv_dtype.name, job.prompt),
                               note=f"{job.prompt} prompt tokens, {kv_note}, {cache_name}")
        prefill_keys = dynamic_attended_keys(job, job.prompt)
    prefill = weights + [prefill_kv]
    dequant = _dequant_bytes(job, act_bytes)
    dequant_terms = [Component(name="buffers/dequant", bytes=dequant,
                               note="largest quantized weight dequantized for a multi-token matmul (bitsandbytes)")]
    prefill += _transients(job, ForwardShape(sequences=setup.batch, query_tokens=chunk, kv_tokens=job.prompt,
                                             act_bytes=act_bytes, held_hidden=held_hidden(job)), "prefill",
                           dequant_terms if dequant else [], prefill_keys)

    decode = weights + [
        Component(name="kv_cache", bytes=_kv(job, job.context, kv_dtype.name, SLIDING_DECODE_EXTRA_TOKENS),
                  note=f"{job.context} tokens per sequence, {kv_note}, {cache_name}"),
        Component(name="buffers/token_ids", bytes=setup.batch * job.context * TOKEN_ID_BYTES * 2,
                  note="int64 input_ids and attention mask, re-concatenated every step by generate"),
    ]
    if static:
        roll = static_roll_bytes(job, kv_dtype)
        update = [Component(name="buffers/cache_roll", bytes=roll,
                            note="a full sliding layer's rolled K and V (StaticSlidingWindowLayer.update)")] if roll else []
        decode_keys = static_attended_keys(job, 1, job.context, kv_dtype)
    else:
        row = kv_dtype.row_bytes(max(kv_row_elements(spec, tp=setup.tp)))
        update = [Component(name="buffers/cache_concat", bytes=setup.batch * job.context * row,
                            note="old K (or V) of one layer while torch.cat builds the grown one (DynamicLayer.update)")]
        decode_keys = dynamic_attended_keys(job, job.context)
    previous = [Component(name="buffers/previous_logits", bytes=setup.batch * spec.vocab_size * FP32_BYTES,
                          note="the last step's fp32 next-token logits, still bound in generate's loop "
                               "(GenerationMixin._sample) while the next forward runs")]
    decode += _transients(job, ForwardShape(sequences=setup.batch, query_tokens=1, kv_tokens=job.context,
                                            act_bytes=act_bytes, held_hidden=held_hidden(job)), "decode", previous,
                          decode_keys, apart=update)
    phases = {}
    for name, comps in (("prefill", prefill), ("decode", decode)):
        phases[name] = comps + fit_overhead_components(setup.overheads, piecemeal_bytes=sum(c.bytes for c in comps),
                                                       comm_group_ranks=setup.tp)
    phase, components, timeline = peak_of(phases)
    est = base_estimate(job, phase, components, phases=timeline,
                        details={"kv_dtype": kv_dtype.name, "attention": setup.attention, "cache": setup.cache})
    return with_gpu_verdict(est, job)
