"""TableEvaluator: evaluates genomes by looking them up in their space's tabular benchmark (no training)."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spaces
from domain import Metrics
from domain.errors import AmoebaError
from tables.benchmark import TableBenchmark
from worker.evaluator import EvaluationCancelled, EvaluationFailed
from worker.trial import Trial


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
            raise EvaluationFailed(f"training.table must be an object, got {type(raw).__name__}")
        unknown = set(raw) - {"column", "cost_column", "sleep_s"}
        if unknown:
            raise EvaluationFailed(f"training.table has unknown keys: {', '.join(sorted(unknown))}")
        sleep = parse_sleep(raw["sleep_s"]) if "sleep_s" in raw else (default_sleep or (0.0, 0.0))
        return cls(str(raw.get("column", benchmark.fitness_column)), str(raw.get("cost_column", benchmark.cost_column)),
                   sleep)


def parse_sleep(value: Any) -> tuple[float, float]:
    """A number or [low, high] (seconds) as a range; raises ValueError for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        low = high = float(value)
    elif isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        low, high = float(value[0]), float(value[1])
    else:
        raise ValueError(f"sleep must be a number or [low, high] seconds, got {value!r}")
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(f"sleep range must satisfy 0 <= low <= high, got {value!r}")
    return low, high


class TableEvaluator:
    """accuracy = table[column] x the benchmark's scale; train_seconds = table[cost_column].

    Works for every space with a tabular benchmark (``spaces.Space.table``); ``table`` overrides the
    shipped table's file.
    """

    name = "table"

    def __init__(self, table: str | Path | None = None, sleep_s: tuple[float, float] | None = None) -> None:
        self._path = table
        self._sleep = sleep_s
        self._tables: dict[str, tuple[TableBenchmark, Any]] = {}
        self._lock = threading.Lock()

    def table(self, space_name: str) -> tuple[TableBenchmark, Any]:
        """The benchmark and loaded table of a space (loaded once); EvaluationFailed when it has none."""
        with self._lock:
            if space_name not in self._tables:
                try:
                    benchmark: TableBenchmark = spaces.get(space_name).load_table()
                    self._tables[space_name] = (benchmark, benchmark.load(self._path))
                except AmoebaError as exc:
                    raise EvaluationFailed(f"the table evaluator cannot evaluate {space_name} genomes: {exc}") from None
            return self._tables[space_name]

    def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics:
        benchmark, table = self.table(trial.space)
        settings = TableSettings.from_training(trial.training, benchmark, self._sleep)
        try:
            genome = trial.genome
        except AmoebaError as exc:
            raise EvaluationFailed(f"bad genome: {exc}") from None
        try:
            accuracy = table.get(genome, settings.column) * benchmark.accuracy_scale
            cost = table.get(genome, settings.cost_column)
        except AmoebaError as exc:
            raise EvaluationFailed(str(exc)) from None
        if not (math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0):
            raise EvaluationFailed(f"table value {settings.column} of {genome.summary()} is not an accuracy")
        low, high = settings.sleep_s
        if high > 0:
            # Seeded per individual: a rerun of the same experiment pretends the same training times.
            pause = random.Random(trial.seed).uniform(low, high)
            if stop.wait(pause):
                raise EvaluationCancelled(f"stopped while evaluating individual {trial.individual_id}")
        return Metrics(accuracy=accuracy, train_seconds=cost if math.isfinite(cost) else 0.0)
