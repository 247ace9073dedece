"""Models described without a config file: an architecture from a few numbers, or a
bare parameter count (the rough method of counting weights, gradients and optimizer
states only)."""

from __future__ import annotations

from dataclasses import dataclass

from vramplan import validate as v
from vramplan.errors import ConfigError, InputError
from vramplan.intmath import round_up
from vramplan.model.spec import ModelSpec
from vramplan.units import format_params


@dataclass(frozen=True, kw_only=True)
class ParamOnlyModel:
    """A model known only by its parameter count ("7B").

    Enough for weights, gradients and optimizer states (bytes per parameter x
    parameters). Terms that depend on the architecture — activations, KV cache,
    logits, which tensors a quantization format leaves in 16-bit — cannot be computed
    and are reported as missing, never guessed.
    """

    name: str
    total_params: int
    dtype: str = "bf16"

    NEEDS_ARCHITECTURE = ("activations", "kv_cache", "logits", "per-tensor quantization choices", "LoRA adapters")

    def __post_init__(self) -> None:
        if self.total_params <= 0:
            raise InputError(f"parameters: expected a positive count, got {self.total_params}")

    @property
    def display(self) -> str:
        return f"{format_params(self.total_params)} parameters (no architecture)"


MLP_CHOICES = ("gated", "plain")
"""Gated (SwiGLU: gate, up, down) or plain (up, down) MLPs."""
NORM_CHOICES = ("rmsnorm", "layernorm")
BIAS_CHOICES = ("none", "qkv", "attention", "all")
"""Which linear layers carry biases: none (Llama), q/k/v only (Qwen2), all attention
projections, or every linear layer (GPT-2, GPT-NeoX)."""
POSITION_CHOICES = ("rotary", "alibi", "learned")


def custom_spec(*, layers: int, hidden: int, heads: int, kv_heads: int | None = None,
                intermediate: int | None = None, vocab: int = 32000, head_dim: int | None = None,
                max_positions: int = 4096, tied: bool = False, mlp: str = "gated",
                experts: int | None = None, experts_per_token: int | None = None,
                expert_intermediate: int | None = None, dtype: str = "bf16",
                norm: str = "rmsnorm", bias: str = "none", parallel_block: bool = False,
                position: str = "rotary", activation: str | None = None,
                name: str = "custom") -> ModelSpec:
    """A decoder from flags; by default Llama-style (RMSNorm, gated SiLU MLP, no biases,
    rotary positions, sequential blocks, untied head).

    Structural switches describe other layouts exactly: ``mlp="plain"`` (a plain
    up/down MLP, GELU by default), ``norm="layernorm"`` (LayerNorm with bias),
    ``bias`` (:data:`BIAS_CHOICES`), ``parallel_block`` (attention and MLP read one
    norm: one norm per block), ``position`` (rotary, ALiBi: no parameters, or a
    learned table of ``max_positions`` rows), ``tied`` (head shares the embedding).
    Falcon-7B is ``layers=32, hidden=4544, heads=71, kv_heads=1,
    intermediate=18176, vocab=65024, mlp="plain", norm="layernorm",
    parallel_block=True, tied=True``.

    ``intermediate`` defaults to Llama's rule for gated MLPs (2/3 x 4h rounded up to a
    multiple of 256) and to 4h for plain ones. ``experts`` makes every layer an MoE
    layer (Mixtral-style) whose experts have width ``expert_intermediate`` (default
    ``intermediate``).
    """
    from vramplan.model.spec import MoESpec

    for field, value, hi in (("layers", layers, v.LAYERS_MAX), ("hidden", hidden, v.HIDDEN_MAX),
                             ("heads", heads, v.HEADS_MAX)):
        v.integer(field, value, 1, hi)
    for field, value, choices in (("mlp", mlp, MLP_CHOICES), ("norm", norm, NORM_CHOICES),
                                  ("bias", bias, BIAS_CHOICES),
                                  ("position", position, POSITION_CHOICES)):
        if value not in choices:
            raise InputError(f"{field}: expected one of {', '.join(choices)}, got {value!r}")
    if experts_per_token is not None and not experts:
        raise InputError(f"experts_per_token {experts_per_token}: given without experts (a dense model "
                         "routes no tokens); add experts N or drop it", fields=("experts_per_token", "experts"))
    if head_dim is None:
        if hidden % heads:
            raise InputError(f"heads: {heads} does not divide hidden {hidden}; give head_dim",
                             fields=("hidden", "head_dim"))
        head_dim = hidden // heads
    gated = mlp == "gated"
    if intermediate is None:
        intermediate = round_up(8 * hidden // 3, 256) if gated else 4 * hidden
    moe = None
    moe_layers: tuple[bool, ...] = ()
    if experts:
        moe = MoESpec(num_experts=experts, experts_per_token=experts_per_token or 2,
                      expert_intermediate_size=expert_intermediate or intermediate)
        moe_layers = (True,) * layers
    try:
        return ModelSpec(name=name, model_type="custom", num_layers=layers, hidden_size=hidden,
                         num_attention_heads=heads, num_kv_heads=kv_heads or heads, head_dim=head_dim,
                         intermediate_size=intermediate, vocab_size=vocab, max_position_embeddings=max_positions,
                         tie_word_embeddings=tied, mlp_gated=gated, moe=moe, moe_layers=moe_layers, dtype=dtype,
                         norm=norm, norms_per_layer=1 if parallel_block else 2, parallel_block=parallel_block,
                         attention_qkv_bias=bias != "none", attention_out_bias=bias in ("attention", "all"),
                         mlp_bias=bias == "all", alibi=position == "alibi",
                         learned_position_embeddings=position == "learned",
                         hidden_act=activation or ("silu" if gated else "gelu"))
    except ConfigError as exc:
        raise InputError(str(exc).replace("num_key_value_heads", "kv_heads"), fields=("kv_heads",)) from None
