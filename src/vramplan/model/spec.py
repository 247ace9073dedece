"""ModelSpec: the architecture facts that memory depends on, and nothing else.

A ModelSpec is immutable and validated on creation. Readers
(:mod:`vramplan.model.hf_config`, the catalog, command-line flags) build one; every
estimate reads one. Per-layer variation (sliding vs full attention, dense vs MoE
MLP) is stored per layer index so no estimator has to re-derive it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from vramplan import validate as v
from vramplan.errors import ConfigError
from vramplan.model.stored import StoredCheckpoint

NormKind = Literal["rmsnorm", "layernorm"]
QKNormKind = Literal["none", "per_head", "full"]
AttentionKind = Literal["full_attention", "sliding_attention"]


_FIELD_MAX: dict[str, int] = {
    "num_layers": v.LAYERS_MAX, "hidden_size": v.HIDDEN_MAX, "num_attention_heads": v.HEADS_MAX,
    "num_kv_heads": v.HEADS_MAX, "head_dim": v.HIDDEN_MAX, "intermediate_size": v.WIDTH_MAX,
    "vocab_size": v.VOCAB_MAX, "max_position_embeddings": v.LENGTH_MAX, "norms_per_layer": 16,
    "sliding_window": v.LENGTH_MAX, "num_experts": v.EXPERTS_MAX, "experts_per_token": v.EXPERTS_MAX,
    "expert_intermediate_size": v.WIDTH_MAX, "num_shared_experts": v.EXPERTS_MAX,
    "shared_expert_intermediate_size": v.WIDTH_MAX, "q_lora_rank": v.HIDDEN_MAX,
    "kv_lora_rank": v.HIDDEN_MAX, "qk_rope_head_dim": v.HIDDEN_MAX, "qk_nope_head_dim": v.HIDDEN_MAX,
    "v_head_dim": v.HIDDEN_MAX,
}
"""Upper bound of every integer field (see :mod:`vramplan.validate` for the table)."""


def _positive(name: str, value: object, lo: int = 1) -> None:
    v.integer(name, value, lo, _FIELD_MAX[name], error=ConfigError)


@dataclass(frozen=True, kw_only=True)
class MoESpec:
    """Mixture-of-experts facts (Mixtral, Qwen-MoE, DeepSeek, gpt-oss)."""

    num_experts: int
    """Routed experts per MoE layer."""
    experts_per_token: int
    """Experts each token is routed to (top-k)."""
    expert_intermediate_size: int
    """Hidden width of one routed expert's MLP."""
    num_shared_experts: int = 0
    """Experts every token passes through (DeepSeek); 0 when none."""
    shared_expert_intermediate_size: int = 0
    """Width of the shared-expert MLP taken as one MLP (DeepSeek: n_shared x moe width;
    Qwen2-MoE: ``shared_expert_intermediate_size``); 0 when none."""
    shared_expert_gate: bool = False
    """Qwen2-MoE's sigmoid gate (a hidden -> 1 linear) on the shared expert."""
    router_bias: bool = False
    """The router linear carries a bias (gpt-oss)."""
    expert_bias: bool = False
    """Expert projections carry biases (gpt-oss)."""

    def __post_init__(self) -> None:
        _positive("num_experts", self.num_experts)
        _positive("experts_per_token", self.experts_per_token)
        _positive("expert_intermediate_size", self.expert_intermediate_size)
        _positive("num_shared_experts", self.num_shared_experts, 0)
        _positive("shared_expert_intermediate_size", self.shared_expert_intermediate_size, 0)
        for name in ("shared_expert_gate", "router_bias", "expert_bias"):
            v.flag(name, getattr(self, name), error=ConfigError)
        if self.experts_per_token > self.num_experts:
            raise ConfigError(
                f"experts_per_token: expected at most num_experts={self.num_experts}, got {self.experts_per_token}")


