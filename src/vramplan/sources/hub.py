"""Models on the Hugging Face Hub, read through ``huggingface_hub`` (``vramplan[hub]``).

What is fetched: the model-info API (the commit sha and the file list), ``config.json``
and the safetensors index through the HF cache (``hf_hub_download``), and the
safetensors headers by ranged GETs (``HfApi.get_safetensors_metadata``), never the
weights. GGUF files (``org/name:Q4_K_M``) are read by ranged GETs of their header.

The library's own environment is honoured, read at call time: ``HF_ENDPOINT``
(mirrors), ``HF_TOKEN``, ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``/``HF_HOME``,
``HF_HUB_DOWNLOAD_TIMEOUT``. Headers are kept beside the HF cache
(``<cache>/vramplan-headers/<repo>/<sha>/``) so a second run, online or offline,
needs no network.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

from vramplan.errors import ConfigError, InputError, MissingExtraError, VramplanError
from vramplan.model.hf_config import spec_from_config
from vramplan.model.spec import ModelSpec
from vramplan.model.stored import ModelSource
from vramplan.sources import header_cache
from vramplan.sources.gguf_header import ArrayLength, GgufHeader, read_gguf_ranged
from vramplan.sources.local import INDEX_FILE, SINGLE_FILE, is_mmproj, spec_from_gguf_headers, with_checkpoint
from vramplan.sources.reference import Reference
from vramplan.sources.safetensors_header import StoredTensor, tensors_from_header

HUB_HINT = 'pip install "vramplan[hub]"'
_SHA = re.compile(r"^[0-9a-f]{40}$")


def import_hub():
    """``huggingface_hub``, or a :class:`MissingExtraError` with the install line."""
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtraError(f"reading a Hub model needs huggingface_hub: {HUB_HINT} "
                                "(or give a local checkpoint directory)") from None
    return huggingface_hub


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _offline() -> bool:
    return (_env("HF_HUB_OFFLINE") or _env("TRANSFORMERS_OFFLINE") or "").upper() in ("1", "ON", "YES", "TRUE")


def _endpoint() -> str:
    return (_env("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _cache_dir() -> Path:
    if _env("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = _env("HF_HOME") or os.path.join(_env("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _timeout_s() -> float:
    raw = _env("HF_HUB_DOWNLOAD_TIMEOUT")
    try:
        return float(raw) if raw else 10.0
    except ValueError:
        raise InputError(f"HF_HUB_DOWNLOAD_TIMEOUT: expected seconds, got {raw!r}") from None


def _token() -> str | None:
    return _env("HF_TOKEN")


def _display(ref: Reference) -> str:
    return ref.repo + (f"@{ref.revision}" if ref.revision else "")


def explain(exc: BaseException, ref: Reference) -> VramplanError:
    """One line for what went wrong talking to the Hub, and what to do."""
    from huggingface_hub import errors as e

    name, where = _display(ref), _endpoint()
    if isinstance(exc, e.GatedRepoError):
        return ConfigError(f"{name} is gated: accept its terms on the Hub, then set HF_TOKEN or run `hf auth login`")
    if isinstance(exc, e.RepositoryNotFoundError):
        return ConfigError(f"{name}: no such repo on {where} (or it is private: set HF_TOKEN or run "
                           "`hf auth login`); check the id, or use a catalog name or a local path")
    if isinstance(exc, e.RevisionNotFoundError):
        return ConfigError(f"{name}: revision {ref.revision!r} not found on {where}")
    if isinstance(exc, (e.OfflineModeIsEnabled, e.LocalEntryNotFoundError)):
        if _offline():
            return ConfigError(f"{name} is not in the HF cache ({_cache_dir()}) and HF_HUB_OFFLINE is set: "
                               "run once online, or use a local path")
        return ConfigError(f"{name}: cannot reach {where} and the files are not in the HF cache: check the "
                           "network, set HF_ENDPOINT to a mirror, or HF_HUB_OFFLINE=1 with a filled cache")
    if isinstance(exc, e.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            return ConfigError(f"{name}: {where} refused the request (HTTP 401): set HF_TOKEN or run "
                               "`hf auth login`")
        return ConfigError(f"{name}: {where} answered HTTP {status}: try again later, set HF_ENDPOINT to a "
                           "mirror, or use a local path")
    text = str(exc).splitlines()[0] if str(exc) else ""
    kind = type(exc).__name__
    if "Timeout" in kind or isinstance(exc, TimeoutError):
        return ConfigError(f"{name}: {where} did not answer within {_timeout_s():g} s "
                           "(HF_HUB_DOWNLOAD_TIMEOUT): try again, or use a local path")
    if "Redirect" in kind:
        return ConfigError(f"{name}: {where} redirected too many times ({kind}); check HF_ENDPOINT")
    if "Connect" in kind or isinstance(exc, ConnectionError):
        return ConfigError(f"{name}: cannot connect to {where} ({kind}): check the network, set HF_ENDPOINT to "
                           "a mirror, or HF_HUB_OFFLINE=1 to use the HF cache")
    return ConfigError(f"{name}: reading from {where} failed ({kind}: {text[:160]})")


# ---- the header cache beside the HF cache -------------------------------------------
def _save_ref(repo: str, revision: str | None, sha: str) -> None:
    header_cache.save_ref(_cache_dir(), "model", repo, revision or "main", sha)


def _load_ref(repo: str, revision: str | None) -> str | None:
    if revision and _SHA.match(revision):
        return revision
    sha = header_cache.load_ref(_cache_dir(), "model", repo, revision or "main")
    if sha:
        return sha
    hf_ref = _cache_dir() / ("models--" + repo.replace("/", "--")) / "refs" / (revision or "main")
    return hf_ref.read_text().strip() if hf_ref.is_file() else None


def _save_record(repo: str, sha: str, key: str, record: dict) -> None:
    header_cache.save_record(_cache_dir(), "model", repo, sha, key, record)


def _load_record(repo: str, sha: str, key: str) -> dict | None:
    return header_cache.load_record(_cache_dir(), "model", repo, sha, key)


_tensors_to_json = header_cache.tensors_to_json
_tensors_from_json = header_cache.tensors_from_json


# ---- reading ------------------------------------------------------------------------
def read_hub(ref: Reference) -> ModelSpec:
    """The spec of a Hub repo (safetensors checkpoint, or a GGUF file when a tag is given)."""
    import_hub()
    key = f"gguf-{ref.gguf}" if ref.gguf else "safetensors"
    if _offline():
        sha = _load_ref(ref.repo, ref.revision)
        record = _load_record(ref.repo, sha, key) if sha else None
        if record is None:
            raise ConfigError(f"{_display(ref)} is not in the HF cache ({_cache_dir()}) and HF_HUB_OFFLINE is set: "
                              "run once online, or use a local path")
        return _from_record(ref, sha, record)
    try:
        sha, files = _model_info(ref)  # one request: which commit the revision is now
        record = _load_record(ref.repo, sha, key)
        if record is not None:
            return _from_record(ref, sha, record)
        record = _fetch_gguf(ref, sha, files) if ref.gguf else _fetch_safetensors(ref, sha, files)
    except VramplanError:
        raise
    except Exception as exc:  # the client's errors, re-said in one line
        raise explain(exc, ref) from None
    _save_record(ref.repo, sha, key, record)
    _save_ref(ref.repo, ref.revision, sha)
    return _from_record(ref, sha, record)


def _api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint(), token=_token())


def _model_info(ref: Reference) -> tuple[str, tuple[str, ...]]:
    info = _api().model_info(ref.repo, revision=ref.revision, timeout=_timeout_s())
    sha = info.sha
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise ConfigError(f"{_display(ref)}: the Hub's model info has no commit sha (got {sha!r:.50})")
    return sha, tuple(s.rfilename for s in (info.siblings or ()))


def _download(ref: Reference, sha: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(ref.repo, filename, revision=sha, endpoint=_endpoint(), token=_token(),
                                cache_dir=_cache_dir(), etag_timeout=_timeout_s()))


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{what}: unreadable JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a JSON object")
    return data


def _fetch_safetensors(ref: Reference, sha: str, files: tuple[str, ...]) -> dict:
    if "config.json" not in files:
        ggufs = [f for f in files if f.endswith(".gguf")]
        hint = f"; it holds GGUF files: add a tag such as {ref.repo}:Q4_K_M" if ggufs else ""
        raise ConfigError(f"{_display(ref)}: the repo has no config.json{hint}")
    config = _read_json(_download(ref, sha, "config.json"), f"{ref.repo}/config.json")
    if SINGLE_FILE not in files and INDEX_FILE not in files:
        return {"config": config, "files": ["config.json"], "tensors": None}
    meta = _api().get_safetensors_metadata(ref.repo, revision=sha, timeout=_timeout_s())
    tensors: list[StoredTensor] = []
    for filename in sorted(meta.files_metadata):
        file_meta = meta.files_metadata[filename]
        header = {name: {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": list(t.data_offsets)}
                  for name, t in file_meta.tensors.items()}
        tensors.extend(tensors_from_header(header, f"{ref.repo}/{filename}"))
    held = {t.name for t in tensors}
    for name, shard in (meta.weight_map or {}).items():
        if name not in held:
            raise ConfigError(f"{ref.repo}/{INDEX_FILE}: names tensor {name!r} in {shard}, but no shard header "
                              "holds it")
    names = (INDEX_FILE, *sorted(meta.files_metadata)) if meta.sharded else (SINGLE_FILE,)
    return {"config": config, "files": ["config.json", *names], "tensors": _tensors_to_json(tuple(tensors))}


def _pick_mmproj(ref: Reference, ggufs: list[str], wanted: str) -> list[str]:
    """The projector named after ``+`` in ``org/name:Q4_K_M+mmproj`` (the repo's only
    mmproj file) or ``+mmproj-F16.gguf`` (by name)."""
    projectors = sorted(f for f in ggufs if "mmproj" in f.lower())
    chosen = [f for f in projectors if f.lower() == wanted] if wanted.endswith(".gguf") else projectors
    if len(chosen) != 1:
        raise InputError(f"{_display(ref)}: '+{wanted}' matches {len(chosen)} mmproj files"
                         + (f" ({', '.join(projectors[:4])}); name one, e.g. +{projectors[0]}" if projectors else ""))
    return chosen


def _pick_gguf(ref: Reference, files: tuple[str, ...]) -> list[str]:
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    tag, _, projector = ref.gguf.lower().partition("+")
    if projector:
        return _pick_gguf(replace(ref, gguf=tag), files) + _pick_mmproj(ref, ggufs, projector)
    if tag in (f.lower() for f in ggufs):
        chosen = [f for f in ggufs if f.lower() == tag]
    else:
        pattern = re.compile(r"(?:^|[^a-z0-9])" + re.escape(tag) + r"(?:[^a-z0-9]|$)")
        chosen = [f for f in ggufs if pattern.search(f.lower().removesuffix(".gguf")) and "mmproj" not in f.lower()]
    if not chosen:
        tags = sorted({re.sub(r"(-\d{5}-of-\d{5})?\.gguf$", "", f).rsplit("-", 1)[-1] for f in ggufs})
        raise InputError(f"{_display(ref)}: no GGUF file matches {ref.gguf!r}"
                         + (f" (files: {', '.join(sorted(ggufs)[:6])})" if ggufs else " (the repo has no .gguf files)")
                         + (f"; tags: {', '.join(tags[:8])}" if tags else ""))
    stems = {re.sub(r"-\d{5}-of-\d{5}\.gguf$", "", f) for f in chosen}
    if len(stems) > 1:
        raise InputError(f"{_display(ref)}: {ref.gguf!r} matches several files ({', '.join(sorted(chosen)[:4])}); "
                         "give the file name after ':'")
    return sorted(chosen)


def _fetch_gguf(ref: Reference, sha: str, files: tuple[str, ...]) -> dict:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    chosen = _pick_gguf(ref, files)
    headers_out = []
    for filename in chosen:
        url = hf_hub_url(ref.repo, filename, revision=sha, endpoint=_endpoint())
        size = get_hf_file_metadata(url, token=_token(), timeout=_timeout_s()).size
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(f"{ref.repo}/{filename}: the Hub gave no file size")
        auth = build_hf_headers(token=_token())

        def fetch(start: int, end: int, url=url, filename=filename) -> bytes:
            """Bytes [start, end) by a ranged GET, streamed so that a server ignoring the
            range is read no further than ``end``."""
            with get_session().stream("GET", url, headers={**auth, "Range": f"bytes={start}-{end - 1}"},
                                      timeout=_timeout_s(), follow_redirects=True) as response:
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
                if response.status_code != 206 and start > 0:
                    raise ConfigError(f"{ref.repo}/{filename}: the server ignored the byte range")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= end - start:
                        break
                return bytes(body[:end - start])

        header = read_gguf_ranged(fetch, size, f"{ref.repo}/{filename}")
        headers_out.append((filename, _header_to_json(header)))
    return {"files": chosen, "gguf": headers_out}


def _header_to_json(header: GgufHeader) -> dict:
    meta = {k: ({"array_length": v.length} if isinstance(v, ArrayLength) else v) for k, v in header.metadata.items()}
    return {"version": header.version, "metadata": meta, "tensors": _tensors_to_json(header.tensors),
            "data_offset": header.data_offset, "file_bytes": header.file_bytes}


def _header_from_json(data: dict) -> GgufHeader:
    meta = {k: (ArrayLength(v["array_length"]) if isinstance(v, dict) and "array_length" in v else v)
            for k, v in data["metadata"].items()}
    return GgufHeader(version=data["version"], metadata=meta, tensors=_tensors_from_json(data["tensors"]),
                      data_offset=data["data_offset"], file_bytes=data["file_bytes"])


def _from_record(ref: Reference, sha: str, record: dict, kind: str = "hub") -> ModelSpec:
    source = ModelSource(kind=kind, repo=ref.repo, revision=sha, files=tuple(record["files"]))
    if "gguf" in record:
        headers = [(name, _header_from_json(h)) for name, h in record["gguf"]]
        model = [(n, h) for n, h in headers if not is_mmproj(h)]
        mmproj = [(n, h) for n, h in headers if is_mmproj(h)]
        return spec_from_gguf_headers(model, source, mmproj)
    spec = spec_from_config(record["config"], name=ref.repo, hub_id=ref.repo)
    if record["tensors"] is None:
        return replace(spec, notes=spec.notes + ("the repo has no safetensors checkpoint: weights from the "
                                                 "architecture, not from stored tensors",))
    return with_checkpoint(spec, _tensors_from_json(record["tensors"]), source, "safetensors")




def hub_config(ref: Reference) -> dict:
    """The config.json of a Hub repo (read through :func:`read_hub`, so cached alike);
    for a GGUF file, the config its metadata maps to."""
    spec = read_hub(ref)
    key = f"gguf-{ref.gguf}" if ref.gguf else "safetensors"
    record = _load_record(ref.repo, spec.checkpoint.source.revision, key) if spec.checkpoint else None
    if record is None:  # a repo without safetensors: its config is in the HF cache
        return _read_json(_download(ref, _load_ref(ref.repo, ref.revision) or ref.revision, "config.json"),
                          f"{ref.repo}/config.json")
    if "gguf" in record:
        from vramplan.sources.gguf_model import config_from_gguf

        name, header = record["gguf"][0]
        return config_from_gguf(_header_from_json(header), name)
    return record["config"]
