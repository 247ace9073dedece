"""The MODEL argument and the custom-architecture flags, declared once for every
command that takes a model (params, infer, train, plan, trace)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vramplan.cli.common import click_options
from vramplan.options import ARCH_OPTIONS

ARCH_FLAGS: tuple[tuple[str, str, str], ...] = tuple((o.all_flags[0], o.name, o.help) for o in ARCH_OPTIONS)
"""(flag, keyword of custom_spec, help), from the core's declarations."""


def model_argument(func: Callable) -> Callable:
    """Add an optional MODEL argument and the custom-architecture flags."""
    func = click_options(ARCH_OPTIONS)(func)
    return click.argument("model", required=False)(func)


def pop_arch_flags(kwargs: dict[str, Any]) -> dict[str, int]:
    """Remove the architecture flags from a command's kwargs; return those given."""
    return {dest: v for _, dest, _ in ARCH_FLAGS if (v := kwargs.pop(dest, None)) is not None}


def model_from_cli(model: str | None, arch: dict[str, int]):
    """Resolve MODEL, or build a custom architecture from flags (not both)."""
    from vramplan.questions import model_from

    return model_from({"model": model, **arch})
