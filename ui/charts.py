"""Terminal charts over plain numbers: sparklines of unicode blocks and a character scatter of the front."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text

BLOCKS = "▁▂▃▄▅▆▇█"
DOT = "·"
FRONT = "●"


def sparkline(values: Sequence[float | None], lo: float | None = None, hi: float | None = None) -> str:
    """One block per value scaled between ``lo`` and ``hi`` (default: the data's range); None is a blank."""
    real = [v for v in values if v is not None and math.isfinite(v)]
    if not real:
        return " " * len(values)
    lo = min(real) if lo is None else lo
    hi = max(real) if hi is None else hi
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif hi <= lo:
            out.append(BLOCKS[len(BLOCKS) // 2])  # a flat line sits mid-height rather than on the floor
        else:
            level = round((min(max(v, lo), hi) - lo) / (hi - lo) * (len(BLOCKS) - 1))
            out.append(BLOCKS[level])
    return "".join(out)


def resample_steps(points: Sequence[Sequence[float]], width: int) -> list[float | None]:
    """A step function through (t, value) points, sampled at ``width`` equal time columns.

    Column i shows the last value at or before its right edge, so the line starts where the first
    point lies and the last column is the latest value; columns before the first point are None.
    """
    if width < 1 or not points:
        return []
    pts = sorted((float(t), float(v)) for t, v in points)
    t0, t1 = pts[0][0], pts[-1][0]
    if t1 <= t0:
        return [pts[-1][1]] * width
    out: list[float | None] = []
    j, current = 0, None
    for i in range(width):
        edge = t0 + (t1 - t0) * (i + 1) / width
        while j < len(pts) and pts[j][0] <= edge + 1e-12 * abs(edge):
            current = pts[j][1]
            j += 1
        out.append(current)
    return out


def scatter(
    points: Sequence[tuple[float, float, bool]],
    width: int = 60,
    height: int = 12,
    x_label: str = "latency ms",
    y_label: str = "accuracy",
) -> Text:
    """A character scatter of (x, y, highlighted) points: all points dim, highlighted ones bold on top.

    The y axis carries its max and min on the left, the x axis its min and max underneath.
    """
    real = [(x, y, h) for x, y, h in points if math.isfinite(x) and math.isfinite(y)]
    if not real:
        return Text("no points yet", style="dim")
    xs = [p[0] for p in real]
    ys = [p[1] for p in real]
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    grid: list[list[tuple[str, str]]] = [[(" ", "")] * width for _ in range(height)]

    def cell(x: float, y: float) -> tuple[int, int]:
        col = 0 if x_hi <= x_lo else round((x - x_lo) / (x_hi - x_lo) * (width - 1))
        row = height // 2 if y_hi <= y_lo else round((y_hi - y) / (y_hi - y_lo) * (height - 1))
        return row, col

    # Front points are drawn last so a dominated point in the same cell never hides them.
    for x, y, h in sorted(real, key=lambda p: p[2]):
        r, c = cell(x, y)
        grid[r][c] = (FRONT, "bold green") if h else (DOT, "dim")
    y_top, y_bottom = _fmt(y_hi), _fmt(y_lo)
    margin = max(len(y_top), len(y_bottom), len(y_label)) + 1
    text = Text()
    text.append(f"{y_label:>{margin - 1}} \n", style="dim")
    for r, row in enumerate(grid):
        label = y_top if r == 0 else y_bottom if r == height - 1 else ""
        text.append(f"{label:>{margin - 1}}│", style="dim")
        for ch, style in row:
            text.append(ch, style=style)
        text.append("\n")
    text.append(" " * (margin - 1) + "└" + "─" * width + "\n", style="dim")
    left, right = _fmt(x_lo), _fmt(x_hi)
    middle = max(1, width - len(left) - len(right))
    text.append(" " * margin + left + f"{x_label:^{middle}}" + right, style="dim")
    return text


def _fmt(v: float) -> str:
    return f"{v:.4g}"
