"""Repeated searches over a lookup table: the controlled comparison of the paper, without training."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evolution.algorithms import EvolutionConfig
from evolution.simulate import run_search
from genome import Genome
from mutations import Mutation


@dataclass(frozen=True, slots=True)
class AlgorithmSummary:
    """Mean, std and count over runs of the reported metric of each run's best-fitness genome."""

    algorithm: str
    mean: float
    std: float
    runs: int
    mean_evaluations: float
    best_values: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": round(self.mean, 4),
            "std": round(self.std, 4),
            "runs": self.runs,
            "mean_evaluations": round(self.mean_evaluations, 2),
        }


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
) -> dict[str, AlgorithmSummary]:
    """Run each algorithm ``runs`` times (run r uses seed ``seed + r``, the same seeds for every algorithm)."""
    results: dict[str, AlgorithmSummary] = {}
    for algorithm in algorithms:
        values: list[float] = []
        evaluations: list[int] = []
        for r in range(runs):
            config = EvolutionConfig(population_size, sample_size, algorithm, seed + r)
            result = run_search(
                config,
                space,
                mutation,
                fitness.__getitem__,
                max_evaluations=budget_evaluations,
                cost=cost.__getitem__ if cost is not None else None,
                budget=budget_seconds,
            )
            values.append(report[result.best.genome])
            evaluations.append(len(result.proposals))
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
        results[algorithm] = AlgorithmSummary(
            algorithm, statistics.fmean(values), std, runs, statistics.fmean(evaluations), tuple(values)
        )
    return results
