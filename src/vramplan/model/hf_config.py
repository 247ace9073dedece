"""Read a Hugging Face ``config.json`` into a :class:`ModelSpec`.

The config is read the way ``transformers`` reads it: when transformers is installed,
through ``AutoConfig`` (its config class fills the fields a file omits), never
executing remote code: a config with ``auto_map`` (remote code) is read from its JSON
keys. Without transformers, each family's defaults table
(:attr:`vramplan.model.families.Family.defaults`) fills the gaps.

One generic reader builds every family: quantities are found under any of their key
names (:data:`vramplan.model.families.KEYS`), structure comes from the family's flags
(:data:`vramplan.model.families.FAMILIES`). Multimodal checkpoints are read through
their ``text_config``; the outer config decides whether the head is tied, as the
wrapper classes do.

Every value is checked: integers (no NaN, Infinity, fractions, booleans, lists),
positive, within sane bounds (:data:`BOUNDS`); errors name the key and the bound.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vramplan import validate as v
from vramplan.dtypes import get_dtype
from vramplan.errors import ConfigError, UnreadModelTypeError, VramplanError
from vramplan.model.families import FAMILIES, KEYS, Family
from vramplan.model.families import config_switch as _bool
from vramplan.model.spec import (
    MAMBA1_FAMILIES_WITH_ACTIVATIONS,
    MIXERS_WITH_ACTIVATIONS,
    SHARED_BLOCK_WITH_ACTIVATIONS,
    SSM_BESIDE_ATTENTION_WITH_ACTIVATIONS,
    MLASpec,
    MoESpec,
    ModelSpec,
)

Config = dict[str, Any]

BOUNDS: dict[str, int] = {
    "num_layers": 10_000,
    "hidden_size": 1_000_000,
    "num_attention_heads": 100_000,
    "num_kv_heads": 100_000,
    "head_dim": 100_000,
    "intermediate_size": 10_000_000,
    "vocab_size": 100_000_000,
    "max_position_embeddings": 1_000_000_000,
    "num_experts": 100_000,
    "experts_per_token": 100_000,
    "expert_intermediate_size": 10_000_000,
    "shared_expert_intermediate_size": 10_000_000,
    "num_shared_experts": 100_000,
    "sliding_window": 1_000_000_000,
    "rank": 1_000_000,
}
"""Largest value accepted per quantity: far above any published model (the largest
have ~200 layers, hidden 25,600, 256-1,024 experts), low enough that a typo
(an extra zero run) is caught before it becomes a silent absurd estimate."""

WRAPPER_TIED_DEFAULT: frozenset[str] = frozenset({
    "blip", "cohere2_vision", "deepseek_vl", "deepseek_vl_hybrid", "ernie4_5_vl_moe", "florence2", "gemma3",
    "gemma4", "gemma4_unified", "got_ocr2", "granite_docling", "hyperclovax_vision_v2", "internvl", "janus",
    "kimi_k25", "kosmos-2", "kosmos-2.5", "lfm2_vl", "lfm3_vl", "lighton_ocr", "minicpm_ocr", "mistral3", "ovis2",
    "paddleocr_vl", "paligemma", "pp_chart2table", "shieldgemma2", "t5gemma2", "udop",
})
"""Multimodal wrappers whose config class defaults ``tie_word_embeddings`` to true
(transformers 5 config classes). The wrapper, not its ``text_config``, decides
whether the head is tied."""

WRAPPER_UNTIED_DEFAULT: frozenset[str] = frozenset({
    "apertus1p5", "aria", "cosmos3_edge", "cosmos3_omni", "dots3_note", "exaone4_5", "fuyu", "git", "glm46v",
    "glm4v", "glm4v_moe", "glm5_next", "glm_ocr", "glmga", "hy_v4_vl", "idefics", "idefics2", "idefics3", "llama4",
    "llava", "llava_next", "llava_next_video", "llava_onevision", "minicpmv4_6", "minicpmv4_7", "minimax_m3_vl",
    "mistral4", "mistral_large4", "molmo2", "pix2struct", "qianfan_ocr", "qwen2_5_omni_thinker", "qwen2_5_vl",
    "qwen2_vl", "qwen3_5", "qwen3_5_moe", "qwen3_omni_moe_thinker", "qwen3_vl", "qwen3_vl_moe", "smolvlm",
    "unlimited_ocr", "video_llama_3", "video_llava", "vipllava",
})
"""Wrappers whose config class defaults ``tie_word_embeddings`` to false. Wrappers in
neither set (BLIP-2, InstructBLIP, Mllama: no such field) leave tying to the text
config."""


# ---- values with errors that name the key and the bound ---------------------------
def _check_int(key: str, value: Any, quantity: str | None = None, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite integer, got {value!r}")
    if int(value) != value:
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key}: expected {what}, got {value!r}")
    bound = BOUNDS.get(quantity or key)
    if bound is not None and value > bound:
        raise ConfigError(f"{key}: expected at most {bound:,}, got {value!r}")
    return int(value)


def _find(cfg: Config, quantity: str) -> tuple[str, Any] | None:
    for key in KEYS.get(quantity, (quantity,)):
        if cfg.get(key) is not None:
            return key, cfg[key]
    return None


def _get(cfg: Config, quantity: str, default: int | None = None) -> int:
    """A positive integer quantity under any of its key names; ``default`` when absent
    (absent and no default: an error naming the key)."""
    found = _find(cfg, quantity)
    if found is None:
        if default is None:
            key = KEYS.get(quantity, (quantity,))[0]
            raise ConfigError(f"{key}: missing from config.json (needed for model_type {cfg.get('model_type')!r})")
        return default
    return _check_int(found[0], found[1], quantity)


def _opt(cfg: Config, quantity: str) -> int | None:
    """A quantity that may be absent, null or 0 (meaning "none")."""
    found = _find(cfg, quantity)
    if found is None or found[1] == 0:
        return None
    return _check_int(found[0], found[1], quantity)


def _key_int(cfg: Config, key: str, default: int | None = None, quantity: str | None = None) -> int | None:
    value = cfg.get(key)
    if value is None:
        return default
    return _check_int(key, value, quantity)


def _flag(cfg: Config, source: bool | str, default: bool = False) -> bool:
    return source if isinstance(source, bool) else _bool(cfg, source, default)


def _int_list(cfg: Config, key: str, *, minimum: int = 0, quantity: str | None = None) -> list[int]:
    value = cfg.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of integers, got {type(value).__name__}")
    return [_check_int(key, v, quantity, minimum=minimum) for v in value]


def _dtype(cfg: Config) -> str:
    raw = cfg.get("torch_dtype") or cfg.get("dtype") or "float32"
    try:
        return get_dtype(str(raw)).name
    except VramplanError:
        raise ConfigError(f"torch_dtype: unknown dtype {raw!r}") from None


def _quantization(cfg: Config) -> str:
    q = cfg.get("quantization_config")
    if not q:
        return ""
    if not isinstance(q, dict):
        raise ConfigError(f"quantization_config: expected an object, got {type(q).__name__}")
    return json.dumps(q, sort_keys=True)


ATTENTION_TYPES = ("full_attention", "sliding_attention", "chunked_attention")
INDEXED_ATTENTION = "indexed_attention"
"""DeepSeek sparse attention's layer type: full attention over the indexer's top-k
tokens; its cache holds every token (:class:`vramplan.model.spec.IndexerSpec`)."""


def _layer_types(cfg: Config, num_layers: int) -> tuple[str, ...]:
    types = cfg.get("layer_types")
    if not types:
        return ()
    if not isinstance(types, list) or len(types) != num_layers:
        raise ConfigError(f"layer_types: expected a list of {num_layers} entries (num_hidden_layers), "
                          f"got {len(types) if isinstance(types, list) else type(types).__name__}")
    for t in types:
        if t not in ATTENTION_TYPES and t != INDEXED_ATTENTION:
            raise ConfigError(f"layer_types: expected one of {', '.join(ATTENTION_TYPES)}, got {t!r}")
    return tuple("full_attention" if t == INDEXED_ATTENTION else t for t in types)


def _sliding(cfg: Config, layer_types: tuple[str, ...]) -> int | None:
    """The sliding window, when any layer uses it. Configs leave ``sliding_window`` set
    even when ``use_sliding_window`` is false (Qwen2): then no layer slides."""
    key = "sliding_window" if cfg.get("sliding_window") is not None else "attention_window_size"  # RecurrentGemma
    if cfg.get(key) is None or cfg.get("use_sliding_window") is False:
        return None
    if layer_types and "sliding_attention" not in layer_types:
        return None
    return _key_int(cfg, key, quantity="sliding_window")


def _has_linear_layers(cfg: Config) -> bool:
    types = cfg.get("layer_types")
    return isinstance(types, list) and any(t in ("linear_attention", "mamba", "attention", "conv",
                                                 "compressed_sparse_attention", "heavily_compressed_attention")
                                           for t in types)


def _layer_count(cfg: Config) -> int:
    """Decoder layers; Nemotron-H gives them as a block list or pattern instead."""
    if _find(cfg, "num_layers") is None:
        for key in ("layers_block_type", "hybrid_override_pattern"):
            if isinstance(cfg.get(key), (list, str)) and cfg[key]:
                return len(cfg[key])
    return _get(cfg, "num_layers")


def _head_dim(cfg: Config, hidden: int, heads: int, floor: bool = False) -> int:
    found = _find(cfg, "head_dim")
    if found is not None:
        return _check_int(found[0], found[1], "head_dim")
    if hidden % heads and floor and hidden >= heads:
        return hidden // heads
    if hidden % heads:
        raise ConfigError(f"num_attention_heads: {heads} does not divide hidden_size={hidden} and no head_dim "
                          "is given")
    return hidden // heads


def _kv_heads(cfg: Config, heads: int) -> int:
    if cfg.get("multi_query_attention") and cfg.get("multi_query_group_num"):  # ChatGLM
        return _check_int("multi_query_group_num", cfg["multi_query_group_num"], "num_kv_heads")
    return _get(cfg, "num_kv_heads", heads)


def _activation(cfg: Config, family: Family) -> str:
    for key in (family.activation_key, "hidden_act", "hidden_activation", "activation_function", "activation"):
        if isinstance(cfg.get(key), str):
            return cfg[key]
    return "silu"


# ---- MoE ------------------------------------------------------------------------
def _moe(cfg: Config, f: dict[str, Any], family: Family) -> None:
    """Routed experts, shared experts and which layers are MoE, from whichever keys
    the family uses: ``mlp_only_layers`` + ``decoder_sparse_step`` (Qwen-MoE),
    ``first_k_dense_replace`` + ``moe_layer_freq`` (DeepSeek, GLM-4.5, Kimi K2), an
    explicit set from the family step (Llama 4, ERNIE 4.5)."""
    experts = _opt(cfg, "num_experts")
    if experts is None or f.pop("_dense", False):  # _dense: the family step found the MoE switched off
        return
    n = f["num_layers"]
    top_k = 0 if family.routing_may_be_unset and _find(cfg, "experts_per_token") is None \
        else _get(cfg, "experts_per_token")
    width = f.pop("_expert_width", None) or _opt(cfg, "expert_intermediate_size") or f["intermediate_size"]
    if width is None:
        _get(cfg, "expert_intermediate_size")  # raises: missing
    shared_width = f.pop("_shared_width", None) or _opt(cfg, "shared_expert_intermediate_size")
    n_shared = 1 if shared_width else (_opt(cfg, "num_shared_experts") or 0)
    if n_shared and not shared_width:
        shared_width = n_shared * width
    f["moe"] = MoESpec(num_experts=experts, experts_per_token=top_k, expert_intermediate_size=width,
                       num_shared_experts=n_shared, shared_expert_intermediate_size=shared_width or 0,
                       shared_expert_gate=family.shared_expert_gate and bool(shared_width),
                       router_bias=family.router_bias, expert_bias=family.expert_bias,
                       router_score_bias=family.router_score_bias, post_norm=family.moe_post_norm,
                       output_bias=f.pop("_moe_output_bias", False), router=not f.pop("_own_router", False),
                       **f.pop("_moe_extras", {}))
    chosen = f.pop("_moe_layer_set", None)
    if chosen is not None:
        f["moe_layers"] = tuple(i in chosen for i in range(n))
        return
    kinds = cfg.get("mlp_layer_types")
    if kinds is not None:
        if not isinstance(kinds, list) or len(kinds) != n or any(k not in ("dense", "sparse") for k in kinds):
            raise ConfigError(f"mlp_layer_types: expected a list of {n} entries, each 'dense' or 'sparse'")
        f["moe_layers"] = tuple(k == "sparse" for k in kinds)
        return
    dense_only = set(_int_list(cfg, "mlp_only_layers"))
    step = _key_int(cfg, "decoder_sparse_step", 1, quantity="num_layers")
    first_dense = _key_int(cfg, "first_k_dense_replace", 0, quantity="num_layers") if \
        cfg.get("first_k_dense_replace") else 0
    freq = _key_int(cfg, "moe_layer_freq", 1, quantity="num_layers")
    f["moe_layers"] = tuple(i not in dense_only and (i + 1) % step == 0 and i >= first_dense and i % freq == 0
                            for i in range(n))


def _mla(cfg: Config, f: dict[str, Any]) -> None:
    """Multi-head latent attention (DeepSeek-V2 sec. 2.1): present when the config has
    ``kv_lora_rank``."""
    if cfg.get("kv_lora_rank") is None:
        return
    rope = _check_int("qk_rope_head_dim", cfg.get("qk_rope_head_dim"), "head_dim")
    nope = _check_int("qk_nope_head_dim", cfg.get("qk_nope_head_dim"), "head_dim")
    f["mla"] = MLASpec(q_lora_rank=_key_int(cfg, "q_lora_rank", None, "rank") or None,
                       kv_lora_rank=_check_int("kv_lora_rank", cfg["kv_lora_rank"], "rank"),
                       qk_rope_head_dim=rope, qk_nope_head_dim=nope,
                       v_head_dim=_check_int("v_head_dim", cfg.get("v_head_dim"), "head_dim"),
                       fused_query_gate=bool(f.pop("_mla_fused_query_gate", False)),
                       rope_key_norm=cfg.get("model_type") in ROPE_KEY_NORM)
    f["head_dim"] = rope + nope
    f["num_kv_heads"] = f["num_attention_heads"]
    overrides = f.pop("_per_layer_mla", None)
    if overrides:  # dots3: layers with their own MLA shape and head count (per_layer_config)
        layer_mla, heads = [f["mla"]] * f["num_layers"], [f["num_attention_heads"]] * f["num_layers"]
        for i, o in overrides.items():
            merged = {**cfg, **o}
            o_rope = _check_int("qk_rope_head_dim", merged.get("qk_rope_head_dim"), "head_dim")
            layer_mla[i] = MLASpec(q_lora_rank=_key_int(merged, "q_lora_rank", None, "rank") or None,
                                   kv_lora_rank=_check_int("kv_lora_rank", merged.get("kv_lora_rank"), "rank"),
                                   qk_rope_head_dim=o_rope,
                                   qk_nope_head_dim=_check_int("qk_nope_head_dim", merged.get("qk_nope_head_dim"),
                                                               "head_dim"),
                                   v_head_dim=_check_int("v_head_dim", merged.get("v_head_dim"), "head_dim"),
                                   rope_key_norm=f["mla"].rope_key_norm)
            heads[i] = _check_int("num_attention_heads", merged.get("num_attention_heads"), "num_attention_heads")
        f["layer_mla"], f["layer_attention_heads"] = tuple(layer_mla), tuple(heads)
    if cfg.get("num_nextn_predict_layers"):
        f["notes"] = tuple(f.get("notes", ())) + (
            f"the checkpoint's {cfg['num_nextn_predict_layers']} multi-token-prediction layer(s) are not counted "
            "(transformers does not build them)",)


ROPE_KEY_NORM = frozenset({"dots3_note_text"})
"""MLA families with an RMSNorm on the shared rope key (dots3 ``k_rope_only_layernorm``)."""


# ---- the generic reader -----------------------------------------------------------
def _fields(cfg: Config, family: Family, name: str, hub_id: str | None) -> dict[str, Any]:
    hidden = _get(cfg, "hidden_size")
    heads = 1 if family.attention_free else _get(cfg, "num_attention_heads")
    num_layers = _layer_count(cfg)
    found = _find(cfg, "intermediate_size")
    widths: tuple[int, ...] = ()
    if found is not None and isinstance(found[1], list):
        widths = tuple(_check_int(found[0], w, "intermediate_size") for w in found[1])
        if len(widths) != num_layers:
            raise ConfigError(f"{found[0]}: expected {num_layers} entries (one per layer), got {len(widths)}")
        intermediate = max(widths)
    elif found is not None:
        intermediate = _check_int(found[0], found[1], "intermediate_size")
    elif family.intermediate_default is not None:
        intermediate = family.intermediate_default(hidden)
    else:
        intermediate = None
    layer_types = () if family.adjust is not None and _has_linear_layers(cfg) else _layer_types(cfg, num_layers)
    f: dict[str, Any] = dict(
        name=name, hub_id=hub_id, model_type=cfg["model_type"], num_layers=num_layers, hidden_size=hidden,
        num_attention_heads=heads, num_kv_heads=1 if family.attention_free else _kv_heads(cfg, heads),
        head_dim=1 if cfg.get("kv_lora_rank") is not None or family.attention_free
        else _head_dim(cfg, hidden, heads, family.head_dim_floor),
        intermediate_size=intermediate, layer_intermediate_sizes=widths,
        vocab_size=_get(cfg, "vocab_size"),
        max_position_embeddings=_get(cfg, "max_position_embeddings", 2048),
        tie_word_embeddings=_bool(cfg, "tie_word_embeddings", family.tied_default),
        norm=family.norm, norm_bias=family.norm_bias, norms_per_layer=family.norms_per_layer,
        final_norm=family.final_norm, embedding_norm=family.embedding_norm, parallel_block=family.parallel_block,
        qk_norm=family.qk_norm if family.qk_norm_key is None or _bool(cfg, family.qk_norm_key, False) else "none",
        attention_qkv_bias=_flag(cfg, family.qkv_bias), attention_out_bias=_flag(cfg, family.out_bias),
        attention_sinks=family.sinks, mlp_gated=family.mlp_gated, mlp_bias=_flag(cfg, family.mlp_bias),
        hidden_act=_activation(cfg, family), learned_position_embeddings=family.learned_positions,
        sinusoidal_positions=family.sinusoidal_positions, sdpa_supported=family.sdpa,
        position_embedding_offset=family.position_offset, alibi=family.alibi, head_bias=family.head_bias,
        mlp_activation_params=family.mlp_activation_params, sub_norms=family.sub_norms,
        attention_gate=family.attention_gate, attention_gate_bias=family.attention_gate_bias,
        attention_lambdas=family.attention_lambdas,
        dtype=_dtype(cfg), quantization_json=_quantization(cfg), layer_types=layer_types,
        attn_logit_softcapping=cfg.get("attn_logit_softcapping") is not None,
        final_logit_softcapping=cfg.get("final_logit_softcapping") is not None,
        attention_chunk_size=_key_int(cfg, "attention_chunk_size", None, "sliding_window")
        if "chunked_attention" in layer_types else None,
        partial_rotary_factor=_rotary_factor(cfg),
    )
    if family.adjust is not None:
        family.adjust(cfg, f)
    _mla(cfg, f)
    _moe(cfg, f, family)
    if f["intermediate_size"] is None:
        if f.get("moe") is None or not all(f["moe_layers"]):
            _get(cfg, "intermediate_size")  # raises: missing
        f["intermediate_size"] = f["moe"].expert_intermediate_size  # every layer is MoE: no dense width
    for private in [k for k in f if k.startswith("_")]:
        del f[private]
    f["sliding_window"] = _sliding(cfg, f["layer_types"])
    f["notes"] = tuple(f.get("notes", ())) + _hybrid_notes(f, cfg.get("model_type"))
    return f


MIXER_NAMES = {"mamba": "Mamba", "mamba2": "Mamba-2", "gated_deltanet": "gated delta-net",
               "short_conv": "short-convolution", "lightning_attention": "lightning-attention",
               "kda": "Kimi-delta-attention", "rg_lru": "RG-LRU", "rwkv": "RWKV", "mlstm": "mLSTM"}


def _hybrid_notes(f: dict[str, Any], model_type: str | None) -> tuple[str, ...]:
    """Say, for hybrid models, what has no analytical model and where the exact answer is."""
    # mixers in layers of their own whose activations are modelled need no note
    mamba1_modelled = model_type in MAMBA1_FAMILIES_WITH_ACTIVATIONS
    mixers = tuple(m for m in f.get("layer_mixers") or ()
                   if m not in MIXERS_WITH_ACTIVATIONS or (m == "mamba" and not mamba1_modelled))
    beside_modelled = model_type in SSM_BESIDE_ATTENTION_WITH_ACTIVATIONS or model_type in SHARED_BLOCK_WITH_ACTIVATIONS
    if f.get("ssm_in_attention_layers") and f.get("ssm") is not None and not beside_modelled:  # Zamba: Mamba there too
        kind = "mamba" if f["ssm"].version == 1 else "mamba2"
        mixers = tuple(kind if m == "attention" else m for m in mixers)
    counts = {m: mixers.count(m) for m in MIXER_NAMES if m in mixers}
    if not counts:
        return ()
    layers = ", ".join(f"{n} {MIXER_NAMES[m]}" for m, n in counts.items())
    return (f"{layers} layer(s): parameters, KV cache and recurrent state are exact; their training and prefill "
            "activations have no analytical model here and are approximated with a transformer layer's formula "
            "(attention + MLP of the same widths); "
            f"measure them with `vramplan trace {f['name']}`",)


def _rotary_factor(cfg: Config) -> float:
    """The fraction of each head that rotates: ``rope_parameters.partial_rotary_factor``,
    ``partial_rotary_factor`` or GPT-NeoX's legacy ``rotary_pct`` (default 0.25 there)."""
    rope = cfg.get("rope_parameters")
    value = rope.get("partial_rotary_factor") if isinstance(rope, dict) else None
    key = "rope_parameters.partial_rotary_factor"
    for k in ("partial_rotary_factor", "rotary_pct"):
        if value is None and cfg.get(k) is not None:
            value, key = cfg[k], k
    if value is None:
        value = 0.25 if cfg.get("model_type") == "gpt_neox" else 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{key}: expected a number in (0, 1], got {value!r}")
    return float(value)


SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(FAMILIES))


FLAT_WRAPPERS: dict[str, str] = {"qwen2_vl": "qwen2_vl_text", "qwen2_5_vl": "qwen2_5_vl_text"}
"""Wrappers whose published config.json keeps the text model's fields at the top level
(Qwen2-VL, Qwen2.5-VL as released; transformers >= 4.50 re-saves them under
``text_config``): the outer config is read as the text config of that type."""


DECODERS_WITH_TOWERS = frozenset({"git", "whisper"})
"""Decoder families whose checkpoint holds its own encoder beside the decoder (GIT's image
encoder, in its causal-LM class too; Whisper's audio encoder): read like a wrapper's
text model, the encoder counted as its tower."""

PATCH_PROJECTING_WRAPPERS = frozenset({"fuyu"})
"""Wrappers with no vision encoder: a linear layer projects each flattened image patch
into the decoder (Fuyu ``vision_embed_tokens``)."""


def _patch_input(cfg: Config) -> int:
    """Elements of one flattened image patch: ``patch_size^2 x num_channels``."""
    return _key_int(cfg, "patch_size", 30, "hidden_size") ** 2 * _key_int(cfg, "num_channels", 3, "hidden_size")


def text_config(cfg: Config) -> Config:
    """The text model's config: ``cfg`` itself, or its nested ``text_config`` (Gemma 3,
    Llava-style multimodal checkpoints). The inner config inherits the outer dtype and
    quantization when it has none, and the outer ``tie_word_embeddings`` (the wrapper
    decides tying; its class default when the outer config omits it)."""
    if cfg.get("model_type") in FAMILIES:
        return cfg
    inner = cfg.get("text_config")
    flat = FLAT_WRAPPERS.get(str(cfg.get("model_type")))
    if flat is not None and not isinstance(inner, dict) and _find(cfg, "hidden_size") is not None:
        return {**cfg, "model_type": flat}
    if isinstance(inner, dict) and inner.get("model_type"):
        merged = dict(inner)
        for key in ("torch_dtype", "dtype", "quantization_config"):
            if key in cfg and key not in merged:
                merged[key] = cfg[key]
        outer_tie = cfg.get("tie_word_embeddings")
        if outer_tie is None and cfg.get("model_type") in WRAPPER_TIED_DEFAULT | WRAPPER_UNTIED_DEFAULT:
            outer_tie = cfg.get("model_type") in WRAPPER_TIED_DEFAULT
        if outer_tie is not None:
            merged["tie_word_embeddings"] = outer_tie
        return merged
    return cfg


