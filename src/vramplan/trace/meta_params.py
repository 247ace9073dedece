"""Parameter counts of any architecture transformers builds, for the model types the
analytical reader does not follow: the model built on the meta device (no memory, no
initialisation) from its config, every distinct parameter counted once (tied weights
once, as ``model.num_parameters()`` does), grouped by where it sits."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

_LAYER = re.compile(r"\.\d+\.")
"""A parameter inside a repeated block (a ``ModuleList`` member: ``layers.3.mlp...``)."""


@dataclass(frozen=True, kw_only=True)
class MetaParamCount:
    """What the meta build of one config holds."""

    class_name: str
    """The transformers class built (``BltForCausalLM``)."""
    total_params: int
    components: tuple[tuple[str, int], ...]
    """(component, parameters): ``embeddings``, ``layers`` (repeated blocks), ``head``
    (an untied output projection), ``other`` (norms, projections outside the blocks);
    empty groups left out. They sum to ``total_params``."""


def meta_param_count(config: dict) -> MetaParamCount:
    """Build ``config``'s model class on the meta device and count its parameters.
    Needs the ``exact`` extra (:func:`vramplan.trace.deps.require_exact`); a type
    transformers cannot build raises :class:`~vramplan.errors.ConfigError`."""
    from vramplan.trace.deps import require_exact

    require_exact()
    import torch
    import transformers

    from vramplan.trace.build import _from_config, hf_config
    from vramplan.trace.setup import TraceSetup

    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = hf_config(config)
        with torch.device("meta"):
            model = _from_config(transformers, hf, TraceSetup(mode="infer"))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    groups = {"embeddings": 0, "layers": 0, "head": 0, "other": 0}
    for name, p in model.named_parameters():  # each shared tensor once
        if id(p) in embedding_ids:
            group = "embeddings"
        elif id(p) in head_ids:
            group = "head"
        elif _LAYER.search(f".{name}"):
            group = "layers"
        else:
            group = "other"
        groups[group] += p.numel()
    return MetaParamCount(class_name=type(model).__name__, total_params=sum(groups.values()),
                          components=tuple((k, v) for k, v in groups.items() if v))
