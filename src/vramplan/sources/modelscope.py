"""Models on ModelScope (``modelscope:org/name``), through the ``modelscope`` package
(``pip install modelscope``).

``config.json`` and the safetensors index come through ModelScope's own download and
cache (``snapshot_download`` with ``allow_patterns``); each shard's header is read by
two ranged GETs of the file URL ModelScope gives (``get_file_download_url``): the
8-byte length, then the header. ``MODELSCOPE_DOMAIN`` (a mirror) and
``MODELSCOPE_CACHE`` are the package's own settings.
"""

from __future__ import annotations

import os
import struct
from dataclasses import replace
from pathlib import Path

from vramplan.errors import ConfigError, MissingExtraError, VramplanError
from vramplan.model.hf_config import spec_from_config
from vramplan.model.spec import ModelSpec
from vramplan.model.stored import ModelSource
from vramplan.sources import header_cache
from vramplan.sources.local import INDEX_FILE, SINGLE_FILE, read_index, with_checkpoint
from vramplan.sources.reference import Reference
from vramplan.sources.safetensors_header import (MAX_HEADER_BYTES, StoredTensor, parse_header_json,
                                                 tensors_from_header)

MODELSCOPE_HINT = "pip install modelscope"
_TIMEOUT_S = 20


def import_modelscope():
    try:
        from modelscope.hub.file_download import get_file_download_url
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        raise MissingExtraError(f"reading a ModelScope model needs the modelscope package: {MODELSCOPE_HINT} "
                                "(or download it and give the local directory)") from None
    return snapshot_download, get_file_download_url


def _endpoint_and_token() -> tuple[str | None, str | None]:
    """The endpoint and token the package itself would use (``MODELSCOPE_ENDPOINT``,
    ``MODELSCOPE_DOMAIN``, ``MODELSCOPE_API_TOKEN``, its saved login)."""
    try:
        from modelscope_hub.config import HubConfig
    except ImportError:  # older modelscope releases: their own defaults
        return None, None
    config = HubConfig()
    return config.endpoint, config.token or None


def _ranged(url: str, start: int, end: int, where: str, token: str | None = None) -> bytes:
    import requests

    headers = {"Range": f"bytes={start}-{end - 1}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = requests.get(url, headers=headers, timeout=_TIMEOUT_S)
    if response.status_code not in (200, 206):
        raise ConfigError(f"{where}: ModelScope answered HTTP {response.status_code}")
    body = response.content
    return body[:end - start] if response.status_code == 206 else body[start:end]


def _remote_header(url: str, where: str, token: str | None) -> tuple[StoredTensor, ...]:
    prefix = _ranged(url, 0, 8, where, token)
    if len(prefix) < 8:
        raise ConfigError(f"{where}: truncated safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise ConfigError(f"{where}: safetensors header length {length:,} exceeds {MAX_HEADER_BYTES:,} bytes")
    raw = _ranged(url, 8, 8 + length, where, token)
    if len(raw) != length:
        raise ConfigError(f"{where}: safetensors header truncated ({len(raw)} of {length} bytes)")
    return tensors_from_header(parse_header_json(raw, where), where)


def _cache_root() -> Path:
    env = os.environ.get("MODELSCOPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "modelscope"


def _fetch(ref: Reference, revision: str) -> dict:
    """config.json, the file list and every shard's tensors, from ModelScope."""
    snapshot_download, get_file_download_url = import_modelscope()
    local = Path(snapshot_download(ref.repo, revision=ref.revision, allow_patterns=["config.json", INDEX_FILE]))
    if not (local / "config.json").is_file():
        raise ConfigError(f"modelscope:{ref.repo}: the repo has no config.json")
    from vramplan.model.hf_config import load_config_file

    config = load_config_file(local)
    sharded = (local / INDEX_FILE).is_file()
    shards = sorted(set(read_index(local / INDEX_FILE).values())) if sharded else [SINGLE_FILE]
    endpoint, token = _endpoint_and_token()
    tensors: list[StoredTensor] = []
    for shard in shards:
        url = get_file_download_url(ref.repo, shard, revision, endpoint=endpoint)
        tensors.extend(_remote_header(url, f"modelscope:{ref.repo}/{shard}", token))
    files = ["config.json", *([INDEX_FILE] if sharded else []), *shards]
    return {"config": config, "files": files, "tensors": header_cache.tensors_to_json(tuple(tensors))}


def read_modelscope(ref: Reference) -> ModelSpec:
    """The spec of a ModelScope repo from its config.json and safetensors headers. When
    ModelScope cannot be reached, the headers a previous run kept answer, with a note."""
    import_modelscope()
    if ref.gguf:
        raise ConfigError(f"modelscope:{ref.repo}: GGUF tags are read from the Hugging Face Hub only; download "
                          "the .gguf and give its path")
    revision = ref.revision or "master"
    notes: tuple[str, ...] = ()
    try:
        record = _fetch(ref, revision)
        header_cache.save_record(_cache_root(), "modelscope-model", ref.repo, revision, "safetensors", record)
    except VramplanError:
        raise
    except Exception as exc:  # the package's and requests' errors, in one line
        record = header_cache.load_record(_cache_root(), "modelscope-model", ref.repo, revision, "safetensors")
        if record is None:
            text = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise ConfigError(f"modelscope:{ref.repo}: reading from ModelScope failed ({type(exc).__name__}: "
                              f"{text}); check the id, the network or MODELSCOPE_ENDPOINT, or use a local "
                              "directory") from None
        notes = (f"ModelScope unreachable ({type(exc).__name__}): headers of {revision} from the cache of an "
                 "earlier run",)
    spec = spec_from_config(record["config"], name=f"modelscope:{ref.repo}", hub_id=None)
    spec = replace(spec, notes=spec.notes + notes)
    source = ModelSource(kind="modelscope", repo=ref.repo, revision=revision, files=tuple(record["files"]))
    return with_checkpoint(spec, header_cache.tensors_from_json(record["tensors"]), source, "safetensors")


def modelscope_config(ref: Reference) -> dict:
    """The config.json of a ModelScope repo (through ModelScope's cache)."""
    snapshot_download, _ = import_modelscope()
    from vramplan.model.hf_config import load_config_file

    try:
        local = Path(snapshot_download(ref.repo, revision=ref.revision, allow_patterns=["config.json"]))
    except Exception as exc:
        raise ConfigError(f"modelscope:{ref.repo}: reading from ModelScope failed ({type(exc).__name__})") from None
    return load_config_file(local)
