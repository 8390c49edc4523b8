"""The evaluator registry: ``table`` (NAS-Bench-201 look-up) and ``train`` (Flax training, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.evaluator import Evaluator

EVALUATORS = ("table", "train")


class UnknownEvaluator(ValueError):
    """No evaluator by that name."""


def build_evaluator(
    name: str,
    *,
    data_dir: str | None = None,
    table: str | Path | None = None,
    sleep_s: tuple[float, float] | None = None,
    **options: Any,
) -> Evaluator:
    """The evaluator called ``name``; ``train`` pulls in JAX only when asked for."""
    if name == "table":
        from worker.table import TableEvaluator

        return TableEvaluator(table, sleep_s=sleep_s)
    if name == "train":
        from worker.training.evaluator import TrainEvaluator

        evaluator: Evaluator = TrainEvaluator(data_dir, **options)
        return evaluator
    raise UnknownEvaluator(f"unknown evaluator {name!r}; expected one of {', '.join(EVALUATORS)}")


def fatal_errors(name: str) -> tuple[type[BaseException], ...]:
    """Errors of an evaluator that end the worker with a one-line message (a missing dataset, ...)."""
    if name == "train":
        from worker.training.errors import DatasetUnavailable

        return (DatasetUnavailable,)
    return ()
