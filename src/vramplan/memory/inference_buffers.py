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

    @property
    def tokens(self) -> int:
        return self.sequences * self.query_tokens


def attention_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, impl: AttentionImpl = "sdpa",
                          repeat_kv: bool = False) -> int:
    """Live bytes at the attention peak of one layer, per TP rank.

    ``residual (h) + normed input (h) + q + k + v + rotary temporaries (one more q and
    k: ``q * cos + rotate_half(q) * sin`` holds two q-sized tensors at once) + output
    (q width)`` per token, plus, for ``eager``, the score matrix of
    ``heads x q_len x kv_len`` held in the compute dtype, its fp32 softmax and the cast
    back (2 + 4 + 2 bytes per score; transformers ``eager_attention_forward``). SDPA's
    flash / memory-efficient kernels and FlashAttention keep no score matrix (Dao et
    al. 2022). ``repeat_kv`` adds K and V expanded to every query head (transformers
    ``repeat_kv`` before eager attention in GQA models).
    """
    heads = spec.num_attention_heads // tp
    if spec.mla is not None:
        q_width = heads * spec.mla.qk_head_dim
        kv_width = heads * (spec.mla.qk_head_dim + spec.mla.v_head_dim)
    else:
        q_width = heads * spec.head_dim
        kv_width = 2 * kv_heads_per_rank(spec, tp) * spec.head_dim
    residual_and_norm = 2 * spec.hidden_size
    rotary_temps = q_width + kv_width // 2
    expanded = 2 * q_width if repeat_kv else 0
    per_token = residual_and_norm + q_width + kv_width + rotary_temps + q_width + expanded
    live = shape.tokens * per_token * shape.act_bytes
    if impl == "eager":
        scores = shape.sequences * heads * shape.query_tokens * shape.kv_tokens
        live += scores * (shape.act_bytes + FP32_BYTES + shape.act_bytes)
    return live


def mlp_width_per_token(spec: ModelSpec, layer_is_moe: bool, tp: int) -> int:
    """Intermediate width one token fills in an MLP, per rank: the dense width, or
    ``top_k x expert width + shared width`` in an MoE layer (each token runs its top-k
    experts; under a uniform router the experts' inputs add up to ``k`` copies)."""
    if not layer_is_moe or spec.moe is None:
        return spec.intermediate_size // tp
    moe = spec.moe
    return (moe.experts_per_token * moe.expert_intermediate_size + moe.shared_expert_intermediate_size) // tp


def mlp_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, fused_gate_up: bool = False) -> int:
    """Live bytes at the MLP peak of one layer, per TP rank.

    Gated MLP, transformers ``LlamaMLP``: ``down(act(gate(x)) * up(x))`` holds
    ``act(gate)``, ``up`` and their product at once: 3 x width; a fused kernel
    (vLLM ``MergedColumnParallelLinear`` + ``SiluAndMul``) holds ``gate_up`` (2 x
    width) and the product (1 x width): the same 3 x width. Plain MLP: ``up`` and
    ``act(up)``: 2 x width. Plus residual and normed input (2 x h). MoE layers add the
    router logits in fp32 (experts per token) and the output accumulator (h).
    """
    is_moe = any(spec.is_moe_layer(i) for i in range(spec.num_layers))
    width = max(mlp_width_per_token(spec, False, tp) if spec.num_dense_layers else 0,
                mlp_width_per_token(spec, True, tp) if is_moe else 0)
    copies = 3 if spec.mlp_gated or fused_gate_up else 2
    per_token = 2 * spec.hidden_size + copies * width
    live = shape.tokens * per_token * shape.act_bytes
    if is_moe and spec.moe is not None:
        live += shape.tokens * (spec.moe.num_experts * FP32_BYTES + spec.hidden_size * shape.act_bytes)
    return live


def layer_peak_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, impl: AttentionImpl = "sdpa",
                     repeat_kv: bool = False) -> int:
    """Peak live bytes inside one decoder layer: the larger of its two phases."""
    return max(attention_phase_bytes(spec, shape, tp=tp, impl=impl, repeat_kv=repeat_kv),
               mlp_phase_bytes(spec, shape, tp=tp))


def logits_bytes(spec: ModelSpec, *, rows: int, act_bytes: int = 2, fp32_copy: bool = True) -> int:
    """Bytes of the logits for ``rows`` positions: ``rows x vocab`` in the compute dtype
    (gathered whole on every rank under TP) and, when
    ``fp32_copy``, their fp32 upcast (transformers ``generate`` copies the last
    position's logits to fp32; a plain forward returns every position's)."""
    per_row = spec.vocab_size * (act_bytes + (FP32_BYTES if fp32_copy else 0))
    return rows * per_row
