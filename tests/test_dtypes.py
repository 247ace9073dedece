import pytest

from vramplan.dtypes import dtype_names, get_dtype
from vramplan.errors import UnknownNameError


@pytest.mark.parametrize("spelling, name, bits", [
    ("float16", "fp16", 16), ("half", "fp16", 16), ("torch.float16", "fp16", 16), ("bfloat16", "bf16", 16),
    ("torch.bfloat16", "bf16", 16), ("BF16", "bf16", 16), ("float32", "fp32", 32), ("tf32", "tf32", 32),
    ("float64", "fp64", 64), ("fp8", "fp8-e4m3", 8), ("float8_e5m2", "fp8-e5m2", 8), ("int8", "int8", 8),
    ("int4", "int4", 4), ("nf4", "nf4", 4), ("mxfp4", "mxfp4", 4), ("int64", "int64", 64), ("uint8", "uint8", 8),
])
def test_spellings(spelling, name, bits):
    d = get_dtype(spelling)
    assert (d.name, d.bits) == (name, bits)


def test_bits_agree_with_torch():
    torch = pytest.importorskip("torch")
    for name in dtype_names():
        d = get_dtype(name)
        if d.torch_name:
            assert getattr(torch, d.torch_name).itemsize * 8 == d.bits, name


def test_packed_bytes():
    assert get_dtype("int4").bytes_for(3) == 2  # 12 bits -> 2 bytes
    assert get_dtype("bf16").bytes_for(10) == 20


def test_unknown_dtype_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'bfloat16'"):
        get_dtype("bfloat61")
