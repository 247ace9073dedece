"""Model families as data: how each ``model_type`` departs from the Llama layout.

One generic reader (:mod:`vramplan.model.hf_config`) reads every family. It finds a
quantity under any of the key names configs use for it (:data:`KEYS`) and builds the
block from a family's structural flags (:class:`Family`). A family is a small entry
in :data:`FAMILIES`, not a new reader. Flags follow each family's
``configuration_*.py`` and ``modeling_*.py`` in ``transformers``; the coverage test
(tests/test_architecture_coverage.py) builds every listed type on the meta device
and checks the parameter count to the parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vramplan.intmath import ceil_div, round_up
from vramplan.errors import ConfigError
from vramplan.model.spec import (CompressedAttentionSpec, DeltaNetSpec, FamilyTensor, IndexerSpec, KDASpec, MLSTMSpec,
                                 NormKind, QKNormKind, RGLRUSpec, SharedBlockSpec, SSMSpec)

Config = dict[str, Any]

KEYS: dict[str, tuple[str, ...]] = {
    # quantity -> config keys that hold it, first present wins
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "model_dim", "dim"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads", "attention_heads"),
    "num_kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "n_kv_heads"),
    "head_dim": ("head_dim", "kv_channels"),
    "intermediate_size": ("intermediate_size", "ffn_hidden_size", "ffn_dim", "n_inner", "d_ff",
                          "inner_hidden_size", "ffn_inner_hidden_size", "dff"),
    "vocab_size": ("vocab_size", "padded_vocab_size", "n_vocab"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length",
                                "max_seq_len", "n_ctx", "context_length"),
    "num_experts": ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"),
    "experts_per_token": ("num_experts_per_tok", "experts_per_token", "moe_k", "moe_topk",
                          "num_experts_per_token", "top_k_experts"),
    "expert_intermediate_size": ("moe_intermediate_size", "expert_intermediate_size", "expert_ffn_hidden_size"),
    "shared_expert_intermediate_size": ("shared_expert_intermediate_size", "shared_experts_intermediate_size"),
    "num_shared_experts": ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts"),
}
"""Quantity -> the config keys it goes by (``n_layer`` / ``num_layers`` /
``num_hidden_layers``, ``n_embd`` / ``d_model`` / ``hidden_size``, ...)."""

FlagSource = bool | str
"""A structural flag: a constant, or the config key holding it (``"attention_bias"``)."""


@dataclass(frozen=True, kw_only=True)
class Family:
    """One ``model_type``'s structure. Defaults describe the Llama layout: RMSNorm,
    rotary positions, gated SiLU MLP, no biases, pre-norm blocks with two norms."""

    norm: NormKind = "rmsnorm"
    norm_bias: bool = True
    """LayerNorm with a bias (False: weight-only LayerNorm)."""
    norms_per_layer: int = 2
    final_norm: bool = True
    embedding_norm: bool = False
    parallel_block: bool = False
    qk_norm: QKNormKind = "none"
    qk_norm_key: str | None = None
    """Config key that switches ``qk_norm`` on (``use_qk_norm``); None: always on."""
    qkv_bias: FlagSource = "attention_bias"
    out_bias: FlagSource = "attention_bias"
    mlp_gated: bool = True
    mlp_bias: FlagSource = "mlp_bias"
    learned_positions: bool = False
    sinusoidal_positions: bool = False
    """Fixed sinusoid positions added to the embeddings (CTRL): no table, no rotation."""
    position_offset: int = 0
    alibi: bool = False
    tied_default: bool = False
    """``tie_word_embeddings`` when the config omits it."""
    head_bias: bool = False
    sinks: bool = False
    activation_key: str = "hidden_act"
    intermediate_default: Callable[[int], int] | None = None
    """MLP width from the hidden size when the config gives none (GPT-2: 4h)."""
    mlp_activation_params: int = 0
    sub_norms: bool = False
    attention_gate: str = "none"
    attention_gate_bias: bool = False
    attention_lambdas: bool = False
    shared_expert_gate: bool = False
    router_bias: bool = False
    expert_bias: bool = False
    router_score_bias: bool = False
    moe_post_norm: bool = False
    defaults: Config = field(default_factory=dict)
    """The family's config-class defaults for fields published configs omit (used
    when transformers is not installed; checked against it in the tests)."""
    attention_free: bool = False
    """No attention layer at all (Mamba): head counts are not read."""
    adjust: Callable[[Config, dict[str, Any]], None] | None = None
    """Family-specific step on the fields the generic reader found."""
    sdpa: bool = True
    """transformers' class runs SDPA (False: eager attention only)."""
    prepare: Callable[[Config], Config] | None = None
    """Family-specific rewrite of the config before it is read, as the config class's own
    ``__post_init__`` does (Dory folds its ``mlp`` entries out of ``layer_types``)."""
    routing_may_be_unset: bool = False
    """The config class defaults ``num_experts_per_tok`` to null and transformers still
    builds the model (DeepSeek-V2): read it as unset (0) instead of refusing."""
    head_dim_floor: bool = False
    """Without ``head_dim`` the class takes ``hidden_size // num_attention_heads`` even
    when the heads do not divide the width (GLM-4.5's ``Glm4MoeAttention``); False: such
    a config is refused."""


def config_switch(cfg: Config, key: str, default: bool) -> bool:
    """A true/false switch of the config (``default`` when absent or null); anything
    else is an error naming the key. The one reader of boolean config keys."""
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _four_h(hidden: int) -> int:
    return 4 * hidden


# ---- family-specific steps -------------------------------------------------------
def _gemma2_layers(cfg: Config, f: dict[str, Any]) -> None:
    if not f["layer_types"]:  # even layers slide, odd are global (modeling_gemma2.py)
        f["layer_types"] = tuple("sliding_attention" if i % 2 == 0 else "full_attention"
                                 for i in range(f["num_layers"]))


