"""Read a Hugging Face ``config.json`` into a :class:`ModelSpec`.

Field names and defaults follow each family's ``configuration_*.py`` and
``modeling_*.py`` in ``transformers``; where a family departs from the Llama layout
(biases, extra norms, MoE placement, MLA) the reader for that family says so.
Multimodal checkpoints are read through their ``text_config``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vramplan import validate as v
from vramplan.dtypes import get_dtype
from vramplan.errors import ConfigError, VramplanError
from vramplan.model.spec import MLASpec, MoESpec, ModelSpec

Config = dict[str, Any]


# ---- field access with errors that name the field -------------------------------
def _int(cfg: Config, key: str, default: int | None = None, *aliases: str) -> int:
    for k in (key, *aliases):
        if k in cfg and cfg[k] is not None:
            value = cfg[k]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ConfigError(f"{k}: expected an integer, got {value!r}")
            if value <= 0:
                raise ConfigError(f"{k}: expected a positive integer, got {value!r}")
            return int(value)
    if default is None:
        raise ConfigError(f"{key}: missing from config.json (needed for model_type {cfg.get('model_type')!r})")
    return default


def _opt_int(cfg: Config, key: str) -> int | None:
    return _int(cfg, key) if cfg.get(key) is not None else None


def _bool(cfg: Config, key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _head_dim(cfg: Config, hidden: int, heads: int) -> int:
    if cfg.get("head_dim") is not None:
        return _int(cfg, "head_dim")
    if hidden % heads:
        raise ConfigError(
            f"num_attention_heads: {heads} does not divide hidden_size={hidden} and no head_dim is given")
    return hidden // heads


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


def _layer_types(cfg: Config, num_layers: int) -> tuple[str, ...]:
    types = cfg.get("layer_types")
    if not types:
        return ()
    if not isinstance(types, list) or len(types) != num_layers:
        raise ConfigError(f"layer_types: expected a list of {num_layers} entries")
    out = []
    for t in types:
        if t not in ("full_attention", "sliding_attention"):
            raise ConfigError(f"layer_types: expected 'full_attention' or 'sliding_attention', got {t!r}")
        out.append(t)
    return tuple(out)


def _common(cfg: Config, name: str, hub_id: str | None) -> dict[str, Any]:
    """Fields every Llama-like family spells the same way."""
    hidden = _int(cfg, "hidden_size")
    heads = _int(cfg, "num_attention_heads")
    num_layers = _int(cfg, "num_hidden_layers")
    return dict(
        name=name,
        hub_id=hub_id,
        model_type=cfg["model_type"],
        num_layers=num_layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=_int(cfg, "num_key_value_heads", heads),
        head_dim=_head_dim(cfg, hidden, heads),
        intermediate_size=_int(cfg, "intermediate_size"),
        vocab_size=_int(cfg, "vocab_size"),
        max_position_embeddings=_int(cfg, "max_position_embeddings", 2048),
        tie_word_embeddings=_bool(cfg, "tie_word_embeddings", False),
        hidden_act=str(cfg.get("hidden_act") or cfg.get("hidden_activation") or "silu"),
        dtype=_dtype(cfg),
        quantization_json=_quantization(cfg),
        layer_types=_layer_types(cfg, num_layers),
    )


def _sliding(cfg: Config, fields: dict[str, Any]) -> int | None:
    """The sliding window, when any layer uses it. Configs leave ``sliding_window`` set
    even when ``use_sliding_window`` is false (Qwen2) — then no layer slides."""
    window = cfg.get("sliding_window")
    if window is None or cfg.get("use_sliding_window") is False:
        return None
    if fields.get("layer_types") and "sliding_attention" not in fields["layer_types"]:
        return None
    return _int(cfg, "sliding_window")


# ---- one reader per family ------------------------------------------------------
def _llama(cfg: Config, name: str, hub_id: str | None) -> ModelSpec:
    """Llama, Mistral, Qwen2, Qwen3, Phi-3, OLMo 2, Gemma 1-3 share this layout."""
    f = _common(cfg, name, hub_id)
    mtype = f["model_type"]
    bias = _bool(cfg, "attention_bias", False)
    f["attention_qkv_bias"] = bias or mtype == "qwen2"  # Qwen2 hard-codes q/k/v biases
    f["attention_out_bias"] = bias and mtype != "qwen2"
    f["mlp_bias"] = _bool(cfg, "mlp_bias", False)
    if mtype in ("qwen3", "qwen3_moe", "gemma3_text"):
        f["qk_norm"] = "per_head"
    elif mtype == "olmo2":
        f["qk_norm"] = "full"
    if mtype in ("gemma2", "gemma3_text"):
        f["norms_per_layer"] = 4
    if mtype.startswith("gemma"):
        f["tie_word_embeddings"] = _bool(cfg, "tie_word_embeddings", True)
    if mtype == "gemma3_text" and not f["layer_types"]:
        # Gemma 3: every sliding_window_pattern-th layer is global (default 6).
        pattern = _int(cfg, "sliding_window_pattern", 6)
        f["layer_types"] = tuple("full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                                 for i in range(f["num_layers"]))
    if mtype == "gemma2" and not f["layer_types"]:
        # Gemma 2 alternates: even layers slide, odd layers are global.
        f["layer_types"] = tuple("sliding_attention" if i % 2 == 0 else "full_attention"
                                 for i in range(f["num_layers"]))
    f["sliding_window"] = _sliding(cfg, f)
    return ModelSpec(**f)


def _moe_layers(num_layers: int, is_moe: Callable[[int], bool]) -> tuple[bool, ...]:
    return tuple(bool(is_moe(i)) for i in range(num_layers))


def _mixtral(cfg: Config, name: str, hub_id: str | None) -> ModelSpec:
    f = _common(cfg, name, hub_id)
    f["sliding_window"] = _sliding(cfg, f)
    f["moe"] = MoESpec(num_experts=_int(cfg, "num_local_experts"),
                       experts_per_token=_int(cfg, "num_experts_per_tok"),
                       expert_intermediate_size=f["intermediate_size"])
    f["moe_layers"] = (True,) * f["num_layers"]
    return ModelSpec(**f)


def _qwen_moe(cfg: Config, name: str, hub_id: str | None) -> ModelSpec:
    """Qwen2-MoE and Qwen3-MoE: layer i is sparse when it is not in ``mlp_only_layers``
    and ``(i + 1) % decoder_sparse_step == 0`` (modeling_qwen2_moe.py)."""
    f = _common(cfg, name, hub_id)
    mtype = f["model_type"]
    f["attention_qkv_bias"] = mtype == "qwen2_moe" or _bool(cfg, "attention_bias", False)
    f["attention_out_bias"] = mtype != "qwen2_moe" and _bool(cfg, "attention_bias", False)
    if mtype == "qwen3_moe":
        f["qk_norm"] = "per_head"
    f["sliding_window"] = _sliding(cfg, f)
    step = _int(cfg, "decoder_sparse_step", 1)
    raw_dense = cfg.get("mlp_only_layers")
    dense_only = set(v.integers("mlp_only_layers", raw_dense, 0, v.LAYERS_MAX, error=ConfigError)) \
        if raw_dense not in (None, []) else set()
    shared = v.integer("shared_expert_intermediate_size", cfg.get("shared_expert_intermediate_size") or 0, 0,
                       v.WIDTH_MAX, error=ConfigError)
    f["moe"] = MoESpec(num_experts=_int(cfg, "num_experts"),
                       experts_per_token=_int(cfg, "num_experts_per_tok"),
                       expert_intermediate_size=_int(cfg, "moe_intermediate_size"),
                       num_shared_experts=1 if shared else 0,
                       shared_expert_intermediate_size=int(shared),
                       shared_expert_gate=bool(shared))
    f["moe_layers"] = _moe_layers(f["num_layers"], lambda i: i not in dense_only and (i + 1) % step == 0)
    return ModelSpec(**f)


def _deepseek(cfg: Config, name: str, hub_id: str | None) -> ModelSpec:
    """DeepSeek-V2/V3: MLA attention; layer i is MoE when ``i >= first_k_dense_replace``
    and ``i % moe_layer_freq == 0``. V3's multi-token-prediction layer
    (``num_nextn_predict_layers``) is not part of the model transformers builds and is
    left out, with a note. V3's ``e_score_correction_bias`` is a buffer, not a
    parameter (256 floats a layer), and is not counted."""
    f = _common(cfg, name, hub_id)
    f["head_dim"] = _int(cfg, "qk_rope_head_dim") + _int(cfg, "qk_nope_head_dim")
    f["num_kv_heads"] = f["num_attention_heads"]
    f["attention_qkv_bias"] = _bool(cfg, "attention_bias", False)
    f["attention_out_bias"] = _bool(cfg, "attention_bias", False)
    f["mla"] = MLASpec(q_lora_rank=_opt_int(cfg, "q_lora_rank"), kv_lora_rank=_int(cfg, "kv_lora_rank"),
                       qk_rope_head_dim=_int(cfg, "qk_rope_head_dim"),
                       qk_nope_head_dim=_int(cfg, "qk_nope_head_dim"), v_head_dim=_int(cfg, "v_head_dim"))
    moe_width = _int(cfg, "moe_intermediate_size")
    n_shared = v.integer("n_shared_experts", cfg.get("n_shared_experts") or 0, 0, v.EXPERTS_MAX, error=ConfigError)
    f["moe"] = MoESpec(num_experts=_int(cfg, "n_routed_experts"),
                       experts_per_token=_int(cfg, "num_experts_per_tok"),
                       expert_intermediate_size=moe_width,
                       num_shared_experts=n_shared,
                       shared_expert_intermediate_size=n_shared * moe_width)
    first_dense = v.integer("first_k_dense_replace", cfg.get("first_k_dense_replace") or 0, 0, v.LAYERS_MAX,
                            error=ConfigError)
    freq = _int(cfg, "moe_layer_freq", 1)
    f["moe_layers"] = _moe_layers(f["num_layers"], lambda i: i >= first_dense and i % freq == 0)
    if cfg.get("num_nextn_predict_layers"):
        f["notes"] = (f"the checkpoint's {cfg['num_nextn_predict_layers']} multi-token-prediction layer(s) "
                      "are not counted (transformers does not build them)",)
    return ModelSpec(**f)


def _gpt_oss(cfg: Config, name: str, hub_id: str | None) -> ModelSpec:
    """gpt-oss: GQA with biases and per-head sinks, alternating sliding/full layers,
    every layer MoE with biased router and experts (modeling_gpt_oss.py)."""
    f = _common(cfg, name, hub_id)
    f["attention_qkv_bias"] = f["attention_out_bias"] = _bool(cfg, "attention_bias", True)
    f["attention_sinks"] = True
    f["sliding_window"] = _sliding(cfg, f)
    f["moe"] = MoESpec(num_experts=_int(cfg, "num_local_experts", None, "num_experts"),
                       experts_per_token=_int(cfg, "num_experts_per_tok", None, "experts_per_token"),
                       expert_intermediate_size=f["intermediate_size"], router_bias=True, expert_bias=True)
    f["moe_layers"] = (True,) * f["num_layers"]
    return ModelSpec(**f)


def _gpt2(cfg: Config, name: str, hub_id: str | None) -> ModelSpec:
    """GPT-2: learned positions, LayerNorm with bias, biases everywhere, plain GELU MLP
    of width ``n_inner`` (default 4h), tied head (modeling_gpt2.py)."""
    hidden = _int(cfg, "n_embd", None, "hidden_size")
    heads = _int(cfg, "n_head", None, "num_attention_heads")
    if hidden % heads:
        raise ConfigError(f"n_head: {heads} does not divide n_embd={hidden}")
    return ModelSpec(
        name=name, hub_id=hub_id, model_type="gpt2",
        num_layers=_int(cfg, "n_layer", None, "num_hidden_layers"), hidden_size=hidden,
        num_attention_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
        intermediate_size=_int(cfg, "n_inner", 4 * hidden), vocab_size=_int(cfg, "vocab_size"),
        max_position_embeddings=_int(cfg, "n_positions", 1024, "n_ctx"),
        tie_word_embeddings=_bool(cfg, "tie_word_embeddings", True),
        norm="layernorm", attention_qkv_bias=True, attention_out_bias=True, mlp_gated=False, mlp_bias=True,
        hidden_act=str(cfg.get("activation_function", "gelu_new")), learned_position_embeddings=True,
        dtype=_dtype(cfg), quantization_json=_quantization(cfg))


def _gpt_neox(cfg: Config, name: str, hub_id: str | None) -> ModelSpec:
    """GPT-NeoX / Pythia: LayerNorm with bias, biased q/k/v/o and MLP, plain GELU MLP,
    untied ``embed_out`` head (modeling_gpt_neox.py)."""
    f = _common(cfg, name, hub_id)
    bias = _bool(cfg, "attention_bias", True)
    f.update(norm="layernorm", attention_qkv_bias=bias, attention_out_bias=bias, mlp_gated=False, mlp_bias=True,
             hidden_act=str(cfg.get("hidden_act", "gelu")), partial_rotary_factor=_neox_rotary_factor(cfg))
    return ModelSpec(**f)


def _neox_rotary_factor(cfg: Config) -> float:
    """GPT-NeoX's rotary fraction: ``rope_parameters.partial_rotary_factor``, else the
    legacy ``rotary_pct``, else 0.25 (transformers ``GPTNeoXConfig``)."""
    rope = cfg.get("rope_parameters")
    value = rope.get("partial_rotary_factor") if isinstance(rope, dict) else None
    value = value if value is not None else cfg.get("rotary_pct", 0.25)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"rotary_pct: expected a number in (0, 1], got {value!r}")
    return float(value)


READERS: dict[str, Callable[[Config, str, str | None], ModelSpec]] = {
    "llama": _llama, "mistral": _llama, "qwen2": _llama, "qwen3": _llama, "phi3": _llama, "olmo2": _llama,
    "gemma": _llama, "gemma2": _llama, "gemma3_text": _llama,
    "mixtral": _mixtral,
    "qwen2_moe": _qwen_moe, "qwen3_moe": _qwen_moe,
    "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
    "gpt_oss": _gpt_oss,
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
}
"""``model_type`` -> reader. Multimodal wrappers are read through ``text_config``."""

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(READERS))

FAMILY_DEFAULTS: dict[str, Config] = {
    # Published multimodal configs leave text fields at the config class's defaults
    # (transformers Gemma3TextConfig: google/gemma-3-*-pt omit vocab_size).
    "gemma3_text": {"vocab_size": 262_208, "max_position_embeddings": 131_072, "head_dim": 256,
                    "num_key_value_heads": 4, "sliding_window": 4096, "sliding_window_pattern": 6,
                    "hidden_activation": "gelu_pytorch_tanh", "torch_dtype": "bfloat16"},
}
"""Defaults of a family's ``transformers`` config class, for fields configs omit."""


