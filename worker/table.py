"""TableEvaluator: evaluates NAS-Bench-201 genomes by looking them up in the shipped table (no training)."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genome import GenomeError, NB201Genome, parse_genome
from tables.nb201 import Table, TableError, load_table
from worker.evaluator import EvaluationCancelled, EvaluationFailed, Metrics, WorkItem

DEFAULT_COLUMN = "c10v_valid_acc_12ep"
DEFAULT_COST_COLUMN = "est_cost_12ep_sec"


@dataclass(frozen=True, slots=True)
class TableSettings:
    """The ``training.table`` object of an experiment: which columns to read and how long to pretend to train.

    ``sleep_s`` is a number or a ``[low, high]`` range; each evaluation sleeps a time drawn uniformly
    from it with the individual's seed, so a run's timing is as reproducible as its results.
    """

    column: str = DEFAULT_COLUMN
    cost_column: str = DEFAULT_COST_COLUMN
    sleep_s: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def from_training(cls, training: Mapping[str, Any], default_sleep: tuple[float, float] | None = None) -> TableSettings:
        raw = training.get("table", {})
        if not isinstance(raw, Mapping):
            raise EvaluationFailed(f"training.table must be an object, got {type(raw).__name__}")
        unknown = set(raw) - {"column", "cost_column", "sleep_s"}
        if unknown:
            raise EvaluationFailed(f"training.table has unknown keys: {', '.join(sorted(unknown))}")
        sleep = parse_sleep(raw["sleep_s"]) if "sleep_s" in raw else (default_sleep or (0.0, 0.0))
        return cls(str(raw.get("column", DEFAULT_COLUMN)), str(raw.get("cost_column", DEFAULT_COST_COLUMN)), sleep)


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
    """accuracy = table[column] / 100 (default ``c10v_valid_acc_12ep``); train_seconds = table[cost_column]."""

    name = "table"

    def __init__(self, table: str | Path | Table | None = None, sleep_s: tuple[float, float] | None = None) -> None:
        self._table = table if isinstance(table, Table) else load_table(table)
        self._sleep = sleep_s

    def evaluate(self, item: WorkItem, stop: threading.Event) -> Metrics:
        if item.space != "nb201":
            raise EvaluationFailed(f"the table evaluator only knows nb201 genomes, not {item.space!r}")
        settings = TableSettings.from_training(item.training, self._sleep)
        try:
            genome = parse_genome(item.genome, "nb201")
        except GenomeError as exc:
            raise EvaluationFailed(f"bad genome: {exc}") from None
        assert isinstance(genome, NB201Genome)
        try:
            accuracy = self._table.get(genome, settings.column) / 100.0
            cost = self._table.get(genome, settings.cost_column)
        except TableError as exc:
            raise EvaluationFailed(str(exc)) from None
        if not (math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0):
            raise EvaluationFailed(f"table value {settings.column} of {genome.to_arch_str()} is not a percentage")
        low, high = settings.sleep_s
        if high > 0:
            # Seeded per individual: a rerun of the same experiment pretends the same training times.
            pause = random.Random(item.seed).uniform(low, high)
            if stop.wait(pause):
                raise EvaluationCancelled(f"stopped while evaluating individual {item.individual_id}")
        return Metrics(accuracy=accuracy, train_seconds=cost if math.isfinite(cost) else 0.0)
