"""Training activations of state-space and linear-attention token mixers: the tensors
autograd saves in a Mamba-2 or gated delta-net layer, derived from what each operation
of transformers' PyTorch path keeps (the gated delta-net: see
:func:`gated_deltanet_mixer_bytes`; Kimi delta attention, its backward's decay
gradients and its prefill high point: :func:`kda_mixer_bytes`; MiniMax-01's lightning
attention: :func:`lightning_attention_mixer_bytes`; RecurrentGemma's RG-LRU block:
:func:`rg_lru_mixer_bytes`).

Mamba-1 mixers (Mamba, Falcon-Mamba, Jamba, Zamba) run ``mamba_selective_scan``'s
sequential loop, which keeps every step's state: see :func:`mamba1_per_token_bytes`.

The path modelled is the one transformers runs without the CUDA kernels
(``mamba_ssm``, ``causal-conv1d``): ``BambaMixer.forward`` with
``causal_conv1d_fn`` and ``mamba2_chunk_scan``, shared word for word by Bamba,
Granite 4 (``granitemoehybrid``), Nemotron-H, Mamba-2, Falcon-H1 and Zamba2 in
transformers 5.24. It is what ``vramplan trace`` runs and what a training run without
those kernels holds; the fused kernel (``mamba_split_conv1d_scan_combined``) saves
far less (its backward recomputes the chunked scan).

Notation (:class:`~vramplan.model.spec.SSMSpec`): ``d`` inner width, ``H`` heads of
``P = d / H``, ``N`` state size, ``G`` groups of B and C, ``conv = d + 2 G N``
channels, ``K`` conv kernel, ``l`` chunk size. A sequence of ``s`` tokens is padded to
``s_p = ceil(s / l) l`` for the scan (``pad_tensor_by_size``) and cut into
``n_c = s_p / l`` chunks. ``c`` is the compute dtype's size, ``f = 4`` fp32's.

Saved per token, outside the scan (the layer's input norm output, read by
``in_proj``, is counted with the norms):

- the convolution's input, autocast's ``c``-byte cast of ``.to(weight.dtype)``
  (``c conv``), and its output before the causal slice, ``s + K - 1`` positions,
  kept by ``silu`` (``c conv (s + K - 1) / s``);
- ``dt``: the fp32 copy ``softplus`` (autocast's fp32 list) saves, the clamp's
  input, and the clamped ``dt`` (``A * dt`` and ``x * dt`` keep it): ``3 f H``;
- ``x.float()``, kept by ``x * dt`` (``f d``);
- the gated RMSNorm (``BambaRMSNormGated``: ``x.to(fp32) * silu(gate.to(fp32))``,
  grouped ``rsqrt``, ``weight * x``): the gate's fp32 copy, its ``silu``, the scan
  output, the gated product, the normalised tensor (``5 f d``) and ``f G``
  statistics;
- ``out_proj``'s input, cast to ``c`` (``c d``).

Saved per padded token inside ``mamba2_chunk_scan`` (einsums run as ``bmm`` on
autocast's ``c``-byte casts of their fp32 inputs, one cast per einsum):

- ``D * pad(x)``: the padded fp32 copy of ``x`` (``f H P``);
- ``G = C B^T`` per chunk: the casts of C and B (``2 c H N``); ``M = G * L``: ``G``
  (``c H l``) and ``L = exp(segsum(A))`` (``f H l``); ``Y_diag = M x``: the casts of
  M (``c H l``) and x (``c H P``);
- chunk states: ``B * decay`` keeps B repeated to the heads in fp32 (``f H N``) and
  the decay (``f H``); the einsum keeps the casts of ``B decay`` and x
  (``c H (N + P)``);
- ``Y_off``: the cast of C (``c H N``), and ``C states * exp(A_cumsum)`` keeps
  ``C states`` (``c H P``) and the exponential (``f H``).

Per sequence: the casts of the chunk states, ``n_c`` and ``n_c + 1`` of ``H P N``
(``c``), and the inter-chunk decay, ``(n_c + 1)^2`` per head (``f`` and its ``c``
cast). Per micro-batch: the two boolean ``l x l`` masks of ``segment_sum``.
"""

from __future__ import annotations

from vramplan.intmath import ceil_div
from vramplan.model.spec import MAMBA1_FAMILIES_WITH_ACTIVATIONS, ModelSpec, SSMSpec

FP32 = 4
"""Bytes of an fp32 element (the scan runs in fp32: ``hidden_states.float()``)."""
MASK = 1
"""Bytes of a ``torch.bool`` mask element (``segment_sum``'s ``tril`` masks)."""
SEGMENT_SUM_MASKS = 2
"""``segment_sum`` builds two ``tril`` masks (diagonal -1 and 0) and ``masked_fill``
keeps each, per call; the intra-chunk call's are ``l x l``."""


MUP_PROJECTION = frozenset({"falcon_h1"})
"""Families whose mixer multiplies ``in_proj``'s output by an fp32 buffer
(Falcon-H1's ``projected_states * self.mup_vector``): under autocast on fp32 weights
the gate, ``x``, B, C and dt are then fp32 views and copies of an fp32 projection."""


def _autocast(ctx) -> bool:
    return (ctx.recipe.autocast or ctx.autocast_region) and ctx.c < FP32


def _scan_bytes(ctx) -> int:
    """Element size of the einsums' saved inputs and outputs in the scan: autocast's
    ``c``-byte casts, or fp32 copies (the scan's tensors are fp32 and ``einsum``'s
    ``bmm`` copies its permuted inputs)."""
    return ctx.c if _autocast(ctx) else FP32


