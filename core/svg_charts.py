"""Charts drawn on the server as inline SVG: the admin pages show them with no script, font or file from elsewhere.

Pure Python (no Django): a chart is a string of SVG markup in which every text is escaped here, so a caller may
mark it safe. Each drawn point carries ``data-series``, ``data-label`` and ``data-count``: what a test (or an
operator's inspector) reads is what was drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Room around the plot for the axis labels and the legend, in SVG units.
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 36
X_TICKS_MAX = 8


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its name (legend, data-series), its colour and one value per label."""

    name: str
    colour: str
    values: Sequence[int]


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n (n >= 0) not below ``value``, at least 1: round numbers on the y axis."""
    if value <= 1:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def y_steps(top: int) -> int:
    """How many grid steps split 0..``top`` (a ``nice_ceiling``) into whole numbers: 1 -> 1, 2 -> 2, 5 -> 5,
    10 -> 5 (by 2), 20 -> 4 (by 5), 50 -> 5 (by 10)."""
    if top <= 5:
        return top
    return 4 if str(top)[0] == "2" else 5


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _fmt(number: float) -> str:
    return f"{number:.1f}"


def x_positions(n: int, *, left: float, right: float) -> list[float]:
    """``n`` evenly spaced x coordinates from ``left`` to ``right`` (one point: the middle)."""
    if n == 1:
        return [(left + right) / 2]
    step = (right - left) / (n - 1)
    return [left + i * step for i in range(n)]


def tick_indexes(n: int, most: int = X_TICKS_MAX) -> list[int]:
    """Which of ``n`` labels the x axis writes: at most ``most``, evenly spread, first and last included."""
    if n <= most:
        return list(range(n))
    step = -(-(n - 1) // (most - 1))  # ceil: never more than `most` ticks
    indexes = list(range(0, n - 1, step))
    if n - 1 - indexes[-1] < step / 2:
        indexes.pop()  # the last label would overlap the one before
    return [*indexes, n - 1]


def line_chart(
    *,
    labels: Sequence[str],
    series: Sequence[Series],
    width: int = 860,
    height: int = 260,
    title: str = "",
    x_caption: str = "",
) -> str:
    """A line per series over evenly spaced ``labels`` (time buckets), with a dot and a tooltip on each non-zero
    value, a y axis from 0 to a round maximum, the labels as x ticks and a legend. Empty input draws an empty frame
    that says so."""
    for one in series:
        if len(one.values) != len(labels):
            raise ValueError(f"series {one.name!r} has {len(one.values)} values for {len(labels)} labels")
    plot_left, plot_right, plot_top, plot_bottom = LEFT, width - RIGHT, TOP, height - BOTTOM
    top_value = nice_ceiling(max((max(one.values, default=0) for one in series), default=0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="svg-chart line-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_attr(title)}" data-max="{top_value}" '
        f'font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{plot_left}" y="{plot_top}" width="{plot_right - plot_left}" height="{plot_bottom - plot_top}" '
        f'fill="#fafafa" stroke="#ccc"/>',
    ]

    def y_of(value: float) -> float:
        return plot_bottom - (plot_bottom - plot_top) * value / top_value

    steps = y_steps(top_value)
    for step in range(steps + 1):
        value = top_value * step // steps
        y = _fmt(y_of(value))
        text = str(value)
        parts.append(f'<line x1="{plot_left}" x2="{plot_right}" y1="{y}" y2="{y}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{plot_left - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">{text}</text>')

    if not labels:
        parts.append(
            f'<text x="{(plot_left + plot_right) / 2}" y="{(plot_top + plot_bottom) / 2}" text-anchor="middle" '
            f'fill="#777">Nothing to draw yet</text>'
        )
    xs = x_positions(len(labels), left=plot_left + 8, right=plot_right - 8) if labels else []
    for i in tick_indexes(len(labels)):
        x = _fmt(xs[i])
        parts.append(f'<line x1="{x}" x2="{x}" y1="{plot_bottom}" y2="{plot_bottom + 4}" stroke="#999"/>')
        parts.append(f'<text x="{x}" y="{plot_bottom + 16}" text-anchor="middle">{escape(labels[i])}</text>')
    if x_caption:
        parts.append(
            f'<text x="{plot_right}" y="{height - 4}" text-anchor="end" fill="#555">{escape(x_caption)}</text>'
        )

    for one in series:
        name, colour = _attr(one.name), _attr(one.colour)
        points = " ".join(f"{_fmt(x)},{_fmt(y_of(v))}" for x, v in zip(xs, one.values, strict=True))
        if len(xs) > 1:
            parts.append(
                f'<polyline class="series-line" data-series="{name}" points="{points}" fill="none" '
                f'stroke="{colour}" stroke-width="1.8" stroke-linejoin="round"/>'
            )
        for x, label, value in zip(xs, labels, one.values, strict=True):
            if value:
                parts.append(
                    f'<circle class="point" data-series="{name}" data-label="{_attr(label)}" data-count="{value}" '
                    f'cx="{_fmt(x)}" cy="{_fmt(y_of(value))}" r="2.8" fill="{colour}">'
                    f"<title>{escape(label)}: {value} {escape(one.name)}</title></circle>"
                )

    legend_x = plot_left
    for one in series:
        total = sum(one.values)
        parts.append(
            f'<g class="legend" data-series="{_attr(one.name)}" data-total="{total}">'
            f'<rect x="{legend_x}" y="8" width="10" height="10" fill="{_attr(one.colour)}"/>'
            f'<text x="{legend_x + 14}" y="17">{escape(one.name)} ({total})</text></g>'
        )
        legend_x += 24 + 7 * (len(one.name) + len(str(total)) + 3)
    parts.append("</svg>")
    return "".join(parts)
