"""The memory timeline of a trace as an SVG, written by hand (no plotting
library): one stacked area per category, phase boundaries as dashed lines, the
GPU's usable memory as a red line when given."""

from __future__ import annotations

from html import escape

from vramplan.trace.result import TraceResult
from vramplan.units import format_bytes

WIDTH, HEIGHT = 960, 480
"""Canvas size in pixels."""
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 230, 40, 40
"""Room for the axis labels (left, bottom) and the legend (right)."""
HEADROOM = 1.08
"""The y axis reaches 8 % above the highest point (or the capacity line)."""
PALETTE = {
    "weights": "#4e79a7", "master_weights": "#76b7b2", "gradients": "#f28e2b", "optimizer": "#e15759",
    "adapters": "#b07aa1", "activations": "#59a14f", "logits": "#edc948", "kv_cache": "#9c755f",
    "buffers": "#bab0ac", "overhead": "#ff9da7",
}
"""Fill colour per category (first path segment)."""
SHADE_STEP = 0.12
"""Components of one category get lighter by this fraction each."""
Y_TICKS = 5
"""Horizontal grid lines."""


def _lighten(hex_colour: str, amount: float) -> str:
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    rgb = [min(255, round(c + (255 - c) * amount)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _colours(names: tuple[str, ...]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        category = name.split("/")[0]
        k = seen.get(category, 0)
        seen[category] = k + 1
        out.append(_lighten(PALETTE.get(category, "#999999"), min(0.7, k * SHADE_STEP)))
    return out


def timeline_svg(result: TraceResult, *, capacity_bytes: int | None = None, gpu: str = "",
                 unit: str = "GiB") -> str:
    """The SVG document (text) of ``result``'s timeline."""
    samples = result.timeline
    names = result.categories
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    top = max([sum(v) for _, v in samples] + [capacity_bytes or 0, 1]) * HEADROOM
    last_event = max(samples[-1][0], 1) if samples else 1

    def x(event: int) -> float:
        return MARGIN_LEFT + plot_w * event / last_event

    def y(b: float) -> float:
        return MARGIN_TOP + plot_h * (1 - b / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>']
    title = (f"{result.model}: {result.setup.mode}, batch {result.setup.batch_size} x {result.setup.seq_len} "
             f"tokens, peak {format_bytes(result.peak_bytes, unit)} in {result.peak_phase}")
    if result.extrapolated:
        title += f" (timeline of {result.layers_traced} traced layers; peak extended to {result.num_layers})"
    parts.append(f'<text x="{MARGIN_LEFT}" y="22" font-size="13">{escape(title)}</text>')
    for i in range(Y_TICKS + 1):
        b = top / HEADROOM * i / Y_TICKS
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{y(b):.1f}" y2="{y(b):.1f}" '
                     f'stroke="#e0e0e0"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{y(b) + 4:.1f}" text-anchor="end">'
                     f'{escape(format_bytes(round(b), unit))}</text>')
    colours = _colours(names)
    base = [0] * len(samples)
    for j, name in enumerate(names):
        upper = [base[i] + v[j] for i, (_, v) in enumerate(samples)]
        if not any(upper[i] - base[i] for i in range(len(samples))):
            continue
        forward = " ".join(f"{x(e):.1f},{y(u):.1f}" for (e, _), u in zip(samples, upper))
        backward = " ".join(f"{x(e):.1f},{y(b):.1f}" for (e, _), b in reversed(list(zip(samples, base))))
        parts.append(f'<polygon points="{forward} {backward}" fill="{colours[j]}"><title>{escape(name)}</title></polygon>')
        base = upper
    for event, phase in result.phase_starts:
        if event <= last_event:
            parts.append(f'<line x1="{x(event):.1f}" x2="{x(event):.1f}" y1="{MARGIN_TOP}" '
                         f'y2="{MARGIN_TOP + plot_h}" stroke="#555" stroke-dasharray="3,3"/>')
            parts.append(f'<text x="{x(event) + 3:.1f}" y="{MARGIN_TOP + plot_h + 14}">{escape(phase)}</text>')
    if capacity_bytes:
        label = f"{gpu} usable {format_bytes(capacity_bytes, unit)}".strip()
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{y(capacity_bytes):.1f}" '
                     f'y2="{y(capacity_bytes):.1f}" stroke="#d62728" stroke-width="2"/>')
        parts.append(f'<text x="{MARGIN_LEFT + 4}" y="{y(capacity_bytes) - 4:.1f}" fill="#d62728">'
                     f'{escape(label)}</text>')
    legend_x = WIDTH - MARGIN_RIGHT + 14
    for j, name in enumerate(n for n in names):
        ly = MARGIN_TOP + 16 * j
        parts.append(f'<rect x="{legend_x}" y="{ly}" width="11" height="11" fill="{colours[j]}"/>')
        parts.append(f'<text x="{legend_x + 16}" y="{ly + 10}">{escape(name)}</text>')
    parts.append(f'<text x="{MARGIN_LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">'
                 f'allocation events (step order)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
