"""The errors vramplan raises, one small hierarchy.

    VramplanError                 base; every message names the field, the bad value
    │                             and what was expected. The CLI prints it on one line
    │                             and exits with ``exit_code``.
    ├── InputError                a value a user gave is out of range or malformed (exit 2)
    │   └── UnknownNameError      a name (model, GPU, dtype, optimizer...) is not known;
    │                             carries the close matches for "did you mean"
    ├── ConfigError               a model config file is unreadable or inconsistent (exit 2)
    ├── LayoutError               a parallel layout breaks an invariant (exit 2)
    └── MissingExtraError         an optional dependency is not installed (exit 3)

All derive from ``ValueError`` so plain Python callers can catch them as such.
"""

from __future__ import annotations


class VramplanError(ValueError):
    """Base class. ``exit_code`` is what the command line exits with."""

    exit_code: int = 2

    def to_dict(self) -> dict:
        """The one JSON error shape shared by the CLI and the web app."""
        return {"ok": False, "error": {"type": type(self).__name__, "message": str(self)}}


class InputError(VramplanError):
    """A value given by the user is malformed or out of range."""


class UnknownNameError(InputError):
    """A name is not in the table it was looked up in.

    ``kind`` says what was looked up ("model", "GPU", "dtype"), ``suggestions`` the
    closest known names (may be empty).
    """

    def __init__(self, kind: str, name: str, suggestions: list[str] | tuple[str, ...] = (),
                 hint: str = ""):
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class ConfigError(VramplanError):
    """A model configuration (config.json, safetensors or GGUF header) cannot be used."""


class LayoutError(VramplanError):
    """A parallel layout (dp x tp x pp x ...) breaks an invariant."""


class MissingExtraError(VramplanError):
    """An optional dependency is missing; the message says which extra installs it."""

    exit_code = 3
