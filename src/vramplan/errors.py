"""The errors vramplan raises, one small hierarchy.

    VramplanError                 base; every message names the field, the bad value
    │                             and what was expected. The CLI prints it on one line
    │                             and exits with ``exit_code``.
    ├── InputError                a value a user gave is out of range or malformed (exit 2)
    │   └── UnknownNameError      a name (model, GPU, dtype, optimizer...) is not known;
    │                             carries the close matches for "did you mean"
    ├── ConfigError               a model config file is unreadable or inconsistent (exit 2)
    │   └── UnreadModelTypeError  a model_type the analytical reader does not follow
    ├── LayoutError               a parallel layout breaks an invariant (exit 2)
    └── MissingExtraError         an optional dependency is not installed (exit 3)

All derive from ``ValueError`` so plain Python callers can catch them as such.

Messages name the Python field a value was given in, never a command-line flag:
``seq: expected a positive integer, got 0``. The field a message is about comes first
(``field:``); ``fields`` lists every field it names (that leading one, and any other
the raiser passes as ``fields=``), so the command line can show its flags in their
place (``--seq: expected ...``, :func:`vramplan.cli.common.flag_message`) while
Python and web callers read the field names. A :class:`ConfigError` names config.json
keys: only its explicit ``fields`` are fields.

Warnings, readings, assumptions and advice follow the same rule: a :class:`Remark` is
a line of text that names fields (its leading ``field:`` and any passed as ``fields=``),
shown with flags on the command line and as written everywhere else.
"""

from __future__ import annotations

import re

_LEADING_FIELD = re.compile(r"^([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)(?:\[\d+\])?:")


def named_fields(message: str) -> tuple[str, ...]:
    """The field ``message`` leads with (``field:`` or ``field[i]:``), if any."""
    m = _LEADING_FIELD.match(message)
    return (m.group(1),) if m else ()


def fields_named(text: str) -> tuple[str, ...]:
    """The fields a line names: a :class:`Remark`'s or an error's ``fields``, else the
    leading ``field:`` of plain text."""
    return getattr(text, "fields", None) or named_fields(str(text))


class Remark(str):
    """A line for the user that is not an error (a warning, an assumption, how an input
    was read) and names fields: ``fields`` holds its leading ``field:`` (if any) and
    those passed. It is a ``str`` everywhere (JSON, Python, the web page); the command
    line shows each field's flag in its place, as it does for errors. A remark names
    each field once, at the field's first occurrence; the same word later is prose
    (``weights int4 read as nf4 (... per 64 weights ...)``)."""

    fields: tuple[str, ...]

    def __new__(cls, text: str, *, fields: tuple[str, ...] = ()) -> Remark:
        self = super().__new__(cls, text)
        self.fields = tuple(dict.fromkeys((*named_fields(text), *fields)))
        return self

    def __reduce__(self):
        return (_remark, (str(self), self.fields))


def _remark(text: str, fields: tuple[str, ...]) -> Remark:
    return Remark(text, fields=fields)


class VramplanError(ValueError):
    """Base class. ``exit_code`` is what the command line exits with; ``fields`` the
    Python fields the message names (see the module docstring)."""

    exit_code: int = 2
    names_fields: bool = True
    """Whether a leading ``field:`` names a Python field (a config error's names a
    config.json key instead: only its explicit ``fields`` count)."""

    def __init__(self, message: str = "", *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        found = named_fields(message) if self.names_fields else ()
        self.fields = tuple(dict.fromkeys((*found, *fields)))

    def to_dict(self) -> dict:
        """The one JSON error shape shared by the CLI and the web app."""
        return {"ok": False, "error": {"type": type(self).__name__, "message": str(self)}}


class InputError(VramplanError):
    """A value given by the user is malformed or out of range."""


class UnknownNameError(InputError):
    """A name is not in the table it was looked up in.

    ``kind`` says what was looked up ("model", "GPU", "dtype"), ``suggestions`` the
    closest known names (may be empty); a ``hint`` may name the field (``"precision:
    expected one of ..."``).
    """

    def __init__(self, kind: str, name: str, suggestions: list[str] | tuple[str, ...] = (),
                 hint: str = "", *, fields: tuple[str, ...] = ()):
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        self.hint = hint
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        self.lead = msg
        """The message without the hint (fields are named only in the hint)."""
        if hint:
            msg += f" ({hint})"
        super().__init__(msg, fields=(*named_fields(hint), *fields))


class ConfigError(VramplanError):
    """A model configuration (config.json, safetensors or GGUF header) cannot be used."""

    names_fields = False


class UnreadModelTypeError(ConfigError):
    """A config whose ``model_type`` the analytical reader does not follow; ``config``
    holds the config as read (transformers can still build and count it)."""

    def __init__(self, message: str, *, config: dict, name: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message, fields=fields)
        self.config = config
        self.name = name

    def to_dict(self) -> dict:
        """The JSON error of a :class:`ConfigError` (the carried config stays in Python)."""
        return {"ok": False, "error": {"type": "ConfigError", "message": str(self)}}


class LayoutError(VramplanError):
    """A parallel layout (dp x tp x pp x ...) breaks an invariant."""


class MissingExtraError(VramplanError):
    """An optional dependency is missing; the message says which extra installs it."""

    exit_code = 3