def complete_config(cfg: Config) -> Config:
    """``cfg`` with the fields it omits filled the way transformers fills them: through
    ``AutoConfig`` when transformers is installed and knows the type (never for
    ``auto_map`` remote-code configs, which are read from their keys alone); else
    unchanged. A config transformers refuses is returned unchanged, so the reader's
    own checks name what is wrong."""
    import importlib.util

    mtype = cfg.get("model_type")
    if not isinstance(mtype, str) or "auto_map" in cfg or importlib.util.find_spec("transformers") is None:
        return cfg
    try:
        import logging
        import warnings

        from transformers import AutoConfig
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except Exception:  # noqa: BLE001 - a broken install reads like no install
        return cfg
    if mtype not in CONFIG_MAPPING_NAMES:
        return cfg
    kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = AutoConfig.for_model(mtype, **kwargs).to_dict()
    except Exception:  # noqa: BLE001 - transformers' own validation; ours names the field
        return cfg
    finally:
        logger.setLevel(level)
    merged = {**full, **cfg}
    for key in ("text_config",):
        if isinstance(full.get(key), dict) and isinstance(cfg.get(key), dict):
            merged[key] = {**full[key], **cfg[key]}
    return merged


def spec_from_config(cfg: Config, name: str = "model", hub_id: str | None = None, *,
                     complete: bool = True) -> ModelSpec:
    """Build a :class:`ModelSpec` from a parsed config.json. ``complete``: fill omitted
    fields through transformers' ``AutoConfig`` when it is installed
    (:func:`complete_config`); the family defaults table fills them otherwise."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"config.json: expected a JSON object, got {type(cfg).__name__}")
    for outer in (cfg, cfg.get("text_config")):
        if isinstance(outer, dict) and outer.get("model_type") is not None and not isinstance(outer["model_type"], str):
            raise ConfigError(f"model_type: expected a string, got {outer['model_type']!r}")
    _check_layer_count(cfg)
    if isinstance(cfg.get("text_config"), dict):
        _check_layer_count(cfg["text_config"])
    if complete:
        cfg = complete_config(cfg)
    from vramplan.model import encoder_decoder

    if encoder_decoder.reads(cfg):
        return encoder_decoder.spec_from_config(cfg, name, hub_id)
    wrapper = cfg if cfg.get("model_type") not in FAMILIES or cfg.get("model_type") in DECODERS_WITH_TOWERS \
        else None
    whole = cfg
    cfg = text_config(cfg)
    mtype = cfg.get("model_type")
    if not mtype:
        raise ConfigError("model_type: missing from config.json")
    family = FAMILIES.get(mtype) if isinstance(mtype, str) else None
    if family is None:
        raise UnreadModelTypeError(
            f"model_type: {mtype!r} is not supported by the analytical reader (see docs/architectures.md); "
            "`vramplan trace` measures any type transformers builds (pip install 'vramplan[exact]'), or describe "
            "it with layers hidden heads kv_heads intermediate vocab, or give a parameter count "
            "such as 7B", fields=("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"),
            config=whole, name=name)
    cfg = {**family.defaults, **cfg}
    if family.prepare is not None:
        cfg = family.prepare(cfg)
    try:
        fields = _fields(cfg, family, name, hub_id)
        if wrapper is not None:
            from vramplan.model.towers import read_towers

            fields.update(_draft_fields(wrapper, fields))
            fields["towers"], uncounted = read_towers(wrapper, fields["hidden_size"])
            if wrapper.get("model_type") in PATCH_PROJECTING_WRAPPERS:
                fields["image_patch_input"] = _patch_input(wrapper)
                fields["notes"] = fields["notes"] + (
                    "image patches are projected straight into the decoder (vision_embed_tokens, counted); the "
                    "tokens an image adds are not modelled: add them to the context",)
            if uncounted:
                fields["notes"] = fields["notes"] + (
                    f"the checkpoint's {' and '.join(uncounted)} tower(s) are not counted: parameters, weights and "
                    "activations are those of the text model"
                    + (" and its vision tower" if fields["towers"] else " alone"),)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, ConfigError):
            raise
        # A field of the wrong JSON type that the reader did not check itself.
        raise ConfigError(f"config.json (model_type {mtype!r}): a field has the wrong type or size "
                          f"({str(exc)[:120]})") from None
    return ModelSpec(**fields)


DRAFT_WRAPPERS = frozenset({"gemma4_assistant", "gemma4_unified_assistant"})
"""Gemma 4 assistants: draft models that attend to the target model's KV cache."""


