"""Training activations: the tensors autograd saves for backward, per decoder layer
and micro-batch, derived from what each operation of the Hugging Face modeling
code keeps.

Notation: ``t`` tokens of the micro-batch on this GPU (``batch x seq / cp``), ``h``
hidden size, ``a`` query heads, ``q``/``kv`` the widths of all query / key-value
heads, ``i`` MLP width, ``s`` sequence length. ``r`` is the byte size of the residual
stream, ``c`` of the compute dtype, ``f = 4`` of fp32 (see
:class:`~vramplan.memory.precision.PrecisionRecipe`). Per token and layer:

- residual stream: the layer input and the sum after attention, ``2 r h``.
- each norm (HF ``LlamaRMSNorm``: upcast, ``rsqrt``, normalise, cast back, scale):
  the fp32 upcast of its input when ``r < 4`` (``f h``), ``rsqrt`` (``f``), the
  normalised tensor saved by the scale multiply (``r h``). ``LayerNorm``
  (``native_layer_norm``) saves its input (the residual) and fp32 mean and rstd
  (``2 f``).
- linear inputs: a norm output is saved once by the linears that read it
  (``r h``); under autocast each of those linears saves its own ``c``-byte cast
  (``k c h`` for ``k`` readers: 3 for q/k/v, 2 for gate/up).
- attention, flash/SDPA: q, k, v after RoPE (``c (q + 2 kv)``; SDPA takes GQA
  keys un-repeated), the output (``c q``, also the o_proj input) and the fp32
  log-sum-exp (``f a``). Eager adds the ``a s`` scores per token: the softmax output
  (fp32 in Llama-family code, ``dtype=torch.float32``; compute dtype in GPT-2), its
  cast to the compute dtype when that differs, and with dropout a 1-byte mask plus
  the dropped copy; eager GQA repeats k/v to ``q`` width (``repeat_kv``) and the
  output is made contiguous before o_proj (``c q``).
- gated MLP: gate, activation output, up and their product (``4 c i``); plain MLP:
  up and activation output (``2 c i``; GPT-2's ``gelu_new`` is written out in
  Python and keeps three more ``c i`` tensors).
- dropout (GPT-2 style ``resid_pdrop``): a 1-byte mask after attention and MLP.
- MoE (transformers ``Qwen2MoeExperts`` loop): router probabilities (``f E``) and
  top-k indices/weights, then per routed token x expert: the gathered input
  (``c h``), gate-up output (``2 c i_e``), activation and product (``2 c i_e``), the
  expert output before weighting (``c h``) and int64 indices; shared experts as a
  dense MLP.
- MLA (DeepSeek ``DeepseekV3Attention``): the query and KV latents with their norms,
  the expanded q/k (``a (d_nope + d_rope)`` each), the ``kv_b_proj`` output that
  holds the values (``a (d_nope + d_v)``), the output (``a d_v``) and the LSE.

Reference: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", eq. 1: ``s b h (34 + 5 a s / h)`` bytes per GPT layer with
16-bit activations, 1-byte dropout masks, a GeLU that saves its input. A GPT-2
block here in ``bf16`` with eager attention and dropout reproduces it term by term,
plus ``16`` bytes per token for LayerNorm's fp32 mean and rstd, which the paper
leaves out (tests/test_train_formulas.py).

Tensor parallelism (Megatron, Korthikanti sec. 4) divides the parts that are split
by heads or MLP width by ``tp``; the rest (residual, norms, masks on ``h``) only
with sequence parallelism. Context parallelism divides every token count by ``cp``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from vramplan.memory import compressed_attention, hyper_connections, mixer_activations
from vramplan.memory.precision import PrecisionRecipe
from vramplan.model.spec import (
    MIXERS_WITH_ACTIVATIONS,
    SHARED_BLOCK_WITH_ACTIVATIONS,
    SSM_BESIDE_ATTENTION_WITH_ACTIVATIONS,
    MLASpec,
    ModelSpec,
    MoESpec,
)
from vramplan.model.tensors import model_tensors

AttentionImpl = Literal["flash", "sdpa", "eager"]
Recompute = Literal["none", "selective", "full"]

FP32 = 4
"""Bytes of an fp32 element (norm statistics, softmax in Llama-family code, LSE)."""
MASK = 1
"""Bytes of a dropout mask element (``torch.bool``)."""
INDEX = 8
"""Bytes of an int64 index (top-k expert indices, gather positions)."""
QKV_READERS = 3
"""Linears that read the first norm's output: q, k, v (GPT-2's fused c_attn is one)."""
SOFTMAX_IN_COMPUTE_DTYPE = frozenset({"gpt2", "gpt_neox_japanese"})
"""Families whose eager attention runs softmax in the compute dtype (GPT-2's
``nn.functional.softmax(attn_weights)``); Llama-family code passes ``dtype=float32``."""
FAMILY_GATE_SAVES = {"gpt_oss": 3}
"""Gated activations written out in a family's code that keep more than ``act(gate)``:
gpt-oss's ``GptOssExperts._apply_gate`` (``gate.clamp(max=l)``, ``up.clamp(-l, l)``,
``glu = gate * sigmoid(alpha gate)``, ``(up + 1) * glu``) keeps the clamps' input (the
fused gate_up output, as gate and up), the sigmoid output, and also the clamped gate,
``up + 1`` and ``glu``: three ``[tokens, i]`` tensors more."""
NORM_WEIGHT_IN_FP32 = frozenset({
    "gemma", "gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma3n_text", "vaultgemma", "recurrent_gemma",
    "olmo2", "olmo3", "flex_olmo", "gpt_oss", "afmoe", "ernie4_5_moe", "qwen3_next", "qwen3_5", "qwen3_5_text",
    "qwen3_5_moe", "qwen3_5_moe_text",
})
"""Families whose RMSNorm applies its weight before casting back
(``(self.weight * hidden_states).to(input_dtype)``, OLMo 2; ``output * (1.0 +
self.weight.float())``, Gemma): the product's backward keeps the fp32 normalised
tensor, where Llama's ``self.weight * hidden_states.to(input_dtype)`` keeps it in
the input dtype."""
FUSED_QKV_ROTARY = frozenset({"phi3", "gpt_neox", "gpt_neox_japanese"})
"""Families with one fused q/k/v projection and RoPE (Phi-3 ``qkv_proj``, GPT-NeoX
``query_key_value``): q, k and v are views of its output, RoPE writes new q and k, and
the value view the attention saves keeps the whole fused output alive, so its q and
k thirds stay too (``c (q + kv)`` per token more)."""
VISION_TOWER_VIEWS = frozenset({"qwen2_vl_vision", "qwen2_5_vl_vision", "qwen3_vl_vision", "qwen3_vl_moe_vision"})
"""Qwen-VL vision towers' blocks seen as decoder layers (:func:`vramplan.memory.vision_tower.tower_view`):
one fused ``qkv`` linear reads the norm output, RoPE writes new q and k, and the value
view keeps the fused output alive."""
FUSED_QKV_ROTARY = FUSED_QKV_ROTARY | VISION_TOWER_VIEWS
PARALLEL_RESIDUAL = frozenset({"gpt_neox"})
"""Families whose attention and MLP both read the layer input (GPT-NeoX's
``use_parallel_residual``, on in Pythia): there is no post-attention sum to keep."""
SOFTMAX_IN_SCORES_DTYPE = frozenset({"gpt_oss"})
"""Families whose eager softmax names the scores' own dtype (gpt-oss:
``F.softmax(combined_logits, dim=-1, dtype=combined_logits.dtype)``); autocast runs an
op of its ``fp32_set_opt_dtype`` list (softmax) as-is when the dtype is given, so the
probabilities stay in the scores' dtype: the compute dtype, or fp32 where gpt-oss's fp32
sinks, concatenated to the scores, promote them."""
EXTRA_ACT_SAVES = {"gelu_new": 3, "quick_gelu": 1}
"""Activation functions written out in Python that keep more than their input:
``gelu_new`` = ``0.5 x (1 + tanh(k (x + 0.044715 x^3)))`` saves ``0.5 x``, ``tanh(.)``
and ``1 + tanh(.)`` besides ``x``; ``quick_gelu`` = ``x sigmoid(1.702 x)`` (CLIP) saves the
sigmoid's output besides ``x``."""


