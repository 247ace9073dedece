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
AttentionKind = Literal["full_attention", "sliding_attention", "chunked_attention"]


_FIELD_MAX: dict[str, int] = {
    "num_layers": v.LAYERS_MAX, "hidden_size": v.HIDDEN_MAX, "num_attention_heads": v.HEADS_MAX,
    "num_kv_heads": v.HEADS_MAX, "head_dim": v.HIDDEN_MAX, "intermediate_size": v.WIDTH_MAX,
    "vocab_size": v.VOCAB_MAX, "max_position_embeddings": v.LENGTH_MAX, "norms_per_layer": 16,
    "sliding_window": v.LENGTH_MAX, "num_experts": v.EXPERTS_MAX, "experts_per_token": v.EXPERTS_MAX,
    "expert_intermediate_size": v.WIDTH_MAX, "num_shared_experts": v.EXPERTS_MAX,
    "shared_expert_intermediate_size": v.WIDTH_MAX, "q_lora_rank": v.HIDDEN_MAX,
    "kv_lora_rank": v.HIDDEN_MAX, "qk_rope_head_dim": v.HIDDEN_MAX, "qk_nope_head_dim": v.HIDDEN_MAX,
    "v_head_dim": v.HIDDEN_MAX, "conv_L_cache": v.LENGTH_MAX, "attention_chunk_size": v.LENGTH_MAX,
}
"""Upper bound of every integer field (see :mod:`vramplan.validate` for the table)."""


def _positive(name: str, value: object, lo: int = 1) -> None:
    v.integer(name, value, lo, _FIELD_MAX.get(name, v.WIDTH_MAX), error=ConfigError)


@dataclass(frozen=True, kw_only=True)
class MoESpec:
    """Mixture-of-experts facts (Mixtral, Qwen-MoE, DeepSeek, gpt-oss)."""

    num_experts: int
    """Routed experts per MoE layer."""
    experts_per_token: int
    """Experts each token is routed to (top-k); 0 when the config leaves it unset
    (DeepSeek-V2's default config: transformers builds the model, its router cannot run),
    and then estimates refuse (:meth:`ModelSpec.check_memory_model`)."""
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
    post_norm: bool = False
    """The MoE block ends with its own norm (A.X K1 ``post_mlp_layernorm``)."""
    output_bias: bool = False
    """One hidden-width bias added to the MoE block's output (JetMoE ``mlp.bias``)."""
    router: bool = True
    """A linear router (``hidden -> experts``); False when the family lists its own
    router (Zaya's MLP router, in :attr:`ModelSpec.family_tensors`)."""
    router_score_bias: bool = False
    """The router holds a learned per-expert score-correction bias as a parameter
    (ERNIE 4.5 MoE, AFMoE); DeepSeek-V3 keeps it as a buffer (not a parameter)."""
    beside_dense_mlp: bool = False
    """The MoE block runs beside the layer's dense MLP instead of replacing it (Gemma 4
    ``enable_moe_block``, LongCat-Flash)."""
    zero_experts: int = 0
    """Zero-compute (identity) experts the router may also pick (LongCat-Flash
    ``zero_expert_num``): router rows, no weights."""
    router_scales: bool = False
    """Gemma 4's router: a learned input scale (hidden) and a scale per expert."""
    block_norms: int = 0
    """Extra norms of the MoE block per MoE layer (Gemma 4: a pre norm and two post
    norms, ``pre_feedforward_layernorm_2``, ``post_feedforward_layernorm_1/2``)."""

    def __post_init__(self) -> None:
        _positive("num_experts", self.num_experts)
        _positive("experts_per_token", self.experts_per_token, 0)
        _positive("expert_intermediate_size", self.expert_intermediate_size)
        _positive("num_shared_experts", self.num_shared_experts, 0)
        _positive("shared_expert_intermediate_size", self.shared_expert_intermediate_size, 0)
        for name in ("shared_expert_gate", "router_bias", "expert_bias"):
            v.flag(name, getattr(self, name), error=ConfigError)
        _positive("zero_expert_num", self.zero_experts, 0)
        if self.experts_per_token > self.num_experts:
            raise ConfigError(
                f"experts_per_token: expected at most num_experts={self.num_experts}, got {self.experts_per_token}")


MixerKind = Literal["attention", "mamba", "mamba2", "gated_deltanet", "short_conv", "lightning_attention", "kda",
                    "rg_lru", "rwkv", "mlstm", "cross_attention", "compressed_attention", "none"]
"""What mixes tokens in a layer: softmax attention (with a KV cache), cross-attention to
a vision tower's states instead of self-attention (Mllama: its cache holds the image
states, not the text), DeepSeek-V4's compressed attention, a Mamba or
Mamba-2 state-space mixer, a gated delta-net (linear attention with a recurrent
state), a gated short convolution (LFM2), MiniMax's lightning attention (linear
attention with a ``head_dim x head_dim`` state per head), Kimi delta attention (KDA,
a gated delta-net with a per-channel forget gate), RecurrentGemma's RG-LRU, an RWKV-4
block (time mixing and channel mixing together), xLSTM's mLSTM, or nothing (Nemotron-H's
MLP-only layers)."""

MIXERS_WITH_ACTIVATIONS: frozenset[str] = frozenset({"mamba", "mamba2", "gated_deltanet", "kda",
                                                    "lightning_attention", "rg_lru"})
"""Token mixers (in layers of their own) whose training activations are modelled tensor by
tensor (:mod:`vramplan.memory.mixer_activations`); the others are priced with an
attention block of the model's widths."""
MAMBA1_FAMILIES_WITH_ACTIVATIONS: frozenset[str] = frozenset({"mamba", "falcon_mamba", "jamba", "zamba"})
"""Families whose Mamba-1 mixer (``mamba`` in :data:`MIXERS_WITH_ACTIVATIONS`) is
transformers' ``MambaMixer``, its copy with dt / B / C norms, or Zamba's per-head mixer,
modelled tensor by tensor."""
SHARED_BLOCK_WITH_ACTIVATIONS: frozenset[str] = frozenset({"zamba", "zamba2"})
"""Families whose hybrid layers (:attr:`ModelSpec.shared_block`: a shared attention + MLP
block, then the layer's Mamba mixer) are modelled tensor by tensor."""
SSM_BESIDE_ATTENTION_WITH_ACTIVATIONS: frozenset[str] = frozenset({"falcon_h1"})
"""Families with a state-space mixer beside attention in their attention layers
(:attr:`ModelSpec.ssm_in_attention_layers`) whose mixer's activations are modelled:
Falcon-H1's Mamba-2 reads the same norm output as attention."""


