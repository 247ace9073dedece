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

from vramplan.dtypes import FP32_BYTES
from vramplan.intmath import ceil_div
from vramplan.memory.activations import EVERY_EXPERT_FAMILIES
from vramplan.memory import compressed_attention, sparse_indexer
from vramplan.memory.weights import kv_heads_per_rank
from vramplan.model.spec import MLASpec, ModelSpec

AttentionImpl = Literal["eager", "sdpa", "flash"]

# Softmax in eager attention and the logits upcast run in fp32 (FP32_BYTES, from vramplan.dtypes).


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

    kv_outside_cache: bool = False
    """The attention reads this forward's own new keys and values rather than the
    cache's storage, so they stay alive beside the cache through the attention: a
    ``StaticCache``'s sliding layer whose window the new tokens overflow returns them
    (``StaticSlidingWindowLayer.update``); a dynamic cache returns its concatenation
    and a full static layer its storage, and the new tensors are freed."""

    @property
    def tokens(self) -> int:
        return self.sequences * self.query_tokens


EAGER_BYTES_PER_SCORE_EXTRA = FP32_BYTES + FP32_BYTES
"""Eager softmax: ``softmax(scores + mask, dtype=float32)`` holds the masked scores
(compute dtype), their fp32 upcast and the fp32 result at once."""


@dataclass(frozen=True, kw_only=True)
class LayerFlow:
    """How one implementation of a decoder layer keeps its tensors alive, where it
    departs from the Llama layout (``LlamaDecoderLayer``, the default). Each field is
    read off a modeling file; :func:`hf_layer_flow` picks the transformers one."""

    fused_qkv: bool = False
    """q, k and v are views of one projection output (GPT-2 ``c_attn``, GPT-NeoX
    ``query_key_value``), which stays alive until the attention returns."""
    softmax_fp32: bool = True
    """Eager softmax upcasts to fp32 (``softmax(..., dtype=torch.float32)``, Llama,
    GPT-NeoX); GPT-2's ``eager_attention_forward`` softmaxes in the compute dtype."""
    mlp_block_hidden: int = 2
    """Hidden-sized tensors the block itself holds while its MLP runs: Llama the
    post-attention residual sum and the normed input (2); GPT-2 also keeps
    ``attn_output`` bound (3); GPT-NeoX keeps ``attn_output`` and the normed input, and
    adds the residuals after the MLP (2)."""
    activation_extra_copies: int = 0
    """Width-sized temporaries the activation holds beyond its input and output: 0 for
    one kernel (``F.gelu``, ``F.silu``, fused engine kernels); 2 for GPT-2's
    ``NewGELUActivation`` written in Python (``0.5 * x * (1 + tanh(c * (x + 0.044715 *
    x**3))))``): at ``0.044715 * pow(x, 3)`` the input, ``0.5 * x``, ``pow`` and the
    product are alive, 4 = input + output + 2."""
    fused_gate_up: bool = False
    """The gated MLP's gate and up are halves of one projection (Phi-3 ``Phi3MLP``:
    ``up_states = gate_up_proj(x)``, ``gate, up_states = up_states.chunk(2)``,
    ``up_states = up_states * act(gate)``): the ``gate`` view keeps the whole ``2 x
    width`` output alive beside ``act(gate)`` and the product (4 x width where the
    separate projections of ``LlamaMLP`` hold 3), and through the down projection."""
    attention_sinks: bool = False
    """Eager attention with a learned sink logit per head (gpt-oss
    ``eager_attention_forward``): ``torch.cat([attn_weights, sinks], -1)``, the result
    shifted by its row maximum and softmaxed in its own dtype, the sink column dropped
    by a view. The masked scores stay bound meanwhile, so three score-sized tensors in
    the compute dtype are alive at the shift (with the row maximum) and at the softmax,
    where Llama's fp32 softmax holds 2 + 4 + 4 bytes per score."""
    recurrent_mixers: bool = False
    """The model's recurrent mixers run transformers' PyTorch loops: MiniMax-01's
    lightning attention block by block, RecurrentGemma's RG-LRU position by position
    (:func:`mixer_phase_bytes`)."""
    mla_expands_cache: bool = False
    """Multi-head latent attention decompresses the cached latent of every token for
    every step (transformers ``DeepseekV3Attention.expand_kv``: ``kv_b_proj`` over the
    whole cache, then a new full-width key); fused engines absorb ``kv_b_proj`` instead."""


