"""The accelerator catalogue: how much memory each GPU (or TPU, Gaudi, Apple chip) really has.

The data lives in ``catalog/gpus.json``, read lazily once and validated on load. Every
entry gives the memory the *runtime* reports (``torch.cuda.get_device_properties(i)
.total_memory``, i.e. nvidia-smi's "MiB" x 2**20), not the marketing figure: an
"80 GB" H100 SXM reports 81559 MiB = 85,520,809,984 bytes. Where no runtime figure
was found the entry is computed from the nominal capacity and its ``memory_note``
says so.

Name resolution (``find_gpu``) is case-insensitive and treats spaces and underscores
as hyphens. It accepts the slug, any alias, the full name, and the device name the
runtime prints (``"NVIDIA A100-SXM4-80GB"``, ``"NVIDIA GeForce RTX 4090"``). Failing
that it retries without a vendor prefix (``"nvidia"``, ``"geforce"``, ``"amd instinct"``...)
and with all separators removed (``"RTX4070TiSuper"``). Unknown names raise
:class:`~vramplan.errors.UnknownNameError` with "did you mean" suggestions.

Bare family names pick the most common variant:

    ========  ===================================  ========================================
    name      resolves to                          why
    ========  ===================================  ========================================
    a100      ``a100-sxm-80gb`` (SXM4 80GB)        what cloud 8-GPU nodes (p4de, ND A100 v4) carry
    h100      ``h100-sxm`` (SXM5 80GB)             likewise for HGX/DGX H100 nodes
    h200      ``h200-sxm`` (SXM 141GB)             the HGX part; the NVL is ``h200-nvl``
    v100      ``v100-sxm2-32gb``                   the SXM2 32GB is the common V100 in clusters
    gh200     ``gh200-96gb`` (96GB HBM3)           the original GH200; ``gh200-144gb`` is HBM3e
    mi250x    ``mi250x-gcd`` (one GCD, 64GB)       ROCm shows each of the module's 2 GCDs as a
                                                   device; ``mi250x-module`` is the whole OAM
    4060ti    ``rtx-4060-ti-16gb``                 the 16GB card is the one bought for LLMs
    a800      ``a800-sxm-80gb`` (SXM4 80GB)        the 8-GPU HGX part; ``a800-pcie`` is the card
    h800      ``h800-sxm`` (SXM5 80GB)             likewise; ``h800-pcie`` is the card
    ========  ===================================  ========================================

The cards sold in China (A800, H800, H20, L20, RTX 4090 D) are in the catalogue with
the figures of NVIDIA's China datasheets; each entry's ``compute_note`` says what was
cut from the part it derives from. Cloud names resolve too: ``a10g`` (AWS G5),
``l4``, ``t4``, and Google Cloud's accelerator types (``nvidia-tesla-t4``,
``nvidia-h100-mega-80gb``) once the vendor prefix is dropped.

A bare capacity is a GPU too (:func:`read_gpu`): ``24GB`` (24 x 10**9 bytes),
``80GiB`` (80 x 2**30), ``80G`` (GiB, as nvidia-smi means it), read with
:func:`vramplan.units.parse_bytes`, and ``2x80GB`` or ``8xh100`` is a count of GPUs of
that kind. A capacity has no throughput figures (``capacity_only``): it answers the
memory questions, not the planner's step times.

Conventions in the data:

* ``bf16_dense_flops`` / ``fp8_dense_flops`` are dense (no 2:4 sparsity) tensor-core
  peaks. GeForce cards use the FP32-accumulate rate (half the FP16-accumulate
  figure), since bf16 always accumulates in FP32. Chips without bf16 (V100, T4) hold
  their FP16 rate; ``compute_note`` says so. ``fp8_dense_flops`` is ``None`` where
  the chip has no fp8.
* ``interconnect_bytes_per_s`` is the per-direction, per-GPU scale-up bandwidth.
  PCIe cards whose NVLink bridge is an optional pairwise add-on (A100 PCIe, A40,
  RTX 3090...) give their PCIe figure (Gen3 x16 16e9, Gen4 x16 32e9, Gen5 x16 64e9);
  the NVL products, sold as bridged pairs, give the bridge figure.
* Apple chips have ``unified_memory`` true and a ``gpu_memory_fraction``: the share of
  RAM Metal lets the GPU wire by default (``recommendedMaxWorkingSetSize``), about 75%
  on Macs with more than 36 GB and about 2/3 below (llama.cpp logs: 73728 MB on a
  96 GB M2 Max, github.com/ggml-org/llama.cpp/issues/3213; 49152 MiB on 64 GB,
  /issues/1870; 21845 MB on 32 GB, github.com/ollama/ollama/issues/434).
  ``sudo sysctl iogpu.wired_limit_mb=N`` raises it.

Standard library only; importing this module reads nothing until a function is called.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramplan.errors import ConfigError, InputError, Remark, UnknownNameError
from vramplan.naming import lookup, normalize_name
from vramplan.validate import GPUS_MAX

__all__ = ["GpuSpec", "GpuReading", "find_gpu", "read_gpu", "one_gpu", "capacity_gpu", "list_gpus", "search_gpus", "CATALOG_PATH"]

CATALOG_PATH = Path(__file__).resolve().parent / "catalog" / "gpus.json"

VENDORS = ("nvidia", "amd", "intel", "apple", "google")
SEGMENTS = ("datacenter", "workstation", "consumer", "apple", "tpu", "gaudi")

# Prefixes dropped on a second look-up attempt ("NVIDIA H100 PCIe" -> "h100-pcie").
_VENDOR_PREFIXES = (
    "nvidia-geforce-", "nvidia-tesla-", "nvidia-", "geforce-", "tesla-",
    "amd-instinct-", "amd-radeon-", "amd-", "instinct-", "radeon-",
    "intel-", "habana-", "google-cloud-", "google-", "cloud-", "apple-",
)
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")
_COMPACT_RE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """One accelerator. Field names carry their units."""

    slug: str
    """Canonical id, lower-case with hyphens (``"h100-sxm"``)."""
    name: str
    """Full marketing name (``"NVIDIA H100 SXM5 80GB"``)."""
    vendor: str
    """``"nvidia"``, ``"amd"``, ``"intel"``, ``"apple"`` or ``"google"``."""
    segment: str
    """``"datacenter"``, ``"workstation"``, ``"consumer"``, ``"apple"``, ``"tpu"`` or ``"gaudi"``."""
    aliases: tuple[str, ...]
    """Other accepted names, already normalised (``("h100", "h100-80gb", ...)``)."""
    memory_nominal: str
    """Capacity as marketed (``"80 GB"``); for display only."""
    memory_bytes: int
    """Total device memory as the runtime reports it, in bytes (see ``memory_note``).
    For unified-memory chips this is the whole RAM; see :attr:`usable_memory_bytes`."""
    memory_note: str
    """Where ``memory_bytes`` comes from (measured runtime figure, or computed)."""
    memory_bandwidth_bytes_per_s: float
    """Peak device-memory bandwidth, bytes per second."""
    bf16_dense_flops: float
    """Peak dense bf16 tensor throughput, FLOP/s (FP16 on chips without bf16)."""
    fp8_dense_flops: float | None
    """Peak dense fp8 tensor throughput, FLOP/s; ``None`` when the chip has no fp8."""
    interconnect: str
    """Scale-up link, in words (``"NVLink 4"``, ``"PCIe Gen4 x16"``)."""
    interconnect_bytes_per_s: float
    """Per-direction, per-device scale-up bandwidth, bytes per second."""
    unified_memory: bool
    """True where CPU and GPU share one memory pool (Apple silicon)."""
    gpu_memory_fraction: float | None
    """For unified memory: share of ``memory_bytes`` the GPU may use by default; else ``None``."""
    source: str
    """URL of the vendor datasheet or product page."""
    compute_note: str = ""
    """How the throughput figures were derived, where that is not obvious."""
    capacity_only: bool = False
    """True for a bare capacity (``--gpu 24GB``): only the memory fields are known; the
    throughput fields are NaN."""

    @property
    def usable_memory_bytes(self) -> int:
        """Memory a model may occupy: ``memory_bytes``, or for unified memory
        ``memory_bytes * gpu_memory_fraction`` (rounded down)."""
        if self.unified_memory and self.gpu_memory_fraction is not None:
            return int(self.memory_bytes * self.gpu_memory_fraction)
        return self.memory_bytes

    @property
    def memory_gib(self) -> float:
        """``memory_bytes`` in GiB (2**30 bytes)."""
        return self.memory_bytes / 2**30

    @property
    def usable_memory_gib(self) -> float:
        """``usable_memory_bytes`` in GiB (2**30 bytes)."""
        return self.usable_memory_bytes / 2**30

    @property
    def keys(self) -> tuple[str, ...]:
        """Every normalised name this entry answers to: slug, aliases, full name."""
        seen: dict[str, None] = {self.slug: None}
        for a in self.aliases:
            seen.setdefault(a, None)
        seen.setdefault(normalize_name(self.name), None)
        return tuple(seen)


# --------------------------------------------------------------------------- loading

_REQUIRED: dict[str, Any] = {
    "slug": str, "name": str, "vendor": str, "segment": str, "aliases": list,
    "memory_nominal": str, "memory_bytes": int, "memory_note": str,
    "memory_bandwidth_bytes_per_s": (int, float), "bf16_dense_flops": (int, float),
    "fp8_dense_flops": (int, float, type(None)), "interconnect": str,
    "interconnect_bytes_per_s": (int, float), "unified_memory": bool,
    "gpu_memory_fraction": (int, float, type(None)), "source": str,
}
_OPTIONAL: dict[str, Any] = {"compute_note": str}


def _bad(where: str, field: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{CATALOG_PATH.name}: {where}: field {field!r} is {value!r}; expected {expected}")


def _type_names(types: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list",
             bool: "true or false", type(None): "null"}
    types = types if isinstance(types, tuple) else (types,)
    if float in types:
        types = tuple(t for t in types if t is not int)
    return " or ".join(names.get(t, t.__name__) for t in types)


def _positive(where: str, field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise _bad(where, field, value, "a positive number")


def _spec_from_entry(index: int, entry: Any) -> GpuSpec:
    where = f"entry {index}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{CATALOG_PATH.name}: {where} is {type(entry).__name__}; expected an object")
    if isinstance(entry.get("slug"), str):
        where = f"entry {index} ({entry['slug']!r})"
    for field, types in _REQUIRED.items():
        if field not in entry:
            raise ConfigError(f"{CATALOG_PATH.name}: {where}: field {field!r} is missing")
        value = entry[field]
        if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
            raise _bad(where, field, value, _type_names(types))
    for field, types in _OPTIONAL.items():
        if field in entry and not isinstance(entry[field], types):
            raise _bad(where, field, entry[field], _type_names(types))
    extra = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if extra:
        raise ConfigError(f"{CATALOG_PATH.name}: {where}: unknown field {extra[0]!r}")

    slug = entry["slug"]
    if not _SLUG_RE.match(slug):
        raise _bad(where, "slug", slug, "lower-case letters, digits and hyphens")
    if not entry["name"].strip():
        raise _bad(where, "name", entry["name"], "a non-empty name")
    if entry["vendor"] not in VENDORS:
        raise _bad(where, "vendor", entry["vendor"], f"one of {', '.join(VENDORS)}")
    if entry["segment"] not in SEGMENTS:
        raise _bad(where, "segment", entry["segment"], f"one of {', '.join(SEGMENTS)}")
    aliases = entry["aliases"]
    for alias in aliases:
        if not isinstance(alias, str) or not alias or normalize_name(alias) != alias:
            raise _bad(where, "aliases", alias, "a normalised name (lower-case, hyphens, no spaces)")
    if len(set(aliases)) != len(aliases) or slug in aliases:
        raise _bad(where, "aliases", aliases, "no repeats and not the slug itself")
    for field in ("memory_bytes", "memory_bandwidth_bytes_per_s", "bf16_dense_flops",
                  "interconnect_bytes_per_s"):
        _positive(where, field, entry[field])
    if entry["fp8_dense_flops"] is not None:
        _positive(where, "fp8_dense_flops", entry["fp8_dense_flops"])
    frac = entry["gpu_memory_fraction"]
    if entry["unified_memory"]:
        if frac is None or not 0 < frac <= 1:
            raise _bad(where, "gpu_memory_fraction", frac, "a number in (0, 1] for unified memory")
    elif frac is not None:
        raise _bad(where, "gpu_memory_fraction", frac, "null unless unified_memory is true")
    if not entry["source"].startswith(("https://", "http://")):
        raise _bad(where, "source", entry["source"], "an http(s) URL")
    if not entry["memory_note"].strip():
        raise _bad(where, "memory_note", entry["memory_note"], "a note on where memory_bytes comes from")

    return GpuSpec(
        slug=slug, name=entry["name"], vendor=entry["vendor"], segment=entry["segment"],
        aliases=tuple(aliases), memory_nominal=entry["memory_nominal"],
        memory_bytes=entry["memory_bytes"], memory_note=entry["memory_note"],
        memory_bandwidth_bytes_per_s=float(entry["memory_bandwidth_bytes_per_s"]),
        bf16_dense_flops=float(entry["bf16_dense_flops"]),
        fp8_dense_flops=None if entry["fp8_dense_flops"] is None else float(entry["fp8_dense_flops"]),
        interconnect=entry["interconnect"],
        interconnect_bytes_per_s=float(entry["interconnect_bytes_per_s"]),
        unified_memory=entry["unified_memory"],
        gpu_memory_fraction=None if frac is None else float(frac),
        source=entry["source"], compute_note=entry.get("compute_note", ""),
    )


def _compact(key: str) -> str:
    return _COMPACT_RE.sub("", key)


@dataclass(frozen=True)
class _Catalog:
    specs: tuple[GpuSpec, ...]
    by_key: dict[str, GpuSpec]
    by_compact: dict[str, GpuSpec]


def _build(raw: Any) -> _Catalog:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{CATALOG_PATH.name}: expected a non-empty JSON list of GPU entries")
    specs = tuple(_spec_from_entry(i, e) for i, e in enumerate(raw))
    by_key: dict[str, GpuSpec] = {}
    for spec in specs:
        for key in spec.keys:
            other = by_key.get(key)
            if other is not None and other is not spec:
                raise ConfigError(f"{CATALOG_PATH.name}: entry {spec.slug!r}: field 'aliases' "
                                  f"name {key!r} is already used by {other.slug!r}; expected unique names")
            by_key[key] = spec
    # Separator-free keys, kept only where they point at a single entry.
    compact: dict[str, GpuSpec | None] = {}
    for key, spec in by_key.items():
        c = _compact(key)
        compact[c] = spec if compact.get(c, spec) is spec else None
    return _Catalog(specs, by_key, {k: v for k, v in compact.items() if v is not None})


@functools.cache
def _catalog() -> _Catalog:
    try:
        text = CATALOG_PATH.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the GPU catalogue {str(CATALOG_PATH)!r}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{CATALOG_PATH.name} is not valid JSON: {exc}") from None
    return _build(raw)


# --------------------------------------------------------------------------- look-ups

def list_gpus() -> tuple[GpuSpec, ...]:
    """Every catalogue entry, in catalogue order."""
    return _catalog().specs


def _strip_prefix(key: str) -> str:
    for prefix in _VENDOR_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix):]
    return key


def find_gpu(name: str) -> GpuSpec:
    """The entry for ``name``: a slug, alias, full name or runtime device name,
    case-insensitive. Raises :class:`~vramplan.errors.UnknownNameError` (kind ``"GPU"``)
    with close matches when nothing fits."""
    cat = _catalog()
    if isinstance(name, str) and name.strip():
        key = normalize_name(name)
        for candidate in dict.fromkeys((key, _strip_prefix(key))):
            if candidate in cat.by_key:
                return cat.by_key[candidate]
        for candidate in dict.fromkeys((key, _strip_prefix(key))):
            spec = cat.by_compact.get(_compact(candidate))
            if spec is not None:
                return spec
    blank = not (isinstance(name, str) and name.strip())
    hint = ("expected a GPU name such as 'h100', 'a100-40gb', 'rtx-4090' or 'mi300x'" if blank
            else "`vramplan.gpus.list_gpus()` lists the catalogue")
    try:
        return lookup("GPU", name, cat.by_key, hint=hint)
    except UnknownNameError as exc:
        # Suggest each close entry once, by slug ('h100-sxm', not also 'h100-sxm5').
        slugs = tuple(dict.fromkeys(cat.by_key[s].slug for s in exc.suggestions if s in cat.by_key))
        raise UnknownNameError("GPU", exc.name, slugs, hint) from None


_CAPACITY_RE = re.compile(r"^\s*[0-9]*\.?[0-9]+\s*(?:[kmgt]i?b?|[kmgt]?bytes?)\s*$", re.IGNORECASE)
_COUNT_RE = re.compile(r"^\s*(?P<count>[0-9]{1,12})\s*[x×*]\s*(?P<what>.+)$", re.IGNORECASE)
_MAX_TEXT_CHARS = 200


@dataclass(frozen=True, kw_only=True)
class GpuReading:
    """What a ``--gpu`` value says: one GPU's spec, how many when it gave a count
    (``2x80GB``), and how it was read when that is not a catalogue name."""

    spec: GpuSpec
    count: int | None = None
    """The ``N`` of ``NxWHAT``; ``None`` when no count was given."""
    note: str | None = None
    """One line for the output (``"gpu 24GB read as ..."``, a :class:`~vramplan.errors.Remark`);
    ``None`` for a catalogue name."""


def capacity_gpu(text: str, field: str = "gpu") -> GpuSpec:
    """A GPU known only by its memory: ``"24GB"``, ``"80GiB"``, ``"80G"``, parsed by
    :func:`vramplan.units.parse_bytes` (GB decimal, GiB and a bare G binary). Its
    throughput fields are NaN and ``capacity_only`` is set."""
    from vramplan.units import format_bytes, parse_bytes

    size = parse_bytes(text, field)
    label = text.strip().replace(" ", "")
    nan = math.nan
    return GpuSpec(slug=label, name=f"a GPU with {format_bytes(size, 'GiB')}", vendor="", segment="",
                   aliases=(), memory_nominal=label, memory_bytes=size,
                   memory_note=f"{label} as given: {size:,} bytes", memory_bandwidth_bytes_per_s=nan,
                   bf16_dense_flops=nan, fp8_dense_flops=None, interconnect="", interconnect_bytes_per_s=nan,
                   unified_memory=False, gpu_memory_fraction=None, source="", capacity_only=True)


def _one(text: str, field: str) -> tuple[GpuSpec, str | None]:
    from vramplan.units import GB, GiB

    if _CAPACITY_RE.match(text):
        spec = capacity_gpu(text, field)
        size = spec.memory_bytes
        return spec, Remark(f"{field} {text.strip()} read as a GPU with {size / GiB:.2f} GiB = {size / GB:.2f} GB "
                            "(GB = 10^9 B; GiB and a bare G = 2^30 B); name the card for the memory it reports",
                            fields=(field,))
    return find_gpu(text), None


def one_gpu(gpu: str | GpuSpec, field: str = "gpu") -> GpuSpec:
    """The spec of ``gpu`` (a GpuSpec, a name or a capacity) where one GPU is meant; a
    count (``2x80GB``) is refused, since the layout or ``tp`` says how many."""
    if isinstance(gpu, GpuSpec):
        return gpu
    reading = read_gpu(gpu, field)
    if reading.count is not None:
        raise InputError(f"{field}: {gpu} is a count of GPUs, which belongs to the layout here; give the GPU "
                         f"kind ({reading.spec.slug}) and the count as gpus or tp")
    return reading.spec


def read_gpu(text: str, field: str = "gpu") -> GpuReading:
    """Read a ``--gpu`` value: a catalogue name (:func:`find_gpu`), a bare capacity
    (``24GB``, ``80GiB``: :func:`capacity_gpu`), or either after a count
    (``2x80GB``, ``8xh100``). Raises :class:`~vramplan.errors.InputError` naming ``field``."""
    if not isinstance(text, str) or not text.strip():
        return GpuReading(spec=find_gpu(text))
    if len(text) > _MAX_TEXT_CHARS:
        raise InputError(f"{field}: expected a GPU name or a size, got {len(text):,} characters")
    try:
        spec, note = _one(text, field)
        return GpuReading(spec=spec, note=note)
    except UnknownNameError as unknown:
        m = _COUNT_RE.match(text)
        if m is None:
            raise
        count = int(m.group("count"))
        try:
            spec, _ = _one(m.group("what"), field)
        except UnknownNameError:
            raise unknown from None
    if not 1 <= count <= GPUS_MAX:
        raise InputError(f"{field}: {text!r} asks for {count} GPUs; expected 1 to {GPUS_MAX:,}")
    what = f"GPUs with {spec.memory_bytes / 2**30:.2f} GiB" if spec.capacity_only else spec.slug
    return GpuReading(spec=spec, count=count, note=Remark(f"{field} {text.strip()} read as {count} x {what}",
                                                          fields=(field,)))


def search_gpus(text: str = "") -> tuple[GpuSpec, ...]:
    """Entries whose slug, alias, full name, vendor or segment contains ``text``
    (case-insensitive; separators ignored), in catalogue order. Every word of a
    multi-word query must match. An empty query returns the whole catalogue."""
    words = [w for w in normalize_name(text or "").split("-") if w]
    if not words:
        return list_gpus()
    full = _compact(normalize_name(text))
    out = []
    for spec in list_gpus():
        names = (*spec.keys, spec.vendor, spec.segment)
        hay = " ".join(names)
        if all(w in hay for w in words) or any(full in _compact(n) for n in names):
            out.append(spec)
    return tuple(out)
