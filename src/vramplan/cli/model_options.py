"""The MODEL argument and the custom-architecture flags, declared once for every
command that takes a model (params, infer, train, plan, trace)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vramplan import validate as v

from vramplan.cli.common import BoundedInt
from vramplan.errors import InputError

ARCH_FLAGS: tuple[tuple[str, str, str, int], ...] = (
    # (flag, keyword of custom_spec, help, upper bound)
    ("--layers", "layers", "Decoder layers (custom architecture).", v.LAYERS_MAX),
    ("--hidden", "hidden", "Hidden size (custom architecture).", v.HIDDEN_MAX),
    ("--heads", "heads", "Attention heads (custom architecture).", v.HEADS_MAX),
    ("--kv-heads", "kv_heads", "Key/value heads (default: --heads).", v.HEADS_MAX),
    ("--head-dim", "head_dim", "Per-head dims (default: hidden / heads).", v.HIDDEN_MAX),
    ("--intermediate", "intermediate", "MLP hidden size (default: Llama's 8h/3 rounded to 256).", v.WIDTH_MAX),
    ("--vocab", "vocab", "Vocabulary size (default 32000).", v.VOCAB_MAX),
    ("--experts", "experts", "Routed experts per layer (MoE).", v.EXPERTS_MAX),
    ("--experts-per-token", "experts_per_token", "Experts each token is routed to (MoE, default 2).", v.EXPERTS_MAX),
)
_REQUIRED = ("layers", "hidden", "heads")


def model_argument(func: Callable) -> Callable:
    """Add an optional MODEL argument and the custom-architecture flags."""
    for flag, dest, help_text, hi in reversed(ARCH_FLAGS):
        func = click.option(flag, dest, type=BoundedInt(1, hi), default=None, help=help_text)(func)
    return click.argument("model", required=False)(func)


def pop_arch_flags(kwargs: dict[str, Any]) -> dict[str, int]:
    """Remove the architecture flags from a command's kwargs; return those given."""
    return {dest: v for _, dest, _, _ in ARCH_FLAGS if (v := kwargs.pop(dest, None)) is not None}


def model_from_cli(model: str | None, arch: dict[str, int]):
    """Resolve MODEL, or build a custom architecture from flags (not both)."""
    from vramplan.model import custom_spec, resolve_model

    if arch:
        if model:
            raise InputError(f"MODEL {model!r} and architecture flags ({', '.join('--' + k.replace('_', '-') for k in arch)}) "
                             "given together: pass one or the other")
        missing = [f"--{k}" for k in _REQUIRED if k not in arch]
        if missing:
            raise InputError(f"custom architecture: missing {', '.join(missing)} "
                             "(needed with any of --layers --hidden --heads --kv-heads --intermediate --vocab)")
        return custom_spec(**arch)
    if not model:
        raise InputError("MODEL: expected a catalog name (see `vramplan models`), a Hub id (org/name), a checkpoint "
                         "directory, a .gguf file, a config.json path, a parameter count like 7B, "
                         "or --layers/--hidden/--heads")
    spec = resolve_model(model)
    remember_source(spec)
    return spec


SOURCE_META_KEY = "vramplan.model_source"
"""Where :func:`model_from_cli` leaves the model's source for ``--json`` output."""


def remember_source(spec) -> None:
    """Keep the source and stored inventory of a model read from files, so the command's
    JSON names them (``"source": {"kind", "repo", "revision", "files"}``)."""
    stored = getattr(spec, "checkpoint", None)
    ctx = click.get_current_context(silent=True)
    if stored is not None and ctx is not None:
        ctx.meta[SOURCE_META_KEY] = {"source": stored.source.to_dict(), "checkpoint": stored.to_dict()}
