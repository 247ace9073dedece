"""Quantized weight layouts: the bytes each format stores, counted from real tensors.

For each format the test builds, with torch, the tensors the format's checkpoints
hold for one linear layer (packing real codes where the packing decides the shape)
and compares their ``nbytes`` with :mod:`vramplan.quant`. Other oracles: the QLoRA
paper's bits per parameter, and the published size of gpt-oss-20b's checkpoint.
"""

from __future__ import annotations

import math

import pytest

from vramplan.errors import InputError
from vramplan.memory.weights import resolve_weights, weight_split_components
from vramplan.model import resolve_model
from vramplan.quant import (
    awq_bytes,
    bnb_4bit_bytes,
    bnb_int8_bytes,
    format_from_quantization_config,
    fp8_bytes,
    gptq_bytes,
    mxfp4_bytes,
)

torch = pytest.importorskip("torch")

SHAPES = [(256, 512), (1024, 4096), (4096, 1408), (384, 1152)]


def _pack_int32(codes: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Pack ``32 // bits`` codes into each int32 along ``dim`` (AutoGPTQ / AutoAWQ)."""
    per_word = 32 // bits
    codes = codes.movedim(dim, 0).to(torch.int64)
    pad = (-codes.shape[0]) % per_word
    codes = torch.cat([codes, codes.new_zeros((pad, *codes.shape[1:]))])
    codes = codes.reshape(-1, per_word, *codes.shape[1:])
    words = sum(codes[:, i] << (bits * i) for i in range(per_word))
    unsigned = words.remainder(2**32)
    signed = torch.where(unsigned >= 2**31, unsigned - 2**32, unsigned).to(torch.int32)
    return signed.movedim(0, dim)


@pytest.mark.parametrize("out_f,in_f", SHAPES)
@pytest.mark.parametrize("bits,group", [(4, 128), (8, 128), (4, 32), (4, -1)])
def test_gptq_layout(out_f, in_f, bits, group):
    g = in_f if group == -1 else group
    groups = math.ceil(in_f / g)
    codes = torch.randint(0, 2**bits, (in_f, out_f))
    qweight = _pack_int32(codes, bits, 0)                       # (in*bits/32, out)
    qzeros = _pack_int32(torch.randint(0, 2**bits, (groups, out_f)), bits, 1)  # (groups, out*bits/32)
    scales = torch.empty(groups, out_f, dtype=torch.float16)
    g_idx = torch.arange(in_f, dtype=torch.int32) // g          # act-order permutation index
    stored = sum(t.nbytes for t in (qweight, qzeros, scales, g_idx))
    assert gptq_bytes(bits, group)(out_f, in_f) == stored


@pytest.mark.parametrize("out_f,in_f", SHAPES)
@pytest.mark.parametrize("bits,group", [(4, 128), (4, 64)])
def test_awq_gemm_layout(out_f, in_f, bits, group):
    groups = math.ceil(in_f / group)
    qweight = _pack_int32(torch.randint(0, 16, (in_f, out_f)), bits, 1)   # (in, out*bits/32)
    qzeros = _pack_int32(torch.randint(0, 16, (groups, out_f)), bits, 1)
    scales = torch.empty(groups, out_f, dtype=torch.float16)
    assert awq_bytes(bits, group)(out_f, in_f) == sum(t.nbytes for t in (qweight, qzeros, scales))


@pytest.mark.parametrize("out_f,in_f", SHAPES)
def test_fp8_block_layout_deepseek(out_f, in_f):
    # DeepSeek-V3 checkpoints: weight float8_e4m3fn + weight_scale_inv fp32 per 128x128 block.
    weight = torch.empty(out_f, in_f, dtype=torch.float8_e4m3fn)
    scale_inv = torch.empty(math.ceil(out_f / 128), math.ceil(in_f / 128), dtype=torch.float32)
    assert fp8_bytes(128)(out_f, in_f) == weight.nbytes + scale_inv.nbytes
    assert fp8_bytes(None)(out_f, in_f) == weight.nbytes + torch.empty((), dtype=torch.float32).nbytes


@pytest.mark.parametrize("out_f,in_f", [(5760, 2880), (2880, 2880)])
def test_mxfp4_layout_gpt_oss(out_f, in_f):
    # gpt-oss: *_blocks uint8 (out, in/32, 16) two e2m1 codes a byte; *_scales uint8 (out, in/32) e8m0.
    blocks = torch.empty(out_f, in_f // 32, 16, dtype=torch.uint8)
    scales = torch.empty(out_f, in_f // 32, dtype=torch.uint8)
    assert mxfp4_bytes(out_f, in_f) == blocks.nbytes + scales.nbytes


@pytest.mark.parametrize("out_f,in_f", SHAPES)
def test_bnb_layouts(out_f, in_f):
    n = out_f * in_f
    codes = torch.empty(math.ceil(n / 2), 1, dtype=torch.uint8)      # Params4bit: packed (n/2, 1)
    absmax = torch.empty(math.ceil(n / 64), dtype=torch.float32)
    assert bnb_4bit_bytes(False)(out_f, in_f) == codes.nbytes + absmax.nbytes
    nested_absmax = torch.empty(math.ceil(n / 64), dtype=torch.uint8)  # absmax quantized to 8 bits
    nested_scale = torch.empty(math.ceil(n / 64 / 256), dtype=torch.float32)
    offset = torch.empty(1, dtype=torch.float32)
    assert bnb_4bit_bytes(True)(out_f, in_f) == codes.nbytes + nested_absmax.nbytes + nested_scale.nbytes + \
        offset.nbytes
    cb = torch.empty(out_f, in_f, dtype=torch.int8)
    scb = torch.empty(out_f, dtype=torch.float32)
    assert bnb_int8_bytes(out_f, in_f) == cb.nbytes + scb.nbytes


def test_qlora_paper_bits_per_parameter():
    # QLoRA (Dettmers et al. 2023, sec. 3): blocksize-64 fp32 absmax costs 32/64 = 0.5
    # bit/param; double quantization brings it to 8/64 + 32/(64*256) = 0.127.
    nf4 = format_from_quantization_config({"quant_method": "bitsandbytes", "load_in_4bit": True,
                                           "bnb_4bit_quant_type": "nf4"})
    dq = format_from_quantization_config({"quant_method": "bitsandbytes", "load_in_4bit": True,
                                          "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True})
    assert nf4.bits_per_weight(8192, 8192) == pytest.approx(4.5)
    assert dq.bits_per_weight(8192, 8192) == pytest.approx(4.127, abs=1e-3)


def test_gpt_oss_20b_checkpoint_size():
    # openai/gpt-oss-20b safetensors shards: 4.79 + 4.80 + 4.17 GB = 13.76 GB (Hub file list).
    spec = resolve_model("gpt-oss-20b")
    fmt = resolve_weights(spec)
    assert fmt.name == "mxfp4"
    total = sum(c.bytes for c in weight_split_components(spec, fmt))
    assert total / 1e9 == pytest.approx(13.76, abs=0.03)


def test_checkpoint_configs_resolve():
    cases = {
        "gptq-int4-g128": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False},
        "awq-int4-g128": {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"},
        "int8": {"quant_method": "bitsandbytes", "load_in_8bit": True},
        "fp4": {"quant_method": "bitsandbytes", "load_in_4bit": True},
        "fp8-block128": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]},
    }
    for name, qc in cases.items():
        assert format_from_quantization_config(qc).name == name
    assert resolve_weights(resolve_model("deepseek-v3")).name == "fp8-block128"
    with pytest.raises(InputError, match="quant_method: 'hqq'"):
        format_from_quantization_config({"quant_method": "hqq"})
    with pytest.raises(InputError, match="bits"):
        format_from_quantization_config({"quant_method": "gptq", "bits": 5})


def test_lm_head_and_router_stay_unquantized():
    spec = resolve_model("mixtral-8x7b")
    fp8 = format_from_quantization_config({"quant_method": "fp8"})
    assert not fp8.quantizes("lm_head.weight", "linear")
    assert not fp8.quantizes("mlp.gate.weight", "linear")
    assert fp8.quantizes("mlp.experts.down_proj.weight", "linear")
    q, u = (c.bytes for c in weight_split_components(spec, fp8))
    assert u > spec.vocab_size * spec.hidden_size * 2 * 2  # embeddings + head, both bf16


@pytest.mark.parametrize("out_f,in_f", SHAPES)
def test_compressed_tensors_layouts(out_f, in_f):
    # compressed-tensors checkpoints: FP8 per channel = weight (out, in) fp8 + weight_scale (out, 1);
    # pack-quantized int4 = weight_packed int32 (out, in/8) + weight_scale bf16 (out, in/128)
    # + weight_shape int64 (2,).
    fp8 = format_from_quantization_config({"quant_method": "compressed-tensors", "ignore": ["lm_head"],
                                           "config_groups": {"group_0": {"weights": {
                                               "num_bits": 8, "type": "float", "strategy": "channel"}}}})
    w = torch.empty(out_f, in_f, dtype=torch.float8_e4m3fn)
    scale = torch.empty(out_f, 1, dtype=torch.float32)
    assert fp8.linear_bytes(out_f, in_f) == w.nbytes + scale.nbytes
    w4 = format_from_quantization_config({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}}}})
    packed = _pack_int32(torch.randint(0, 16, (out_f, in_f)), 4, 1)
    scales = torch.empty(out_f, math.ceil(in_f / 128), dtype=torch.bfloat16)
    shape = torch.tensor([out_f, in_f], dtype=torch.int64)
    assert w4.linear_bytes(out_f, in_f) == packed.nbytes + scales.nbytes + shape.nbytes
    assert w4.name == "w4a16-g128" and fp8.name == "fp8-channel"
