"""The evaluator port: what a worker's evaluator receives (a work item) and returns (metrics or a failure)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One leased individual, as the evaluator sees it (no lease details: the worker loop owns those).

    ``genome`` is the canonical genome JSON (an object with ``space``); ``training`` is the experiment's
    training settings, opaque to the orchestrator (for example ``{"preset": "tiny", "epochs": 2}``);
    ``seed`` is the individual's seed, derived from the experiment seed and the proposal number.
    """

    experiment: str
    individual_id: int
    proposal_seq: int
    space: str
    genome: dict[str, Any]
    seed: int
    training: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Metrics:
    """What an evaluation reports. ``accuracy`` is validation accuracy in [0, 1]."""

    accuracy: float
    latency_ms: float | None = None
    params: int | None = None
    mult_adds: int | None = None
    train_seconds: float = 0.0
    compile_seconds: float = 0.0
    fits_on_chip: bool | None = None
    extra: dict[str, float] = field(default_factory=dict)


class EvaluationFailed(Exception):
    """The evaluation failed for a reason worth recording (NaN loss, out of memory, bad data, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Evaluator(Protocol):
    """Turns a work item into metrics, or raises EvaluationFailed.

    ``stop`` is set when the worker is asked to shut down (SIGTERM); a long evaluation should check it
    between steps and raise ``EvaluationCancelled`` so the worker releases the lease. Heartbeats are
    sent by the worker loop from a background thread; evaluators need not call anything.
    """

    name: str

    def evaluate(self, item: WorkItem, stop: threading.Event) -> Metrics: ...


class EvaluationCancelled(Exception):
    """The evaluation stopped early because the worker is shutting down; the lease is released."""
