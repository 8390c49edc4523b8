"""PNG figures of an experiment over plain lists: the paper's progress figure and the accuracy/latency front."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

# The object-oriented Figure API (rendered on the Agg canvas by ui.files): no pyplot global state.
from matplotlib.figure import Figure

from ui.derive import best_so_far, front_line
from ui.files import DPI, save_png

SIZE_INCHES = (8.0, 5.0)


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def progress_plot(
    points: Sequence[tuple[float, float]],
    path: str | Path,
    *,
    x_label: str = "evaluation",
    y_label: str = "fitness",
    title: str = "",
) -> Path:
    """Fitness of every individual against time or evaluation index as dots, with the best-so-far line.

    ``points`` are (x, fitness) pairs, one per completed individual; non-finite values are skipped.
    """
    pts = [(float(x), float(f)) for x, f in points if _finite(x, f)]
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="tight")
    ax = fig.add_subplot()
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=6, alpha=0.35, color="tab:blue",
                   linewidths=0, label="individual")
        line = best_so_far(pts)
        xs = [p[0] for p in line] + [max(p[0] for p in pts)]
        ys = [p[1] for p in line] + [line[-1][1]]
        ax.step(xs, ys, where="post", color="tab:red", linewidth=1.8, label="best so far")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no completed individuals", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title or "progress")
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def front_plot(
    points: Sequence[tuple[float, float]],
    path: str | Path,
    *,
    title: str = "",
    accuracy_label: str = "accuracy",
) -> Path:
    """Every (accuracy, latency_ms) point, with the non-dominated front as a step line and highlighted markers."""
    pts = [(float(a), float(lat)) for a, lat in points if _finite(a, lat)]
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="tight")
    ax = fig.add_subplot()
    if pts:
        ax.scatter([p[1] for p in pts], [p[0] for p in pts], s=6, alpha=0.35, color="tab:gray",
                   linewidths=0, label="individual")
        front = front_line(pts)
        # Accuracy rises with latency along the front; 'post' steps show what each latency budget buys.
        ax.step([p[1] for p in front], [p[0] for p in front], where="post", color="tab:green", linewidth=1.5)
        ax.scatter([p[1] for p in front], [p[0] for p in front], s=24, color="tab:green", zorder=3,
                   label=f"front ({len(front)} points)")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no individuals with a latency", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency (ms, simulated Edge TPU)")
    ax.set_ylabel(accuracy_label)
    ax.set_title(title or "accuracy vs latency")
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def learning_curves_plot(curves: Sequence[Mapping[str, Any]], best: Collection[int], path: str | Path, *,
                         title: str = "") -> Path:
    """Validation accuracy against epoch for every child (one thin grey line per attempt), the ``best``
    children (proposal numbers) drawn in colour on top."""
    lines: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for r in curves:
        acc = r.get("accuracy")
        if acc is None or not _finite(float(acc)):
            continue
        lines.setdefault((int(r["proposal_seq"]), int(r.get("attempt") or 1)), []).append((float(r["epoch"]), float(acc)))
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="tight")
    ax = fig.add_subplot()
    colours = iter(("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"))
    for (seq, _attempt), pts in sorted(lines.items(), key=lambda kv: kv[0][0] in best):
        pts.sort()
        if seq in best:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linewidth=1.8, color=next(colours, "black"),
                    label=f"#{seq}", zorder=3)
        else:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linewidth=0.6, color="0.6", alpha=0.6, zorder=1)
    if not lines:
        ax.text(0.5, 0.5, "no progress reports", ha="center", va="center", transform=ax.transAxes)
    elif set(best) & {seq for seq, _ in lines}:
        ax.legend(loc="lower right", title="best children")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "learning curves")
    ax.grid(alpha=0.3)
    return save_png(fig, path)