def mamba2_per_token_bytes(spec: ModelSpec, ssm: SSMSpec, ctx, seq: int) -> float:
    """Bytes saved per token outside the chunked scan (see the module docstring).

    Where no cast happens the views keep their bases: without autocast on fp32
    weights (``.to(weight.dtype)`` a no-op) the convolution saves a view of ``in_proj``'s
    output, keeping all of it (``d + conv + H`` wide); in fp32 the gate is a view of
    that output and ``x`` one of the ``silu`` output (``conv`` wide), with no fp32 copy.

    Falcon-H1 (:data:`MUP_PROJECTION`) under autocast on fp32 weights: ``silu(gate)``
    keeps the whole fp32 projection, and the convolution's output, cast back to the
    fp32 input's dtype, is kept whole by ``x * dt`` (``f conv``). Its norm
    (``FalconH1RMSNormGated``, ``norm_before_gate``) keeps the scan output, the
    normalised and the weighted tensors and ``silu(gate)`` (``4 f d``); without the norm
    (``mamba_rms_norm`` off) ``scan_output * silu(gate)`` keeps the two factors.

    Under a frozen base (LoRA) the norm's frozen weight keeps no normalised tensor
    (``f d`` less) and ``out_proj`` no input (an adapter keeps its own, counted with the
    adapters); in the scan, ``D * pad(x)`` keeps no ``pad(x)``."""
    c, f = ctx.c, FP32
    d, heads, groups, conv, kernel = ssm.d_inner, ssm.num_heads, ssm.n_groups, ssm.conv_channels, ssm.d_conv
    autocast = _autocast(ctx)
    projection = d + conv + heads
    fp32_projection = spec.model_type in MUP_PROJECTION and autocast and ctx.r >= FP32
    conv_input = c * conv if (autocast and ctx.r >= FP32) else c * projection
    conv_output = c * conv * (seq + kernel - 1) / seq
    # softplus' input and the clamp's input in dt's dtype (fp32 under autocast: softplus is
    # on its fp32 list), and ``dt.float()`` / ``dt[..., None].float()``: fp32 copies or dt itself
    dt_bytes = f if autocast else c
    dt = 2 * dt_bytes * heads + (f if dt_bytes == f else 2 * f) * heads
    upcast = c < f and not fp32_projection  # 16-bit projection: the gate and x get fp32 copies
    x = f * d if upcast else f * conv
    gate = f * d if upcast else (f * projection if fp32_projection else 0)
    if not ssm.gated_norm:
        gating = 2 * f * d  # scan output and silu(gate)
    elif ssm.norm_before_gate:
        gating = 4 * f * d + f * groups
    else:  # BambaRMSNormGated: the gated product, its normalised tensor, scan output, silu(gate)
        gating = 4 * f * d + f * groups
    if ctx.frozen_base and ssm.gated_norm:  # a frozen norm weight keeps no normalised tensor
        gating -= f * d
    out_proj_input = 0 if ctx.frozen_base else c * d  # an adapter keeps its own copy
    return conv_input + conv_output + dt + x + gate + gating + out_proj_input


def mamba2_scan_per_padded_token_bytes(ssm: SSMSpec, ctx) -> int:
    """Bytes saved per padded token inside ``mamba2_chunk_scan``."""
    e, f = _scan_bytes(ctx), FP32
    heads, p, n, chunk = ssm.num_heads, ssm.head_dim, ssm.d_state, ssm.chunk_size
    d_residual = 0 if ctx.frozen_base else f * heads * p  # pad(x), kept for D's gradient
    diagonal = 2 * e * heads * n + (e + f) * heads * chunk + e * heads * chunk + e * heads * p
    states = f * heads * n + f * heads + e * heads * (n + p)
    off_diagonal = e * heads * n + e * heads * p + f * heads
    return d_residual + diagonal + states + off_diagonal


def mamba2_scan_per_sequence_bytes(ssm: SSMSpec, ctx, chunks: int) -> int:
    """Bytes saved per sequence by the inter-chunk recurrence (the decay is saved once,
    in fp32, when its einsum needs no cast)."""
    e, f = _scan_bytes(ctx), FP32
    heads, state = ssm.num_heads, ssm.head_dim * ssm.d_state
    decay = (e + f if e != f else f) * heads * (chunks + 1) ** 2
    return e * heads * state * (2 * chunks + 1) + decay


def mamba2_mixer_bytes(spec: ModelSpec, ctx) -> tuple[int, int]:
    """(sharded, unsharded) bytes one Mamba-2 mixer saves for one micro-batch: the heads
    split across tensor-parallel ranks; the ``segment_sum`` masks are per rank whole."""
    ssm = spec.ssm
    assert ssm is not None and ssm.version == 2
    seq = ctx.seq // ctx.cp
    chunks = ceil_div(seq, ssm.chunk_size)
    padded = chunks * ssm.chunk_size
    per_sequence = (mamba2_per_token_bytes(spec, ssm, ctx, seq) * seq + mamba2_scan_per_padded_token_bytes(ssm, ctx) * padded
                    + mamba2_scan_per_sequence_bytes(ssm, ctx, chunks))
    sharded = round(per_sequence * ctx.batch) // ctx.tp
    masks = SEGMENT_SUM_MASKS * MASK * (ssm.chunk_size ** 2 + (chunks + 1) ** 2)
    return sharded, masks


GDN_INPUT_PROJECTIONS = {"qwen3_next": 2, "olmo_hybrid": 6}
"""Linears of a gated delta-net that read the layer's norm output, each saving its own
autocast cast of it: Qwen3-Next's ``in_proj_qkvz`` and ``in_proj_ba``; OLMo-hybrid's
``q/k/v/a/b/g_proj``; otherwise (Qwen3.5, Lara-mini) ``in_proj_qkv``, ``in_proj_z``,
``in_proj_b`` and ``in_proj_a``."""
GDN_DEFAULT_INPUT_PROJECTIONS = 4


def gated_deltanet_input_projections(spec: ModelSpec) -> int:
    """How many linears of a gated delta-net read the layer's norm output."""
    return GDN_INPUT_PROJECTIONS.get(spec.model_type, GDN_DEFAULT_INPUT_PROJECTIONS)


def mixer_input_projections(spec: ModelSpec, mixer: str) -> int:
    """How many linears of a modelled mixer read the layer's norm output (Mamba-2: ``in_proj``)."""
    if mixer == "gated_deltanet":
        return gated_deltanet_input_projections(spec)
    if mixer == "lightning_attention":
        return LIGHTNING_INPUT_PROJECTIONS
    if mixer == "rg_lru":
        return RG_LRU_INPUT_PROJECTIONS
    if mixer == "kda":
        return KDA_INPUT_PROJECTIONS
    return 1


GDN_CHUNK = 64
"""Positions per chunk of transformers' ``torch_chunk_gated_delta_rule`` (its default;
the gated delta-net layers do not pass another)."""


