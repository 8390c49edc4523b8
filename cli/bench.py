"""``amoeba bench nb201``: the search algorithms on a NAS-Bench-201-shaped table, in-process, no training."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table as RichTable

from cli.errors import UserError
from evolution import ALGORITHMS
from evolution.benchmark import compare
from genome import get_space
from mutations import build_mutation, default_mutation_spec
from tables.nb201 import load_table

bench_app = typer.Typer(help="Algorithm benchmarks on tabular data (no training).", no_args_is_help=True)


@bench_app.command("nb201")
def nb201(
    table: Annotated[Path | None, typer.Option(help="CSV with an arch_str column (default: the shipped CIFAR-10 table)")] = None,
    fitness_column: Annotated[str, typer.Option(help="column searched on")] = "c10v_valid_acc_12ep",
    report_column: Annotated[str, typer.Option(help="column reported for the best-fitness genome")] = "c10_test_acc_200ep",
    cost_column: Annotated[str, typer.Option(help="column with each evaluation's simulated cost in seconds")] = "est_cost_12ep_sec",
    budget_seconds: Annotated[float | None, typer.Option(help="simulated time budget (default 12000 unless --budget-evaluations)")] = None,
    budget_evaluations: Annotated[int | None, typer.Option(help="stop after this many evaluations instead of a time budget")] = None,
    algorithms: Annotated[str, typer.Option(help="comma-separated: aging,non-aging,random")] = "aging,random",
    population: Annotated[int, typer.Option("--population", "-P", help="population size P")] = 10,
    sample: Annotated[int, typer.Option("--sample", "-S", help="tournament sample size S")] = 3,
    runs: Annotated[int, typer.Option(help="independent runs per algorithm")] = 500,
    seed: Annotated[int, typer.Option(help="seed of run 0 (run r uses seed + r)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document only")] = False,
) -> None:
    """Compare aging evolution, non-aging evolution and random search on a table (NAS-Bench-201 protocol)."""
    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    bad = [a for a in names if a not in ALGORITHMS]
    if bad or not names:
        raise UserError(f"unknown algorithm(s) {', '.join(bad) or '(none)'}; expected from {', '.join(ALGORITHMS)}")
    if runs < 1 or population < 1 or sample < 1:
        raise UserError("--runs, --population and --sample must be positive")
    if budget_evaluations is not None and budget_evaluations < 1:
        raise UserError("--budget-evaluations must be positive")
    if budget_seconds is None and budget_evaluations is None:
        budget_seconds = 12000.0
    if budget_seconds is not None and budget_seconds <= 0:
        raise UserError("--budget-seconds must be positive")
    data = load_table(table)
    fitness = data.column(fitness_column)
    report = data.column(report_column)
    cost = data.column(cost_column) if budget_seconds is not None else None
    space = get_space("nb201")
    if len(fitness) < len(space.all_genomes()):
        # Searches may propose any cell; a partial table cannot answer for the missing ones.
        raise UserError(f"table {data.path} covers {len(fitness)} of the 15625 NB201 cells; a complete table is required")
    mutation = build_mutation(default_mutation_spec("nb201"), "nb201")
    started = time.perf_counter()
    results = compare(
        names, space, mutation, fitness, report, runs, seed, population, sample,
        cost=cost, budget_seconds=budget_seconds, budget_evaluations=budget_evaluations,
    )
    elapsed = time.perf_counter() - started
    doc = {
        "algorithms": {name: summary.to_json() for name, summary in results.items()},
        "protocol": {
            "table": data.path,
            "fitness_column": fitness_column,
            "report_column": report_column,
            "cost_column": cost_column if budget_seconds is not None else None,
            "budget_seconds": budget_seconds,
            "budget_evaluations": budget_evaluations,
            "population": population,
            "sample": sample,
            "runs": runs,
            "seed": seed,
        },
        "seconds": round(elapsed, 3),
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    out = RichTable(title=f"NB201 search: best-fitness genome's {report_column} over {runs} runs")
    for col in ("algorithm", "mean", "std", "runs", "mean evaluations"):
        out.add_column(col, justify="right" if col != "algorithm" else "left")
    for name, s in results.items():
        out.add_row(name, f"{s.mean:.2f}", f"{s.std:.2f}", str(s.runs), f"{s.mean_evaluations:.1f}")
    console = Console()
    console.print(out)
    console.print(f"{elapsed:.1f} s")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