def _gemma3_layers(cfg: Config, f: dict[str, Any]) -> None:
    if not f["layer_types"]:  # every sliding_window_pattern-th layer is global (default 6)
        pattern = _pos(cfg, ("sliding_window_pattern",), 6)
        f["layer_types"] = tuple("full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                                 for i in range(f["num_layers"]))


def _qwen2_bias(cfg: Config, f: dict[str, Any]) -> None:
    f["attention_qkv_bias"] = True  # Qwen2 hard-codes q/k/v biases, no o_proj bias
    f["attention_out_bias"] = False


def _falcon(cfg: Config, f: dict[str, Any]) -> None:
    """Falcon (modeling_falcon.py): fused qkv with ``multi_query`` (one KV head) unless
    ``new_decoder_architecture`` (then ``num_kv_heads``, two norms ``ln_attn``/``ln_mlp``
    per block); parallel blocks keep one norm; ALiBi or rotary."""
    new_arch = config_switch(cfg, "new_decoder_architecture", False)
    f["intermediate_size"] = _pos(cfg, ("ffn_hidden_size",), 4 * f["hidden_size"])  # FalconConfig.ffn_hidden_size
    if new_arch:
        f["num_kv_heads"] = _pos(cfg, ("num_kv_heads",), f["num_attention_heads"])
        f["norms_per_layer"] = _pos(cfg, ("num_ln_in_parallel_attn",), 2)
    else:
        f["num_kv_heads"] = 1 if config_switch(cfg, "multi_query", True) else f["num_attention_heads"]
        parallel = config_switch(cfg, "parallel_attn", True)
        f["norms_per_layer"] = 1 if parallel else 2
        f["parallel_block"] = bool(parallel)
    if new_arch:
        f["parallel_block"] = True
    bias = config_switch(cfg, "bias", False)
    f.update(attention_qkv_bias=bias, attention_out_bias=bias, mlp_bias=bias, alibi=config_switch(cfg, "alibi", False))


def _bloom(cfg: Config, f: dict[str, Any]) -> None:
    f["intermediate_size"] = 4 * f["hidden_size"]


def _mpt(cfg: Config, f: dict[str, Any]) -> None:
    """MPT: ``expansion_ratio`` x d_model MLP, ``no_bias``, ALiBi (modeling_mpt.py)."""
    f["intermediate_size"] = int(_ratio(cfg, ("expansion_ratio",), 4) * f["hidden_size"])
    bias = not config_switch(cfg, "no_bias", True)
    f.update(attention_qkv_bias=bias, attention_out_bias=bias, mlp_bias=bias, norm_bias=bias)
    attn = cfg.get("attn_config") if isinstance(cfg.get("attn_config"), dict) else {}
    f["alibi"] = bool(attn.get("alibi", True))


def _gptj(cfg: Config, f: dict[str, Any]) -> None:
    """GPT-J / CodeGen: the MLP is ``n_inner`` wide, else 4h (an ``intermediate_size``
    key is not read by these classes)."""
    f["intermediate_size"] = _pos(cfg, ("n_inner",), 4 * f["hidden_size"])
    if cfg.get("rotary_dim"):
        f["partial_rotary_factor"] = min(1.0, _pos(cfg, ("rotary_dim",)) / f["head_dim"])


def _gpt_bigcode(cfg: Config, f: dict[str, Any]) -> None:
    """GPTBigCode (SantaCoder, StarCoder 1): one KV head with ``multi_query`` (default
    true, configuration_gpt_bigcode.py), the MLP ``n_inner`` wide, else 4h."""
    f["num_kv_heads"] = 1 if config_switch(cfg, "multi_query", True) else f["num_attention_heads"]
    f["intermediate_size"] = _pos(cfg, ("n_inner",), 4 * f["hidden_size"])


def _opt(cfg: Config, f: dict[str, Any]) -> None:
    """OPT: ``enable_bias`` everywhere, a final norm only with ``do_layer_norm_before``
    and without ``_remove_final_layer_norm`` (modeling_opt.py). Projections between
    ``word_embed_proj_dim`` and hidden exist only when they differ."""
    bias = config_switch(cfg, "enable_bias", True)
    f.update(attention_qkv_bias=bias, attention_out_bias=bias, mlp_bias=bias)
    f["final_norm"] = config_switch(cfg, "do_layer_norm_before", True) and not cfg.get("_remove_final_layer_norm")


def _stablelm(cfg: Config, f: dict[str, Any]) -> None:
    f["attention_qkv_bias"] = config_switch(cfg, "use_qkv_bias", False)
    f["attention_out_bias"] = False
    if config_switch(cfg, "use_parallel_residual", False):
        f["norms_per_layer"], f["parallel_block"] = 1, True
    if config_switch(cfg, "qk_layernorm", False):
        f["qk_norm"] = "full"


def _starcoder2(cfg: Config, f: dict[str, Any]) -> None:
    bias = config_switch(cfg, "use_bias", True)
    f.update(attention_qkv_bias=bias, attention_out_bias=bias, mlp_bias=bias, norm_bias=bias)


def _phi(cfg: Config, f: dict[str, Any]) -> None:
    if config_switch(cfg, "qk_layernorm", False):
        f["qk_norm"] = "per_head"


def _cohere(cfg: Config, f: dict[str, Any]) -> None:
    if config_switch(cfg, "use_qk_norm", False):
        f["qk_norm"] = "full"


def _olmo(cfg: Config, f: dict[str, Any]) -> None:
    f["norms_per_layer"], f["final_norm"] = 0, False  # OLMo's LayerNorm has no parameters


def _persimmon(cfg: Config, f: dict[str, Any]) -> None:
    if config_switch(cfg, "qk_layernorm", True):
        f["qk_norm"] = "per_head"


def _llama4(cfg: Config, f: dict[str, Any]) -> None:
    """Llama 4 text: MoE every ``interleave_moe_layer_step``-th layer (``moe_layers``),
    each with one shared expert of the expert width; dense layers are
    ``intermediate_size_mlp`` wide; ``use_qk_norm`` is a parameter-free L2 norm."""
    n = f["num_layers"]
    step = _pos(cfg, ("interleave_moe_layer_step",), 1)
    moe_layers = cfg.get("moe_layers")
    if moe_layers is not None and (not isinstance(moe_layers, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in moe_layers)):
        raise ConfigError(f"moe_layers: expected a list of layer indices, got {moe_layers!r}")
    if moe_layers is None:
        moe_layers = list(range(step - 1, n, step))
    f["_moe_layer_set"] = set(moe_layers)
    f["_shared_width"] = f["intermediate_size"]
    f["_expert_width"] = f["intermediate_size"]
    f["intermediate_size"] = _pos(cfg, ("intermediate_size_mlp",), f["intermediate_size"])
    f["qk_norm"] = "none"


def _uniform_per_layer(cfg: Config, key: str) -> Any:
    """A value the config may give per layer (``moe_topk: [8, 8, ...]``) as one value;
    a list whose entries differ is refused, naming the key."""
    value = cfg.get(key)
    if isinstance(value, list):
        if not value or any(v != value[0] for v in value):
            raise ConfigError(f"{key}: expected one value for every layer, got {value!r}")
        return value[0]
    return value


def _hunyuan_v1_moe_config(cfg: Config) -> Config:
    """HunYuan MoE v1 (modeling_hunyuan_v1_moe.py): every layer's MoE block holds
    ``num_experts`` experts and one shared MLP, all ``intermediate_size`` wide (the class
    reads neither ``moe_intermediate_size`` nor ``num_shared_expert``); ``num_experts`` and
    ``moe_topk`` may be given per layer."""
    cfg = {k: v for k, v in cfg.items() if k not in ("moe_intermediate_size", "num_shared_expert")}
    cfg["num_experts"] = _uniform_per_layer(cfg, "num_experts")
    cfg["moe_topk"] = _uniform_per_layer(cfg, "moe_topk")
    if isinstance(cfg.get("intermediate_size"), int):
        cfg["moe_intermediate_size"] = cfg["shared_expert_intermediate_size"] = cfg["intermediate_size"]
    return cfg


def _ernie_moe(cfg: Config, f: dict[str, Any]) -> None:
    """ERNIE 4.5 MoE: MoE in ``[moe_layer_start_index, moe_layer_end_index]`` every
    ``moe_layer_interval`` layers (modeling_ernie4_5_moe.py)."""
    start = _index(cfg, "moe_layer_start_index")
    end = f["num_layers"] - 1 if cfg.get("moe_layer_end_index") in (None, -1) else _index(cfg, "moe_layer_end_index")
    interval = _pos(cfg, ("moe_layer_interval",), 1)
    f["_moe_layer_set"] = {i for i in range(f["num_layers"])
                           if start <= i <= end and (i + 1) % interval == 0}
    bias = config_switch(cfg, "use_bias", False)
    f.update(attention_qkv_bias=bias, attention_out_bias=bias, mlp_bias=bias)


def _ernie(cfg: Config, f: dict[str, Any]) -> None:
    bias = config_switch(cfg, "use_bias", False)
    f.update(attention_qkv_bias=bias, attention_out_bias=bias, mlp_bias=bias)


def _granitemoe(cfg: Config, f: dict[str, Any]) -> None:
    f["_expert_width"] = f["intermediate_size"]
    if cfg.get("shared_intermediate_size"):
        f["_shared_width"] = _pos(cfg, ("shared_intermediate_size",))


def _mixtral_width(cfg: Config, f: dict[str, Any]) -> None:
    f["_expert_width"] = f["intermediate_size"]


def _gpt_oss(cfg: Config, f: dict[str, Any]) -> None:
    f["_expert_width"] = f["intermediate_size"]


def _chatglm(cfg: Config, f: dict[str, Any]) -> None:
    """ChatGLM2/3 (remote code, modeling_chatglm.py): ``add_qkv_bias`` on the fused
    qkv, ``add_bias_linear`` on the output and MLP projections, a final norm when
    ``post_layer_norm``, LayerNorm unless ``rmsnorm``; the ``output_layer`` is its own
    matrix whatever ``tie_word_embeddings`` says (the class never ties it). Rotary
    embeddings turn half of each head (``RotaryEmbedding(kv_channels // 2)``; the rest
    joins them by ``torch.cat``, as transformers' ``glm`` port does)."""
    f["attention_qkv_bias"] = config_switch(cfg, "add_qkv_bias", False)
    f["partial_rotary_factor"] = 0.5
    linear_bias = config_switch(cfg, "add_bias_linear", False)
    f.update(attention_out_bias=linear_bias, mlp_bias=linear_bias, tie_word_embeddings=False)
    f["final_norm"] = config_switch(cfg, "post_layer_norm", True)
    if not config_switch(cfg, "rmsnorm", True):
        f["norm"] = "layernorm"


def _qwen1(cfg: Config, f: dict[str, Any]) -> None:
    """Qwen-1 (remote code, modeling_qwen.py): ``intermediate_size`` counts both MLP
    halves (``w1``, ``w2`` are ``intermediate_size // 2`` wide); ``c_attn`` has a bias,
    nothing else does (``no_bias``); untied ``lm_head``."""
    f["intermediate_size"] //= 2
    f.update(attention_qkv_bias=True, attention_out_bias=False, mlp_bias=False, tie_word_embeddings=False)


def _first_dense(cfg: Config, f: dict[str, Any]) -> None:
    """AFMoE: the first ``num_dense_layers`` layers are dense, the rest MoE."""
    first = _index(cfg, "num_dense_layers")
    f["_moe_layer_set"] = set(range(first, f["num_layers"]))


def _shared_width_key(cfg: Config, f: dict[str, Any]) -> None:
    if cfg.get("shared_intermediate_size"):
        f["_shared_width"] = _pos(cfg, ("shared_intermediate_size",))


def _post_norms(cfg: Config, f: dict[str, Any]) -> None:
    if config_switch(cfg, "use_post_norm", False):  # HyperCLOVA X: norms after attention and MLP too
        f["norms_per_layer"] = 4


# ---- state-space and linear-attention hybrids -------------------------------------
def _first(cfg: Config, keys: tuple[str, ...], default: Any = None) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def _pos(cfg: Config, keys: tuple[str, ...], default: int | None = None) -> int:
    value = _first(cfg, keys, default)
    if value is None:
        raise ConfigError(f"{keys[0]}: missing from config.json (needed for model_type {cfg.get('model_type')!r})")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value <= 0 \
            or value > 10_000_000 or int(value) != value:
        raise ConfigError(f"{keys[0]}: expected a positive integer (at most 10,000,000), got {value!r}")
    return int(value)


def _index(cfg: Config, key: str, default: int = 0) -> int:
    """A layer index or offset: an integer >= 0."""
    value = cfg.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}: expected an integer >= 0, got {value!r}")
    return value