def gated_deltanet_mixer_bytes(spec: ModelSpec, ctx) -> tuple[int, int]:
    """(sharded, unsharded) bytes one gated delta-net mixer saves for one micro-batch.

    transformers' ``Qwen3NextGatedDeltaNet.forward`` with ``causal_conv1d_fn`` and
    ``torch_chunk_gated_delta_rule`` (the ``fla`` kernels absent), under autocast.
    ``Hv`` value heads of ``dv``, keys and queries repeated to ``Hv`` heads of ``dk``,
    ``l = 64`` positions per chunk, ``n_c`` chunks of the padded sequence. Per token:

    - the convolution over q, k, v (``conv = 2 key_dim + value_dim``): its input cast
      and its unsliced output (as Mamba-2's); ``sigmoid(b)`` (``c Hv``); ``softplus``'s
      fp32 input and output (``2 f Hv``);
    - the gated norm (``Qwen3NextRMSNormGated``, per value head): the fp32 input, the
      weighted product, the gate's fp32 copy and its ``silu`` (``4 f Hv dv``), the
      normalised tensor cast back (``c Hv dv``), ``rsqrt`` (``f Hv``); ``out_proj``'s
      input (``c Hv dv``).

    Per padded token, in fp32 unless named: the l2-normalised q and k inputs and their
    inverse norms (``2 f Hv (dk + 1)``); the padded v and k and beta (``f Hv (dv + dk
    + 1)``); the pairwise decay (``f Hv l``); the casts of k_beta, k, q, k for the two
    intra-chunk products (``4 c Hv dk``) and the products (``2 c Hv l``); k_beta and the
    decays (``f Hv (dk + 3)``), the scaled query (``f Hv dk``); the triangular solves'
    matrix (``f Hv l``) and results (``f Hv (dv + dk)``); per chunk the cast of the
    intra-chunk attention (``c Hv l``). Per sequence, over the chunk loop: the casts of
    ``v_new`` (``2 n_c - 1`` per chunk), of the query and ``k_cumdecay`` slices and of the
    key slices (``n_c - 1`` chunks each, the first state being a constant zero and the
    last update unused), two casts of the state per chunk and the fp32 state kept by
    ``state * decay`` (``n_c - 1``).
    """
    net = spec.deltanet
    assert net is not None
    c, f, e = ctx.c, FP32, _scan_bytes(ctx)
    hv, dk, dv, kernel, chunk = net.num_v_heads, net.head_k_dim, net.head_v_dim, net.conv_kernel, GDN_CHUNK
    conv = net.conv_channels
    seq = ctx.seq // ctx.cp
    chunks = ceil_div(seq, chunk)
    padded = chunks * chunk
    per_token = (causal_conv_per_token_bytes(c, c, conv, kernel, seq) + c * hv + 2 * f * hv
                 + 4 * f * hv * dv + c * hv * dv + f * hv + c * hv * dv)
    per_padded = (2 * f * hv * (dk + 1) + f * hv * (dv + dk + 1) + f * hv * chunk + 4 * e * hv * dk
                  + 2 * e * hv * chunk + f * hv * (dk + 3) + f * hv * dk + f * hv * chunk + f * hv * (dv + dk)
                  + e * hv * chunk)
    per_chunk_token = e * hv * (dv * (2 * chunks - 1) + 3 * dk * (chunks - 1))  # times l, per sequence
    state = hv * dk * dv
    per_sequence = per_chunk_token * chunk + 2 * e * state * chunks + f * state * (chunks - 1) + f * hv * chunks
    sharded = round((per_token * seq + per_padded * padded + per_sequence) * ctx.batch) // ctx.tp
    return sharded, MASK * chunk * chunk


# ---- Kimi delta attention -----------------------------------------------------------

KDA_CHUNK = 64
"""Positions per chunk of transformers' ``chunk_kimi_delta_attention`` (its default; the
KDA layers of Kimi Linear and Bailing-hybrid do not pass another)."""
KDA_INPUT_PROJECTIONS = 6
"""Linears of a KDA layer that read the layer's norm output, each saving its own
autocast cast of it: ``q/k/v_proj``, ``b_proj`` and the forget and output gates' first
projections (Kimi ``f_a_proj``, ``g_a_proj``; Bailing ``f_proj``, ``g_proj``)."""
KDA_GATE_MODULES = frozenset({"f_a_proj", "f_b_proj", "f_proj", "b_proj", "g_a_proj", "g_b_proj", "g_proj"})
"""The gates' and beta's linears: with adapters on them, the gates of a layer whose input
needs no gradient (the first, under LoRA) get one."""
KDA_FP32_CONV = frozenset({"bailing_hybrid"})
"""Families whose short convolution stays in fp32 whatever the load dtype
(``_keep_in_fp32_modules_strict`` lists ``conv1d``): without autocast, its input is an
fp32 copy of the 16-bit q/k/v projection and its output fp32."""
KDA_CHUNK_MASKS = 3
"""Boolean ``l x l`` masks the chunked rule's ``masked_fill`` calls keep per call: the
strict mask of the pairwise decay, the intra-chunk system's and the chunk loop's."""


def causal_conv_per_token_bytes(input_bytes: int, output_bytes: int, channels: int, kernel: int, seq: int) -> float:
    """Per token, what transformers' ``causal_conv1d_fn`` (PyTorch path) keeps: the
    convolution's input (``.to(weight.dtype)``, or autocast's cast of it) and its output
    before the causal slice, ``s + K - 1`` positions, kept by ``silu``."""
    return input_bytes * channels + output_bytes * channels * (seq + kernel - 1) / seq


