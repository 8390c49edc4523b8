"""The Large-Scale Evolution figure: every individual's accuracy over wall time, the best one's ancestry as a line.

Real et al. 2017's Figure 1 draws the population as dots (one per evaluated individual, accuracy against
the time it finished) and joins the best individual's ancestors with a line, labelling the mutations
that led to it. Here from plain export records (``ui.export``'s mapping form), for any experiment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ui.derive import lineage

SIZE_INCHES = (9.0, 5.5)
DPI = 100
#: Ancestors labelled with the mutation that made them (the blog shows the best and three of its ancestors).
LABELLED = 4
MAX_LABEL = 40


def _value(r: Mapping[str, Any]) -> float | None:
    """A record's accuracy (its fitness when no accuracy was kept), or None."""
    for key in ("accuracy", "fitness"):
        v = r.get(key)
        if v is not None and math.isfinite(float(v)):
            return float(v)
    return None


def _done(r: Mapping[str, Any]) -> bool:
    return r.get("state", "completed") == "completed" and _value(r) is not None


def time_axis(records: Sequence[Mapping[str, Any]], created_at: float | None) -> tuple[dict[int, float], str]:
    """x of every finished record (proposal seq -> x) and the axis label: time since ``created_at`` in
    seconds, minutes or hours by the run's span, or the completion index when times are missing."""
    done = [r for r in records if _done(r)]
    if created_at is not None and done and all(r.get("completed_at") is not None for r in done):
        span = max(float(r["completed_at"]) - created_at for r in done)
        unit, scale = ("seconds", 1.0) if span < 120 else ("minutes", 60.0) if span < 7200 else ("hours", 3600.0)
        return ({int(r["proposal_seq"]): (float(r["completed_at"]) - created_at) / scale for r in done},
                f"wall time ({unit} since the experiment was created)")
    done.sort(key=lambda r: (r.get("completion_rank") is None, r.get("completion_rank") or 0, int(r["proposal_seq"])))
    return {int(r["proposal_seq"]): float(i) for i, r in enumerate(done)}, "completed evaluations"


def best_ancestry(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The most accurate finished individual and its ancestors, oldest first (empty when none finished)."""
    done = [r for r in records if _done(r)]
    if not done:
        return []
    best = max(done, key=lambda r: (_value(r) or 0.0, -int(r["proposal_seq"])))
    try:
        return list(reversed(lineage(records, int(best["proposal_seq"]))))
    except (KeyError, ValueError):
        return [best]


def ancestry_plot(records: Sequence[Mapping[str, Any]], path: str | Path, *, created_at: float | None = None,
                  title: str = "") -> Path:
    """Every finished individual as a dot (accuracy over wall time) and the best one's ancestry as a line,
    its last ``LABELLED`` steps labelled with their mutations; written as a PNG to ``path``."""
    from ui.files import save_png

    xs, x_label = time_axis(records, created_at)
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="tight")
    ax = fig.add_subplot()
    dots = [(xs[int(r["proposal_seq"])], _value(r) or 0.0) for r in records if _done(r) and int(r["proposal_seq"]) in xs]
    if dots:
        ax.scatter([d[0] for d in dots], [d[1] for d in dots], s=7, alpha=0.4, color="tab:blue", linewidths=0,
                   label=f"individual ({len(dots)})")
        chain = [r for r in best_ancestry(records) if int(r["proposal_seq"]) in xs]
        if chain:
            cx = [xs[int(r["proposal_seq"])] for r in chain]
            cy = [_value(r) or 0.0 for r in chain]
            ax.plot(cx, cy, color="tab:red", linewidth=1.6, marker="o", markersize=4, zorder=3,
                    label=f"best individual #{chain[-1]['proposal_seq']} and its {len(chain) - 1} ancestors")
            # The last steps' numbers beside their points, their mutations in a box (labels on close points
            # would overlap).
            lines = []
            for r, x, y in list(zip(chain, cx, cy, strict=True))[-LABELLED:]:
                text = str(r.get("mutation") or "")
                text = text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 3] + "..."
                ax.annotate(f"#{r['proposal_seq']}", (x, y), textcoords="offset points", xytext=(-4, 6),
                            ha="right", fontsize=7, color="tab:red")
                lines.append(f"#{r['proposal_seq']}: {text}")
            ax.text(0.01, 0.99, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=7,
                    color="tab:red", bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no completed individuals", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(x_label)
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "evolution: individuals and the best one's ancestry")
    ax.grid(alpha=0.3)
    return save_png(fig, path)