@dataclass(frozen=True, kw_only=True)
class SSMSpec:
    """A Mamba (selective state-space) mixer. Mamba: Gu & Dao 2023, transformers
    ``MambaMixer``; Mamba-2: Dao & Gu 2024, transformers ``Mamba2Mixer``."""

    version: Literal[1, 2]
    d_inner: int
    """Inner width (``expand x hidden``)."""
    d_state: int
    """State size per channel (Mamba) or per head dim (Mamba-2)."""
    d_conv: int
    """Causal depthwise convolution kernel."""
    dt_rank: int = 0
    """Mamba-1: rank of the time-step projection."""
    n_groups: int = 1
    """Mamba-2: groups of B and C."""
    num_heads: int = 0
    """Mamba-2: SSM heads (``d_inner = num_heads x head_dim``); Zamba's Mamba-1: its
    ``n_mamba_heads``, each with its own ``x_proj`` / ``dt_proj`` (dt, B and C per head);
    0: one."""
    conv_bias: bool = True
    proj_bias: bool = False
    inner_norms: bool = False
    """Jamba: RMSNorms on dt, B and C inside the mixer."""
    gated_norm: bool = True
    """Mamba-2: the gated RMSNorm over ``d_inner`` before ``out_proj`` (Falcon-H1 has it
    only with ``mamba_rms_norm``)."""
    out_proj_bias: bool | None = None
    """``out_proj`` carries a bias; ``None``: as :attr:`proj_bias` (Falcon-H1 sets it
    apart, ``projectors_bias``)."""
    norm_before_gate: bool = False
    """Mamba-2: the gated norm normalises the scan output before the ``silu(gate)``
    product (Falcon-H1's ``mamba_norm_before_gate``); Bamba's norm gates first."""
    chunk_size: int = 256
    """Mamba-2: positions per chunk of the chunked scan (``chunk_size`` /
    ``mamba_chunk_size``); its intra-chunk terms are ``chunk x chunk`` per head."""

    def __post_init__(self) -> None:
        for name in ("d_inner", "d_state", "d_conv", "chunk_size"):
            _positive(f"ssm {name}", getattr(self, name))
        if self.version == 2:
            _positive("mamba num_heads", self.num_heads)
            _positive("mamba n_groups", self.n_groups)
            if self.d_inner % self.num_heads:
                raise ConfigError(f"mamba num_heads: expected a divisor of the inner width {self.d_inner}, "
                                  f"got {self.num_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_inner // self.num_heads if self.version == 2 else 0

    @property
    def conv_channels(self) -> int:
        """Channels of the causal convolution (what its cache holds per step)."""
        return self.d_inner + (2 * self.n_groups * self.d_state if self.version == 2 else 0)


@dataclass(frozen=True, kw_only=True)
class DeltaNetSpec:
    """A gated delta-net mixer (Yang et al. 2024, "Gated Delta Networks"; transformers
    ``Qwen3NextGatedDeltaNet``): linear attention whose per-head state is a
    ``head_k_dim x head_v_dim`` matrix, after a causal convolution over q, k, v."""

    num_k_heads: int
    num_v_heads: int
    head_k_dim: int
    head_v_dim: int
    conv_kernel: int

    def __post_init__(self) -> None:
        for name in ("num_k_heads", "num_v_heads", "head_k_dim", "head_v_dim", "conv_kernel"):
            _positive(f"linear_{name}", getattr(self, name))

    @property
    def key_dim(self) -> int:
        return self.num_k_heads * self.head_k_dim

    @property
    def value_dim(self) -> int:
        return self.num_v_heads * self.head_v_dim

    @property
    def conv_channels(self) -> int:
        """q, k and v pass the convolution: ``2 key_dim + value_dim`` channels."""
        return 2 * self.key_dim + self.value_dim


@dataclass(frozen=True, kw_only=True)
class KDASpec:
    """Kimi delta attention (Kimi Linear report, 2025; transformers
    ``KimiDeltaAttention``, Bailing-hybrid ``BailingHybridKimiDeltaAttention``): a gated
    delta rule whose forget gate is per channel. q, k, v are ``num_heads x head_dim``
    wide, each through a causal convolution; the state is one ``head_dim x head_dim``
    matrix per head."""

    num_heads: int
    head_dim: int
    conv_kernel: int
    gate_rank: int = 0
    """Rank of the low-rank forget-gate and output-gate projections (Kimi: ``f_a``/``f_b``,
    ``g_a``/``g_b`` of rank ``head_dim``); 0: full-width ``f_proj``/``g_proj`` (Bailing)."""

    def __post_init__(self) -> None:
        for name in ("num_heads", "head_dim", "conv_kernel"):
            _positive(f"linear {name}", getattr(self, name))
        _positive("kda gate_rank", self.gate_rank, 0)

    @property
    def width(self) -> int:
        """Width of q, k and v each (``num_heads x head_dim``)."""
        return self.num_heads * self.head_dim

    @property
    def conv_channels(self) -> int:
        """q, k and v pass the convolution: ``3 x width`` channels."""
        return 3 * self.width


@dataclass(frozen=True, kw_only=True)
class RGLRUSpec:
    """RecurrentGemma's recurrent block (Griffin, De et al. 2024, sec. 2.4; transformers
    ``RecurrentGemmaRecurrentBlock``): two ``hidden -> lru_width`` branches, a causal
    convolution on one, the real-gated linear recurrent unit (block-diagonal gates, one
    block per head) and ``lru_width -> hidden`` out."""

    width: int
    """``lru_width``."""
    num_heads: int
    """Blocks of the block-diagonal input and recurrence gates."""
    conv_kernel: int
    """``conv1d_width``."""

    def __post_init__(self) -> None:
        for name in ("width", "num_heads", "conv_kernel"):
            _positive(f"lru {name}", getattr(self, name))
        if self.width % self.num_heads:
            raise ConfigError(f"lru_width: expected a multiple of num_attention_heads={self.num_heads}, "
                              f"got {self.width}")


@dataclass(frozen=True, kw_only=True)
class MLSTMSpec:
    """xLSTM's mLSTM layer (Beck et al. 2024, "xLSTM", sec. 2.3; transformers
    ``xLSTMLayer``): q, k of ``qk_dim``, v and the output gate of ``v_dim``, one input and
    one forget gate per head, a per-head norm, ``out_proj``; its state per head is the
    ``qk_head x v_head`` matrix memory C, the normaliser n and the stabiliser m."""

    num_heads: int
    qk_dim: int
    v_dim: int
    bias: bool = False
    """``use_bias``: q/k/v, output gate, out_proj and the per-head norm carry biases."""

    def __post_init__(self) -> None:
        for name in ("num_heads", "qk_dim", "v_dim"):
            _positive(f"mlstm {name}", getattr(self, name))
        if self.qk_dim % self.num_heads or self.v_dim % self.num_heads:
            raise ConfigError(f"num_heads: expected a divisor of the q/k width {self.qk_dim} and the v width "
                              f"{self.v_dim}, got {self.num_heads}")


@dataclass(frozen=True, kw_only=True)
class SharedBlockSpec:
    """Zamba's shared transformer blocks (Zamba, Glorioso et al. 2024; transformers
    ``ZambaHybridLayer``, ``Zamba2HybridLayer``): the attention layers run one of
    ``num_blocks`` attention + MLP blocks whose weights every such layer reuses in turn,
    on the hidden state concatenated with the input embeddings, then a
    ``hidden -> hidden`` linear of their own and their Mamba mixer."""

    num_blocks: int
    """Distinct blocks (``num_mem_blocks``; Zamba: 1)."""
    input_size: int
    """Width entering the block's norm and q/k/v (``2 x hidden``)."""
    adapter_rank: int = 0
    """Zamba2: rank of the per-layer LoRA-like adapters on the MLP's fused gate/up
    projection (``gate_up_proj_adapter_list``); 0: none."""
    attention_adapters: bool = False
    """Zamba2 ``use_shared_attention_adapter``: adapters on q, k and v too."""
    mlp_fused_gate_up: bool = False
    """The MLP's gate and up projections are one ``gate_up_proj`` (Zamba2)."""

    def __post_init__(self) -> None:
        _positive("num_mem_blocks", self.num_blocks)
        _positive("attention_hidden_size", self.input_size)
        _positive("adapter_rank", self.adapter_rank, 0)


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
    fused_query_gate: bool = False
    """A.X K2: one ``q_gate_proj`` from the query latent and its normed copy
    (``2 q_lora_rank`` wide) emits the queries and a per-head output gate
    (``heads x (qk_head_dim + v_head_dim)``), in place of ``q_b_proj``."""
    rope_key_norm: bool = False
    """dots3: an RMSNorm on the shared rope key (``k_rope_only_layernorm``,
    ``qk_rope_head_dim`` wide)."""

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
class CompressedAttentionSpec:
    """DeepSeek-V4's attention (DeepSeek-V4 technical report sec. 2.3; transformers
    ``DeepseekV4Attention``): one shared key=value head of ``head_dim`` (MQA) over a
    sliding window, plus, in compressed layers, KV entries that each summarise
    ``compress_rate`` tokens (``DeepseekV4HCACompressor``; the CSA compressor of rate 4
    reads two overlapping series and carries a lightning indexer over its own
    compressed keys). Queries come through a latent (``q_lora_rank``); the output
    through ``o_groups`` grouped projections of rank ``o_lora_rank``."""

    head_dim: int
    q_lora_rank: int
    o_groups: int
    o_lora_rank: int
    layer_rates: tuple[int, ...]
    """Per layer: tokens per compressed entry; 0 for a sliding-window-only layer."""
    indexed_rate: int
    """The rate of the compressed-sparse (indexed) layers (``compress_rates`` CSA)."""
    index_heads: int
    index_head_dim: int

    def __post_init__(self) -> None:
        for name in ("head_dim", "q_lora_rank", "o_groups", "o_lora_rank", "indexed_rate", "index_heads",
                     "index_head_dim"):
            _positive(name, getattr(self, name))
        for rate in self.layer_rates:
            _positive("compress_rates", rate, 0)

    def is_indexed(self, layer: int) -> bool:
        """Layer ``layer`` is compressed sparse attention (CSA: overlapping series and an indexer)."""
        return self.layer_rates[layer] == self.indexed_rate


Architecture = Literal["decoder", "encoder_decoder", "encoder"]
"""Decoder-only (causal LM), encoder-decoder (T5, BART: the decoder cross-attends to the
encoder's output) or encoder-only (BERT, RoBERTa, ModernBERT: no KV cache)."""


@dataclass(frozen=True, kw_only=True)
class EncoderSpec:
    """The encoder stack of an encoder-decoder model (T5, BART), where it differs from the
    decoder's: :mod:`vramplan.model.encoder_decoder` reads it and lists its tensors."""

    num_layers: int
    num_attention_heads: int
    head_dim: int
    intermediate_size: int

    def __post_init__(self) -> None:
        for name in ("num_layers", "num_attention_heads", "head_dim", "intermediate_size"):
            _positive(f"encoder {name}", getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class TowerTensors:
    """Parameter tensors of a vision or audio tower (or its projector), as
    ``(name, shape, count)`` rows with their role, listed by :mod:`vramplan.model.towers`."""

    name: str
    role: Literal["linear", "embedding", "norm", "bias", "other"]
    shape: tuple[int, ...]
    count: int


@dataclass(frozen=True, kw_only=True)
class FamilyTensor:
    """A parameter tensor only one family has (Zaya's convolutions on queries and keys,
    its MLP router), listed by the family's reader step: ``count`` tensors of ``shape``."""

    name: str
    component: Literal["embeddings", "attention", "mlp", "router", "norms", "biases", "head"]
    role: Literal["linear", "embedding", "norm", "bias", "other"]
    shape: tuple[int, ...]
    count: int
    per_layer: bool = True


@dataclass(frozen=True, kw_only=True)
class TowerSpec:
    """A multimodal checkpoint's vision or audio encoder and the projector into the text
    model (:mod:`vramplan.model.towers` reads them and gives the image-token rules)."""

    kind: Literal["vision", "audio"]
    model_type: str
    """The tower config's ``model_type`` (``siglip_vision_model``, ``qwen2_5_vl``...)."""
    depth: int
    """Encoder blocks of the tower."""
    hidden_size: int
    intermediate_size: int
    num_heads: int
    mlp_gated: bool
    tensors: tuple[TowerTensors, ...]
    """Every parameter tensor of the tower (``component='vision_tower'``/``'audio_tower'``)."""
    projector: tuple[TowerTensors, ...]
    """The projector into the text model's width (``component='projector'``)."""
    patch_size: int = 14
    """Pixels per patch side."""
    merge: int = 1
    """Patches merged into one token per side (Qwen-VL ``spatial_merge_size``, Pixtral's
    patch merger, LLaVA-style towers: 1)."""
    image_size: int | None = None
    """The fixed resolution the processor resizes every image to; ``None`` for dynamic
    resolution (Qwen-VL, Pixtral: the image's own size, within the processor's bounds)."""
    token_rule: Literal["resize", "anyres", "tiles"] = "resize"
    """How the processor turns an image into tokens: one resized image (fixed or dynamic
    resolution; modelled), or a grid of tiles chosen per image (LLaVA-NeXT "anyres",
    InternVL, Llama 4; not modelled)."""
    tokens_per_image: int | None = None
    """Text tokens one image adds at its fixed resolution (markers included); ``None``
    when the count depends on the image size (:func:`vramplan.model.towers.image_tokens`)."""
    tiles: int = 1
    """Tiles every image is padded to (Mllama's ``max_num_tiles``; 1 for one resized image)."""
    feature_layers: int | None = None
    """Tower blocks the text model's features come from (LLaVA's ``vision_feature_layer``
    -2: all but the last, whose output nothing reads); ``None``: every block."""

    @property
    def params(self) -> int:
        from math import prod

        return sum(prod(t.shape) * t.count for t in self.tensors + self.projector)


@dataclass(frozen=True, kw_only=True)
class IndexerSpec:
    """DeepSeek sparse attention's lightning indexer (DeepSeek-V3.2-Exp technical report,
    sec. 2.1; transformers ``DeepseekV32Indexer``, ``GlmMoeDsaIndexer``): a few small
    heads score every past token, and the layer attends to the ``top_k`` best. Its
    parameters: ``wq_b`` (``heads x head_dim`` from the query latent), ``wk``
    (``head_dim`` from the hidden state), a LayerNorm on the key and ``weights_proj``
    (one weight per head). It caches one ``head_dim`` key per token and layer, next to
    the attention's own cache."""

    num_heads: int
    """Indexer heads (``index_n_heads``)."""
    head_dim: int
    """Indexer head width, also the cached key width (``index_head_dim``)."""
    top_k: int
    """Tokens each query attends to (``index_topk``)."""

    def __post_init__(self) -> None:
        _positive("index_n_heads", self.num_heads)
        _positive("index_head_dim", self.head_dim)
        _positive("index_topk", self.top_k)


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
    norm_bias: bool = True
    """A LayerNorm carries a bias (False: weight-only LayerNorm, Cohere); ignored for
    RMSNorm."""
    norms_per_layer: int = 2
    """Norm layers inside one block: 2 for pre-norm blocks, 1 for parallel
    attention+MLP blocks (GPT-J, Falcon-7B, Cohere), 4 for Gemma 2/3 (pre and post
    around attention and MLP), 0 for OLMo's parameter-free LayerNorm."""
    final_norm: bool = True
    """A norm after the last block (False: OLMo's parameter-free LayerNorm)."""
    embedding_norm: bool = False
    """A norm right after the token embedding (BLOOM ``word_embeddings_layernorm``)."""
    parallel_block: bool = False
    """Attention and MLP read the same normalized input and their outputs are added
    (GPT-J, Falcon-7B, Cohere, Phi-2); shapes are those of a sequential block."""
    alibi: bool = False
    """Positions enter as ALiBi biases on attention scores (BLOOM, MPT, Falcon-RW): no
    parameters, no rotary embedding."""
    mlp_activation_params: int = 0
    """Learned scalars of the MLP activation per layer (Apertus' xIELU: alpha_p, alpha_n)."""
    sub_norms: bool = False
    """BitNet's extra RMSNorms: on the attention output (before o_proj, width q_dim)
    and on the MLP hidden (before down_proj, width intermediate)."""
    head_bias: bool = False
    """The output head carries a bias (GPT-J, CodeGen, Phi-2)."""
    first_layer_attention_norm: bool = True
    """Layer 0 normalises its attention input (False: ModernBERT-decoder's ``attn_norm`` is
    ``nn.Identity`` there, the embedding norm serves)."""
    head_transform: bool = False
    """A prediction head before the output projection: dense ``hidden x hidden``, the
    activation and a norm (ModernBERT-decoder ``lm_head``)."""
    head_transform_bias: bool = False
    """That dense layer carries a bias (``classifier_bias``)."""
    layer_intermediate_sizes: tuple[int, ...] = ()
    """Per layer: dense MLP width, when layers differ (OpenELM-style configs give a list);
    empty when every dense layer has ``intermediate_size``."""
    qk_norm: QKNormKind = "none"
    """RMSNorm on queries and keys: over head_dim (Qwen3, Gemma 3), over the whole
    projection (OLMo 2), or none."""
    attention_qkv_bias: bool = False
    """q/k/v projections carry a bias (Qwen2, GPT-2, GPT-NeoX, gpt-oss)."""
    attention_out_bias: bool = False
    """The attention output projection carries a bias."""
    attention_sinks: bool = False
    """A learned per-head sink logit (gpt-oss)."""
    out_bias_last_layer_only: bool = False
    """Only the last layer's attention output carries a bias (GPT-NeoX-Japanese
    ``dense_bias``)."""
    mlp_gated: bool = True
    """Gated MLP (SwiGLU/GeGLU: gate, up, down) or plain (up, down)."""
    mlp_bias: bool = False
    """MLP projections carry biases (GPT-2, GPT-NeoX)."""
    hidden_act: str = "silu"
    """Activation function name as in the config."""
    learned_position_embeddings: bool = False
    """A learned absolute position table (GPT-2) instead of rotary positions."""
    sinusoidal_positions: bool = False
    """Fixed sinusoid positions added to the token embeddings (CTRL): no parameters and
    no rotary cos/sin tables."""
    position_embedding_offset: int = 0
    """Extra rows of the position table (OPT and BART keep 2 more than
    ``max_position_embeddings``)."""
    partial_rotary_factor: float = 1.0
    """Fraction of each head's dims that carry rotary position (GPT-NeoX ``rotary_pct``,
    0.25 in Pythia); 1.0 when the whole head rotates."""
    moe: MoESpec | None = None
    """Mixture-of-experts facts, or ``None`` for a dense model."""
    moe_layers: tuple[bool, ...] = ()
    """Per layer: True when its MLP is the MoE block. Empty for dense models."""
    mla: MLASpec | None = None
    """Multi-head latent attention, or ``None`` for MHA/GQA/MQA."""
    indexer: IndexerSpec | None = None
    """DeepSeek sparse attention's indexer, or ``None``."""
    layer_indexers: tuple[bool, ...] = ()
    """Per layer: True when the layer runs its own indexer (GLM-5's ``shared`` layers
    reuse the previous layer's top-k and have none). Empty: every attention layer has
    one when :attr:`indexer` is set."""
    layer_head_dims: tuple[int, ...] = ()
    """Per layer: the attention head width, when layers differ (Gemma 4: 256 in sliding
    layers, ``global_head_dim`` 512 in full layers, ``per_layer_config``). Empty: every
    layer has :attr:`head_dim`."""
    layer_kv_heads: tuple[int, ...] = ()
    """Per layer: key/value heads, when layers differ (Gemma 4's
    ``num_global_key_value_heads``). Empty: every layer has :attr:`num_kv_heads`."""
    kv_shared_layers: tuple[bool, ...] = ()
    """Per layer: True when the layer reads the keys and values of an earlier layer of
    its kind (Gemma 3n / Gemma 4 ``num_kv_shared_layers``): no k/v projections and no
    cache of its own. Empty: none."""
    layer_mla: tuple[MLASpec, ...] = ()
    """Per layer: the MLA shape, when layers differ (dots3: the sliding-window layers
    have their own latent ranks and head widths, ``per_layer_config``). Empty: every
    layer has :attr:`mla`."""
    layer_attention_heads: tuple[int, ...] = ()
    """Per layer: query heads, when layers differ (dots3's sliding layers). Empty: every
    layer has :attr:`num_attention_heads`."""
    value_head_dim: int = 0
    """Per-head value width when it differs from the query/key width (MiMo-V2-Flash
    ``v_head_dim`` 128 against ``head_dim`` 192); 0: values are :attr:`head_dim` wide."""
    sinks_on_sliding_layers_only: bool = False
    """The attention sinks exist in the sliding-window layers only (MiMo-V2-Flash)."""
    attention_k_eq_v: bool = False
    """Full-attention layers use their keys as values (Gemma 4 ``attention_k_eq_v``): no
    ``v_proj`` there."""
    per_layer_input_size: int = 0
    """Gemma 4's per-layer input embeddings: width of each layer's slice
    (``hidden_size_per_layer_input``); 0 when the model has none."""
    per_layer_input_vocab: int = 0
    """Rows of the per-layer embedding table (``vocab_size_per_layer_input``)."""
    embedding_extra_rows: int = 0
    """Rows of the token embedding beyond ``vocab_size`` (Mllama: 8 image and special
    tokens the head does not predict)."""
    hyper_connection_streams: int = 0
    """Hyper-connections (Zhu et al. 2024, "Hyper-Connections"; Hunyuan v4
    ``HYV4HyperConnection``, DeepSeek-V4): the residual stream is ``hc_mult`` streams,
    mixed into each sub-block's input and written back by learned, input-dependent
    weights (fp32 ``fn``/``base``/``scale`` before attention and before the MLP, and a
    ``hc_head`` that collapses the streams before the final norm); 0 when none."""
    hyper_connection_residual_mix: bool = False
    """DeepSeek-V4's form: the weights also mix the streams among themselves
    (``(2 + hc_mult) x hc_mult`` outputs, three scales) instead of only reading and
    writing them (``2 x hc_mult`` outputs, two scales; Hunyuan v4)."""
    hyper_connection_sinkhorn_iters: int = 0
    """With :attr:`hyper_connection_residual_mix`: Sinkhorn-Knopp iterations that make
    the mixing matrix doubly stochastic (``hc_sinkhorn_iters``, DeepSeek-V4 default 20)."""
    gated_norm_rank: int = 0
    """A.X K2's gated RMSNorms: the block's input norm (and, in MoE layers, the
    post-attention norm) carries a rank-``gated_norm_rank`` gate MLP
    (``fc1`` hidden -> r, ``fc2`` r -> hidden); 0 when none."""
    draft_backbone_hidden_size: int = 0
    """Gemma 4 assistant (a draft model for speculative decoding,
    modeling_gemma4_assistant.py): width of the target model it drafts for; the draft
    reads the target's embeddings and last hidden state through ``pre_projection``
    (``2 x backbone -> hidden``) and returns through ``post_projection``, and every
    layer attends to the target's cached keys and values (cross-model KV sharing:
    no cache of its own). 0 for any other model."""
    draft_centroids: int = 0
    """The assistant's ordered-embedding head (``use_ordered_embeddings``): a
    ``hidden -> num_centroids`` centroid classifier; 0 when none."""
    compressed_attention: CompressedAttentionSpec | None = None
    """DeepSeek-V4's attention of the ``compressed_attention`` layers."""
    altup_inputs: int = 0
    """Gemma 3n's AltUp (Baykal et al. 2023, "Alternating Updates for Efficient
    Transformers"): the residual stream is kept as ``altup_num_inputs`` copies, one
    updated by the layer, the others predicted and corrected by small per-layer maps
    (``Gemma3nTextAltUp``); 0 when the model has none."""
    laurel_rank: int = 0
    """Gemma 3n's LAuReL (Menghani et al. 2024, "Learned Augmented Residual Layer"): a
    rank-``laurel_rank`` linear residual beside attention in every layer; 0 when none."""
    sparse_mlp_layers: tuple[bool, ...] = ()
    """Per layer: True when the MLP sparsifies its gate before the activation (Gemma 3n's
    ``activation_sparsity_pattern`` above 0: ``Gemma3nTextMLP._gaussian_topk`` keeps the
    gate values above mean + k std, by default in the first 10 layers of models deeper
    than 10). Empty: none. No parameters; its saved tensors are counted with the MLP's."""
    layer_mixers: tuple[MixerKind, ...] = ()
    """Per layer: what mixes tokens (attention, mamba, mamba2, gated_deltanet, none).
    Empty means attention in every layer."""
    layer_mlps: tuple[bool, ...] = ()
    """Per layer: False when the layer has no MLP (Mamba, Nemotron-H's mixer-only
    layers). Empty means every layer has one."""
    ssm: SSMSpec | None = None
    """The Mamba mixer of the ``mamba``/``mamba2`` layers."""
    deltanet: DeltaNetSpec | None = None
    """The gated delta-net mixer of the ``gated_deltanet`` layers."""
    kda: KDASpec | None = None
    """The Kimi-delta-attention mixer of the ``kda`` layers."""
    rg_lru: RGLRUSpec | None = None
    """RecurrentGemma's recurrent block in the ``rg_lru`` layers."""
    mlstm: MLSTMSpec | None = None
    """xLSTM's mLSTM mixer of the ``mlstm`` layers."""
    rwkv_attention_size: int = 0
    """RWKV-4: width of the time-mixing key / value / receptance (``attention_hidden_size``);
    0 when no layer is an RWKV block."""
    ssm_in_attention_layers: bool = False
    """The attention layers hold a Mamba mixer too, with its state (Falcon-H1: Mamba-2
    beside attention in every layer; Zamba: a Mamba layer after the shared block)."""
    shared_block: SharedBlockSpec | None = None
    """Zamba: the attention layers' attention and MLP are shared blocks (weights held once
    per block)."""
    lightning_block_size: int = 0
    """MiniMax-01's lightning attention: positions per block of its block-wise linear
    attention (``block_size``); 0 when no layer has one."""
    short_conv_kernel: int = 0
    """LFM2's gated short convolution: kernel length (``conv_L_cache``); 0 when no layer
    has one."""
    short_conv_bias: bool = False
    """The short-convolution projections and kernel carry biases (``conv_bias``)."""
    attention_gate: Literal["none", "q_proj", "full", "head"] = "none"
    """A sigmoid gate on the attention output: emitted by q_proj (its width doubles;
    Qwen3-Next, Qwen3.5), by its own ``hidden -> heads x head_dim`` projection (AFMoE),
    or one gate per head from a ``hidden -> heads`` projection (Laguna)."""
    attention_gate_bias: bool = False
    """A learned per-head bias on that gate (Beam)."""
    attention_lambdas: bool = False
    """Differential attention's four ``head_dim`` lambda vectors per layer (DiffLlama)."""
    sliding_window: int | None = None
    """Tokens a sliding-window layer attends to; ``None`` when no layer slides."""
    attention_chunk_size: int | None = None
    """Tokens of one attention chunk in chunked layers (Llama 4 ``attention_chunk_size``):
    a chunked layer attends within its chunk, so its cache holds at most one chunk
    (transformers caches it as a sliding window of that size)."""
    layer_types: tuple[AttentionKind, ...] = ()
    """Per layer: full, sliding or chunked attention. Empty means all full."""
    memory_unmodelled: str = ""
    """A structure of this family the analytical memory model does not follow (Doge's
    per-head dynamic attention mask); non-empty: parameters and weights are exact, but
    training and inference estimates refuse in one line and point at ``vramplan trace``
    (:meth:`check_memory_model`)."""
    attention_experts: int = 0
    """JetMoE's mixture of attention heads: each layer holds this many query/output expert
    pairs (``experts.input_linear``: ``kv_heads x head_dim`` from the hidden state,
    ``experts.output_linear`` back), a router and an output bias; a token runs
    :attr:`MoESpec.experts_per_token` of them (query heads = that x ``kv_heads``) over
    one shared key/value projection. 0: plain attention."""
    prompt_embedding_rows: int = 0
    """Rows of the input embedding beyond the vocabulary (CPM-Ant's ``prompt_types x
    prompt_length`` prompt tokens, Moshi's one extra token; the output head keeps
    ``vocab_size`` rows)."""
    segment_embedding_rows: int = 0
    """A segment-embedding table in a decoder (CPM-Ant ``segment_types``); 0 when none."""
    position_bias_rows: int = 0
    """Rows of one learned ``rows x heads`` relative-position bias table shared by every
    layer (CPM-Ant: ``segment_types^2 + position_bias_num_buckets``); 0 when none."""
    attention_scale_vectors: int = 0
    """Learned ``heads x head_dim`` vectors per attention layer (Dory's ``sqk`` and
    ``s_gate``: 2); 0 when none."""
    mlp_scale_vectors: int = 0
    """Learned MLP-width vectors per MLP (Dory's ``suv_gate`` and ``suv_up``: 2)."""
    head_logit_scale: bool = False
    """A learned per-vocabulary-entry scale on the logits (Dory ``lm_head.logit_scale``)."""
    family_tensors: tuple[FamilyTensor, ...] = ()
    """Parameter tensors of this family's own modules beyond the structure above (Zaya);
    empty for most families."""
    decoder_cross_attention: bool = False
    """Every layer also attends to an encoder's output (the decoders of Whisper and TrOCR:
    ``encoder_attn`` q/k/v/o with the self-attention's biases, and its norm, counted in
    :attr:`norms_per_layer`)."""
    cross_attention_kv_input: int = 0
    """Width of the encoder output the cross-attention keys and values read (TrOCR
    ``cross_attention_hidden_size``); 0: the decoder's hidden size."""
    key_bias: bool = True
    """With :attr:`attention_qkv_bias`, the key projection has one too (False: Whisper's
    ``k_proj`` has none)."""
    image_patch_input: int = 0
    """Fuyu: width of one flattened image patch (``patch_size^2 x num_channels``) that a
    linear layer (``vision_embed_tokens``, with bias) projects straight into the decoder;
    0 when none."""
    residual_scales: int = 0
    """Learned per-channel vectors on the residual stream in each layer (Doge
    ``input_residual`` and ``post_attention_residual``: 2)."""
    dynamic_mask: bool = False
    """Doge's dynamic-mask attention: per KV head a learned ``A`` and a ``dt_proj``
    (values -> one score per KV head) that build a per-head mask."""
    sdpa_supported: bool = True
    """transformers' class of the family runs SDPA; False when it implements eager
    attention only (GPT-NeoX-Japanese, TrOCR, GIT, CPM-Ant: no ``_supports_sdpa``), and an
    SDPA setup then runs eager (:meth:`attention_impl`)."""
    attn_logit_softcapping: bool = False
    """Attention scores pass through ``cap * tanh(scores / cap)`` (Gemma 2), which
    eager attention writes out as separate ``[b, h, s, s]`` tensors."""
    final_logit_softcapping: bool = False
    """Logits pass through ``cap * tanh(logits / cap)`` (Gemma 2), written out as
    separate ``[tokens, vocab]`` tensors."""
    architecture: Architecture = "decoder"
    """Decoder-only, encoder-decoder or encoder-only (:mod:`vramplan.model.encoder_decoder`).
    For an encoder-decoder the main fields describe the decoder stack (``num_layers`` are
    decoder blocks); for an encoder-only model, the encoder stack."""
    encoder: EncoderSpec | None = None
    """The encoder stack of an encoder-decoder model."""
    relative_attention_buckets: int = 0
    """T5's relative position bias: buckets of the ``buckets x heads`` table in the first
    block of each stack; 0 when positions are not relative buckets."""
    type_vocab_size: int = 0
    """BERT/RoBERTa token-type (segment) embedding rows; 0 when none."""
    towers: tuple[TowerSpec, ...] = ()
    """Vision/audio towers of a multimodal checkpoint (counted in parameters and weights)."""
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
            if name != "norms_per_layer":
                _positive(name, getattr(self, name))
        v.integer("norms_per_layer", self.norms_per_layer, 0, _FIELD_MAX["norms_per_layer"], error=ConfigError)
        if self.layer_intermediate_sizes:
            if len(self.layer_intermediate_sizes) != self.num_layers:
                raise ConfigError(f"intermediate_size: expected a list of {self.num_layers} entries, "
                                  f"got {len(self.layer_intermediate_sizes)}")
            for width in self.layer_intermediate_sizes:
                _positive("intermediate_size", width)
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
        for name in ("layer_mixers", "layer_mlps", "layer_indexers", "layer_head_dims", "layer_kv_heads",
                     "kv_shared_layers", "layer_mla", "layer_attention_heads", "sparse_mlp_layers"):
            if getattr(self, name) and len(getattr(self, name)) != self.num_layers:
                raise ConfigError(f"{name}: expected {self.num_layers} entries, got {len(getattr(self, name))}")
        if any(m in ("mamba", "mamba2") for m in self.layer_mixers) and self.ssm is None:
            raise ConfigError("layer_mixers: Mamba layers given but no SSM spec")
        if "short_conv" in self.layer_mixers:
            _positive("conv_L_cache", self.short_conv_kernel)
        if "gated_deltanet" in self.layer_mixers and self.deltanet is None:
            raise ConfigError("layer_mixers: gated delta-net layers given but no delta-net spec")
        if "kda" in self.layer_mixers and self.kda is None:
            raise ConfigError("layer_mixers: Kimi-delta-attention layers given but no KDA spec")
        if "rg_lru" in self.layer_mixers and self.rg_lru is None:
            raise ConfigError("layer_mixers: RG-LRU layers given but no RG-LRU spec")
        if "mlstm" in self.layer_mixers and self.mlstm is None:
            raise ConfigError("layer_mixers: mLSTM layers given but no mLSTM spec")
        if "rwkv" in self.layer_mixers:
            _positive("attention_hidden_size", self.rwkv_attention_size)
        if "lightning_attention" in self.layer_mixers:
            _positive("block_size", self.lightning_block_size)
        if self.ssm_in_attention_layers and self.ssm is None:
            raise ConfigError("ssm_in_attention_layers: attention layers with a Mamba mixer need an SSM spec")
        if self.value_head_dim:
            _positive("v_head_dim", self.value_head_dim)
        for dim in self.layer_head_dims:
            _positive("head_dim", dim)
        for i, kv in enumerate(self.layer_kv_heads):
            _positive("num_key_value_heads", kv)
            if self.num_attention_heads % kv:
                raise ConfigError(f"num_key_value_heads: layer {i} has {kv}, not a divisor of "
                                  f"num_attention_heads={self.num_attention_heads}")
        for heads in self.layer_attention_heads:
            _positive("num_attention_heads", heads)
        if self.layer_mla and self.mla is None:
            raise ConfigError("per_layer_config: per-layer MLA shapes given but no kv_lora_rank")
        if "compressed_attention" in self.layer_mixers and self.compressed_attention is None:
            raise ConfigError("layer_mixers: compressed-attention layers given but no compressed-attention spec")
        if self.per_layer_input_size:
            _positive("hidden_size_per_layer_input", self.per_layer_input_size)
            _positive("vocab_size_per_layer_input", self.per_layer_input_vocab)
        v.integer("altup_num_inputs", self.altup_inputs, 0, 64, error=ConfigError)
        v.integer("backbone_hidden_size", self.draft_backbone_hidden_size, 0, v.HIDDEN_MAX, error=ConfigError)
        v.integer("num_centroids", self.draft_centroids, 0, v.VOCAB_MAX, error=ConfigError)
        v.integer("embedding_extra_rows", self.embedding_extra_rows, 0, v.VOCAB_MAX, error=ConfigError)
        v.integer("laurel_rank", self.laurel_rank, 0, v.HIDDEN_MAX, error=ConfigError)
        v.integer("hc_mult", self.hyper_connection_streams, 0, 64, error=ConfigError)
        v.integer("hc_sinkhorn_iters", self.hyper_connection_sinkhorn_iters, 0, 1000, error=ConfigError)
        v.integer("gated_norm_rank", self.gated_norm_rank, 0, v.HIDDEN_MAX, error=ConfigError)
        if self.indexer is not None and self.mla is not None and self.mla.q_lora_rank is None:
            raise ConfigError("q_lora_rank: the sparse-attention indexer reads the query latent; expected a rank")
        if any(self.layer_indexers) and self.indexer is None:
            raise ConfigError("indexer_types: indexer layers given but no index_n_heads / index_head_dim")
        if "chunked_attention" in self.layer_types:
            _positive("attention_chunk_size", self.attention_chunk_size)
        v.real("partial_rotary_factor", self.partial_rotary_factor, 0, 1, lo_open=True, error=ConfigError)

    # ---- derived facts ----------------------------------------------------------
    @property
    def vision_tower(self) -> TowerSpec | None:
        return next((t for t in self.towers if t.kind == "vision"), None)

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def num_moe_layers(self) -> int:
        return sum(self.moe_layers)

    @property
    def num_dense_layers(self) -> int:
        """Layers whose MLP is a dense MLP (not MoE, not absent)."""
        return sum(self.has_dense_mlp(i) for i in range(self.num_layers))

    def has_dense_mlp(self, index: int) -> bool:
        """Layer ``index`` holds a dense MLP: not an MoE layer, or one whose MoE block
        runs beside the MLP (Gemma 4, LongCat-Flash)."""
        if not self.has_mlp(index):
            return False
        return not self.is_moe_layer(index) or (self.moe is not None and self.moe.beside_dense_mlp)

    def has_mlp(self, index: int) -> bool:
        return not self.layer_mlps or self.layer_mlps[index]

    def mixer(self, index: int) -> MixerKind:
        """What mixes tokens in layer ``index``."""
        return self.layer_mixers[index] if self.layer_mixers else "attention"

    def layer_head_dim(self, index: int) -> int:
        """Head width of layer ``index``."""
        return self.layer_head_dims[index] if self.layer_head_dims else self.head_dim

    def layer_value_head_dim(self, index: int) -> int:
        """Value head width of layer ``index``."""
        return self.value_head_dim or self.layer_head_dim(index)

    def layer_mla_spec(self, index: int) -> MLASpec | None:
        """The MLA shape of layer ``index`` (``None`` without MLA)."""
        return self.layer_mla[index] if self.layer_mla else self.mla

    def layer_num_attention_heads(self, index: int) -> int:
        """Query heads of layer ``index``."""
        return self.layer_attention_heads[index] if self.layer_attention_heads else self.num_attention_heads

    def layer_num_kv_heads(self, index: int) -> int:
        """Key/value heads of layer ``index``."""
        return self.layer_kv_heads[index] if self.layer_kv_heads else self.num_kv_heads

    def is_kv_shared(self, index: int) -> bool:
        """Layer ``index`` reuses an earlier layer's keys and values (no cache of its own)."""
        return bool(self.kv_shared_layers) and self.kv_shared_layers[index]

    def has_indexer(self, index: int) -> bool:
        """Layer ``index`` runs a sparse-attention indexer (and caches its keys)."""
        if self.indexer is None or self.mixer(index) != "attention":
            return False
        return not self.layer_indexers or self.layer_indexers[index]

    @property
    def num_indexer_layers(self) -> int:
        return sum(self.has_indexer(i) for i in range(self.num_layers))

    @property
    def num_cross_attention_layers(self) -> int:
        """Layers that cross-attend to a vision tower's states (Mllama)."""
        return sum(self.mixer(i) == "cross_attention" for i in range(self.num_layers))

    @property
    def num_attention_layers(self) -> int:
        """Layers with softmax attention (the layers that keep a KV cache)."""
        return sum(self.mixer(i) == "attention" for i in range(self.num_layers))

    @property
    def is_hybrid(self) -> bool:
        """Some layer mixes tokens without attention (state-space, linear attention)."""
        return any(m != "attention" for m in self.layer_mixers) or self.ssm_in_attention_layers

    @property
    def attention_kind(self) -> str:
        """"MLA", "MHA", "MQA" or "GQA"."""
        if self.mla is not None:
            return "MLA"
        if self.num_kv_heads == self.num_attention_heads:
            return "MHA"
        return "MQA" if self.num_kv_heads == 1 else "GQA"

    def check_memory_model(self) -> None:
        """Refuse, in one line, an estimate of a family whose memory the analytical model
        does not follow (:attr:`memory_unmodelled`)."""
        if self.moe is not None and not self.moe.experts_per_token:
            raise ConfigError("num_experts_per_tok: null in config.json; transformers builds the model but its "
                              "router cannot pick experts (torch.topk needs k): set it to estimate memory")
        if self.memory_unmodelled:
            raise ConfigError(
                f"model_type {self.model_type!r}: {self.memory_unmodelled} has no analytical memory model; its "
                f"parameters are exact (`vramplan params`), and `vramplan trace` measures its memory "
                "(pip install 'vramplan[exact]')")

    def attention_impl(self, requested: str) -> str:
        """The attention implementation a transformers run of this model uses when
        ``requested`` is asked for: eager in place of SDPA for a class without SDPA."""
        return "eager" if requested == "sdpa" and not self.sdpa_supported else requested

    @property
    def rotary_positions(self) -> bool:
        """Positions enter by rotating queries and keys (False for a learned or sinusoid
        table added to the embeddings)."""
        return not (self.learned_position_embeddings or self.sinusoidal_positions)

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

    def dense_widths(self) -> tuple[int, ...]:
        """MLP width of every dense (non-MoE) layer, in layer order."""
        return tuple(self.layer_intermediate_sizes[i] if self.layer_intermediate_sizes else self.intermediate_size
                     for i in range(self.num_layers) if self.has_dense_mlp(i))

    def is_moe_layer(self, index: int) -> bool:
        return bool(self.moe_layers) and self.moe_layers[index]

    @property
    def quantization_config(self) -> dict:
        """The checkpoint's quantization_config as a dict (empty when not quantized)."""
        return json.loads(self.quantization_json) if self.quantization_json else {}
