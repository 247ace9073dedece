"""Encoder-decoder (T5, mT5, UMT5, Flan-T5, BART, mBART) and encoder-only (BERT, RoBERTa,
XLM-R, ModernBERT) models: reading their configs and listing their tensors.

A :class:`~vramplan.model.spec.ModelSpec` with ``architecture="encoder_decoder"``
describes the decoder stack in its main fields (the stack that keeps a KV cache) and
the encoder stack in :class:`~vramplan.model.spec.EncoderSpec`; with
``architecture="encoder"`` the main fields describe the encoder. Tensors follow the
transformers modeling files (``T5ForConditionalGeneration``, ``UMT5ForConditionalGeneration``,
``BartForConditionalGeneration``, ``MBartForConditionalGeneration``, ``BertForMaskedLM``,
``RobertaForMaskedLM``, ``XLMRobertaForMaskedLM``, ``ModernBertForMaskedLM``), named
with the Llama module names (``q_proj``, ``up_proj``...) so LoRA target lists mean the
same thing as for decoders; checked against the meta build in
tests/test_encoder_decoder.py. Encoder-only models are counted with their masked-LM
head (the checkpoint's pretraining head; a classification head instead is a few
thousand parameters).
"""

from __future__ import annotations

from typing import Any

from vramplan.errors import ConfigError
from vramplan.model.families import config_switch as _bool
from vramplan.model.spec import EncoderSpec, ModelSpec
from vramplan.model.tensors import Component, TensorGroup

Config = dict[str, Any]

T5_TYPES = ("t5", "mt5", "umt5")
BART_TYPES = ("bart", "mbart")
BERT_TYPES = ("bert", "roberta", "xlm-roberta")
MODERNBERT_TYPES = ("modernbert",)
ENCODER_DECODER_TYPES = T5_TYPES + BART_TYPES
ENCODER_TYPES = BERT_TYPES + MODERNBERT_TYPES

BART_POSITION_OFFSET = 2
"""``BartLearnedPositionalEmbedding`` keeps ``max_position_embeddings + 2`` rows."""


def reads(cfg: Config) -> bool:
    """The config is one of the encoder-decoder or encoder-only types read here."""
    return cfg.get("model_type") in ENCODER_DECODER_TYPES + ENCODER_TYPES


def _int(cfg: Config, key: str, default: int | None = None) -> int:
    value = cfg.get(key)
    if value is None:
        value = default
    if value is None:
        raise ConfigError(f"{key}: missing from config.json (needed for model_type {cfg.get('model_type')!r})")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 100_000_000:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


def _dtype(cfg: Config) -> str:
    from vramplan.dtypes import get_dtype
    from vramplan.errors import VramplanError

    raw = cfg.get("torch_dtype") or cfg.get("dtype") or "float32"
    try:
        return get_dtype(str(raw)).name
    except VramplanError:
        raise ConfigError(f"torch_dtype: unknown dtype {raw!r}") from None


def _t5(cfg: Config) -> dict[str, Any]:
    """T5 / mT5 / UMT5 (``T5Config``: ``d_model``, ``d_kv``, ``d_ff``, ``num_layers``,
    ``num_decoder_layers``, ``feed_forward_proj`` ``relu`` or ``gated-gelu``)."""
    proj = cfg.get("feed_forward_proj", "relu")
    if not isinstance(proj, str) or proj.removeprefix("gated-") not in ("relu", "gelu", "gelu_new", "silu"):
        raise ConfigError(f"feed_forward_proj: expected 'relu', 'gated-gelu' or similar, got {proj!r}")
    heads, layers = _int(cfg, "num_heads", 8), _int(cfg, "num_layers", 6)
    return dict(architecture="encoder_decoder", num_layers=_int(cfg, "num_decoder_layers", layers),
                hidden_size=_int(cfg, "d_model", 512), num_attention_heads=heads, num_kv_heads=heads,
                head_dim=_int(cfg, "d_kv", 64), intermediate_size=_int(cfg, "d_ff", 2048),
                vocab_size=_int(cfg, "vocab_size", 32128), max_position_embeddings=_int(cfg, "n_positions", 512),
                tie_word_embeddings=_bool(cfg, "tie_word_embeddings", True), norm="rmsnorm",
                norms_per_layer=3, mlp_gated=proj.startswith("gated-"), hidden_act=_t5_activation(cfg, proj),
                relative_attention_buckets=_int(cfg, "relative_attention_num_buckets", 32),
                encoder=EncoderSpec(num_layers=layers, num_attention_heads=heads, head_dim=_int(cfg, "d_kv", 64),
                                    intermediate_size=_int(cfg, "d_ff", 2048)))


