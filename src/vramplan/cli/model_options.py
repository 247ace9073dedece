"""The MODEL argument and the custom-architecture flags, declared once for every
command that takes a model (params, infer, train, plan, trace)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vramplan.cli.common import click_options
from vramplan.errors import InputError
from vramplan.options import ARCH_OPTIONS, ARCH_REQUIRED

ARCH_FLAGS: tuple[tuple[str, str, str], ...] = tuple((o.all_flags[0], o.name, o.help) for o in ARCH_OPTIONS)
"""(flag, keyword of custom_spec, help), from the core's declarations."""
_REQUIRED = ARCH_REQUIRED


def model_argument(func: Callable) -> Callable:
    """Add an optional MODEL argument and the custom-architecture flags."""
    func = click_options(ARCH_OPTIONS)(func)
    return click.argument("model", required=False)(func)


def pop_arch_flags(kwargs: dict[str, Any]) -> dict[str, int]:
    """Remove the architecture flags from a command's kwargs; return those given."""
    return {dest: v for _, dest, _ in ARCH_FLAGS if (v := kwargs.pop(dest, None)) is not None}


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
        raise InputError("MODEL: expected a catalog name (see `vramplan models`), a config.json path, "
                         "a parameter count like 7B, or --layers/--hidden/--heads")
    return resolve_model(model)
