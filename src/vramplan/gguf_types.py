"""GGUF / GGML tensor types and llama.cpp's quantization recipes.

Two things live here:

1. :data:`GGML_TYPES`: every GGML storage type as a block of ``block_elements``
   weights stored in ``block_bytes`` bytes, with the C struct that gives that size
   (``ggml/src/ggml-common.h``). Bits per weight = ``8 * block_bytes / block_elements``;
   the scales, mins and sub-block scales are inside the block, so nothing is added.
2. :data:`GGUF_RECIPES`: the file types ``llama-quantize`` writes (``Q4_K_M``,
   ``Q5_K_M``, ``Q3_K_M``, ``Q2_K``, ``IQ4_XS``...). A recipe is a base type plus
   per-tensor choices (``llama_tensor_get_type`` in ``src/llama-quant.cpp``): the
   output head goes to Q6_K, ``attn_v`` and ``ffn_down`` get more bits in some
   layers, 1-D tensors (norms, biases) and the MoE router stay in F32, and a tensor
   whose row length is not a multiple of the k-quant super-block (256) falls back to
   a 32-block type.

Departures from llama-quant: importance-matrix-only rules and per-architecture
exceptions for Falcon and for the 70B-class "attn_v gets Q5_K" rule are not applied
(each moves the file size by about 1%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramplan.errors import InputError
from vramplan.naming import lookup, normalize_name

QK_K = 256
"""Weights in one k-quant super-block (``QK_K`` in ggml-common.h)."""


@dataclass(frozen=True, kw_only=True)
class GgmlType:
    """One GGML storage type: a block of weights and its size."""

    name: str
    """GGML name, upper case (``"Q4_K"``)."""
    block_elements: int
    """Weights per block (1 for plain floats and ints)."""
    block_bytes: int
    """Bytes per block, scales included."""
    layout: str
    """The block struct, field by field, which adds up to ``block_bytes``."""

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight, scales included."""
        return 8 * self.block_bytes / self.block_elements

    @property
    def quantized(self) -> bool:
        return self.block_elements > 1

    def row_bytes(self, num_elements: int) -> int:
        """Bytes of ``num_elements`` weights (``ggml_row_size``); rows must be whole blocks."""
        if num_elements % self.block_elements:
            raise InputError(f"gguf type {self.name}: a row of {num_elements} weights is not a multiple of its "
                             f"block of {self.block_elements}")
        return num_elements // self.block_elements * self.block_bytes


def _t(name: str, elements: int, nbytes: int, layout: str) -> GgmlType:
    return GgmlType(name=name, block_elements=elements, block_bytes=nbytes, layout=layout)