def _ratio(cfg: Config, keys: tuple[str, ...], default: float) -> float:
    """A positive finite multiplier (``expand``, ``expansion_ratio``) of at most 1,000."""
    value = _first(cfg, keys, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1000:
        raise ConfigError(f"{keys[0]}: expected a number in (0, 1000], got {value!r}")
    return float(value)


def _ssm(cfg: Config, hidden: int, version: int) -> SSMSpec:
    """A Mamba mixer from whichever key names the family uses (``state_size`` /
    ``mamba_d_state`` / ``ssm_state_size``, ``expand`` / ``mamba_expand``, ...)."""
    expand = _ratio(cfg, ("expand", "mamba_expand"), 2)
    d_inner = int(expand * hidden)
    if version == 1 and cfg.get("model_type") in ("mamba", "falcon_mamba") and cfg.get("intermediate_size"):
        d_inner = _pos(cfg, ("intermediate_size",))
    dt_rank = _first(cfg, ("time_step_rank", "mamba_dt_rank"), "auto")
    if dt_rank == "auto":
        dt_rank = ceil_div(hidden, 16)
    common = dict(d_inner=d_inner, d_state=_pos(cfg, ("state_size", "mamba_d_state", "ssm_state_size"), 16),
                  d_conv=_pos(cfg, ("conv_kernel", "mamba_d_conv"), 4),
                  conv_bias=bool(_first(cfg, ("use_conv_bias", "mamba_conv_bias"), True)),
                  proj_bias=bool(_first(cfg, ("use_bias", "mamba_proj_bias"), False)))
    if version == 1:
        return SSMSpec(version=1, dt_rank=_pos({"time_step_rank": dt_rank}, ("time_step_rank",)),
                       inner_norms=cfg.get("model_type") == "jamba", **common)
    return SSMSpec(version=2, n_groups=_pos(cfg, ("n_groups", "mamba_n_groups", "mamba_ngroups"), 1),
                   chunk_size=_pos(cfg, ("chunk_size", "mamba_chunk_size"), 256),
                   num_heads=_pos(cfg, ("mamba_n_heads", "mamba_num_heads", "num_heads", "n_mamba_heads")), **common)


def _attention_free(version: int) -> Callable[[Config, dict[str, Any]], None]:
    """Mamba / Mamba-2 / Falcon-Mamba: every layer a mixer and one norm, no MLP."""
    def run(cfg: Config, f: dict[str, Any]) -> None:
        n = f["num_layers"]
        f["ssm"] = _ssm(cfg, f["hidden_size"], version)
        f["layer_mixers"] = ("mamba" if version == 1 else "mamba2",) * n
        f["layer_mlps"] = (False,) * n
        f["intermediate_size"] = f["ssm"].d_inner
    return run


def _mixers_from_layer_types(cfg: Config, f: dict[str, Any], linear: str) -> None:
    """``layer_types`` naming ``linear_attention`` (or ``mamba``) layers: those get the
    ``linear`` mixer, the rest attention; the attention kinds keep full/sliding."""
    types = cfg.get("layer_types")
    if not isinstance(types, list) or len(types) != f["num_layers"]:
        raise ConfigError(f"layer_types: expected a list of {f['num_layers']} entries")
    f["layer_mixers"] = tuple(linear if t in ("linear_attention", "mamba", "conv") else "attention" for t in types)
    f["layer_types"] = tuple("sliding_attention" if t == "sliding_attention" else "full_attention" for t in types)


def _deltanet_layers(cfg: Config, f: dict[str, Any]) -> None:
    """``linear_attention`` layers are gated delta-nets (``linear_*`` keys), the others
    softmax attention, full or sliding (Lara-mini, OLMo-hybrid: no output gate)."""
    _mixers_from_layer_types(cfg, f, "gated_deltanet")
    f["deltanet"] = DeltaNetSpec(num_k_heads=_pos(cfg, ("linear_num_key_heads",)),
                                 num_v_heads=_pos(cfg, ("linear_num_value_heads",)),
                                 head_k_dim=_pos(cfg, ("linear_key_head_dim",)),
                                 head_v_dim=_pos(cfg, ("linear_value_head_dim",)),
                                 conv_kernel=_pos(cfg, ("linear_conv_kernel_dim",)))


def _falcon_h1(cfg: Config, f: dict[str, Any]) -> None:
    """Falcon-H1 (modeling_falcon_h1.py): every layer runs attention and a Mamba-2 mixer
    in parallel, then a gated MLP. The mixer is ``mamba_d_ssm`` wide (else
    ``mamba_expand x hidden``) in ``mamba_n_heads`` heads; its gated RMSNorm exists only
    with ``mamba_rms_norm``; ``in_proj`` has a bias with ``mamba_proj_bias``,
    ``out_proj`` with ``projectors_bias``."""
    h = f["hidden_size"]
    d_inner = _pos(cfg, ("mamba_d_ssm",), int(_ratio(cfg, ("mamba_expand",), 2) * h))
    f["ssm"] = SSMSpec(version=2, d_inner=d_inner, d_state=_pos(cfg, ("mamba_d_state",), 256),
                       d_conv=_pos(cfg, ("mamba_d_conv",), 4), n_groups=_pos(cfg, ("mamba_n_groups",), 1),
                       num_heads=_pos(cfg, ("mamba_n_heads",), 128),
                       chunk_size=_pos(cfg, ("mamba_chunk_size",), 256),
                       conv_bias=config_switch(cfg, "mamba_conv_bias", True),
                       proj_bias=config_switch(cfg, "mamba_proj_bias", False),
                       out_proj_bias=config_switch(cfg, "projectors_bias", False),
                       gated_norm=config_switch(cfg, "mamba_rms_norm", False),
                       norm_before_gate=config_switch(cfg, "mamba_norm_before_gate", True))
    f["layer_mixers"] = ("attention",) * f["num_layers"]
    f["ssm_in_attention_layers"] = True
    f["layer_types"] = ()


ZAMBA_BLOCKS = {"mamba": "mamba", "linear_attention": "mamba", "m": "mamba", "hybrid": "attention", "g": "attention"}
"""Zamba's ``layers_block_type`` entries: Mamba layers and hybrid (shared block + Mamba)
layers, in the names transformers 5 writes and the legacy ones."""


def _zamba(version: int) -> Callable[[Config, dict[str, Any]], None]:
    """Zamba / Zamba2 (modeling_zamba.py, modeling_zamba2.py): ``layers_block_type``
    marks Mamba layers and ``hybrid`` layers; a hybrid layer runs a shared attention +
    MLP block (``num_mem_blocks`` of them, reused in turn) on the hidden state
    concatenated with the input embeddings (``attention_hidden_size`` = 2 x hidden, heads
    ``attention_head_dim`` wide), a ``hidden -> hidden`` linear of its own, then its
    Mamba mixer. Zamba: Mamba-1 in ``n_mamba_heads`` heads (the same tensors split),
    gated MLP; Zamba2: Mamba-2, fused ``gate_up_proj`` with per-layer adapters of
    ``adapter_rank`` (and on q/k/v with ``use_shared_attention_adapter``)."""
    def run(cfg: Config, f: dict[str, Any]) -> None:
        n, h = f["num_layers"], f["hidden_size"]
        blocks = cfg.get("layers_block_type")
        if blocks is None and version == 1:  # ZambaConfig: two Mamba layers, a hybrid, then the period
            period, offset = _pos(cfg, ("attn_layer_period",), 6), _index(cfg, "attn_layer_offset", 4)
            blocks = ["mamba", "mamba", "hybrid"] + ["hybrid" if i % period == offset else "mamba"
                                                     for i in range(n - 3)]
        elif blocks is None and isinstance(cfg.get("hybrid_layer_ids"), list):
            ids = set(cfg["hybrid_layer_ids"])
            blocks = ["hybrid" if i in ids else "mamba" for i in range(n)]
        if not isinstance(blocks, list) or len(blocks) != n or any(b not in ZAMBA_BLOCKS for b in blocks):
            raise ConfigError(f"layers_block_type: expected a list of {n} entries, each 'mamba' "
                              "(or 'linear_attention') or 'hybrid'")
        mamba = "mamba" if version == 1 else "mamba2"
        f["layer_mixers"] = tuple(mamba if ZAMBA_BLOCKS[b] == "mamba" else "attention" for b in blocks)
        f["layer_mlps"] = (False,) * n
        f["layer_types"] = ()
        f["ssm_in_attention_layers"] = True
        f["head_dim"] = _pos(cfg, ("attention_head_dim",), 2 * h // f["num_attention_heads"])
        f["norms_per_layer"] = 1
        if version == 1:
            f["ssm"] = SSMSpec(version=1, d_inner=int(_ratio(cfg, ("mamba_expand",), 2) * h),
                               d_state=_pos(cfg, ("mamba_d_state",), 16), d_conv=_pos(cfg, ("mamba_d_conv",), 4),
                               dt_rank=_pos(cfg, ("mamba_dt_rank",), ceil_div(h, 16)),
                               num_heads=_pos(cfg, ("n_mamba_heads",), 1),
                               conv_bias=config_switch(cfg, "mamba_conv_bias", True),
                               proj_bias=config_switch(cfg, "mamba_proj_bias", False))
        else:
            bias = config_switch(cfg, "add_bias_linear", False)
            f["ssm"] = SSMSpec(version=2, d_inner=int(_ratio(cfg, ("mamba_expand",), 2) * h),
                               d_state=_pos(cfg, ("mamba_d_state",), 64), d_conv=_pos(cfg, ("mamba_d_conv",), 4),
                               n_groups=_pos(cfg, ("mamba_ngroups",), 1), num_heads=_pos(cfg, ("n_mamba_heads",), 8),
                               chunk_size=_pos(cfg, ("chunk_size",), 256),
                               conv_bias=config_switch(cfg, "use_conv_bias", True), proj_bias=bias)
            f["mlp_bias"] = bias
        f["shared_block"] = SharedBlockSpec(
            num_blocks=_pos(cfg, ("num_mem_blocks",), 1), input_size=_pos(cfg, ("attention_hidden_size",), 2 * h),
            adapter_rank=_pos(cfg, ("adapter_rank",), 128) if version == 2 else 0,
            attention_adapters=version == 2 and config_switch(cfg, "use_shared_attention_adapter", False),
            mlp_fused_gate_up=version == 2)
    return run


def _kda(cfg: Config, f: dict[str, Any]) -> None:
    """Kimi Linear / Bailing-hybrid (modeling_kimi_linear.py, modeling_bailing_hybrid.py):
    ``linear_attention`` layers are Kimi delta attention (``linear_num_heads`` x
    ``linear_head_dim``), the others MLA; Kimi's forget and output gates are low-rank
    (rank ``linear_head_dim``), Bailing's full width, and Bailing's MLA layers gate each
    head (``g_proj``)."""
    _mixers_from_layer_types(cfg, f, "kda")
    head_dim = _pos(cfg, ("linear_head_dim",))
    bailing = cfg.get("model_type") == "bailing_hybrid"
    f["kda"] = KDASpec(num_heads=_pos(cfg, ("linear_num_heads",)), head_dim=head_dim,
                       conv_kernel=_pos(cfg, ("linear_conv_kernel_dim", "short_conv_kernel_size"), 4),
                       gate_rank=0 if bailing else head_dim)
    if bailing:
        f["attention_gate"] = "head"


def _recurrent_gemma(cfg: Config, f: dict[str, Any]) -> None:
    """RecurrentGemma (modeling_recurrent_gemma.py): ``block_types`` cycled over the
    layers, ``recurrent`` blocks are RG-LRU, ``attention`` blocks local attention over
    ``attention_window_size`` tokens with a biased o_proj; the gated MLP is
    ``intermediate_size // 2`` wide with biases; half of each head rotates; the logits are
    always soft-capped (``tanh(logits / logits_soft_cap) * logits_soft_cap``)."""
    n = f["num_layers"]
    kinds = cfg.get("block_types")
    if not isinstance(kinds, list) or not kinds or any(k not in ("recurrent", "attention") for k in kinds):
        raise ConfigError("block_types: expected a list of 'recurrent' and 'attention'")
    f["layer_mixers"] = tuple("rg_lru" if kinds[i % len(kinds)] == "recurrent" else "attention" for i in range(n))
    f["layer_types"] = ("sliding_attention",) * n
    f["rg_lru"] = RGLRUSpec(width=_pos(cfg, ("lru_width",), f["hidden_size"]), num_heads=f["num_attention_heads"],
                            conv_kernel=_pos(cfg, ("conv1d_width",), 4))
    f["intermediate_size"] //= 2
    f.update(attention_qkv_bias=config_switch(cfg, "attention_bias", False), attention_out_bias=True, mlp_bias=True)
    f["partial_rotary_factor"] = 0.5
    f["final_logit_softcapping"] = True


def _rwkv(cfg: Config, f: dict[str, Any]) -> None:
    """RWKV-4 (modeling_rwkv.py): every layer an RWKV block (time mixing of
    ``attention_hidden_size``, channel mixing of ``intermediate_size``, else 4 x hidden)
    after its two LayerNorms; block 0 normalises the embeddings first (``pre_ln``)."""
    n = f["num_layers"]
    f["layer_mixers"], f["layer_mlps"], f["layer_types"] = ("rwkv",) * n, (False,) * n, ()
    f["rwkv_attention_size"] = _pos(cfg, ("attention_hidden_size",), f["hidden_size"])


def _xlstm(cfg: Config, f: dict[str, Any]) -> None:
    """xLSTM 7B layout (modeling_xlstm.py): every layer an mLSTM (q/k ``qk_dim_factor`` x
    hidden, v ``v_dim_factor`` x hidden, ``num_heads``) and a gated MLP of
    ``ffn_proj_factor`` x hidden rounded up to ``ffn_round_up_to_multiple_of``, each after
    an RMSNorm; a final norm with ``add_out_norm``."""
    n, h = f["num_layers"], f["hidden_size"]
    bias = config_switch(cfg, "use_bias", False)
    f["mlstm"] = MLSTMSpec(num_heads=_pos(cfg, ("num_heads",), 8), qk_dim=int(h * _ratio(cfg, ("qk_dim_factor",), 0.5)),
                           v_dim=int(h * _ratio(cfg, ("v_dim_factor",), 1.0)), bias=bias)
    f["layer_mixers"], f["layer_types"] = ("mlstm",) * n, ()
    multiple = _pos(cfg, ("ffn_round_up_to_multiple_of",), 64)  # xLSTMConfig.round_up_to_next_multiple_of
    f["intermediate_size"] = int((h * _ratio(cfg, ("ffn_proj_factor",), 2.667) + multiple - 1) // multiple * multiple)
    f["mlp_bias"] = bias
    f["final_norm"] = config_switch(cfg, "add_out_norm", True)


def _lfm3(cfg: Config, f: dict[str, Any]) -> None:
    """LFM3 (modeling_lfm3.py): LFM2's ``conv`` layers beside full and sliding attention,
    the MLP ``intermediate_size`` wide as given, norms after attention and MLP too with
    ``use_sandwich_norm``, a per-head output gate with ``use_attention_gate``."""
    _mixers_from_layer_types(cfg, f, "short_conv")
    f["short_conv_kernel"] = _pos(cfg, ("conv_L_cache",), 3)
    f["short_conv_bias"] = config_switch(cfg, "conv_bias", False)
    f["norms_per_layer"] = 4 if config_switch(cfg, "use_sandwich_norm", False) else 2
    f["attention_gate"] = "head" if config_switch(cfg, "use_attention_gate", False) else "none"


def _deltanet(cfg: Config, f: dict[str, Any]) -> None:
    """Qwen3-Next / Qwen3.5: ``linear_attention`` layers are gated delta-nets, the
    others gated full attention (q_proj doubled for the output gate)."""
    _deltanet_layers(cfg, f)
    f["attention_gate"] = "q_proj"


def _jamba(cfg: Config, f: dict[str, Any]) -> None:
    """Jamba: layer i is attention when ``i % attn_layer_period == attn_layer_offset``,
    else Mamba; MoE when ``i % expert_layer_period == expert_layer_offset``."""
    n = f["num_layers"]
    ap, ep = _pos(cfg, ("attn_layer_period",), 8), _pos(cfg, ("expert_layer_period",), 2)
    ao, eo = _index(cfg, "attn_layer_offset"), _index(cfg, "expert_layer_offset")
    f["layer_mixers"] = tuple("attention" if i % ap == ao else "mamba" for i in range(n))
    f["ssm"] = _ssm(cfg, f["hidden_size"], 1)
    f["_moe_layer_set"] = {i for i in range(n) if i % ep == eo}
    f["_expert_width"] = f["intermediate_size"]


def _bamba(cfg: Config, f: dict[str, Any]) -> None:
    """Bamba: Mamba-2 everywhere except ``attn_layer_indices``."""
    attn = cfg.get("attn_layer_indices") or []
    if not isinstance(attn, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in attn):
        raise ConfigError(f"attn_layer_indices: expected a list of layer indices, got {attn!r}")
    attn = set(attn)
    f["layer_mixers"] = tuple("attention" if i in attn else "mamba2" for i in range(f["num_layers"]))
    f["ssm"] = _ssm(cfg, f["hidden_size"], 2)


def _granite_hybrid(cfg: Config, f: dict[str, Any]) -> None:
    """Granite 4 (GraniteMoeHybrid): ``layer_types`` mamba/attention, Mamba-2 mixers,
    MoE (when ``num_local_experts``) plus a shared MLP of ``shared_intermediate_size``."""
    _mixers_from_layer_types(cfg, f, "mamba2")
    f["ssm"] = _ssm(cfg, f["hidden_size"], 2)
    _granitemoe(cfg, f)
    if not cfg.get("num_local_experts") and cfg.get("shared_intermediate_size"):
        f["intermediate_size"] = int(cfg["shared_intermediate_size"])  # dense: the shared MLP is the MLP


def _lfm2(cfg: Config, f: dict[str, Any]) -> None:
    """LFM2 (modeling_lfm2.py): ``conv`` layers are gated short convolutions, the
    others attention (``layer_types`` or ``full_attn_idxs``); q/k norms per head; the
    final norm is ``embedding_norm``; the MLP width is auto-adjusted like Llama's
    (2/3, times ``block_ffn_dim_multiplier``, rounded up to ``block_multiple_of``)."""
    n = f["num_layers"]
    types = cfg.get("layer_types")
    if isinstance(types, list):
        if len(types) != n:
            raise ConfigError(f"layer_types: expected a list of {n} entries")
        conv = [t == "conv" for t in types]
    else:
        idxs = cfg.get("full_attn_idxs")
        if not isinstance(idxs, list):
            raise ConfigError("full_attn_idxs: expected a list of layer indices (or layer_types)")
        conv = [i not in idxs for i in range(n)]
    f["layer_mixers"] = tuple("short_conv" if c else "attention" for c in conv)
    f["layer_types"] = ()
    f["short_conv_kernel"] = _pos(cfg, ("conv_L_cache",), 3)
    f["short_conv_bias"] = config_switch(cfg, "conv_bias", False)
    if config_switch(cfg, "block_auto_adjust_ff_dim", True):
        width = int(2 * f["intermediate_size"] / 3)
        if cfg.get("block_ffn_dim_multiplier") is not None:
            width = int(_ratio(cfg, ("block_ffn_dim_multiplier",), 1.0) * width)
        step = _pos(cfg, ("block_multiple_of",), 256)
        f["intermediate_size"] = round_up(width, step)


NEMOTRON_H_BLOCKS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}


def _nemotron_h(cfg: Config, f: dict[str, Any]) -> None:
    """Nemotron-H: each layer is one block: Mamba-2 (``M``), attention (``*``), MLP
    (``-``) or MoE (``E``) after one norm (``hybrid_override_pattern`` or
    ``layers_block_type``); plain relu2 MLPs and experts."""
    blocks = cfg.get("layers_block_type")
    if isinstance(blocks, list):
        kinds = ["mamba" if b in ("mamba", "linear_attention") else "attention" if b in ("attention", "full_attention")
                 else b for b in blocks]
    elif isinstance(cfg.get("hybrid_override_pattern"), str):
        kinds = [NEMOTRON_H_BLOCKS.get(c, c) for c in cfg["hybrid_override_pattern"]]
    else:
        raise ConfigError("hybrid_override_pattern: expected a string such as 'M-M*-' (or layers_block_type)")
    bad = [k for k in kinds if k not in NEMOTRON_H_BLOCKS.values()]
    if bad:
        raise ConfigError(f"hybrid_override_pattern: unknown block {bad[0]!r} (expected M, *, - or E)")
    f["num_layers"] = len(kinds)
    f["layer_mixers"] = tuple("mamba2" if k == "mamba" else "attention" if k == "attention" else "none"
                              for k in kinds)
    f["layer_mlps"] = tuple(k in ("mlp", "moe") for k in kinds)
    f["layer_types"] = ()
    f["ssm"] = _ssm(cfg, f["hidden_size"], 2)
    f["_moe_layer_set"] = {i for i, k in enumerate(kinds) if k == "moe"}
    shared = cfg.get("moe_shared_expert_intermediate_size")
    if shared and cfg.get("n_shared_experts"):
        f["_shared_width"] = int(shared) * int(cfg["n_shared_experts"])


def _indexer(cfg: Config, f: dict[str, Any]) -> None:
    """DeepSeek sparse attention (DeepSeek-V3.2, GLM-5): MLA plus a lightning indexer
    (``index_n_heads`` x ``index_head_dim``, ``index_topk``) in every layer, or, with
    GLM-5's ``indexer_types``, in the ``full`` layers only (``shared`` layers reuse the
    previous top-k). Without ``indexer_types`` GLM-5 derives them from
    ``index_topk_pattern`` (``F``/``S``) or ``index_topk_freq`` /
    ``index_skip_topk_offset`` (configuration_glm_moe_dsa.py)."""
    n = f["num_layers"]
    f["indexer"] = IndexerSpec(num_heads=_pos(cfg, ("index_n_heads",)), head_dim=_pos(cfg, ("index_head_dim",)),
                               top_k=_pos(cfg, ("index_topk",)))
    kinds = cfg.get("indexer_types")
    if kinds is None and cfg.get("model_type") == "glm_moe_dsa":
        pattern = cfg.get("index_topk_pattern")
        if isinstance(pattern, str):
            kinds = [{"F": "full", "S": "shared"}.get(c, c) for c in pattern]
        elif pattern is not None:
            kinds = pattern
        else:
            freq = max(_pos(cfg, ("index_topk_freq",), 1), 1)
            offset = _index(cfg, "index_skip_topk_offset", 2)
            kinds = ["full" if max(i - offset + 1, 0) % freq == 0 else "shared" for i in range(n)]
    if kinds is None and "_indexer_layers" in f:  # dots3: the indexed_attention layers
        f["layer_indexers"] = tuple(f.pop("_indexer_layers"))
        return
    if kinds is None:
        return
    if not isinstance(kinds, list) or len(kinds) != n or any(k not in ("full", "shared") for k in kinds):
        raise ConfigError(f"indexer_types: expected a list of {n} entries, each 'full' or 'shared'")
    f["layer_indexers"] = tuple(k == "full" for k in kinds)


def _gemma4(cfg: Config, f: dict[str, Any]) -> None:
    """Gemma 4 text (configuration_gemma4.py, modeling_gemma4.py): ``per_layer_config``
    overrides ``head_dim`` / ``num_key_value_heads`` per layer (by default the full
    layers get ``global_head_dim`` 512 and ``num_global_key_value_heads``); the last
    ``num_kv_shared_layers`` layers reuse the KV of the last earlier layer of their kind
    (no k/v projections, MLP twice as wide with ``use_double_wide_mlp``); with
    ``attention_k_eq_v`` the full layers have no ``v_proj``; per-layer input embeddings
    of ``hidden_size_per_layer_input`` columns per layer."""
    n = f["num_layers"]
    if config_switch(cfg, "enable_moe_block", False):  # Gemma4TextRouter + Gemma4TextExperts beside the MLP
        _pos(cfg, ("num_experts",))
        _pos(cfg, ("top_k_experts",))
        _pos(cfg, ("moe_intermediate_size",))
        f["_moe_layer_set"] = set(range(n))
        f["_moe_extras"] = {"beside_dense_mlp": True, "router_scales": True, "block_norms": 3}
    elif cfg.get("num_experts"):
        raise ConfigError("num_experts: set, but enable_moe_block is false (Gemma 4 builds no experts then); "
                          "remove one of them")
    if not f["layer_types"]:
        f["layer_types"] = tuple("full_attention" if (i + 1) % 6 == 0 or i == n - 1 else "sliding_attention"
                                 for i in range(n))
    per_layer = cfg.get("per_layer_config")
    if per_layer is None:
        override = {"head_dim": _pos(cfg, ("global_head_dim",), 512)}
        if cfg.get("num_global_key_value_heads") is not None and config_switch(cfg, "attention_k_eq_v", False):
            override["num_key_value_heads"] = _pos(cfg, ("num_global_key_value_heads",))
        per_layer = {str(i): override for i, t in enumerate(f["layer_types"]) if t == "full_attention"}
    if not isinstance(per_layer, dict):
        raise ConfigError(f"per_layer_config: expected an object of layer index -> overrides, got {per_layer!r}")
    dims, kv_heads = [f["head_dim"]] * n, [f["num_kv_heads"]] * n
    for key, override in per_layer.items():
        if not str(key).isdigit() or int(key) >= n or not isinstance(override, dict):
            raise ConfigError(f"per_layer_config: expected layer indices below {n} with objects, got {key!r}")
        i = int(key)
        dims[i] = _pos(override, ("head_dim",), dims[i])
        kv_heads[i] = _pos(override, ("num_key_value_heads",), kv_heads[i])
    f["layer_head_dims"], f["layer_kv_heads"] = tuple(dims), tuple(kv_heads)
    shared = _index(cfg, "num_kv_shared_layers")
    if shared > n:
        raise ConfigError(f"num_kv_shared_layers: expected at most num_hidden_layers={n}, got {shared}")
    if shared:
        f["kv_shared_layers"] = tuple(i >= n - shared for i in range(n))
        if config_switch(cfg, "use_double_wide_mlp", False):
            width = f["intermediate_size"]
            f["layer_intermediate_sizes"] = tuple(2 * width if i >= n - shared else width for i in range(n))
    f["attention_k_eq_v"] = config_switch(cfg, "attention_k_eq_v", False)
    size = _index(cfg, "hidden_size_per_layer_input")
    if size:
        f["per_layer_input_size"] = size
        f["per_layer_input_vocab"] = _pos(cfg, ("vocab_size_per_layer_input",), f["vocab_size"])


def _kv_shared_tail(cfg: Config, f: dict[str, Any]) -> None:
    """The last ``num_kv_shared_layers`` layers reuse the keys and values of the last
    earlier layer of their kind (``kv_sharing_modes`` in configuration_gemma3n.py /
    configuration_gemma4.py): no k/v projections, no cache of their own."""
    n = f["num_layers"]
    shared = _index(cfg, "num_kv_shared_layers")
    if shared > n:
        raise ConfigError(f"num_kv_shared_layers: expected at most num_hidden_layers={n}, got {shared}")
    if shared:
        kinds = f["layer_types"] or ("full_attention",) * n
        if not set(kinds[n - shared:]) <= set(kinds[:n - shared]):
            raise ConfigError("num_kv_shared_layers: a shared layer has no earlier layer of its attention kind "
                              "to read keys and values from")
        f["kv_shared_layers"] = tuple(i >= n - shared for i in range(n))


def _gemma3n(cfg: Config, f: dict[str, Any]) -> None:
    """Gemma 3n text (configuration_gemma3n.py, modeling_gemma3n.py): every fifth layer
    full attention, the others sliding; KV sharing in the last ``num_kv_shared_layers``
    layers; per-layer input embeddings; AltUp over ``altup_num_inputs`` streams and a
    rank-``laurel_rank`` LAuReL residual in every layer; ``v_norm`` has no weight."""
    n = f["num_layers"]
    if not f["layer_types"]:
        f["layer_types"] = tuple("full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(n))
    _kv_shared_tail(cfg, f)
    size = _index(cfg, "hidden_size_per_layer_input")
    if size:
        f["per_layer_input_size"] = size
        f["per_layer_input_vocab"] = _pos(cfg, ("vocab_size_per_layer_input",), f["vocab_size"])
    f["altup_inputs"] = _index(cfg, "altup_num_inputs", 4)
    f["laurel_rank"] = _index(cfg, "laurel_rank", 64)
    f["sparse_mlp_layers"] = _activation_sparsity(cfg, n)


def _activation_sparsity(cfg: Config, n: int) -> tuple[bool, ...]:
    """Gemma 3n's ``activation_sparsity_pattern`` (configuration_gemma3n.py): one target
    sparsity per layer, or one for all; absent, 0.95 in the first 10 layers of a model
    deeper than 10 and 0 elsewhere. Per layer: is it above 0?"""
    pattern = cfg.get("activation_sparsity_pattern")
    if pattern is None:
        sparse = 10 if n > 10 else 0
        return tuple(i < sparse for i in range(n))
    values = pattern if isinstance(pattern, list) else [pattern] * n
    if len(values) != n or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1
                               for v in values):
        raise ConfigError(f"activation_sparsity_pattern: expected {n} values in [0, 1] (one per layer), "
                          f"got {pattern!r}")
    return tuple(v > 0 for v in values)


def _mllama(cfg: Config, f: dict[str, Any]) -> None:
    """Mllama text (Llama 3.2 Vision, modeling_mllama.py): the layers in
    ``cross_attention_layers`` cross-attend to the vision states instead of
    self-attending (default every fifth from layer 3); the embedding has 8 rows beyond
    the vocabulary."""
    n = f["num_layers"]
    chosen = cfg.get("cross_attention_layers")
    if chosen is None:
        chosen = [3, 8, 13, 18, 23, 28, 33, 38]  # MllamaTextConfig.__post_init__
    if not isinstance(chosen, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n
                                               for i in chosen):
        raise ConfigError(f"cross_attention_layers: expected a list of layer indices below {n}, got {chosen!r}")
    f["layer_mixers"] = tuple("cross_attention" if i in set(chosen) else "attention" for i in range(n))
    f["embedding_extra_rows"] = 8
    f["notes"] = tuple(f.get("notes", ())) + (
        f"{len(set(chosen))} cross-attention layer(s) attend to the vision states: their cache is fixed by the "
        "images, and a text-only batch skips them in transformers (no activations, no gradients there)",)


def _hyper_connections(cfg: Config, f: dict[str, Any]) -> None:
    f["hyper_connection_streams"] = _pos(cfg, ("hc_mult",), 4)


def _hy_v4(cfg: Config, f: dict[str, Any]) -> None:
    """Hunyuan v4 (configuration_hy_v4.py, modeling_hy_v4.py): MLA with a sink per head
    and a sigmoid output gate (``gate_proj``, heads x ``v_head_dim``); a DSA indexer in
    the ``full`` layers of ``indexer_types`` (default: layer 0 and every fourth from 1);
    hyper-connections over ``hc_mult`` streams; dense first layer (``mlp_layer_types``)."""
    if cfg.get("indexer_types") is None:
        cfg = {**cfg, "indexer_types": ["full" if i == 0 or (i - 1) % 4 == 0 else "shared"
                                        for i in range(f["num_layers"])]}
    _indexer(cfg, f)
    _hyper_connections(cfg, f)


def _axk2(cfg: Config, f: dict[str, Any]) -> None:
    """A.X K2 (modeling_axk2.py): MLA whose ``q_gate_proj`` emits queries and an output
    gate from the query latent, a DSA indexer in every layer, gated RMSNorms of rank
    ``gated_norm_rank``."""
    _indexer(cfg, f)
    f["gated_norm_rank"] = _pos(cfg, ("gated_norm_rank",), 16)
    f["_mla_fused_query_gate"] = True


DOTS3_SLIDING_DEFAULTS = {"num_attention_heads": 64, "num_key_value_heads": 64, "q_lora_rank": 1024,
                          "kv_lora_rank": 1024, "head_dim": 256, "qk_nope_head_dim": 192, "v_head_dim": 128}
"""dots3's sliding-window layer shape when the config names no ``swa_*`` keys
(Dots3NoteTextConfig.__post_init__)."""


def _dots3(cfg: Config, f: dict[str, Any]) -> None:
    """dots3 text (configuration_dots3_note.py, modeling_dots3_note.py): MLA in every
    layer with a norm on the rope key and one sigmoid gate per head (``g_proj``);
    ``indexed_attention`` layers (the first two and every fourth from 1, by default) run
    a DSA indexer, the ``sliding_attention`` layers have their own MLA shape
    (``per_layer_config``, from the ``swa_*`` keys) and no indexer."""
    n = f["num_layers"]
    types = cfg.get("layer_types")
    if types is None:
        types = ["indexed_attention" if i < 2 or i % 4 == 1 else "sliding_attention" for i in range(n)]
        f["layer_types"] = tuple("sliding_attention" if t == "sliding_attention" else "full_attention" for t in types)
    if not isinstance(types, list) or len(types) != n:
        raise ConfigError(f"layer_types: expected a list of {n} entries (num_hidden_layers)")
    per_layer = cfg.get("per_layer_config")
    if per_layer is None:
        sliding = {k: _first(cfg, (f"swa_{k}",), v) for k, v in DOTS3_SLIDING_DEFAULTS.items()}
        sliding["qk_rope_head_dim"] = _first(cfg, ("swa_qk_rope_head_dim",),
                                             _pos(sliding, ("head_dim",)) - _pos(sliding, ("qk_nope_head_dim",)))
        per_layer = {str(i): sliding for i, t in enumerate(types) if t == "sliding_attention"}
    if not isinstance(per_layer, dict):
        raise ConfigError(f"per_layer_config: expected an object of layer index -> overrides, got {per_layer!r}")
    f["_per_layer_mla"] = {}
    for key, override in per_layer.items():
        if not str(key).isdigit() or int(key) >= n or not isinstance(override, dict):
            raise ConfigError(f"per_layer_config: expected layer indices below {n} with objects, got {key!r}")
        f["_per_layer_mla"][int(key)] = override
    f["_indexer_layers"] = [t == "indexed_attention" for t in types]
    f["attention_gate"] = "head"


def _longcat_flash(cfg: Config, f: dict[str, Any]) -> None:
    """LongCat-Flash (modeling_longcat_flash.py): each of the ``num_layers`` blocks holds
    two MLA attention + dense MLP sub-blocks (read as two layers; the cache has one
    layer per sub-block) and one MoE block beside them, whose router also picks among
    ``zero_expert_num`` zero-compute (identity) experts that hold no weights."""
    blocks = _pos(cfg, ("num_layers",), f["num_layers"] // 2)
    f["num_layers"] = 2 * blocks
    f["_moe_layer_set"] = set(range(0, 2 * blocks, 2))
    f["_moe_extras"] = {"beside_dense_mlp": True, "zero_experts": _index(cfg, "zero_expert_num")}
    f["notes"] = tuple(f.get("notes", ())) + (
        "counted as the checkpoint holds it: transformers' LongcatFlashExperts also allocates gate/up "
        "projections for the zero-compute experts, which the checkpoint does not have",)


DEEPSEEK_V4_LAYERS = {"sliding_attention": None, "compressed_sparse_attention": "compressed_sparse_attention",
                      "heavily_compressed_attention": "heavily_compressed_attention"}


def _deepseek_v4(cfg: Config, f: dict[str, Any]) -> None:
    """DeepSeek-V4 (configuration_deepseek_v4.py, modeling_deepseek_v4.py): every layer
    is compressed attention (``layer_types``: sliding-window only, compressed sparse
    (CSA, rate 4, with an indexer) or heavily compressed (HCA, rate 128); default two
    HCA then CSA/HCA alternating), every MLP an MoE (hash-routed in the first layers:
    the same parameters), hyper-connections with residual mixing."""
    n = f["num_layers"]
    rates = cfg.get("compress_rates") or {"compressed_sparse_attention": 4, "heavily_compressed_attention": 128}
    if not isinstance(rates, dict):
        raise ConfigError(f"compress_rates: expected an object of layer type -> rate, got {rates!r}")
    types = cfg.get("layer_types")
    if types is None:
        types = ["heavily_compressed_attention"] * min(n, 2) + [
            "compressed_sparse_attention" if i % 2 else "heavily_compressed_attention" for i in range(max(n - 2, 0))]
    if not isinstance(types, list) or len(types) != n or any(t not in DEEPSEEK_V4_LAYERS for t in types):
        raise ConfigError(f"layer_types: expected {n} entries, each one of {', '.join(DEEPSEEK_V4_LAYERS)}")
    csa = _pos(rates, ("compressed_sparse_attention",), 4)
    layer_rates = tuple(0 if DEEPSEEK_V4_LAYERS[t] is None else _pos(rates, (DEEPSEEK_V4_LAYERS[t],)) for t in types)
    if any(r == csa for t, r in zip(types, layer_rates) if t == "heavily_compressed_attention"):
        raise ConfigError("compress_rates: the heavily compressed rate must differ from the sparse one")
    f["compressed_attention"] = CompressedAttentionSpec(
        head_dim=f["head_dim"], q_lora_rank=_pos(cfg, ("q_lora_rank",)), o_groups=_pos(cfg, ("o_groups",), 8),
        o_lora_rank=_pos(cfg, ("o_lora_rank",), 1024), layer_rates=layer_rates, indexed_rate=csa,
        index_heads=_pos(cfg, ("index_n_heads",), 64), index_head_dim=_pos(cfg, ("index_head_dim",), 128))
    if (f["num_attention_heads"] * f["head_dim"]) % f["compressed_attention"].o_groups:
        raise ConfigError(f"o_groups: expected a divisor of num_attention_heads x head_dim, got {cfg.get('o_groups')}")
    f["layer_mixers"] = ("compressed_attention",) * n
    f["layer_types"] = ()
    f["_moe_layer_set"] = set(range(n))
    f["hyper_connection_streams"] = _pos(cfg, ("hc_mult",), 4)
    f["hyper_connection_residual_mix"] = True
    f["hyper_connection_sinkhorn_iters"] = _pos(cfg, ("hc_sinkhorn_iters",), 20)
    f["notes"] = tuple(f.get("notes", ())) + (
        "compressed attention: the training and prefill activation formula approximates it with a standard "
        "attention layer of the same heads (measure it with `vramplan trace`)",)


def _mimo_v2(cfg: Config, f: dict[str, Any]) -> None:
    """MiMo-V2-Flash (modeling_mimo_v2_flash.py): sliding-window layers have twice the
    KV heads and a learned sink per head; values are ``v_head_dim`` wide; no o_proj
    bias."""
    n = f["num_layers"]
    types = f["layer_types"] or ("full_attention",) * n
    f["layer_kv_heads"] = tuple(2 * f["num_kv_heads"] if t == "sliding_attention" else f["num_kv_heads"]
                                for t in types)
    f["value_head_dim"] = _pos(cfg, ("v_head_dim",), f["head_dim"])
    f["attention_sinks"], f["sinks_on_sliding_layers_only"] = True, True
    f["attention_out_bias"] = False


def _minimax(cfg: Config, f: dict[str, Any]) -> None:
    """MiniMax-01 (modeling_minimax.py): ``linear_attention`` layers are lightning
    attention, the others softmax attention; every MLP is a Mixtral-style MoE."""
    _mixers_from_layer_types(cfg, f, "lightning_attention")
    if "lightning_attention" in f["layer_mixers"]:
        f["lightning_block_size"] = _pos(cfg, ("block_size",), 256)
    _mixtral_width(cfg, f)


def _relu(cfg: Config, f: dict[str, Any]) -> None:
    f["hidden_act"] = "relu"  # CTRL's point-wise FFN hard-codes ReLU (modeling_ctrl.py)


def _gpt_neox_japanese(cfg: Config, f: dict[str, Any]) -> None:
    """GPT-NeoX-Japanese: the MLP is ``hidden x intermediate_multiple_size`` wide; only
    the last layer's attention carries an output bias (``dense_bias``,
    modeling_gpt_neox_japanese.py)."""
    f["intermediate_size"] = int(_ratio(cfg, ("intermediate_multiple_size",), 4) * f["hidden_size"])
    f["out_bias_last_layer_only"] = True


def _modernbert_decoder(cfg: Config, f: dict[str, Any]) -> None:
    """ModernBERT-decoder (modeling_modernbert_decoder.py): LayerNorms with a bias only
    under ``norm_bias``; a GeGLU ``Wi`` of twice ``intermediate_size``; no attention norm
    in layer 0; a prediction head (dense with ``classifier_bias``, norm) before the tied
    ``decoder`` with its ``decoder_bias``."""
    f["norm_bias"] = config_switch(cfg, "norm_bias", False)
    f["head_bias"] = config_switch(cfg, "decoder_bias", True)
    f["head_transform_bias"] = config_switch(cfg, "classifier_bias", False)
    f.update(first_layer_attention_norm=False, head_transform=True)


def _doge(cfg: Config, f: dict[str, Any]) -> None:
    """Doge (modeling_doge.py): dynamic-mask attention (``A``, ``dt_proj``) and two learned
    residual vectors per layer; the CDMoE (``is_moe``: product-key experts) is not read."""
    if config_switch(cfg, "is_moe", False):
        raise ConfigError("is_moe: Doge's CDMoE (product-key expert retrieval) is not read analytically; "
                          "`vramplan trace` measures it")
    f.update(dynamic_mask=True, residual_scales=2, _dense=True,
             memory_unmodelled="Doge's dynamic-mask attention (a query x key mask per head in every layer)")


def _git(cfg: Config, f: dict[str, Any]) -> None:
    f["memory_unmodelled"] = ("GIT's image tokens inside the decoder (CLIP features prepended to the text, "
                              "attended bidirectionally)")


JETMOE_NOTE = (
    "JetMoE's ScatterMoE-style experts (attention and MLP) are estimated with the grouped-experts formulas: "
    "the KV cache (kv_heads x kv_channels per token) is exact, activations are not; a real CPU step of a small "
    "JetMoE held 7-11% more than this estimate in training and 9% more in inference, and the fake-tensor "
    "trace cannot run its data-dependent routing: leave that much headroom")
"""What the JetMoE estimate leaves out, measured with a real CPU run of the step
(``vramplan.trace.run.run_trace(..., real=True)``) on a 2-layer JetMoE (hidden 512,
4 KV heads of 64, 8 experts, top-2), batch 4 x 512 tokens."""


def _jetmoe(cfg: Config, f: dict[str, Any]) -> None:
    """JetMoE (modeling_jetmoe.py): a mixture of attention heads (``num_local_experts``
    query/output experts, ``num_experts_per_tok`` of them per token, each
    ``num_key_value_heads x kv_channels`` wide) over one shared ``kv_proj``; the MLP is
    a gated MoE of the same experts count with one output bias; both MoE blocks add
    the bias to their output."""
    f["attention_experts"] = _pos(cfg, KEYS["num_experts"])
    f["num_attention_heads"] = _pos(cfg, KEYS["experts_per_token"]) * f["num_kv_heads"]
    f["head_dim"] = _pos(cfg, ("kv_channels",))
    f["_expert_width"] = f["intermediate_size"]
    f["_moe_output_bias"] = True
    f["notes"] = (JETMOE_NOTE,)


def _cpmant(cfg: Config, f: dict[str, Any]) -> None:
    """CPM-Ant (modeling_cpmant.py): ``dim_head`` x heads attention without biases, a
    gated GELU MLP ``dim_ff`` wide, weight-only norms; the input embedding holds
    ``prompt_types x prompt_length`` prompt rows beyond the vocabulary, a segment
    embedding and one relative-position bias table (``segment_types^2 +
    position_bias_num_buckets`` rows) serve every layer; the head is its own matrix."""
    segments = _pos(cfg, ("segment_types",), 32)
    f["head_dim"] = _pos(cfg, ("dim_head",), 64)
    f["intermediate_size"] = _pos(cfg, ("dim_ff",), 10240)
    f["prompt_embedding_rows"] = _pos(cfg, ("prompt_types",), 32) * _pos(cfg, ("prompt_length",), 32)
    f["segment_embedding_rows"] = segments
    f["position_bias_rows"] = segments * segments + _pos(cfg, ("position_bias_num_buckets",), 512)
    f.update(tie_word_embeddings=False, hidden_act="gelu", memory_unmodelled=(
        "CPM-Ant's segment and bucketed relative-position bias (a heads x query x key tensor per forward)"))


def _dory_config(cfg: Config) -> Config:
    """DoryConfig.__post_init__: a saved config lists an attention and an ``mlp`` entry per
    layer in ``layer_types`` and counts both in ``num_hidden_layers``; the class keeps
    every other entry and half the count."""
    types = cfg.get("layer_types")
    if isinstance(types, list) and "mlp" in types:
        layers = _pos(cfg, ("num_hidden_layers",))
        return {**cfg, "layer_types": types[::2], "num_hidden_layers": layers // 2}
    return cfg


def _dory(cfg: Config, f: dict[str, Any]) -> None:
    """Dory (modeling_dory.py): L2-normalised blocks without norm weights; each layer
    interpolates its residual with two learned per-channel rates (``lambda_1``,
    ``lambda_2``); attention with an output gate (``gate_proj``) and two head-width scale
    vectors; MLP with two width scale vectors; a per-token logit scale in the head.
    The ``n_recurrent_layers`` middle layers run ``n_recurrent_loops`` times."""
    f.update(norms_per_layer=0, final_norm=False, attention_gate="full", attention_scale_vectors=2,
             mlp_scale_vectors=2, residual_scales=2, head_logit_scale=True, memory_unmodelled=(
                 "Dory's looped recurrent layers (the middle layers run n_recurrent_loops times, with a KV "
                 "cache per loop)"))


def _zaya_config(cfg: Config) -> Config:
    """Zaya's ``layer_types`` say ``hybrid`` (full) or ``hybrid_sliding``: the attention
    kind of each layer (modeling_zaya.py)."""
    types = cfg.get("layer_types")
    if isinstance(types, list):
        kinds = {"hybrid": "full_attention", "hybrid_sliding": "sliding_attention"}
        return {**cfg, "layer_types": [kinds.get(t, t) for t in types]}
    return cfg


def _zaya(cfg: Config, f: dict[str, Any]) -> None:
    """Zaya (modeling_zaya.py): attention whose queries and keys pass a depthwise and a
    grouped causal convolution (``cca_time0``, ``cca_time1``) and a per-KV-head
    temperature, values from two half-width projections; an MoE with an MLP router
    (``router_hidden_size``: down projection, norm, two layers, out to experts + 1 skip
    class, a state scale from layer 1 on); four residual scale/bias vectors around
    attention and around the MLP; a scale and bias on the embeddings."""
    n, h = f["num_layers"], f["hidden_size"]
    heads, kv, d = f["num_attention_heads"], f["num_kv_heads"], f["head_dim"]
    conv = (heads + kv) * d
    r = _pos(cfg, ("router_hidden_size",), 256)
    experts = _pos(cfg, KEYS["num_experts"])
    t0, t1 = _pos(cfg, ("cca_time0",), 2), _pos(cfg, ("cca_time1",), 2)
    rows = [("self_attn.conv_qk_depthwise.weight", "attention", "other", (conv, 1, t0), n),
            ("self_attn.conv_qk_depthwise.bias", "biases", "bias", (conv,), n),
            ("self_attn.conv_qk_grouped.weight", "attention", "other", (conv, d, t1), n),
            ("self_attn.conv_qk_grouped.bias", "biases", "bias", (conv,), n),
            ("self_attn.qk_norm.temp", "attention", "other", (kv,), n),
            ("mlp.gate.down_proj.weight", "router", "linear", (r, h), n),
            ("mlp.gate.down_proj.bias", "biases", "bias", (r,), n),
            ("mlp.gate.router_mlp.norm.weight", "norms", "norm", (r,), n),
            ("mlp.gate.router_mlp.fc.weight", "router", "linear", (r, r), 2 * n),
            ("mlp.gate.router_mlp.fc.bias", "biases", "bias", (r,), 2 * n),
            ("mlp.gate.router_mlp.out_proj.weight", "router", "linear", (experts + 1, r), n),
            ("mlp.gate.router_states_scale", "router", "other", (r,), n - 1)]
    f["family_tensors"] = tuple(FamilyTensor(name=a, component=b, role=c, shape=s, count=k)  # type: ignore[arg-type]
                                for a, b, c, s, k in rows if k) + (
        FamilyTensor(name="input_hidden_states_scale", component="embeddings", role="other", shape=(h,), count=2,
                     per_layer=False),)
    f.update(residual_scales=8, _own_router=True, _expert_width=_pos(cfg, KEYS["expert_intermediate_size"]),
             head_bias=config_switch(cfg, "lm_head_bias", False), memory_unmodelled=(
                 "Zaya's convolved queries and keys (a convolution state beside the KV cache)"))


def _xlnet(cfg: Config, f: dict[str, Any]) -> None:
    """XLNet (modeling_xlnet.py ``XLNetRelativeAttention``): q/k/v/o of ``n_head x d_head``
    stored as ``[d_model, n_head, d_head]`` tensors, a relative-position projection ``r``,
    three head-shaped biases (``r_w_bias``, ``r_r_bias``, ``r_s_bias``) and a segment
    embedding per layer; post-norm LayerNorms; an ``ff_activation`` MLP ``d_inner`` wide
    with biases; a mask embedding; the tied head with its bias (``lm_loss``)."""
    n, h = f["num_layers"], f["hidden_size"]
    f["head_dim"] = _pos(cfg, ("d_head",), 64)
    f["intermediate_size"] = _pos(cfg, ("d_inner",), 4096)
    width = f["num_attention_heads"] * f["head_dim"]
    f["hidden_act"] = cfg.get("ff_activation") if isinstance(cfg.get("ff_activation"), str) else "gelu"
    f["family_tensors"] = (
        FamilyTensor(name="rel_attn.r", component="attention", role="linear", shape=(width, h), count=n),
        FamilyTensor(name="rel_attn.position_biases", component="attention", role="other", shape=(width,),
                     count=3 * n),
        FamilyTensor(name="rel_attn.seg_embed", component="attention", role="other", shape=(2, width), count=n),
        FamilyTensor(name="mask_emb", component="embeddings", role="other", shape=(h,), count=1, per_layer=False))
    f["memory_unmodelled"] = "XLNet's two-stream relative attention and its memory of past segments (mems)"


def _decoder_keys(cfg: Config, target_key: str) -> Config:
    """The decoder stack's fields of a Whisper / TrOCR config under the generic names:
    ``decoder_layers``, ``decoder_attention_heads``, ``decoder_ffn_dim`` and the position
    table's length (``target_key``)."""
    out = dict(cfg)
    for key, generic in (("decoder_layers", "num_hidden_layers"), ("decoder_attention_heads", "num_attention_heads"),
                         ("decoder_ffn_dim", "intermediate_size"), (target_key, "max_position_embeddings")):
        if cfg.get(key) is not None:
            out[generic] = cfg[key]
    for key in ("num_key_value_heads", "head_dim"):
        out.pop(key, None)
    return out


CROSS_ATTENTION_MEMORY = ("the cross-attention over the encoder's output (its keys and values and the encoder's "
                          "forward)")


def _whisper_config(cfg: Config) -> Config:
    return _decoder_keys(cfg, "max_target_positions")


def _whisper(cfg: Config, f: dict[str, Any]) -> None:
    """Whisper's text decoder (modeling_whisper.py ``WhisperDecoder``): pre-norm blocks
    with self- and cross-attention (no bias on ``k_proj``), a learned position table of
    ``max_target_positions``; the audio encoder is read as the audio tower
    (:func:`vramplan.model.towers.read_towers`)."""
    f.update(key_bias=False, decoder_cross_attention=True,
             memory_unmodelled=f"Whisper's {CROSS_ATTENTION_MEMORY}")


def _trocr_config(cfg: Config) -> Config:
    return _decoder_keys(cfg, "max_position_embeddings")


def _trocr(cfg: Config, f: dict[str, Any]) -> None:
    """TrOCR's decoder (modeling_trocr.py): post-norm blocks with self- and
    cross-attention (keys and values from ``cross_attention_hidden_size``), learned
    positions (two extra rows) or sinusoids, an optional embedding LayerNorm; the image
    encoder belongs to the vision-encoder-decoder checkpoint and is not counted."""
    learned = config_switch(cfg, "use_learned_position_embeddings", True)
    f.update(learned_position_embeddings=learned, sinusoidal_positions=not learned,
             position_embedding_offset=2 if learned else 0,
             embedding_norm=config_switch(cfg, "layernorm_embedding", True), decoder_cross_attention=True,
             cross_attention_kv_input=_pos(cfg, ("cross_attention_hidden_size",), f["hidden_size"]),
             memory_unmodelled=f"TrOCR's {CROSS_ATTENTION_MEMORY}")
    f["notes"] = ("the decoder of a vision encoder-decoder: the image encoder is not counted",)


def _bert_generation(cfg: Config, f: dict[str, Any]) -> None:
    """BertGeneration (modeling_bert_generation.py): a BERT encoder stack (post-norm,
    learned positions, embedding LayerNorm) under a tied head with its own bias; untied,
    the head's ``decoder.bias`` is a second tensor. Without ``is_decoder`` the stack
    attends both ways and keeps no cache (transformers warns and generates nothing)."""
    if not f["tie_word_embeddings"]:
        f["family_tensors"] = (FamilyTensor(name="lm_head.decoder.bias", component="biases", role="bias",
                                            shape=(f["vocab_size"],), count=1, per_layer=False),)
    if not config_switch(cfg, "is_decoder", False):
        f["memory_unmodelled"] = ("is_decoder false (BertGenerationDecoder then attends both ways and keeps no "
                                  "cache; set is_decoder true to estimate it as a decoder)")


def _moshi(cfg: Config, f: dict[str, Any]) -> None:
    """Moshi's temporal transformer (modeling_moshi.py ``MoshiForCausalLM``): a gated MLP
    whose ``fc1`` holds gate and up (``ffn_dim`` = twice the width), one embedding row
    beyond the vocabulary; the checkpoint's depth decoder and Mimi audio codec are not
    read."""
    f["intermediate_size"] = _pos(cfg, ("ffn_dim",), 22528) // 2
    f["prompt_embedding_rows"] = 1
    f["notes"] = ("Moshi: the temporal transformer is read; the checkpoint's depth decoder, audio embeddings "
                  "and Mimi audio codec are not counted (parameters, weights and activations are the "
                  "temporal transformer's alone)",)


def _seq(*steps: Callable[[Config, dict[str, Any]], None]) -> Callable[[Config, dict[str, Any]], None]:
    def run(cfg: Config, f: dict[str, Any]) -> None:
        for step in steps:
            step(cfg, f)
    return run


_LLAMA = Family()
_GEMMA = Family(tied_default=True, activation_key="hidden_activation")
_NEOX = Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
               activation_key="hidden_act")
_GPT2 = Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
               learned_positions=True, tied_default=True, activation_key="activation_function",
               intermediate_default=_four_h)

FAMILIES: dict[str, Family] = {
    # Llama layout
    "llama": _LLAMA, "mistral": _LLAMA, "qwen3": Family(qk_norm="per_head"), "olmo2": Family(qk_norm="full"),
    "olmo3": Family(qk_norm="full"), "phi3": _LLAMA, "granite": _LLAMA, "helium": _LLAMA,
    "cwm": _LLAMA, "exaone": _LLAMA, "smollm3": _LLAMA, "ministral3": _LLAMA,
    "ernie4_5": Family(adjust=_ernie), "youtu": _LLAMA,
    "hunyuan_v1_dense": Family(qk_norm="per_head"),
    "hunyuan_v1_moe": Family(qk_norm="per_head", prepare=_hunyuan_v1_moe_config,
                             defaults={"num_experts": 1, "moe_topk": 1}),
    "hyperclovax": Family(norms_per_layer=2, adjust=_post_norms),
    "arcee": Family(mlp_gated=False), "seed_oss": Family(out_bias="attention_out_bias"),
    "qwen2": Family(adjust=_qwen2_bias),
    "gemma": _GEMMA,
    "gemma2": Family(tied_default=True, activation_key="hidden_activation", norms_per_layer=4,
                     adjust=_gemma2_layers),
    "gemma3_text": Family(tied_default=True, activation_key="hidden_activation", norms_per_layer=4,
                          qk_norm="per_head", adjust=_gemma3_layers,
                          defaults={"vocab_size": 262_208, "max_position_embeddings": 131_072, "head_dim": 256,
                                    "num_key_value_heads": 4, "sliding_window": 4096, "sliding_window_pattern": 6,
                                    "hidden_activation": "gelu_pytorch_tanh", "torch_dtype": "bfloat16"}),
    "glm": Family(qkv_bias=True, out_bias=False),
    "glm4": Family(qkv_bias=True, out_bias=False, norms_per_layer=4),
    "cohere": Family(norm="layernorm", norm_bias=False, norms_per_layer=1, parallel_block=True,
                     tied_default=True, adjust=_cohere),
    "cohere2": Family(norm="layernorm", norm_bias=False, norms_per_layer=1, parallel_block=True,
                      tied_default=True),
    "olmo": Family(adjust=_olmo),
    "stablelm": Family(norm="layernorm", adjust=_stablelm),
    "starcoder2": Family(norm="layernorm", mlp_gated=False, tied_default=True, adjust=_starcoder2),
    "persimmon": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                        adjust=_persimmon),
    "phi": Family(norm="layernorm", norms_per_layer=1, parallel_block=True, qkv_bias=True, out_bias=True,
                  mlp_gated=False, mlp_bias=True, head_bias=True, adjust=_phi),
    # GPT-style
    "gpt2": _GPT2, "gpt-sw3": _GPT2,
    "gpt_bigcode": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                          learned_positions=True, tied_default=True, activation_key="activation_function",
                          intermediate_default=_four_h, adjust=_gpt_bigcode),
    "gpt_neox": _NEOX,
    "gptj": Family(norm="layernorm", norms_per_layer=1, parallel_block=True, qkv_bias=False, out_bias=False,
                   mlp_gated=False, mlp_bias=True, head_bias=True, activation_key="activation_function",
                   adjust=_gptj),
    "codegen": Family(norm="layernorm", norms_per_layer=1, parallel_block=True, qkv_bias=False, out_bias=False,
                      mlp_gated=False, mlp_bias=True, head_bias=True, activation_key="activation_function",
                      adjust=_gptj),
    "falcon": Family(norm="layernorm", mlp_gated=False, tied_default=True, activation_key="activation",
                     intermediate_default=_four_h, adjust=_falcon),
    "bloom": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                    alibi=True, embedding_norm=True, tied_default=True, adjust=_bloom),
    "mpt": Family(norm="layernorm", mlp_gated=False, tied_default=True, adjust=_mpt),
    "opt": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                  learned_positions=True, position_offset=2, tied_default=True,
                  activation_key="activation_function", adjust=_opt),
    # MoE
    "mixtral": Family(adjust=_mixtral_width),
    "qwen2_moe": Family(shared_expert_gate=True, adjust=_qwen2_bias),
    "qwen3_moe": Family(qk_norm="per_head"),
    "olmoe": Family(qk_norm="full"),
    "deepseek_v2": Family(routing_may_be_unset=True), "deepseek_v3": _LLAMA, "kimi_k2": _LLAMA,
    "deepseek_v32": Family(adjust=_indexer,
                           defaults={"index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048}),
    "glm_moe_dsa": Family(adjust=_indexer,
                          defaults={"index_n_heads": 32, "index_head_dim": 128, "index_topk": 2048}),
    "glm4_moe": Family(out_bias=False, qk_norm="per_head", qk_norm_key="use_qk_norm", head_dim_floor=True),
    "ernie4_5_moe": Family(router_score_bias=True, adjust=_ernie_moe),
    "gpt_oss": Family(qkv_bias=True, out_bias=True, sinks=True, router_bias=True, expert_bias=True,
                      adjust=_gpt_oss),
    "llama4_text": Family(adjust=_llama4),
    "granitemoe": Family(adjust=_granitemoe),
    "granitemoeshared": Family(adjust=_granitemoe),
    "minimax_m2": Family(qk_norm="full"),
    "emu3_text_model": _LLAMA, "minicpm3": _LLAMA, "glm4_moe_lite": _LLAMA, "sarvam_mla": _LLAMA, "solar_open": _LLAMA,
    "granite_swa": Family(sinks=True),
    "gemma4_text": Family(tied_default=True, activation_key="hidden_activation", norms_per_layer=4,
                          qk_norm="per_head", adjust=_gemma4,
                          defaults={"vocab_size": 262_144, "max_position_embeddings": 131_072, "head_dim": 256,
                                    "sliding_window": 512, "hidden_activation": "gelu_pytorch_tanh",
                                    "vocab_size_per_layer_input": 262_144, "hidden_size_per_layer_input": 256}),
    "gemma3n_text": Family(tied_default=True, activation_key="hidden_activation", norms_per_layer=4,
                           qk_norm="per_head", adjust=_gemma3n,
                           defaults={"vocab_size": 262_400, "max_position_embeddings": 32_768, "head_dim": 256,
                                     "num_key_value_heads": 2, "sliding_window": 512,
                                     "hidden_activation": "gelu_pytorch_tanh", "vocab_size_per_layer_input": 262_144,
                                     "hidden_size_per_layer_input": 256, "altup_num_inputs": 4,
                                     "num_kv_shared_layers": 15, "laurel_rank": 64}),
    "mllama_text_model": Family(adjust=_mllama),
    "hy_v4": Family(sinks=True, attention_gate="full", sdpa=False, adjust=_hy_v4,
                    defaults={"hc_mult": 4, "index_n_heads": 16, "index_head_dim": 128, "index_topk": 2048}),
    "axk2": Family(adjust=_axk2, defaults={"index_n_heads": 16, "index_head_dim": 128, "index_topk": 2048,
                                           "first_k_dense_replace": 1, "gated_norm_rank": 16}),
    "dots3_note_text": Family(adjust=_seq(_dots3, _indexer), defaults={
        "index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048, "first_k_dense_replace": 1,
        "sliding_window": 512}),
    "longcat_flash": Family(adjust=_longcat_flash, defaults={"zero_expert_num": 256}),
    "deepseek_v4": Family(sdpa=False, adjust=_deepseek_v4, defaults={"head_dim": 512, "num_key_value_heads": 1,
                                                          "sliding_window": 128}),
    "mimo_v2_flash": Family(adjust=_mimo_v2),
    "axk1": Family(moe_post_norm=True),
    "gemma4_unified_text": Family(tied_default=True, activation_key="hidden_activation", norms_per_layer=4,
                                  qk_norm="per_head", adjust=_gemma4,
                                  defaults={"vocab_size": 262_144, "max_position_embeddings": 262_144,
                                            "head_dim": 256, "sliding_window": 1024,
                                            "hidden_activation": "gelu_pytorch_tanh"}),
    "minimax": Family(adjust=_minimax),
    "vaultgemma": Family(tied_default=True, activation_key="hidden_activation"),
    "exaone4": Family(qk_norm="per_head"),
    "exaone_moe": Family(qk_norm="per_head"),
    "mellum": Family(qk_norm="per_head"),
    "flex_olmo": Family(qk_norm="full", adjust=_mixtral_width),
    "sarvam_moe": Family(out_bias=False, qk_norm="per_head", qk_norm_key="use_qk_norm"),
    "aria_text": Family(adjust=_mixtral_width),
    "cohere2_moe": Family(norm="layernorm", norm_bias=False, norms_per_layer=1, parallel_block=True,
                          tied_default=True, adjust=_mixtral_width),
    "phimoe": Family(norm="layernorm", adjust=_mixtral_width),
    "gpt_neo": Family(norm="layernorm", qkv_bias=False, out_bias=True, mlp_gated=False, mlp_bias=True,
                      learned_positions=True, tied_default=True, activation_key="activation_function",
                      intermediate_default=_four_h),
    "openai-gpt": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                         learned_positions=True, tied_default=True, final_norm=False,
                         activation_key="afn", intermediate_default=_four_h),
    "xglm": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                   tied_default=True, activation_key="activation_function"),
    "chatglm": Family(adjust=_chatglm),
    "gpt_neox_japanese": Family(norm="layernorm", qkv_bias=False, out_bias=False, mlp_gated=False, mlp_bias=False,
                                tied_default=True, sdpa=False, adjust=_gpt_neox_japanese),
    "modernbert-decoder": Family(norm="layernorm", embedding_norm=True, tied_default=True,
                                 activation_key="hidden_activation", adjust=_modernbert_decoder),
    "doge": Family(qk_norm="per_head", adjust=_doge),
    "git": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                  learned_positions=True, embedding_norm=True, final_norm=False, head_bias=True, sdpa=False,
                  adjust=_git),
    "jetmoe": Family(tied_default=True, adjust=_jetmoe),
    "cpmant": Family(sdpa=False, adjust=_cpmant),
    "dory": Family(prepare=_dory_config, adjust=_dory),
    "zaya": Family(prepare=_zaya_config, tied_default=True, adjust=_zaya),
    "xlnet": Family(norm="layernorm", qkv_bias=False, out_bias=False, mlp_gated=False, mlp_bias=True,
                    final_norm=False, tied_default=True, head_bias=True, sinusoidal_positions=True, adjust=_xlnet),
    "whisper": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                      learned_positions=True, norms_per_layer=3, tied_default=True,
                      activation_key="activation_function", prepare=_whisper_config, adjust=_whisper),
    "trocr": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                    norms_per_layer=3, final_norm=False, tied_default=True, sdpa=False,
                    activation_key="activation_function", prepare=_trocr_config, adjust=_trocr),
    "moshi": Family(adjust=_moshi),
    "biogpt": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                     learned_positions=True, position_offset=2, tied_default=True),
    "ctrl": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                   tied_default=True, head_bias=True, sinusoidal_positions=True, adjust=_relu),
    "bert-generation": Family(norm="layernorm", qkv_bias=True, out_bias=True, mlp_gated=False, mlp_bias=True,
                              learned_positions=True, embedding_norm=True, final_norm=False, tied_default=True,
                              head_bias=True, adjust=_bert_generation),
    # remote-code families, read from their JSON keys
    "internlm2": Family(qkv_bias="bias", out_bias="bias"),
    "baichuan": _LLAMA,
    "qwen": Family(adjust=_qwen1),
    "minicpm": Family(tied_default=True),
    "internlm3": _LLAMA, "iquestcoder": _LLAMA,
    "jais2": Family(norm="layernorm", mlp_gated=False),
    "kolibri1": Family(qk_norm="per_head", norms_per_layer=4),
    "hy_v3": Family(qk_norm="per_head"),
    "flint": Family(qk_norm="per_head", sinks=True),
    "granitemoe_swa": Family(sinks=True, adjust=_granitemoe),
    "apertus": Family(qk_norm="per_head", mlp_gated=False, mlp_activation_params=2),
    "apertus1p5_text": Family(qk_norm="per_head", mlp_gated=False, mlp_activation_params=2),
    "bitnet": Family(sub_norms=True),
    "mamba": Family(attention_free=True, norms_per_layer=1, tied_default=True, adjust=_attention_free(1)),
    "falcon_mamba": Family(attention_free=True, norms_per_layer=1, tied_default=True,
                           adjust=_attention_free(1)),
    "mamba2": Family(attention_free=True, norms_per_layer=1, adjust=_attention_free(2)),
    "qwen3_next": Family(qk_norm="per_head", shared_expert_gate=True, adjust=_deltanet),
    "qwen3_5_text": Family(qk_norm="per_head", adjust=_deltanet),
    "qwen3_5_moe_text": Family(qk_norm="per_head", shared_expert_gate=True, adjust=_deltanet),
    "jamba": Family(adjust=_jamba),
    "bamba": Family(adjust=_bamba),
    "granitemoehybrid": Family(adjust=_granite_hybrid),
    "nemotron_h": Family(norms_per_layer=1, mlp_gated=False, adjust=_nemotron_h),
    # text towers of multimodal wrappers
    "qwen2_vl_text": Family(adjust=_qwen2_bias), "qwen2_5_vl_text": Family(adjust=_qwen2_bias),
    "qwen2_5_omni_text": Family(adjust=_qwen2_bias),
    "qwen3_vl_text": Family(qk_norm="per_head"), "qwen3_vl_moe_text": Family(qk_norm="per_head"),
    "qwen3_omni_moe_text": Family(qk_norm="per_head"),
    "glm4v_text": Family(qkv_bias=True, out_bias=False, norms_per_layer=4),
    "glm4v_moe_text": Family(out_bias=False, qk_norm="per_head", qk_norm_key="use_qk_norm"),
    "paddleocr_vl_text": Family(adjust=_ernie),
    "glm_ocr_text": Family(norms_per_layer=4),  # GLM-OCR: no biases, norms before and after attention and MLP
    "lfm2": Family(qk_norm="per_head", tied_default=True, adjust=_lfm2),
    "afmoe": Family(qk_norm="per_head", norms_per_layer=4, attention_gate="full", router_score_bias=True,
                    adjust=_first_dense),
    "laguna": Family(qk_norm="per_head", attention_gate="head", router_score_bias=True),
    "beam": Family(qk_norm="per_head", norms_per_layer=4, attention_gate="full", attention_gate_bias=True),
    "diffllama": Family(attention_lambdas=True),
    "minimax_m3_vl_text": Family(qk_norm="per_head", adjust=_shared_width_key),
    "nanochat": Family(norms_per_layer=0, final_norm=False, mlp_gated=False),
    # hybrids: state-space, linear-attention and recurrent layers beside attention
    "falcon_h1": Family(adjust=_falcon_h1),
    "zamba": Family(tied_default=True, adjust=_zamba(1)),
    "zamba2": Family(tied_default=True, adjust=_zamba(2)),
    "kimi_linear": Family(adjust=_kda),
    "bailing_hybrid": Family(adjust=_kda),
    "lara_mini": Family(qk_norm="per_head", adjust=_deltanet_layers),
    "olmo_hybrid": Family(qk_norm="full", adjust=_deltanet_layers),
    "lfm3": Family(qk_norm="per_head", tied_default=True, adjust=_lfm3),
    "xlstm": Family(attention_free=True, adjust=_xlstm),
    "rwkv": Family(norm="layernorm", embedding_norm=True, attention_free=True, intermediate_default=_four_h,
                   adjust=_rwkv),
    "recurrent_gemma": Family(tied_default=True, activation_key="hidden_activation", adjust=_recurrent_gemma,
                              defaults={"block_types": ["recurrent", "recurrent", "attention"],
                                        "attention_window_size": 2048, "conv1d_width": 4,
                                        "hidden_activation": "gelu_pytorch_tanh"}),
}
"""``model_type`` -> its structure. Multimodal wrappers are read through
``text_config`` (:func:`vramplan.model.hf_config.text_config`)."""
