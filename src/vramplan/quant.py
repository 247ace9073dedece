"""Weight storage formats: plain dtypes and block-quantized formats, with the exact
bytes each stores for one linear weight (elements + scales + zero points + indices),
and which tensors each format leaves unquantized.

Layouts (bytes of one ``(out_features, in_features)`` weight):

- plain dtype: ``out * in * bits / 8``.
- bitsandbytes LLM.int8 (Dettmers et al. 2022; bitsandbytes ``Int8Params``): int8
  weight + one fp32 scale per output row (``SCB``).
- bitsandbytes NF4 / FP4 (Dettmers et al. 2023, QLoRA sec. 3; bitsandbytes
  ``quantize_4bit``): 4-bit codes, blocks of 64 with an fp32 absmax each
  (+0.5 bit/weight). With double quantization the absmaxes are themselves int8 in
  blocks of 256 with one fp32 scale per block, plus one fp32 offset
  (8/64 + 32/(64*256) = 0.127 bit/weight; the QLoRA paper's 0.127).
- GPTQ (Frantar et al. 2022; AutoGPTQ/ExLlama packing): ``qweight`` int32 packing
  ``32/bits`` codes, ``qzeros`` (in/g x out) codes packed into int32, ``scales``
  fp16 (in/g x out), ``g_idx`` int32 (in).
- AWQ (Lin et al. 2023; AutoAWQ GEMM packing): ``qweight`` int32 (in x out*bits/32),
  ``qzeros`` int32 (in/g x out*bits/32), ``scales`` fp16 (in/g x out).
- FP8 e4m3: one byte per weight, plus fp32 scales: per tensor, or per 128 x 128
  block (DeepSeek-V3 ``weight_block_size``, stored as ``weight_scale_inv``).
- MXFP4 (OCP Microscaling v1.0): 4-bit e2m1 codes, one e8m0 (8-bit) scale per 32
  elements: 4.25 bit/weight; gpt-oss ships its experts this way.

Which tensors are quantized: every format here quantizes the linear weights of the
decoder blocks; embeddings, norms and biases stay in the compute dtype; the output
head stays unquantized for bitsandbytes (``llm_int8_skip_modules`` defaults to
``lm_head``), GPTQ and AWQ; bitsandbytes also leaves the routed experts and the
routers of MoE models alone (:data:`BNB_UNCONVERTED_PATHS`); gpt-oss's MXFP4 covers only the experts; FP8 checkpoints
leave the router and the head in bf16. GGUF formats are in :mod:`vramplan.gguf_types`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import ceil

from vramplan.intmath import ceil_div
from vramplan.dtypes import get_dtype
from vramplan.errors import InputError, Remark
from vramplan.naming import lookup, normalize_name

LinearBytes = Callable[[int, int], int]
"""``(out_features, in_features) -> bytes`` of one quantized linear weight."""


@dataclass(frozen=True, kw_only=True)
class WeightFormat:
    """How a checkpoint stores its weights."""

    name: str
    """Canonical name, e.g. ``"nf4-dq"``, ``"gptq-int4-g128"``, ``"bf16"``."""
    description: str
    """One line for tables."""
    linear_bytes: LinearBytes
    """Bytes of one quantized linear weight, scales and indices included."""
    unquantized_dtype: str = "bf16"
    """Dtype of the tensors the format leaves alone (embeddings, norms, biases, skipped modules)."""
    skip_modules: tuple[str, ...] = ("lm_head",)
    """Linear modules (by short name) the format leaves in ``unquantized_dtype``."""
    only_modules: tuple[str, ...] = ()
    """When non-empty, only linear weights whose path starts with one of these are
    quantized (gpt-oss MXFP4: ``mlp.experts``)."""
    skip_paths: tuple[str, ...] = ()
    """Tensor paths (layer index left out, e.g. ``"mlp.experts."``) the format leaves in
    ``unquantized_dtype`` whatever their module name."""
    quantized: bool = True
    """False for plain dtypes (every tensor is stored in the dtype)."""

    def bits_per_weight(self, out_features: int = 4096, in_features: int = 4096) -> float:
        """Average stored bits per element of a linear weight of the given shape."""
        return 8 * self.linear_bytes(out_features, in_features) / (out_features * in_features)

    def quantizes(self, tensor_name: str, role: str) -> bool:
        """Does this format quantize the tensor ``tensor_name`` (a TensorGroup name)?"""
        if not self.quantized or role != "linear":
            return False
        module = tensor_name.split(".")[-2] if "." in tensor_name else tensor_name
        if module in self.skip_modules or tensor_name.startswith(self.skip_paths):
            return False
        if self.only_modules:
            return any(tensor_name.startswith(prefix) for prefix in self.only_modules)
        return True


# ---- layouts -----------------------------------------------------------------------
def plain_bytes(bits: int) -> LinearBytes:
    return lambda out_f, in_f: ceil(out_f * in_f * bits / 8)


def bnb_int8_bytes(out_f: int, in_f: int) -> int:
    return out_f * in_f + 4 * out_f  # int8 codes + fp32 row scale (SCB)


def bnb_4bit_bytes(double_quant: bool, blocksize: int = 64, dq_blocksize: int = 256) -> LinearBytes:
    def layout(out_f: int, in_f: int) -> int:
        n = out_f * in_f
        codes = ceil_div(n, 2)
        blocks = ceil_div(n, blocksize)
        if not double_quant:
            return codes + 4 * blocks  # fp32 absmax per block
        # int8 absmax per block + fp32 scale per dq block + one fp32 offset
        return codes + blocks + 4 * ceil_div(blocks, dq_blocksize) + 4

    return layout


def gptq_bytes(bits: int, group_size: int, desc_act_index: bool = True) -> LinearBytes:
    def layout(out_f: int, in_f: int) -> int:
        g = in_f if group_size in (-1, 0) else group_size
        groups = ceil_div(in_f, g)
        qweight = 4 * ceil_div(in_f * bits, 32) * out_f
        qzeros = 4 * groups * ceil_div(out_f * bits, 32)
        scales = 2 * groups * out_f
        g_idx = 4 * in_f if desc_act_index else 0
        return qweight + qzeros + scales + g_idx

    return layout


def awq_bytes(bits: int, group_size: int) -> LinearBytes:
    def layout(out_f: int, in_f: int) -> int:
        groups = ceil_div(in_f, group_size)
        qweight = 4 * in_f * ceil_div(out_f * bits, 32)
        qzeros = 4 * groups * ceil_div(out_f * bits, 32)
        scales = 2 * groups * out_f
        return qweight + qzeros + scales

    return layout


def fp8_bytes(block: int | None) -> LinearBytes:
    def layout(out_f: int, in_f: int) -> int:
        scales = 1 if block is None else ceil_div(out_f, block) * ceil_div(in_f, block)
        return out_f * in_f + 4 * scales

    return layout


def mxfp4_bytes(out_f: int, in_f: int, block: int = 32) -> int:
    blocks = ceil_div(in_f, block)
    return out_f * blocks * (block // 2) + out_f * blocks  # packed e2m1 codes + one e8m0 byte per block


BNB_UNCONVERTED_PATHS: tuple[str, ...] = ("mlp.experts.", "mlp.gate.")
"""What bitsandbytes leaves in 16 bits on an MoE model. transformers' integration
(``integrations/bitsandbytes.py``, ``replace_with_bnb_linear``, 5.x) swaps only modules
that are ``nn.Linear`` or ``Conv1D`` for ``Linear4bit`` / ``Linear8bitLt``; transformers 5
stores routed experts as fused 3-D parameters (``Qwen3MoeExperts.gate_up_proj``
``[E, 2 i, h]``, ``down_proj`` ``[E, h, i]``) and its routers as modules holding a bare
``weight`` parameter (``Qwen3MoeTopKRouter``, ``MixtralTopKRouter``), so both keep the
load dtype (bitsandbytes issue #1849). Shared experts and Qwen2-MoE's
``shared_expert_gate`` are ``nn.Linear`` and are quantized."""


# ---- the table ------------------------------------------------------------------
def _plain(name: str) -> WeightFormat:
    d = get_dtype(name)
    return WeightFormat(name=d.name, description=f"{d.name}, {d.bits} bits per weight",
                        linear_bytes=plain_bytes(d.bits), unquantized_dtype=d.name, skip_modules=(), quantized=False)


def _formats() -> list[WeightFormat]:
    out = [_plain(n) for n in ("fp32", "fp16", "bf16")]
    out += [
        WeightFormat(name="fp8", description="FP8 e4m3 with one fp32 scale per tensor",
                     linear_bytes=fp8_bytes(None), skip_modules=("lm_head", "gate")),
        WeightFormat(name="fp8-block128", description="FP8 e4m3 with fp32 scales per 128x128 block (DeepSeek-V3)",
                     linear_bytes=fp8_bytes(128), skip_modules=("lm_head", "gate")),
        WeightFormat(name="int8", description="bitsandbytes LLM.int8: int8 + fp32 row scale",
                     linear_bytes=bnb_int8_bytes, unquantized_dtype="fp16", skip_paths=BNB_UNCONVERTED_PATHS),
        WeightFormat(name="nf4", description="bitsandbytes NF4, fp32 absmax per 64",
                     linear_bytes=bnb_4bit_bytes(False), skip_paths=BNB_UNCONVERTED_PATHS),
        WeightFormat(name="nf4-dq", description="bitsandbytes NF4 with double quantization (QLoRA)",
                     linear_bytes=bnb_4bit_bytes(True), skip_paths=BNB_UNCONVERTED_PATHS),
        WeightFormat(name="fp4", description="bitsandbytes FP4, fp32 absmax per 64",
                     linear_bytes=bnb_4bit_bytes(False), skip_paths=BNB_UNCONVERTED_PATHS),
        WeightFormat(name="fp4-dq", description="bitsandbytes FP4 with double quantization",
                     linear_bytes=bnb_4bit_bytes(True), skip_paths=BNB_UNCONVERTED_PATHS),
        WeightFormat(name="mxfp4", description="MXFP4: e2m1 + e8m0 scale per 32 (gpt-oss experts)",
                     linear_bytes=mxfp4_bytes, skip_modules=(), only_modules=("mlp.experts",)),
    ]
    for bits in (4, 8):
        for g in (32, 64, 128):
            out.append(WeightFormat(name=f"gptq-int{bits}-g{g}", description=f"GPTQ int{bits}, group size {g}",
                                    linear_bytes=gptq_bytes(bits, g), unquantized_dtype="fp16"))
        out.append(WeightFormat(name=f"awq-int{bits}-g128" if bits == 4 else "awq-int8-g128",
                                description=f"AWQ int{bits}, group size 128",
                                linear_bytes=awq_bytes(bits, 128), unquantized_dtype="fp16"))
    out.append(WeightFormat(name="awq-int4-g64", description="AWQ int4, group size 64",
                            linear_bytes=awq_bytes(4, 64), unquantized_dtype="fp16"))
    return out


_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "fp8-e4m3": "fp8",
            "e4m3": "fp8", "bnb-int8": "int8", "llm-int8": "int8", "bnb-nf4": "nf4", "qlora": "nf4-dq",
            "nf4-double-quant": "nf4-dq", "gptq": "gptq-int4-g128", "gptq-int4": "gptq-int4-g128",
            "gptq-int8": "gptq-int8-g128", "awq": "awq-int4-g128", "awq-int4": "awq-int4-g128"}

_BNB_4BIT = "bitsandbytes 4-bit, fp32 absmax per 64 weights; QLoRA's double quantization is nf4-dq"
_BNB_8BIT = "bitsandbytes LLM.int8, an fp32 scale per row"
SPELLINGS: dict[str, tuple[str, str]] = {
    **{k: ("nf4", _BNB_4BIT) for k in ("int4", "4bit", "4-bit", "bnb-4bit", "bnb-int4", "load-in-4bit", "nf4")},
    **{k: ("int8", _BNB_8BIT) for k in ("int8", "8bit", "8-bit", "bnb-8bit", "load-in-8bit")},
}
"""What people type for a bit width -> (the format it is read as, that format in words).
A bare bit width means bitsandbytes, the quantization ``from_pretrained`` applies to
any checkpoint (``BitsAndBytesConfig(load_in_4bit=True)`` / ``load_in_8bit``; its FP4 default
stores the same bytes as NF4);
GPTQ, AWQ and GGUF are named by their own spellings. The output says how it was read
(:func:`spelling_note`)."""

FORMATS: dict[str, WeightFormat] = {normalize_name(f.name): f for f in _formats()}
"""Canonical name -> format."""


def spelling_note(text: str, field: str = "weights") -> str | None:
    """How ``text`` is read when it is a bit width rather than a format's own name
    (``"weights int4 read as nf4 (bitsandbytes NF4 ...)"``, a :class:`~vramplan.errors.Remark`
    naming ``field``); ``None`` otherwise."""
    if not isinstance(text, str):
        return None
    found = SPELLINGS.get(normalize_name(text))
    if found is None:
        return None
    name, words = found
    return Remark(f"{field} {text} read as {name} ({words})", fields=(field,))


def get_format(name: str | WeightFormat, field: str = "weights") -> WeightFormat:
    """A weight format by name or alias ("bf16", "nf4-dq", "gptq", "awq-int4-g128")."""
    if isinstance(name, WeightFormat):
        return name
    key = normalize_name(str(name))
    key = _ALIASES.get(key, SPELLINGS.get(key, (key,))[0])
    if key in FORMATS:
        return FORMATS[key]
    table = {**FORMATS, **{k: FORMATS[v] for k, v in _ALIASES.items()}}
    try:
        return lookup("weight format", key, table, hint=f"{field}: one of the formats list_formats lists",
                      fields=("list_formats",))
    except InputError:
        raise


# ---- a checkpoint's own quantization_config ------------------------------------------
def _qc_int(qc: dict, key: str, default: int | None, *aliases: str) -> int:
    for k in (key, *aliases):
        if k in qc and qc[k] is not None:
            value = qc[k]
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"quantization_config.{k}: expected an integer, got {value!r}")
            return value
    if default is None:
        raise InputError(f"quantization_config.{key}: missing (needed for quant_method {qc.get('quant_method')!r})")
    return default


def _skip_modules(qc: dict, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Short module names a checkpoint keeps unquantized (``["lm_head", "model.layers.*.mlp.gate"]``
    -> ``("lm_head", "gate")``)."""
    raw = qc.get(key)
    if raw is None:
        return default
    if not isinstance(raw, list):
        raise InputError(f"quantization_config.{key}: expected a list of module names, got {raw!r}")
    return tuple(str(m).rsplit(".", 1)[-1] for m in raw)


def _gptq(qc: dict, dtype: str) -> WeightFormat:
    bits = _qc_int(qc, "bits", None)
    if bits not in (2, 3, 4, 8):
        raise InputError(f"quantization_config.bits: expected 2, 3, 4 or 8 for GPTQ, got {bits}")
    group = _qc_int(qc, "group_size", 128)
    desc = bool(qc.get("desc_act", False))
    skip = () if qc.get("lm_head") else ("lm_head",)
    return WeightFormat(name=f"gptq-int{bits}-g{group}", linear_bytes=gptq_bytes(bits, group),
                        description=f"GPTQ int{bits}, group size {group}{', act-order' if desc else ''} "
                                    "(qweight + qzeros + fp16 scales + g_idx)",
                        unquantized_dtype=dtype, skip_modules=skip)


def _awq(qc: dict, dtype: str) -> WeightFormat:
    bits = _qc_int(qc, "bits", None, "w_bit")
    if bits not in (4, 8):
        raise InputError(f"quantization_config.bits: expected 4 or 8 for AWQ, got {bits}")
    group = _qc_int(qc, "group_size", 128, "q_group_size")
    skip = _skip_modules(qc, "modules_to_not_convert", ()) + ("lm_head",)
    return WeightFormat(name=f"awq-int{bits}-g{group}", linear_bytes=awq_bytes(bits, group),
                        description=f"AWQ int{bits}, group size {group} (qweight + qzeros + fp16 scales)",
                        unquantized_dtype=dtype, skip_modules=skip)


def _bnb(qc: dict, dtype: str) -> WeightFormat:
    skip = _skip_modules(qc, "llm_int8_skip_modules", ("lm_head",))
    if qc.get("load_in_8bit"):
        return WeightFormat(name="int8", description="bitsandbytes LLM.int8: int8 + fp32 row scale",
                            linear_bytes=bnb_int8_bytes, unquantized_dtype=dtype, skip_modules=skip,
                            skip_paths=BNB_UNCONVERTED_PATHS)
    if not qc.get("load_in_4bit"):
        raise InputError("quantization_config: bitsandbytes config sets neither load_in_4bit nor load_in_8bit")
    kind = str(qc.get("bnb_4bit_quant_type", "fp4")).lower()
    if kind not in ("nf4", "fp4"):
        raise InputError(f"quantization_config.bnb_4bit_quant_type: expected 'nf4' or 'fp4', got {kind!r}")
    dq = bool(qc.get("bnb_4bit_use_double_quant", False))
    return WeightFormat(name=f"{kind}{'-dq' if dq else ''}", linear_bytes=bnb_4bit_bytes(dq),
                        description=f"bitsandbytes {kind.upper()}{' with double quantization' if dq else ''}",
                        unquantized_dtype=dtype, skip_modules=skip, skip_paths=BNB_UNCONVERTED_PATHS)


def _fp8(qc: dict, dtype: str) -> WeightFormat:
    block = qc.get("weight_block_size")
    if block is not None and (not isinstance(block, list) or len(block) != 2 or block[0] != block[1]):
        raise InputError(f"quantization_config.weight_block_size: expected [N, N], got {block!r}")
    size = None if block is None else int(block[0])
    skip = _skip_modules(qc, "modules_to_not_convert", ("lm_head", "gate"))
    return WeightFormat(name="fp8" if size is None else f"fp8-block{size}", linear_bytes=fp8_bytes(size),
                        description="FP8 e4m3 + fp32 scale " + ("per tensor" if size is None
                                                                 else f"per {size}x{size} block"),
                        unquantized_dtype=dtype, skip_modules=skip)


def _mxfp4(qc: dict, dtype: str) -> WeightFormat:
    # gpt-oss's config.json names no torch_dtype (so readers fall back to fp32), but its
    # safetensors hold every unconverted tensor in bf16 (the checkpoint's header).
    dtype = "bf16" if dtype == "fp32" else dtype
    return WeightFormat(name="mxfp4", description="MXFP4: e2m1 + e8m0 scale per 32 (experts only)",
                        linear_bytes=mxfp4_bytes, unquantized_dtype=dtype, skip_modules=(),
                        only_modules=("mlp.experts",))


def fp8_channel_bytes(out_f: int, in_f: int) -> int:
    """FP8 e4m3 weight with one fp32 scale per output channel (compressed-tensors
    ``strategy: channel``, e.g. the ``*-FP8-dynamic`` checkpoints)."""
    return out_f * in_f + 4 * out_f


def packed_int_bytes(bits: int, group_size: int, symmetric: bool) -> LinearBytes:
    """compressed-tensors ``pack-quantized``: ``weight_packed`` int32 of ``32/bits``
    codes along the input, ``weight_scale`` bf16 per (row, group), ``weight_zero_point``
    packed like the codes when asymmetric, and the int64 ``weight_shape`` pair."""
    def layout(out_f: int, in_f: int) -> int:
        groups = ceil_div(in_f, group_size)
        packed = 4 * out_f * ceil_div(in_f * bits, 32)
        scales = 2 * out_f * groups
        zeros = 0 if symmetric else 4 * ceil_div(out_f * bits, 32) * groups
        return packed + scales + zeros + 2 * 8

    return layout


def _compressed_tensors(qc: dict, dtype: str) -> WeightFormat:
    groups = qc.get("config_groups") or {}
    if not isinstance(groups, dict) or not groups:
        raise InputError("quantization_config.config_groups: expected at least one group (compressed-tensors)")
    weights = next(iter(groups.values())).get("weights") or {}
    bits, kind = weights.get("num_bits"), weights.get("type")
    strategy = weights.get("strategy", "tensor")
    skip = _skip_modules(qc, "ignore", ("lm_head",))
    if kind == "float" and bits == 8:
        block = weights.get("block_structure")
        if strategy == "block" and block:
            size = int(block[0])
            return WeightFormat(name=f"fp8-block{size}", linear_bytes=fp8_bytes(size), skip_modules=skip,
                                description=f"FP8 e4m3 + fp32 scale per {size}x{size} block (compressed-tensors)",
                                unquantized_dtype=dtype)
        layout, where = (fp8_channel_bytes, "channel") if strategy == "channel" else (fp8_bytes(None), "tensor")
        return WeightFormat(name=f"fp8-{where}", linear_bytes=layout, unquantized_dtype=dtype, skip_modules=skip,
                            description=f"FP8 e4m3 + fp32 scale per {where} (compressed-tensors)")
    if kind == "int" and bits in (4, 8):
        group = int(weights.get("group_size") or 128)
        symmetric = bool(weights.get("symmetric", True))
        return WeightFormat(name=f"w{bits}a16-g{group}", linear_bytes=packed_int_bytes(bits, group, symmetric),
                            description=f"int{bits} packed, bf16 scale per {group} (compressed-tensors)",
                            unquantized_dtype=dtype, skip_modules=skip)
    raise InputError(f"quantization_config.config_groups: weights of {bits}-bit {kind!r} are not supported "
                     "(supported: 8-bit float, 4/8-bit int)")


_QUANT_METHODS = {"gptq": _gptq, "awq": _awq, "bitsandbytes": _bnb, "fp8": _fp8, "mxfp4": _mxfp4,
                  "compressed-tensors": _compressed_tensors}


def format_from_quantization_config(qc: dict, *, dtype: str = "bf16") -> WeightFormat:
    """The :class:`WeightFormat` a checkpoint declares in ``config.json``'s
    ``quantization_config`` (transformers' quantizer configs: ``GPTQConfig``,
    ``AwqConfig``, ``BitsAndBytesConfig``, ``FineGrainedFP8Config``, ``Mxfp4Config``,
    ``CompressedTensorsConfig``).
    Tensors the format leaves alone are stored in ``dtype`` (the checkpoint's
    ``torch_dtype``). Unknown methods raise with the supported list."""
    method = str(qc.get("quant_method", "")).lower()
    if method not in _QUANT_METHODS:
        raise InputError(f"quantization_config.quant_method: {method!r} is not supported "
                         f"(supported: {', '.join(_QUANT_METHODS)}); pass weights to choose a format",
                         fields=("weights",))
    return _QUANT_METHODS[method](qc, dtype)
