"""Exact mode follows CUDA, not the CPU it runs on. Oracles: PyTorch's own CUDA
autocast kernels (registered in every build; they run on fake CUDA tensors without
a GPU as long as autograd is not involved), the CUDA caching allocator's rounding
rule (c10/cuda/CUDACachingAllocator.cpp), and the saved tensors PyTorch's
derivatives.yaml lists for the flash / efficient / math SDPA kernels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramplan.trace.recorder import CUDA_MIN_BLOCK_BYTES, cuda_block_bytes

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.exact

from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402

from vramplan.trace.cuda_rules import cuda_rules, sdpa_backend  # noqa: E402
from vramplan.trace.recorder import Recorder  # noqa: E402


# -- allocator rounding ------------------------------------------------------------------
def test_block_rounding_examples():
    # CUDACachingAllocator round_size: < 512 -> 512, else the next multiple of 512
    assert [cuda_block_bytes(n) for n in (0, 1, 511, 512, 513, 1024, 1025)] == [0, 512, 512, 512, 1024, 1024, 1536]


@given(st.integers(min_value=1, max_value=2**40))
def test_block_rounding_properties(n):
    b = cuda_block_bytes(n)
    assert b % CUDA_MIN_BLOCK_BYTES == 0 and n <= b < n + CUDA_MIN_BLOCK_BYTES


@given(st.integers(min_value=0, max_value=2**30), st.integers(min_value=0, max_value=2**30))
def test_block_rounding_monotonic(a, b):
    assert (cuda_block_bytes(a) <= cuda_block_bytes(b)) == (a <= b) or cuda_block_bytes(a) == cuda_block_bytes(b)


def test_one_element_tensor_costs_a_block():
    with FakeTensorMode():
        rec = Recorder()
        with rec.recording():
            torch.ones(1)
    assert [b.bytes for b in rec.blocks] == [512]


# -- autocast: our CPU kernels against PyTorch's CUDA ones ---------------------------------
OPS = {
    "linear": lambda x, w: torch.nn.functional.linear(x, w),
    "matmul": lambda x, w: x @ w,
    "bmm": lambda x, w: torch.bmm(x.expand(2, 8, 8), w.expand(2, 8, 8)),
    "softmax": lambda x, w: torch.softmax(x, -1),
    "log_softmax": lambda x, w: torch.log_softmax(x, -1),
    "sum": lambda x, w: x.sum(),
    "cumsum": lambda x, w: x.cumsum(0),
    "pow": lambda x, w: x.pow(2),
    "exp": lambda x, w: x.exp(),
    "rsqrt": lambda x, w: x.rsqrt(),
    "layer_norm": lambda x, w: torch.nn.functional.layer_norm(x, (8,)),
    "rms_norm": lambda x, w: torch.nn.functional.rms_norm(x, (8,)),
    "mean": lambda x, w: x.mean(-1),
    "silu": lambda x, w: torch.nn.functional.silu(x),
    "cat": lambda x, w: torch.cat([x, w]),
    "addcmul": lambda x, w: torch.addcmul(x, x, w),
    "norm": lambda x, w: x.norm(),
    "cross_entropy": lambda x, w: torch.nn.functional.cross_entropy(x, torch.zeros(8, dtype=torch.long,
                                                                                    device=x.device)),
    "einsum": lambda x, w: torch.einsum("ij,jk->ik", x, w),
}


def _dtype_on(device: str, op, x_dtype):
    with FakeTensorMode():
        x = torch.empty(8, 8, device=device, dtype=x_dtype)
        w = torch.empty(8, 8, device=device, dtype=torch.float32)
        if device == "cuda":
            torch.set_autocast_enabled("cuda", True)
            torch.set_autocast_dtype("cuda", torch.bfloat16)
            try:
                return op(x, w).dtype
            finally:
                torch.set_autocast_enabled("cuda", False)
        with cuda_rules(autocast_dtype=torch.bfloat16, sdpa=False) as rules, rules.autocast():
            return op(x, w).dtype


@pytest.mark.parametrize("x_dtype", [torch.bfloat16, torch.float32], ids=["bf16-input", "fp32-input"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_autocast_matches_cuda_kernels(name, x_dtype):
    assert _dtype_on("cpu", OPS[name], x_dtype) == _dtype_on("cuda", OPS[name], x_dtype)


def test_cpu_autocast_differs_where_it_matters():
    """The test above can fail: PyTorch's own CPU autocast keeps softmax in bf16."""
    with FakeTensorMode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.softmax(torch.empty(8, 8, dtype=torch.bfloat16), -1).dtype == torch.bfloat16
    assert _dtype_on("cpu", OPS["softmax"], torch.bfloat16) == torch.float32


