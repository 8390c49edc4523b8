"""``amoeba bench BENCHMARK``: the search algorithms on a space's tabular benchmark, in-process, no training.

One command per registered space with a tabular benchmark (``amoeba bench nb201`` for NAS-Bench-201);
its defaults are the benchmark's published protocol (``tables.TableBenchmark``).
"""

# No ``from __future__ import annotations``: the options of each command are built from its benchmark at
# definition time, and Typer evaluates string annotations in module globals, where those names do not exist.

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table as RichTable

from cli.errors import UserError

bench_app = typer.Typer(help="Algorithm benchmarks on tabular data (no training).", no_args_is_help=True)


def _command(space_name: str, benchmark: Any) -> Any:
    def command(
        table: Annotated[Path | None, typer.Option(help="CSV of the benchmark (default: the shipped table)")] = None,
        fitness_column: Annotated[str, typer.Option(help="column searched on")] = benchmark.fitness_column,
        report_column: Annotated[str, typer.Option(help="column reported for the best-fitness genome")] = benchmark.report_column,
        cost_column: Annotated[str, typer.Option(help="column with each evaluation's simulated cost in seconds")] = benchmark.cost_column,
        budget_seconds: Annotated[float | None, typer.Option(help=f"simulated time budget (default {benchmark.budget_seconds:g} unless --budget-evaluations)")] = None,
        budget_evaluations: Annotated[int | None, typer.Option(help="stop after this many evaluations instead of a time budget")] = None,
        algorithms: Annotated[str, typer.Option(help="comma-separated registered algorithms, e.g. aging,non-aging,random")] = "aging,random",
        population: Annotated[int, typer.Option("--population", "-P", help="population size P")] = benchmark.population,
        sample: Annotated[int, typer.Option("--sample", "-S", help="tournament sample size S")] = benchmark.sample,
        runs: Annotated[int, typer.Option(help="independent runs per algorithm")] = 500,
        seed: Annotated[int, typer.Option(help="seed of run 0 (run r uses seed + r)")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print the JSON document only")] = False,
    ) -> None:
        _bench(space_name, benchmark, table, fitness_column, report_column, cost_column, budget_seconds,
               budget_evaluations, algorithms, population, sample, runs, seed, as_json)

    command.__doc__ = (f"Compare search algorithms on the {benchmark.name} table ({space_name} space), "
                       "with the benchmark's published protocol by default.")
    return command


def _bench(space_name: str, benchmark: Any, table: Path | None, fitness_column: str, report_column: str,
           cost_column: str, budget_seconds: float | None, budget_evaluations: int | None, algorithms: str,
           population: int, sample: int, runs: int, seed: int, as_json: bool) -> None:
    import spaces
    from evolution import algorithm_names
    from evolution.benchmark import compare

    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    known = algorithm_names()
    bad = [a for a in names if a not in known]
    if bad or not names:
        raise UserError(f"unknown algorithm(s) {', '.join(bad) or '(none)'}; expected from {', '.join(known)}")
    if runs < 1 or population < 1 or sample < 1:
        raise UserError("--runs, --population and --sample must be positive")
    if budget_evaluations is not None and budget_evaluations < 1:
        raise UserError("--budget-evaluations must be positive")
    if budget_seconds is None and budget_evaluations is None:
        budget_seconds = benchmark.budget_seconds
    if budget_seconds is not None and budget_seconds <= 0:
        raise UserError("--budget-seconds must be positive")
    data = benchmark.load(table)
    fitness = data.column(fitness_column)
    report = data.column(report_column)
    cost = data.column(cost_column) if budget_seconds is not None else None
    if len(fitness) < benchmark.size:
        # Searches may propose any genome; a partial table cannot answer for the missing ones.
        raise UserError(f"table {data.path} covers {len(fitness)} of the {benchmark.size} {space_name} genomes; "
                        "a complete table is required")
    space = spaces.get(space_name)
    started = time.perf_counter()
    results = compare(
        names, space.codec, space.build_mutation(), fitness, report, runs, seed, population, sample,
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
    out = RichTable(title=f"{benchmark.name} search: best-fitness genome's {report_column} over {runs} runs")
    for col in ("algorithm", "mean", "std", "runs", "mean evaluations"):
        out.add_column(col, justify="right" if col != "algorithm" else "left")
    for name, s in results.items():
        out.add_row(name, f"{s.mean:.2f}", f"{s.std:.2f}", str(s.runs), f"{s.mean_evaluations:.1f}")
    console = Console()
    console.print(out)
    console.print(f"{elapsed:.1f} s")


def register(app: typer.Typer) -> None:
    import spaces

    for space in spaces.all_spaces():
        if space.table is not None:
            benchmark = space.load_table()
            bench_app.command(benchmark.name)(_command(space.name, benchmark))
    app.add_typer(bench_app, name="bench")