LLAMA_FLOW = LayerFlow()
"""The Llama layout, shared by vLLM's and llama.cpp's fused layers."""

PYTHON_GELU_EXTRA_COPIES = 2
"""See :attr:`LayerFlow.activation_extra_copies`."""

_PYTHON_ACTIVATIONS = ("gelu_new",)
"""``hidden_act`` values transformers maps to an activation written as several ops
(``activations.NewGELUActivation``)."""

FUSED_GATE_UP_FAMILIES = frozenset({"phi3", "glm", "glm4", "chatglm"})
"""Families whose dense MLP is one ``gate_up_proj`` split by ``chunk`` (``Phi3MLP``,
``GlmMLP``, ``Glm4MLP``, ChatGLM's ``dense_h_to_4h`` + ``swiglu``):
:attr:`LayerFlow.fused_gate_up`."""

SINK_ATTENTION_FAMILIES = frozenset({"gpt_oss"})
"""Families whose eager attention concatenates per-head sink logits
(``GptOssAttention``): :attr:`LayerFlow.attention_sinks`."""


def hf_layer_flow(spec: ModelSpec) -> LayerFlow:
    """The transformers layer layout of ``spec``'s family (modeling_gpt2.py,
    modeling_gpt_neox.py, modeling_phi3.py, modeling_gpt_oss.py; every other supported
    family follows the Llama layout)."""
    extra = PYTHON_GELU_EXTRA_COPIES if spec.hidden_act in _PYTHON_ACTIVATIONS else 0
    if spec.model_type == "gpt2":
        return LayerFlow(fused_qkv=True, softmax_fp32=False, mlp_block_hidden=3, activation_extra_copies=extra)
    if spec.model_type == "gpt_neox":
        return LayerFlow(fused_qkv=True, activation_extra_copies=extra)
    if spec.model_type == "phi3":
        # Phi3Attention slices q, k, v out of one qkv_proj output bound in its frame
        return LayerFlow(fused_qkv=True, fused_gate_up=True, activation_extra_copies=extra)
    return LayerFlow(activation_extra_copies=extra, mla_expands_cache=spec.mla is not None,
                     recurrent_mixers=any(m in spec.layer_mixers for m in ("lightning_attention", "rg_lru")),
                     fused_gate_up=spec.model_type in FUSED_GATE_UP_FAMILIES,
                     attention_sinks=spec.model_type in SINK_ATTENTION_FAMILIES)


def eager_probs_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1) -> int:
    """Bytes of one layer's attention probabilities in the compute dtype: eager
    attention returns them and every transformers decoder layer binds them
    (``hidden_states, _ = self.self_attn(...)``), so they stay alive through the
    output projection and the MLP of that layer."""
    heads = spec.num_attention_heads // tp
    return shape.sequences * heads * shape.query_tokens * shape.kv_tokens * shape.act_bytes


def eager_scores_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, flow: LayerFlow = LLAMA_FLOW) -> int:
    """Bytes of the score-sized tensors alive at eager attention's high point, per TP
    rank, for ``scores = sequences x heads x q_len x kv_len``: the masked scores in the
    compute dtype, their fp32 upcast and the fp32 softmax (``softmax(..., dtype=float32)``,
    Llama: 2 + 4 + 4 bytes per score with bf16); two compute-dtype copies when the
    softmax keeps the compute dtype (GPT-2: each of ``* scaling``, ``+ mask`` and the
    softmax replaces the last); three compute-dtype copies with sinks
    (:attr:`LayerFlow.attention_sinks`), whose two concatenated tensors have one more
    column per row, and the row maximum alive at the shift."""
    heads = spec.num_attention_heads // tp
    rows = shape.sequences * heads * shape.query_tokens
    scores = rows * shape.kv_tokens
    if flow.attention_sinks:
        return 3 * scores * shape.act_bytes + (2 + 1) * rows * shape.act_bytes
    if not flow.softmax_fp32:
        return 2 * scores * shape.act_bytes
    return scores * (shape.act_bytes + EAGER_BYTES_PER_SCORE_EXTRA)


