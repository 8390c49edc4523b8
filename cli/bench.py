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
        algorithms: Annotated[str, typer.Option(help="comma-separated registered algorithms, e.g. aging,non-aging,rl,random")] = "aging,random",
        options: Annotated[str | None, typer.Option(help='algorithm options as JSON, per algorithm: \'{"rl": {"policy": "lstm"}}\'')] = None,
        population: Annotated[int, typer.Option("--population", "-P", help="population size P")] = benchmark.population,
        sample: Annotated[int, typer.Option("--sample", "-S", help="tournament sample size S")] = benchmark.sample,
        runs: Annotated[int, typer.Option(help="independent runs per algorithm")] = 500,
        seed: Annotated[int, typer.Option(help="seed of run 0 (run r uses seed + r)")] = 0,
        noise_std: Annotated[float, typer.Option(help="Gaussian noise (std, in the fitness column's units) added to every evaluation, seeded per run and evaluation")] = 0.0,
        plot: Annotated[Path | None, typer.Option(help="write the curves figure (mean best-so-far with a band per algorithm, and the final values) to this PNG")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the JSON document only (with each algorithm's curves)")] = False,
    ) -> None:
        _bench(space_name, benchmark, table, fitness_column, report_column, cost_column, budget_seconds,
               budget_evaluations, algorithms, options, population, sample, runs, seed, noise_std, plot, as_json)

    command.__doc__ = (f"Compare search algorithms on the {benchmark.name} table ({space_name} space), "
                       "with the benchmark's published protocol by default.")
    return command


def _options(text: str | None, names: list[str]) -> dict[str, dict[str, Any]]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--options must be JSON ({exc.msg})") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise UserError('--options must map an algorithm to its options, e.g. {"rl": {"policy": "lstm"}}')
    stray = sorted(set(value) - set(names))
    if stray:
        raise UserError(f"--options names {', '.join(stray)[:60]}, not in --algorithms")
    return value


def _bench(space_name: str, benchmark: Any, table: Path | None, fitness_column: str, report_column: str,
           cost_column: str, budget_seconds: float | None, budget_evaluations: int | None, algorithms: str,
           options: str | None, population: int, sample: int, runs: int, seed: int, noise_std: float,
           plot: Path | None, as_json: bool) -> None:
    import spaces
    from evolution import AlgorithmContext, AlgorithmError, algorithm_names, build_algorithm
    from evolution.benchmark import compare

    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    known = algorithm_names()
    bad = [a for a in names if a not in known]
    if bad or not names:
        raise UserError(f"unknown algorithm(s) {', '.join(bad) or '(none)'}; expected from {', '.join(known)}")
    if len(set(names)) != len(names):
        raise UserError("--algorithms names an algorithm twice")
    if runs < 1 or population < 1 or sample < 1:
        raise UserError("--runs, --population and --sample must be positive")
    if budget_evaluations is not None and budget_evaluations < 1:
        raise UserError("--budget-evaluations must be positive")
    if budget_seconds is None and budget_evaluations is None:
        budget_seconds = benchmark.budget_seconds
    if budget_seconds is not None and budget_seconds <= 0:
        raise UserError("--budget-seconds must be positive")
    if noise_std < 0:
        raise UserError("--noise-std must be 0 or more")
    if plot is not None and plot.suffix.lower() != ".png":
        raise UserError(f"--plot must name a .png file, got {str(plot)[:60]!r}")
    per_algorithm = _options(options, names)
    data = benchmark.load(table)
    fitness = data.column(fitness_column)
    report = data.column(report_column)
    cost = data.column(cost_column) if budget_seconds is not None else None
    if len(fitness) < benchmark.size:
        # Searches may propose any genome; a partial table cannot answer for the missing ones.
        raise UserError(f"table {data.path} covers {len(fitness)} of the {benchmark.size} {space_name} genomes; "
                        "a complete table is required")
    space = spaces.get(space_name)
    mutation = space.build_mutation()
    for name in names:  # bad options fail here, in one line, before any run
        try:
            build_algorithm(name, AlgorithmContext(space.codec, mutation, population, sample,
                                                   options=per_algorithm.get(name, {})))
        except AlgorithmError as exc:
            raise UserError(f"{name}: {exc}") from None
    started = time.perf_counter()
    results = {}
    seconds: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        results.update(compare(
            [name], space.codec, mutation, fitness, report, runs, seed, population, sample,
            cost=cost, budget_seconds=budget_seconds, budget_evaluations=budget_evaluations, noise_std=noise_std,
            options=per_algorithm,
        ))
        seconds[name] = time.perf_counter() - t0
    elapsed = time.perf_counter() - started
    algorithms_doc: dict[str, Any] = {}
    for name, summary in results.items():
        entry = summary.to_json()
        # Wall time per evaluation of the whole in-process loop (the algorithm's propose and observe, the
        # table look-ups): what choosing each child costs, next to the minutes a real child trains.
        entry["us_per_evaluation"] = round(1e6 * seconds[name] / max(1.0, summary.mean_evaluations * runs), 1)
        entry["curves"] = summary.curve.to_json()
        algorithms_doc[name] = entry
    x_label = "simulated search time (s)" if budget_seconds is not None else "evaluations"
    doc = {
        "algorithms": algorithms_doc,
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
            "noise_std": noise_std,
            "options": per_algorithm,
            "curve_x": x_label,
        },
        "seconds": round(elapsed, 3),
    }
    if plot is not None:
        from ui.comparison import curves_plot

        title = f"{benchmark.name}: best-so-far {report_column} ({runs} runs" + (
            f", fitness noise std {noise_std:g})" if noise_std else ")")
        curves_plot({n: s.curve.to_json() for n, s in results.items()},
                    {n: s.best_values for n, s in results.items()}, plot, x_label=x_label,
                    y_label=report_column, title=title)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    out = RichTable(title=f"{benchmark.name} search: best-fitness genome's {report_column} over {runs} runs")
    for col in ("algorithm", "mean", "std", "runs", "mean evaluations", "us/evaluation"):
        out.add_column(col, justify="right" if col != "algorithm" else "left")
    for name, s in results.items():
        out.add_row(name, f"{s.mean:.2f}", f"{s.std:.2f}", str(s.runs), f"{s.mean_evaluations:.1f}",
                    f"{algorithms_doc[name]['us_per_evaluation']:.0f}")
    console = Console()
    console.print(out)
    console.print(f"{elapsed:.1f} s" + (f"; figure: {plot}" if plot is not None else ""))


def register(app: typer.Typer) -> None:
    import spaces

    for space in spaces.all_spaces():
        if space.table is not None:
            benchmark = space.load_table()
            bench_app.command(benchmark.name)(_command(space.name, benchmark))
    app.add_typer(bench_app, name="bench")
