"""KV cache: the keys and values attention keeps for every token it has seen.

Per layer and token, one rank of ``tp`` holds

- MHA / GQA / MQA: ``2 (K and V) x kv_heads_per_rank x head_dim`` elements, with the
  config's own ``head_dim`` (Qwen3, Gemma: not hidden / heads). Under TP the KV heads
  are split; when ``tp`` exceeds them each rank keeps one head (replicated, as vLLM's
  ``QKVParallelLinear`` does).
- MLA, as a latent cache (vLLM, llama.cpp, SGLang): ``kv_lora_rank + qk_rope_head_dim``
  elements, one shared "head" (DeepSeek-V2 paper, sec. 2.1.2 and Table 1:
  ``(d_c + d_h^R) l`` elements per token); engines keep it whole on every TP rank.
- MLA, expanded (transformers' ``DeepseekV3Attention`` caches decompressed keys and
  values): ``heads x (qk_head_dim + v_head_dim)`` elements.
- Per-layer shapes (Gemma 4's head widths and KV heads, dots3's per-layer MLA ranks) and
  layers that reuse an earlier layer's keys and values (Gemma 3n / Gemma 4
  ``num_kv_shared_layers``: no cache of their own) are summed layer by layer.

- DeepSeek sparse attention (DeepSeek-V3.2, GLM-5) adds the indexer's key cache: one
  ``index_head_dim`` row per token in each indexer layer.

- DeepSeek-V4's compressed attention (:func:`compressed_attention_bytes`): one shared
  key=value head over a sliding window, plus compressed entries (one per
  ``compress_rate`` tokens) and, in the compressed-sparse layers, the indexer's own
  compressed keys; the compressors' partial-window buffers and overlap states too.

Tokens held per sequence: a full-attention layer holds the whole context, a
sliding-window layer at most ``sliding_window`` tokens (``ModelSpec.attention_kinds()``;
Mistral v0.1, Gemma 2/3, gpt-oss), a chunked layer (Llama 4) at most one
``attention_chunk_size`` chunk (transformers' cache keeps chunked layers as sliding
windows of the chunk size, cache_utils.py). Paged engines round each sequence's tokens up to
whole blocks (vLLM ``block_size`` 16).

Cache element formats (:data:`KV_DTYPES`): fp32/fp16/bf16; fp8 (e4m3/e5m2, vLLM
``--kv-cache-dtype fp8``: one scalar scale per layer, negligible); int8 (one byte per
element); llama.cpp's ``q8_0``/``q4_0``/``q4_1``/``q5_0``/``q5_1``/``iq4_nl``, stored
in GGML blocks of 32 with their scales (:mod:`vramplan.gguf_types`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramplan.intmath import ceil_div, round_up
from vramplan.errors import InputError, Remark
from vramplan.gguf_types import GGML_TYPES
from vramplan.memory.recurrent_state import recurrent_state_bytes
from vramplan.memory.weights import kv_heads_per_rank
from vramplan.model.spec import ModelSpec
from vramplan.validate import BATCH_MAX, LENGTH_MAX, integer
from vramplan.naming import lookup, normalize_name

MLACache = Literal["latent", "expanded"]

K_AND_V = 2
"""A layer caches keys and values: two tensors of the same shape."""


@dataclass(frozen=True, kw_only=True)
class KVDType:
    """How one cache element is stored: blocks of ``block_elements`` in ``block_bytes``."""

    name: str
    """Canonical name (``"fp16"``, ``"q8_0"``)."""
    block_elements: int
    """Elements per block (1 for plain types)."""
    block_bytes: int
    """Bytes per block, scales included."""
    note: str
    """Layout and source."""

    def row_bytes(self, num_elements: int) -> int:
        """Bytes of ``num_elements`` elements (whole blocks; llama.cpp requires the row
        to be a multiple of the block, :func:`kv_cache_bytes` checks)."""
        return ceil_div(num_elements, self.block_elements) * self.block_bytes


def _ggml(name: str) -> KVDType:
    t = GGML_TYPES[name.upper()]
    return KVDType(name=name, block_elements=t.block_elements, block_bytes=t.block_bytes,
                   note=f"llama.cpp --cache-type {name}: {t.layout} per {t.block_elements} (ggml-common.h)")


KV_DTYPES: dict[str, KVDType] = {d.name: d for d in (
    KVDType(name="fp32", block_elements=1, block_bytes=4, note="fp32, 4 bytes per element"),
    KVDType(name="fp16", block_elements=1, block_bytes=2, note="fp16, 2 bytes per element"),
    KVDType(name="bf16", block_elements=1, block_bytes=2, note="bf16, 2 bytes per element"),
    KVDType(name="fp8", block_elements=1, block_bytes=1,
            note="fp8 e4m3, 1 byte per element (vLLM --kv-cache-dtype fp8; per-layer scalar scales)"),
    KVDType(name="fp8_e5m2", block_elements=1, block_bytes=1, note="fp8 e5m2, 1 byte per element"),
    KVDType(name="int8", block_elements=1, block_bytes=1, note="int8, 1 byte per element"),
    _ggml("q8_0"), _ggml("q5_1"), _ggml("q5_0"), _ggml("q4_1"), _ggml("q4_0"), _ggml("iq4_nl"),
)}
"""Cache element formats by name."""

_KV_ALIASES = {"float16": "fp16", "half": "fp16", "f16": "fp16", "bfloat16": "bf16", "float32": "fp32",
               "f32": "fp32", "fp8-e4m3": "fp8", "fp8_e4m3": "fp8", "e4m3": "fp8", "fp8-e5m2": "fp8_e5m2",
               "e5m2": "fp8_e5m2", "auto": "bf16"}


def get_kv_dtype(name: str | KVDType) -> KVDType:
    """A cache dtype by name (``"fp16"``, ``"fp8"``, ``"q8_0"``); did-you-mean on error."""
    if isinstance(name, KVDType):
        return name
    key = normalize_name(str(name))
    key = normalize_name(_KV_ALIASES.get(key.replace("-", "_"), key))
    table = {normalize_name(k): v for k, v in KV_DTYPES.items()}
    return lookup("kv cache dtype", key, table, hint=f"kv_dtype: one of {', '.join(KV_DTYPES)}")


def check_engine_kv_dtype(dtype: KVDType, engine: str, allowed: tuple[str, ...]) -> None:
    """Refuse a cache dtype the engine does not offer (one line naming its choices)."""
    if dtype.name not in allowed:
        raise InputError(f"kv_dtype {dtype.name}: not a {engine} cache type; expected one of {', '.join(allowed)}",
                         fields=("kv_dtype",))


def kv_row_elements(spec: ModelSpec, *, tp: int = 1, mla_cache: MLACache = "latent",
                    layer: int | None = None) -> tuple[int, int]:
    """(elements of one cached K row, of one cached V row) per token and layer on one
    TP rank; of layer ``layer`` when layers differ (Gemma 4), else of every layer. MLA's
    latent cache is one row of ``kv_lora_rank + qk_rope_head_dim`` (V is read from the
    same latent: second element 0)."""
    mla = spec.mla if layer is None else spec.layer_mla_spec(layer)
    if mla is not None:
        if mla_cache == "latent":
            return mla.kv_lora_rank + mla.qk_rope_head_dim, 0
        heads = (spec.num_attention_heads if layer is None else spec.layer_num_attention_heads(layer)) // tp
        return heads * mla.qk_head_dim, heads * mla.v_head_dim
    if layer is None:
        heads, k_dim, v_dim = kv_heads_per_rank(spec, tp), spec.head_dim, spec.value_head_dim or spec.head_dim
    else:
        heads, k_dim, v_dim = (_layer_kv_heads_per_rank(spec, layer, tp), spec.layer_head_dim(layer),
                               spec.layer_value_head_dim(layer))
    return heads * k_dim, heads * v_dim


def _layer_kv_heads_per_rank(spec: ModelSpec, layer: int, tp: int) -> int:
    """Layer ``layer``'s KV heads on one rank (one replicated head when tp exceeds them)."""
    return max(1, spec.layer_num_kv_heads(layer) // tp)


def _per_layer_geometry(spec: ModelSpec) -> bool:
    return bool(spec.layer_head_dims or spec.layer_kv_heads or spec.kv_shared_layers or spec.layer_mla
                or spec.layer_attention_heads)


def layer_kv_bytes_per_token(spec: ModelSpec, layer: int, dtype: str | KVDType = "fp16", *, tp: int = 1,
                             mla_cache: MLACache = "latent") -> int:
    """Bytes layer ``layer`` caches per token on one rank: 0 for a layer without
    attention or one that reads an earlier layer's KV (Gemma 4 ``num_kv_shared_layers``),
    else its K and V rows with its own head width and KV heads."""
    if spec.mixer(layer) != "attention" or spec.is_kv_shared(layer):
        return 0
    d = get_kv_dtype(dtype)
    k, v = kv_row_elements(spec, tp=tp, mla_cache=mla_cache, layer=layer)
    return d.row_bytes(k) + (d.row_bytes(v) if v else 0)


def kv_bytes_per_token_per_layer(spec: ModelSpec, dtype: str | KVDType = "fp16", *, tp: int = 1,
                                 mla_cache: MLACache = "latent") -> int:
    """Bytes one TP rank caches per token in one layer (K row + V row in ``dtype``)."""
    d = get_kv_dtype(dtype)
    k, v = kv_row_elements(spec, tp=tp, mla_cache=mla_cache)
    return d.row_bytes(k) + (d.row_bytes(v) if v else 0)


def kv_bytes_per_token(spec: ModelSpec, dtype: str | KVDType = "fp16", *, tp: int = 1,
                       mla_cache: MLACache = "latent") -> int:
    """Bytes per token over all layers on one rank, before any window cap (what a
    token costs in a context shorter than every window). Llama-2-7B in fp16:
    2 x 32 layers x 32 heads x 128 x 2 B = 524,288 B = 512 KiB."""
    if _per_layer_geometry(spec):
        attention = sum(layer_kv_bytes_per_token(spec, i, dtype, tp=tp, mla_cache=mla_cache)
                        for i in range(spec.num_layers))
    else:
        attention = spec.num_attention_layers * kv_bytes_per_token_per_layer(spec, dtype, tp=tp, mla_cache=mla_cache)
    return attention + spec.num_indexer_layers * indexer_bytes_per_token_per_layer(spec, dtype) + \
        _compressed_bytes_per_token(spec, dtype)


def _compressed_bytes_per_token(spec: ModelSpec, dtype: str | KVDType) -> int:
    """DeepSeek-V4: what one more token costs inside the window: its key=value row in
    every layer (keys and values apart in the sliding-only layers), and its share of a
    compressed entry (rounded up to a whole byte per layer)."""
    ca = spec.compressed_attention
    if ca is None:
        return 0
    d = get_kv_dtype(dtype)
    total = 0
    for i in range(spec.num_layers):
        if spec.mixer(i) != "compressed_attention":
            continue
        rate = ca.layer_rates[i]
        total += d.row_bytes(ca.head_dim) * (1 if rate else K_AND_V)
        if rate:
            width = ca.head_dim + (ca.index_head_dim if ca.is_indexed(i) else 0)
            total += ceil_div(d.row_bytes(width), rate)
    return total


def compressed_attention_bytes(spec: ModelSpec, *, context_tokens: int, dtype: str | KVDType = "fp16",
                               sliding_extra_tokens: int = 0) -> int:
    """Bytes one sequence of ``context_tokens`` keeps in DeepSeek-V4's compressed-attention
    layers (transformers ``DeepseekV4HCACache`` / ``DeepseekV4CSACache``), per layer:

    - the sliding window: ``min(T, window + extra)`` rows of ``head_dim``, keys serving as
      values (sliding-only layers use the generic window cache: keys and values apart);
    - with a rate ``r``: ``floor(T / r)`` compressed entries of ``head_dim``; the
      partial window's projected tokens and gates (``2 head_dim`` wide in the
      compressed-sparse layers, which pool two overlapping series), reserved at the most
      a sequence needs, ``min(T, r - 1)`` tokens (transformers holds ``T mod r``: the
      same whenever ``T < r`` or ``T = -1 mod r``; reserving the most keeps more context
      from ever costing less); and in those layers, once a window closed, the last
      window's first series and gates (``2 r head_dim``);
    - compressed-sparse layers also keep the indexer's compressed keys the same way
      (``index_head_dim`` wide).

    DeepSeek-V4 technical report sec. 2.3; modeling_deepseek_v4.py."""
    ca = spec.compressed_attention
    if ca is None:
        return 0
    d, t = get_kv_dtype(dtype), context_tokens
    elements = 0
    for i in range(spec.num_layers):
        if spec.mixer(i) != "compressed_attention":
            continue
        rate = ca.layer_rates[i]
        window = min(t, spec.sliding_window + sliding_extra_tokens) if spec.sliding_window else t
        elements += window * ca.head_dim * (1 if rate else K_AND_V)
        if not rate:
            continue
        widths = [ca.head_dim] + ([ca.index_head_dim] if ca.is_indexed(i) else [])
        for width in widths:
            series = 2 if ca.is_indexed(i) else 1
            elements += (t // rate) * width + 2 * min(t, rate - 1) * series * width
            if ca.is_indexed(i) and t >= rate:
                elements += 2 * rate * width
    return d.row_bytes(elements)


def indexer_bytes_per_token_per_layer(spec: ModelSpec, dtype: str | KVDType = "fp16") -> int:
    """Bytes the sparse-attention indexer of one indexer layer caches per token: one
    ``index_head_dim`` key (transformers ``DynamicIndexedLayer.indexer_keys``,
    ``[batch, seq, index_head_dim]``), single-head, so whole on every TP rank; 0 when
    the model has no indexer."""
    if spec.indexer is None:
        return 0
    return get_kv_dtype(dtype).row_bytes(spec.indexer.head_dim)


def tokens_held(spec: ModelSpec, layer: int, context_tokens: int, sliding_extra_tokens: int = 0) -> int:
    """Tokens layer ``layer`` keeps for a sequence of ``context_tokens``: all of them,
    or in a sliding layer at most ``sliding_window + sliding_extra_tokens``.

    The extra is the engine's: transformers' ``DynamicSlidingWindowLayer`` keeps a view
    of ``window - 1`` past tokens on a ``window``-token storage in decode: 0 (and the
    whole prompt right after prefill); llama.cpp's SWA cache keeps ``n_swa`` plus one
    micro-batch: ``+n_ubatch``."""
    if spec.mixer(layer) != "attention":
        return 0  # state-space / linear-attention layers keep a fixed state instead (recurrent_state.py)
    kind = spec.attention_kinds()[layer]
    if kind == "sliding_attention" and spec.sliding_window is not None:
        return min(context_tokens, spec.sliding_window + sliding_extra_tokens)
    if kind == "chunked_attention" and spec.attention_chunk_size is not None:
        return min(context_tokens, spec.attention_chunk_size + sliding_extra_tokens)
    return context_tokens


def round_to_blocks(tokens: int, block_size: int | None) -> int:
    """Tokens rounded up to whole cache blocks (paged attention), or as is."""
    if block_size is None or block_size <= 1:
        return tokens
    return round_up(tokens, block_size)


def kv_cache_bytes(spec: ModelSpec, *, context_tokens: int, batch: int, dtype: str | KVDType = "fp16",
                   tp: int = 1, block_size: int | None = None, mla_cache: MLACache = "latent",
                   sliding_extra_tokens: int = 0) -> int:
    """Bytes of the KV cache on one TP rank for ``batch`` sequences of ``context_tokens``
    tokens each: sum over attention layers of ``tokens_held x bytes per token and
    layer``, each sequence's tokens rounded to whole ``block_size`` blocks when paged,
    sliding layers capped as :func:`tokens_held` says; the sparse-attention indexer's
    keys in its layers (:func:`indexer_bytes_per_token_per_layer`); plus, in hybrid models, the fixed
    recurrent state of the state-space / linear-attention layers
    (:mod:`vramplan.memory.recurrent_state`)."""
    integer("context_tokens", context_tokens, 1, LENGTH_MAX)
    integer("batch", batch, 1, BATCH_MAX)
    d = get_kv_dtype(dtype)
    layers = range(spec.num_layers) if _per_layer_geometry(spec) else (None,)
    for layer in layers:
        for width in kv_row_elements(spec, tp=tp, mla_cache=mla_cache, layer=layer):
            if width and width % d.block_elements:
                raise InputError(f"kv_dtype {d.name}: a cache row of {width} elements is not a multiple of its "
                                 f"block of {d.block_elements}", fields=("kv_dtype",))
    held = [round_to_blocks(tokens_held(spec, i, context_tokens, sliding_extra_tokens), block_size)
            for i in range(spec.num_layers)]
    if _per_layer_geometry(spec):
        attention = sum(t * layer_kv_bytes_per_token(spec, i, d, tp=tp, mla_cache=mla_cache)
                        for i, t in enumerate(held))
    else:
        attention = sum(held) * kv_bytes_per_token_per_layer(spec, d, tp=tp, mla_cache=mla_cache)
    indexer = indexer_bytes_per_token_per_layer(spec, d) * sum(t for i, t in enumerate(held) if spec.has_indexer(i))
    compressed = compressed_attention_bytes(spec, context_tokens=context_tokens, dtype=d,
                                            sliding_extra_tokens=sliding_extra_tokens)
    return batch * (attention + indexer + compressed) + recurrent_state_bytes(
        spec, batch=batch, conv_bytes=_conv_bytes(d), tp=tp)


def _conv_bytes(dtype: KVDType) -> int:
    """Conv states are kept in the compute dtype: the cache dtype when it is a plain
    float type (transformers keeps both in the model dtype), else 2 bytes (bf16)."""
    return dtype.block_bytes if dtype.block_elements == 1 and dtype.block_bytes >= 2 else 2


def kv_replication_warning(spec: ModelSpec, tp: int) -> str | None:
    """A warning when ``tp`` exceeds the KV heads (each rank then keeps a replica)."""
    if spec.mla is None and tp > spec.num_kv_heads and spec.num_attention_layers:
        return Remark(f"tp {tp} exceeds the {spec.num_kv_heads} KV heads: each rank keeps one KV head, replicated "
                      f"{tp // spec.num_kv_heads}x across ranks (vLLM does the same)", fields=("tp",))
    if spec.mla is not None and tp > 1:
        return Remark(f"MLA latent KV cache is not split by tp {tp}: every rank holds it whole (vLLM MLA backend)",
                      fields=("tp",))
    return None