def kda_mixer_bytes(spec: ModelSpec, ctx, input_requires_grad: bool = True) -> tuple[int, int]:
    """(sharded, unsharded) bytes one Kimi-delta-attention mixer saves for one micro-batch.

    transformers 5.24's ``KimiLinearDeltaAttention.forward`` (Bailing-hybrid's
    ``BailingHybridDeltaAttention`` alike) with ``causal_conv1d_fn`` and
    ``chunk_kimi_delta_attention`` (the ``fla`` kernels absent). ``H`` heads of ``d``,
    ``W = H d``, ``r`` the gates' rank (Kimi; 0 for Bailing's full-width gates), ``l =
    64`` positions per chunk, ``n_c`` chunks of the padded sequence ``s_p``. ``c`` the
    compute dtype, ``f`` fp32, ``e`` the chunk rule's matmul operands (autocast's ``c``
    casts, or the fp32 tensors themselves). Per token:

    - the convolution over q, k, v (``3 W`` channels, :func:`causal_conv_per_token_bytes`);
    - the forget gate. Kimi: ``f_a``'s output (``c r``), then in fp32 ``exp(g)``,
      ``1 + exp(g)`` (``log``), ``where``'s boolean condition and the softplus kept by
      the product with ``-exp(A_log)``: ``(3 f + 1) W``. Bailing: its input and its
      ``sigmoid`` (safe gate) or ``softplus`` output: ``2 f W``;
    - ``sigmoid(b)`` (``c H``); ``l2norm`` of q and k: their fp32 inputs and the norms
      (``2 f (W + H)``);
    - the gated norm (``RMSNormGated``, per head, in fp32): its input, the normalised
      and the weighted tensors and ``sigmoid(gate)`` (``4 f W``), ``rsqrt`` (``f H``);
      ``o_proj``'s input (``c W``); Kimi's ``g_a`` output (``c r``).

    Per padded token, in fp32 unless named: the padded and scaled query, the padded key
    and value, ``k beta`` (``4 f W``) and beta (``f H``); three ``l x d`` tensors per
    position and head — the pairwise decay ``exp(g_i - g_j)`` (per channel: the gate is
    per channel, unlike the gated delta-net's), ``k_beta_i * k_j`` and, over the chunk
    loop, ``q_i * k_j`` (``3 f W l``); the forward substitution's ``row`` and ``sub``
    clones, ``sum_{i<l} i (i + 1)`` per chunk and head (``f H (l^2 - 1) / 3``);
    ``exp(g)`` (``f W``), the casts of the solved system for its two products
    (``2 e H l``, one under no autocast), of ``v beta`` and ``k beta exp(g)`` and the
    16-bit ``k_cumdecay`` (``2 e W + c' W``); per chunk, ``exp(g_i)`` (``f W``), the
    cast of the intra-chunk attention (``e H l``) and ``v_new`` (``c' W``), ``c'`` the
    chunk products' dtype (``c`` under autocast, fp32 without).

    Per sequence, over the chunk loop (the first state is a constant zero, so the
    query product's cast of the first chunk is not kept, and the last update is
    unused): the query product's and the key product's casts and the key decays
    ``(2 e + f) W l (n_c - 1)``; the state's decay ``f H d (n_c - 1)``; the states:
    under autocast the zero state is 16-bit (``k_cumdecay``'s dtype) and the next ones
    fp32, each cast twice for its two products: ``H d^2 (c + 2 c (n_c - 1) + f (n_c -
    2))``; without autocast ``f H d^2 n_c``. Per micro-batch: the
    :data:`KDA_CHUNK_MASKS` boolean masks.

    Frozen base (LoRA): the frozen ``o_proj`` and the gates' second projections keep
    no input (an adapter keeps its own copy, counted with the adapters); the products
    with the frozen ``exp(A_log)`` and norm weight keep only that factor (the softplus
    or Bailing's gate input, and the normalised tensor, ``2 f W``, go). When the
    layer's input needs no gradient either (the first layer reads the frozen
    embedding) and no adapter sits on the gates' projections
    (:data:`KDA_GATE_MODULES`; ``input_requires_grad`` false), the gates and beta need
    none: only what q, k and v's adapters differentiate is kept — the pairwise decay,
    not the products it multiplies (``k_beta_i k_j`` and ``q_i k_j``: ``2 f W l``), nor
    the padded value (``f W``), the gates' fp32 tensors, ``sigmoid(b)`` or the gated
    norm's normalised and weighted tensors (``2 f W``).
    """
    kda = spec.kda
    assert kda is not None
    c, f = ctx.c, FP32
    autocast = _autocast(ctx)
    e = _scan_bytes(ctx)
    product = c if autocast else FP32  # the chunk products' outputs: bf16 matmuls, or fp32
    heads, d, kernel, chunk = kda.num_heads, kda.head_dim, kda.conv_kernel, KDA_CHUNK
    w, rank = kda.width, kda.gate_rank
    seq = ctx.seq // ctx.cp
    chunks = ceil_div(seq, chunk)
    padded = chunks * chunk
    conv_bytes = FP32 if (spec.model_type in KDA_FP32_CONV and not autocast) else c
    conv = causal_conv_per_token_bytes(conv_bytes, conv_bytes, kda.conv_channels, kernel, seq)
    frozen = ctx.frozen_base
    gates = input_requires_grad or not frozen  # the forget gate and beta are differentiated
    # a frozen A_log (and norm weight) needs no gradient: their products keep one factor less
    forget = (0 if frozen else c * rank) + ((3 * f + MASK) * w if rank else 2 * f * w) - (f * w if frozen else 0)
    norm = ((3 if frozen else 4) if gates else 2) * f * w + f * heads
    per_token = (conv + (forget + c * heads if gates else 0) + 2 * f * (w + heads) + norm
                 + (0 if frozen else c * w + c * rank))
    solves = 2 if autocast else 1
    per_padded = ((4 if gates else 3) * f * w + f * heads + (3 if gates else 1) * f * w * chunk
                  + f * heads * (chunk * chunk - 1) / 3
                  + f * w + solves * e * heads * chunk + 2 * e * w + product * w
                  + f * w + e * heads * chunk + product * w)
    per_chunk_token = (2 * e + f) * w * (chunks - 1)  # times l, per sequence
    state = heads * d * d
    states = state * (c + 2 * c * (chunks - 1) + f * max(chunks - 2, 0)) if autocast else f * state * chunks
    per_sequence = per_chunk_token * chunk + states + f * heads * d * (chunks - 1)
    sharded = round((per_token * seq + per_padded * padded + per_sequence) * ctx.batch) // ctx.tp
    return sharded, KDA_CHUNK_MASKS * MASK * chunk * chunk


