"""Tests for the accelerator catalogue (vramplan.gpus and catalog/gpus.json)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vramplan import gpus
from vramplan.errors import ConfigError, InputError, UnknownNameError
from vramplan.gpus import GpuSpec, find_gpu, list_gpus, search_gpus
from vramplan.naming import normalize_name

MiB = 2**20
GiB = 2**30


@pytest.fixture(scope="module")
def raw() -> list[dict]:
    return json.loads(gpus.CATALOG_PATH.read_text(encoding="utf-8"))


# ----------------------------------------------------------------- catalogue shape

def test_at_least_45_entries():
    assert len(list_gpus()) >= 45


def test_every_entry_loads(raw):
    specs = list_gpus()
    assert len(specs) == len(raw)
    for spec, entry in zip(specs, raw):
        assert isinstance(spec, GpuSpec)
        assert spec.slug == entry["slug"]
        assert isinstance(spec.memory_bytes, int) and spec.memory_bytes > 0
        assert spec.memory_bandwidth_bytes_per_s > 0
        assert spec.bf16_dense_flops > 0
        assert spec.fp8_dense_flops is None or spec.fp8_dense_flops > 0
        assert spec.interconnect_bytes_per_s > 0
        assert spec.interconnect and spec.memory_nominal and spec.memory_note


def test_list_is_cached_and_immutable():
    assert list_gpus() is list_gpus()
    spec = list_gpus()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.memory_bytes = 1  # type: ignore[misc]


def test_one_documented_field_per_json_key(raw):
    fields = {f.name for f in dataclasses.fields(GpuSpec)}
    for entry in raw:
        assert set(entry) <= fields, entry["slug"]


def test_slugs_and_aliases_unique_across_entries(raw):
    owner: dict[str, str] = {}
    for entry in raw:
        names = {entry["slug"], *entry["aliases"], normalize_name(entry["name"])}
        assert len(entry["aliases"]) == len(set(entry["aliases"])), entry["slug"]
        for name in names:
            assert name not in owner, f"{name!r} used by {owner.get(name)!r} and {entry['slug']!r}"
            owner[name] = entry["slug"]


def test_slugs_and_aliases_are_normalised(raw):
    for entry in raw:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", entry["slug"]), entry["slug"]
        for alias in entry["aliases"]:
            assert normalize_name(alias) == alias, (entry["slug"], alias)


def test_every_entry_has_a_source_url(raw):
    for entry in raw:
        assert re.match(r"https://[a-z0-9.-]+\.[a-z]{2,}/", entry["source"]), entry["slug"]


def test_vendors_and_segments(raw):
    for entry in raw:
        assert entry["vendor"] in gpus.VENDORS
        assert entry["segment"] in gpus.SEGMENTS


# The accelerators the catalogue promises to carry (one look-up name each).
REQUIRED = [
    "v100-sxm2-16gb", "v100-sxm2-32gb", "t4", "a10", "a30", "a40", "a100-pcie-40gb", "a100-sxm-40gb",
    "a100-pcie-80gb", "a100-sxm-80gb", "l4", "l40s", "h100-pcie", "h100-sxm", "h100-nvl", "h20",
    "h200-sxm", "h200-nvl", "b200", "b300", "gh200-96gb", "gh200-144gb", "gb200",
    "rtx-3060-12gb", "rtx-3090", "rtx-3090-ti", "rtx-4060-ti-16gb", "rtx-4070-ti-super", "rtx-4080",
    "rtx-4080-super", "rtx-4090", "rtx-5080", "rtx-5090", "rtx-a6000", "rtx-6000-ada",
    "rtx-pro-6000-blackwell", "mi210", "mi250x-gcd", "mi250x-module", "mi300x", "mi325x", "mi355x",
    "rx-7900-xtx", "gaudi2", "gaudi3", "m2-ultra-192gb", "m3-max-128gb", "m4-max-128gb",
    "m3-ultra-512gb", "m4-pro-64gb", "tpu-v5e", "tpu-v5p", "tpu-v6e",
]


@pytest.mark.parametrize("slug", REQUIRED)
def test_required_entry_present(slug):
    assert find_gpu(slug).slug == slug


# ----------------------------------------------------------------- look-ups

@pytest.mark.parametrize("name, slug", [
    ("h100", "h100-sxm"),
    ("H100", "h100-sxm"),
    ("h100-80gb", "h100-sxm"),
    ("NVIDIA H100 SXM5 80GB", "h100-sxm"),          # full name
    ("nvidia h100 sxm5 80gb", "h100-sxm"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),          # nvidia-smi / torch device name
    ("H100 PCIe", "h100-pcie"),
    ("a100", "a100-sxm-80gb"),                      # documented default
    ("A100-80GB", "a100-sxm-80gb"),
    ("a100 40gb", "a100-sxm-40gb"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
    ("v100", "v100-sxm2-32gb"),                     # documented default
    ("Tesla V100-SXM2-16GB", "v100-sxm2-16gb"),
    ("Tesla T4", "t4"),
    ("4090", "rtx-4090"),
    ("rtx4090", "rtx-4090"),
    ("RTX 4090", "rtx-4090"),
    ("RTX_4090", "rtx-4090"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("RTX4070TiSuper", "rtx-4070-ti-super"),         # separators dropped
    ("GeForce RTX 4080 SUPER", "rtx-4080-super"),
    ("mi300x", "mi300x"),
    ("MI300X", "mi300x"),
    ("AMD Instinct MI300X", "mi300x"),
    ("mi250x", "mi250x-gcd"),                       # ROCm device = one GCD
    ("Gaudi 3", "gaudi3"),
    ("HL-225", "gaudi2"),
    ("trillium", "tpu-v6e"),
    ("v5e", "tpu-v5e"),
    ("M3 Ultra", "m3-ultra-512gb"),
    ("Apple M4 Max 128GB (40-core GPU)", "m4-max-128gb"),
    ("  h100  ", "h100-sxm"),
])
def test_find_gpu(name, slug):
    assert find_gpu(name).slug == slug


def test_every_key_resolves_to_its_entry():
    for spec in list_gpus():
        assert find_gpu(spec.slug) is spec
        assert find_gpu(spec.name) is spec
        assert find_gpu(spec.name.upper()) is spec
        for alias in spec.aliases:
            assert find_gpu(alias) is spec
            assert find_gpu(alias.upper().replace("-", " ")) is spec


@pytest.mark.parametrize("name", ["h100-sxm6", "rtx-4091", "mi300y", "A100 90GB"])
def test_unknown_name_suggests(name):
    with pytest.raises(UnknownNameError) as info:
        find_gpu(name)
    err = info.value
    assert isinstance(err, InputError) and isinstance(err, ValueError)
    assert err.kind == "GPU" and err.name == name
    assert "did you mean" in str(err)
    assert err.suggestions
    # suggestions are catalogue slugs, each once
    assert len(set(err.suggestions)) == len(err.suggestions)
    for s in err.suggestions:
        assert find_gpu(s).slug == s


@pytest.mark.parametrize("name", ["", "   ", "qqqqqqqq"])
def test_unknown_or_blank_name(name):
    with pytest.raises(UnknownNameError):
        find_gpu(name)


def test_search_gpus():
    assert {g.slug for g in search_gpus("h100")} == {"h100-pcie", "h100-sxm", "h100-nvl"}
    assert {g.slug for g in search_gpus("RTX 50")} == {"rtx-5080", "rtx-5090"}
    assert {g.slug for g in search_gpus("rtx5090")} == {"rtx-5090"}
    assert all(g.vendor == "apple" for g in search_gpus("apple"))
    assert len(search_gpus("apple")) == 5
    assert search_gpus("") == list_gpus()
    assert search_gpus("no-such-chip") == ()


# ----------------------------------------------------------------- memory figures

# Runtime-reported totals, nvidia-smi "MiB" (== torch total_memory / 2**20). Sources:
#  * H100 SXM5 80GB 81559 MiB, A100 80GB 81920 MiB, A100 40GB 40960 MiB (also A10 23028,
#    L40S 46068, L4 23034, T4 15360): nvidia-smi totals listed by Modal in
#    https://github.com/modal-labs/modal-client/pull/2797 ("H100: 81559MiB (85.52 GB)").
#    H100 also: "NVIDIA H100 80GB HBM3 ... 0MiB / 81559MiB" in
#    https://github.com/NVIDIA/nccl/issues/1264
#  * RTX 4090 24564 MiB: "NVIDIA GeForce RTX 4090 ... 507MiB / 24564MiB" in
#    https://github.com/RLinf/RLinf/issues/255
#  * RTX 3090 24576 MiB: "NVIDIA GeForce RTX 3090 ... 22598MiB / 24576MiB" in
#    https://github.com/noonghunna/club-3090/issues/1128
#  * H200 143771 MiB: "NVIDIA H200 ... 143771MiB" (nvidia-smi, ECC on).
# Each entry's memory_note records the figure it was built from.
@pytest.mark.parametrize("slug, mib", [
    ("h100-sxm", 81559),
    ("a100-sxm-80gb", 81920),
    ("a100-pcie-80gb", 81920),
    ("a100-sxm-40gb", 40960),
    ("a100-pcie-40gb", 40960),
    ("rtx-4090", 24564),
    ("rtx-3090", 24576),
    ("h200-sxm", 143771),
])
def test_documented_runtime_memory(slug, mib):
    assert find_gpu(slug).memory_bytes == mib * MiB


def test_h100_sxm_exact_bytes():
    assert find_gpu("h100").memory_bytes == 85_520_809_984


def test_memory_note_matches_memory_bytes():
    """Where the note quotes an nvidia-smi / hl-smi MiB figure, the bytes agree with it."""
    checked = 0
    for spec in list_gpus():
        m = re.search(r"(?:nvidia-smi|hl-smi) reports (\d+) MiB", spec.memory_note)
        if m:
            assert spec.memory_bytes == int(m.group(1)) * MiB, spec.slug
            checked += 1
    assert checked >= 30


def test_computed_entries_say_so():
    for spec in list_gpus():
        if "reports" not in spec.memory_note and "total_memory" not in spec.memory_note \
                and "two GCDs" not in spec.memory_note:
            assert "computed" in spec.memory_note, spec.slug


def _nominal_bytes(spec: GpuSpec) -> float:
    value, unit = spec.memory_nominal.split()
    assert unit == "GB", spec.slug
    return float(value) * 1e9


def test_memory_close_to_nominal():
    """Runtime totals sit between ~90% and 100% of the nominal capacity read as GiB."""
    for spec in list_gpus():
        nominal_gib = _nominal_bytes(spec) / 1e9 * GiB
        assert 0.9 * nominal_gib <= spec.memory_bytes <= nominal_gib, spec.slug


def test_apple_usable_memory_below_nominal():
    apple = [g for g in list_gpus() if g.vendor == "apple"]
    assert len(apple) == 5
    for spec in apple:
        assert spec.unified_memory and spec.segment == "apple"
        assert spec.gpu_memory_fraction == pytest.approx(0.75)  # all are > 36 GB machines
        assert spec.usable_memory_bytes < _nominal_bytes(spec)
        assert spec.usable_memory_bytes < spec.memory_bytes
        assert spec.usable_memory_bytes == int(spec.memory_bytes * spec.gpu_memory_fraction)
    assert find_gpu("m2-ultra").usable_memory_bytes == 144 * GiB


def test_discrete_usable_memory_is_total():
    for spec in list_gpus():
        if not spec.unified_memory:
            assert spec.gpu_memory_fraction is None
            assert spec.usable_memory_bytes == spec.memory_bytes


def test_mi250x_module_is_two_gcds():
    assert find_gpu("mi250x-module").memory_bytes == 2 * find_gpu("mi250x").memory_bytes
    assert find_gpu("mi250x").memory_bytes == 65520 * MiB


# ----------------------------------------------------------------- throughput figures

def test_throughput_plausible():
    for spec in list_gpus():
        assert 1e12 <= spec.bf16_dense_flops <= 1e16, spec.slug
        if spec.fp8_dense_flops is not None:
            assert spec.bf16_dense_flops <= spec.fp8_dense_flops <= 2.01 * spec.bf16_dense_flops, spec.slug
        assert 1e11 <= spec.memory_bandwidth_bytes_per_s <= 1e13, spec.slug
        assert 1e9 <= spec.interconnect_bytes_per_s <= 2e12, spec.slug


def test_known_datasheet_figures():
    h100 = find_gpu("h100")
    assert h100.memory_bandwidth_bytes_per_s == 3.35e12
    assert h100.bf16_dense_flops == 989e12 and h100.fp8_dense_flops == 1979e12
    assert h100.interconnect_bytes_per_s == 450e9
    assert find_gpu("a100").bf16_dense_flops == 312e12
    assert find_gpu("a100").fp8_dense_flops is None
    assert find_gpu("v100").fp8_dense_flops is None
    assert find_gpu("mi300x").fp8_dense_flops is not None


# ----------------------------------------------------------------- validation

def test_validation_names_entry_and_field(raw):
    bad = copy.deepcopy(raw)
    bad[3]["memory_bytes"] = 0
    with pytest.raises(ConfigError) as info:
        gpus._build(bad)
    msg = str(info.value)
    assert bad[3]["slug"] in msg and "memory_bytes" in msg


@pytest.mark.parametrize("field, value", [
    ("memory_bytes", -1),
    ("memory_bytes", "80 GB"),
    ("memory_bandwidth_bytes_per_s", 0),
    ("bf16_dense_flops", None),
    ("fp8_dense_flops", -5.0),
    ("source", "datasheet.pdf"),
    ("vendor", "nvidea"),
    ("segment", "cloud"),
    ("gpu_memory_fraction", 0.5),      # not unified memory
    ("slug", "H100 SXM"),
    ("aliases", ["H100"]),
])
def test_validation_rejects(raw, field, value):
    bad = copy.deepcopy(raw)
    idx = next(i for i, e in enumerate(bad) if e["slug"] == "h100-sxm")
    bad[idx][field] = value
    with pytest.raises(ConfigError, match=re.escape(repr(field))):
        gpus._build(bad)


def test_validation_rejects_missing_and_unknown_fields(raw):
    bad = copy.deepcopy(raw)
    del bad[0]["memory_note"]
    with pytest.raises(ConfigError, match="memory_note"):
        gpus._build(bad)
    bad = copy.deepcopy(raw)
    bad[0]["memory_gb"] = 16
    with pytest.raises(ConfigError, match="memory_gb"):
        gpus._build(bad)


def test_validation_rejects_unified_without_fraction(raw):
    bad = copy.deepcopy(raw)
    idx = next(i for i, e in enumerate(bad) if e["vendor"] == "apple")
    bad[idx]["gpu_memory_fraction"] = None
    with pytest.raises(ConfigError, match="gpu_memory_fraction"):
        gpus._build(bad)


def test_validation_rejects_duplicate_alias(raw):
    bad = copy.deepcopy(raw)
    bad[0]["aliases"].append("h100")
    with pytest.raises(ConfigError, match="'h100'"):
        gpus._build(bad)


def test_validation_rejects_non_list():
    with pytest.raises(ConfigError):
        gpus._build({"slug": "x"})
    with pytest.raises(ConfigError):
        gpus._build([])


# ----------------------------------------------------------------- lightness

def test_module_uses_stdlib_and_vramplan_only():
    import ast

    tree = ast.parse(Path(gpus.__file__).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots - {"__future__", "vramplan"} <= set(sys.stdlib_module_names), roots


def test_import_is_light_and_lazy():
    src = str(Path(gpus.__file__).resolve().parents[1])
    code = (
        "import sys, vramplan.gpus as g\n"
        "assert 'torch' not in sys.modules\n"
        "assert g._catalog.cache_info().currsize == 0\n"
        "g.find_gpu('h100'); g.list_gpus(); g.search_gpus('a100')\n"
        "assert g._catalog.cache_info().misses == 1\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src})