@dataclass(frozen=True, kw_only=True)
class ActivationPart:
    """One named share of a layer's saved activations."""

    name: str
    """Sub-path under ``activations/``, e.g. ``"attention/scores"``."""
    bytes: int
    """Bytes for one layer and one micro-batch on one GPU."""
    sharded: bool
    """Split across tensor-parallel ranks (heads, MLP width)."""


@dataclass(frozen=True, kw_only=True)
class MicroBatchBytes:
    """The activation bytes a micro-batch holds whatever its size: autocast's 16-bit
    weight copies and the adapters' weight casts (:func:`layer_weight_cast_bytes`,
    :func:`head_weight_cast_bytes`), one set per micro-batch in flight. Everything
    else an activation term holds grows with the micro-batch's tokens, so a term of
    ``T`` bytes at one sequence is ``T - fixed`` bytes per sequence plus ``fixed`` per
    micro-batch."""

    layer_kept_bytes: int = 0
    """Per layer: the part of what it keeps to its backward (0 under full recomputation,
    which keeps only the layer input)."""
    layer_backward_bytes: int = 0
    """Per layer: the part of what is alive in its backward."""
    outside_bytes: int = 0
    """Outside the layers: the head's weight copy."""


@dataclass(frozen=True, kw_only=True)
class ActivationContext:
    """What every activation formula needs besides the model."""

    recipe: PrecisionRecipe
    """Precision recipe (residual and compute byte sizes, autocast)."""
    batch: int
    """Micro-batch size b."""
    seq: int
    """Sequence length s."""
    attention: AttentionImpl = "sdpa"
    """Attention kernel: flash/SDPA keep O(s) state, eager keeps the s x s scores."""
    dropout: bool = False
    """Dropout layers active (GPT-2 style attention/residual dropout)."""
    tp: int = 1
    """Tensor-parallel degree."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism (splits the non-TP parts by tp too)."""
    cp: int = 1
    """Context-parallel degree (splits the sequence)."""
    residual_bytes: int | None = None
    """Override of the residual-stream element size (LoRA on a 16-bit base); ``None``
    takes the recipe's."""
    frozen_base: bool = False
    """Base weights frozen (LoRA): a norm's normalised tensor is saved only for its
    weight's gradient, and the head does not keep its input."""
    autocast_region: bool = False
    """The step runs inside ``torch.autocast`` even where no weight is cast (bf16
    weights or a bf16 LoRA base under ``bf16-mixed``): ops on autocast's fp32 list
    (``pow``...) still upcast their inputs."""
    linear_output_bytes: int | None = None
    """Element size of the block's linear outputs when it differs from the compute
    dtype's: bitsandbytes' ``Linear4bit`` casts its output back to its input's dtype
    (``.to(inp_dtype)``), fp32 on QLoRA's upcast residual stream."""
    attention_output_saved_by_adapter: bool = True
    """With :attr:`inputs_saved_by_adapters`: the output projection's adapter keeps its own
    cast of the attention output too. False for QLoRA under autocast, whose
    ``lora.Linear4bit`` casts nothing already in the compute dtype (see
    :func:`vramplan.memory.lora.adapter_activation_bytes_per_token`): the adapter then
    saves the attention output itself."""
    trained_experts: bool = False
    """Routed experts' weights get a gradient under a frozen base (LoRA folded into the
    fused experts by peft's ``ParamWrapper``): the experts keep their gathered inputs."""
    adapted_modules: frozenset[str] = frozenset()
    """Module names peft wraps with adapters (LoRA targets as resolved); empty for full
    fine-tuning."""
    inputs_saved_by_adapters: bool = False
    """Adapter matmuls save their own fp32 copies of the block's linear inputs (LoRA on
    a 16-bit base: peft casts the input to the adapter dtype), so the 16-bit norm
    outputs and the MLP product are kept by no one else."""
    expert_bytes: int | None = None
    """Element size of the routed experts' tensors: their fused weights' dtype
    (transformers' ``grouped_mm`` experts cast their input to ``weight.dtype`` and are
    not on autocast's list, so fp32 experts under ``bf16-mixed`` compute and save in
    fp32); ``None``: the recipe's weight dtype."""

    @property
    def tokens(self) -> int:
        """Tokens of one micro-batch on this GPU."""
        return self.batch * self.seq // self.cp

    @property
    def r(self) -> int:
        return self.residual_bytes if self.residual_bytes is not None else self.recipe.residual_bytes

    @property
    def c(self) -> int:
        return self.recipe.compute_bytes

    @property
    def w(self) -> int:
        """Bytes of one element of the routed experts' tensors (see :attr:`expert_bytes`)."""
        return self.expert_bytes if self.expert_bytes is not None else self.recipe.weight_bytes_per_param


def _part(name: str, per_token_bytes: int, ctx: ActivationContext, sharded: bool) -> ActivationPart:
    """Per-token bytes times tokens, divided as tensor/sequence parallelism does."""
    total = per_token_bytes * ctx.tokens
    if sharded or ctx.sequence_parallel:
        total //= ctx.tp
    return ActivationPart(name=name, bytes=total, sharded=sharded)


def _norm_per_token(spec: ModelSpec, ctx: ActivationContext, width: int) -> int:
    """One norm's own saved tensors per token (its input, the residual, is counted apart)."""
    if spec.norm == "layernorm":
        # mean and rstd; autocast runs layer_norm in fp32 (its fp32 list), so a 16-bit
        # input (the residual, counted apart in r bytes) is saved as autocast's fp32 copy
        autocast = ctx.autocast_region or ctx.recipe.autocast
        return 2 * FP32 + ((FP32 - ctx.r) * width if autocast and ctx.r < FP32 else 0)
    upcast = FP32 * width if ctx.r < FP32 else 0
    normalised = 0 if ctx.frozen_base else _normalised_bytes(spec, ctx.r) * width
    return upcast + FP32 + normalised  # fp32 copy, rsqrt, normalised


SANDWICH_NORMS_PER_LAYER = 4
"""``norms_per_layer`` of a sandwich block (Gemma 2/3, GLM-4): a norm before and after
attention and MLP; the two after read the block's output, not the residual stream."""


def _post_norms(spec: ModelSpec) -> int:
    """Norms of a layer that normalise a block's output (attention's, the MLP's) before
    it joins the residual: Gemma's ``post_attention_layernorm`` and
    ``post_feedforward_layernorm``."""
    return 2 if spec.norms_per_layer == SANDWICH_NORMS_PER_LAYER and not spec.parallel_block else 0


def _post_norm_input_per_token(spec: ModelSpec, ctx: ActivationContext, width: int) -> int:
    """What a post-norm keeps of its input beyond :func:`_norm_per_token`. Its input is a
    linear's output, not the residual: ``x.float()`` (``hidden_states.to(torch.float32)``)
    copies a 16-bit output to fp32, or is the fp32 output itself, and ``pow`` and the
    ``rsqrt`` product save it: ``f h`` either way. :func:`_norm_per_token` counts that
    fp32 copy already when the residual is 16-bit (every norm upcasts); on an fp32
    residual it counts none, the residual itself being saved as the pre-norms' input."""
    if spec.norm != "rmsnorm" or ctx.r < FP32:
        return 0
    return FP32 * width


def _linear_inputs_per_token(ctx: ActivationContext, width: int, readers: int) -> int:
    """A norm output as saved by the linears reading it: once, or one cast each under autocast."""
    if ctx.inputs_saved_by_adapters or not readers:  # a layer without an MLP (Mamba) has no MLP input
        return 0
    return readers * ctx.c * width if ctx.recipe.autocast else ctx.r * width


def _qkv_readers(spec: ModelSpec) -> int:
    return 1 if spec.model_type == "gpt2" or spec.model_type in VISION_TOWER_VIEWS else QKV_READERS


def _scores_per_token(spec: ModelSpec, ctx: ActivationContext, heads: int) -> int:
    """Eager attention's s x s terms, per query token: softmax output, its cast, dropout."""
    kv_len = ctx.seq
    # under autocast softmax is on the fp32 list whatever the family's code says
    autocast = ctx.autocast_region or ctx.recipe.autocast
    softmax = ctx.c if spec.model_type in SOFTMAX_IN_COMPUTE_DTYPE and not autocast else FP32
    if spec.model_type in SOFTMAX_IN_SCORES_DTYPE:
        # gpt-oss concatenates its per-head sinks (a parameter) to the scores: fp32 sinks
        # (bf16-mixed) promote them to fp32, and the probabilities matmul casts back
        softmax = max(ctx.c, ctx.recipe.weight_bytes_per_param)
    # the probabilities matmul saves the cast to c, or the dropout output (the cast
    # itself is then freed: dropout's backward needs only its mask)
    per_score = softmax + (ctx.c if softmax != ctx.c or ctx.dropout else 0)
    if spec.attn_logit_softcapping:
        per_score += ctx.c  # Gemma 2: tanh(scores / cap) saves its output for backward
    if ctx.dropout:
        per_score += MASK
    return heads * kv_len * per_score


