import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "src" / "vramplan" / "catalog" / "models"


def catalog_slugs() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.json"))


def catalog_config(slug: str) -> dict:
    return json.loads((MODELS_DIR / f"{slug}.json").read_text())["config"]


@pytest.fixture
def write_config(tmp_path):
    """Write a config dict (or raw text) to tmp_path/config.json and return the dir."""

    def _write(cfg, name="config.json"):
        path = tmp_path / name
        path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
        return tmp_path

    return _write
