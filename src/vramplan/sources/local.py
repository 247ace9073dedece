"""Models on the local disk: a checkpoint directory (config.json + safetensors) or GGUF
files (one file, split files ``-00001-of-0000N.gguf``, and an ``mmproj`` projector).

Only headers are read. A directory is read as people have it after a download:
``model.safetensors``, or the shards named by ``model.safetensors.index.json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vramplan.errors import ConfigError
from vramplan.model.hf_config import load_config_file, spec_from_config
from vramplan.model.spec import ModelSpec
from vramplan.model.stored import ModelSource
from vramplan.sources.inventory import build_checkpoint, checkpoint_notes
from vramplan.sources.safetensors_header import StoredTensor, read_safetensors_file

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
if TYPE_CHECKING:
    from vramplan.sources.gguf_header import GgufHeader

_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
"""llama.cpp's split naming (``llama_split_path``): ``<stem>-%05d-of-%05d.gguf``."""


def with_checkpoint(spec: ModelSpec, tensors: tuple[StoredTensor, ...], source: ModelSource, file_format,
                    parts: tuple = ()) -> ModelSpec:
    """``spec`` carrying its checkpoint inventory and the notes the cross-check gives."""
    stored = build_checkpoint(spec, tensors, source, file_format, gguf=file_format == "gguf", parts=parts)
    return replace(spec, checkpoint=stored, notes=spec.notes + checkpoint_notes(spec, stored))


def read_index(path: Path) -> dict[str, str]:
    """The ``weight_map`` (tensor -> shard file) of a safetensors index."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable safetensors index ({type(exc).__name__})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ConfigError(f"{path}: weight_map: expected an object of tensor name -> shard file")
    for shard in set(weight_map.values()):
        if "/" in shard or "\\" in shard or shard.startswith(".") or not shard.endswith(".safetensors"):
            raise ConfigError(f"{path}: weight_map names shard {shard!r}: expected a .safetensors file name")
    return weight_map


def check_index(weight_map: dict[str, str], by_shard: dict[str, tuple[StoredTensor, ...]], where: str) -> None:
    """Every tensor the index names is in the header of the shard it names."""
    held = {name: shard for shard, tensors in by_shard.items() for t in tensors for name in (t.name,)}
    for name, shard in weight_map.items():
        if held.get(name) != shard:
            raise ConfigError(f"{where}: index names tensor {name!r} in {shard}, but that shard's header "
                              "does not hold it")


def checkpoint_files(directory: Path) -> tuple[str, ...]:
    """The safetensors files of a checkpoint directory (index first when sharded)."""
    if (directory / INDEX_FILE).is_file():
        weight_map = read_index(directory / INDEX_FILE)
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            raise ConfigError(f"{directory / INDEX_FILE}: names shard {missing[0]} which is not in {directory}"
                              + (f" ({len(missing)} missing)" if len(missing) > 1 else ""))
        return (INDEX_FILE, *shards)
    if (directory / SINGLE_FILE).is_file():
        return (SINGLE_FILE,)
    return tuple(sorted(p.name for p in directory.glob("*.safetensors")))


def read_checkpoint_dir(directory: Path) -> ModelSpec:
    """A checkpoint directory: its config.json and its safetensors headers."""
    cfg = load_config_file(directory)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{directory}/config.json: expected a JSON object")
    spec = spec_from_config(cfg, name=str(directory), hub_id=cfg.get("_name_or_path") or None)
    files = checkpoint_files(directory)
    if not files:
        return spec  # a config without weights: the architecture alone
    shards = [f for f in files if f.endswith(".safetensors")]
    by_shard = {s: read_safetensors_file(directory / s) for s in shards}
    if files[0] == INDEX_FILE:
        check_index(read_index(directory / INDEX_FILE), by_shard, str(directory / INDEX_FILE))
    tensors = tuple(t for s in shards for t in by_shard[s])
    source = ModelSource(kind="local", path=str(directory), files=("config.json", *files))
    return with_checkpoint(spec, tensors, source, "safetensors")


def split_paths(path: Path) -> tuple[Path, ...]:
    """All files of a split GGUF given any one of them (just ``path`` when not split)."""
    m = _SPLIT.match(path.name)
    if not m:
        return (path,)
    count = int(m["count"])
    if count < 1 or int(m["no"]) > count:
        raise ConfigError(f"{path}: split number {m['no']} of {m['count']} is not valid")
    paths = tuple(path.with_name(f"{m['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1))
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"{path}: split GGUF is missing {', '.join(missing[:3])}"
                          + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    return paths


def _stem(filename: str) -> str:
    m = _SPLIT.match(filename)
    return m["stem"] if m else filename


def is_mmproj(header: GgufHeader) -> bool:
    """A multimodal projector file (``general.type = "mmproj"``, or the ``clip`` architecture)."""
    meta = header.metadata
    return meta.get("general.type") == "mmproj" or meta.get("general.architecture") == "clip"


def spec_from_gguf_headers(headers: list[tuple[str, GgufHeader]], source: ModelSource,
                           mmproj: list[tuple[str, GgufHeader]]) -> ModelSpec:
    """The spec of a GGUF model from the headers of its files (split files in order),
    with any ``mmproj`` files as the ``mmproj`` part."""
    from vramplan.sources.gguf_model import config_from_gguf

    first_name, first = headers[0]
    cfg = config_from_gguf(first, first_name)
    name = first.metadata.get("general.name") or first_name
    spec = spec_from_config(cfg, name=str(source.repo or source.path or name), hub_id=source.repo)
    tensors = tuple(t for _, h in headers for t in h.tensors)
    parts = (("mmproj", tuple(t for _, h in mmproj for t in h.tensors)),) if mmproj else ()
    return with_checkpoint(spec, tensors, source, "gguf", parts=parts)


def read_gguf_paths(paths: list[Path]) -> ModelSpec:
    """One GGUF model from local files: the model (any split of it) and optional
    ``mmproj`` projector files."""
    from vramplan.sources.gguf_header import read_gguf_file

    model: list[tuple[str, GgufHeader]] = []
    mmproj: list[tuple[str, GgufHeader]] = []
    for given in paths:
        for p in split_paths(given):
            header = read_gguf_file(p)
            (mmproj if is_mmproj(header) else model).append((str(p), header))
    if not model:
        raise ConfigError(f"{paths[0]}: only mmproj projector files given; add the language model's .gguf")
    if len({str(Path(n).name) for n, _ in model}) != len(model):
        raise ConfigError(f"{paths[0]}: the same GGUF file given twice")
    stems = {_stem(Path(n).name) for n, _ in model}
    if len(stems) > 1:
        raise ConfigError(f"{paths[0]}: more than one language model given ({', '.join(sorted(stems))})")
    source = ModelSource(kind="gguf", path=str(paths[0]), files=tuple(n for n, _ in model + mmproj))
    return spec_from_gguf_headers(model, source, mmproj)
