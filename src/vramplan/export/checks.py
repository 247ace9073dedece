"""The guard every exporter calls first: an engine config is written only for a
layout that engine runs (:mod:`vramplan.parallel_rules`)."""

from __future__ import annotations

from typing import Any

from vramplan.errors import InputError


def require_runnable(engine: str, candidate: Any, spec: Any = None) -> None:
    """Raise :class:`InputError` when ``engine`` cannot run ``candidate``, saying why."""
    from vramplan.parallel_rules import export_problem

    problem = export_problem(engine, candidate, spec)
    if problem is not None:
        raise InputError(f"export {engine}: {problem}", fields=("export",))
