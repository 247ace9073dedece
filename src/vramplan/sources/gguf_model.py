"""A GGUF file's architecture metadata as a config.json, read by the config readers.

llama.cpp's converter (``convert_hf_to_gguf.py``) writes each config field under a key
of ``gguf-py/gguf/constants.py`` (``Keys.LLM``); this module maps them back, family
by family, so :func:`vramplan.model.hf_config.spec_from_config` builds the spec the
same way it does for the original checkpoint. Facts the metadata does not carry
are read from the tensor table: a tied head (no ``output.weight``), q/k/v biases,
per-head q/k norms, the vocabulary (rows of ``token_embd``).
"""

from __future__ import annotations

from vramplan.errors import ConfigError
from vramplan.sources.gguf_header import ArrayLength, GgufHeader

ARCH_TO_MODEL_TYPE: dict[str, str] = {
    # general.architecture -> transformers model_type
    "llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3", "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe", "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3_text", "phi3": "phi3",
    "olmo2": "olmo2", "gpt-oss": "gpt_oss",
}


def _get(meta: dict, key: str, default=None, *, required: bool = False):
    value = meta.get(key, default)
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        value = max(value)  # per-layer arrays (head counts, FFN widths): the widest layer
    if required and value is None:
        raise ConfigError(f"GGUF metadata: {key} missing (needed to build the architecture)")
    return value


def config_from_gguf(header: GgufHeader, where: str) -> dict:
    """A config.json-shaped dict from a GGUF header."""
    meta = header.metadata
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise ConfigError(f"{where}: GGUF metadata: general.architecture missing or not a string")
    model_type = ARCH_TO_MODEL_TYPE.get(arch)
    names = {t.name: t for t in header.tensors}
    if arch == "llama" and _get(meta, "llama.expert_count"):
        model_type = "mixtral"
    if model_type is None:
        raise ConfigError(f"{where}: GGUF architecture {arch!r} is not read yet (read: "
                          f"{', '.join(sorted(ARCH_TO_MODEL_TYPE))}); give its config.json or a Hub id instead")
    a = arch
    hidden = _get(meta, f"{a}.embedding_length", required=True)
    heads = _get(meta, f"{a}.attention.head_count", required=True)
    embd = names.get("token_embd.weight")
    vocab = meta.get(f"{a}.vocab_size") or (embd.shape[0] if embd else None)
    tokens = meta.get("tokenizer.ggml.tokens")
    if vocab is None and tokens is not None:
        vocab = tokens.length if isinstance(tokens, ArrayLength) else len(tokens)
    if vocab is None:
        raise ConfigError(f"{where}: GGUF: no vocabulary size (no {a}.vocab_size, token_embd.weight or tokens)")
    cfg: dict = {
        "model_type": model_type,
        "num_hidden_layers": _get(meta, f"{a}.block_count", required=True),
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": _get(meta, f"{a}.attention.head_count_kv", heads),
        "intermediate_size": _get(meta, f"{a}.feed_forward_length", required=True),
        "vocab_size": vocab,
        "max_position_embeddings": _get(meta, f"{a}.context_length", 2048),
        "tie_word_embeddings": "output.weight" not in names,
        "torch_dtype": "float16",
    }
    key_length = _get(meta, f"{a}.attention.key_length")
    if key_length:
        cfg["head_dim"] = key_length
    window = _get(meta, f"{a}.attention.sliding_window")
    if window:
        cfg["sliding_window"] = window
    experts = _get(meta, f"{a}.expert_count")
    if experts:
        used = _get(meta, f"{a}.expert_used_count", required=True)
        width = _get(meta, f"{a}.expert_feed_forward_length", cfg["intermediate_size"])
        cfg.update(num_local_experts=experts, num_experts=experts, num_experts_per_tok=used,
                   moe_intermediate_size=width)
        shared = _get(meta, f"{a}.expert_shared_feed_forward_length")
        if shared:
            cfg["shared_expert_intermediate_size"] = shared
    if model_type == "gemma3_text":
        pattern = [_get(meta, f"{a}.attention.sliding_window_pattern")]
        if pattern[0]:
            cfg["sliding_window_pattern"] = pattern[0]
    if "blk.0.attn_q.bias" in names and model_type in ("llama", "mistral", "mixtral"):
        cfg["attention_bias"] = True
    return cfg
