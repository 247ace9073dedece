"""Every parameter tensor of a model, as groups of identical tensors.

This is the one place that knows which tensors an architecture has. Parameter
counts (:mod:`vramplan.model.params`), quantized weight bytes (which tensors a format
quantizes), LoRA targets and tensor-parallel splits all read these groups.

Names follow the Hugging Face Llama module names (``q_proj``, ``gate_proj``,
``embed_tokens``, ``lm_head``) whatever the family, so a LoRA target list means the
same thing for every model. Fused modules (GPT-2's ``c_attn``, Phi-3's ``qkv_proj``)
are listed as their parts; the counts are the same.

Shapes are ``(out_features, in_features)`` for linear weights, as ``nn.Linear``
stores them, and follow the modeling files of ``transformers`` for each family.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod
from typing import Literal

from vramplan.model.spec import MLASpec, ModelSpec

Component = Literal[
    "embeddings", "position_embeddings", "attention", "cross_attention", "ssm", "mlp", "experts", "router",
    "shared_experts", "norms", "biases", "head", "vision_tower", "audio_tower", "projector", "residual",
]
COMPONENTS: tuple[Component, ...] = (
    "embeddings", "position_embeddings", "attention", "cross_attention", "ssm", "mlp", "experts", "router",
    "shared_experts", "norms", "biases", "head", "vision_tower", "audio_tower", "projector", "residual",
)
"""Parameter components in display order. Biases of every module are gathered in
``biases``; norm weights (and LayerNorm biases) in ``norms``; what widens or mixes the
residual stream (AltUp, LAuReL, hyper-connections) in ``residual``."""

TensorRole = Literal["linear", "embedding", "norm", "bias", "other"]


@dataclass(frozen=True, kw_only=True)
class TensorGroup:
    """``count`` tensors of one ``shape`` playing one role."""

    name: str
    """Module path with the layer index left out, e.g. ``"self_attn.q_proj.weight"``."""
    component: Component
    """Which parameter component it counts towards."""
    role: TensorRole
    """``linear``: a 2-D matmul weight (quantizable, LoRA-targetable); ``embedding``:
    a look-up table; ``norm``/``bias``: 1-D; ``other``: anything else (sinks)."""
    shape: tuple[int, ...]
    """Shape of one tensor (``(out, in)`` for linear weights)."""
    count: int
    """How many tensors of this shape the model holds (layers x experts)."""
    per_layer: bool = True
    """Lives inside the decoder blocks (False: embeddings, final norm, head)."""
    layers: tuple[int, ...] = ()
    """The decoder layers holding these tensors, when not all of them (attention in a
    hybrid's attention layers, one attention shape of Gemma 4, an MLP width); empty:
    every layer, or the MoE / dense split (:func:`vramplan.memory.weights.layers_holding`)."""
    kept_fp32: bool = False
    """transformers keeps these tensors in fp32 whatever the model's 16-bit dtype
    (:data:`FP32_KEPT_GROUPS`)."""

    @property
    def module(self) -> str:
        """Short module name, e.g. ``"q_proj"`` (what LoRA target lists use)."""
        parts = self.name.split(".")
        return parts[-2] if len(parts) >= 2 else parts[0]

    @property
    def numel(self) -> int:
        """Elements of one tensor."""
        return prod(self.shape)

    @property
    def params(self) -> int:
        """Elements of all ``count`` tensors."""
        return self.numel * self.count


def _linear(name: str, component: Component, out_features: int, in_features: int, count: int,
            bias: bool) -> list[TensorGroup]:
    groups = [TensorGroup(name=f"{name}.weight", component=component, role="linear",
                          shape=(out_features, in_features), count=count)]
    if bias:
        groups.append(TensorGroup(name=f"{name}.bias", component="biases", role="bias",
                                  shape=(out_features,), count=count))
    return groups


def _held_by(groups: list[TensorGroup], layers: list[int] | tuple[int, ...]) -> list[TensorGroup]:
    """``groups`` marked as held by ``layers`` (each layer the same share of the count)."""
    return [replace(g, layers=tuple(layers)) for g in groups]


def _layers_where(spec: ModelSpec, mixer: str) -> list[int]:
    return [i for i in range(spec.num_layers) if spec.mixer(i) == mixer]


def _norm(spec: ModelSpec, name: str, dim: int, count: int, per_layer: bool = True) -> list[TensorGroup]:
    if not count:
        return []
    groups = [TensorGroup(name=f"{name}.weight", component="norms", role="norm", shape=(dim,),
                          count=count, per_layer=per_layer)]
    if spec.norm == "layernorm" and spec.norm_bias:
        groups.append(TensorGroup(name=f"{name}.bias", component="norms", role="norm", shape=(dim,),
                                  count=count, per_layer=per_layer))
    return groups


def attention_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """Attention of the attention layers: q/k/v/o (or MLA's latent projections), their
    biases, q/k norms and sinks."""
    if not spec.num_attention_layers or spec.shared_block is not None:
        return []  # Zamba's shared blocks are listed by shared_block_tensors
    return _attention_groups(spec)


def _attention_groups(spec: ModelSpec) -> list[TensorGroup]:
    n, h = spec.num_attention_layers, spec.hidden_size
    groups: list[TensorGroup] = []
    if spec.mla is not None:
        # DeepSeek-V2 paper eq. 9-14; transformers DeepseekV3Attention. Layers grouped by shape (dots3).
        shapes: dict[tuple, list[int]] = {}
        for i in _layers_where(spec, "attention"):
            shapes.setdefault((spec.layer_mla_spec(i), spec.layer_num_attention_heads(i)), []).append(i)
        for (mla, heads), layers in shapes.items():
            groups += _held_by(_mla_groups(spec, mla, heads, len(layers)), layers)
    elif spec.attention_experts:
        return _attention_experts(spec)
    else:
        for (head_dim, kv_heads, shared, k_is_v), layers in _attention_shapes(spec).items():
            groups += _held_by(_qkvo(spec, head_dim, kv_heads, shared, k_is_v, len(layers)), layers)
    attention_layers = _layers_where(spec, "attention")
    if spec.attention_gate in ("full", "head"):
        widths: dict[int, list[int]] = {}
        for i in attention_layers:
            heads, mla = spec.layer_num_attention_heads(i), spec.layer_mla_spec(i)
            value_head = mla.v_head_dim if mla is not None else spec.head_dim
            widths.setdefault(heads * value_head if spec.attention_gate == "full" else heads, []).append(i)
        for width, layers in widths.items():
            groups += _held_by(_linear("self_attn.gate_proj", "attention", width, h, len(layers), False), layers)
    extra: list[TensorGroup] = []
    if spec.attention_gate_bias:
        extra.append(TensorGroup(name="self_attn.gate_bias", component="biases", role="bias",
                                  shape=(spec.num_attention_heads,), count=n))
    if spec.attention_scale_vectors:
        extra.append(TensorGroup(name="self_attn.scale", component="attention", role="other",
                                 shape=(spec.q_dim,), count=n * spec.attention_scale_vectors))
    if spec.dynamic_mask:  # Doge: A and dt_proj per KV head (modeling_doge.py DogeAttention)
        extra.append(TensorGroup(name="self_attn.A", component="attention", role="other",
                                 shape=(spec.num_kv_heads,), count=n))
        extra += _linear("self_attn.dt_proj", "attention", spec.num_kv_heads, spec.kv_dim, n,
                         spec.attention_qkv_bias)
    if spec.out_bias_last_layer_only:
        groups += _held_by([TensorGroup(name="self_attn.dense_bias", component="biases", role="bias",
                                        shape=(h,), count=1)], [attention_layers[-1]])
    if spec.attention_lambdas:
        extra.append(TensorGroup(name="self_attn.lambda", component="attention", role="other",
                                  shape=(spec.head_dim,), count=4 * n))
    if spec.sub_norms:
        extra += _norm(spec, "self_attn.attn_sub_norm", spec.q_dim, n)
    groups += _held_by(extra, attention_layers)
    sinks = _sink_layers(spec)
    if sinks:
        groups += _held_by([TensorGroup(name="self_attn.sinks", component="attention", role="other",
                                        shape=(spec.num_attention_heads,), count=len(sinks))], sinks)
    return groups


def _attention_experts(spec: ModelSpec) -> list[TensorGroup]:
    """JetMoE's mixture of attention heads (modeling_jetmoe.py ``JetMoeAttention``,
    ``JetMoeMoA``): per layer ``E`` query experts (``input_linear``) and output experts
    (``output_linear``) of ``kv_heads x head_dim``, a router, an output bias, and the
    shared ``kv_proj`` (listed as k_proj and v_proj)."""
    n, h, e, kv = spec.num_attention_layers, spec.hidden_size, spec.attention_experts, spec.kv_dim
    groups = _linear("self_attn.experts.q_proj", "attention", kv, h, n * e, False)
    groups += _linear("self_attn.experts.o_proj", "attention", h, kv, n * e, False)
    groups += _linear("self_attn.experts.router", "router", e, h, n, False)
    groups.append(TensorGroup(name="self_attn.experts.bias", component="biases", role="bias", shape=(h,), count=n))
    groups += _linear("self_attn.k_proj", "attention", kv, h, n, False)
    groups += _linear("self_attn.v_proj", "attention", kv, h, n, False)
    return groups


def encoder_attention_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """A decoder's cross-attention to its encoder's output (modeling_whisper.py,
    modeling_trocr.py ``encoder_attn``): q/o from and to the hidden state, k/v from the
    encoder width, biased like the self-attention."""
    if not spec.decoder_cross_attention:
        return []
    n, h, bias = spec.num_layers, spec.hidden_size, spec.attention_qkv_bias
    source = spec.cross_attention_kv_input or h
    groups = _linear("encoder_attn.q_proj", "cross_attention", spec.q_dim, h, n, bias)
    groups += _linear("encoder_attn.k_proj", "cross_attention", spec.q_dim, source, n, bias and spec.key_bias)
    groups += _linear("encoder_attn.v_proj", "cross_attention", spec.q_dim, source, n, bias)
    groups += _linear("encoder_attn.o_proj", "cross_attention", h, spec.q_dim, n, spec.attention_out_bias)
    return groups


def _mla_groups(spec: ModelSpec, mla: MLASpec, heads: int, n: int) -> list[TensorGroup]:
    """MLA projections of ``n`` layers of one shape."""
    h = spec.hidden_size
    groups: list[TensorGroup] = []
    if mla.q_lora_rank:
        groups += _linear("self_attn.q_a_proj", "attention", mla.q_lora_rank, h, n, spec.attention_qkv_bias)
        groups += _norm(spec, "self_attn.q_a_layernorm", mla.q_lora_rank, n)
        if mla.fused_query_gate:  # A.X K2: queries and output gate from [latent, normed latent]
            groups += _linear("self_attn.q_gate_proj", "attention", heads * (mla.qk_head_dim + mla.v_head_dim),
                              2 * mla.q_lora_rank, n, False)
        else:
            groups += _linear("self_attn.q_b_proj", "attention", heads * mla.qk_head_dim, mla.q_lora_rank, n, False)
    else:
        groups += _linear("self_attn.q_proj", "attention", heads * mla.qk_head_dim, h, n, False)
    groups += _linear("self_attn.kv_a_proj_with_mqa", "attention", mla.kv_lora_rank + mla.qk_rope_head_dim, h,
                      n, spec.attention_qkv_bias)
    groups += _norm(spec, "self_attn.kv_a_layernorm", mla.kv_lora_rank, n)
    if mla.rope_key_norm:
        groups += _norm(spec, "self_attn.k_rope_only_layernorm", mla.qk_rope_head_dim, n)
    groups += _linear("self_attn.kv_b_proj", "attention", heads * (mla.qk_nope_head_dim + mla.v_head_dim),
                      mla.kv_lora_rank, n, False)
    groups += _linear("self_attn.o_proj", "attention", h, heads * mla.v_head_dim, n, spec.attention_out_bias)
    return groups


def _attention_shapes(spec: ModelSpec) -> dict[tuple[int, int, bool, bool], list[int]]:
    """Attention layers counted by their shape: (head_dim, kv_heads, reuses an earlier
    layer's KV, keys serve as values). One entry for a uniform model; Gemma 4 has
    sliding, full and KV-sharing layers of different shapes."""
    shapes: dict[tuple[int, int, bool, bool], list[int]] = {}
    kinds = spec.attention_kinds()
    for i in range(spec.num_layers):
        if spec.mixer(i) != "attention":
            continue
        k_is_v = spec.attention_k_eq_v and kinds[i] == "full_attention"
        key = (spec.layer_head_dim(i), spec.layer_num_kv_heads(i), spec.is_kv_shared(i), k_is_v)
        shapes.setdefault(key, []).append(i)
    return shapes


def _sink_layers(spec: ModelSpec) -> list[int]:
    """Attention layers that hold a learned sink logit per head."""
    if not spec.attention_sinks:
        return []
    kinds = spec.attention_kinds()
    return [i for i in range(spec.num_layers) if spec.mixer(i) == "attention"
            and (not spec.sinks_on_sliding_layers_only or kinds[i] == "sliding_attention")]


def _qkvo(spec: ModelSpec, head_dim: int, kv_heads: int, shared: bool, k_is_v: bool,
          n: int) -> list[TensorGroup]:
    """q/k/v/o projections and q/k norms of ``n`` attention layers of one shape; a layer
    that reuses another's KV has no k/v projections or k norm, one whose keys serve as
    values has no v projection."""
    h, bias = spec.hidden_size, spec.attention_qkv_bias
    q_dim, kv_dim = spec.num_attention_heads * head_dim, kv_heads * head_dim
    v_head = spec.value_head_dim or head_dim
    q_out = q_dim * (2 if spec.attention_gate == "q_proj" else 1)
    groups = _linear("self_attn.q_proj", "attention", q_out, h, n, bias)
    if not shared:
        groups += _linear("self_attn.k_proj", "attention", kv_dim, h, n, bias and spec.key_bias)
        if not k_is_v:
            groups += _linear("self_attn.v_proj", "attention", kv_heads * v_head, h, n, bias)
    groups += _linear("self_attn.o_proj", "attention", h, spec.num_attention_heads * v_head, n,
                      spec.attention_out_bias)
    if spec.qk_norm == "per_head":
        groups += _norm(spec, "self_attn.q_norm", head_dim, n)
        if not shared:
            groups += _norm(spec, "self_attn.k_norm", head_dim, n)
    elif spec.qk_norm == "full":
        groups += _norm(spec, "self_attn.q_norm", q_dim, n)
        groups += _norm(spec, "self_attn.k_norm", kv_dim, n)
    return groups


def per_layer_input_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """Gemma 4's per-layer input embeddings (modeling_gemma4.py): a table of
    ``layers x hidden_size_per_layer_input`` columns, a projection of the hidden state
    to the same width and its norm; in each layer a gate (hidden -> p), a projection
    back (p -> hidden) and a norm."""
    p, h, n = spec.per_layer_input_size, spec.hidden_size, spec.num_layers
    if not p:
        return []
    groups = [TensorGroup(name="embed_tokens_per_layer.weight", component="embeddings", role="embedding",
                          shape=(spec.per_layer_input_vocab, n * p), count=1, per_layer=False),
              TensorGroup(name="per_layer_model_projection.weight", component="embeddings", role="linear",
                          shape=(n * p, h), count=1, per_layer=False)]
    groups += _norm(spec, "per_layer_projection_norm", p, 1, per_layer=False)
    groups += _linear("per_layer_input_gate", "embeddings", p, h, n, False)
    groups += _linear("per_layer_projection", "embeddings", h, p, n, False)
    groups += _norm(spec, "post_per_layer_input_norm", h, n)
    return groups


def cross_attention_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """Mllama's cross-attention layers (``MllamaTextCrossAttention``): q from the text,
    k/v from the vision states (already at the text width), o, q/k norms per head, and
    the layer's two tanh gates (attention and MLP)."""
    layers = _layers_where(spec, "cross_attention")
    if not layers:
        return []
    n, h, d = len(layers), spec.hidden_size, spec.head_dim
    kv = spec.num_kv_heads * d
    groups = _linear("cross_attn.q_proj", "cross_attention", spec.q_dim, h, n, False)
    groups += _linear("cross_attn.k_proj", "cross_attention", kv, h, n, False)
    groups += _linear("cross_attn.v_proj", "cross_attention", kv, h, n, False)
    groups += _linear("cross_attn.o_proj", "cross_attention", h, spec.q_dim, n, False)
    groups += _norm(spec, "cross_attn.q_norm", d, n)
    groups += _norm(spec, "cross_attn.k_norm", d, n)
    groups += [TensorGroup(name=f"{gate}", component="cross_attention", role="other", shape=(1,), count=n)
               for gate in ("cross_attn_attn_gate", "cross_attn_mlp_gate")]
    return _held_by(groups, layers)


def compressed_attention_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """DeepSeek-V4's attention (modeling_deepseek_v4.py): query latent and its norm,
    the shared key=value projection and norm, grouped output projections, a sink per
    head; in compressed layers the compressor (``kv_proj``/``gate_proj``, a position
    bias per window slot, a norm), twice as wide in the indexed (CSA) layers, which also
    hold the indexer's own compressor, query projection and head weights."""
    ca = spec.compressed_attention
    layers = _layers_where(spec, "compressed_attention")
    if ca is None or not layers:
        return []
    h, d, heads, n = spec.hidden_size, ca.head_dim, spec.num_attention_heads, len(layers)
    groups = _linear("self_attn.q_a_proj", "attention", ca.q_lora_rank, h, n, False)
    groups += _norm(spec, "self_attn.q_a_norm", ca.q_lora_rank, n)
    groups += _linear("self_attn.q_b_proj", "attention", heads * d, ca.q_lora_rank, n, False)
    groups += _linear("self_attn.kv_proj", "attention", d, h, n, False)
    groups += _norm(spec, "self_attn.kv_norm", d, n)
    groups += _linear("self_attn.o_a_proj", "attention", ca.o_groups * ca.o_lora_rank, heads * d // ca.o_groups, n,
                      False)
    groups += _linear("self_attn.o_b_proj", "attention", h, ca.o_groups * ca.o_lora_rank, n, False)
    groups.append(TensorGroup(name="self_attn.sinks", component="attention", role="other", shape=(heads,), count=n))
    groups = _held_by(groups, layers)
    by_rate: dict[int, list[int]] = {}
    for i in layers:
        if ca.layer_rates[i]:
            by_rate.setdefault(ca.layer_rates[i], []).append(i)
    for rate, held in by_rate.items():
        k = len(held)
        indexed = rate == ca.indexed_rate
        width = 2 * d if indexed else d
        comp = [TensorGroup(name="self_attn.compressor.position_bias", component="attention", role="other",
                            shape=(rate, width), count=k)]
        comp += _linear("self_attn.compressor.kv_proj", "attention", width, h, k, False)
        comp += _linear("self_attn.compressor.gate_proj", "attention", width, h, k, False)
        comp += _norm(spec, "self_attn.compressor.kv_norm", d, k)
        if indexed:
            i_d = ca.index_head_dim
            comp.append(TensorGroup(name="self_attn.compressor.indexer.position_bias", component="attention",
                                    role="other", shape=(rate, 2 * i_d), count=k))
            comp += _linear("self_attn.compressor.indexer.kv_proj", "attention", 2 * i_d, h, k, False)
            comp += _linear("self_attn.compressor.indexer.gate_proj", "attention", 2 * i_d, h, k, False)
            comp += _norm(spec, "self_attn.compressor.indexer.kv_norm", i_d, k)
            comp += _linear("self_attn.compressor.indexer.q_b_proj", "attention", ca.index_heads * i_d,
                            ca.q_lora_rank, k, False)
            comp += _linear("self_attn.compressor.indexer.scorer.weights_proj", "attention", ca.index_heads, h, k,
                            False)
        groups += _held_by(comp, held)
    return groups


def residual_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """Modules that widen or gate the residual stream. Gemma 3n (modeling_gemma3n.py): AltUp per layer
    (``correct_output_scale``, ``correction_coefs`` n x n, ``prediction_coefs`` n^2 x n,
    ``modality_router`` hidden -> n and its norm) with ``n - 1`` projections into and out
    of the extra streams; LAuReL per layer (``linear_left`` hidden -> r, ``linear_right``
    r -> hidden and its norm). Hyper-connections (modeling_hy_v4.py): ``fn``, ``base``,
    ``scale`` twice per layer and the ``hc_head``. A.X K2's norm gates (modeling_axk2.py)."""
    h, n, groups = spec.hidden_size, spec.altup_inputs, []
    if n:
        groups.append(TensorGroup(name="altup.correct_output_scale", component="residual", role="other",
                                  shape=(h,), count=spec.num_layers))
        groups += _linear("altup.correction_coefs", "residual", n, n, spec.num_layers, False)
        groups += _linear("altup.prediction_coefs", "residual", n * n, n, spec.num_layers, False)
        groups += _linear("altup.modality_router", "residual", n, h, spec.num_layers, False)
        groups += _norm(spec, "altup.router_norm", h, spec.num_layers)
        for name in ("altup_projections", "altup_unembed_projections") if n > 1 else ():
            groups.append(TensorGroup(name=f"{name}.weight", component="residual", role="linear", shape=(h, h),
                                      count=n - 1, per_layer=False))
    streams = spec.hyper_connection_streams
    if streams:  # HYV4HyperConnection / DeepSeek-V4: before attention and before the MLP, then hc_head
        rows = (2 + streams) * streams if spec.hyper_connection_residual_mix else 2 * streams
        scales = 3 if spec.hyper_connection_residual_mix else 2
        for name, shape in (("fn", (rows, streams * h)), ("base", (rows,)), ("scale", (scales,))):
            groups.append(TensorGroup(name=f"hc.{name}", component="residual", role="other", shape=shape,
                                      count=2 * spec.num_layers))
        for name, shape in (("hc_fn", (streams, streams * h)), ("hc_base", (streams,)), ("hc_scale", (1,))):
            groups.append(TensorGroup(name=f"hc_head.{name}", component="residual", role="other", shape=shape,
                                      count=1, per_layer=False))
    if spec.gated_norm_rank:  # A.X K2 AXK2GatedRMSNorm: input norm everywhere, post-attention norm in MoE layers
        gated = spec.num_layers + spec.num_moe_layers
        groups += _linear("gated_norm.mlp.fc1", "residual", spec.gated_norm_rank, h, gated, False)
        groups += _linear("gated_norm.mlp.fc2", "residual", h, spec.gated_norm_rank, gated, False)
    if spec.laurel_rank:
        groups += _linear("laurel.linear_left", "residual", spec.laurel_rank, h, spec.num_layers, False)
        groups += _linear("laurel.linear_right", "residual", h, spec.laurel_rank, spec.num_layers, False)
        groups += _norm(spec, "laurel.post_laurel_norm", h, spec.num_layers)
    return groups


def indexer_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """The sparse-attention indexer of each indexer layer (transformers
    ``DeepseekV32Indexer``): ``wq_b`` from the query latent, ``wk`` from the hidden
    state, a LayerNorm (weight and bias) on the key, ``weights_proj`` (one weight per
    head)."""
    n, idx = spec.num_indexer_layers, spec.indexer
    if not n or idx is None or spec.mla is None or spec.mla.q_lora_rank is None:
        return []
    h = spec.hidden_size
    groups = _linear("self_attn.indexer.wq_b", "attention", idx.num_heads * idx.head_dim, spec.mla.q_lora_rank, n,
                     False)
    groups += _linear("self_attn.indexer.wk", "attention", idx.head_dim, h, n, False)
    groups += [TensorGroup(name=f"self_attn.indexer.k_norm.{part}", component="norms", role="norm",
                           shape=(idx.head_dim,), count=n) for part in ("weight", "bias")]
    groups += _linear("self_attn.indexer.weights_proj", "attention", idx.num_heads, h, n, False)
    return groups


def _other(name: str, shape: tuple[int, ...], count: int) -> list[TensorGroup]:
    return [TensorGroup(name=name, component="ssm", role="other", shape=shape, count=count)] if count else []


def ssm_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """The non-attention mixers' tensors, each group marked with the layers holding it."""
    groups: list[TensorGroup] = []
    for mixer in ("mamba", "mamba2", "short_conv", "lightning_attention", "gated_deltanet", "kda", "rg_lru", "rwkv", "mlstm"):
        layers = _mixer_layers(spec, mixer)
        if layers:
            groups += _held_by(_mixer_tensors(spec, mixer), layers)
    return groups


def _mixer_layers(spec: ModelSpec, mixer: str) -> list[int]:
    """Layers holding ``mixer``: its own layers, and for the Mamba kinds the attention
    layers too when they carry one (Falcon-H1, Zamba)."""
    if mixer in ("mamba", "mamba2") and spec.ssm_in_attention_layers and spec.ssm is not None \
            and mixer == ("mamba" if spec.ssm.version == 1 else "mamba2"):
        return sorted(set(_layers_where(spec, mixer)) | set(_layers_where(spec, "attention")))
    return _layers_where(spec, mixer)


def _mixer_tensors(spec: ModelSpec, mixer: str) -> list[TensorGroup]:
    """Mamba / Mamba-2 mixers (transformers ``MambaMixer``, ``Mamba2Mixer``) and gated
    delta-nets (``Qwen3NextGatedDeltaNet``) of the non-attention layers."""
    h = spec.hidden_size
    groups: list[TensorGroup] = []
    ssm = spec.ssm
    for version in (1, 2):
        if mixer != ("mamba" if version == 1 else "mamba2"):
            continue
        n = len(_mixer_layers(spec, mixer))
        if not n or ssm is None:
            continue
        d, state = ssm.d_inner, ssm.d_state
        if version == 1:
            groups += _linear("mamba.in_proj", "ssm", 2 * d, h, n, ssm.proj_bias)
            groups += _linear("mamba.x_proj", "ssm", ssm.dt_rank + 2 * state, d, n, False)
            groups += _linear("mamba.dt_proj", "ssm", d, ssm.dt_rank, n, True)
            groups += _other("mamba.A_log", (d, state), n)
            groups += _other("mamba.D", (d,), n)
            if ssm.inner_norms:
                groups += _other("mamba.dt_layernorm.weight", (ssm.dt_rank,), n)
                groups += _other("mamba.b_layernorm.weight", (state,), 2 * n)
        else:
            groups += _linear("mamba.in_proj", "ssm", d + ssm.conv_channels + ssm.num_heads, h, n, ssm.proj_bias)
            groups += _other("mamba.dt_bias", (ssm.num_heads,), n)
            groups += _other("mamba.A_log", (ssm.num_heads,), n)
            groups += _other("mamba.D", (ssm.num_heads,), n)
            if ssm.gated_norm:
                groups += _other("mamba.norm.weight", (d,), n)
        groups += _other("mamba.conv1d.weight", (ssm.conv_channels, 1, ssm.d_conv), n)
        if ssm.conv_bias:
            groups += _other("mamba.conv1d.bias", (ssm.conv_channels,), n)
        groups += _linear("mamba.out_proj", "ssm", h, d, n,
                          ssm.proj_bias if ssm.out_proj_bias is None else ssm.out_proj_bias)
    n = sum(spec.mixer(i) == "short_conv" for i in range(spec.num_layers))
    if n and mixer == "short_conv":  # LFM2 ShortConv: in_proj -> B, C, x; depthwise conv over L_cache; out_proj
        groups += _linear("conv.in_proj", "ssm", 3 * h, h, n, spec.short_conv_bias)
        groups += _other("conv.conv.weight", (h, 1, spec.short_conv_kernel), n)
        if spec.short_conv_bias:
            groups += _other("conv.conv.bias", (h,), n)
        groups += _linear("conv.out_proj", "ssm", h, h, n, spec.short_conv_bias)
    n = sum(spec.mixer(i) == "lightning_attention" for i in range(spec.num_layers))
    if n and mixer == "lightning_attention":  # MiniMax lightning attention (MiniMaxLightningAttention): fused qkv, output gate, norm, out
        width = spec.q_dim
        groups += _linear("linear_attn.qkv_proj", "ssm", 3 * width, h, n, False)
        groups += _linear("linear_attn.output_gate", "ssm", width, h, n, False)
        groups += _other("linear_attn.norm.weight", (width,), n)
        groups += _linear("linear_attn.out_proj", "ssm", h, width, n, False)
    net = spec.deltanet
    n = sum(spec.mixer(i) == "gated_deltanet" for i in range(spec.num_layers))
    if n and net is not None and mixer == "gated_deltanet":
        groups += _linear("linear_attn.in_proj_qkvz", "ssm", 2 * net.key_dim + 2 * net.value_dim, h, n, False)
        groups += _linear("linear_attn.in_proj_ba", "ssm", 2 * net.num_v_heads, h, n, False)
        groups += _other("linear_attn.conv1d.weight", (net.conv_channels, 1, net.conv_kernel), n)
        groups += _other("linear_attn.dt_bias", (net.num_v_heads,), n)
        groups += _other("linear_attn.A_log", (net.num_v_heads,), n)
        groups += _other("linear_attn.norm.weight", (net.head_v_dim,), n)
        groups += _linear("linear_attn.out_proj", "ssm", h, net.value_dim, n, False)
    n = sum(spec.mixer(i) == "kda" for i in range(spec.num_layers))
    if n and spec.kda is not None and mixer == "kda":
        groups += _kda_tensors(spec, n)
    n = sum(spec.mixer(i) == "rg_lru" for i in range(spec.num_layers))
    if n and spec.rg_lru is not None and mixer == "rg_lru":
        groups += _rg_lru_tensors(spec, n)
    n = sum(spec.mixer(i) == "rwkv" for i in range(spec.num_layers))
    if n and mixer == "rwkv":
        groups += _rwkv_tensors(spec, n)
    n = sum(spec.mixer(i) == "mlstm" for i in range(spec.num_layers))
    if n and spec.mlstm is not None and mixer == "mlstm":
        groups += _mlstm_tensors(spec, n)
    return groups


def _mlstm_tensors(spec: ModelSpec, n: int) -> list[TensorGroup]:
    """xLSTM's mLSTM layer (transformers ``xLSTMLayer``; the fused weight mode holds the
    same elements in ``qkv_opreact`` / ``ifgate_preact``)."""
    m, h = spec.mlstm, spec.hidden_size
    assert m is not None
    groups = _linear("mlstm_layer.q", "ssm", m.qk_dim, h, n, m.bias)
    groups += _linear("mlstm_layer.k", "ssm", m.qk_dim, h, n, m.bias)
    groups += _linear("mlstm_layer.v", "ssm", m.v_dim, h, n, m.bias)
    groups += _linear("mlstm_layer.ogate_preact", "ssm", m.v_dim, h, n, m.bias)
    groups += _linear("mlstm_layer.igate_preact", "ssm", m.num_heads, h, n, True)
    groups += _linear("mlstm_layer.fgate_preact", "ssm", m.num_heads, h, n, True)
    groups += _other("mlstm_layer.multihead_norm.weight", (m.v_dim,), n)
    if m.bias:
        groups += _other("mlstm_layer.multihead_norm.bias", (m.v_dim,), n)
    groups += _linear("mlstm_layer.out_proj", "ssm", h, m.v_dim, n, m.bias)
    return groups


def _rwkv_tensors(spec: ModelSpec, n: int) -> list[TensorGroup]:
    """An RWKV-4 block (Peng et al. 2023; transformers ``RwkvSelfAttention``,
    ``RwkvFeedForward``): time mixing with per-channel ``time_decay`` / ``time_first``, three
    token-shift mixes and key / value / receptance / output; channel mixing with two
    mixes, key (hidden -> intermediate), value (back) and receptance (hidden -> hidden)."""
    h, a, width = spec.hidden_size, spec.rwkv_attention_size, spec.intermediate_size
    groups = _other("attention.time_decay", (a,), n) + _other("attention.time_first", (a,), n)
    groups += _other("attention.time_mix", (h,), 3 * n)
    for name in ("key", "value", "receptance"):
        groups += _linear(f"attention.{name}", "ssm", a, h, n, False)
    groups += _linear("attention.output", "ssm", h, a, n, False)
    groups += [TensorGroup(name="feed_forward.time_mix", component="mlp", role="other", shape=(h,), count=2 * n)]
    groups += _linear("feed_forward.key", "mlp", width, h, n, False)
    groups += _linear("feed_forward.receptance", "mlp", h, h, n, False)
    groups += _linear("feed_forward.value", "mlp", h, width, n, False)
    return groups


def _kda_tensors(spec: ModelSpec, n: int) -> list[TensorGroup]:
    """Kimi delta attention (transformers ``KimiDeltaAttention``): q/k/v of
    ``heads x head_dim``, one depthwise conv over the three, a per-channel forget gate
    (``dt_bias``, per-head ``A_log``, low-rank ``f_a``/``f_b`` or Bailing's ``f_proj``),
    the per-head beta (``b_proj``), an output gate (``g_a``/``g_b`` or ``g_proj``), a
    gated RMSNorm over ``head_dim`` and ``o_proj``."""
    kda, h = spec.kda, spec.hidden_size
    assert kda is not None
    w, r = kda.width, kda.gate_rank
    groups: list[TensorGroup] = []
    for name in ("q_proj", "k_proj", "v_proj"):
        groups += _linear(f"self_attn.{name}", "ssm", w, h, n, False)
    groups += _other("self_attn.conv1d.weight", (kda.conv_channels, 1, kda.conv_kernel), n)
    groups += _other("self_attn.forget_gate.dt_bias", (w,), n)
    groups += _other("self_attn.forget_gate.A_log", (kda.num_heads,), n)
    if r:
        groups += _linear("self_attn.forget_gate.f_a_proj", "ssm", r, h, n, False)
        groups += _linear("self_attn.forget_gate.f_b_proj", "ssm", w, r, n, False)
        groups += _linear("self_attn.g_a_proj", "ssm", r, h, n, False)
        groups += _linear("self_attn.g_b_proj", "ssm", w, r, n, False)
    else:
        groups += _linear("self_attn.forget_gate.f_proj", "ssm", w, h, n, False)
        groups += _linear("self_attn.g_proj", "ssm", w, h, n, False)
    groups += _linear("self_attn.b_proj", "ssm", kda.num_heads, h, n, False)
    groups += _other("self_attn.o_norm.weight", (kda.head_dim,), n)
    groups += _linear("self_attn.o_proj", "ssm", h, w, n, False)
    return groups


def _rg_lru_tensors(spec: ModelSpec, n: int) -> list[TensorGroup]:
    """RecurrentGemma's recurrent block (``RecurrentGemmaRecurrentBlock``): ``linear_x``,
    ``linear_y`` (hidden -> lru_width, biased), the depthwise conv (biased), the RG-LRU's
    ``recurrent_param`` and block-diagonal input / recurrence gates (one
    ``block x block`` matrix and bias per head), ``linear_out`` (biased)."""
    lru, h = spec.rg_lru, spec.hidden_size
    assert lru is not None
    w, heads = lru.width, lru.num_heads
    block = w // heads
    groups = _linear("temporal_block.linear_x", "ssm", w, h, n, True)
    groups += _linear("temporal_block.linear_y", "ssm", w, h, n, True)
    groups += _other("temporal_block.conv_1d.weight", (w, 1, lru.conv_kernel), n)
    groups += _other("temporal_block.conv_1d.bias", (w,), n)
    groups += _other("temporal_block.rg_lru.recurrent_param", (w,), n)
    for gate in ("input_gate", "recurrent_gate"):
        groups += _other(f"temporal_block.rg_lru.{gate}_weight", (heads, block, block), n)
        groups += _other(f"temporal_block.rg_lru.{gate}_bias", (heads, block), n)
    groups += _linear("temporal_block.linear_out", "ssm", h, w, n, True)
    return groups


def shared_block_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """Zamba's shared attention + MLP blocks (``ZambaAttentionDecoderLayer``,
    ``Zamba2AttentionDecoderLayer``): ``min(num_mem_blocks, hybrid layers)`` copies of
    q/k/v (from the ``2 x hidden`` concatenation), o_proj, the MLP and two norms, held
    by the first hybrid layers using them; per hybrid layer a ``hidden -> hidden``
    ``linear`` and, in Zamba2, the rank-``adapter_rank`` adapters on the fused gate/up
    projection (and on q, k, v)."""
    block = spec.shared_block
    if block is None:
        return []
    hybrid = _layers_where(spec, "attention")
    copies = min(block.num_blocks, len(hybrid))
    if not copies:
        return []
    h, width, inp = spec.hidden_size, spec.intermediate_size, block.input_size
    kv_dim = spec.num_kv_heads * spec.head_dim
    held = _linear("shared_transformer.self_attn.q_proj", "attention", spec.q_dim, inp, copies, False)
    held += _linear("shared_transformer.self_attn.k_proj", "attention", kv_dim, inp, copies, False)
    held += _linear("shared_transformer.self_attn.v_proj", "attention", kv_dim, inp, copies, False)
    held += _linear("shared_transformer.self_attn.o_proj", "attention", h, spec.q_dim, copies, False)
    if block.mlp_fused_gate_up:
        held += _linear("shared_transformer.feed_forward.gate_up_proj", "mlp", 2 * width, h, copies, spec.mlp_bias)
    else:
        held += _linear("shared_transformer.feed_forward.gate_proj", "mlp", width, h, copies, spec.mlp_bias)
        held += _linear("shared_transformer.feed_forward.up_proj", "mlp", width, h, copies, spec.mlp_bias)
    held += _linear("shared_transformer.feed_forward.down_proj", "mlp", h, width, copies, spec.mlp_bias)
    held += _norm(spec, "shared_transformer.input_layernorm", inp, copies)
    held += _norm(spec, "shared_transformer.pre_ff_layernorm", h, copies)
    groups = _held_by(held, hybrid[:copies])
    per_layer = _linear("linear", "attention", h, h, len(hybrid), False)
    if block.adapter_rank:
        r, k = block.adapter_rank, len(hybrid)
        per_layer += _linear("shared_transformer.feed_forward.gate_up_proj_adapter.0", "mlp", r, h, k, False)
        per_layer += _linear("shared_transformer.feed_forward.gate_up_proj_adapter.1", "mlp", 2 * width, r, k, False)
        if block.attention_adapters:
            for name in ("q", "k", "v"):
                per_layer += _linear(f"shared_transformer.self_attn.linear_{name}_adapter.0", "attention", r, inp, k,
                                     False)
                per_layer += _linear(f"shared_transformer.self_attn.linear_{name}_adapter.1", "attention", inp, r, k,
                                     False)
    return groups + _held_by(per_layer, hybrid)


def _mlp(spec: ModelSpec, prefix: str, component: Component, width: int, count: int,
         bias: bool) -> list[TensorGroup]:
    h = spec.hidden_size
    groups: list[TensorGroup] = []
    if spec.mlp_gated:
        groups += _linear(f"{prefix}.gate_proj", component, width, h, count, bias)
    groups += _linear(f"{prefix}.up_proj", component, width, h, count, bias)
    groups += _linear(f"{prefix}.down_proj", component, h, width, count, bias)
    return groups


def mlp_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """Dense MLPs (all layers of a dense model, the dense layers of an MoE model),
    routed experts, routers and shared experts."""
    groups = []
    dense = [i for i in range(spec.num_layers) if spec.has_dense_mlp(i)]
    widths = spec.dense_widths()
    for width in sorted(set(widths)):
        layers = [i for i, w in zip(dense, widths) if w == width]
        held = _mlp(spec, "mlp", "mlp", width, len(layers), spec.mlp_bias)
        if spec.mlp_scale_vectors:
            held.append(TensorGroup(name="mlp.scale", component="mlp", role="other", shape=(width,),
                                    count=len(layers) * spec.mlp_scale_vectors))
        if spec.sub_norms:
            held += _norm(spec, "mlp.ffn_sub_norm", width, len(layers))
        groups += _held_by(held, layers)
    if spec.mlp_activation_params:
        groups.append(TensorGroup(name="mlp.act_fn.alpha", component="mlp", role="other", shape=(1,),
                                  count=spec.mlp_activation_params * spec.num_layers))
    moe = spec.moe
    if moe is None or not spec.num_moe_layers:
        return groups
    n_moe = spec.num_moe_layers
    if moe.router:
        groups += _linear("mlp.gate", "router", moe.num_experts + moe.zero_experts, spec.hidden_size, n_moe,
                          moe.router_bias)
    if moe.router_scales:  # Gemma 4 Gemma4TextRouter: input scale and per-expert scale
        groups += [TensorGroup(name="mlp.gate.scale", component="router", role="other", shape=(spec.hidden_size,),
                               count=n_moe),
                   TensorGroup(name="mlp.gate.per_expert_scale", component="router", role="other",
                               shape=(moe.num_experts,), count=n_moe)]
    if moe.router_score_bias:
        groups.append(TensorGroup(name="mlp.gate.e_score_correction_bias", component="router", role="other",
                                  shape=(moe.num_experts,), count=n_moe))
    groups += _mlp(spec, "mlp.experts", "experts", moe.expert_intermediate_size, n_moe * moe.num_experts,
                   moe.expert_bias)
    if moe.shared_expert_intermediate_size:
        groups += _mlp(spec, "mlp.shared_experts", "shared_experts", moe.shared_expert_intermediate_size, n_moe,
                       False)
    if moe.post_norm:
        groups += _norm(spec, "mlp.post_mlp_layernorm", spec.hidden_size, n_moe)
    if moe.output_bias:
        groups.append(TensorGroup(name="mlp.bias", component="biases", role="bias", shape=(spec.hidden_size,),
                                  count=n_moe))
    if moe.block_norms:
        groups += _held_by(_norm(spec, "moe_block_layernorm", spec.hidden_size, moe.block_norms * n_moe),
                           [i for i in range(spec.num_layers) if spec.is_moe_layer(i)])
    if moe.shared_expert_gate:
        groups += _linear("mlp.shared_expert_gate", "shared_experts", 1, spec.hidden_size, n_moe, False)
    return groups


def tower_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """The vision/audio towers and projectors of a multimodal checkpoint
    (:mod:`vramplan.model.towers`): outside the decoder blocks, so LoRA leaves them frozen."""
    return [TensorGroup(name=f"{tower.kind}_tower.{t.name}" if component != "projector" else t.name,
                        component=component, role=t.role, shape=t.shape, count=t.count, per_layer=False)
            for tower in spec.towers
            for component, rows in ((f"{tower.kind}_tower", tower.tensors), ("projector", tower.projector))
            for t in rows]


_DEEPSEEK_ROUTER = ("mlp.gate.weight",)
FP32_KEPT_GROUPS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("deepseek_v3", "deepseek_v32", "glm_moe_dsa", "glm4_moe_lite", "axk2", "dots3_note_text"),
                    _DEEPSEEK_ROUTER),
    "hy_v4": (*_DEEPSEEK_ROUTER, "hc.", "hc_head.", "lm_head.weight", "indexer.k_norm.", "indexer.weights_proj.",
              "self_attn.sinks"),
    "deepseek_v4": ("hc.", "hc_head.", "norm.weight", "position_bias", "self_attn.sinks"),
}
"""Per family, the tensors (substrings of their group names) its transformers class keeps
in fp32 in a 16-bit model (``_keep_in_fp32_modules_strict``, transformers 5.24): the
DeepSeek router's weight (``"gate.weight"``); Hunyuan v4's hyper-connection weights,
head, sinks and indexer key norm and head weights; DeepSeek-V4's hyper-connection
weights, every norm, the compressors' position biases and the sinks. Checked against a
bf16 build of each (tests/test_hyperconn_activations.py)."""


