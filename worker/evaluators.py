"""The evaluator registry: ``table`` (tabular look-up), ``train`` (Flax training, imported lazily), plug-ins
under the ``amoeba.evaluators`` entry-point group, and any user function named ``MODULE:FUNCTION``."""

from __future__ import annotations

import importlib
import threading
import traceback
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from domain import Metrics
from domain.errors import AmoebaError
from worker.evaluator import EvaluationCancelled, EvaluationFailed, Evaluator
from worker.trial import Trial, TrialError, metrics_from_mapping

ENTRY_POINT_GROUP = "amoeba.evaluators"
BUILTIN = ("table", "train")


class UnknownEvaluator(AmoebaError, ValueError):
    """No evaluator by that name, or a MODULE:FUNCTION that cannot be imported."""


def evaluator_names() -> tuple[str, ...]:
    return (*BUILTIN, *sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN))


class FunctionEvaluator:
    """A user's function ``f(trial) -> {"accuracy": ..., ...}`` as an evaluator.

    Whatever the function raises is a failed evaluation with the exception's message as the reason
    (one line), never a dead worker; ``KeyboardInterrupt`` and ``SystemExit`` still stop the worker.
    """

    def __init__(self, function: Callable[[Trial], Mapping[str, Any]], name: str) -> None:
        self.function = function
        self.name = name[:64]

    def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics:
        try:
            values = self.function(trial)
        except (EvaluationFailed, EvaluationCancelled):
            raise
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame is not None else ""
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise EvaluationFailed(f"{type(exc).__name__}: {message}{where}"[:2000]) from None
        if stop.is_set():
            raise EvaluationCancelled(f"stopped while evaluating individual {trial.individual_id}")
        try:
            return metrics_from_mapping(values)
        except TrialError as exc:
            raise EvaluationFailed(f"{self.name}: {exc}") from None


def load_function(reference: str) -> Callable[[Trial], Mapping[str, Any]]:
    """The function a ``package.module:function`` reference names; UnknownEvaluator otherwise."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise UnknownEvaluator(f"an evaluator function is given as MODULE:FUNCTION, got {reference[:80]!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UnknownEvaluator(f"cannot import evaluator module {module_name!r}: {type(exc).__name__}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise UnknownEvaluator(f"module {module_name!r} has no function {attribute!r}")
    return function  # type: ignore[no-any-return]


def build_evaluator(
    name: str,
    *,
    data_dir: str | None = None,
    table: str | Path | None = None,
    sleep_s: tuple[float, float] | None = None,
    **options: Any,
) -> Evaluator:
    """The evaluator called ``name`` (``train`` pulls in JAX only when asked for)."""
    if name == "table":
        from worker.table import TableEvaluator

        return TableEvaluator(table, sleep_s=sleep_s)
    if name == "train":
        from worker.training.evaluator import TrainEvaluator

        evaluator: Evaluator = TrainEvaluator(data_dir, **options)
        return evaluator
    if ":" in name:
        return FunctionEvaluator(load_function(name), name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            factory = ep.load()
            plugin: Evaluator = factory(data_dir=data_dir, **options)
            return plugin
    raise UnknownEvaluator(f"unknown evaluator {name[:80]!r}; expected one of {', '.join(evaluator_names())} "
                           "or MODULE:FUNCTION")


def fatal_errors(name: str) -> tuple[type[BaseException], ...]:
    """Errors of an evaluator that end the worker with a one-line message (a missing dataset, ...)."""
    if name == "train":
        from worker.training.errors import DatasetUnavailable

        return (DatasetUnavailable,)
    return ()