def kda_backward_work_bytes(spec: ModelSpec, ctx) -> int:
    """Gradient buffers alive inside one KDA mixer's backward beyond the tensors it
    saved, at its high point: where the intra-chunk system's product ``(k_beta_i k_j)
    decay_ij`` is differentiated. ``F = f W l s_p`` per sequence is one ``l``-wide fp32
    tensor (the pairwise decay). The decay's gradient is accumulated out of place
    (autograd's ``InputBuffer`` adds its old sum and the new term into a third tensor)
    beside the key product's gradient: four such tensors, while the per-chunk decay
    gradients of all chunks but one are still held (``(n_c - 1) / n_c F``) and the key
    product and the chunk loop's query products (``2 F``) are freed: ``(3 - 1 / n_c) F``.
    Measured on a real CPU backward of ``KimiLinearDeltaAttention`` (fp32, 2 to 8 chunks:
    2.48, 2.77, 2.90 F against 2.50, 2.75, 2.88 F) and by the trace."""
    kda = spec.kda
    assert kda is not None
    seq = ctx.seq // ctx.cp
    chunks = ceil_div(seq, KDA_CHUNK)
    decay = FP32 * kda.width * KDA_CHUNK * chunks * KDA_CHUNK * ctx.batch
    return round(decay * (3 - 1 / chunks)) // ctx.tp


KDA_PREFILL_DECAY_TENSORS = 3
"""``l``-wide fp32 tensors alive at once at a KDA layer's prefill high point: the
pairwise decay, ``k_beta_i * k_j`` and their product before its sum over channels."""
KDA_PREFILL_FP32_WIDTHS = 6
"""``W``-wide fp32 tensors of the chunked rule alive then: the padded scaled query, the
padded key and value, the cumulative gate, ``v beta`` and ``k beta``."""


def kda_prefill_bytes(spec: ModelSpec, sequences: int, tokens: int, act_bytes: int, held_hidden: int,
                      tp: int = 1) -> int:
    """Live bytes at the high point of one KDA layer's prefill (no gradients), per TP
    rank, for ``sequences`` of ``tokens`` new tokens each: inside
    ``chunk_kimi_delta_attention`` at ``k_beta.unsqueeze(-2) * key.unsqueeze(-3) *
    decay_mask``, where :data:`KDA_PREFILL_DECAY_TENSORS` fp32 tensors of ``W l`` per
    padded token are alive together (the same moment a training forward passes, without
    the saved tensors). Beside them, per padded token, :data:`KDA_PREFILL_FP32_WIDTHS`
    fp32 ``W``-wide tensors and beta; per token, in the caller's frame: the held hidden
    states and the layer's normed input (``held_hidden + 1`` times ``h``), the
    convolution's output (``3 W``, viewed as q, k, v), the forget gate (fp32 for Kimi;
    cast back to the compute dtype by Bailing, :data:`KDA_FP32_CONV` families) and beta.
    The decode step (one token) runs the recurrent form, whose temporaries are a few
    states: not this moment."""
    kda = spec.kda
    assert kda is not None
    c, f = act_bytes, FP32
    w, heads = kda.width // tp, kda.num_heads // tp
    chunks = ceil_div(tokens, KDA_CHUNK)
    padded = chunks * KDA_CHUNK
    gate = c if spec.model_type in KDA_FP32_CONV else f
    per_token = c * (held_hidden + 1) * spec.hidden_size + c * 3 * w + gate * w + c * heads
    per_padded = KDA_PREFILL_DECAY_TENSORS * f * w * KDA_CHUNK + KDA_PREFILL_FP32_WIDTHS * f * w + f * heads
    return sequences * (per_token * tokens + per_padded * padded)


# -- Lightning attention (MiniMax-01) -------------------------------------------------

LIGHTNING_INPUT_PROJECTIONS = 2
"""Linears of a lightning-attention layer that read the layer's norm output, each saving
its own autocast cast of it: ``qkv_proj`` and ``output_gate``."""


def lightning_attention_mixer_bytes(spec: ModelSpec, ctx) -> tuple[int, int]:
    """(sharded, unsharded) bytes one lightning-attention mixer saves for one micro-batch.

    MiniMax-01's lightning attention (MiniMax 2025, "MiniMax-01: Scaling Foundation Models
    with Lightning Attention", sec. 2.2.1: linear attention computed block by block, a
    softmax-free ``Q K^T`` with a per-head exponential decay inside a block and a
    ``head_dim x head_dim`` key-value state carried across blocks), as transformers 5.24's
    ``MiniMaxLightningAttention.forward`` runs it in training: ``H`` heads of ``D``
    (``W = H D``), blocks of ``l`` positions (``block_size``), ``n_b = ceil(s / l)`` blocks,
    the last one ``s - (n_b - 1) l`` long. ``c`` is the compute dtype's size (the saved
    matmul inputs are its casts under autocast), ``f = 4`` fp32's.

    Per token:

    - ``silu(qkv_proj(x))`` keeps its input (``3 c W``); q, k and v are strided views of
      its output, so every ``matmul`` saves its own contiguous copy (``reshape`` to
      ``bmm``'s 3-d operands cannot view them);
    - within a block: ``Q K^T`` keeps the copies of q and ``k^T`` (``2 c W``);
      ``(Q K^T * decay) V`` keeps the product's cast (``c H l`` per position of a full
      block: ``l x l`` per head; the product with the fp32 decay buffer keeps only the
      buffer) and a copy of v (``c W``);
    - across blocks: ``(q * query_decay) @ state`` keeps the cast of the decayed query
      (``c W``) in every block but the first, whose state is a constant zero that needs no
      gradient; ``(k * key_decay)^T v``, the next state, keeps the decayed keys' cast and
      a copy of v (``2 c W``) in every block but the last, whose state is returned and
      dropped;
    - the output norm (``MiniMaxRMSNorm`` over ``W``): the fp32 copy of its input, ``rsqrt``
      and the normalised tensor cast back (``f W + f + c W``; with a frozen norm weight the
      last is not kept);
    - ``sigmoid(output_gate(x)) * norm``: the sigmoid's output (``c W``) and the norm's
      output, in the wider of the norm weight's and the compute dtype (``r W`` with
      ``r >= c``: fp32 under autocast on fp32 weights); ``out_proj``'s input (``c W``),
      which on a frozen 16-bit base only ``out_proj``'s adapter keeps, as its own cast
      (counted with the adapters; a frozen ``out_proj`` without one keeps nothing).

    Per sequence: the states the decayed-query matmuls keep, one ``H D^2`` per block in
    ``c`` (the first block's zero state, then each block's state cast). ``qkv_proj``'s and
    ``output_gate``'s inputs are counted with the norms (:data:`LIGHTNING_INPUT_PROJECTIONS`).
    """
    c, f = ctx.c, FP32
    heads, head_dim, block = spec.num_attention_heads, spec.head_dim, spec.lightning_block_size
    width = heads * head_dim
    seq = ctx.seq // ctx.cp
    blocks = ceil_div(seq, block)
    last = seq - (blocks - 1) * block
    not_last = seq - last  # positions outside the last block
    not_first = seq - min(seq, block)  # positions outside the first block
    norm_output = max(ctx.r, c)
    normalised = 0 if ctx.frozen_base else c * width
    out_proj_input = 0 if ctx.inputs_saved_by_adapters else c * width
    per_token = (2 * 3 * c * width  # silu's input; q, k^T and v copies of the intra-block products
                 + f * width + f + normalised  # output norm: fp32 copy, rsqrt, normalised cast back
                 + c * width + norm_output * width + out_proj_input)  # sigmoid output, norm output
    scores = c * heads * ((blocks - 1) * block * block + last * last)  # per sequence
    across = c * width * (2 * not_last + not_first)
    states = c * heads * head_dim * head_dim * blocks
    per_sequence = per_token * seq + scores + across + states
    return per_sequence * ctx.batch // ctx.tp, 0


