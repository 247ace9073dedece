"""Import the exact-mode dependencies, or raise the one-line install hint."""

from __future__ import annotations

from vramplan.errors import MissingExtraError

INSTALL_HINT = 'pip install "vramplan[exact]"'


def require_exact() -> None:
    """Raise :class:`~vramplan.errors.MissingExtraError` unless torch, transformers
    and peft import."""
    missing = []
    for module in ("torch", "transformers", "peft"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtraError(f"exact mode needs {', '.join(missing)}: install with {INSTALL_HINT}")