ROTARY_BY_CAT = frozenset({
    "gpt_neox", "phi3", "glm", "chatglm", "glm4", "glm4_moe", "glm4v_text", "glm_ocr_text", "bamba", "laguna",
    "mimo_v2_flash", "minimax_m2", "qwen3_next", "qwen3_5_text",
})
"""Families whose ``apply_rotary_pos_emb`` rotates part of each head and joins it to the
rest with ``torch.cat([q_embed, q_pass], dim=-1)`` (partial rotary; Phi-3's even at
factor 1). The cat writes q in head-major ``[b, h, s, d]`` memory, where the other
families' element-wise RoPE keeps the projection's ``[b, s, h, d]`` layout."""


def sdpa_gets_a_mask(spec: ModelSpec, ctx: ActivationContext, layer: int) -> bool:
    """Does SDPA get an explicit mask in layer ``layer`` of an unpadded batch? Only a
    sliding (chunked) layer whose window (chunk) the sequence reaches: transformers
    skips the causal mask otherwise and passes ``is_causal``
    (``masking_utils._ignore_causal_mask_sdpa``: ``kv_length >= local_attention_size``
    keeps it)."""
    kind = spec.attention_kinds()[layer] if layer < spec.num_layers else "full_attention"
    window = {"sliding_attention": spec.sliding_window, "chunked_attention": spec.attention_chunk_size}.get(kind)
    return window is not None and ctx.seq >= window


def sdpa_runs_math_kernel(spec: ModelSpec, ctx: ActivationContext, layer: int) -> bool:
    """Does SDPA fall back to PyTorch's math kernel? With fp32 inputs and grouped keys
    passed as they are (``enable_gqa``: no mask): flash takes no fp32 and the
    memory-efficient kernel no GQA (``sdp_utils.cpp``: ``check_batch_size_and_num_heads_dense``
    with ``supports_gqa = false``). The math kernel repeats k and v to the query heads
    (``repeat_interleave``), keeps the scaled query, the repeated k and v and the
    attention probabilities, and no log-sum-exp."""
    return (ctx.attention == "sdpa" and ctx.c >= FP32 and spec.kv_dim != spec.q_dim and spec.mla is None
            and not sdpa_gets_a_mask(spec, ctx, layer))


def _rotated_keys_in_fp32(ctx: ActivationContext) -> bool:
    """Keys reach attention in fp32 under autocast: the rotary ``cos``/``sin`` follow the
    hidden states' dtype (``cos.to(x.dtype)`` in every ``*RotaryEmbedding``), so on an
    fp32 residual ``k * cos`` promotes the 16-bit projection to fp32 (or the projection
    itself returns fp32, bitsandbytes' ``Linear4bit``), and SDPA casts them back."""
    autocast = ctx.autocast_region or ctx.recipe.autocast
    return autocast and ctx.c < FP32 and (ctx.r >= FP32 or (ctx.linear_output_bytes or 0) >= FP32)


def _sdpa_kv_widths(spec: ModelSpec, ctx: ActivationContext, layer: int) -> tuple[int, int]:
    """Widths of the keys and values SDPA saves, per token. Without a mask transformers
    passes ``enable_gqa`` and the kernel takes the key/value heads as they are; with one
    (``sdpa_attention_forward``: ``use_gqa_in_sdpa`` needs ``attention_mask is None``)
    ``repeat_kv`` widens them to the query heads: a copy, except with one key/value head,
    where ``expand`` + ``reshape`` stays a view of the un-repeated tensor; autocast's cast
    of fp32 keys (:func:`_rotated_keys_in_fp32`) then writes the view out at full width."""
    kv, q = spec.kv_dim, spec.q_dim
    if kv == q or ctx.attention != "sdpa" or not sdpa_gets_a_mask(spec, ctx, layer):
        return kv, kv
    if spec.num_kv_heads > 1:
        return q, q
    return (q if _rotated_keys_in_fp32(ctx) else kv), kv


def attention_parts(spec: ModelSpec, ctx: ActivationContext, layer: int = 0) -> list[ActivationPart]:
    """Saved tensors of one attention block (without its input norm)."""
    if spec.mla is not None:
        return _mla_parts(spec, spec.layer_mla_spec(layer), ctx, layer)
    c, a = ctx.c, spec.num_attention_heads
    math = sdpa_runs_math_kernel(spec, ctx, layer)
    if ctx.attention == "eager" or spec.attention_experts or math:
        # repeat_kv, and eager's matmuls copy the repeated view; JetMoE's attention experts repeat
        # K/V (``key_states.repeat(1, top_k, 1, 1)``) whatever the kernel
        k_width = v_width = spec.q_dim
    else:
        k_width, v_width = _sdpa_kv_widths(spec, ctx, layer)
    qkv = c * (spec.q_dim + k_width + v_width)
    if spec.model_type in FUSED_QKV_ROTARY:
        qkv += c * (spec.q_dim + spec.kv_dim)
    parts = [_part("attention/qkv", qkv, ctx, sharded=True),
             _part("attention/output", _attention_output_per_token(spec, ctx, layer), ctx, sharded=True)]
    if ctx.attention == "eager":
        parts.append(_part("attention/scores", _scores_per_token(spec, ctx, a), ctx, sharded=True))
    elif math:  # the probabilities, in the inputs' dtype (and the dropped copy with its mask)
        drop = (c + MASK) if ctx.dropout else 0
        parts.append(_part("attention/scores", a * ctx.seq * (c + drop), ctx, sharded=True))
    else:
        parts.append(_part("attention/lse", FP32 * a, ctx, sharded=True))
    if spec.qk_norm in ("per_head", "full"):
        parts.append(_part("attention/qk_norm", _qk_norm_per_token(spec, ctx), ctx, sharded=True))
    if spec.attention_experts and spec.moe is not None:
        parts.append(_part("attention/experts", _attention_experts_per_token(spec, spec.moe, ctx), ctx,
                           sharded=True))
    if ctx.dropout:
        parts.append(_part("dropout_masks/attention", MASK * spec.hidden_size, ctx, sharded=False))
    return parts


def _attention_output_per_token(spec: ModelSpec, ctx: ActivationContext, layer: int) -> int:
    """The attention output, ``c q``: flash / SDPA kernels save it for their own backward.
    Eager attention's ``probs @ v`` saves only its inputs, so its output is kept only as
    the output projection's input, which under peft's input cast the adapter keeps as
    its own copy instead (counted with the adapters).

    The flash kernel allocates its output like its query (``empty_like`` of the
    transposed query: ``mha_fwd``; PyTorch's meta kernel alike): a head-major query
    (:data:`ROTARY_BY_CAT`) gives a head-major output, which ``transpose(1, 2).reshape``
    copies before the output projection, whose input it is: ``c q`` more. The
    memory-efficient kernel (SDPA with a mask) writes ``[b, s, h, d]`` whatever its
    query, and its output reshapes as a view."""
    adapter_copy = ctx.inputs_saved_by_adapters and ctx.attention_output_saved_by_adapter
    if ctx.attention == "eager" and adapter_copy:
        return 0
    output = ctx.c * spec.q_dim
    flash = ctx.attention == "flash" or (ctx.attention == "sdpa" and not sdpa_gets_a_mask(spec, ctx, layer))
    if flash and spec.model_type in ROTARY_BY_CAT and not adapter_copy:
        output *= 2
    return output


def _attention_experts_per_token(spec: ModelSpec, moe: MoESpec, ctx: ActivationContext) -> int:
    """JetMoE's attention experts beyond a plain attention block (modeling_jetmoe.py
    ``JetMoeMoA.map`` / ``reduce``), per token: the router (fp32 logits, top-k fp32 gates
    and int64 indices), the hidden state gathered once per routed expert for the query
    experts, the attention output gathered again for the output experts, their
    outputs kept for the gate product, and two int64 index rows per route."""
    c, h, k = ctx.c, spec.hidden_size, moe.experts_per_token
    router = FP32 * spec.attention_experts + k * (FP32 + INDEX)
    return router + c * (2 * k * h + spec.q_dim) + 2 * k * INDEX


