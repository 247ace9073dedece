"""Rendering helpers shared by the commands: the labelled details after a breakdown
table and the host-RAM table. Values stay in the core's units (bytes as ints) until
here; each label says what the number counts and each byte count carries its unit."""

from __future__ import annotations

from typing import Any

LABELS: dict[str, tuple[str, str]] = {
    # key: (label, kind); kinds: count, bytes, bytes_per_param, tokens, sequences, text, GB
    "total_params": ("parameters", "count"),
    "trainable_params": ("trainable parameters", "count"),
    "params_on_gpu": ("parameters on the busiest GPU", "count"),
    "weight_bytes_per_param": ("weights", "bytes_per_param"),
    "gradient_bytes_per_param": ("gradients", "bytes_per_param"),
    "optimizer_state_bytes_per_param": ("optimizer states", "bytes_per_param"),
    "step_temporary_bytes_per_param": ("optimizer-step temporaries", "bytes_per_param"),
    "activation_bytes_per_layer": ("activations per layer", "bytes"),
    "logits_saved_bytes": ("logits saved for the backward", "bytes"),
    "tokens_per_micro_batch": ("tokens per micro-batch", "tokens"),
    "backward_peak_at": ("backward peak at", "text"),
    "layout": ("layout", "text"),
    "engine": ("engine", "text"),
    "recipe": ("recipe", "text"),
    "stage": ("busiest pipeline stage", "text"),
    "micro_batch_size": ("micro-batch", "sequences"),
    "seq": ("sequence length", "tokens"),
    "recompute": ("recomputation", "text"),
    "seed_activation_bytes_per_sample": ("seed article: activations per sample", "bytes"),
    "seed_article_total_gb": ("seed article: total", "GB"),
    "derived_activation_bytes_at_batch_1": ("derived activations at batch 1", "bytes"),
}
"""Labels and kinds of the detail keys the core reports; other keys are labelled from
their name (``*_bytes`` as bytes, numbers with thousands separators)."""


def _kind(key: str, value: Any) -> str:
    if key in LABELS:
        return LABELS[key][1]
    if key.endswith("_bytes_per_param"):
        return "bytes_per_param"
    if key.endswith("_bytes") or "_bytes_" in key or key.startswith("derived at"):
        return "bytes" if isinstance(value, int) else "text"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "count"
    return "text"


def format_detail(key: str, value: Any, units: str) -> str:
    """One detail value with its unit."""
    from vramplan.units import format_bytes

    kind = _kind(key, value)
    if kind == "bytes":
        return format_bytes(value, units)
    if kind == "bytes_per_param":
        return f"{value:g} B/param"
    if kind == "tokens":
        return f"{value:,} tokens"
    if kind == "sequences":
        return f"{value:,} sequence" + ("s" if value != 1 else "")
    if kind == "GB":
        return f"{value:g} GB"
    if kind == "count":
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def label(key: str) -> str:
    """The label of a detail key."""
    if key in LABELS:
        return LABELS[key][0]
    return key.replace("_", " ")


def detail_rows(details: dict, units: str) -> list[tuple[str, str]]:
    """(label, value with unit) for every detail that has a value (``None`` means "not
    applicable" and is left out; ``--json`` keeps it)."""
    return [(label(k), format_detail(k, v, units)) for k, v in details.items() if v is not None]


def print_details(out: Any, details: dict, units: str) -> None:
    """The details as an aligned two-column ``label  value`` list under a ``details:``
    heading (long values wrap inside their column)."""
    from rich.table import Table

    rows = detail_rows(details, units)
    if not rows:
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row("  " + name, value)
    out.print("details:")
    out.print(grid, highlight=False)


def host_table(components: list[dict], units: str) -> Any:
    """The host-RAM components (offloaded states) as a table with units and a total."""
    from vramplan.cli.common import table
    from vramplan.units import format_bytes

    t = table("host component", units, "note", title="Host RAM", right=(units,))
    for c in components:
        t.add_row(c["name"], format_bytes(c["bytes"], units), c["note"])
    t.add_row("total", format_bytes(sum(c["bytes"] for c in components), units), "", style="bold")
    return t
