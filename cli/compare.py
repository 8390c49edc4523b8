"""``amoeba compare --db URL EXP [EXP ...]``: experiments that ran through the real stack, side by side.

Read-only over the database (``orchestrator.readmodel.ReadModel``, which opens it read-only; a copy
works). One figure (``--plot``, default ``compare.png``): best-so-far fitness of each experiment over wall
time (hours since the experiment was created) and over evaluations (completions in completion order).
One table: best fitness, evaluations, hours and evaluations until the first completion within 1 % of the
best (fitness >= best - 0.01 |best|), and the median fitness of the current population.

``--json`` document (stable): ``{"experiments": {NAME: {"space", "algorithm", "state", "best_fitness",
"best_accuracy", "accuracy_split", "best_seq", "best_params", "best_mult_adds", "best_latency_ms", "evaluations", "hours", "hours_to_99", "evaluations_to_99",
"median_population_fitness", "population", "progress": {"hours": [...], "evaluations": [...],
"best_fitness": [...]}}}, "plot": PATH or null}``; ``progress`` lists the completions that raised the
best fitness, in order; numbers that do not exist yet (no completion) are null.
"""

from __future__ import annotations

import json
import math
import statistics
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table as RichTable

from cli.errors import UserError
from cli.status import domain_call, open_readmodel

#: "Within 1 % of the best": the fraction of |best fitness| a completion may fall short by.
NEAR_BEST = 0.01


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)


def summarize(records: list[dict[str, Any]], created_at: float) -> dict[str, Any]:
    """The table row and progress points of one experiment from its individuals (``ReadModel.records``)."""
    done = sorted((r for r in records if r["state"] == "completed" and r["fitness"] is not None
                   and math.isfinite(r["fitness"])),
                  key=lambda r: (r["completion_rank"] if r["completion_rank"] is not None else math.inf,
                                 r["proposal_seq"]))
    hours = [max(0.0, ((r["completed_at"] or created_at) - created_at) / 3600.0) for r in done]
    fitness = [float(r["fitness"]) for r in done]
    population = [float(r["fitness"]) for r in done if r["in_population"]]
    row: dict[str, Any] = {
        "best_fitness": None, "best_accuracy": None, "best_seq": None, "best_params": None, "best_mult_adds": None,
        "best_latency_ms": None, "evaluations": len(done),
        "hours": round(hours[-1], 6) if hours else None, "hours_to_99": None, "evaluations_to_99": None,
        "median_population_fitness": round(statistics.median(population), 6) if population else None,
        "population": len(population),
        "progress": {"hours": [], "evaluations": [], "best_fitness": []},
    }
    if not done:
        return row
    best_index = max(range(len(done)), key=lambda i: (fitness[i], -i))
    best = fitness[best_index]
    threshold = best - NEAR_BEST * abs(best)
    first = next(i for i, f in enumerate(fitness) if f >= threshold)
    winner = done[best_index]
    accuracy, latency = winner["accuracy"], winner.get("latency_ms")
    row.update(best_fitness=round(best, 6), best_accuracy=round(accuracy, 6) if accuracy is not None else None,
               best_seq=winner["proposal_seq"], best_params=winner.get("params"),
               best_mult_adds=winner.get("mult_adds"),
               best_latency_ms=round(latency, 4) if latency is not None else None, hours_to_99=round(hours[first], 6),
               evaluations_to_99=first + 1)
    top = -math.inf
    for i, f in enumerate(fitness):
        if f > top:
            top = f
            row["progress"]["hours"].append(round(hours[i], 6))
            row["progress"]["evaluations"].append(i + 1)
            row["progress"]["best_fitness"].append(round(f, 6))
    row["_series"] = {"hours": hours, "fitness": fitness}
    return row


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def compare(
    experiments: Annotated[list[str], typer.Argument(help="experiment names (two or more to compare; one works)")],
    db_url: Annotated[str, typer.Option("--db", help="database URL or SQLite file (a copy works; opened read-only)")],
    plot: Annotated[Path, typer.Option(help="PNG file for the progress figure")] = Path("compare.png"),
    no_plot: Annotated[bool, typer.Option("--no-plot", help="draw no figure")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (see the module's schema)")] = False,
) -> None:
    """Progress curves (best fitness over wall time and evaluations) of experiments on one figure, and a table."""
    if len(set(experiments)) != len(experiments):
        raise UserError("an experiment is named twice")
    if not no_plot and plot.suffix.lower() != ".png":
        raise UserError(f"--plot must name a .png file, got {str(plot)[:60]!r}")
    model = open_readmodel(db_url)
    rows: dict[str, dict[str, Any]] = {}
    try:
        for name in experiments:
            exp = domain_call(partial(model.experiment, name))
            spec = model.spec(exp)
            row = summarize(domain_call(partial(model.records, name)), exp.created_at)
            # A final experiment (amoeba retrain) scores on the test split: say so beside its accuracy.
            split = "test" if (spec.training or {}).get("split") == "final" else "validation"
            rows[name] = {"space": spec.space, "algorithm": spec.algorithm, "state": str(exp.state),
                          "accuracy_split": split, **row}
    finally:
        model.close()
    series = {name: row.pop("_series", {"hours": [], "fitness": []}) for name, row in rows.items()}
    written: str | None = None
    if not no_plot:
        from ui.comparison import experiments_plot

        experiments_plot(series, plot, title="best fitness so far over wall time")
        written = str(plot)
    if as_json:
        typer.echo(json.dumps({"experiments": rows, "plot": written}, indent=2))
        return
    table = RichTable(title="best fitness; its accuracy (validation, or test for a final model), parameters, "
                            "M multiply-adds and latency (ms); evaluations and hours in all, until 1 % of the best; "
                            "median population fitness")
    widths = {"experiment": max(len(n) for n in rows), "algorithm": max(len(r["algorithm"]) for r in rows.values())}
    for col in ("experiment", "algorithm", "best", "accuracy", "params", "M MACs", "ms", "evals", "hours",
                "h to 99%", "evals to 99%", "median pop"):
        table.add_column(col, justify="left" if col in widths else "right", no_wrap=col in widths,
                         min_width=widths.get(col))
    for name, r in rows.items():
        split = "test" if r["accuracy_split"] == "test" else "val"
        accuracy = "-" if r["best_accuracy"] is None else f"{r['best_accuracy']:.4f} {split}"
        mult_adds = None if r["best_mult_adds"] is None else r["best_mult_adds"] / 1e6
        table.add_row(name, r["algorithm"], _fmt(r["best_fitness"], ".4f"), accuracy, _fmt(r["best_params"], ","),
                      _fmt(mult_adds, ".1f"), _fmt(r["best_latency_ms"], ".3f"), str(r["evaluations"]),
                      _fmt(r["hours"], ".3f"), _fmt(r["hours_to_99"], ".3f"), _fmt(r["evaluations_to_99"], "d"),
                      _fmt(r["median_population_fitness"], ".4f"))
    console = Console()
    if not console.is_terminal:
        # Piped or logged: no terminal to fit, so the twelve columns keep their values instead of wrapping.
        console = Console(width=max(console.width, 140))
    console.print(table)
    if written:
        console.print(f"figure: {written}")
