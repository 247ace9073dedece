"""transformers ``generate`` with a dynamic cache.

What it holds, per GPU (``tp`` ranks split each layer as in Megatron-LM):

- weights in their stored format (:mod:`vramplan.memory.weights`);
- a ``DynamicCache``: K/V of every token seen, grown by ``torch.cat`` at each step,
  so the layer being updated briefly holds its old and new cache together
  (``DynamicLayer.update``) — the ``buffers/cache_concat`` term, counted in place of
  the layer's own tensors when larger (the concat runs before the attention kernel);
  the last step's fp32 logits stay bound through the next forward
  (``buffers/previous_logits``);
  sliding layers keep ``window`` tokens of storage in decode and the whole prompt's
  right after prefill (``DynamicSlidingWindowLayer`` keeps a view); MLA
  models cache the compressed latent (transformers 5);
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
the last decode step (cache of the full context + its concat transient).
"""

from __future__ import annotations

from vramplan.dtypes import FP32_BYTES, get_dtype
from vramplan.engines import Job, base_estimate, peak_of, with_gpu_verdict
from vramplan.errors import InputError
from vramplan.estimate import Component, Estimate
from vramplan.memory.inference_buffers import (ForwardShape, attention_mask_bytes, hf_layer_flow, layer_peak_bytes,
                                              logits_bytes)
from vramplan.memory.kv_cache import check_engine_kv_dtype, get_kv_dtype, kv_cache_bytes, kv_row_elements
from vramplan.memory.overhead import fit_overhead_components
from vramplan.memory.weights import shard_shape, weight_split_components
from vramplan.model.tensors import model_tensors
from vramplan.quant import WeightFormat

SLIDING_DECODE_EXTRA_TOKENS = 0
"""In decode a sliding layer's cache is a view of ``window - 1`` tokens on the storage
``torch.cat`` made for ``window`` tokens: memory holds ``window`` (tests/test_kv_cache.py)."""

HF_KV_DTYPES = ("fp32", "fp16", "bf16", "fp8", "fp8_e5m2")
"""Dtypes a ``DynamicCache`` holds: the model's (or one the user casts to; fp8 via a
cast of the cache tensors)."""

HELD_HIDDEN = 2
"""Hidden-sized tensors a transformers model keeps alive through every layer: the
embedding output (``inputs_embeds``) and the layer's input."""

HELD_POSITION_EMBEDDINGS = 1
"""GPT-2 also keeps its learned position embeddings bound (``position_embeds`` in
``GPT2Model.forward``) for the whole forward."""


def held_hidden(job: Job) -> int:
    """Hidden-sized tensors held through each layer by the transformers model."""
    return HELD_HIDDEN + (HELD_POSITION_EMBEDDINGS if job.spec.learned_position_embeddings else 0)


TOKEN_ID_BYTES = 8
"""``generate`` keeps the ids (and the attention mask) as int64, 8 bytes a token."""

_DEQUANT_FORMATS = ("nf4", "fp4", "int8")
"""bitsandbytes formats that dequantize a whole weight for multi-token matmuls."""


def _kv(job: Job, tokens: int, dtype: str, sliding_extra_tokens: int) -> int:
    return kv_cache_bytes(job.spec, context_tokens=tokens, batch=job.setup.batch, dtype=dtype, tp=job.setup.tp,
                          sliding_extra_tokens=sliding_extra_tokens)


def _dequant_bytes(job: Job, act_bytes: int) -> int:
    """The largest linear weight of one rank in the compute dtype, for bitsandbytes."""
    fmt = job.weights
    if not isinstance(fmt, WeightFormat) or not fmt.name.startswith(_DEQUANT_FORMATS):
        return 0
    sizes = [shard_shape(g, job.spec, job.setup.tp) for g in model_tensors(job.spec)
             if fmt.quantizes(g.name, g.role)]
    return max((s[0] * s[1] for s in sizes), default=0) * act_bytes


