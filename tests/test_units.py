import pytest
from hypothesis import given, strategies as st

from vramplan.errors import InputError
from vramplan.units import GB, GiB, MiB, format_bytes, format_params, parse_bytes, parse_param_count


@pytest.mark.parametrize("text, expected", [
    ("7B", 7_000_000_000), ("6.7b", 6_700_000_000), ("110M", 110_000_000), ("1.5T", 1_500_000_000_000),
    ("70e9", 70_000_000_000), ("124k", 124_000), (" 13 B ", 13_000_000_000), ("8_030_261_248", 8_030_261_248),
    (7_000_000_000, 7_000_000_000),
])
def test_parse_param_count(text, expected):
    assert parse_param_count(text) == expected


@pytest.mark.parametrize("bad", ["", "seven", "7X", "-7B", "0", "7BB", True, float("nan")])
def test_parse_param_count_rejects(bad):
    with pytest.raises(InputError, match="parameters"):
        parse_param_count(bad)


@pytest.mark.parametrize("text, expected", [
    ("24GB", 24 * GB), ("24GiB", 24 * GiB), ("80G", 80 * GiB), ("512MiB", 512 * MiB), ("24 gb", 24 * GB),
    ("16Gb", 2 * GB),  # gigabits: 16e9 bits / 8
    ("1024", 1024), ("1.5TiB", int(1.5 * 1024**4)),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "24XB", "-1GB", "0", "GB"])
def test_parse_bytes_rejects(bad):
    with pytest.raises(InputError, match="memory"):
        parse_bytes(bad)


def test_article_units():
    # seed article: 110M fp32 params = 110e6 x 4 B; it divides by 1024*1024 and says "about 44MB"
    assert format_bytes(110_000_000 * 4, "GiB") == "419.62 MiB"
    assert format_bytes(110_000_000 * 4, "GB") == "440.00 MB"
    # "1B int8 needs 1GB": decimal GB
    assert format_bytes(10**9 * 1, "GB") == "1.00 GB"
    assert format_bytes(10**9 * 1, "GiB") == "953.67 MiB"


def test_format_params():
    assert format_params(8_030_261_248) == "8.03B"
    assert format_params(124_439_808) == "124.44M"


@given(st.integers(min_value=1, max_value=10**15))
def test_bytes_round_trip(n):
    assert parse_bytes(str(n)) == n
    for unit, base in (("GiB", GiB), ("GB", GB)):
        shown = format_bytes(n, unit, digits=6)
        assert shown.split()[1] in ("B", "KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB", "TB")