# Sizes from the structs in ggml/src/ggml-common.h; "half" = 2 bytes (ggml_half).
_TYPES: tuple[GgmlType, ...] = (
    _t("F32", 1, 4, "float"),
    _t("F16", 1, 2, "half"),
    _t("BF16", 1, 2, "bfloat16"),
    _t("Q8_0", 32, 34, "half d + int8 qs[32]"),
    _t("Q5_1", 32, 24, "half d, m + uint8 qh[4] + uint8 qs[16]"),
    _t("Q5_0", 32, 22, "half d + uint8 qh[4] + uint8 qs[16]"),
    _t("Q4_1", 32, 20, "half d, m + uint8 qs[16]"),
    _t("Q4_0", 32, 18, "half d + uint8 qs[16]"),
    _t("IQ4_NL", 32, 18, "half d + uint8 qs[16] (non-linear 4-bit grid)"),
    _t("MXFP4", 32, 17, "uint8 e (e8m0 scale) + uint8 qs[16] (e2m1 pairs)"),
    _t("Q6_K", QK_K, 210, "uint8 ql[128] + uint8 qh[64] + int8 scales[16] + half d"),
    _t("Q5_K", QK_K, 176, "half d, dmin + uint8 scales[12] + uint8 qh[32] + uint8 qs[128]"),
    _t("Q4_K", QK_K, 144, "half d, dmin + uint8 scales[12] + uint8 qs[128]"),
    _t("Q3_K", QK_K, 110, "uint8 hmask[32] + uint8 qs[64] + uint8 scales[12] + half d"),
    _t("Q2_K", QK_K, 84, "uint8 scales[16] + uint8 qs[64] + half d, dmin"),
    _t("IQ4_XS", QK_K, 136, "half d + uint16 scales_h + uint8 scales_l[4] + uint8 qs[128]"),
    _t("IQ3_S", QK_K, 110, "half d + uint8 qs[64] + uint8 qh[8] + uint8 signs[32] + uint8 scales[4]"),
    _t("IQ3_XXS", QK_K, 98, "half d + uint8 qs[96]"),
    _t("IQ2_S", QK_K, 82, "half d + uint8 qs[64] + uint8 qh[8] + uint8 scales[8]"),
    _t("IQ2_XS", QK_K, 74, "half d + uint16 qs[32] + uint8 scales[8]"),
    _t("IQ2_XXS", QK_K, 66, "half d + uint16 qs[32]"),
    _t("IQ1_M", QK_K, 56, "uint8 qs[32] + uint8 qh[16] + uint8 scales[8]"),
    _t("IQ1_S", QK_K, 50, "half d + uint8 qs[32] + uint16 qh[8]"),
    _t("TQ2_0", QK_K, 66, "uint8 qs[64] + half d"),
    _t("TQ1_0", QK_K, 54, "uint8 qs[48] + uint8 qh[4] + half d"),
)

GGML_TYPES: dict[str, GgmlType] = {t.name: t for t in _TYPES}
"""GGML type name -> layout."""


def get_ggml_type(name: str, field: str = "gguf type") -> GgmlType:
    """A GGML type by name, case-insensitive (``"q8_0"``, ``"Q4_K"``)."""
    table = {normalize_name(k): v for k, v in GGML_TYPES.items()}
    return lookup(field, normalize_name(name).replace("-", "_"), table)


