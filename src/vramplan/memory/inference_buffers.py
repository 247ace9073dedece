"""Activations and work buffers at the inference peak, per GPU.

Inference keeps no activations for backward: at any moment only the tensors of the
layer being computed are alive, plus the residual stream. The peak inside one
decoder layer is the larger of its attention phase and its MLP phase; the logits and
the sampler come after the last layer. All sizes are per TP rank: q/k/v and the MLP
width are split by ``tp``, the residual stream is whole on every rank (Megatron-LM
tensor parallelism without sequence parallelism, as vLLM runs it).

Sources, term by term, are in each function. Shapes follow transformers'
``LlamaAttention``/``LlamaMLP`` (and the MoE blocks) as they run under
``torch.no_grad()``; fused-kernel engines (vLLM) hold fewer temporaries, which the
engine modules account for by choosing the flags below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramplan.memory.weights import kv_heads_per_rank
from vramplan.model.spec import ModelSpec

AttentionImpl = Literal["eager", "sdpa", "flash"]

FP32_BYTES = 4
"""Softmax in eager attention and the logits upcast run in fp32 (4 bytes)."""


@dataclass(frozen=True, kw_only=True)
class ForwardShape:
    """What one forward pass processes."""

    sequences: int
    """Sequences in the batch."""
    query_tokens: int
    """New tokens per sequence in this pass (the prompt or a chunk in prefill, 1 in decode)."""
    kv_tokens: int
    """Tokens each query attends to (cached + new)."""
    act_bytes: int = 2
    """Bytes per activation element (bf16/fp16 compute: 2)."""
    held_hidden: int = 2
    """Hidden-sized tensors the caller keeps alive through a layer: transformers keeps
    the embedding output (``inputs_embeds`` in ``LlamaModel.forward``) and the layer's
    input (the caller's ``hidden_states``): 2. Engines with a fused in-place residual
    (vLLM) keep 1."""

    @property
    def tokens(self) -> int:
        return self.sequences * self.query_tokens


EAGER_BYTES_PER_SCORE_EXTRA = FP32_BYTES + FP32_BYTES
"""Eager softmax: ``softmax(scores + mask, dtype=float32)`` holds the masked scores
(compute dtype), their fp32 upcast and the fp32 result at once."""


def attention_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, impl: AttentionImpl = "sdpa",
                          repeat_kv: bool = False) -> int:
    """Live bytes at the attention peak of one layer, per TP rank: the larger of two
    moments.

    Projections: ``held hidden states + normed input (h) + rotary cos and sin
    (2 x head_dim) + q + k + v + rotary temporaries (one more q and k:
    ``q * cos + rotate_half(q) * sin`` holds two q-sized tensors at once) + output (q
    width)`` per token (+ K and V expanded to every query head when ``repeat_kv``,
    transformers ``repeat_kv`` before eager attention in GQA models).

    Scores (``eager`` only; transformers ``eager_attention_forward``): the hidden
    states, q and K/V stay alive while the ``heads x q_len x kv_len`` scores are held
    three times — masked in the compute dtype, upcast to fp32, softmaxed in fp32
    (2 + 4 + 4 bytes per score); the mask itself is :func:`attention_mask_bytes`. SDPA's flash / memory-efficient kernels and
    FlashAttention keep no score matrix (Dao et al. 2022).

    Checked against live tensors of a real transformers ``generate`` on CPU
    (tests/test_infer_measured.py).
    """
    heads = spec.num_attention_heads // tp
    if spec.mla is not None:
        q_width = heads * spec.mla.qk_head_dim
        kv_width = heads * (spec.mla.qk_head_dim + spec.mla.v_head_dim)
    else:
        q_width = heads * spec.head_dim
        kv_width = 2 * kv_heads_per_rank(spec, tp) * spec.head_dim
    base = (shape.held_hidden + 1) * spec.hidden_size + _rotary_table(spec) + q_width
    expanded = 2 * q_width if repeat_kv else 0
    rotary_temps = q_width + kv_width // 2
    projections = shape.tokens * (base + kv_width + rotary_temps + q_width + expanded) * shape.act_bytes
    if impl != "eager":
        return projections
    scores = shape.sequences * heads * shape.query_tokens * shape.kv_tokens
    at_scores = shape.tokens * (base + (expanded or kv_width)) * shape.act_bytes + \
        scores * (shape.act_bytes + EAGER_BYTES_PER_SCORE_EXTRA)
    return max(projections, at_scores)


def attention_mask_bytes(spec: ModelSpec, shape: ForwardShape, impl: AttentionImpl) -> int:
    """The attention mask transformers builds once per forward (alive through every
    layer; ``masking_utils``): eager adds a float mask of ``q_len x kv_len`` per
    sequence in the compute dtype; SDPA runs pure causal attention with
    ``is_causal`` and no mask, but needs a boolean ``q_len x kv_len`` mask (shared by
    the batch) when a sliding window cuts the keys; flash attention takes none."""
    if impl == "eager":
        return shape.sequences * shape.query_tokens * shape.kv_tokens * shape.act_bytes
    window = spec.sliding_window
    if impl == "sdpa" and window is not None and shape.kv_tokens > window and shape.query_tokens > 1:
        return shape.query_tokens * shape.kv_tokens
    return 0


def _rotary_table(spec: ModelSpec) -> int:
    """Elements per token of the rotary cos and sin tables (``LlamaRotaryEmbedding``
    returns both at ``head_dim`` per position); 0 for learned positions."""
    return 0 if spec.learned_position_embeddings else 2 * spec.head_dim


MoEImpl = Literal["grouped", "fused"]

MOE_GROUPED_COPIES_AT_DOWN = 4
"""transformers' grouped-GEMM experts at the down projection hold four ``k x h``
tensors per token: the gathered input, the down output, its product with the routing
weights, and the re-indexed result (measured on a real Qwen3-MoE forward)."""


def moe_width_per_token(spec: ModelSpec, tp: int, impl: MoEImpl) -> int:
    """Elements per token live at the peak of an MoE block, per rank (routed experts
    split by TP as vLLM's ``FusedMoE`` splits them), the larger of:

    - routed experts, ``grouped`` (transformers 5: each token is gathered ``k`` times,
      ``grouped_mm`` per expert): ``k x (h + 3 w)`` at gate/up (gathered input, gate_up,
      product) or :data:`MOE_GROUPED_COPIES_AT_DOWN` ``x k x h`` at the down projection;
      ``fused`` (vLLM ``fused_moe``): ``intermediate_cache1/2/3`` of ``k x 2w``,
      ``k x w`` and ``k x h``;
    - the shared expert after them: routed output (h) + 3 x its width.
    """
    moe = spec.moe
    if moe is None:
        return 0
    k, h, w = moe.experts_per_token, spec.hidden_size, moe.expert_intermediate_size // tp
    if impl == "grouped":
        routed = max(k * (h + 3 * w), MOE_GROUPED_COPIES_AT_DOWN * k * h)
    else:
        routed = k * (3 * w + h)
    shared_w = moe.shared_expert_intermediate_size // tp
    shared = h + 3 * shared_w if shared_w else 0
    return max(routed, shared)


def mlp_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, moe_impl: MoEImpl = "grouped") -> int:
    """Live bytes at the MLP peak of one layer, per TP rank.

    Dense gated MLP, transformers ``LlamaMLP``: ``down(act(gate(x)) * up(x))`` holds
    ``act(gate)``, ``up`` and their product at once: 3 x width; a fused kernel
    (vLLM ``MergedColumnParallelLinear`` + ``SiluAndMul``) holds ``gate_up`` (2 x
    width) and the product (1 x width): the same 3 x width. Plain MLP: ``up`` and
    ``act(up)``: 2 x width. MoE layers: :func:`moe_width_per_token`, plus the router
    logits in fp32. Plus the held hidden states, the post-attention residual and the
    normed input (``held + 2`` x h) and the rotary tables, still referenced.
    """
    copies = 3 if spec.mlp_gated else 2
    dense = copies * (spec.intermediate_size // tp) if spec.num_dense_layers else 0
    moe = moe_width_per_token(spec, tp, moe_impl) if spec.num_moe_layers else 0
    per_token = (shape.held_hidden + 2) * spec.hidden_size + _rotary_table(spec) + max(dense, moe)
    live = shape.tokens * per_token * shape.act_bytes
    if moe and spec.moe is not None:
        live += shape.tokens * spec.moe.num_experts * FP32_BYTES
    return live


def layer_peak_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, impl: AttentionImpl = "sdpa",
                     repeat_kv: bool = False, moe_impl: MoEImpl = "grouped") -> int:
    """Peak live bytes inside one decoder layer: the larger of its two phases."""
    return max(attention_phase_bytes(spec, shape, tp=tp, impl=impl, repeat_kv=repeat_kv),
               mlp_phase_bytes(spec, shape, tp=tp, moe_impl=moe_impl))


def logits_bytes(spec: ModelSpec, *, rows: int, act_bytes: int = 2, fp32_copy: bool = True) -> int:
    """Bytes of the logits for ``rows`` positions: ``rows x vocab`` in the compute dtype
    (gathered whole on every rank under TP) and, when
    ``fp32_copy``, their fp32 upcast (transformers ``generate`` copies the last
    position's logits to fp32; a plain forward returns every position's)."""
    per_row = spec.vocab_size * (act_bytes + (FP32_BYTES if fp32_copy else 0))
    return rows * per_row
