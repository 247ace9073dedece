"""Turn what a user typed into a model.

Tried in this order: a model object; an explicit source (``hf://org/name``,
``modelscope:org/name``); a path (a checkpoint directory with safetensors, GGUF files,
a config.json or a directory holding one); a parameter count such as ``7B``; a catalog
slug, alias or Hub id in the catalog (offline); any other ``org/name[@rev][:TAG]``,
read from the Hugging Face Hub (:mod:`vramplan.sources`).
"""

from __future__ import annotations

from pathlib import Path

from vramplan.errors import ConfigError, UnknownNameError
from vramplan.model.custom import ParamOnlyModel
from vramplan.model.spec import ModelSpec
from vramplan.units import looks_like_param_count, parse_param_count

Model = ModelSpec | ParamOnlyModel

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
    if len(text) > 4096 or "\x00" in text:
        raise UnknownNameError("model", text[:60] + "...", (), _EXPECTED + " (at most 4,096 characters, no NUL)")
    if text.startswith(("hf://", "modelscope:")):
        from vramplan.sources import read_model

        return read_model(text)
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
