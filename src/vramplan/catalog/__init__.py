"""Built-in model catalog: real config.json files of popular open models, as data.

Each ``models/<slug>.json`` holds ``slug``, ``hub_id``, ``name``, ``family``,
``aliases``, ``source`` (where the config was published) and ``config`` (the
config.json, verbatim). Look-ups are case-insensitive by slug, alias or Hub id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from vramplan.errors import ConfigError, UnknownNameError
from vramplan.naming import close_matches, normalize_name

MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True, kw_only=True)
class CatalogEntry:
    """One built-in model."""

    slug: str
    """Short name, e.g. ``"llama-3.1-8b"``."""
    hub_id: str
    """Hugging Face repo the config comes from."""
    name: str
    """Display name."""
    family: str
    """Model family ("llama", "qwen", ...)."""
    aliases: tuple[str, ...]
    """Other accepted names."""
    source: str
    """URL of the published config."""
    config_path: Path
    """The data file."""

    def config(self) -> dict:
        """The config.json dict."""
        return _read(self.config_path)["config"]

    def spec(self):
        """The :class:`~vramplan.model.spec.ModelSpec` of this model."""
        from vramplan.model.hf_config import spec_from_config

        return spec_from_config(self.config(), name=self.slug, hub_id=self.hub_id, complete=False)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"catalog file {path.name}: {exc}") from None


def _entry(path: Path) -> CatalogEntry:
    data = _read(path)
    missing = [k for k in ("slug", "hub_id", "config") if k not in data]
    if missing:
        raise ConfigError(f"catalog file {path.name}: missing {', '.join(missing)}")
    return CatalogEntry(slug=data["slug"], hub_id=data["hub_id"], name=data.get("name", data["slug"]),
                        family=data.get("family", ""), aliases=tuple(data.get("aliases", ())),
                        source=data.get("source", ""), config_path=path)


@cache
def catalog() -> tuple[CatalogEntry, ...]:
    """All built-in models, sorted by slug."""
    return tuple(sorted((_entry(p) for p in MODELS_DIR.glob("*.json")), key=lambda e: e.slug))


@cache
def _index() -> dict[str, CatalogEntry]:
    table: dict[str, CatalogEntry] = {}
    for entry in catalog():
        for key in (entry.slug, entry.hub_id, entry.hub_id.split("/")[-1], *entry.aliases):
            table.setdefault(normalize_name(key), entry)
    return table


def find_model(name: str) -> CatalogEntry:
    """A catalog entry by slug (``llama-3.1-8b``), Hub id (``meta-llama/Llama-3.1-8B``)
    or alias, case-insensitive. A slug's file is read directly, so the common case
    does not parse the whole catalog."""
    key = normalize_name(name)
    direct = MODELS_DIR / f"{key}.json"
    if "/" not in key and len(key) <= 200 and direct.is_file():
        return _entry(direct)
    entry = _index().get(key)
    if entry is None:
        known = [e.slug for e in catalog()] + [normalize_name(e.hub_id) for e in catalog()]
        raise UnknownNameError("model", name, close_matches(key, known),
                               "see `vramplan models`; or pass a config.json path or a parameter count like 7B")
    return entry


def search_models(text: str = "") -> tuple[CatalogEntry, ...]:
    """Entries whose slug, name, Hub id, family or alias contains ``text``."""
    needle = normalize_name(text)
    return tuple(e for e in catalog()
                 if not needle or any(needle in normalize_name(s)
                                      for s in (e.slug, e.name, e.hub_id, e.family, *e.aliases)))
