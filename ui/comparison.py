"""PNG figures that compare search algorithms or experiments, over plain lists (the style of ``ui.plots``:
the Figure API on the Agg canvas, no pyplot).

- ``curves_plot``: the controlled comparison's figure (Real et al. 2019, figure 3): per algorithm the mean
  best-so-far accuracy against simulated search time with a band of one standard deviation across runs,
  and beside it the distribution of the runs' final accuracies.
- ``experiments_plot``: experiments that ran through the real stack, best-so-far fitness against wall time
  and against evaluations, one line each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ui.files import DPI, save_png

WIDE_INCHES = (12.0, 5.0)
COLORS = ("tab:red", "tab:blue", "tab:green", "tab:gray", "tab:purple", "tab:orange", "tab:brown", "tab:pink",
          "tab:olive", "tab:cyan")


def _finite(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def curves_plot(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    finals: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    x_label: str = "simulated search time (s)",
    y_label: str = "test accuracy of the best-fitness genome (%)",
    title: str = "",
) -> Path:
    """``curves`` maps an algorithm to ``{"t", "mean", "std"}``; ``finals`` to its runs' final values."""
    fig = Figure(figsize=WIDE_INCHES, dpi=DPI, layout="tight")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1.0]})
    names = list(curves)
    for i, name in enumerate(names):
        c = curves[name]
        t, mean, std = list(c.get("t", ())), list(c.get("mean", ())), list(c.get("std", ()))
        if not t or not (_finite(t) and _finite(mean) and _finite(std)) or not len(t) == len(mean) == len(std):
            continue
        color = COLORS[i % len(COLORS)]
        left.plot(t, mean, color=color, linewidth=1.8, label=name)
        left.fill_between(t, [m - s for m, s in zip(mean, std, strict=True)],
                          [m + s for m, s in zip(mean, std, strict=True)], color=color, alpha=0.12, linewidth=0)
    if names:
        left.legend(loc="lower right")
    # The first points (a few random evaluations) spread far below the rest: start the axis at the band
    # a tenth of the way in, so the differences that matter stay visible.
    usable = [c for c in curves.values() if c.get("mean") and c.get("std") and len(c["mean"]) == len(c["std"])
              and _finite(c["mean"]) and _finite(c["std"])]
    if usable:
        tenth = [(list(c["mean"])[len(c["mean"]) // 10:], list(c["std"])[len(c["std"]) // 10:]) for c in usable]
        low = min(m[0] - s[0] for m, s in tenth)
        high = max(max(a + b for a, b in zip(m, s, strict=True)) for m, s in tenth)
        left.set_ylim(low, high + 0.05 * (high - low) if high > low else high + 1.0)
    left.set_xlabel(x_label)
    left.set_ylabel(y_label)
    left.set_title(title or "best so far: mean and one standard deviation across runs")
    left.grid(alpha=0.3)
    shown = [(n, [v for v in finals.get(n, ()) if math.isfinite(v)]) for n in names]
    shown = [(n, v) for n, v in shown if v]
    if shown:
        parts = right.violinplot([v for _, v in shown], showmedians=True, showextrema=False)
        for i, body in enumerate(parts["bodies"]):
            body.set_facecolor(COLORS[names.index(shown[i][0]) % len(COLORS)])
            body.set_alpha(0.45)
        right.set_xticks(range(1, len(shown) + 1), [n for n, _ in shown], rotation=20)
    else:
        right.text(0.5, 0.5, "no runs", ha="center", va="center", transform=right.transAxes)
    right.set_ylabel("final " + y_label)
    right.set_title("final values over runs")
    right.grid(alpha=0.3, axis="y")
    return save_png(fig, path)


def _best_so_far(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    pts = sorted((x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(x) and math.isfinite(y))
    out_x: list[float] = []
    out_y: list[float] = []
    best = -math.inf
    for x, y in pts:
        if y > best:
            best = y
            out_x.append(x)
            out_y.append(y)
    if pts and out_x:
        out_x.append(pts[-1][0])
        out_y.append(best)
    return out_x, out_y


def experiments_plot(
    series: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    y_label: str = "best fitness so far",
    title: str = "",
) -> Path:
    """``series`` maps an experiment to ``{"hours": [...], "fitness": [...]}``, one entry per completed
    individual in completion order; left panel against wall time, right against evaluations."""
    fig = Figure(figsize=WIDE_INCHES, dpi=DPI, layout="tight")
    by_time, by_count = fig.subplots(1, 2)
    span = max((h for data in series.values() for h in data.get("hours", ()) if math.isfinite(h)), default=0.0)
    # The time axis in seconds, minutes or hours by the longest run's span (as the exports' progress.png).
    unit, per_hour = ("seconds", 3600.0) if span < 2 / 60 else ("minutes", 60.0) if span < 2 else ("hours", 1.0)
    for i, (name, data) in enumerate(series.items()):
        hours, fitness = list(data.get("hours", ())), list(data.get("fitness", ()))
        color = COLORS[i % len(COLORS)]
        x, y = _best_so_far([h * per_hour for h in hours], fitness)
        if x:
            by_time.step(x, y, where="post", color=color, linewidth=1.6, label=name)
        x, y = _best_so_far([float(k + 1) for k in range(len(fitness))], fitness)
        if x:
            by_count.step(x, y, where="post", color=color, linewidth=1.6, label=name)
    for ax, label in ((by_time, f"wall time ({unit} since the experiment was created)"), (by_count, "evaluations")):
        ax.set_xlabel(label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(loc="lower right")
    by_time.set_title(title or "progress over wall time")
    by_count.set_title("progress over evaluations")
    return save_png(fig, path)