def _mark_fp32_kept(spec: ModelSpec, groups: list[TensorGroup]) -> list[TensorGroup]:
    kept = FP32_KEPT_GROUPS.get(spec.model_type, ())
    if not kept:
        return groups
    return [replace(g, kept_fp32=True) if any(k in g.name for k in kept) else g for g in groups]


def model_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """All parameter tensors of the model, embeddings first, head last (then the
    vision/audio towers of a multimodal checkpoint)."""
    if spec.architecture != "decoder":
        from vramplan.model.encoder_decoder import encoder_decoder_tensors

        return encoder_decoder_tensors(spec)
    return _mark_fp32_kept(spec, decoder_tensors(spec)) + tower_tensors(spec)


def decoder_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """The decoder-only model's tensors, embeddings first, head last."""
    h = spec.hidden_size
    groups = [TensorGroup(name="embed_tokens.weight", component="embeddings", role="embedding",
                          shape=(spec.vocab_size + spec.prompt_embedding_rows + spec.embedding_extra_rows, h),
                          count=1, per_layer=False)]
    if spec.segment_embedding_rows:
        groups.append(TensorGroup(name="segment_embedding.weight", component="embeddings", role="embedding",
                                  shape=(spec.segment_embedding_rows, h), count=1, per_layer=False))
    if spec.position_bias_rows:
        groups.append(TensorGroup(name="position_bias.relative_attention_bias", component="position_embeddings",
                                  role="other", shape=(spec.position_bias_rows, spec.num_attention_heads), count=1,
                                  per_layer=False))
    if spec.learned_position_embeddings:
        groups.append(TensorGroup(name="embed_positions.weight", component="position_embeddings",
                                  role="embedding",
                                  shape=(spec.max_position_embeddings + spec.position_embedding_offset, h),
                                  count=1, per_layer=False))
    if spec.embedding_norm:
        groups += _norm(spec, "embedding_norm", h, 1, per_layer=False)
    if spec.image_patch_input:
        groups += [replace(g, per_layer=False, component="projector")
                   for g in _linear("vision_embed_tokens", "projector", h, spec.image_patch_input, 1, True)]
    groups += per_layer_input_tensors(spec)
    groups += attention_tensors(spec)
    groups += cross_attention_tensors(spec)
    groups += compressed_attention_tensors(spec)
    groups += _held_by(indexer_tensors(spec), [i for i in range(spec.num_layers) if spec.has_indexer(i)])
    groups += encoder_attention_tensors(spec)
    groups += ssm_tensors(spec)
    groups += shared_block_tensors(spec)
    groups += mlp_tensors(spec)
    groups += residual_tensors(spec)
    groups += _norm(spec, "layernorm", h, spec.num_layers * spec.norms_per_layer
                    - (0 if spec.first_layer_attention_norm else 1))
    groups += _norm(spec, "norm", h, 1 if spec.final_norm else 0, per_layer=False)
    if spec.residual_scales:
        groups.append(TensorGroup(name="residual_scale", component="norms", role="other", shape=(h,),
                                  count=spec.num_layers * spec.residual_scales))
    if spec.head_transform:
        groups += [replace(g, per_layer=False) for g in _linear("lm_head.dense", "head", h, h, 1,
                                                                 spec.head_transform_bias)]
        groups += _norm(spec, "lm_head.norm", h, 1, per_layer=False)
    if spec.draft_backbone_hidden_size:  # Gemma4AssistantForCausalLM
        b = spec.draft_backbone_hidden_size
        groups += [TensorGroup(name="pre_projection.weight", component="embeddings", role="linear", shape=(h, 2 * b),
                               count=1, per_layer=False),
                   TensorGroup(name="post_projection.weight", component="head", role="linear", shape=(b, h),
                               count=1, per_layer=False)]
    if spec.draft_centroids:
        groups.append(TensorGroup(name="masked_embedding.centroids.weight", component="head", role="linear",
                                  shape=(spec.draft_centroids, h), count=1, per_layer=False))
    if not spec.tie_word_embeddings:
        groups.append(TensorGroup(name="lm_head.weight", component="head", role="linear",
                                  shape=(spec.vocab_size, h), count=1, per_layer=False))
    groups += [TensorGroup(name=t.name, component=t.component, role=t.role, shape=t.shape, count=t.count,
                           per_layer=t.per_layer) for t in spec.family_tensors]
    if spec.head_logit_scale:
        groups.append(TensorGroup(name="lm_head.logit_scale", component="head", role="other",
                                  shape=(spec.vocab_size,), count=1, per_layer=False))
    if spec.head_bias:
        groups.append(TensorGroup(name="lm_head.bias", component="biases", role="bias",
                                  shape=(spec.vocab_size,), count=1, per_layer=False))
    return groups