def attention_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, impl: AttentionImpl = "sdpa",
                          repeat_kv: bool = False, flow: LayerFlow = LLAMA_FLOW) -> int:
    """Live bytes at the attention peak of one layer, per TP rank: the larger of two
    moments.

    Projections: ``held hidden states + normed input (h) + rotary cos and sin
    (2 x head_dim) + q + k + v + rotary temporaries (one more q and k:
    ``q * cos + rotate_half(q) * sin`` holds two q-sized tensors at once) + output (q
    width)`` per token (+ K and V expanded to every query head when ``repeat_kv``,
    transformers ``repeat_kv`` before eager attention in GQA models: every cached
    token's, ``kv_tokens`` per sequence).

    Scores (``eager`` only; transformers ``eager_attention_forward``): the hidden
    states, q and K/V stay alive while the ``heads x q_len x kv_len`` scores are held
    three times — masked in the compute dtype, upcast to fp32, softmaxed in fp32
    (2 + 4 + 4 bytes per score); the mask itself is :func:`attention_mask_bytes`. SDPA's flash / memory-efficient kernels and
    FlashAttention keep no score matrix (Dao et al. 2022).

    Fused q/k/v projections: :func:`fused_attention_phase_bytes`.

    Checked against live tensors of a real transformers ``generate`` on CPU
    (tests/test_infer_measured.py).
    """
    if flow.fused_qkv:
        return fused_attention_phase_bytes(spec, shape, tp=tp, impl=impl, flow=flow)
    if flow.mla_expands_cache and spec.mla is not None:
        return mla_attention_phase_bytes(spec, spec.mla, shape, tp=tp, impl=impl)
    heads = spec.num_attention_heads // tp
    if spec.mla is not None:
        q_width = heads * spec.mla.qk_head_dim
        kv_width = heads * (spec.mla.qk_head_dim + spec.mla.v_head_dim)
    else:
        q_width = heads * spec.head_dim
        kv_width = 2 * kv_heads_per_rank(spec, tp) * spec.head_dim
    base = (shape.held_hidden + 1) * spec.hidden_size + _rotary_table(spec) + q_width
    # repeat_kv expands every cached key and value (kv_tokens of them), not only the new ones.
    expanded = shape.sequences * shape.kv_tokens * 2 * q_width * shape.act_bytes if repeat_kv else 0
    rotary_temps = q_width + kv_width // 2
    projections = shape.tokens * (base + kv_width + rotary_temps + q_width) * shape.act_bytes + expanded
    if impl != "eager":
        return projections
    # the new keys and values, when the cache returned them instead of its storage
    fresh_kv = kv_width if shape.kv_outside_cache else 0
    at_scores = shape.tokens * (base + (0 if repeat_kv else kv_width) + fresh_kv) * shape.act_bytes + expanded + \
        eager_scores_bytes(spec, shape, tp=tp, flow=flow)
    return max(projections, at_scores)


def fused_attention_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int, impl: AttentionImpl,
                                flow: LayerFlow) -> int:
    """Live bytes at the attention peak of a layer whose q, k, v are views of one
    projection (GPT-2 ``GPT2Attention``, GPT-NeoX ``GPTNeoXAttention``), per TP rank.

    Before the scores, per token: held hidden states + normed input (h) + rotary
    tables + the fused ``q + k + v`` output (kept alive by its views) + the rotated
    query (rotary models only: ``apply_rotary_pos_emb`` ends in ``torch.cat``, a new
    q-sized tensor; the rotated key goes into the cache copy and is freed).
    Projection moment: the above + the attention output (q width) + its contiguous
    copy or the output projection (h): GPT-NeoX copies ``transpose(1, 2).contiguous()``
    before ``dense``; GPT-2's SDPA output is already laid out per token and its
    ``c_proj`` output is the second tensor. Eager adds the probabilities, still bound
    (:func:`eager_probs_bytes`).

    Scores (eager): the tensors before the scores + the scores held twice in the
    compute dtype (GPT-2: ``matmul * scaling``, ``+ mask`` and the softmax, each
    replacing the last) or, with the fp32 softmax, the masked scores + their fp32 upcast
    + the fp32 result.
    """
    heads = spec.num_attention_heads // tp
    q_width = heads * spec.head_dim
    kv_width = 2 * kv_heads_per_rank(spec, tp) * spec.head_dim
    rotated_q = q_width if spec.rotary_positions else 0
    before = shape.held_hidden * spec.hidden_size + spec.hidden_size + _rotary_table(spec) + q_width + kv_width \
        + rotated_q
    projections = shape.tokens * (before + q_width + spec.hidden_size) * shape.act_bytes
    if impl != "eager":
        return projections
    # the rotated key, when the cache returned it instead of its storage (the value is a view of the fused output)
    fresh_key = kv_width // 2 if shape.kv_outside_cache else 0
    at_scores = shape.tokens * (before + fresh_key) * shape.act_bytes + eager_scores_bytes(spec, shape, tp=tp,
                                                                                           flow=flow)
    return max(projections + eager_probs_bytes(spec, shape, tp=tp), at_scores)


