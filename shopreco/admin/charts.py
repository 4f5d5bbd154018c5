"""Tiny server-side SVG charts for the insights page: no JavaScript, no CDN, nothing to vendor.

Every label passes through ``escape``; the result is safe to drop into a template.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

ACCENT = "#417690"  # the Django admin's own blue, so charts match the host's admin
GRID = "#e4e9ec"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


def _nice_range(low: float, high: float) -> tuple[float, float]:
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.12
    return (0.0 if low >= 0 and low - pad < 0 else low - pad), high + pad


def line_chart(
    points: Sequence[tuple[datetime, float]],
    *,
    title: str,
    width: int = 300,
    height: int = 140,
    fmt: Callable[[float], str] = _fmt,
) -> SafeString:
    """A sparkline-style line chart of (time, value) points, oldest first."""
    return lines_chart([("", points)], title=title, width=width, height=height, fmt=fmt)


# Series colours: the admin's blue first, then hues far apart; past the palette the lines
# repeat the colours dashed, so no two series look alike.
PALETTE = ("#417690", "#d9822b", "#3f9142", "#a23b72", "#7a5cc2", "#b8860b", "#2a9d8f",
           "#c0392b")
DASHES = ("", "6 3", "2 3")
LEGEND_ROW = 14


def _dash(index: int) -> str:
    dash = DASHES[(index // len(PALETTE)) % len(DASHES)]
    return f' stroke-dasharray="{dash}"' if dash else ""


def lines_chart(
    series: Sequence[tuple[str, Sequence[tuple[datetime, float]]]],
    *,
    title: str,
    width: int = 300,
    height: int = 140,
    fmt: Callable[[float], str] = _fmt,
    styles: Sequence[int] | None = None,
) -> SafeString:
    """One line per (label, points) series, each oldest first, with a legend when labelled.

    Figures measured differently (another algorithm, protocol or fold count) are not one
    trend: joined into a single line they zig-zag. The x axis is the order of all points'
    times, so runs line up across series and stay evenly spaced however irregular they are.
    ``height`` is the plot's; each legend entry adds a row below it. ``styles`` gives each
    series its colour (and dash) number, so one series looks the same in several charts.
    """
    numbered = zip(styles if styles is not None else range(len(series)), series, strict=True)
    kept = [(style, label, list(points)) for style, (label, points) in numbered if points]
    style_of = [style for style, _, _ in kept]
    series = [(label, points) for _, label, points in kept]
    labelled = any(label for label, _ in series)
    left, right, top, bottom = 44, 10, 24, 22
    w, h = width - left - right, height - top - bottom
    total = height + (LEGEND_ROW * len(series) + 8 if labelled else 0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="shopreco-chart" role="img" '
        f'viewBox="0 0 {width} {total}" preserveAspectRatio="xMinYMin meet" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="14" class="t">{escape(title)}</text>',
    ]
    if not series:
        parts.append(
            f'<text x="{left + w / 2}" y="{top + h / 2}" text-anchor="middle" class="m">'
            "no evaluation runs yet</text></svg>"
        )
        return mark_safe("".join(parts))
    values = [v for _, points in series for _, v in points]
    times = sorted({at for _, points in series for at, _ in points})
    slot = {at: i for i, at in enumerate(times)}
    lo, hi = _nice_range(min(values), max(values))
    n = len(times)

    def x(at: datetime) -> float:
        return left + (w * slot[at] / (n - 1) if n > 1 else w / 2)

    def y(v: float) -> float:
        return top + h - (v - lo) / (hi - lo) * h

    for v in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 5}" y="{y(v) + 3:.1f}" text-anchor="end" '
            f'class="a">{escape(fmt(v))}</text>'
        )
    for index, (label, points) in enumerate(series):
        colour = PALETTE[style_of[index] % len(PALETTE)]
        coords = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v in points)
        if len(series) == 1 and len(points) > 1:
            area = f"{x(points[0][0]):.1f},{top + h} {coords} {x(points[-1][0]):.1f},{top + h}"
            parts.append(f'<polygon points="{area}" fill="{colour}" fill-opacity="0.08"/>')
        if len(points) > 1:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" '
                f'stroke-linejoin="round"{_dash(style_of[index])}>'
                f"<title>{escape(label or title)}</title></polyline>"
            )
        for at, v in points:
            tip = f"{at:%Y-%m-%d %H:%M}: {fmt(v)}"
            tip = f"{label}, {tip}" if label else tip
            parts.append(
                f'<circle cx="{x(at):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    first, last = times[0], times[-1]
    stamp = "%d %b %H:%M" if (last - first).total_seconds() < 3 * 86400 else "%d %b %Y"
    parts.append(f'<text x="{left}" y="{height - 6}" class="a">{first:{stamp}}</text>')
    if n > 1:
        parts.append(
            f'<text x="{left + w}" y="{height - 6}" text-anchor="end" class="a">'
            f"{last:{stamp}}</text>"
        )
    if len(series) == 1:  # the latest figure; with several lines it would name none of them
        parts.append(
            f'<text x="{width - right}" y="14" text-anchor="end" class="v">'
            f"{escape(fmt(series[0][1][-1][1]))}</text>"
        )
    if labelled:
        room = max(8, (w - 24) // 6)
        for index, (label, _) in enumerate(series):
            colour = PALETTE[style_of[index] % len(PALETTE)]
            row = height + 8 + index * LEGEND_ROW
            short = label if len(label) <= room else label[: room - 1] + "\u2026"
            parts.append(
                f'<g class="legend"><line x1="{left}" x2="{left + 18}" y1="{row - 4}" '
                f'y2="{row - 4}" stroke="{colour}" stroke-width="2"{_dash(style_of[index])}/>'
                f'<text x="{left + 24}" y="{row}" class="l"><title>{escape(label)}</title>'
                f"{escape(short)}</text></g>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def bar_chart(
    rows: Sequence[tuple[str, float | None] | tuple[str, float | None, str]],
    *,
    title: str,
    width: int = 420,
    bar_height: int = 20,
    fmt: Callable[[float], str] = _fmt,
    label_width: int = 150,
    right: int = 60,
) -> SafeString:
    """Horizontal bars, one per (label, value[, text]); None values are drawn as "n/a"; the
    optional text replaces the formatted value at the end of the bar."""
    top, gap = 24, 6
    height = top + len(rows) * (bar_height + gap) + 4
    w = width - label_width - right
    peak = max((row[1] for row in rows if row[1] is not None), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="shopreco-chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="14" class="t">{escape(title)}</text>',
    ]
    if not rows:
        parts.append('<text x="0" y="40" class="m">no data yet</text></svg>')
        return mark_safe("".join(parts))
    for i, row in enumerate(rows):
        label, value = row[0], row[1]
        y = top + i * (bar_height + gap)
        room = max(8, label_width // 7)
        short = label if len(label) <= room else label[: room - 1] + "\u2026"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" '
            f'class="l"><title>{escape(label)}</title>{escape(short)}</text>'
        )
        parts.append(
            f'<rect x="{label_width}" y="{y}" width="{w}" height="{bar_height}" fill="{GRID}" '
            'rx="2"/>'
        )
        if value is not None:
            bw = max(1.0, w * value / peak)
            parts.append(
                f'<rect x="{label_width}" y="{y}" width="{bw:.1f}" height="{bar_height}" '
                f'fill="{ACCENT}" rx="2"/>'
            )
        text = row[2] if len(row) > 2 else (fmt(value) if value is not None else "n/a")
        parts.append(
            f'<text x="{label_width + w + 6}" y="{y + bar_height * 0.7:.1f}" class="a">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def percent(value: float | None) -> str:
    """A share as the charts label it; None (no data yet) as "n/a", never as 0%."""
    return "n/a" if value is None else f"{value * 100:.1f}%"
