"""JSON endpoints of the web app.

``GET /api/<command>?<option>=<value>&...`` runs the command-line subcommand of the
same name with ``--json`` and returns its JSON, so the web page and the terminal
share one declaration of every option, one validation and one error text:
``/api/train?model=llama-3.1-8b&method=qlora&gpu=rtx-4090`` is
``vramplan train llama-3.1-8b --method qlora --gpu rtx-4090 --json``. A value of
``true`` passes a flag (``fused-ce=true`` -> ``--fused-ce``); ``false`` or an
empty value leaves it out.

``GET /api/sweep?command=infer&vary=context&values=1024,4096&...`` runs the command
once per value and returns ``{"vary", "points": [{"value", "total_bytes",
"by_category"}]}`` — the curves of memory against batch size or context length.

Errors: ``{"ok": false, "error": {"type", "message"}}`` with HTTP 400 for bad
input, 404 for an unknown endpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Mapping

from vramplan.errors import InputError, VramplanError

COMMANDS = ("models", "gpus", "params", "infer", "train", "plan")
"""Subcommands the web app exposes (the exact mode is left to the terminal)."""
MAX_SWEEP_POINTS = 64
_LOCK = threading.Lock()  # the CLI writes to sys.stdout; one run at a time


def error_body(exc: VramplanError) -> dict:
    return exc.to_dict()


def argv_for(command: str, query: Mapping[str, str]) -> list[str]:
    """The command line equivalent of a query string."""
    argv = [command]
    if query.get("model"):
        argv.append(query["model"])
    for key, value in query.items():
        if key in ("model", "json"):
            continue
        if not key.replace("-", "").replace("_", "").isalnum():
            raise InputError(f"{key!r}: not an option name")
        flag = "--" + key.replace("_", "-")
        if value in ("", "false"):
            continue
        if value == "true":
            argv.append(flag)
        else:
            argv += [flag, value]
    return argv + ["--json"]


def run_command(command: str, query: Mapping[str, str]) -> dict:
    """Run one subcommand in-process and parse its JSON output."""
    import click

    from vramplan.cli import cli

    if command not in COMMANDS:
        raise InputError(f"endpoint /api/{command}: expected one of {', '.join(COMMANDS)}, sweep")
    argv = argv_for(command, query)
    out = io.StringIO()
    with _LOCK, contextlib.redirect_stdout(out):
        try:
            cli.main(args=argv, prog_name="vramplan", standalone_mode=False)
        except click.UsageError as exc:
            raise InputError(exc.format_message().rstrip(".")) from None
        except click.ClickException as exc:
            raise InputError(exc.format_message()) from None
    try:
        return json.loads(out.getvalue())
    except json.JSONDecodeError:
        raise InputError(f"/api/{command}: the command printed no JSON") from None


def sweep(query: Mapping[str, str]) -> dict:
    """Run ``command`` once per value of the option ``vary``."""
    query = dict(query)
    command = query.pop("command", "")
    vary = query.pop("vary", "")
    raw_values = query.pop("values", "")
    if command not in ("infer", "train"):
        raise InputError(f"command: expected 'infer' or 'train', got {command!r}")
    if not vary:
        raise InputError("vary: expected the option to sweep, e.g. 'batch', 'context' or 'seq'")
    values = [v.strip() for v in raw_values.split(",") if v.strip()]
    if not values or len(values) > MAX_SWEEP_POINTS:
        raise InputError(f"values: expected 1 to {MAX_SWEEP_POINTS} comma-separated values, got {len(values)}")
    points = []
    for value in values:
        result = run_command(command, {**query, vary: value})
        points.append({"value": value, "total_bytes": result["total_bytes"],
                       "by_category": result.get("by_category", {}), "phase": result.get("phase")})
    return {"command": command, "vary": vary, "points": points}


def handle(path: str, query: Mapping[str, str]) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``GET path?query``."""
    if not path.startswith("/api/"):
        return 404, InputError(f"{path}: not an API endpoint").to_dict()
    name = path[len("/api/"):].strip("/")
    try:
        if name == "sweep":
            return 200, sweep(query)
        from vramplan.web import extras

        if name in extras.GET_ENDPOINTS:
            return extras.handle_get(name, query)
        if name not in COMMANDS:
            return 404, InputError(f"endpoint /api/{name}: expected one of {', '.join(COMMANDS)}, sweep").to_dict()
        return 200, run_command(name, query)
    except VramplanError as exc:
        return 400, error_body(exc)