def _t5_activation(cfg: Config, proj: str) -> str:
    """The MLP activation: ``dense_act_fn`` when saved, else the one ``feed_forward_proj``
    names, except ``gated-gelu`` which means ``gelu_new`` (configuration_t5.py, "for
    backwards compatibility")."""
    if isinstance(cfg.get("dense_act_fn"), str):
        return cfg["dense_act_fn"]
    return "gelu_new" if proj == "gated-gelu" else proj.removeprefix("gated-")


def _bart(cfg: Config) -> dict[str, Any]:
    """BART / mBART (``BartConfig``: ``d_model``, ``encoder_layers``/``decoder_layers``,
    ``encoder_ffn_dim``/``decoder_ffn_dim``, ``*_attention_heads``)."""
    h = _int(cfg, "d_model", 1024)
    heads, enc_heads = _int(cfg, "decoder_attention_heads", 16), _int(cfg, "encoder_attention_heads", 16)
    for key, value in (("decoder_attention_heads", heads), ("encoder_attention_heads", enc_heads)):
        if h % value:
            raise ConfigError(f"{key}: expected a divisor of d_model={h}, got {value}")
    return dict(architecture="encoder_decoder", num_layers=_int(cfg, "decoder_layers", 12), hidden_size=h,
                num_attention_heads=heads, num_kv_heads=heads, head_dim=h // heads,
                intermediate_size=_int(cfg, "decoder_ffn_dim", 4096), vocab_size=_int(cfg, "vocab_size", 50265),
                max_position_embeddings=_int(cfg, "max_position_embeddings", 1024),
                tie_word_embeddings=_bool(cfg, "tie_word_embeddings", True), norm="layernorm", norms_per_layer=3,
                mlp_gated=False, hidden_act=str(cfg.get("activation_function", "gelu")), mlp_bias=True,
                attention_qkv_bias=True, attention_out_bias=True, learned_position_embeddings=True,
                position_embedding_offset=BART_POSITION_OFFSET, embedding_norm=True,
                final_norm=cfg.get("model_type") == "mbart",
                encoder=EncoderSpec(num_layers=_int(cfg, "encoder_layers", 12), num_attention_heads=enc_heads,
                                    head_dim=h // enc_heads,
                                    intermediate_size=_int(cfg, "encoder_ffn_dim", 4096)))


def _encoder_shape(cfg: Config, layers: int, intermediate: int, vocab: int, positions: int) -> dict[str, Any]:
    """The fields BERT-style encoder configs spell alike (``hidden_size``,
    ``num_attention_heads``, ``num_hidden_layers``, ``intermediate_size``, ``vocab_size``,
    ``max_position_embeddings``, ``tie_word_embeddings``); the arguments are the family's
    defaults. Every head is a KV head (multi-head attention)."""
    h, heads = _int(cfg, "hidden_size", 768), _int(cfg, "num_attention_heads", 12)
    if h % heads:
        raise ConfigError(f"num_attention_heads: expected a divisor of hidden_size={h}, got {heads}")
    return dict(architecture="encoder", num_layers=_int(cfg, "num_hidden_layers", layers), hidden_size=h,
                num_attention_heads=heads, num_kv_heads=heads, head_dim=h // heads,
                intermediate_size=_int(cfg, "intermediate_size", intermediate),
                vocab_size=_int(cfg, "vocab_size", vocab),
                max_position_embeddings=_int(cfg, "max_position_embeddings", positions),
                tie_word_embeddings=_bool(cfg, "tie_word_embeddings", True))


def _bert(cfg: Config) -> dict[str, Any]:
    """BERT / RoBERTa / XLM-R (``BertConfig``): post-norm LayerNorm blocks with biases,
    learned positions, token types, masked-LM head (dense + LayerNorm + tied decoder + bias)."""
    return dict(_encoder_shape(cfg, layers=12, intermediate=3072, vocab=30522, positions=512), norm="layernorm",
                mlp_gated=False, hidden_act=str(cfg.get("hidden_act", "gelu")), mlp_bias=True,
                attention_qkv_bias=True, attention_out_bias=True, learned_position_embeddings=True,
                embedding_norm=True, final_norm=False, head_bias=True,
                type_vocab_size=_int(cfg, "type_vocab_size", 2))