def _transients(job: Job, shape: ForwardShape, phase: str, in_layer: list[Component],
                apart: list[Component] | None = None) -> list[Component]:
    """The short-lived terms at a phase's high point: inside a decoder layer (its live
    tensors, the mask built for the forward, ``in_layer`` extras alive throughout) or
    after the last layer (the logits), whichever moment holds more. The two never
    coexist: the mask and layer tensors are freed before the head runs. ``apart`` are
    in-layer transients of another moment than the layer's own peak (the cache concat
    runs before the attention kernel): the larger of the two counts."""
    setup = job.setup
    # eager repeats K/V to every query head; JetMoE repeats them for its attention experts whatever the kernel
    repeat = (setup.attention == "eager" or job.spec.attention_experts > 0) \
        and job.spec.num_kv_heads < job.spec.num_attention_heads
    layer = Component(name="activations/layer",
                      bytes=layer_peak_bytes(job.spec, shape, tp=setup.tp, impl=setup.attention, repeat_kv=repeat,
                                             flow=hf_layer_flow(job.spec)),
                      note=f"{phase}: one layer's live tensors for {shape.sequences} x {shape.query_tokens} tokens "
                           f"({setup.attention} attention over {shape.kv_tokens} keys)")
    apart_bytes = sum(c.bytes for c in apart or [])
    layer_moment = [
        *([layer] if layer.bytes >= apart_bytes else apart or []),
        Component(name="activations/attention_mask", bytes=attention_mask_bytes(job.spec, shape, setup.attention),
                  note=f"{setup.attention} mask built once per forward (masking_utils)"),
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
    check_engine_kv_dtype(kv_dtype, "transformers DynamicCache", HF_KV_DTYPES)
    act_bytes = get_dtype(job.compute_dtype).element_bytes
    weights = weight_split_components(spec, job.weights, setup.tp)
    chunk = min(job.prompt, setup.prefill_chunk or job.prompt)
    kv_note = f"{kv_dtype.name}, batch {setup.batch}"

    # After prefill a sliding layer keeps a view of its last window - 1 tokens, but the
    # view holds the whole prompt's storage until the first decode step: no cap yet.
    prefill = weights + [Component(name="kv_cache", bytes=_kv(job, job.prompt, kv_dtype.name, job.prompt),
                                   note=f"{job.prompt} prompt tokens, {kv_note}")]
    dequant = _dequant_bytes(job, act_bytes)
    dequant_terms = [Component(name="buffers/dequant", bytes=dequant,
                               note="largest quantized weight dequantized for a multi-token matmul (bitsandbytes)")]
    prefill += _transients(job, ForwardShape(sequences=setup.batch, query_tokens=chunk, kv_tokens=job.prompt,
                                             act_bytes=act_bytes, held_hidden=held_hidden(job)), "prefill", dequant_terms if dequant else [])

    row = kv_dtype.row_bytes(max(kv_row_elements(spec, tp=setup.tp)))
    decode = weights + [
        Component(name="kv_cache", bytes=_kv(job, job.context, kv_dtype.name, SLIDING_DECODE_EXTRA_TOKENS),
                  note=f"{job.context} tokens per sequence, {kv_note}, DynamicCache"),
        Component(name="buffers/token_ids", bytes=setup.batch * job.context * TOKEN_ID_BYTES * 2,
                  note="int64 input_ids and attention mask, re-concatenated every step by generate"),
    ]
    concat = [Component(name="buffers/cache_concat", bytes=setup.batch * job.context * row,
                        note="old K (or V) of one layer while torch.cat builds the grown one (DynamicLayer.update)")]
    previous = [Component(name="buffers/previous_logits", bytes=setup.batch * spec.vocab_size * FP32_BYTES,
                          note="the last step's fp32 next-token logits, still bound in generate's loop "
                               "(GenerationMixin._sample) while the next forward runs")]
    decode += _transients(job, ForwardShape(sequences=setup.batch, query_tokens=1, kv_tokens=job.context,
                                            act_bytes=act_bytes, held_hidden=held_hidden(job)), "decode", previous,
                          apart=concat)
    phases = {}
    for name, comps in (("prefill", prefill), ("decode", decode)):
        phases[name] = comps + fit_overhead_components(setup.overheads, piecemeal_bytes=sum(c.bytes for c in comps),
                                                       comm_group_ranks=setup.tp)
    phase, components, timeline = peak_of(phases)
    est = base_estimate(job, phase, components, phases=timeline,
                        details={"kv_dtype": kv_dtype.name, "attention": setup.attention})
    return with_gpu_verdict(est, job)
