"""Where a model comes from: a checkpoint directory, GGUF files, a Hugging Face Hub repo
or a ModelScope repo, read from file headers only into a :class:`ModelSpec` that
carries the checkpoint's tensor inventory (:class:`vramplan.model.stored.StoredCheckpoint`).

Edge code: it touches files and the network. The core reaches it only through
:func:`vramplan.model.resolve.resolve_model`, which tries these forms after the
catalog (see :mod:`vramplan.sources.reference`).
"""

from __future__ import annotations

from vramplan.model.spec import ModelSpec
from vramplan.sources.reference import Reference, local_reference, looks_like_repo, parse_repo


def read_reference(ref: Reference) -> ModelSpec:
    """Read the model ``ref`` points at."""
    if ref.kind == "local_dir":
        from vramplan.sources.local import read_checkpoint_dir

        return read_checkpoint_dir(ref.paths[0])
    if ref.kind == "gguf_files":
        from vramplan.sources.local import read_gguf_paths

        return read_gguf_paths(list(ref.paths))
    if ref.kind == "modelscope":
        from vramplan.sources.modelscope import read_modelscope

        return read_modelscope(ref)
    from vramplan.sources.hub import read_hub

    return read_hub(ref)


def read_model(text: str) -> ModelSpec:
    """Read a model from any source form (``./dir``, ``x.gguf``, ``hf://org/name``,
    ``org/name[@rev][:Q4_K_M]``, ``modelscope:org/name``), skipping the catalog."""
    text = text.strip()
    for scheme in ("hf://", "modelscope:"):
        if text.startswith(scheme):
            return read_reference(parse_repo(text[len(scheme):], scheme))
    ref = local_reference(text)
    if ref is not None:
        return read_reference(ref)
    return read_reference(parse_repo(text, "hf://"))


def read_config(text: str) -> dict | None:
    """The config.json a source form stands for (the trace builds the real model from
    it), or ``None`` when ``text`` is not a source form (a catalog name, a config path)."""
    text = text.strip()
    ref = None
    for scheme in ("hf://", "modelscope:"):
        if text.startswith(scheme):
            ref = parse_repo(text[len(scheme):], scheme)
    if ref is None:
        ref = local_reference(text)
    if ref is None:
        return None
    if ref.kind == "local_dir":
        from vramplan.model.hf_config import load_config_file

        return load_config_file(ref.paths[0])
    if ref.kind == "gguf_files":
        from vramplan.sources.gguf_model import config_from_gguf
        from vramplan.sources.gguf_header import read_gguf_file
        from vramplan.sources.local import split_paths

        first = split_paths(ref.paths[0])[0]
        return config_from_gguf(read_gguf_file(first), str(first))
    if ref.kind == "modelscope":
        from vramplan.sources.modelscope import modelscope_config

        return modelscope_config(ref)
    from vramplan.sources.hub import hub_config

    return hub_config(ref)


__all__ = ["read_config", "Reference", "local_reference", "looks_like_repo", "parse_repo", "read_model", "read_reference"]
