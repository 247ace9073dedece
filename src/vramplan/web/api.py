"""JSON endpoints of the web app.

``GET /api/<question>?<option>=<value>&...`` answers the question of the same name
(:mod:`vramplan.questions`) and returns the same JSON as ``vramplan <question> ...
--json``: the query names are the command-line flags without their dashes, parsed by
the same declarations (:mod:`vramplan.options`), so the page and the terminal share
one declaration of every option, one validation and one error text.
``/api/train?model=llama-3.1-8b&method=qlora&gpu=rtx-4090`` is
``vramplan train llama-3.1-8b --method qlora --gpu rtx-4090 --json``. A value of
``true`` passes a flag (``fused-ce=true`` -> ``--fused-ce``); ``false`` or an empty
value leaves it out.

``GET /api/sweep?command=infer&vary=context&values=1024,4096&...`` estimates once per
value and returns ``{"command", "vary", "points": [{"value", "total_bytes",
"by_category", "phase"}]}`` — the curves of memory against batch size or context
length. A point is one estimate: the GPU-fit solvers of ``train`` and the ``infer``
solvers are not run for a sweep.

``GET /api/options?question=train`` lists a question's options (name, flag, kind,
default, choices, help), so a page builds its inputs and lists from the core's tuples.

Requests run concurrently on bounded thread pools (plans on their own, so a slow
plan never holds up an estimate); a plan that takes longer than
:data:`PLAN_TIME_LIMIT_S` is answered HTTP 503.

Errors: ``{"ok": false, "error": {"type", "message"}}`` with HTTP 400 for bad
input, 404 for an unknown endpoint, 503 for a plan over its time limit, 500 for a
fault of vramplan's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from vramplan.errors import InputError, VramplanError
from vramplan.questions import QUESTIONS

COMMANDS = QUESTIONS
"""Questions the web app exposes (the exact mode is left to the terminal)."""
MAX_SWEEP_POINTS = 64
PLAN_TIME_LIMIT_S = 30.0
"""Seconds a plan may take before the request is answered 503 (the search carries on
in its worker and its result is dropped)."""
ESTIMATE_WORKERS = 4
"""Estimates (train, infer, sweep, listings) computed at once."""
PLAN_WORKERS = 2
"""Plans computed at once; more wait their turn within their time limit."""

_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(kind: str) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if kind not in _POOLS:
            workers = PLAN_WORKERS if kind == "plan" else ESTIMATE_WORKERS
            _POOLS[kind] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"vramplan-{kind}")
        return _POOLS[kind]


def error_body(exc: VramplanError) -> dict:
    return exc.to_dict()


def _error(kind: str, message: str) -> dict:
    return {"ok": False, "error": {"type": kind, "message": message}}


def values_from_query(question: str, query: Mapping[str, str]) -> dict[str, Any]:
    """The option values a query string gives ``question`` (only those given)."""
    from vramplan.options import options_of

    by_flag = {}
    for o in options_of(question):
        for flag in (*o.all_flags, *((o.off_flag,) if o.off_flag else ())):
            by_flag[flag] = o
    values: dict[str, Any] = {}
    if query.get("model"):
        values["model"] = query["model"]
    for key, text in query.items():
        if key in ("model", "json"):
            continue
        if not key.replace("-", "").replace("_", "").isalnum():
            raise InputError(f"{key!r}: not an option name")
        flag = "--" + key.replace("_", "-")
        option = by_flag.get(flag)
        if option is None:
            raise InputError(f"No such option '{flag}'")
        if text in ("", "false"):
            continue
        if option.kind in ("flag", "switch") and text != "true":
            raise InputError(f"{flag}: a flag; expected true or false, got {text!r}")
        values[option.name] = option.parse(text, flag)
    return values


def answer(question: str, query: Mapping[str, str]) -> dict:
    """The JSON answer of ``question`` for a query string."""
    from vramplan import questions

    if question not in QUESTIONS:
        raise InputError(f"endpoint /api/{question}: expected one of {', '.join(QUESTIONS)}, sweep")
    result = getattr(questions, question)(values_from_query(question, query))
    return result if isinstance(result, dict) else result.to_dict()


def sweep(query: Mapping[str, str]) -> dict:
    """Estimate ``command`` once per value of the option ``vary``."""
    from vramplan import questions

    query = dict(query)
    command = query.pop("command", "")
    vary = query.pop("vary", "")
    raw_values = query.pop("values", "")
    if command not in ("infer", "train"):
        raise InputError(f"command: expected 'infer' or 'train', got {command!r}")
    if not vary:
        raise InputError("vary: expected the option to sweep, e.g. 'batch', 'context' or 'seq'")
    texts = [v.strip() for v in raw_values.split(",") if v.strip()]
    if not texts or len(texts) > MAX_SWEEP_POINTS:
        raise InputError(f"values: expected 1 to {MAX_SWEEP_POINTS} comma-separated values, got {len(texts)}")
    base = values_from_query(command, query)
    # one estimate per point: the GPU-fit solvers (train) and the limit solvers (infer) are
    # not part of a curve of memory against one option
    if command == "train":
        base.pop("gpu", None)
    else:
        base.pop("solve_context", None)
        base.pop("solve_batch", None)
    points = []
    for text in texts:
        values = {**base, **values_from_query(command, {vary: text})}
        est = getattr(questions, command)(values, advise=False)
        points.append({"value": text, "total_bytes": est.total_bytes, "by_category": est.by_category(),
                       "phase": est.phase})
    return {"command": command, "vary": vary, "points": points}


def options(query: Mapping[str, str]) -> dict:
    """The options of ``question``, as the page needs them to build its inputs."""
    from vramplan.options import options_of

    question = query.get("question", "")
    if question not in QUESTIONS:
        raise InputError(f"question: expected one of {', '.join(QUESTIONS)}, got {question!r}")
    return {"question": question, "options": [
        {"name": o.name, "flag": o.all_flags[0], "kind": o.kind, "default": o.default, "choices": list(o.choices),
         "required": o.required, "help": o.help} for o in options_of(question)]}


def _run(kind: str, work: Callable[[], dict], limit_s: float | None) -> tuple[int, dict]:
    future = _pool(kind).submit(work)
    try:
        return 200, future.result(timeout=limit_s)
    except FutureTimeout:
        future.cancel()
        return 503, _error("TimeoutError", f"the plan took longer than {limit_s:g} s; fix more of the layout "
                                           "(gpus, tp, pp...) or use the command line")
    except VramplanError as exc:
        return 400, error_body(exc)
    except Exception as exc:  # a fault of vramplan's own: still one JSON line, not a dropped connection
        return 500, _error("InternalError", f"{type(exc).__name__}: {exc}")


def handle(path: str, query: Mapping[str, str]) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``GET path?query``; safe to call from many threads."""
    if not path.startswith("/api/"):
        return 404, InputError(f"{path}: not an API endpoint").to_dict()
    name = path[len("/api/"):].strip("/")
    query = dict(query)
    if name == "sweep":
        return _run("estimate", lambda: sweep(query), None)
    if name == "options":
        return _run("estimate", lambda: options(query), None)
    from vramplan.web import extras

    if name in extras.GET_ENDPOINTS:  # formats, export (a plan: its pool and time limit)
        slow = name == "export"
        return _run("plan" if slow else "estimate", lambda: extras.GET_ENDPOINTS[name](query),
                    PLAN_TIME_LIMIT_S if slow else None)
    if name not in QUESTIONS:
        return 404, InputError(f"endpoint /api/{name}: expected one of {', '.join(QUESTIONS)}, sweep").to_dict()
    if name == "plan":
        return _run("plan", lambda: answer(name, query), PLAN_TIME_LIMIT_S)
    return _run("estimate", lambda: answer(name, query), None)
