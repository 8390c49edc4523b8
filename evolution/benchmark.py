"""Repeated searches over a lookup table: the controlled comparison of the paper, without training.

Every algorithm runs the same seeds (run r uses seed + r) on the same table under the same budget; each
run reports the table's ``report`` value of its best-fitness genome, and its progress curve: that value
for the best genome found so far against simulated search time (the running sum of the evaluations'
costs; the evaluation count when the budget is a number of evaluations).
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evolution.algorithms import EvolutionConfig
from evolution.simulate import SearchResult, run_search
from genome import Genome
from mutations import Mutation

#: Points of the common time grid the curves are sampled on (the budget split evenly).
CURVE_POINTS = 100


@dataclass(frozen=True, slots=True)
class Curve:
    """Mean and (population) standard deviation over runs of the best-so-far reported value, at times ``t``."""

    t: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_json(self) -> dict[str, list[float]]:
        return {"t": [round(x, 4) for x in self.t], "mean": [round(x, 4) for x in self.mean],
                "std": [round(x, 4) for x in self.std]}


@dataclass(frozen=True, slots=True)
class AlgorithmSummary:
    """Mean, std and count over runs of the reported metric of each run's best-fitness genome, and the curve."""

    algorithm: str
    mean: float
    std: float
    runs: int
    mean_evaluations: float
    best_values: tuple[float, ...]
    curve: Curve = field(default_factory=lambda: Curve((), (), ()))

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": round(self.mean, 4),
            "std": round(self.std, 4),
            "runs": self.runs,
            "mean_evaluations": round(self.mean_evaluations, 2),
        }


def progress(result: SearchResult, report: Mapping[Genome, float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A run's step curve: after each evaluation that found a new best fitness, (time, its reported value).

    Time is the simulated time spent when the run had costs, else the number of evaluations done.
    """
    times: list[float] = []
    values: list[float] = []
    best = None
    for k, value in enumerate(result.fitnesses):
        if best is None or value > best:
            best = value
            times.append(result.elapsed[k] if result.elapsed else float(k + 1))
            values.append(report[result.proposals[k].genome])
    return tuple(times), tuple(values)


def aggregate(steps: Sequence[tuple[Sequence[float], Sequence[float]]], horizon: float,
              points: int = CURVE_POINTS) -> Curve:
    """Sample every run's step curve on ``horizon * k / points`` (k = 1..points), from the first point at
    which every run has a value, and average across runs."""
    if not steps or horizon <= 0:
        return Curve((), (), ())
    start = max(times[0] for times, _ in steps)
    ts: list[float] = []
    means: list[float] = []
    stds: list[float] = []
    for k in range(1, points + 1):
        t = horizon * k / points
        if t < start:
            continue
        here = [values[bisect.bisect_right(times, t) - 1] for times, values in steps]
        ts.append(t)
        means.append(statistics.fmean(here))
        stds.append(statistics.pstdev(here) if len(here) > 1 else 0.0)
    return Curve(tuple(ts), tuple(means), tuple(stds))


def compare(
    algorithms: Sequence[str],
    space: Any,
    mutation: Mutation,
    fitness: Mapping[Genome, float],
    report: Mapping[Genome, float],
    runs: int,
    seed: int,
    population_size: int,
    sample_size: int,
    cost: Mapping[Genome, float] | None = None,
    budget_seconds: float | None = None,
    budget_evaluations: int | None = None,
    noise_std: float = 0.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, AlgorithmSummary]:
    """Run each algorithm ``runs`` times (run r uses seed ``seed + r``, the same seeds for every algorithm).

    ``noise_std`` adds seeded Gaussian noise to every evaluation's fitness (the same draws for every
    algorithm: they depend on the run and the evaluation number); ``options`` maps an algorithm to its
    ``algorithm_options``.
    """
    results: dict[str, AlgorithmSummary] = {}
    timed = cost is not None and budget_seconds is not None
    for algorithm in algorithms:
        values: list[float] = []
        evaluations: list[int] = []
        curves: list[tuple[tuple[float, ...], tuple[float, ...]]] = []
        extra = dict((options or {}).get(algorithm, {}))
        for r in range(runs):
            config = EvolutionConfig(population_size, sample_size, algorithm, seed + r, options=extra)
            result = run_search(
                config,
                space,
                mutation,
                fitness.__getitem__,
                max_evaluations=budget_evaluations,
                cost=cost.__getitem__ if timed and cost is not None else None,
                budget=budget_seconds,
                noise_std=noise_std,
            )
            values.append(report[result.best.genome])
            evaluations.append(len(result.proposals))
            curves.append(progress(result, report))
        horizon = budget_seconds if timed and budget_seconds is not None else float(max(evaluations))
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
        results[algorithm] = AlgorithmSummary(
            algorithm, statistics.fmean(values), std, runs, statistics.fmean(evaluations), tuple(values),
            aggregate(curves, horizon),
        )
    return results