# -- RG-LRU (RecurrentGemma) ----------------------------------------------------------

RG_LRU_INPUT_PROJECTIONS = 2
"""Linears of a recurrent block that read the layer's norm output: ``linear_y`` and
``linear_x``."""


def rg_lru_mixer_bytes(spec: ModelSpec, ctx) -> tuple[int, int]:
    """(sharded, unsharded) bytes one RecurrentGemma recurrent block saves for one
    micro-batch.

    Griffin's recurrent block (De et al. 2024, "Griffin: Mixing Gated Linear Recurrences
    with Local Attention for Efficient Language Models", sec. 2.4): a GeLU branch, a
    causal depthwise convolution, the real-gated linear recurrent unit and ``linear_out``,
    as transformers 5.24's ``RecurrentGemmaRecurrentBlock`` / ``RecurrentGemmaRglru`` run
    it in training: the recurrence is a Python loop over the positions
    (``_rnn_scan``). ``W`` is ``lru_width``, ``K`` the convolution's width; ``c`` the
    compute dtype's size, ``f = 4`` fp32's, ``e`` the size of the gate arithmetic (fp32
    under autocast, whose fp32 list holds ``softplus`` and ``exp``, and in fp32; the
    compute dtype in pure 16-bit). Per token:

    - ``gelu(linear_y(x))`` keeps its input (``c W``); ``x_branch * y_branch`` keeps both
      factors (``2 c W``) and ``linear_out`` its input (``c W``; on a frozen 16-bit base
      its adapter's cast, counted with the adapters);
    - the convolution keeps its input (``c W``, only for its weight's gradient: none when
      frozen) and its output before the causal slice, ``s + K - 1`` positions, read by
      ``activations * input_gate`` (``c W (s + K - 1) / s``);
    - the block-diagonal gates: ``baddbmm``'s copy of the permuted input (``c W``, for the
      gate weights' gradient), the two ``sigmoid`` outputs (``2 c W``) and ``-8 gate``
      kept by the product with ``softplus(recurrent_param)`` (``c W``, for that parameter's
      gradient);
    - ``exp`` twice (``a`` and ``a^2``) and the input of the bounded ``sqrt``
      (``3 e W``); the gated input and the multiplier's cast, kept by their product
      (``2 c W``);
    - the scan: ``a * ~reset`` in fp32, kept through the per-position slices (in pure
      16-bit each position's fp32 cast instead), and the fp32 state before each step
      (``2 f W``).
    """
    lru = spec.rg_lru
    assert lru is not None
    c, f = ctx.c, FP32
    e = f if _autocast(ctx) or c >= f else c
    width, kernel = lru.width, lru.conv_kernel
    seq = ctx.seq // ctx.cp
    trained = 0 if ctx.frozen_base else 1  # conv input, baddbmm's input copy, -8 gate
    out_input = 0 if ctx.inputs_saved_by_adapters else 1
    per_token = (c * width * (1 + 2 + out_input)  # gelu input, x_branch * y_branch, linear_out input
                 + c * width * (trained + (seq + kernel - 1) / seq)  # conv input and output
                 + c * width * (trained + 2 + trained)  # baddbmm input copy, sigmoids, -8 gate
                 + 3 * e * width + 2 * c * width  # exp, exp, sqrt input; gated input, multiplier
                 + 2 * f * width)  # a * ~reset, the states of the scan
    return round(per_token * seq * ctx.batch) // ctx.tp, 0


# --- Mamba-1 -------------------------------------------------------------------------

WEIGHTLESS_INNER_NORMS = frozenset({"falcon_mamba"})
"""Families whose Mamba-1 mixer normalises dt, B and C with weightless RMSNorms
(``FalconMambaWeightlessRMSNorm``: ``x * rsqrt(mean(x^2) + eps)`` on ``x.float()``,
cast back with ``type_as``); Jamba's :attr:`~vramplan.model.spec.SSMSpec.inner_norms`
carry weights (``JambaRMSNorm``)."""


