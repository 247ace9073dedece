"""The MODEL forms that name a model somewhere else than the catalog.

    ./dir, /abs/dir, ~/dir           a checkpoint directory (config.json + safetensors)
    file.gguf[,mmproj.gguf]           GGUF files (any split of a split model)
    org/name  org/name@rev           a Hugging Face Hub repo (after the catalog had no match)
    hf://org/name[@rev]               a Hub repo, catalog skipped
    org/name:Q4_K_M                   a GGUF file of a Hub repo, by quant tag or file name
    org/name:Q4_K_M+mmproj            ... with the repo's mmproj projector
    modelscope:org/name[@rev][:TAG]   a ModelScope repo
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vramplan.errors import InputError

RefKind = Literal["local_dir", "gguf_files", "hub", "modelscope"]

_REPO = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9_.][A-Za-z0-9_.-]{0,95})"
                   r"(?:@(?P<rev>[A-Za-z0-9_./-]{1,200}))?(?::(?P<file>[A-Za-z0-9_.+/-]{1,200}))?$")
"""``org/name[@revision][:gguf tag or file]`` (Hub repo id rules: letters, digits, ``-_.``)."""


@dataclass(frozen=True, kw_only=True)
class Reference:
    """What the user typed, taken apart."""

    kind: RefKind
    repo: str | None = None
    revision: str | None = None
    gguf: str | None = None
    """A GGUF quant tag (``Q4_K_M``) or file name inside the repo."""
    paths: tuple[Path, ...] = ()


def parse_repo(text: str, scheme: str) -> Reference:
    """``org/name[@rev][:file]`` after a scheme such as ``hf://``."""
    m = _REPO.match(text)
    if not m or ".." in m["repo"]:
        raise InputError(f"MODEL {scheme}{text!r}: expected {scheme}org/name, optionally @revision and :Q4_K_M")
    kind: RefKind = "modelscope" if scheme == "modelscope:" else "hub"
    return Reference(kind=kind, repo=m["repo"], revision=m["rev"], gguf=m["file"])


def looks_like_repo(text: str) -> bool:
    return bool(_REPO.match(text)) and not text.startswith((".", "/", "~"))


def local_reference(text: str) -> Reference | None:
    """A checkpoint directory or GGUF files on disk; ``None`` when ``text`` is not one."""
    parts = [p for p in text.split(",")]
    if all(p.lower().endswith(".gguf") for p in parts):
        paths = tuple(Path(p).expanduser() for p in parts)
        for p in paths:
            if not p.is_file():
                raise InputError(f"MODEL {text!r}: {p} is not a file")
        return Reference(kind="gguf_files", paths=paths)
    path = Path(text).expanduser()
    if path.is_dir() and (any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file()):
        return Reference(kind="local_dir", paths=(path,))
    if path.is_dir() and not (path / "config.json").is_file() and any(path.glob("*.gguf")):
        ggufs = sorted(path.glob("*.gguf"))
        raise InputError(f"MODEL {text!r}: a directory of GGUF files; name the file, e.g. {ggufs[0]}")
    return None
