"""transformers ``generate`` with a dynamic cache.

What it holds, per GPU (``tp`` ranks split each layer as in Megatron-LM):

- weights in their stored format (:mod:`vramplan.memory.weights`);
- a ``DynamicCache``: K/V of every token seen, grown by ``torch.cat`` at each step,
  so the layer being updated briefly holds its old and new cache together
  (``DynamicLayer.update``) — the ``buffers/cache_concat`` term of the decode peak;
  sliding layers keep ``window - 1`` tokens (``DynamicSlidingWindowLayer``); MLA
  models cache the compressed latent (transformers 5);
- prefill of the whole prompt in one forward (or ``prefill_chunk`` tokens at a
  time), whose peak is the larger of the attention and MLP phases of one layer
  (:mod:`vramplan.memory.inference_buffers`);
- logits of the last position only: ``generate`` passes ``logits_to_keep=1`` and
  copies them to fp32 (``GenerationMixin._sample``);
- bitsandbytes dequantizes one weight at a time to the compute dtype for prefill
  matmuls (``bnb.matmul_4bit`` beyond one token): the largest such weight is a
  transient ``buffers/dequant``;
- overheads (:mod:`vramplan.memory.overhead`), with allocator slack over
  everything PyTorch allocates piecemeal.

The peak is the larger of prefill (cache of the prompt + prefill activations) and
the last decode step (cache of the full context + its concat transient).
"""

from __future__ import annotations

from vramplan.dtypes import get_dtype
from vramplan.engines import Job, base_estimate, peak_of, with_gpu_verdict
from vramplan.estimate import Component, Estimate
from vramplan.memory.inference_buffers import ForwardShape, layer_peak_bytes, logits_bytes
from vramplan.memory.kv_cache import get_kv_dtype, kv_bytes_per_token_per_layer, kv_cache_bytes
from vramplan.memory.overhead import allocator_slack_component, fixed_overhead_components
from vramplan.memory.weights import shard_shape, weight_split_components
from vramplan.model.tensors import model_tensors
from vramplan.quant import WeightFormat

SLIDING_EXTRA_TOKENS = -1
"""transformers' sliding layers keep ``window - 1`` past tokens (checked against a
real ``DynamicCache`` in tests/test_kv_cache.py)."""

_DEQUANT_FORMATS = ("nf4", "fp4", "int8")
"""bitsandbytes formats that dequantize a whole weight for multi-token matmuls."""


def _kv(job: Job, tokens: int, dtype: str) -> int:
    return kv_cache_bytes(job.spec, context_tokens=tokens, batch=job.setup.batch, dtype=dtype, tp=job.setup.tp,
                          sliding_extra_tokens=SLIDING_EXTRA_TOKENS)


def _dequant_bytes(job: Job, act_bytes: int) -> int:
    """The largest linear weight of one rank in the compute dtype, for bitsandbytes."""
    fmt = job.weights
    if not isinstance(fmt, WeightFormat) or not fmt.name.startswith(_DEQUANT_FORMATS):
        return 0
    sizes = [shard_shape(g, job.spec, job.setup.tp) for g in model_tensors(job.spec)
             if fmt.quantizes(g.name, g.role)]
    return max((s[0] * s[1] for s in sizes), default=0) * act_bytes


def _activation_components(job: Job, shape: ForwardShape, phase: str) -> list[Component]:
    setup = job.setup
    repeat = setup.attention == "eager" and job.spec.num_kv_heads < job.spec.num_attention_heads
    layer = layer_peak_bytes(job.spec, shape, tp=setup.tp, impl=setup.attention, repeat_kv=repeat)
    logits = logits_bytes(job.spec, rows=setup.batch, act_bytes=shape.act_bytes)
    return [
        Component(name="activations/layer", bytes=layer,
                  note=f"{phase}: one layer's live tensors for {shape.sequences} x {shape.query_tokens} tokens "
                       f"({setup.attention} attention over {shape.kv_tokens} keys)"),
        Component(name="logits", bytes=logits,
                  note="last position only (generate: logits_to_keep=1) + its fp32 copy"),
    ]


def build(job: Job) -> Estimate:
    setup, spec = job.setup, job.spec
    kv_dtype = get_kv_dtype(setup.kv_dtype or job.compute_dtype)
    act_bytes = get_dtype(job.compute_dtype).bits // 8
    weights = weight_split_components(spec, job.weights, setup.tp)
    chunk = min(job.prompt, setup.prefill_chunk or job.prompt)
    kv_note = f"{kv_dtype.name}, batch {setup.batch}"

    prefill = weights + [Component(name="kv_cache", bytes=_kv(job, job.prompt, kv_dtype.name),
                                   note=f"{job.prompt} prompt tokens, {kv_note}")]
    prefill += _activation_components(job, ForwardShape(sequences=setup.batch, query_tokens=chunk,
                                                        kv_tokens=job.prompt, act_bytes=act_bytes), "prefill")
    dequant = _dequant_bytes(job, act_bytes)
    if dequant:
        prefill.append(Component(name="buffers/dequant", bytes=dequant,
                                 note="largest quantized weight dequantized for a multi-token matmul (bitsandbytes)"))

    per_layer = kv_bytes_per_token_per_layer(spec, kv_dtype, tp=setup.tp)
    decode = weights + [
        Component(name="kv_cache", bytes=_kv(job, job.context, kv_dtype.name),
                  note=f"{job.context} tokens per sequence, {kv_note}, DynamicCache"),
        Component(name="buffers/cache_concat", bytes=setup.batch * job.context * per_layer,
                  note="torch.cat copy of one full-attention layer's K/V while it grows (DynamicLayer.update)"),
    ]
    decode += _activation_components(job, ForwardShape(sequences=setup.batch, query_tokens=1,
                                                       kv_tokens=job.context, act_bytes=act_bytes), "decode")
    phases = {}
    for name, comps in (("prefill", prefill), ("decode", decode)):
        fixed = fixed_overhead_components(setup.overheads, comm_group_ranks=setup.tp)
        slack = allocator_slack_component(setup.overheads, sum(c.bytes for c in comps))
        phases[name] = comps + fixed + ([slack] if slack else [])
    phase, components, timeline = peak_of(phases)
    est = base_estimate(job, phase, components, phases=timeline,
                        details={"kv_dtype": kv_dtype.name, "attention": setup.attention})
    return with_gpu_verdict(est, job)