def _mamba1_inner_norm_bytes(spec: ModelSpec, ssm: SSMSpec, ctx) -> tuple[int, bool]:
    """Bytes per token the dt / B / C norms save (with what their consumers keep of
    their outputs), and whether B reaches the scan in fp32 (no ``B.float()`` copy).

    Falcon-Mamba (weightless): ``x.float()`` (``f w``, kept by ``pow`` and the product;
    on fp32 the split view, which keeps ``x_proj``'s output) and ``rsqrt`` (``f``) per
    norm; the outputs cast back to ``c``: dt kept by ``dt_proj``'s matmul (``c R``), C by
    the per-step matmuls (``c N``), B copied again by ``B.float()`` (fp32: B itself).

    Jamba (``JambaRMSNorm``, ``weight * x.to(input_dtype)``): the same upcast and
    ``rsqrt``, and the normalised tensor cast back (``c w``), which the weight's product
    keeps while the weight trains; the output takes the weight's dtype (fp32 under
    mixed precision: ``dt_proj``'s matmul and the per-step matmuls keep their casts of
    dt and C, ``c (R + N)``, and B's fp32 output is the scan's ``B.float()``)."""
    c, f = ctx.c, FP32
    rank, n = ssm.dt_rank, ssm.d_state
    widths = rank + 2 * n
    weightless = spec.model_type in WEIGHTLESS_INNER_NORMS
    if c >= f:  # fp32: the upcasts are views of x_proj's output, every output is saved in fp32
        normalised = 0 if (weightless or ctx.frozen_base) else f * widths
        return c * widths + 3 * f + normalised + f * widths, True
    upcast = f * widths + 3 * f
    if weightless:
        return upcast + c * (rank + n), False
    normalised = 0 if ctx.frozen_base else c * widths
    output = max(ctx.r, c)  # the weight's dtype promotes the cast-back product
    if output >= f:
        return upcast + normalised + c * (rank + n) + f * n, True
    return upcast + normalised + c * (rank + n), False


def mamba1_per_token_bytes(spec: ModelSpec, ssm: SSMSpec, ctx, seq: int) -> float:
    """Bytes one Mamba-1 mixer saves per token (its input norm's output, read by
    ``in_proj``, is counted with the norms), from transformers' ``MambaMixer.forward``
    with ``causal_conv1d_fn`` and ``mamba_selective_scan``'s sequential loop (shared by
    Mamba, Falcon-Mamba and Jamba in transformers 5.24; the path without ``mamba_ssm``).

    ``d`` inner width, ``N`` state size, ``R`` dt rank, ``K`` conv kernel:

    - ``in_proj``'s output, kept whole by ``silu(gate)`` (its input is a view): ``2 c d``;
    - the convolution's input: autocast's cast on fp32 weights, or Zamba's
      ``.contiguous()`` copy of x (``c d``); otherwise a view of ``in_proj``'s output;
      and its unsliced output, kept by ``silu`` (``c d (s + K - 1) / s``);
    - the ``silu`` output ``x`` (``c d``), kept by ``x * D`` and, in fp32, by
      ``dt B * x``; ``x_proj`` reads it transposed and keeps its own contiguous copy
      (``c d``; Zamba with one head reads a view);
    - ``x_proj``'s output (``c (R + 2 N)``, per head in Zamba), kept by the per-step
      matmuls' slices of C, or the inner norms' tensors instead
      (:func:`_mamba1_inner_norm_bytes`);
    - ``softplus(dt + bias)``: its input and output, fp32 under autocast (its fp32
      list), else ``c``: ``2 d``;
    - ``exp(A dt)`` (``f d N``), ``dt B.float()`` kept by the product with
      ``x.float()`` (``f d N``), and the copies ``B.float()`` (``f N``) and
      ``x.float()`` (``f d``) when ``c < f``;
    - per sequence, the loop's states (see :func:`mamba1_scan_per_sequence_bytes`);
    - ``y + x D`` in fp32 (``f d``, kept by the gate's product), ``silu(gate)``
      (``c d``), and ``out_proj``'s input (``c d``).

    Under a frozen base (LoRA) no projection keeps its input for its weight (an
    adapter keeps its own, counted with the adapters), and ``x * D`` keeps no ``x``:
    ``x_proj``'s and ``out_proj``'s inputs go, and ``x`` itself except in fp32."""
    c, f = ctx.c, FP32
    d, n, kernel, heads = ssm.d_inner, ssm.d_state, ssm.d_conv, max(ssm.num_heads, 1)
    autocast = _autocast(ctx)
    trains = not ctx.frozen_base
    projection = 2 * c * d
    per_head = spec.model_type in PER_HEAD_PROJECTIONS
    # Zamba interleaves x and the gate in in_proj's output: x's ``.contiguous()`` copy is what the
    # convolution keeps where no autocast cast replaces it
    conv_input = c * d if (autocast and ctx.r >= FP32) or per_head else 0
    conv_output = c * d * (seq + kernel - 1) / seq
    # the silu output, kept by ``x * D`` for D's gradient and in fp32 by ``dt B * x`` (``x.float()``
    # a no-op); x_proj reads it transposed and keeps its own contiguous copy for its weight
    silu_output = c * d if (trains or c >= f) else 0
    # Zamba's ``[heads, b, d / heads, s]`` input to its batched matmul is a view with one head
    x_proj_input = c * d if trains and not (per_head and heads == 1) else 0
    if ssm.inner_norms or spec.model_type in WEIGHTLESS_INNER_NORMS:
        x_proj_output, b_in_fp32 = _mamba1_inner_norm_bytes(spec, ssm, ctx)
    else:
        # dt_proj's matmul keeps its view of x_proj's output while dt_proj trains; C's per-step
        # slices (views) are kept by the loop's matmuls whatever trains
        # Zamba: dt, B and C per head (``x_proj_weight[:, None] @ x``, a ``[heads, R + 2 N, d / heads]`` weight)
        x_proj_output, b_in_fp32 = c * heads * (ssm.dt_rank + 2 * n), c >= f
    dt = 2 * (f if autocast else c) * d
    discretised = 2 * f * d * n
    copies = (0 if b_in_fp32 else f * heads * n) + (f * d if c < f else 0)
    gating = f * d + c * d
    out_proj_input = c * d if trains or c >= f else 0
    return (projection + conv_input + conv_output + silu_output + x_proj_input + x_proj_output + dt + discretised
            + copies + gating + out_proj_input)


PER_HEAD_PROJECTIONS = frozenset({"zamba"})
"""Families whose Mamba-1 mixer computes dt, B and C per head with batched matmuls on
``[heads, R + 2 N, d / heads]`` and ``[heads, d / heads, R]`` parameters
(``ZambaMambaMixer``: ``self.x_proj_weight[:, None] @ x``): ``matmul`` expands each
weight's autocast cast over the batch and copies it (``reshape`` of a stride-0
dimension), and the ``bmm`` keeps the copies: ``c d (2 R + 2 N)`` per sequence."""