def mla_attention_phase_bytes(spec: ModelSpec, mla: MLASpec, shape: ForwardShape, *, tp: int,
                              impl: AttentionImpl) -> int:
    """Live bytes at the attention peak of a multi-head latent attention layer as
    transformers runs it (``DeepseekV3Attention.forward``), per TP rank.

    Before the scores, per new token: held hidden states + normed input (h) + rotary
    tables (2 x rope dims) + the query projection ``q_states`` (heads x qk dims; its
    ``q_pass`` view keeps it alive) + the rotated ``q_rot`` (heads x rope dims,
    ``apply_rotary_pos_emb_interleave`` ends in ``torch.cat``) + ``query_states``
    (``cat(q_pass, q_rot)``: heads x qk dims) + ``compressed_kv`` (latent + rope dims,
    bound in the frame). Per cached token (``expand_kv`` runs on what the cache
    returns): ``kv_b_proj``'s output (heads x (nope + v) dims; ``value_states`` is its
    view) + ``key_states`` (heads x qk dims, ``new_empty`` filled by two copies).

    Projection moment: the above + the attention output (heads x v) + its contiguous
    copy or the ``o_proj`` output (h) (+ the bound probabilities under eager). Scores
    (eager): the above + masked scores, fp32 upcast and fp32 softmax (2 + 4 + 4 bytes).
    Values (eager): ``value_states`` is a strided view of ``kv_b_proj``'s output, so
    ``matmul(probs, value_states)`` first copies it contiguous (``kv_tokens x heads x
    v`` per sequence) next to the probabilities and the output: the decode peak.
    The query latent (``q_a_proj``) is freed before these moments. Indexer layers
    (DeepSeek sparse attention) score the keys after ``expand_kv``, with the above alive:
    :func:`vramplan.memory.sparse_indexer.scores_transient_bytes`.
    """
    heads = spec.num_attention_heads // tp
    per_query = (shape.held_hidden + 1) * spec.hidden_size + _rotary_table(spec) \
        + heads * (2 * mla.qk_head_dim + mla.qk_rope_head_dim) + mla.kv_lora_rank + mla.qk_rope_head_dim
    per_key = heads * (mla.qk_nope_head_dim + mla.v_head_dim + mla.qk_head_dim)
    before = (shape.tokens * per_query + shape.sequences * shape.kv_tokens * per_key) * shape.act_bytes
    out_width = heads * mla.v_head_dim
    projections = before + shape.tokens * (out_width + max(out_width, spec.hidden_size)) * shape.act_bytes
    # the lightning indexer scores every key while the expanded keys and values are alive,
    # and the query latent it reads, the normed key latent (and A.X K2's gate) are still bound
    scoring = sparse_indexer.scores_transient_bytes(spec, sequences=shape.sequences, query_tokens=shape.query_tokens,
                                                    kv_tokens=shape.kv_tokens, act_bytes=shape.act_bytes)
    latents = (mla.q_lora_rank or 0) * (2 if mla.fused_query_gate else 1) + mla.kv_lora_rank
    gate = 2 * heads * mla.v_head_dim if mla.fused_query_gate else 0  # q_gate_proj's gate half and its reshape
    indexer = before + scoring + shape.tokens * (latents + gate) * shape.act_bytes if scoring else 0
    if impl != "eager":
        return max(projections, indexer)
    scores = shape.sequences * heads * shape.query_tokens * shape.kv_tokens
    probs = eager_probs_bytes(spec, shape, tp=tp)
    value_copy = shape.sequences * shape.kv_tokens * out_width * shape.act_bytes
    at_values = before + probs + value_copy + shape.tokens * out_width * shape.act_bytes
    return max(projections + probs, at_values, before + scores * (shape.act_bytes + EAGER_BYTES_PER_SCORE_EXTRA),
               indexer)