@dataclass(frozen=True, kw_only=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V2 paper, sec. 2.1): queries and keys/values
    are projected through low-rank latents; the KV cache holds the latent plus one
    shared rope key per token."""

    q_lora_rank: int | None
    """Rank of the query latent; ``None`` means a plain query projection (V2-Lite)."""
    kv_lora_rank: int
    """Rank of the compressed KV latent (what the cache stores)."""
    qk_rope_head_dim: int
    """Per-head dims that carry rotary position (shared key part is cached)."""
    qk_nope_head_dim: int
    """Per-head dims without rotary position."""
    v_head_dim: int
    """Per-head value dims."""

    def __post_init__(self) -> None:
        if self.q_lora_rank is not None:
            _positive("q_lora_rank", self.q_lora_rank)
        for name in ("kv_lora_rank", "qk_rope_head_dim", "v_head_dim"):
            _positive(name, getattr(self, name))
        _positive("qk_nope_head_dim", self.qk_nope_head_dim, 0)

    @property
    def qk_head_dim(self) -> int:
        return self.qk_rope_head_dim + self.qk_nope_head_dim


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """The architecture of a decoder-only transformer, as memory sees it."""

    name: str
    """Display name (catalog slug, Hub id or path)."""
    model_type: str
    """Hugging Face ``model_type`` ("llama", "qwen3_moe", ...) or ``"custom"``."""
    num_layers: int
    """Decoder blocks."""
    hidden_size: int
    """Residual stream width h."""
    num_attention_heads: int
    """Query heads a."""
    num_kv_heads: int
    """Key/value heads (= heads for MHA, 1 for MQA, between for GQA)."""
    head_dim: int
    """Per-head dims of q/k/v; equals hidden/heads unless the config says otherwise."""
    intermediate_size: int
    """Hidden width of the dense MLP (of the dense layers, in an MoE model)."""
    vocab_size: int
    """Rows of the embedding and of the output head."""
    max_position_embeddings: int
    """Longest context the model was built for."""
    tie_word_embeddings: bool = False
    """Output head shares the embedding matrix."""
    norm: NormKind = "rmsnorm"
    """RMSNorm (weight only) or LayerNorm (weight and bias)."""
    norms_per_layer: int = 2
    """Norm layers inside one block: 2 for pre-norm blocks, 4 for Gemma 2/3 (pre and
    post around attention and MLP)."""
    qk_norm: QKNormKind = "none"
    """RMSNorm on queries and keys: over head_dim (Qwen3, Gemma 3), over the whole
    projection (OLMo 2), or none."""
    attention_qkv_bias: bool = False
    """q/k/v projections carry a bias (Qwen2, GPT-2, GPT-NeoX, gpt-oss)."""
    attention_out_bias: bool = False
    """The attention output projection carries a bias."""
    attention_sinks: bool = False
    """A learned per-head sink logit (gpt-oss)."""
    mlp_gated: bool = True
    """Gated MLP (SwiGLU/GeGLU: gate, up, down) or plain (up, down)."""
    mlp_bias: bool = False
    """MLP projections carry biases (GPT-2, GPT-NeoX)."""
    hidden_act: str = "silu"
    """Activation function name as in the config."""
    learned_position_embeddings: bool = False
    """A learned absolute position table (GPT-2) instead of rotary positions."""
    partial_rotary_factor: float = 1.0
    """Fraction of each head's dims that carry rotary position (GPT-NeoX ``rotary_pct``,
    0.25 in Pythia); 1.0 when the whole head rotates."""
    moe: MoESpec | None = None
    """Mixture-of-experts facts, or ``None`` for a dense model."""
    moe_layers: tuple[bool, ...] = ()
    """Per layer: True when its MLP is the MoE block. Empty for dense models."""
    mla: MLASpec | None = None
    """Multi-head latent attention, or ``None`` for MHA/GQA/MQA."""
    sliding_window: int | None = None
    """Tokens a sliding-window layer attends to; ``None`` when no layer slides."""
    layer_types: tuple[AttentionKind, ...] = ()
    """Per layer: full or sliding attention. Empty means all full."""
    dtype: str = "bf16"
    """The checkpoint's dtype (``torch_dtype`` in config.json)."""
    quantization_json: str = ""
    """The checkpoint's ``quantization_config`` as canonical JSON (kept as text so the
    spec stays hashable); empty when the checkpoint is not quantized."""
    hub_id: str | None = None
    """Hugging Face repo the config came from, when known."""
    notes: tuple[str, ...] = field(default=())
    """What the reader had to assume or leave out (shown to users)."""
    checkpoint: StoredCheckpoint | None = field(default=None, compare=False)
    """The checkpoint's tensor inventory as its file headers give it (safetensors or
    GGUF, :mod:`vramplan.sources`); ``None`` when the model came from a config alone."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim",
                     "intermediate_size", "vocab_size", "max_position_embeddings", "norms_per_layer"):
            _positive(name, getattr(self, name))
        v.text("name", self.name, max_chars=4096, error=ConfigError)
        v.text("model_type", self.model_type, max_chars=200, error=ConfigError)
        if self.hub_id is not None:
            v.text("hub_id", self.hub_id, max_chars=4096, error=ConfigError)
        if self.num_attention_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_key_value_heads: expected a divisor of num_attention_heads={self.num_attention_heads}, "
                f"got {self.num_kv_heads}")
        if self.moe is not None and len(self.moe_layers) != self.num_layers:
            raise ConfigError(f"moe_layers: expected {self.num_layers} entries, got {len(self.moe_layers)}")
        if self.moe is None and any(self.moe_layers):
            raise ConfigError("moe_layers: MoE layers given but no MoE spec")
        if self.layer_types and len(self.layer_types) != self.num_layers:
            raise ConfigError(f"layer_types: expected {self.num_layers} entries, got {len(self.layer_types)}")
        if self.sliding_window is not None:
            _positive("sliding_window", self.sliding_window)
        v.real("partial_rotary_factor", self.partial_rotary_factor, 0, 1, lo_open=True, error=ConfigError)

    # ---- derived facts ----------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def num_moe_layers(self) -> int:
        return sum(self.moe_layers)

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def attention_kind(self) -> str:
        """"MLA", "MHA", "MQA" or "GQA"."""
        if self.mla is not None:
            return "MLA"
        if self.num_kv_heads == self.num_attention_heads:
            return "MHA"
        return "MQA" if self.num_kv_heads == 1 else "GQA"

    @property
    def q_dim(self) -> int:
        """Width of all query heads together (heads x head_dim)."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of all key (or value) heads together (kv_heads x head_dim)."""
        return self.num_kv_heads * self.head_dim

    def attention_kinds(self) -> tuple[AttentionKind, ...]:
        """Per layer: full or sliding attention (all full when the config says nothing)."""
        if self.layer_types:
            return self.layer_types
        if self.sliding_window is not None:
            return ("sliding_attention",) * self.num_layers
        return ("full_attention",) * self.num_layers

    def is_moe_layer(self, index: int) -> bool:
        return bool(self.moe_layers) and self.moe_layers[index]

    @property
    def quantization_config(self) -> dict:
        """The checkpoint's quantization_config as a dict (empty when not quantized)."""
        return json.loads(self.quantization_json) if self.quantization_json else {}