def mamba1_scan_per_sequence_bytes(ssm: SSMSpec, ctx, seq: int) -> int:
    """Bytes the sequential scan's loop saves per sequence. Step ``t`` computes
    ``state = exp(A dt)[t] * state + (dt B x)[t]``, whose product keeps the previous
    state, then ``state.to(x.dtype) @ C[t]``, which keeps the state's ``c``-byte cast:
    ``s - 1`` fp32 states, ``s`` casts and the zero initial state (``c``); in fp32 the
    casts are the states themselves: ``s + 1`` states. Each state is ``d x N``."""
    c, f = ctx.c, FP32
    state = ssm.d_inner * ssm.d_state
    if c >= f:
        return f * state * (seq + 1)
    return f * state * (seq - 1) + c * state * (seq + 1)


def mamba1_mixer_bytes(spec: ModelSpec, ctx) -> tuple[int, int]:
    """(sharded, unsharded) bytes one Mamba-1 mixer saves for one micro-batch; every
    tensor but ``x_proj``'s small output is split with the channels under tensor
    parallelism."""
    ssm = spec.ssm
    assert ssm is not None and ssm.version == 1
    seq = ctx.seq // ctx.cp
    per_sequence = mamba1_per_token_bytes(spec, ssm, ctx, seq) * seq + mamba1_scan_per_sequence_bytes(ssm, ctx, seq)
    if spec.model_type in PER_HEAD_PROJECTIONS:
        per_sequence += ctx.c * ssm.d_inner * (2 * ssm.dt_rank + 2 * ssm.d_state)
    return round(per_sequence * ctx.batch) // ctx.tp, 0



def mamba1_modelled(spec: ModelSpec) -> bool:
    """Is the model's Mamba-1 mixer one whose saved tensors are modelled here?"""
    return spec.model_type in MAMBA1_FAMILIES_WITH_ACTIVATIONS and spec.ssm is not None and spec.ssm.version == 1


SCAN_GRADIENT_BUFFERS = 4
"""Full-size fp32 ``d x N`` per-token gradients alive in the sequential scan's backward:
each step's ``exp(A dt)[t]`` and ``(dt B x)[t]`` are ``select``s, whose backward writes
the step's gradient into a zero tensor of the whole input (``select_backward``), and
autograd adds it to that input's gradient so far: two such tensors for each of the two
inputs."""


def mamba1_backward_work_bytes(spec: ModelSpec, ctx) -> int:
    """Bytes one Mamba-1 mixer's backward adds to what its layer saved, at the high point
    of its scan's backward (its first steps): :data:`SCAN_GRADIENT_BUFFERS` fp32
    ``d x N`` tensors per token, less the tensors already freed by the backward of the
    output side (the gate's product kept the fp32 ``y + x D``, ``f d``; the gradients of
    the gate, of ``x`` and of the stacked scan output, ``3 c d``, replace ``out_proj``'s
    input, ``silu(gate)`` and ``x``'s own copy). Zamba runs the scan head by head
    (:data:`PER_HEAD_PROJECTIONS`): one head's buffers at a time."""
    ssm = spec.ssm
    assert ssm is not None and ssm.version == 1
    tokens = ctx.batch * ctx.seq // ctx.cp
    # Zamba scans head by head: the buffers are one head's
    heads = max(ssm.num_heads, 1) if spec.model_type in PER_HEAD_PROJECTIONS else 1
    per_token = SCAN_GRADIENT_BUFFERS * FP32 * ssm.d_inner * ssm.d_state // heads - FP32 * ssm.d_inner
    return per_token * tokens // ctx.tp


MAMBA1_PREFILL_STEP_TENSORS = 8
"""``c``-byte ``d``-wide tensors alive per token at the high point of a Mamba-1 prefill
in transformers (``mamba_selective_scan`` without gradients), at ``y * silu(gate)``:
``in_proj``'s output (2, its gate half read last), the ``silu`` output ``x``, ``dt``
as ``dt_proj`` returns it and after ``softplus``, the loop's list of per-step outputs
and their ``stack``, and ``silu(gate)``."""
MAMBA1_PREFILL_STEP_FP32 = 2
"""fp32 ``d``-wide tensors alive at that point: ``y + x D`` and its product with the gate."""
MAMBA1_PREFILL_DISCRETISED = 3
"""fp32 ``d x N`` tensors per token the scan holds until it returns: ``exp(A dt)``,
``dt B`` and ``dt B x`` (locals of ``mamba_selective_scan``)."""


def mamba1_prefill_bytes(spec: ModelSpec, tokens: int, act_bytes: int, held_hidden: int, tp: int = 1) -> int:
    """Live bytes inside one Mamba-1 layer's prefill forward in transformers (the
    sequential scan, no gradients), at its high point: the hidden-sized tensors the
    caller holds (``held_hidden``, the layer input and its norm's output), and per token
    :data:`MAMBA1_PREFILL_DISCRETISED` fp32 ``d x N`` tensors,
    :data:`MAMBA1_PREFILL_STEP_TENSORS` ``d``-wide ones in the compute dtype and
    :data:`MAMBA1_PREFILL_STEP_FP32` in fp32."""
    ssm = spec.ssm
    assert ssm is not None and ssm.version == 1
    d, n = ssm.d_inner, ssm.d_state
    heads = max(ssm.num_heads, 1) if spec.model_type in PER_HEAD_PROJECTIONS else 1  # Zamba: head by head
    mixer = (MAMBA1_PREFILL_DISCRETISED * FP32 * d * n // heads + MAMBA1_PREFILL_STEP_TENSORS * act_bytes * d
             + MAMBA1_PREFILL_STEP_FP32 * FP32 * d)
    return tokens * (mixer // tp + held_hidden * act_bytes * spec.hidden_size)


def mixer_layers_modelled(spec: ModelSpec, mixer: str) -> list[int]:
    """Layers whose ``mixer`` (``"mamba"``) is modelled here."""
    if mixer != "mamba" or not mamba1_modelled(spec):
        return []
    return [i for i in range(spec.num_layers) if spec.mixer(i) == "mamba"]