def attention_mask_bytes(spec: ModelSpec, shape: ForwardShape, impl: AttentionImpl, *,
                         sliding_kv_tokens: int | None = None, per_sequence: bool = False) -> int:
    """The attention masks transformers builds once per forward (alive through every
    layer; ``masking_utils``): eager adds a float mask of ``q_len x kv_len`` per
    sequence in the compute dtype, one per attention kind the model has (Gemma 2 and
    other local/global models build a causal and a sliding mask, ``causal_mask_mapping``);
    SDPA runs pure causal attention with ``is_causal`` and no mask, but needs a boolean
    ``q_len x kv_len`` mask (shared by the batch, or one per sequence when
    ``per_sequence``: ``generate`` with a static cache builds the masks itself and makes
    them contiguous, ``GenerationMixin.prepare_inputs_for_generation``) when a sliding
    window cuts the keys; flash attention takes none. ``sliding_kv_tokens``: the keys a
    sliding layer attends to when they differ from a full layer's ``kv_tokens`` (a
    static cache's full layers attend over their whole preallocated length)."""
    sliding_kv = shape.kv_tokens if sliding_kv_tokens is None else sliding_kv_tokens
    if impl == "eager":
        kinds = set(spec.attention_kinds())
        keys = sum(shape.kv_tokens if kind == "full_attention" else sliding_kv for kind in kinds)
        return shape.sequences * shape.query_tokens * keys * shape.act_bytes
    window = spec.sliding_window
    if impl == "sdpa" and window is not None and sliding_kv > window and shape.query_tokens > 1:
        return (shape.sequences if per_sequence else 1) * shape.query_tokens * sliding_kv
    return 0


def _rotary_table(spec: ModelSpec) -> int:
    """Elements per token of the rotary cos and sin tables (``LlamaRotaryEmbedding``
    returns both at the rotary dims per position: ``head_dim``, or
    ``int(head_dim x partial_rotary_factor)`` in GPT-NeoX, ``qk_rope_head_dim`` in
    MLA); 0 for learned or sinusoid positions."""
    if not spec.rotary_positions:
        return 0
    rotary_dims = spec.mla.qk_rope_head_dim if spec.mla is not None else spec.head_dim
    return 2 * int(rotary_dims * spec.partial_rotary_factor)


MoEImpl = Literal["grouped", "fused"]

MOE_GROUPED_COPIES_AT_DOWN = 4
"""transformers' grouped-GEMM experts at the down projection hold four ``k x h``
tensors per token: the gathered input, the down output, its product with the routing
weights, and the re-indexed result (measured on a real Qwen3-MoE forward)."""


FP32_ROUTING_WEIGHT_FAMILIES = frozenset({
    "deepseek_v2", "deepseek_v3", "deepseek_v32", "glm4_moe", "glm4_moe_lite", "glm4v_moe_text", "glm_moe_dsa",
    "exaone_moe", "kimi_linear", "mimo_v2_flash", "solar_open", "axk1", "axk2", "bailing_hybrid", "nemotron_h",
    "hy_v4", "minimax", "minimax_m2", "mixtral", "dots3_note_text",
})
"""Families whose router returns fp32 top-k weights with no cast back: DeepSeek's
``TopkRouter`` and its copies (``F.linear(hidden_states.type(torch.float32), ...)``,
sigmoid or softmax in fp32), MiniMax-M2 (``sigmoid(router_logits.float())``), Mixtral
and MiniMax-01 (``softmax(router_logits.float())``) in transformers 5.24; Qwen-MoE and
OLMoE cast theirs back (``router_top_value.to(router_logits.dtype)``). So ``proj_out * sample_weights_g`` in transformers' grouped-GEMM experts and
its re-indexed copy are fp32: two of the four ``k x h`` tensors at the down
projection take twice the bytes."""