def test_weight_cast_is_cached_within_autocast():
    """autocast_mode.cpp cached_cast: an fp32 leaf parameter is cast once per region."""
    with FakeTensorMode():
        w = torch.nn.Parameter(torch.empty(64, 64))
        x = torch.empty(4, 64)
        rec = Recorder()
        with cuda_rules(autocast_dtype=torch.bfloat16, sdpa=False) as rules, rec.recording():
            with rules.autocast():
                torch.nn.functional.linear(x, w)
                torch.nn.functional.linear(x, w)
    copies = [b for b in rec.blocks if b.label == "activations/weight_casts"]
    assert [b.bytes for b in copies] == [64 * 64 * 2]


# -- SDPA ------------------------------------------------------------------------------
def _qkv(b=2, h=4, kv=4, s=64, d=32, dtype=torch.bfloat16):
    q = torch.empty(b, h, s, d, dtype=dtype, requires_grad=True)
    k = torch.empty(b, kv, s, d, dtype=dtype, requires_grad=True)
    v = torch.empty(b, kv, s, d, dtype=dtype, requires_grad=True)
    return q, k, v


def _saved_bytes(**kw) -> list[int]:
    with FakeTensorMode():
        q, k, v = _qkv(**{k_: v_ for k_, v_ in kw.items() if k_ != "mask"})
        mask = torch.zeros(q.shape[2], q.shape[2], dtype=q.dtype) if kw.get("mask") else None
        rec = Recorder()
        with cuda_rules(sdpa=True), rec.recording():
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                   is_causal=mask is None)
        live = sorted(blk.bytes for blk in rec.blocks if blk.died is None)
        del out
    return live


def test_sdpa_backend_choice():
    with FakeTensorMode():
        assert sdpa_backend(*_qkv(), None, 0.0, False) == "flash"
        assert sdpa_backend(*_qkv(kv=2), None, 0.0, True) == "flash"  # flash takes GQA
        assert sdpa_backend(*_qkv(dtype=torch.float32), None, 0.0, False) == "efficient"  # flash is 16-bit only
        q, k, v = _qkv()
        assert sdpa_backend(q, k, v, torch.zeros(64, 64), 0.0, False) == "efficient"  # flash takes no mask
        assert sdpa_backend(*_qkv(d=300), None, 0.0, False) == "math"  # over flash's 256, not /8
        assert sdpa_backend(*_qkv(d=20), None, 0.0, False) == "math"  # 20 % 8 != 0
        q, k, _ = _qkv(d=192)
        v = torch.empty(2, 4, 64, 128, dtype=torch.bfloat16)
        assert sdpa_backend(q, k, v, None, 0.0, False) == "efficient"  # MLA: v head dim differs


def test_flash_saves_output_and_fp32_logsumexp():
    # output [2,4,64,32] bf16 = 32 KiB; logsumexp [2,4,64] fp32 = 2 KiB; philox seed and
    # offset: two 512-byte blocks (derivatives.yaml: _scaled_dot_product_flash_attention)
    assert _saved_bytes() == [512, 512, 2048, 32768]


def test_efficient_pads_logsumexp_to_32_rows():
    # mask -> memory-efficient kernel; fp32 logsumexp [2,4,ceil(64/32)*32] = 2 KiB here
    live = _saved_bytes(mask=True)
    assert 32768 in live and 2048 in live and all(b < 64 * 64 * 2 * 8 for b in live)


def test_math_path_saves_attention_probabilities():
    # head dim 20: math path. It upcasts bf16 inputs to fp32 unless
    # torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True) (off by default), so
    # it keeps fp32 q, k, v copies [2,4,64,20] (40 KiB each) and fp32 probabilities
    # [2,4,64,64] (128 KiB)
    live = _saved_bytes(d=20)
    assert 2 * 4 * 64 * 64 * 4 in live and live.count(2 * 4 * 64 * 20 * 4) == 3


# -- dropout -----------------------------------------------------------------------------
def _dropout_blocks(rules: bool) -> list[int]:
    with FakeTensorMode():
        x = torch.empty(4096, dtype=torch.bfloat16, requires_grad=True)
        rec = Recorder()
        if rules:
            with cuda_rules(sdpa=False), rec.recording():
                y = torch.nn.functional.dropout(x, 0.1, True)
        else:
            with rec.recording():
                y = torch.nn.functional.dropout(x, 0.1, True)
        out = sorted(b.bytes for b in rec.blocks if b.died is None)
        del y
    return out


def test_dropout_saves_a_bool_mask_as_on_cuda():
    # fused CUDA kernel: output 4096 x 2 B and a bool mask 4096 x 1 B
    assert _dropout_blocks(rules=True) == [4096, 8192]
    # the CPU path keeps a bf16 noise tensor instead: the rule changes the number
    assert _dropout_blocks(rules=False) != [4096, 8192]