def _modernbert(cfg: Config) -> dict[str, Any]:
    """ModernBERT (``ModernBertConfig``): pre-norm, fused qkv, GeGLU MLP (``Wi`` of
    ``2 x intermediate``), rotary positions, no first attention norm, masked-LM head."""
    return dict(_encoder_shape(cfg, layers=22, intermediate=1152, vocab=50368, positions=8192), norm="layernorm",
                norm_bias=_bool(cfg, "norm_bias", False), mlp_gated=True,
                hidden_act=str(cfg.get("hidden_activation", "gelu")), mlp_bias=_bool(cfg, "mlp_bias", False),
                attention_qkv_bias=_bool(cfg, "attention_bias", False),
                attention_out_bias=_bool(cfg, "attention_bias", False), embedding_norm=True,
                head_bias=_bool(cfg, "decoder_bias", True))


def spec_from_config(cfg: Config, name: str, hub_id: str | None) -> ModelSpec:
    """The :class:`ModelSpec` of an encoder-decoder or encoder-only config."""
    mtype = cfg["model_type"]
    reader = _t5 if mtype in T5_TYPES else _bart if mtype in BART_TYPES else \
        _bert if mtype in BERT_TYPES else _modernbert
    fields = reader(cfg)
    notes: tuple[str, ...] = ()
    if mtype in T5_TYPES and not fields["tie_word_embeddings"]:
        notes = ("untied output head counted, as the checkpoint stores it (lm_head.weight); transformers 5 "
                 "builds T5-family heads tied (configuration_t5.py forces tie_word_embeddings=True)",)
    if fields["architecture"] == "encoder":
        notes = ("encoder-only model: counted with its masked-LM head; no KV cache (inference is one forward "
                 "over the whole sequence)",)
    return ModelSpec(name=name, hub_id=hub_id, model_type=mtype, dtype=_dtype(cfg), notes=notes, **fields)


# ---- tensors ------------------------------------------------------------------------------
def _g(name: str, component: Component, role: str, shape: tuple[int, ...], count: int,
       per_layer: bool = True) -> list[TensorGroup]:
    if not count:
        return []
    return [TensorGroup(name=name, component=component, role=role, shape=shape, count=count,  # type: ignore[arg-type]
                        per_layer=per_layer)]


def _linear(name: str, component: Component, out_f: int, in_f: int, count: int, bias: bool) -> list[TensorGroup]:
    return _g(f"{name}.weight", component, "linear", (out_f, in_f), count) + \
        (_g(f"{name}.bias", "biases", "bias", (out_f,), count) if bias else [])


def _norms(spec: ModelSpec, name: str, dim: int, count: int, per_layer: bool = True) -> list[TensorGroup]:
    bias = spec.norm == "layernorm" and spec.norm_bias
    return _g(f"{name}.weight", "norms", "norm", (dim,), count, per_layer) + \
        (_g(f"{name}.bias", "norms", "norm", (dim,), count, per_layer) if bias else [])


def _attention(spec: ModelSpec, prefix: str, component: Component, heads: int, head_dim: int,
               count: int) -> list[TensorGroup]:
    h, inner = spec.hidden_size, heads * head_dim
    if spec.model_type in MODERNBERT_TYPES:  # fused Wqkv, listed as its parts
        return [g for part in ("q_proj", "k_proj", "v_proj")
                for g in _linear(f"{prefix}.{part}", component, inner, h, count, spec.attention_qkv_bias)] + \
            _linear(f"{prefix}.o_proj", component, h, inner, count, spec.attention_out_bias)
    return [g for part in ("q_proj", "k_proj", "v_proj")
            for g in _linear(f"{prefix}.{part}", component, inner, h, count, spec.attention_qkv_bias)] + \
        _linear(f"{prefix}.o_proj", component, h, inner, count, spec.attention_out_bias)


