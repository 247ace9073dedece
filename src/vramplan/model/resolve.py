"""Turn what a user typed into a model: a catalog name or Hub id, a path to a
config.json (or a directory holding one), or a parameter count ("7B")."""

from __future__ import annotations

from pathlib import Path

from vramplan.errors import UnknownNameError
from vramplan.model.custom import ParamOnlyModel
from vramplan.model.spec import ModelSpec
from vramplan.units import looks_like_param_count, parse_param_count

Model = ModelSpec | ParamOnlyModel
_REGISTERED: dict[str, ModelSpec] = {}


def register_model(name: str, spec: ModelSpec | None) -> None:
    """Make ``name`` resolve to ``spec`` in this process (``None`` forgets it): the web
    app's pasted config.json files, which have no path on disk."""
    if spec is None:
        _REGISTERED.pop(name, None)
    else:
        _REGISTERED[name] = spec


def is_registered_model(name: str) -> bool:
    """Whether ``name`` was registered with :func:`register_model` (no file is read
    to resolve it)."""
    return name in _REGISTERED


def resolve_model(text: str | ModelSpec | ParamOnlyModel) -> Model:
    """Resolve ``text`` in this order: an existing path; a parameter count such as
    ``7B``; a catalog slug, alias or Hub id. Unknown names raise
    :class:`~vramplan.errors.UnknownNameError` with the closest catalog names."""
    if isinstance(text, (ModelSpec, ParamOnlyModel)):
        return text
    if not isinstance(text, str) or not text.strip():
        raise UnknownNameError("model", str(text), (), "expected a catalog name, a config.json path or a count like 7B")
    text = text.strip()
    if text in _REGISTERED:
        return _REGISTERED[text]
    path = Path(text).expanduser()
    if path.exists() or text.endswith(".json") or text.startswith(("./", "../", "/", "~")):
        from vramplan.model.hf_config import spec_from_config_file

        return spec_from_config_file(path)
    if looks_like_param_count(text):
        return ParamOnlyModel(name=text, total_params=parse_param_count(text))
    from vramplan.catalog import find_model

    return find_model(text).spec()