def k_quant_fallback(t: GgmlType) -> GgmlType:
    """The type llama-quant uses when a row is not a multiple of 256
    (``convert_incompatible_tensor`` in llama-quant.cpp)."""
    fallback = {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "IQ4_XS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL",
                "IQ2_S": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ1_S": "IQ4_NL",
                "TQ1_0": "IQ4_NL", "TQ2_0": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
    return GGML_TYPES[fallback[t.name]] if t.name in fallback else t


# ---- recipes ----------------------------------------------------------------------
TensorKind = Literal["token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "attn_other",
                     "ffn_gate", "ffn_up", "ffn_down", "ffn_gate_inp", "position_embd", "vector"]


@dataclass(frozen=True, kw_only=True)
class GgufRecipe:
    """A llama.cpp file type (``LLAMA_FTYPE_MOSTLY_*``)."""

    name: str
    """As llama-quantize spells it (``"Q4_K_M"``)."""
    base: str
    """GGML type of the tensors no rule singles out."""
    description: str
    """One line for tables."""


def _r(name: str, base: str, description: str) -> GgufRecipe:
    return GgufRecipe(name=name, base=base, description=description)


GGUF_RECIPES: dict[str, GgufRecipe] = {r.name: r for r in (
    _r("F32", "F32", "unquantized fp32"),
    _r("F16", "F16", "unquantized fp16"),
    _r("BF16", "BF16", "unquantized bf16"),
    _r("Q8_0", "Q8_0", "8-bit, block 32"),
    _r("Q6_K", "Q6_K", "6-bit k-quant"),
    _r("Q5_K_M", "Q5_K", "5-bit k-quant; Q6_K in some attn_v/ffn_down layers"),
    _r("Q5_K_S", "Q5_K", "5-bit k-quant"),
    _r("Q5_1", "Q5_1", "5-bit, block 32, with min"),
    _r("Q5_0", "Q5_0", "5-bit, block 32"),
    _r("Q4_K_M", "Q4_K", "4-bit k-quant; Q6_K in some attn_v/ffn_down layers"),
    _r("Q4_K_S", "Q4_K", "4-bit k-quant; Q5_K in the first attn_v/ffn_down layers"),
    _r("Q4_1", "Q4_1", "4-bit, block 32, with min"),
    _r("Q4_0", "Q4_0", "4-bit, block 32"),
    _r("IQ4_NL", "IQ4_NL", "4-bit non-linear, block 32"),
    _r("IQ4_XS", "IQ4_XS", "4.25-bit non-linear k-quant"),
    _r("Q3_K_L", "Q3_K", "3-bit k-quant; Q5_K attn_v/attn_output/ffn_down"),
    _r("Q3_K_M", "Q3_K", "3-bit k-quant; Q4_K/Q5_K attn_v, attn_output, ffn_down"),
    _r("Q3_K_S", "Q3_K", "3-bit k-quant"),
    _r("IQ3_XXS", "IQ3_XXS", "3.06-bit i-quant"),
    _r("Q2_K", "Q2_K", "2-bit k-quant; Q3_K/Q4_K attn_v, attn_output, ffn_down"),
    _r("IQ2_XS", "IQ2_XS", "2.31-bit i-quant"),
    _r("IQ2_XXS", "IQ2_XXS", "2.06-bit i-quant"),
    _r("MXFP4_MOE", "MXFP4", "MXFP4 experts, Q8_0 elsewhere (gpt-oss)"),
)}
"""Recipe name -> recipe."""


def get_recipe(name: str, field: str = "weights") -> GgufRecipe:
    """A recipe by name, case-insensitive, with or without a ``gguf-`` prefix."""
    key = normalize_name(name).removeprefix("gguf-").replace("-", "_")
    table = {normalize_name(k): v for k, v in GGUF_RECIPES.items()}
    return lookup("gguf recipe", key, table, hint=f"{field}: one of {', '.join(GGUF_RECIPES)}")


@dataclass(frozen=True, kw_only=True)
class TensorContext:
    """What llama-quant knows about a tensor when it picks its type."""

    kind: TensorKind
    """The tensor's role in llama.cpp naming."""
    layer: int
    """Index of its layer (0 for tensors outside the blocks)."""
    num_layers: int
    """Layers of the model."""
    row_elements: int
    """Length of one row (``ne[0]``, the input features of a linear)."""
    gqa_ratio: int
    """Query heads per KV head (``n_gqa``)."""
    num_experts: int
    """Routed experts (0 for dense models)."""
    is_expert: bool = False
    """A stacked expert tensor (``ffn_*_exps``, ``ne[2] > 1``)."""


def _more_bits(layer: int, num_layers: int) -> bool:
    """``use_more_bits`` in llama-quant.cpp: the first and last eighth, and every third
    layer between."""
    return layer < num_layers // 8 or layer >= 7 * num_layers // 8 or (layer - num_layers // 8) % 3 == 2


def _k_rule(recipe: str, t: TensorContext) -> str | None:
    """The k-quant recipes' per-tensor overrides (``llama_tensor_get_type``), or None."""
    n, i = t.num_layers, t.layer
    if t.kind == "attn_v":
        if t.num_experts == 8:
            return "Q8_0"
        rules = {"Q2_K": "Q4_K" if t.gqa_ratio >= 4 else "Q3_K",
                 "Q3_K_M": "Q5_K" if i < 2 else "Q4_K", "Q3_K_L": "Q5_K",
                 "Q4_K_M": "Q6_K" if _more_bits(i, n) else None, "Q5_K_M": "Q6_K" if _more_bits(i, n) else None,
                 "Q4_K_S": "Q5_K" if i < 4 else None,
                 "IQ4_XS": "Q5_K" if t.gqa_ratio >= 4 else None, "IQ4_NL": "Q5_K" if t.gqa_ratio >= 4 else None}
        return rules.get(recipe)
    if t.kind == "attn_k" and t.num_experts == 8:
        return "Q8_0"
    if t.kind == "ffn_down":
        rules = {"Q2_K": "Q3_K", "Q3_K_M": "Q5_K" if i < n // 16 else "Q4_K", "Q3_K_L": "Q5_K",
                 "Q4_K_M": "Q6_K" if _more_bits(i, n) else None, "Q5_K_M": "Q6_K" if _more_bits(i, n) else None,
                 "Q4_K_S": "Q5_K" if i < n // 8 else None}
        return rules.get(recipe)
    if t.kind == "attn_output":
        if t.num_experts == 8:
            eight = ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ3_XXS", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS")
            return "Q5_K" if recipe in eight else None
        return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(recipe)
    return None


def tensor_type(recipe: GgufRecipe | str, t: TensorContext) -> GgmlType:
    """The GGML type llama-quantize gives a tensor under ``recipe``.

    Rules (llama-quant.cpp ``llama_tensor_get_type`` and the loop in
    ``llama_model_quantize_impl``): 1-D tensors and the router stay F32; position
    embeddings are not quantized (F16); for unquantized recipes every 2-D tensor is
    the base type; MXFP4_MOE gives experts MXFP4 and other matrices Q8_0; otherwise
    the output head is Q6_K (Q5_K under the 2-bit i-quants, itself under Q8_0),
    the token embedding keeps the base type (Q2_K under the 2-bit i-quants), and
    ``attn_v``, ``attn_k``, ``attn_output``, ``ffn_down`` follow :func:`_k_rule`.
    K-quants fall back to a 32-block type on rows not a multiple of 256.
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    base = GGML_TYPES[recipe.base]
    if t.kind in ("vector", "ffn_gate_inp"):
        return GGML_TYPES["F32"]
    if t.kind == "position_embd":
        return GGML_TYPES["F16"]
    if not base.quantized:
        return base
    if recipe.name == "MXFP4_MOE":
        chosen = "MXFP4" if t.is_expert else "Q8_0"
    elif t.kind == "output":
        tiny = recipe.name in ("IQ2_XXS", "IQ2_XS")
        chosen = "Q5_K" if tiny else recipe.base if recipe.base == "Q8_0" else "Q6_K"
        if t.row_elements % QK_K:
            chosen = "Q8_0"
    elif t.kind == "token_embd" and recipe.name in ("IQ2_XXS", "IQ2_XS"):
        chosen = "Q2_K"
    else:
        chosen = _k_rule(recipe.name, t) or recipe.base
    out = GGML_TYPES[chosen]
    if out.block_elements == QK_K and t.row_elements % QK_K:
        out = k_quant_fallback(out)
    if t.row_elements % out.block_elements:
        return GGML_TYPES["F16"]
    return out


_KIND_BY_MODULE: dict[str, TensorKind] = {
    "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
    "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
    "gate": "ffn_gate_inp", "shared_expert_gate": "ffn_gate_inp",
    "embed_tokens": "token_embd", "embed_positions": "position_embd", "lm_head": "output",
}
"""Hugging Face module -> llama.cpp tensor kind (``convert_hf_to_gguf.py`` tensor map;
``gguf-py/gguf/tensor_mapping.py``). MLA's latent projections are ``attn_other``."""


def tensor_kind(module: str, role: str, *, tied_embeddings: bool) -> TensorKind:
    """The llama.cpp kind of a Hugging Face tensor: 1-D tensors (norms, biases, sinks)
    are ``vector``; a tied embedding is the output head as far as llama-quant is
    concerned (``!has_output && name == token_embd``)."""
    if role in ("norm", "bias", "other"):
        return "vector"
    kind = _KIND_BY_MODULE.get(module, "attn_other")
    if kind == "token_embd" and tied_embeddings:
        return "output"
    return kind
