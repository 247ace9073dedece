"""Turn what a user typed into a model.

Tried in this order: a model object; a name registered in this process
(:func:`register_model`: the web app's pasted config.json files); an explicit source (``hf://org/name``,
``modelscope:org/name``); a path (a checkpoint directory with safetensors, GGUF files,
a config.json or a directory holding one); a parameter count such as ``7B``; a catalog
slug, alias or Hub id in the catalog (offline); any other ``org/name[@rev][:TAG]``,
read from the Hugging Face Hub (:mod:`vramplan.sources`).
"""

from __future__ import annotations

from pathlib import Path

from vramplan.errors import ConfigError, InputError, UnknownNameError
from vramplan.model.custom import ParamOnlyModel
from vramplan.model.spec import ModelSpec
from vramplan.units import looks_like_param_count, parse_param_count

MAX_MODEL_NAME_CHARS = 250
"""Longest MODEL text accepted: past it no file system takes the name as a path component."""

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


_EXPECTED = ("expected a catalog name, a Hub id (org/name), a checkpoint directory, a .gguf file, "
             "a config.json path or a count like 7B")


def _exists(path: Path) -> bool:
    """``path.exists()``, false for names the OS refuses (too long, bad characters)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, false for names the OS refuses."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def resolve_model(text: str | ModelSpec | ParamOnlyModel) -> Model:
    """Resolve ``text`` (see the module docstring). Unknown names raise
    :class:`~vramplan.errors.UnknownNameError` with the closest catalog names."""
    if isinstance(text, (ModelSpec, ParamOnlyModel)):
        return text
    if not isinstance(text, str) or not text.strip():
        raise UnknownNameError("model", str(text), (), _EXPECTED)
    text = text.strip()
    if text in _REGISTERED:
        return _REGISTERED[text]
    if "\x00" in text:
        raise InputError("MODEL: contains a NUL character; expected a catalog name, a Hub id, a path or a parameter count")
    if text.startswith(("hf://", "modelscope:")):
        from vramplan.sources import read_model

        return read_model(text)
    if len(text) > MAX_MODEL_NAME_CHARS:
        raise InputError(f"MODEL: {len(text):,} characters; expected at most {MAX_MODEL_NAME_CHARS} "
                         "(a catalog name, a Hub id, a path or a parameter count)")
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf") or ".gguf," in text.lower() or _is_dir(path):
        from vramplan.sources import local_reference, read_reference

        ref = local_reference(text)
        if ref is not None:
            return read_reference(ref)
    if _exists(path) or text.endswith(".json") or text.startswith(("./", "../", "/", "~")):
        from vramplan.model.hf_config import spec_from_config_file

        return spec_from_config_file(path)
    if looks_like_param_count(text):
        return ParamOnlyModel(name=text, total_params=parse_param_count(text))
    from vramplan.catalog import find_model

    try:
        return find_model(text).spec()
    except UnknownNameError as unknown:
        from vramplan.sources import looks_like_repo, read_model

        if not looks_like_repo(text):
            raise
        try:
            return read_model(text)
        except ConfigError as exc:  # say what the catalog has that is close, when the Hub fails
            if not unknown.suggestions:
                raise
            close = " or ".join(repr(s) for s in unknown.suggestions)
            raise ConfigError(f"{exc}; the built-in catalog has {close}") from None
