"""The parallel-layout flags for ``plan`` and ``train``, built from the core's
declarations (:func:`vramplan.options.layout_options`): ``--gpus --nodes --dp --tp --pp
--cp --ep --sp --zero | --fsdp --offload --micro-batches --virtual-stages
--gpus-per-node``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vramplan.cli.common import click_options
from vramplan.options import LAYOUT_NAMES
from vramplan.options import layout_options as _declared
from vramplan.parallel import LayoutRequest as LayoutFlags


def layout_options(func: Callable) -> Callable:
    """Add the layout flags to a click command."""
    return click_options(_declared())(func)


def pop_layout_flags(kwargs: dict[str, Any]) -> LayoutFlags:
    """Remove the layout flags from a command's kwargs; return them."""
    given = {name: kwargs.pop(name, None) for name in LAYOUT_NAMES}
    given["sp"] = bool(given["sp"])
    return LayoutFlags(**given)