def moe_width_per_token(spec: ModelSpec, tp: int, impl: MoEImpl) -> int:
    """Elements per token live at the peak of an MoE block, per rank (routed experts
    split by TP as vLLM's ``FusedMoE`` splits them), the larger of:

    - routed experts, ``grouped`` (transformers 5: each token is gathered ``k`` times,
      ``grouped_mm`` per expert): ``k x (h + 4 w)`` at gate/up (gathered input, gate_up,
      ``act(gate)`` and its product with ``up``) or :data:`MOE_GROUPED_COPIES_AT_DOWN` ``x k x h`` at the down projection;
      ``fused`` (vLLM ``fused_moe``): ``intermediate_cache1/2/3`` of ``k x 2w``,
      ``k x w`` and ``k x h``;
    - the shared expert after them: routed output (h) + 3 x its width.
    """
    moe = spec.moe
    if moe is None:
        return 0
    k, h, w = moe.experts_per_token, spec.hidden_size, moe.expert_intermediate_size // tp
    if impl == "grouped" and spec.model_type in EVERY_EXPERT_FAMILIES:
        k = moe.num_experts  # every expert runs on every token (Llama4TextMoe's repeat + bmm)
    if impl == "grouped":
        down_copies = MOE_GROUPED_COPIES_AT_DOWN + (2 if spec.model_type in FP32_ROUTING_WEIGHT_FAMILIES else 0)
        routed = max(k * (h + 4 * w), down_copies * k * h)
    else:
        routed = k * (3 * w + h)
    shared_w = moe.shared_expert_intermediate_size // tp
    shared = h + 3 * shared_w if shared_w else 0
    return max(routed, shared)


def mlp_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, moe_impl: MoEImpl = "grouped",
                    flow: LayerFlow = LLAMA_FLOW) -> int:
    """Live bytes at the MLP peak of one layer, per TP rank.

    Dense gated MLP, transformers ``LlamaMLP``: ``down(act(gate(x)) * up(x))`` holds
    ``act(gate)``, ``up`` and their product at once: 3 x width; a fused kernel
    (vLLM ``MergedColumnParallelLinear`` + ``SiluAndMul``) holds ``gate_up`` (2 x
    width) and the product (1 x width): the same 3 x width; one fused projection split
    in two (:attr:`LayerFlow.fused_gate_up`, Phi-3) 4 x width. Plain MLP: ``up`` and
    ``act(up)``: 2 x width, plus the temporaries of an activation written as several
    ops (:attr:`LayerFlow.activation_extra_copies`). MoE layers:
    :func:`moe_width_per_token`, plus the router logits in fp32. Plus the held hidden
    states, the block's own hidden-sized tensors (``flow.mlp_block_hidden``: the
    post-attention residual and the normed input for Llama) and the rotary tables,
    still referenced.
    """
    copies = (3 if spec.mlp_gated else 2) + flow.activation_extra_copies
    width = spec.intermediate_size // tp
    if flow.fused_gate_up and spec.mlp_gated:
        # at the product: gate_up (2w) + act(gate) + product; at down_proj: gate_up + product + output
        dense_per_token = max((copies + 1) * width, 3 * width + spec.hidden_size)
    else:
        dense_per_token = copies * width
    dense = dense_per_token if spec.num_dense_layers else 0
    moe = moe_width_per_token(spec, tp, moe_impl) if spec.num_moe_layers else 0
    per_token = (shape.held_hidden + flow.mlp_block_hidden) * spec.hidden_size + _rotary_table(spec) + \
        max(dense, moe)
    live = shape.tokens * per_token * shape.act_bytes
    if moe and spec.moe is not None:
        live += shape.tokens * spec.moe.num_experts * FP32_BYTES
    return live


