"""Charts drawn on the server as inline SVG: nothing to download, no script, no CDN.

Each chart is an <svg class="chart"> whose bars (or points) carry their value in `data-value`,
so a test in a real browser can check both that they are drawn and what they say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 40


@dataclass(frozen=True)
class Point:
    label: str
    value: float


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    if value == int(value):
        return str(int(value))
    return f"{value:.3g}"


def _frame(title: str, body: str, *, kind: str, empty: bool) -> SafeString:
    note = '<text x="50%" y="50%" text-anchor="middle" class="empty">no data in this period</text>' if empty else ""
    return mark_safe(  # noqa: S308 - every label is escaped where it is written
        f'<figure class="chart-box"><figcaption>{escape(title)}</figcaption>'
        f'<svg class="chart" data-kind="{kind}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">{body}{note}</svg></figure>'
    )


def _axis(top_value: float, unit: str) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    lines = []
    for step in range(5):
        value = top_value * step / 4
        y = TOP + plot_h - plot_h * step / 4
        lines.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        lines.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_number(value)}{unit}</text>'
        )
    return "".join(lines)


def _x_labels(points: Sequence[Point], slot: float) -> str:
    every = max(1, len(points) // 8)
    return "".join(
        f'<text x="{LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" class="tick">'
        f"{escape(p.label)}</text>"
        for i, p in enumerate(points)
        if i % every == 0
    )


def column_chart(title: str, points: Sequence[Point], *, unit: str = "") -> SafeString:
    """Vertical bars over time (requests per day, tokens per day)."""
    top_value = max((p.value for p in points), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(points), 1)
    bars = []
    for i, p in enumerate(points):
        h = plot_h * p.value / top_value
        bars.append(
            f'<rect class="bar" data-label="{escape(p.label)}" data-value="{p.value}" '
            f'x="{LEFT + slot * i + slot * 0.15:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{h:.1f}"><title>{escape(p.label)}: {_number(p.value)}{unit}</title></rect>'
        )
    body = _axis(top_value, unit) + "".join(bars) + _x_labels(points, slot)
    return _frame(title, body, kind="columns", empty=not any(p.value for p in points))


def line_chart(title: str, points: Sequence[Point | None], labels: Sequence[str], *, unit: str = "") -> SafeString:
    """A line over time (error rate, p95 latency); None where a day had no requests."""
    values = [p.value for p in points if p is not None]
    top_value = max(values, default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(points), 1)
    coords, dots = [], []
    for i, p in enumerate(points):
        if p is None:
            continue
        x, y = LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * p.value / top_value
        coords.append(f"{x:.1f},{y:.1f}")
        dots.append(
            f'<circle class="point" data-label="{escape(p.label)}" data-value="{p.value}" cx="{x:.1f}" cy="{y:.1f}" '
            f'r="3"><title>{escape(p.label)}: {_number(p.value)}{unit}</title></circle>'
        )
    line = f'<polyline class="line" points="{" ".join(coords)}"/>' if len(coords) > 1 else ""
    body = _axis(top_value, unit) + line + "".join(dots) + _x_labels([Point(lbl, 0) for lbl in labels], slot)
    return _frame(title, body, kind="line", empty=not values)


def bar_chart(title: str, points: Sequence[Point], *, unit: str = "") -> SafeString:
    """Horizontal bars, largest first (top users, top keys, predictions per model)."""
    top_value = max((p.value for p in points), default=0) or 1
    label_w, row_h = 170, (HEIGHT - TOP - 8) / max(len(points), 1)
    bars = []
    for i, p in enumerate(points):
        y = TOP + row_h * i
        w = (WIDTH - label_w - 70) * p.value / top_value
        bars.append(
            f'<text x="{label_w - 6}" y="{y + row_h * 0.62:.1f}" text-anchor="end" class="tick">'
            f"{escape(p.label[:28])}</text>"
            f'<rect class="bar" data-label="{escape(p.label)}" data-value="{p.value}" x="{label_w}" '
            f'y="{y + row_h * 0.15:.1f}" width="{w:.1f}" height="{row_h * 0.7:.1f}">'
            f"<title>{escape(p.label)}: {_number(p.value)}{unit}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + row_h * 0.62:.1f}" class="tick">{_number(p.value)}{unit}</text>'
        )
    return _frame(title, "".join(bars), kind="bars", empty=not points)
