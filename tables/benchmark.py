"""What a tabular benchmark offers the table evaluator and ``amoeba bench``: its table and its protocol."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain.errors import AmoebaError


class TableError(AmoebaError, ValueError):
    """The table file is missing, malformed, or lacks a requested column; or table settings are malformed."""


@dataclass(frozen=True, slots=True)
class TableBenchmark:
    """A table of precomputed results for every genome of one space, and the search protocol published
    with it (the columns searched, reported and charged as simulated time, the budget, P and S).

    ``load(path)`` reads a table (the shipped one for None) with ``get(genome, column)`` and
    ``column(name) -> {genome: value}``; ``size`` is the number of genomes in the space, so a partial
    table can be refused before a search proposes a genome it cannot answer for.
    """

    name: str
    load: Callable[[str | Path | None], Any]
    size: int
    fitness_column: str
    report_column: str
    cost_column: str
    budget_seconds: float
    population: int
    sample: int
    #: Table accuracies times this are fractions in [0, 1] (NAS-Bench-201 stores percentages).
    accuracy_scale: float = 0.01


@dataclass(frozen=True, slots=True)
class TableSettings:
    """The ``training.table`` object of an experiment: which columns to read (default: the benchmark's
    protocol) and how long to pretend to train.

    ``sleep_s`` is a number or a ``[low, high]`` range; each evaluation sleeps a time drawn uniformly
    from it with the individual's seed, so a run's timing is as reproducible as its results.
    """

    column: str
    cost_column: str
    sleep_s: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def from_training(cls, training: Mapping[str, Any], benchmark: TableBenchmark,
                      default_sleep: tuple[float, float] | None = None) -> TableSettings:
        raw = training.get("table", {})
        if not isinstance(raw, Mapping):
            raise TableError(f"training.table must be an object, got {type(raw).__name__}")
        unknown = set(raw) - {"column", "cost_column", "sleep_s"}
        if unknown:
            raise TableError(f"training.table has unknown keys: {', '.join(sorted(unknown))}")
        sleep = parse_sleep(raw["sleep_s"]) if "sleep_s" in raw else (default_sleep or (0.0, 0.0))
        return cls(str(raw.get("column", benchmark.fitness_column)), str(raw.get("cost_column", benchmark.cost_column)),
                   sleep)

    def check(self, table: Any, benchmark: TableBenchmark) -> None:
        """TableError unless both columns are in ``table``."""
        for key, column in (("column", self.column), ("cost_column", self.cost_column)):
            if column not in table.columns:
                shown = ", ".join(table.columns[:12]) + (", ..." if len(table.columns) > 12 else "")
                raise TableError(f"training.table.{key} {column[:60]!r} is not a column of the {benchmark.name} "
                                 f"table (columns: {shown})")


def parse_sleep(value: Any) -> tuple[float, float]:
    """A number or [low, high] (seconds) as a range; raises TableError (a ValueError) for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        low = high = float(value)
    elif isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        low, high = float(value[0]), float(value[1])
    else:
        raise TableError(f"sleep must be a number or [low, high] seconds, got {str(value)[:60]!r}")
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise TableError(f"sleep range must satisfy 0 <= low <= high, got {str(value)[:60]!r}")
    return low, high
