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


class _Canvas:
    """Maps (event index, bytes) to pixels."""

    def __init__(self, last_event: int, top_bytes: float):
        self.last_event = max(last_event, 1)
        self.top = top_bytes
        self.plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        self.plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(self, event: int) -> float:
        return MARGIN_LEFT + self.plot_w * event / self.last_event

    def y(self, b: float) -> float:
        return MARGIN_TOP + self.plot_h * (1 - b / self.top)


def _grid(c: _Canvas, unit: str) -> list[str]:
    out = []
    for i in range(Y_TICKS + 1):
        b = c.top / HEADROOM * i / Y_TICKS
        out.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + c.plot_w}" y1="{c.y(b):.1f}" y2="{c.y(b):.1f}" '
                   f'stroke="#e0e0e0"/>')
        out.append(f'<text x="{MARGIN_LEFT - 6}" y="{c.y(b) + 4:.1f}" text-anchor="end">'
                   f'{escape(format_bytes(round(b), unit))}</text>')
    return out


def _areas(c: _Canvas, result: TraceResult, colours: list[str]) -> list[str]:
    """One stacked polygon per category, bottom to top."""
    samples = result.timeline
    out = []
    base = [0] * len(samples)
    for j, name in enumerate(result.categories):
        upper = [base[i] + v[j] for i, (_, v) in enumerate(samples)]
        if upper == base:
            continue
        top_edge = " ".join(f"{c.x(e):.1f},{c.y(u):.1f}" for (e, _), u in zip(samples, upper))
        bottom_edge = " ".join(f"{c.x(e):.1f},{c.y(b):.1f}" for (e, _), b in reversed(list(zip(samples, base))))
        out.append(f'<polygon points="{top_edge} {bottom_edge}" fill="{colours[j]}">'
                   f'<title>{escape(name)}</title></polygon>')
        base = upper
    return out


def _phases(c: _Canvas, result: TraceResult) -> list[str]:
    out = []
    for event, phase in result.phase_starts:
        if event <= c.last_event:
            out.append(f'<line x1="{c.x(event):.1f}" x2="{c.x(event):.1f}" y1="{MARGIN_TOP}" '
                       f'y2="{MARGIN_TOP + c.plot_h}" stroke="#555" stroke-dasharray="3,3"/>')
            out.append(f'<text x="{c.x(event) + 3:.1f}" y="{MARGIN_TOP + c.plot_h + 14}">{escape(phase)}</text>')
    return out


def _capacity(c: _Canvas, capacity_bytes: int, gpu: str, unit: str) -> list[str]:
    label = f"{gpu} usable {format_bytes(capacity_bytes, unit)}".strip()
    y = c.y(capacity_bytes)
    return [f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + c.plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#d62728" stroke-width="2"/>',
            f'<text x="{MARGIN_LEFT + 4}" y="{y - 4:.1f}" fill="#d62728">{escape(label)}</text>']


def _legend(names: tuple[str, ...], colours: list[str]) -> list[str]:
    x = WIDTH - MARGIN_RIGHT + 14
    out = []
    for j, name in enumerate(names):
        y = MARGIN_TOP + 16 * j
        out.append(f'<rect x="{x}" y="{y}" width="11" height="11" fill="{colours[j]}"/>')
        out.append(f'<text x="{x + 16}" y="{y + 10}">{escape(name)}</text>')
    return out


def _title(result: TraceResult, unit: str) -> str:
    s = result.setup
    title = (f"{result.model}: {s.mode}, batch {s.batch_size} x {s.seq} tokens, "
             f"peak {format_bytes(result.peak_bytes, unit)} in {result.peak_phase}")
    if result.extrapolated:
        title += f" (timeline of {result.layers_traced} traced layers; peak extended to {result.num_layers})"
    return title


def timeline_svg(result: TraceResult, *, capacity_bytes: int | None = None, gpu: str = "",
                 unit: str = "GiB") -> str:
    """The SVG document (text) of ``result``'s timeline."""
    samples = result.timeline
    top = max([sum(v) for _, v in samples] + [capacity_bytes or 0, 1]) * HEADROOM
    canvas = _Canvas(samples[-1][0] if samples else 1, top)
    colours = _colours(result.categories)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{MARGIN_LEFT}" y="22" font-size="13">{escape(_title(result, unit))}</text>',
             *_grid(canvas, unit), *_areas(canvas, result, colours), *_phases(canvas, result)]
    if capacity_bytes:
        parts += _capacity(canvas, capacity_bytes, gpu, unit)
    parts += _legend(result.categories, colours)
    parts.append(f'<text x="{MARGIN_LEFT + canvas.plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">'
                 f'allocation events (step order)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
