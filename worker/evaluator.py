"""The evaluator port: what a worker's evaluator receives (a ``Trial``) and returns (metrics or a failure)."""

from __future__ import annotations

import threading
from typing import Protocol

from domain import Metrics
from domain.errors import AmoebaError
from worker.trial import Trial


class EvaluationFailed(AmoebaError):
    """The evaluation failed for a reason worth recording (NaN loss, out of memory, bad data, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EvaluationCancelled(AmoebaError):
    """The evaluation stopped early because the worker is shutting down; the lease is released."""


class EvaluationStopped(AmoebaError):
    """The early-stopping rule stopped the trial at a progress report (the orchestrator recorded it)."""


class Evaluator(Protocol):
    """Turns a trial into metrics, or raises EvaluationFailed.

    ``stop`` is set when the worker is asked to shut down (SIGTERM) or the lease is lost; a long
    evaluation checks it between steps and raises ``EvaluationCancelled`` so the worker releases the
    lease. Heartbeats are sent by the worker loop from a background thread; evaluators call nothing.
    ``latency_ms`` in the metrics is for a latency the evaluator *measured*; leave it None and the
    orchestrator keeps the simulated latency it priced when the child was proposed. A long evaluation
    reports ``trial.progress(epoch, accuracy, ...)`` as it goes and raises ``EvaluationStopped`` when that
    answers False (the early-stopping rule stopped it).

    An evaluator may also define ``prepare(trial)``: a worker with ``prefetch`` leases the next trial
    while the current one runs and calls it from a background thread (the train evaluator compiles the
    child's steps into the persistent compilation cache); it must not raise, and ``evaluate`` of that
    trial starts once it has returned.
    """

    name: str

    def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics: ...