def _mlp(spec: ModelSpec, prefix: str, width: int, count: int) -> list[TensorGroup]:
    h = spec.hidden_size
    gate = _linear(f"{prefix}.gate_proj", "mlp", width, h, count, spec.mlp_bias) if spec.mlp_gated else []
    return gate + _linear(f"{prefix}.up_proj", "mlp", width, h, count, spec.mlp_bias) + \
        _linear(f"{prefix}.down_proj", "mlp", h, width, count, spec.mlp_bias)


def _stack(spec: ModelSpec, prefix: str, layers: int, heads: int, head_dim: int, width: int,
           cross: bool) -> list[TensorGroup]:
    """One stack's blocks: self-attention, (cross-attention), MLP and their norms."""
    groups = _attention(spec, f"{prefix}.self_attn", "attention", heads, head_dim, layers)
    if cross:
        groups += _attention(spec, f"{prefix}.cross_attn", "cross_attention", heads, head_dim, layers)
    groups += _mlp(spec, f"{prefix}.mlp", width, layers)
    norms = 3 if cross else 2
    if spec.model_type in MODERNBERT_TYPES:  # layer 0 has no attention norm (nn.Identity)
        return groups + _norms(spec, f"{prefix}.layernorm", spec.hidden_size, norms * layers - 1)
    groups += _norms(spec, f"{prefix}.layernorm", spec.hidden_size, norms * layers)
    if spec.relative_attention_buckets:  # T5: in block 0 of each stack; UMT5: in every block
        blocks = layers if spec.model_type == "umt5" else 1
        groups += _g(f"{prefix}.self_attn.relative_attention_bias.weight", "position_embeddings", "embedding",
                     (spec.relative_attention_buckets, heads), blocks)
    return groups


def encoder_decoder_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """All parameter tensors of an encoder-decoder or encoder-only ``spec``."""
    h, v = spec.hidden_size, spec.vocab_size
    groups = _g("embed_tokens.weight", "embeddings", "embedding", (v, h), 1, per_layer=False)
    stacks = ("encoder",) if spec.architecture == "encoder" else ("encoder", "decoder")
    for stack in stacks:
        if spec.learned_position_embeddings:
            groups += _g(f"{stack}.embed_positions.weight", "position_embeddings", "embedding",
                         (spec.max_position_embeddings + spec.position_embedding_offset, h), 1, per_layer=False)
        if spec.type_vocab_size:
            groups += _g("token_type_embeddings.weight", "position_embeddings", "embedding",
                         (spec.type_vocab_size, h), 1, per_layer=False)
        if spec.embedding_norm:
            groups += _norms(spec, f"{stack}.embedding_norm", h, 1, per_layer=False)
        if stack == "encoder" and spec.encoder is not None:
            enc = spec.encoder
            groups += _stack(spec, "encoder.layers", enc.num_layers, enc.num_attention_heads, enc.head_dim,
                             enc.intermediate_size, cross=False)
        else:
            groups += _stack(spec, f"{stack}.layers", spec.num_layers, spec.num_attention_heads, spec.head_dim,
                             spec.intermediate_size, cross=stack == "decoder")
        final = spec.final_norm if spec.model_type not in T5_TYPES else True
        if final:
            groups += _norms(spec, f"{stack}.norm", h, 1, per_layer=False)
    if spec.architecture == "encoder":  # masked-LM head transform: dense (+ bias) and a norm
        dense_bias = spec.model_type in BERT_TYPES
        groups += _g("lm_head.dense.weight", "head", "linear", (h, h), 1, per_layer=False)
        groups += _g("lm_head.dense.bias", "biases", "bias", (h,), 1 if dense_bias else 0, per_layer=False)
        groups += _norms(spec, "lm_head.norm", h, 1, per_layer=False)
    if not spec.tie_word_embeddings:
        groups += _g("lm_head.weight", "head", "linear", (v, h), 1, per_layer=False)
        if spec.model_type in BART_TYPES:  # untied BART: each stack's embed_tokens is its own table too
            groups += _g("stack.embed_tokens.weight", "embeddings", "embedding", (v, h), 2, per_layer=False)
    if spec.head_bias:  # untied BERT/RoBERTa: the decoder's bias and the head's bias are two tensors
        untied_bias = not spec.tie_word_embeddings and spec.model_type in BERT_TYPES
        groups += _g("lm_head.bias", "biases", "bias", (v,), 2 if untied_bias else 1, per_layer=False)
    return groups