def layer_peak_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, impl: AttentionImpl = "sdpa",
                     repeat_kv: bool = False, moe_impl: MoEImpl = "grouped", flow: LayerFlow = LLAMA_FLOW) -> int:
    """Peak live bytes inside one decoder layer: the larger of its two phases (three with
    recurrent mixers, :attr:`LayerFlow.recurrent_mixers`). Under
    eager attention the MLP phase also holds the layer's attention probabilities
    (:func:`eager_probs_bytes`)."""
    probs = eager_probs_bytes(spec, shape, tp=tp) if impl == "eager" else 0
    # DeepSeek-V4's indexer scores the compressed keys with the held and normed hidden states alive
    scoring = sparse_indexer.compressed_scores_transient_bytes(spec, sequences=shape.sequences,
                                                               query_tokens=shape.query_tokens,
                                                               kv_tokens=shape.kv_tokens)
    held = (shape.held_hidden + 1) * spec.hidden_size * shape.act_bytes \
        + compressed_attention.indexer_moment_bytes_per_token(spec, shape.act_bytes)
    indexer = held * shape.tokens + scoring if scoring else 0
    return max(attention_phase_bytes(spec, shape, tp=tp, impl=impl, repeat_kv=repeat_kv, flow=flow),
               mlp_phase_bytes(spec, shape, tp=tp, moe_impl=moe_impl, flow=flow) + probs,
               mixer_phase_bytes(spec, shape, tp=tp, flow=flow), indexer)


def mixer_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1, flow: LayerFlow = LLAMA_FLOW) -> int:
    """Live bytes at the high point of a token mixer other than attention whose forward
    is modelled (:mod:`vramplan.memory.mixer_activations`), per TP rank: the chunked
    prefill of Kimi delta attention, the gated delta-net and Mamba-2, and in
    transformers' flow (:attr:`LayerFlow.recurrent_mixers`) the larger of
    :func:`lightning_attention_phase_bytes` and :func:`rg_lru_phase_bytes`. 0 for a mixer
    the model lacks, and for the chunked mixers in decode (one token: the recurrent
    form)."""
    chunked = 0
    if shape.query_tokens > 1:
        from vramplan.memory.mixer_activations import (gated_deltanet_prefill_bytes, kda_prefill_bytes,
                                                       mamba2_prefill_bytes)

        prefill = (shape.sequences, shape.query_tokens, shape.act_bytes, shape.held_hidden, tp)
        if spec.kda is not None and "kda" in spec.layer_mixers:
            chunked = max(chunked, kda_prefill_bytes(spec, *prefill))
        if spec.deltanet is not None and "gated_deltanet" in spec.layer_mixers:
            chunked = max(chunked, gated_deltanet_prefill_bytes(spec, *prefill))
        if spec.ssm is not None and spec.ssm.version == 2 and (
                "mamba2" in spec.layer_mixers or spec.ssm_in_attention_layers):
            chunked = max(chunked, mamba2_prefill_bytes(spec, *prefill))
    recurrent = max(lightning_attention_phase_bytes(spec, shape, tp=tp), rg_lru_phase_bytes(spec, shape, tp=tp)) \
        if flow.recurrent_mixers else 0
    return max(chunked, recurrent)


RG_LRU_SCAN_TENSORS = 11
"""``lru_width``-wide tensors bound in ``RecurrentGemmaRglru.forward`` while ``_rnn_scan``
runs (see :func:`rg_lru_phase_bytes`)."""


def rg_lru_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1) -> int:
    """Live bytes at the high point of one RecurrentGemma recurrent block
    (``RecurrentGemmaRecurrentBlock.forward`` under ``torch.no_grad()``), per TP rank,
    ``W = lru_width / tp``: the held hidden states and the normed input (as
    :func:`attention_phase_bytes`), the GeLU branch (``W``), the convolution's output
    over ``s + K - 1`` positions (the RG-LRU's input is a view of it), and the
    :data:`RG_LRU_SCAN_TENSORS` tensors bound in ``RecurrentGemmaRglru.forward`` during
    the scan, each ``W`` per token in the compute dtype: the permuted input's copy (for
    one sequence ``reshape`` keeps a view of the convolution's output instead), the
    second gate's ``baddbmm`` output, the input gate, ``a``, ``log a``, ``a^2``, the gated
    input, the multiplier, the normalised input, ``a * ~reset`` and the output the
    scan fills. Each position's fp32 state, ``W`` per sequence, is left out."""
    lru = spec.rg_lru
    if lru is None or "rg_lru" not in spec.layer_mixers:
        return 0
    width, s = lru.width // tp, shape.query_tokens
    conv_output = width * (s + lru.conv_kernel - 1)
    scan = RG_LRU_SCAN_TENSORS - (1 if shape.sequences == 1 else 0)
    per_sequence = s * ((shape.held_hidden + 1) * spec.hidden_size + width * (1 + scan)) + conv_output
    return shape.sequences * per_sequence * shape.act_bytes


