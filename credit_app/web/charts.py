"""Server-rendered SVG charts: the geometry is computed here, templates/admin/_charts.html draws
it. No JavaScript and nothing from a CDN; every chart also comes with a table of its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 520
HEIGHT = 230
PAD_LEFT = 48
PAD_RIGHT = 12
PAD_TOP = 12
PAD_BOTTOM = 28
BAR_LABEL_WIDTH = 180
TONES: tuple[str, ...] = ("accent", "info", "warn", "danger")


@dataclass(frozen=True)
class Series:
    """A named run of values; `tone` (accent, info, warn, danger) picks its colour."""

    name: str
    values: Sequence[float]
    tone: str = ""


def _tones(series: Sequence[Series]) -> list[str]:
    return [item.tone or TONES[number % len(TONES)] for number, item in enumerate(series)]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    tone: str
    tooltip: str


@dataclass(frozen=True)
class Line:
    tone: str
    points: str
    name: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    description: str
    width: int
    height: int
    rects: list[Rect]
    lines: list[Line]
    grid: list[Label]
    x_labels: list[Label]
    y_labels: list[Label]
    legend: list[tuple[str, str]]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `value` (1 for 0)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def axis_top(peak: float, counts: bool) -> float:
    """The top of a value axis with four steps. For counts (users, generations) every step is
    a whole number, so the axis never reads "0.5 users"."""
    if not counts:
        return nice_ceiling(peak)
    step = max(1, math.ceil(nice_ceiling(peak / 4))) if peak > 0 else 1
    while step * 4 < peak:
        step += 1
    return float(step * 4)


def format_number(value: float, percent: bool = False) -> str:
    if percent:
        return f"{value * 100:.0f}%" if value * 100 == round(value * 100) else f"{value:.1%}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _y_axis(top: float, plot_height: float, percent: bool) -> tuple[list[Label], list[Label]]:
    grid, labels = [], []
    for step in range(5):
        value = top * step / 4
        y = PAD_TOP + plot_height - plot_height * step / 4
        grid.append(Label(PAD_LEFT, y, ""))
        labels.append(Label(PAD_LEFT - 6, y + 4, format_number(value, percent), "end"))
    return grid, labels


def _x_labels(labels: Sequence[str], slot: float, max_labels: int = 8) -> list[Label]:
    every = max(1, math.ceil(len(labels) / max_labels))
    return [
        Label(PAD_LEFT + slot * index + slot / 2, HEIGHT - 8, text)
        for index, text in enumerate(labels)
        if index % every == 0
    ]


def _all_whole(values: Sequence[float]) -> bool:
    return all(float(value).is_integer() for value in values)


def column_chart(
    chart_id: str, title: str, description: str, labels: Sequence[str], series: Sequence[Series]
) -> Chart:
    """Stacked columns, one per label (a day), one colour per series."""
    plot_height = HEIGHT - PAD_TOP - PAD_BOTTOM
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top = axis_top(max(totals, default=0), counts=_all_whole(totals))
    slot = _slot(labels)
    bar_width = max(slot * 0.7, 1.0)
    tones = _tones(series)
    rects = []
    for index, label in enumerate(labels):
        base = PAD_TOP + plot_height
        for number, item in enumerate(series):
            value = item.values[index]
            if value <= 0:
                continue
            height = plot_height * value / top
            base -= height
            rects.append(
                Rect(
                    PAD_LEFT + slot * index + (slot - bar_width) / 2,
                    base,
                    bar_width,
                    height,
                    tones[number],
                    f"{label}: {format_number(value)} {item.name}",
                )
            )
    return _day_chart(chart_id, title, description, labels, series, top, rects=rects)


def line_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    percent: bool = False,
) -> Chart:
    """One line per series over the labels (days); a missing value (None) is drawn as 0."""
    plot_height = HEIGHT - PAD_TOP - PAD_BOTTOM
    peak = max((value or 0 for item in series for value in item.values), default=0)
    whole = not percent and _all_whole([value or 0 for item in series for value in item.values])
    top = 1.0 if percent and peak <= 1 else axis_top(peak, counts=whole)
    slot = _slot(labels)
    tones = _tones(series)
    lines = []
    for number, item in enumerate(series):
        points = " ".join(
            f"{PAD_LEFT + slot * index + slot / 2:.1f},"
            f"{PAD_TOP + plot_height - plot_height * (value or 0) / top:.1f}"
            for index, value in enumerate(item.values)
        )
        lines.append(Line(tones[number], points, item.name))
    return _day_chart(
        chart_id, title, description, labels, series, top, lines=lines, percent=percent
    )


def _day_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    top: float,
    *,
    rects: list[Rect] | None = None,
    lines: list[Line] | None = None,
    percent: bool = False,
) -> Chart:
    """A chart of `rects` or `lines` over the labels (days), its y axis up to `top`, one legend
    entry per series in its tone."""
    grid, y_labels = _y_axis(top, HEIGHT - PAD_TOP - PAD_BOTTOM, percent)
    tones = _tones(series)
    return Chart(
        chart_id,
        title,
        description,
        WIDTH,
        HEIGHT,
        rects or [],
        lines or [],
        grid,
        _x_labels(labels, _slot(labels)),
        y_labels,
        [(tones[number], item.name) for number, item in enumerate(series)],
    )


def _slot(labels: Sequence[str]) -> float:
    """The width each label (day) has on the x axis."""
    return (WIDTH - PAD_LEFT - PAD_RIGHT) / max(len(labels), 1)


def bar_chart(
    chart_id: str, title: str, description: str, items: Sequence[tuple[str, float]]
) -> Chart:
    """Horizontal bars, one per item, labelled on the left."""
    row = 28
    height = PAD_TOP + row * max(len(items), 1) + 8
    plot_width = WIDTH - BAR_LABEL_WIDTH - 60
    top = nice_ceiling(max((value for _, value in items), default=0))
    rects, labels = [], []
    for index, (label, value) in enumerate(items):
        y = PAD_TOP + row * index
        rects.append(
            Rect(
                BAR_LABEL_WIDTH,
                y + 4,
                plot_width * value / top,
                row - 10,
                TONES[0],
                f"{label}: {format_number(value)}",
            )
        )
        labels.append(Label(BAR_LABEL_WIDTH - 8, y + row / 2 + 3, label, "end"))
        labels.append(
            Label(
                BAR_LABEL_WIDTH + plot_width * value / top + 6,
                y + row / 2 + 3,
                format_number(value),
                "start",
            )
        )
    return Chart(chart_id, title, description, WIDTH, height, rects, [], [], labels, [], [])