def text_config(cfg: Config) -> Config:
    """The text model's config: ``cfg`` itself, or its nested ``text_config`` (Gemma 3,
    Llava-style multimodal checkpoints). The outer dtype is inherited when the inner
    config has none."""
    if cfg.get("model_type") in READERS:
        return cfg
    inner = cfg.get("text_config")
    if isinstance(inner, dict) and inner.get("model_type"):
        merged = dict(inner)
        for key in ("torch_dtype", "dtype", "quantization_config"):
            if key in cfg and key not in merged:
                merged[key] = cfg[key]
        return merged
    return cfg


def spec_from_config(cfg: Config, name: str = "model", hub_id: str | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` from a parsed config.json."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"config.json: expected a JSON object, got {type(cfg).__name__}")
    if cfg.get("model_type") is not None and not isinstance(cfg.get("model_type"), str):
        raise ConfigError(f"model_type: expected a name, got {type(cfg.get('model_type')).__name__}")
    cfg = text_config(cfg)
    mtype = cfg.get("model_type")
    if mtype is not None and not isinstance(mtype, str):
        raise ConfigError(f"text_config.model_type: expected a name, got {type(mtype).__name__}")
    cfg = {**FAMILY_DEFAULTS.get(mtype, {}), **cfg}
    if not mtype:
        raise ConfigError("model_type: missing from config.json")
    reader = READERS.get(mtype)
    if reader is None:
        raise ConfigError(
            f"model_type: {mtype!r} is not supported (supported: {', '.join(SUPPORTED_MODEL_TYPES)}); "
            "describe the architecture with --layers --hidden --heads --kv-heads --intermediate --vocab, "
            "or give a parameter count such as 7B")
    _check_layer_count(cfg)
    try:
        return reader(cfg, name, hub_id)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, ConfigError):
            raise
        # A field of the wrong JSON type that a reader did not check itself.
        raise ConfigError(f"config.json (model_type {mtype!r}): a field has the wrong type or size "
                          f"({str(exc)[:120]})") from None


_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def _check_layer_count(cfg: Config) -> None:
    """Bound the layer count before a reader sizes per-layer tuples with it (a config
    with 10**12 layers must not allocate them)."""
    from vramplan.validate import LAYERS_MAX

    for key in _LAYER_COUNT_KEYS:
        value = cfg.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > LAYERS_MAX:
            raise ConfigError(f"{key}: expected an integer from 1 to {LAYERS_MAX:,}, got {value!r}")


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