def lightning_attention_phase_bytes(spec: ModelSpec, shape: ForwardShape, *, tp: int = 1) -> int:
    """Live bytes at the high point of one lightning-attention layer (MiniMax-01,
    transformers ``MiniMaxLightningAttention.forward`` under ``torch.no_grad()``), per TP
    rank: the larger of two moments. ``H`` heads of ``D`` per rank (``W = H D``), blocks
    of ``l`` positions, the last ``l_last`` long; ``c`` the compute dtype's size.

    Both hold the held hidden states, the normed input and the rotary tables (as
    :func:`attention_phase_bytes`) and ``silu(qkv_proj(x))`` (``3 W`` per token: q, k
    and v are views of it, bound until the layer returns).

    Inside the block loop, at ``(Q K^T * decay) V`` of block ``i``: the outputs of the
    blocks before (``W`` per earlier token, in a list until ``torch.cat``), the scores
    and their product with the decay (``2 H l_i^2`` per sequence), ``matmul``'s copy of v
    and its output (``2 H l_i D``), the previous block's intra- and inter-block outputs
    (still bound: ``2 H l_(i-1) D``), the state and the previous block's state update
    (``2 H D^2``). The last block and the last full one are the candidates.

    At the output norm (``MiniMaxRMSNorm`` over ``W``): the reshaped output (``c W``), its
    fp32 copy (none when ``c`` is fp32 already) beside ``pow(2)``'s or the normalised
    product (``f W``), with the last block's leftovers still bound: its scores
    (``H l_last^2``), intra, inter and summed outputs (``3 H l_last D``) and its state
    update (``H D^2``; the new state itself is counted with the cache). These are
    reserved at a full block's size (``l_last = min(l, s)``), so that a longer prompt
    never costs less (a prompt one past a block boundary leaves a one-position block:
    transformers then holds up to ``H l^2`` less here)."""
    if spec.lightning_block_size <= 0:
        return 0
    c, f = shape.act_bytes, FP32_BYTES
    heads = spec.num_attention_heads // tp
    head_dim, block, s = spec.head_dim, spec.lightning_block_size, shape.query_tokens
    width = heads * head_dim
    blocks = ceil_div(s, block)
    last = s - (blocks - 1) * block
    held = shape.tokens * ((shape.held_hidden + 1) * spec.hidden_size + _rotary_table(spec) + 3 * width) * c
    state = heads * head_dim * head_dim

    def in_loop(i: int) -> int:  # at block i's intra-block product, per sequence
        size = last if i == blocks - 1 else block
        before = i * block
        previous = (2 * heads * block * head_dim + state) if i else 0  # previous intra/inter outputs, its update
        return c * (width * before + 2 * heads * size * size + 2 * heads * size * head_dim + state + previous)

    loop = max(in_loop(i) for i in {blocks - 1, max(blocks - 2, 0)})
    upcast = f * width if c < f else 0
    kept = min(block, s)  # the last block's leftovers, reserved at a full block's
    at_norm = c * (width * s + heads * kept * kept + 3 * heads * kept * head_dim + state) + s * (upcast + f * width + f)
    return held + shape.sequences * max(loop, at_norm)


def logits_bytes(spec: ModelSpec, *, rows: int, act_bytes: int = 2, fp32_copy: bool = True) -> int:
    """Bytes of the logits for ``rows`` positions: ``rows x vocab`` in the compute dtype
    (gathered whole on every rank under TP) and, when
    ``fp32_copy``, their fp32 upcast (transformers ``generate`` copies the last
    position's logits to fp32; a plain forward returns every position's)."""
    per_row = spec.vocab_size * (act_bytes + (FP32_BYTES if fp32_copy else 0))
    return rows * per_row