def _normalised_bytes(spec: ModelSpec, input_bytes: int) -> int:
    """Element size of the normalised tensor a trained RMSNorm weight's product keeps."""
    return FP32 if spec.model_type in NORM_WEIGHT_IN_FP32 else input_bytes


def _qk_norm_per_token(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Query / key RMSNorms (Qwen3, Gemma 3: per head; OLMo 2: over all heads). Each
    keeps its input in fp32 (``pow`` saves the upcast of the 16-bit projection output,
    or the fp32 output itself), one fp32 ``rsqrt`` per normalised row, and, when its
    weight trains, the normalised tensor cast back to the projection's dtype."""
    per_head = spec.qk_norm == "per_head"
    total = 0
    for width, heads in ((spec.q_dim, spec.num_attention_heads), (spec.kv_dim, spec.num_kv_heads)):
        rows = heads if per_head else 1
        total += FP32 * width + FP32 * rows + (0 if ctx.frozen_base else _normalised_bytes(spec, ctx.c) * width)
    return total


def _latent_per_token(spec: ModelSpec, ctx: ActivationContext, width: int, extra: int) -> int:
    """One MLA latent: the down-projection output (``width + extra`` wide, held by its
    norm's input view), the norm, and the norm output as the up-projection saves it."""
    return ctx.c * (width + extra) + _norm_per_token(spec, ctx, width) + _linear_inputs_per_token(ctx, width, 1)


def _mla_parts(spec: ModelSpec, mla: MLASpec, ctx: ActivationContext, layer: int = 0) -> list[ActivationPart]:
    """Saved tensors of one MLA block, in the layer's own shape (dots3's sliding layers
    have their own latent ranks and heads)."""
    a, c = spec.layer_num_attention_heads(layer), ctx.c
    latents = _latent_per_token(spec, ctx, mla.kv_lora_rank, mla.qk_rope_head_dim)
    if mla.q_lora_rank:
        latents += _latent_per_token(spec, ctx, mla.q_lora_rank, 0)
        if mla.fused_query_gate:
            # A.X K2: q_gate_proj reads cat([normed latent, latent]), which copies the latent
            latents += _linear_inputs_per_token(ctx, mla.q_lora_rank, 1)
    # q and k after RoPE (a x qk_head_dim each) and the values: eager's matmul saves a
    # contiguous copy (a x d_v); SDPA/flash keep the value view, i.e. kv_b's whole output
    values = mla.v_head_dim if ctx.attention == "eager" else mla.qk_nope_head_dim + mla.v_head_dim
    qkv = c * a * (2 * mla.qk_head_dim + values)
    sparse = spec.indexer is not None and spec.attention_kinds()[layer] != "sliding_attention"
    parts = [_part("attention/latents", latents, ctx, sharded=False),
             _part("attention/qkv", qkv, ctx, sharded=True),
             _part("attention/output", _mla_output_per_token(spec, mla, ctx, layer, a, sparse), ctx, sharded=True)]
    if ctx.attention == "eager":
        parts.append(_part("attention/scores", _scores_per_token(spec, ctx, a) + _sink_per_token(spec, ctx), ctx,
                           sharded=True))
    else:
        parts.append(_part("attention/lse", FP32 * a, ctx, sharded=True))
    if spec.attention_gate == "full" or mla.fused_query_gate:
        parts.append(_part("attention/gate", _mla_output_gate_per_token(spec, mla, ctx, a), ctx, sharded=True))
    if ctx.attention == "sdpa" and sparse:
        parts.append(_part("attention/sparse_mask", _sparse_mask_per_token(ctx), ctx, sharded=False))
    return parts


def _mla_output_per_token(spec: ModelSpec, mla: MLASpec, ctx: ActivationContext, layer: int, heads: int,
                          sparse: bool) -> int:
    """The MLA attention output, ``c a d_v``. MLA builds its query with ``torch.cat((q_pass,
    q_rot))`` in head-major ``[b, h, s, d]`` memory, so the flash kernel (SDPA without a
    mask) writes a head-major output too, which ``transpose(1, 2).reshape`` copies for the
    output projection: twice, as :func:`_attention_output_per_token` does for the
    :data:`ROTARY_BY_CAT` families. A mask (DeepSeek sparse attention, a sliding window the
    sequence reaches) selects the memory-efficient kernel, whose output reshapes as a
    view."""
    output = ctx.c * heads * mla.v_head_dim
    adapter_copy = ctx.inputs_saved_by_adapters and ctx.attention_output_saved_by_adapter
    flash = ctx.attention == "flash" or (ctx.attention == "sdpa" and not sparse
                                         and not sdpa_gets_a_mask(spec, ctx, layer))
    return 2 * output if flash and not adapter_copy else output


def _sparse_mask_per_token(ctx: ActivationContext) -> int:
    """DeepSeek sparse attention under SDPA (``DeepseekV32Attention``: ``attention_mask &
    ~index_mask``): every layer builds its own boolean ``[b, 1, s, s]`` mask of the
    causal mask and the indexer's top-k, which the kernel keeps as its ``attn_bias``:
    ``s`` bytes per token."""
    return MASK * ctx.seq


def _sink_per_token(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Eager attention with a learned sink logit per head (gpt-oss's
    ``eager_attention_forward``, which Hunyuan v4 runs): the sink column of the
    softmax output (``cat([scores, sinks])``, in the scores' dtype: fp32 under
    autocast, where the fp32 mask promotes them) and the int64 row-maximum indices
    ``combined_logits.max(-1)`` keeps for its backward."""
    if not spec.attention_sinks:
        return 0
    softmax = FP32 if (ctx.autocast_region or ctx.recipe.autocast) or ctx.r >= FP32 else ctx.c
    return spec.num_attention_heads * (softmax + INDEX)


def _mla_output_gate_per_token(spec: ModelSpec, mla: MLASpec, ctx: ActivationContext, heads: int) -> int:
    """A sigmoid gate on the attention output, heads x ``v_head_dim``: the sigmoid
    output and the product, which the output projection keeps as its input (the
    attention output itself is kept by the product, counted as the output). Hunyuan v4
    (``HYV4Attention``: ``attn_output * torch.sigmoid(gate_proj(x))``) in the compute
    dtype; A.X K2 (``AXK2Attention``: ``(attn_output * torch.sigmoid(gate.float()))
    .to(dtype)``) keeps an fp32 sigmoid and the product cast back."""
    width = heads * mla.v_head_dim
    # the gated product is kept by the output projection, or under peft's input cast by its adapter (counted there)
    product = 0 if ctx.inputs_saved_by_adapters else ctx.c * width
    return (FP32 if mla.fused_query_gate else ctx.c) * width + product


def _gated_norm_per_token(spec: ModelSpec, ctx: ActivationContext, gated_norms: int) -> int:
    """What A.X K2's gated RMSNorms keep beyond a plain norm (``AXK2GatedRMSNorm``:
    ``y = norm(x); (y * torch.sigmoid(fc2(silu(fc1(y))).float())).to(y.dtype)``), per
    gated norm: its output ``y`` and the fp32 sigmoid (both kept by the product, in
    fp32 on the fp32 residual under autocast), ``fc1``'s input as it saves it, its output
    (kept by the SiLU) and the SiLU output (``fc2``'s input)."""
    if not spec.gated_norm_rank or not gated_norms:
        return 0
    h, rank = spec.hidden_size, spec.gated_norm_rank
    y = max(ctx.r, FP32 if ctx.recipe.autocast else 0) * h  # the fp32 weight times the input
    per_norm = y + FP32 * h + _linear_inputs_per_token(ctx, h, 1) + 2 * ctx.c * rank
    return gated_norms * per_norm


def _act_tensors(spec: ModelSpec) -> int:
    """c x width tensors one MLP keeps besides its up/gate projections' outputs."""
    return 1 + EXTRA_ACT_SAVES.get(spec.hidden_act, 0) + FAMILY_GATE_SAVES.get(spec.model_type, 0)


GELU_NEW_AUTOCAST_FP32 = 3
"""fp32 ``[tokens, i]`` tensors ``gelu_new`` saves under autocast (see :func:`_dense_mlp_per_token`)."""


def _dense_mlp_per_token(spec: ModelSpec, ctx: ActivationContext, width: int,
                         down_input_saved: bool | None = None) -> int:
    """gate, act, up, product (gated) or up, act (plain), times c.

    GPT-2's ``gelu_new`` under autocast (``0.5 x (1 + tanh(k (x + 0.044715 pow(x, 3))))``):
    ``pow`` is on autocast's fp32 list, so it saves an fp32 copy of ``x``; the sum with
    the bf16 ``x`` promotes the rest of the chain to fp32: ``tanh`` saves its fp32
    output, the final product saves ``1 + tanh`` (fp32) and ``0.5 x`` (bf16), and
    ``c_proj`` saves its bf16 cast of the fp32 result: ``3 f + 2 c`` per element."""
    # the down projection's input (act output, or the gated product) is kept by the down
    # projection itself; under peft's input cast its adapter keeps its own copy instead
    down_input = int(not ctx.inputs_saved_by_adapters if down_input_saved is None else down_input_saved)
    if (spec.hidden_act == "gelu_new" and not spec.mlp_gated and (ctx.autocast_region or ctx.recipe.autocast)
            and ctx.c < FP32):
        return width * (GELU_NEW_AUTOCAST_FP32 * FP32 + (1 + down_input) * ctx.c)
    c = ctx.linear_output_bytes or ctx.c
    if spec.mlp_gated:
        return c * width * (2 + _act_tensors(spec) + down_input)
    return c * width * (_act_tensors(spec) + down_input)


def mlp_parts(spec: ModelSpec, ctx: ActivationContext, layer: int) -> list[ActivationPart]:
    """Saved tensors of one MLP or MoE block (without its input norm)."""
    parts: list[ActivationPart] = []
    if spec.is_moe_layer(layer) and spec.moe is not None:
        parts += _moe_parts(spec, spec.moe, ctx)
    if not spec.is_moe_layer(layer) or spec.moe is None or spec.moe.beside_dense_mlp:  # Gemma 4, LongCat: both
        parts.append(_part("mlp", _dense_mlp_per_token(spec, ctx, spec.intermediate_size), ctx, sharded=True))
    if ctx.dropout:
        parts.append(_part("dropout_masks/mlp", MASK * spec.hidden_size, ctx, sharded=False))
    return parts


ROUTER_TOP_K_FIRST = frozenset({"granitemoe", "granitemoeshared", "granitemoe_swa", "granitemoehybrid", "gpt_oss"})
"""Routers that pick the top-k logits first and softmax over those k alone
(``GraniteMoeTopKRouter``: fp32, ``GptOssTopKRouter``: the logits' dtype): ``topk``
keeps its indices, the softmax its ``k`` outputs; no ``E``-wide probabilities are saved."""
ROUTER_SIGMOID = frozenset({"deepseek_v3", "deepseek_v32", "glm4_moe", "glm4_moe_lite", "glm_moe_dsa", "kimi_k2"})
"""Routers that score every expert with a sigmoid of the logits (``DeepseekV3TopkRouter``):
the sigmoid keeps its ``E`` outputs in the logits' dtype."""
ROUTER_FP32_LINEAR = frozenset({"deepseek_v3", "deepseek_v32", "lara_mini", "ernie4_5_moe"})
"""Routers whose linear takes ``hidden_states.float()`` (``F.linear(x.float(),
weight.float())``): without autocast the fp32 copy of a 16-bit input is what the
linear keeps (``f h`` per token, in place of the reader's ``c h``), and the logits are
fp32. ERNIE 4.5 runs it with autocast off, so even under autocast."""
ROUTER_NO_AUTOCAST = frozenset({"ernie4_5_moe"})
"""Routers run inside ``maybe_autocast(enabled=False)`` (``Ernie4_5_MoeTopKRouter``)."""
ROUTING_WEIGHTS_FP32 = frozenset({"mixtral", "minimax"})
"""Routers that hand the experts their fp32 top-k probabilities uncast
(``MixtralTopKRouter``); the others cast them to the logits' dtype (Qwen-MoE, OLMoE,
gpt-oss, DeepSeek-V3) or to the hidden states' (below)."""
ROUTING_WEIGHTS_AS_INPUT = frozenset({"jamba", "lara_mini", "ernie4_5_moe", "granitemoe", "granitemoeshared",
                                      "granitemoe_swa", "granitemoehybrid"})
"""Routers that cast the routing weights to the hidden states' dtype (``.to(hidden_states.dtype)``,
``type_as``): the residual stream's."""
GROUPED_EXPERT_INDICES = 3
"""int64 ``[tokens x k]`` indices transformers' ``grouped_mm_experts_forward`` keeps for
backward: the gather of each token's rows (``perm // k``), of the routing weights
(``perm``) and the un-permute of the weighted outputs (``inv_perm``); experts with
biases (gpt-oss) gather them by the sorted expert ids, one more."""


def _router_logits_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Element size of the router's logits: the compute dtype under autocast, fp32 where
    the router forces fp32 (:data:`ROUTER_FP32_LINEAR`) outside autocast."""
    autocast = (ctx.autocast_region or ctx.recipe.autocast) and spec.model_type not in ROUTER_NO_AUTOCAST
    return FP32 if spec.model_type in ROUTER_FP32_LINEAR and not autocast else ctx.c


def _routing_weight_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Element size of the top-k weights the experts multiply their outputs by."""
    if spec.model_type in ROUTING_WEIGHTS_FP32:
        return FP32
    if spec.model_type in ROUTING_WEIGHTS_AS_INPUT:
        return ctx.r
    return _router_logits_bytes(spec, ctx)


def _router_per_token(spec: ModelSpec, moe: MoESpec, ctx: ActivationContext) -> int:
    """What one token's routing keeps, beyond the linear input the router shares with
    the MLP norm's other readers (:func:`_moe_linear_readers`).

    Softmax routers (``Qwen2MoeTopKRouter`` and most others): the fp32 probabilities
    over all ``E`` experts (``softmax(..., dtype=float)``, saved as its output), the
    top-k indices, and the top-k values with their sum where the family normalises
    them (``/=`` keeps the quotient and the divisor: ``f (k + 1)``, counted always: a
    few bytes per token). Sigmoid routers keep the ``E`` sigmoid outputs in the logits'
    dtype and gather the top-k from them; top-k-first routers keep ``k`` softmax
    outputs. fp32 routers outside autocast keep an fp32 copy of the input."""
    e, k = moe.num_experts, moe.experts_per_token
    logits = _router_logits_bytes(spec, ctx)
    if spec.model_type in ROUTER_TOP_K_FIRST:
        probs = k * (FP32 if spec.model_type != "gpt_oss" else logits)
    elif spec.model_type in ROUTER_SIGMOID:
        probs = e * logits + logits * (k + 1)  # sigmoid outputs, normalised top-k
    else:
        probs = FP32 * e + FP32 * (k + 1)
    fp32_input = 0
    if spec.model_type in ROUTER_FP32_LINEAR and logits == FP32 and ctx.r < FP32:
        fp32_input = (FP32 - ctx.c) * spec.hidden_size  # the fp32 copy replaces the reader's c-byte input
    return probs + k * INDEX + fp32_input


def _moe_parts(spec: ModelSpec, moe: MoESpec, ctx: ActivationContext) -> list[ActivationPart]:
    """The routed experts as transformers 5's default ``grouped_mm`` experts run them
    (``integrations/moe.py`` ``grouped_mm_experts_forward``): each token gathered ``k``
    times, sorted by expert, one grouped GEMM for gate/up and one for down, the outputs
    weighted and un-permuted. Per routed (token, expert), in the experts' weight dtype
    ``w`` (``grouped_mm`` casts its input to ``weight.dtype`` and is not autocast: fp32
    experts under ``bf16-mixed`` compute and save in fp32): the gathered input (``w h``,
    kept by the up GEMM for its weight gradient), gate-up, activation and product (the
    down GEMM's input), the down output (``w h``, kept by the weighting), the routing
    weight, and :data:`GROUPED_EXPERT_INDICES` int64 indices."""
    if spec.model_type in EVERY_EXPERT_FAMILIES:
        return _every_expert_parts(spec, moe, ctx)
    h, w = spec.hidden_size, ctx.w
    k = moe.experts_per_token
    # a frozen expert (LoRA: no adapters on fused experts) needs no copy of its gathered
    # input, which only its weight gradient would read
    gathered = 0 if ctx.frozen_base and not ctx.trained_experts else w * h
    # routed experts' down projection keeps its input only when the experts' weights train
    trained = not ctx.frozen_base or ctx.trained_experts
    expert_ctx = replace(ctx, linear_output_bytes=w)
    per_route = (gathered + w * h + _dense_mlp_per_token(spec, expert_ctx, moe.expert_intermediate_size, trained)
                 + _routing_weight_bytes(spec, ctx) + (GROUPED_EXPERT_INDICES + moe.expert_bias) * INDEX)
    parts = [_part("moe/router", _router_per_token(spec, moe, ctx), ctx, sharded=False),
             _part("moe/experts", k * per_route, ctx, sharded=True)]
    if moe.shared_expert_intermediate_size:
        c = ctx.c
        shared = _dense_mlp_per_token(spec, ctx, moe.shared_expert_intermediate_size)
        if moe.shared_expert_gate:
            shared += c * (h + 1)  # sigmoid gate output and the gated product's other input
        parts.append(_part("moe/shared_experts", shared, ctx, sharded=True))
    return parts


EVERY_EXPERT_FAMILIES = frozenset({"llama4_text"})
"""Families whose MoE block runs every expert on every token: ``Llama4TextMoe`` repeats
the hidden states once per expert (``hidden_states.repeat(E, 1)``), scales each copy by
its scattered router score (zero off the top-k) and runs ``torch.bmm`` per expert, so the
experts' activations grow with ``num_experts``, not the top-k. ``bmm`` is on autocast's
list: they compute in the compute dtype, and their weights are cast like any linear's."""


def _every_expert_parts(spec: ModelSpec, moe: MoESpec, ctx: ActivationContext) -> list[ActivationPart]:
    """:func:`_moe_parts` of an :data:`EVERY_EXPERT_FAMILIES` block. Per token and expert,
    the repeated input (kept by the score product), the scaled copy
    (kept by the gate/up ``bmm`` for its weight gradient, when the experts train), and the
    gated MLP's gate/up, activation and product (the down ``bmm``'s input). The repeated
    input is in the residual stream's dtype; the gate/up ``bmm`` keeps its autocast cast
    of the scaled copy."""
    trained = not ctx.frozen_base or ctx.trained_experts
    expert_ctx = replace(ctx, linear_output_bytes=ctx.c)
    per_expert = spec.hidden_size * (ctx.r + ctx.c * int(trained)) + \
        _dense_mlp_per_token(spec, expert_ctx, moe.expert_intermediate_size, trained)
    parts = [_part("moe/router", _router_per_token(spec, moe, ctx), ctx, sharded=False),
             _part("moe/experts", moe.num_experts * per_expert, ctx, sharded=True)]
    if moe.shared_expert_intermediate_size:
        parts.append(_part("moe/shared_experts", _dense_mlp_per_token(spec, ctx, moe.shared_expert_intermediate_size),
                           ctx, sharded=True))
    return parts


def _moe_linear_readers(spec: ModelSpec, moe: MoESpec) -> int:
    """Linears reading the MLP norm's output in an MoE layer: router + shared gate/up
    (+ shared-expert gate); the experts read gathered copies, counted in the experts."""
    readers = 1
    if moe.shared_expert_intermediate_size:
        readers += 2 if spec.mlp_gated else 1
    return readers + (1 if moe.shared_expert_gate else 0)


def _single_block(spec: ModelSpec, layer: int) -> bool:
    """A layer of one block, a mixer or an MLP, not both (Nemotron-H's ``M``, ``*`` and
    ``-`` blocks, Mamba-2): one residual tensor, its input."""
    return (spec.mixer(layer) == "none") != (not spec.has_mlp(layer))


def _residual_per_token(spec: ModelSpec, ctx: ActivationContext, layer: int = 0) -> int:
    """The layer input and the post-attention sum, ``2 r h``, as the norms save them.
    A 16-bit RMSNorm saves its fp32 upcast instead (counted with the norm), so the
    16-bit residual itself is kept by no one."""
    if spec.norm == "rmsnorm" and ctx.r < FP32:
        return 0
    # both norms of a parallel block read the same layer input: one tensor, unless each
    # saves its own fp32 copy (LayerNorm under autocast, counted with the norm)
    copies = spec.norm == "layernorm" and (ctx.autocast_region or ctx.recipe.autocast) and ctx.r < FP32
    inputs = 1 if (spec.model_type in PARALLEL_RESIDUAL and not copies) or _single_block(spec, layer) else 2
    return inputs * ctx.r * spec.hidden_size


def _layer_output_per_token(spec: ModelSpec, ctx: ActivationContext) -> int:
    """One residual-stream tensor as a norm keeps it (the last layer's output, read by
    the final norm): ``r h``, none where a 16-bit RMSNorm keeps its fp32 upcast instead."""
    return 0 if spec.norm == "rmsnorm" and ctx.r < FP32 else ctx.r * spec.hidden_size


def _mlp_readers(spec: ModelSpec, layer: int) -> int:
    """Linears reading the MLP norm's output in layer ``layer``."""
    if not spec.has_mlp(layer):
        return 0
    if spec.is_moe_layer(layer) and spec.moe is not None:
        return _moe_linear_readers(spec, spec.moe)
    return 2 if spec.mlp_gated else 1  # gate and up, or up


def norm_and_residual_parts(spec: ModelSpec, ctx: ActivationContext, layer: int) -> list[ActivationPart]:
    """The layer's two residual tensors, its norms' statistics and the norm outputs as
    the next linears save them."""
    h, norms = spec.hidden_size, spec.norms_per_layer
    mlp_readers = _mlp_readers(spec, layer)
    if spec.mixer(layer) == "none":
        attn_readers = 0
    elif mixer_modelled(spec, layer):
        attn_readers = mixer_activations.mixer_input_projections(spec, spec.mixer(layer))
    elif spec.mixer(layer) == "compressed_attention" and spec.compressed_attention is not None:
        attn_readers = compressed_attention.input_projections(spec, layer)
    else:
        # MLA: q (or q_a) and kv_a, and a gate projection of its own (Hunyuan v4, dots3)
        attn_readers = _qkv_readers(spec) if spec.mla is None else 2 + (spec.attention_gate in ("full", "head"))
    inputs = _linear_inputs_per_token(ctx, h, attn_readers) + _linear_inputs_per_token(ctx, h, mlp_readers)
    if mixer_beside_attention(spec, layer):
        # Falcon-H1: in_proj reads its own scaled copy (``hidden_states * ssm_in_multiplier``)
        inputs += _linear_inputs_per_token(ctx, h, 1)
    if spec.is_moe_layer(layer) and spec.moe is not None and spec.moe.beside_dense_mlp:
        # Gemma 4 / LongCat-Flash: the dense MLP beside the MoE block reads its own norm's
        # output. Gemma 4 (Gemma4TextDecoderLayer): the block's three norms and the router's
        # scale-free norm; the post norms read new tensors (the MLP output, the experts'
        # output, their sum), and the router saves its scaled input
        inputs += _linear_inputs_per_token(ctx, h, 2 if spec.mlp_gated else 1)
        norms += spec.moe.block_norms + (1 if spec.moe.router_scales else 0)
        inputs += (spec.moe.block_norms + (1 if spec.moe.router_scales else 0)) * ctx.r * h
    residual = _residual_per_token(spec, ctx, layer)
    if ctx.frozen_base and layer == 0:
        # a frozen embedding's output needs no gradient: the first layer keeps neither
        # its input nor the statistics of the norms reading it (both, in a parallel block)
        shared_input = spec.model_type in PARALLEL_RESIDUAL
        residual = 0 if shared_input else residual // 2
        norms -= 2 if shared_input else 1
    # A.X K2: the input norm is gated in every layer, the post-attention norm in MoE layers
    gated = (1 + spec.is_moe_layer(layer)) if spec.gated_norm_rank else 0
    return [
        _part("residual", residual, ctx, sharded=False),
        _part("norms", norms * _norm_per_token(spec, ctx, h) + _post_norms(spec) * _post_norm_input_per_token(
            spec, ctx, h) + _gated_norm_per_token(spec, ctx, gated), ctx, sharded=False),
        _part("linear_inputs", inputs, ctx, sharded=False),
    ]


def layer_activation_parts(spec: ModelSpec, ctx: ActivationContext, layer: int = 0) -> list[ActivationPart]:
    """Everything layer ``layer`` saves for backward for one micro-batch, without
    recomputation, in bytes per GPU, named by part."""
    from vramplan.memory import gemma_activations

    if gemma_activations.models(spec):  # per-layer shapes, AltUp, LAuReL, per-layer inputs
        return gemma_activations.layer_parts(spec, ctx, layer)
    if hybrid_layer_modelled(spec, layer):
        return hybrid_layer_parts(spec, ctx, layer)
    if spec.mixer(layer) == "none":  # an MLP-only layer (Nemotron-H's ``-`` and ``E`` blocks)
        mixer = []
    elif mixer_modelled(spec, layer):
        mixer = mixer_parts(spec, ctx, layer)
    elif spec.mixer(layer) == "compressed_attention" and spec.compressed_attention is not None:
        mixer = [_part("attention/compressed", compressed_attention.layer_bytes_per_token(spec, ctx, layer), ctx,
                       sharded=True)]
    else:
        mixer = attention_parts(spec, ctx, layer)
    if mixer_beside_attention(spec, layer):
        mixer += mixer_parts(spec, ctx, layer)
    mlp = mlp_parts(spec, ctx, layer) if spec.has_mlp(layer) else []
    streams = hyper_connections.layer_bytes_per_token(spec, ctx, layer)
    hc = [_part("hyper_connections", streams, ctx, sharded=False)] if streams else []
    return norm_and_residual_parts(spec, ctx, layer) + mixer + mlp + hc


def mixer_modelled(spec: ModelSpec, layer: int) -> bool:
    """Does layer ``layer`` mix tokens with a state-space mixer whose saved tensors are
    modelled (:mod:`vramplan.memory.mixer_activations`)? Other mixers are priced with
    an attention block of the model's widths."""
    mixer = spec.mixer(layer)
    if mixer == "gated_deltanet":
        return mixer in MIXERS_WITH_ACTIVATIONS and spec.deltanet is not None
    if mixer == "kda":
        return mixer in MIXERS_WITH_ACTIVATIONS and spec.kda is not None
    if mixer == "lightning_attention":
        return mixer in MIXERS_WITH_ACTIVATIONS and spec.lightning_block_size > 0
    if mixer == "rg_lru":
        return mixer in MIXERS_WITH_ACTIVATIONS and spec.rg_lru is not None
    if mixer == "mamba":
        return mixer_activations.mamba1_modelled(spec)
    return mixer in MIXERS_WITH_ACTIVATIONS and spec.ssm is not None and spec.ssm.version == 2


def mixer_beside_attention(spec: ModelSpec, layer: int) -> bool:
    """Does attention layer ``layer`` run a modelled Mamba-2 mixer beside it on the same
    norm output (Falcon-H1)?"""
    return (spec.model_type in SSM_BESIDE_ATTENTION_WITH_ACTIVATIONS and spec.ssm_in_attention_layers
            and spec.mixer(layer) == "attention" and spec.ssm is not None and spec.ssm.version == 2)


def mixer_parts(spec: ModelSpec, ctx: ActivationContext, layer: int) -> list[ActivationPart]:
    """Saved tensors of one modelled state-space mixer (without its input norm)."""
    if spec.mixer(layer) == "gated_deltanet":
        sharded, unsharded = mixer_activations.gated_deltanet_mixer_bytes(spec, ctx)
        return [ActivationPart(name="mixer/gated_deltanet", bytes=sharded, sharded=True),
                ActivationPart(name="mixer/masks", bytes=unsharded, sharded=False)]
    if spec.mixer(layer) == "kda":
        # a frozen embedding's output needs no gradient: the first layer's gates need none
        # unless adapters on their projections give them one
        gates = not (ctx.frozen_base and layer == 0) or bool(ctx.adapted_modules & mixer_activations.KDA_GATE_MODULES)
        sharded, unsharded = mixer_activations.kda_mixer_bytes(spec, ctx, gates)
        return [ActivationPart(name="mixer/kda", bytes=sharded, sharded=True),
                ActivationPart(name="mixer/masks", bytes=unsharded, sharded=False)]
    if spec.mixer(layer) == "lightning_attention":
        sharded, _ = mixer_activations.lightning_attention_mixer_bytes(spec, ctx)
        return [ActivationPart(name="mixer/lightning_attention", bytes=sharded, sharded=True)]
    if spec.mixer(layer) == "rg_lru":
        sharded, _ = mixer_activations.rg_lru_mixer_bytes(spec, ctx)
        return [ActivationPart(name="mixer/rg_lru", bytes=sharded, sharded=True)]
    if spec.mixer(layer) == "mamba":
        sharded, _ = mixer_activations.mamba1_mixer_bytes(spec, ctx)
        return [ActivationPart(name="mixer/mamba", bytes=sharded, sharded=True)]
    sharded, unsharded = mixer_activations.mamba2_mixer_bytes(spec, ctx)
    return [ActivationPart(name="mixer/mamba2", bytes=sharded, sharded=True),
            ActivationPart(name="mixer/masks", bytes=unsharded, sharded=False)]


def mixer_backward_work_bytes(spec: ModelSpec, ctx: ActivationContext, layer: int) -> int:
    """Gradient buffers a modelled mixer's backward holds beyond its saved tensors, at
    its high point (0 where the layer's MLP or attention terms cover it)."""
    if spec.mixer(layer) != "kda" or not mixer_modelled(spec, layer):
        return 0
    # the layer's MLP block ran its backward before the mixer's: what it saved is freed
    mlp = sum(p.bytes for p in mlp_parts(spec, ctx, layer)) if spec.has_mlp(layer) else 0
    mlp += _part("linear_inputs", _linear_inputs_per_token(ctx, spec.hidden_size, _mlp_readers(spec, layer)), ctx,
                 sharded=False).bytes
    return max(0, mixer_activations.kda_backward_work_bytes(spec, ctx) - mlp)


def layer_weight_cast_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Bytes of the 16-bit weight copies autocast makes for one layer's matmuls.

    ``torch.autocast`` casts each fp32 weight to the compute dtype on first use and
    autograd keeps that copy until the layer's backward (it is the ``mat2`` saved by
    the matmul), so a mixed-precision forward holds a 16-bit copy of every linear
    weight it has passed: ``c`` bytes per linear parameter. Zero without autocast.
    Routed experts are not cast: transformers' ``grouped_mm`` experts are outside
    autocast's op lists and run in their weights' dtype (see :func:`_moe_parts`).
    """
    if not ctx.recipe.autocast:
        return 0
    every_expert = spec.model_type in EVERY_EXPERT_FAMILIES  # torch.bmm experts: cast like linears
    linear = sum(g.params for g in model_tensors(spec)
                 if g.role == "linear" and g.per_layer and (g.component != "experts" or every_expert))
    return ctx.c * linear // spec.num_layers // ctx.tp


def first_layer_uncast_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Of :func:`layer_weight_cast_bytes`, what the first layer does not keep under a
    frozen base. Its input, the frozen embedding's output, needs no gradient, so the
    matmuls reading its norm (the attention's input projections; in a parallel block
    the MLP's too) save neither their input nor their weight; and autocast caches only
    casts of weights that require a gradient (``autocast_mode.cpp`` ``cached_cast``:
    ``arg.requires_grad()``), so those frozen casts die with the matmul."""
    if not (ctx.recipe.autocast and ctx.frozen_base):
        return 0
    h = spec.hidden_size
    parallel = spec.parallel_block or spec.model_type in PARALLEL_RESIDUAL

    def reads_layer_input(g) -> bool:
        if g.shape[-1] != h:
            return False
        return (g.component == "attention" and g.module != "o_proj") or (parallel and g.component == "mlp")

    first = sum(g.params for g in model_tensors(spec) if g.role == "linear" and g.per_layer and reads_layer_input(g))
    return ctx.c * first // spec.num_layers // ctx.tp


def checkpointed_layer_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Full recomputation keeps only each layer's input (the residual stream),
    ``r h`` per token (``torch.utils.checkpoint`` saves the block's arguments); with
    hyper-connections, its ``N`` streams."""
    from vramplan.memory import gemma_activations

    if gemma_activations.models(spec):  # Gemma 3n: the n AltUp streams
        return gemma_activations.checkpointed_layer_bytes(spec, ctx)
    streams = hyper_connections.checkpoint_bytes_per_token(spec, ctx)
    return _part("residual", streams or ctx.r * spec.hidden_size, ctx, sharded=False).bytes


def saved_layer_bytes(parts: list[ActivationPart], recompute: Recompute) -> int:
    """Bytes a layer keeps until its backward under a recomputation policy.

    ``selective`` is Megatron's (Korthikanti sec. 5): the attention core (scores,
    softmax, dropout) is recomputed, the rest kept; with flash/SDPA there is nothing
    to drop. ``full`` is handled by :func:`checkpointed_layer_bytes`.
    """
    if recompute == "selective":
        return sum(p.bytes for p in parts if p.name != "attention/scores")
    return sum(p.bytes for p in parts)


def final_norm_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """After the last layer: its output (the final norm's input), the final norm, and
    the norm output as the head saves it."""
    h = spec.hidden_size
    residual = _layer_output_per_token(spec, ctx)  # the last layer's output
    head_input = 0 if ctx.frozen_base else _linear_inputs_per_token(ctx, h, 1)
    per_token = residual + _norm_per_token(spec, ctx, h) + head_input
    per_token += hyper_connections.head_bytes_per_token(spec, ctx)  # the last streams, collapsed
    return _part("final_norm", per_token, ctx, sharded=False).bytes


def norm_transient_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Temporaries inside one RMSNorm's forward beyond what it keeps, freed when it
    returns. With a 16-bit input: the fp32 ``pow(2)`` output and the fp32 normalised
    tensor before its cast back (``2 f h`` per token). In fp32 the ``pow(2)`` output
    (``f h``) lives before the normalised tensor and the output (``2 f h``, kept) exist,
    so the norm never exceeds what it keeps: 0. LayerNorm runs as one kernel: 0."""
    if spec.norm == "layernorm" or ctx.r >= FP32:
        return 0
    per_token = 2 * FP32 * spec.hidden_size
    return _part("norm_temporaries", per_token, ctx, sharded=False).bytes


def final_hidden_transient_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """The final norm's output as the model returns it (``last_hidden_state``), alive
    until the loss is computed. Counted only where the head does not save that very
    tensor: under autocast (the head saves a 16-bit cast) and with a frozen head."""
    if not (ctx.recipe.autocast or ctx.frozen_base):
        return 0
    return _part("final_hidden", ctx.r * spec.hidden_size, ctx, sharded=False).bytes


def head_weight_cast_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Autocast's 16-bit copy of the output head (the tied embedding when tied)."""
    if not ctx.recipe.autocast:
        return 0
    return ctx.c * spec.vocab_size * spec.hidden_size // ctx.tp


def dropout_embedding_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """GPT-2's embedding dropout: a 1-byte mask on the embedding output."""
    return _part("dropout_masks/embedding", MASK * spec.hidden_size, ctx, sharded=False).bytes if ctx.dropout else 0


def model_level_parts(spec: ModelSpec, ctx: ActivationContext) -> list[ActivationPart]:
    """What a model keeps outside its layers beyond the final norm and the head (Gemma 3n
    / Gemma 4: the per-layer inputs, AltUp's streams in and out; empty for others)."""
    from vramplan.memory import gemma_activations

    return gemma_activations.model_level_parts(spec, ctx)


def model_level_weight_cast_bytes(spec: ModelSpec, ctx: ActivationContext) -> int:
    """Autocast's copies of linears outside the layers and the head (Gemma 3n / Gemma 4's
    per-layer input projection and AltUp projections; 0 for others)."""
    from vramplan.memory import gemma_activations

    return gemma_activations.model_level_weight_cast_bytes(spec, ctx)


# --- Zamba's hybrid layers -------------------------------------------------------------

def runs_mamba1(spec: ModelSpec, layer: int) -> bool:
    """Does layer ``layer`` run a modelled Mamba-1 mixer (in a layer of its own, or after
    Zamba's shared block)?"""
    if not mixer_activations.mamba1_modelled(spec):
        return False
    return spec.mixer(layer) == "mamba" or hybrid_layer_modelled(spec, layer)


def hybrid_layer_modelled(spec: ModelSpec, layer: int) -> bool:
    """Is layer ``layer`` a Zamba / Zamba2 hybrid layer (a shared attention + MLP block,
    its own linear, then its Mamba mixer) whose saved tensors are modelled?"""
    return (spec.shared_block is not None and spec.model_type in SHARED_BLOCK_WITH_ACTIVATIONS
            and spec.mixer(layer) == "attention" and spec.ssm is not None)


def _norm_input_per_token(spec: ModelSpec, ctx: ActivationContext, width: int) -> int:
    """A norm's input of the residual's dtype, as the norm keeps it: itself (``r w``),
    or nothing where a 16-bit RMSNorm keeps its fp32 upcast instead (counted with the norm)."""
    return 0 if spec.norm == "rmsnorm" and ctx.r < FP32 else ctx.r * width


def hybrid_layer_parts(spec: ModelSpec, ctx: ActivationContext, layer: int) -> list[ActivationPart]:
    """Everything a Zamba / Zamba2 hybrid layer saves for one micro-batch
    (``ZambaHybridLayer`` / ``Zamba2HybridLayer``). Each hybrid layer applies one of the
    shared blocks, and each application saves its own tensors. Per token:

    - the shared block (``ZambaAttentionDecoderLayer``): its input norm over the hidden
      state concatenated with the embeddings (``w = attention_hidden_size``, ``2 h``): the
      concatenation as the norm keeps it and the norm's own tensors; q, k and v's casts of
      its output (``3 c w``); the attention (q/k/v widths ``heads x attention_head_dim``);
      ``pre_ff_layernorm`` on the attention output, a ``c``-byte linear output with no
      residual: its fp32 upcast, ``rsqrt`` and normalised tensor cast back (``f h + f +
      c h``); the MLP's two readers' casts (``2 c h``) and the gated MLP (``4 c i``).
      Zamba2's per-layer adapters (``gate_up_proj_adapter_list``; q/k/v with
      ``use_shared_attention_adapter``) each keep their own cast of the input they read and
      their rank-wide middle (``c (w + r)`` per q/k/v adapter, ``c (h + r)`` on the MLP);
    - the layer's own ``linear`` on the block output (its input, ``c h``);
    - the Mamba decoder: the sum of the layer input and the linear's output as its norm
      keeps it, the norm, ``in_proj``'s cast, and the mixer (as in a Mamba layer).
    """
    block = spec.shared_block
    assert block is not None and spec.ssm is not None
    c, h, w = ctx.c, spec.hidden_size, block.input_size
    trains = not ctx.frozen_base
    rank = block.adapter_rank
    qkv_adapters = 3 if block.attention_adapters and rank else 0
    mlp_adapter = 1 if rank else 0
    # the MLP's readers: gate and up, or Zamba2's gate_up_proj and its adapter; then in_proj
    mlp_readers = 1 + mlp_adapter if block.mlp_fused_gate_up else 2
    inputs = (_linear_inputs_per_token(ctx, w, QKV_READERS + qkv_adapters)
              + _linear_inputs_per_token(ctx, h, mlp_readers) + _linear_inputs_per_token(ctx, h, 1))
    linear_input = c * h if trains else 0
    pre_ff_norm = FP32 * h + FP32 + (c * h if trains else 0)
    norms = _norm_per_token(spec, ctx, w) + pre_ff_norm + _norm_per_token(spec, ctx, h)
    residual = _norm_input_per_token(spec, ctx, w) + _norm_input_per_token(spec, ctx, h)
    adapters = c * rank * (qkv_adapters + mlp_adapter)
    mlp = _dense_mlp_per_token(spec, ctx, spec.intermediate_size)
    if spec.ssm.version == 1:
        mixer_sharded, mixer_unsharded = mixer_activations.mamba1_mixer_bytes(spec, ctx)
        mixer_name = "mixer/mamba"
    else:
        mixer_sharded, mixer_unsharded = mixer_activations.mamba2_mixer_bytes(spec, ctx)
        mixer_name = "mixer/mamba2"
    parts = [
        _part("residual", residual, ctx, sharded=False),
        _part("norms", norms, ctx, sharded=False),
        _part("linear_inputs", inputs + linear_input, ctx, sharded=False),
        *attention_parts(spec, ctx, layer),
        _part("shared_block/adapters", adapters, ctx, sharded=False),
        _part("mlp", mlp, ctx, sharded=True),
        ActivationPart(name=mixer_name, bytes=mixer_sharded, sharded=True),
    ]
    if mixer_unsharded:
        parts.append(ActivationPart(name="mixer/masks", bytes=mixer_unsharded, sharded=False))
    return [p for p in parts if p.bytes]