def _draft_fields(wrapper: Config, fields: dict[str, Any]) -> dict[str, Any]:
    """A Gemma 4 assistant's projections to and from its target model and its
    cross-model KV sharing (every layer reads the target's cache:
    ``num_kv_shared_layers`` equals the layer count in its config class)."""
    if wrapper.get("model_type") not in DRAFT_WRAPPERS:
        return {}
    n = fields["num_layers"]
    out = {"draft_backbone_hidden_size": _check_int("backbone_hidden_size", wrapper.get("backbone_hidden_size"),
                                                    "hidden_size"),
           "kv_shared_layers": (True,) * n,
           "notes": tuple(fields.get("notes", ())) + (
               "a draft model that reads its target model's KV cache (no cache of its own); the target's "
               "estimate holds that cache",)}
    if _bool(wrapper, "use_ordered_embeddings", False):
        out["draft_centroids"] = _check_int("num_centroids", wrapper.get("num_centroids"), "vocab_size")
    return out


def _check_layer_count(cfg: Config) -> None:
    """Bound the layer count before anything sizes per-layer lists with it (a config
    with 10**12 layers must not allocate them, in this reader or in ``AutoConfig``)."""
    for key in KEYS["num_layers"]:
        value = cfg.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                and value > v.LAYERS_MAX:
            raise ConfigError(f"{key}: expected at most {v.LAYERS_MAX:,}, got {value!r}")


def load_config_file(path: str | Path) -> Config:
    """Read config.json from a file or from a directory holding one: a regular file of
    at most 16 MiB, strict JSON numbers, bounded nesting (:mod:`vramplan.safe_json`)."""
    from vramplan import safe_json

    p = Path(path)
    try:
        is_dir = p.is_dir()
    except OSError as exc:
        raise ConfigError(f"{str(path)[:200]}: cannot read ({exc.strerror})") from None
    if is_dir:
        p = p / "config.json"
        if not p.is_file():
            raise ConfigError(f"{str(path)[:200]}: directory holds no config.json")
    return safe_json.load_file(p)


def spec_from_config_file(path: str | Path) -> ModelSpec:
    """:func:`spec_from_config` on a file or directory."""
    cfg = load_config_file(path)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    hub = cfg.get("_name_or_path")
    return spec_from_config(cfg, name=str(path), hub_id=hub if isinstance(hub, str) and hub else None)
