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
    left, right, top, bottom = 44, 10, 24, 22
    w, h = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="shopreco-chart" role="img" '
        f'viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="14" class="t">{escape(title)}</text>',
    ]
    if not points:
        parts.append(
            f'<text x="{left + w / 2}" y="{top + h / 2}" text-anchor="middle" class="m">'
            "no evaluation runs yet</text></svg>"
        )
        return mark_safe("".join(parts))
    values = [v for _, v in points]
    lo, hi = _nice_range(min(values), max(values))
    n = len(points)

    def x(i: int) -> float:
        return left + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v: float) -> float:
        return top + h - (v - lo) / (hi - lo) * h

    for v in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 5}" y="{y(v) + 3:.1f}" text-anchor="end" '
            f'class="a">{escape(fmt(v))}</text>'
        )
    coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    if n > 1:
        area = f"{x(0):.1f},{top + h} {coords} {x(n - 1):.1f},{top + h}"
        parts.append(f'<polygon points="{area}" fill="{ACCENT}" fill-opacity="0.08"/>')
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{ACCENT}" stroke-width="2" '
            'stroke-linejoin="round"/>'
        )
    for i, (at, v) in enumerate(points):
        label = f"{at:%Y-%m-%d %H:%M}: {fmt(v)}"
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{ACCENT}">'
            f"<title>{escape(label)}</title></circle>"
        )
    first, last = points[0][0], points[-1][0]
    stamp = "%d %b %H:%M" if (last - first).total_seconds() < 3 * 86400 else "%d %b %Y"
    parts.append(f'<text x="{left}" y="{height - 6}" class="a">{first:{stamp}}</text>')
    if n > 1:
        parts.append(
            f'<text x="{left + w}" y="{height - 6}" text-anchor="end" class="a">'
            f"{last:{stamp}}</text>"
        )
    parts.append(
        f'<text x="{width - right}" y="14" text-anchor="end" class="v">'
        f"{escape(fmt(values[-1]))}</text>"
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
