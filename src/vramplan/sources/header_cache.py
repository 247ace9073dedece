"""Parsed headers kept on disk, so a second run needs no network.

One JSON record per (repo, commit or revision, what was read), under
``<root>/vramplan-headers/<kind>s--org--name/<revision>/<key>.json``, written
atomically. The root is the hub's own cache directory (the HF cache, ModelScope's
cache), so clearing that cache clears these too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vramplan.sources.safetensors_header import StoredTensor

CACHE_VERSION = 1
"""Bumped when the record's shape changes; older records are read as missing."""


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def repo_dir(root: Path, kind: str, repo: str) -> Path:
    return root / "vramplan-headers" / f"{kind}s--{repo.replace('/', '--')}"


def save_record(root: Path, kind: str, repo: str, revision: str, key: str, record: dict) -> None:
    d = repo_dir(root, kind, repo) / _safe(revision)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{_safe(key)}.json.tmp"
    tmp.write_text(json.dumps({"version": CACHE_VERSION, **record}))
    tmp.replace(d / f"{_safe(key)}.json")


def load_record(root: Path, kind: str, repo: str, revision: str, key: str) -> dict | None:
    p = repo_dir(root, kind, repo) / _safe(revision) / f"{_safe(key)}.json"
    try:
        record = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == CACHE_VERSION else None


def save_ref(root: Path, kind: str, repo: str, revision: str, sha: str) -> None:
    d = repo_dir(root, kind, repo) / "refs"
    d.mkdir(parents=True, exist_ok=True)
    (d / _safe(revision)).write_text(sha)


def load_ref(root: Path, kind: str, repo: str, revision: str) -> str | None:
    p = repo_dir(root, kind, repo) / "refs" / _safe(revision)
    return p.read_text().strip() if p.is_file() else None


def tensors_to_json(tensors: tuple[StoredTensor, ...]) -> list:
    return [[t.name, t.dtype, list(t.shape), t.nbytes] for t in tensors]


def tensors_from_json(rows: list) -> tuple[StoredTensor, ...]:
    return tuple(StoredTensor(name=n, dtype=d, shape=tuple(s), nbytes=b) for n, d, s, b in rows)
