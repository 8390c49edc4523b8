"""TableEvaluator: evaluates genomes by looking them up in their space's tabular benchmark (no training)."""

from __future__ import annotations

import math
import random
import threading
from pathlib import Path
from typing import Any

import spaces
from domain import Metrics
from domain.errors import AmoebaError
from tables.benchmark import TableBenchmark, TableSettings, parse_sleep
from worker.evaluator import EvaluationCancelled, EvaluationFailed
from worker.trial import Trial


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
        try:
            settings = TableSettings.from_training(trial.training, benchmark, self._sleep)
        except AmoebaError as exc:
            raise EvaluationFailed(str(exc)) from None
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


__all__ = ["TableEvaluator", "TableSettings", "parse_sleep"]
