"""Turn what a user typed into a model: a catalog name or Hub id, a path to a
config.json (or a directory holding one), or a parameter count ("7B")."""

from __future__ import annotations

from pathlib import Path

from vramplan.errors import UnknownNameError
from vramplan.model.custom import ParamOnlyModel
from vramplan.model.spec import ModelSpec
from vramplan.units import looks_like_param_count, parse_param_count

Model = ModelSpec | ParamOnlyModel


def _exists(path: Path) -> bool:
    """``path.exists()``, false for names the OS refuses (too long, bad characters)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def resolve_model(text: str | ModelSpec | ParamOnlyModel) -> Model:
    """Resolve ``text`` in this order: an existing path; a parameter count such as
    ``7B``; a catalog slug, alias or Hub id. Unknown names raise
    :class:`~vramplan.errors.UnknownNameError` with the closest catalog names."""
    if isinstance(text, (ModelSpec, ParamOnlyModel)):
        return text
    if not isinstance(text, str) or not text.strip():
        raise UnknownNameError("model", str(text), (), "expected a catalog name, a config.json path or a count like 7B")
    text = text.strip()
    if len(text) > 4096 or "\x00" in text:
        raise UnknownNameError("model", text[:60] + "...", (), "expected a catalog name, a config.json path or "
                               "a count like 7B (at most 4,096 characters, no NUL)")
    path = Path(text).expanduser()
    if _exists(path) or text.endswith(".json") or text.startswith(("./", "../", "/", "~")):
        from vramplan.model.hf_config import spec_from_config_file

        return spec_from_config_file(path)
    if looks_like_param_count(text):
        return ParamOnlyModel(name=text, total_params=parse_param_count(text))
    from vramplan.catalog import find_model

    return find_model(text).spec()
