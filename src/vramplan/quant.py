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
``lm_head``), GPTQ and AWQ; gpt-oss's MXFP4 covers only the experts; FP8 checkpoints
leave the router and the head in bf16. GGUF formats are in :mod:`vramplan.gguf_types`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import ceil

from vramplan.dtypes import get_dtype
from vramplan.errors import InputError
from vramplan.naming import lookup, normalize_name

LinearBytes = Callable[[int, int], int]
"""``(out_features, in_features) -> bytes`` of one quantized linear weight."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


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
        if module in self.skip_modules:
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
        codes = _cdiv(n, 2)
        blocks = _cdiv(n, blocksize)
        if not double_quant:
            return codes + 4 * blocks  # fp32 absmax per block
        # int8 absmax per block + fp32 scale per dq block + one fp32 offset
        return codes + blocks + 4 * _cdiv(blocks, dq_blocksize) + 4

    return layout


def gptq_bytes(bits: int, group_size: int, desc_act_index: bool = True) -> LinearBytes:
    def layout(out_f: int, in_f: int) -> int:
        g = in_f if group_size in (-1, 0) else group_size
        groups = _cdiv(in_f, g)
        qweight = 4 * _cdiv(in_f * bits, 32) * out_f
        qzeros = 4 * groups * _cdiv(out_f * bits, 32)
        scales = 2 * groups * out_f
        g_idx = 4 * in_f if desc_act_index else 0
        return qweight + qzeros + scales + g_idx

    return layout


def awq_bytes(bits: int, group_size: int) -> LinearBytes:
    def layout(out_f: int, in_f: int) -> int:
        groups = _cdiv(in_f, group_size)
        qweight = 4 * in_f * _cdiv(out_f * bits, 32)
        qzeros = 4 * groups * _cdiv(out_f * bits, 32)
        scales = 2 * groups * out_f
        return qweight + qzeros + scales

    return layout


def fp8_bytes(block: int | None) -> LinearBytes:
    def layout(out_f: int, in_f: int) -> int:
        scales = 1 if block is None else _cdiv(out_f, block) * _cdiv(in_f, block)
        return out_f * in_f + 4 * scales

    return layout


def mxfp4_bytes(out_f: int, in_f: int, block: int = 32) -> int:
    blocks = _cdiv(in_f, block)
    return out_f * blocks * (block // 2) + out_f * blocks  # packed e2m1 codes + one e8m0 byte per block


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
                     linear_bytes=bnb_int8_bytes, unquantized_dtype="fp16"),
        WeightFormat(name="nf4", description="bitsandbytes NF4, fp32 absmax per 64",
                     linear_bytes=bnb_4bit_bytes(False)),
        WeightFormat(name="nf4-dq", description="bitsandbytes NF4 with double quantization (QLoRA)",
                     linear_bytes=bnb_4bit_bytes(True)),
        WeightFormat(name="fp4", description="bitsandbytes FP4, fp32 absmax per 64",
                     linear_bytes=bnb_4bit_bytes(False)),
        WeightFormat(name="fp4-dq", description="bitsandbytes FP4 with double quantization",
                     linear_bytes=bnb_4bit_bytes(True)),
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

FORMATS: dict[str, WeightFormat] = {normalize_name(f.name): f for f in _formats()}
"""Canonical name -> format."""


def get_format(name: str | WeightFormat, field: str = "--weights") -> WeightFormat:
    """A weight format by name or alias ("bf16", "nf4-dq", "gptq", "awq-int4-g128")."""
    if isinstance(name, WeightFormat):
        return name
    key = normalize_name(str(name))
    key = _ALIASES.get(key, key)
    if key in FORMATS:
        return FORMATS[key]
    table = {**FORMATS, **{k: FORMATS[v] for k, v in _ALIASES.items()}}
    try:
        return lookup("weight format", key, table, hint=f"{field}: see `vramplan infer --list-formats`")
    except InputError:
        raise
