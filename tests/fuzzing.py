"""Run one hostile command line in-process and classify what happened.

Outcomes: ``ok`` (exit 0, every figure sane), ``clean_error`` (the project's one-line
error, exit 2 or 3), ``traceback`` (any other exception or exit code), ``hang`` (not
done within the time limit) and ``suspicious`` (exit 0, but a byte or parameter
figure is negative, non-finite or not a whole number). Shared by the fuzz tests and
``benchmarks/bench_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
from dataclasses import dataclass
from typing import Any

SIGNED_FIGURES = frozenset({"headroom_bytes", "kv_budget_bytes"})
"""Figures that may be negative by definition (a shortfall), never non-finite."""


@dataclass(frozen=True)
class Outcome:
    kind: str
    """ok, clean_error, traceback, hang or suspicious."""
    detail: str = ""


class _Timeout(BaseException):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def insane_figures(data: Any, path: str = "") -> list[str]:
    """Paths of byte/parameter figures that are negative, non-finite or fractional, and
    of any non-finite number at all."""
    bad: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            sub = f"{path}.{key}"
            is_figure = isinstance(key, str) and (key.endswith("bytes") or key.endswith("params")) \
                and key not in ("bytes_per_param",)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    bad.append(f"{sub}={value}")
                elif is_figure and (value != int(value) or (value < 0 and key not in SIGNED_FIGURES)):
                    bad.append(f"{sub}={value}")
            else:
                bad += insane_figures(value, sub)
            if key == "bytes" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and (value < 0 or value != int(value)):
                bad.append(f"{sub}={value}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            bad += insane_figures(value, f"{path}[{i}]")
    return bad


def run_cli(argv: list[str], timeout_s: float = 20.0) -> Outcome:
    """Run ``vramplan ARGV`` in this process (main thread) and classify the result."""
    from vramplan.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except _Timeout:
        return Outcome("hang", " ".join(argv)[:300])
    except BaseException as exc:  # noqa: BLE001 - that is what is being counted
        return Outcome("traceback", f"{type(exc).__name__}: {str(exc)[:200]} <- {' '.join(argv)[:300]}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    message = err.getvalue()
    if code in (2, 3):
        if not message.startswith("error: ") or message.count("\n") != 1 or "Traceback" in message:
            return Outcome("traceback", f"not one line: {message[:200]!r} <- {' '.join(argv)[:300]}")
        return Outcome("clean_error", message.strip())
    if code != 0:
        return Outcome("traceback", f"exit {code}: {message[:200]} <- {' '.join(argv)[:300]}")
    if "--json" in argv:
        try:
            data = json.loads(out.getvalue())
        except ValueError:
            return Outcome("suspicious", f"exit 0 without JSON <- {' '.join(argv)[:300]}")
        bad = insane_figures(data)
        if bad:
            return Outcome("suspicious", f"{', '.join(bad[:5])} <- {' '.join(argv)[:300]}")
    return Outcome("ok")
