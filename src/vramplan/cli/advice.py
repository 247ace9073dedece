"""Rendering shared by the commands that give a verdict: the fit rule's sum and the
ranked changes (:mod:`vramplan.advice`)."""

from __future__ import annotations

from collections.abc import Callable


def verdict_text(v: dict, fmt: Callable[[int], str]) -> str:
    """``needs R = peak P + overheads O (context ..., ...) + kept free K of C; headroom H``."""
    terms = ", ".join(f"{c['name'].split('/', 1)[-1].replace('_', ' ')} {fmt(c['bytes'])}" for c in v["overheads"])
    parts = [f"peak {fmt(v['peak_bytes'])}"]
    if v["overhead_bytes"]:
        parts.append(f"overheads {fmt(v['overhead_bytes'])} ({terms})")
    if v["reserve_bytes"]:
        parts.append(f"kept free {fmt(v['reserve_bytes'])}")
    return (f"needs {fmt(v['required_bytes'])} = {' + '.join(parts)} of {fmt(v['capacity_bytes'])}; "
            f"headroom {fmt(v['headroom_bytes'])}")


def print_changes(out, changes: list[dict], fmt: Callable[[int], str], question: str, model: str) -> None:
    """The ranked changes, each with the flags (from its ``settings``) to add to
    ``vramplan question model``."""
    from vramplan.cli.common import settings_flags

    if not changes:
        return
    command = f"vramplan {question} {model}"
    out.print("[bold]what to change[/bold] (each re-estimated; add the flags to the command):")
    for ch in changes:
        mark = "fits" if ch["fits"] else "still does not fit"
        host = f", host RAM {fmt(ch['host_bytes'])}" if ch.get("host_bytes") else ""
        out.print(f"  {'✓' if ch['fits'] else '✗'} {ch['change']}: peak {fmt(ch['peak_bytes'])}{host} — {mark}\n"
                  f"      {command} ... {' '.join(settings_flags(question, ch['settings']))}", soft_wrap=True)
