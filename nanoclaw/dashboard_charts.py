"""Charts for the dashboard, drawn on the server as SVG: no script library, nothing fetched.

`stacked_bars` turns a value per day and series into rectangles in a
fixed view box, one stack per day and one colour per series, each with a
title the browser shows on hover; the template only draws what it gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 78, 22, 10
COLOURS = ("#3b7dd8", "#e07b39", "#3a9e5c", "#b04fc4", "#c9a227", "#d6455d", "#4fb3bf", "#7a7a7a")


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass
class Chart:
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)      # (y, label) on the value axis
    labels: list[tuple[float, str]] = field(default_factory=list)     # (x, day) under some stacks
    legend: list[tuple[str, str]] = field(default_factory=list)       # (colour, series)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT  # room for the value axis's labels
    empty: bool = True


def stacked_bars(days: list[str], series: dict[str, list[float]], unit: str, decimals: int = 2) -> Chart:
    """A stack per day of each series' value that day; `unit` labels values (`$`, `tokens`)."""
    chart = Chart(legend=[(COLOURS[n % len(COLOURS)], name) for n, name in enumerate(series)])
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    top = max(totals, default=0.0)
    chart.empty = top <= 0
    if not days:
        return chart
    scale = (HEIGHT - BOTTOM - TOP) / (top or 1.0)
    slot = (WIDTH - LEFT) / len(days)
    for i, day in enumerate(days):
        x, base = LEFT + i * slot + slot * 0.15, HEIGHT - BOTTOM
        for n, (name, values) in enumerate(series.items()):
            if values[i] <= 0:
                continue
            height = values[i] * scale
            base -= height
            chart.bars.append(Bar(round(x, 1), round(base, 1), round(slot * 0.7, 1), round(height, 1),
                                  COLOURS[n % len(COLOURS)], f"{day} {name}: {_shown(values[i], unit, decimals)}"))
        if i % max(1, len(days) // 6) == 0:
            chart.labels.append((round(x, 1), day[5:]))
    for step in range(5):
        value = top * step / 4
        chart.ticks.append((round(HEIGHT - BOTTOM - value * scale, 1), _shown(value, unit, decimals)))
    return chart


def _shown(value: float, unit: str, decimals: int) -> str:
    if unit == "$":
        return f"${value:.{decimals}f}"
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix} {unit}"
    return f"{value:,.0f} {unit}"
