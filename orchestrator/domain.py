"""Domain values and errors of the orchestrator's use cases, shared by the service, servicer and stores.

This module is the contract between the service layer (``orchestrator.service``) and the edge
(``orchestrator.servicer``, the gRPC codec, the CLI). It imports nothing from grpc or SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# --- errors (one table in the servicer maps them to gRPC status codes, both directions) -------------


class DomainError(Exception):
    """Base of the errors a use case raises on purpose; the message is for the user."""


class InvalidArgument(DomainError):
    """The request is malformed (bad genome, NaN metric, empty name, ...). Maps to INVALID_ARGUMENT."""


class NotFound(DomainError):
    """Unknown experiment, individual or lease. Maps to NOT_FOUND."""


class AlreadyExists(DomainError):
    """Duplicate experiment name, or a report for an individual that already has its outcome. ALREADY_EXISTS."""


class FailedPrecondition(DomainError):
    """Late or foreign report (expired lease, token re-issued), experiment not running. FAILED_PRECONDITION."""


class Unauthenticated(DomainError):
    """Missing or wrong credentials. Maps to UNAUTHENTICATED."""


class Unavailable(DomainError):
    """The database cannot be reached right now; retry with backoff. Maps to UNAVAILABLE."""


# --- values -------------------------------------------------------------------------------------------

ExperimentState = Literal["running", "done", "paused"]
IndividualState = Literal["queued", "leased", "completed", "failed", "rejected"]


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    """What a user asks for (from YAML/JSON). Validated by ``orchestrator.config.parse_spec``.

    ``training`` is opaque to the orchestrator and handed to workers as is; ``mutation`` and
    ``objective`` are JSON specs (``mutations.build_mutation``, ``evolution.build_objective``).
    """

    name: str
    space: Literal["nasnet", "nb201"]
    population_size: int
    sample_size: int
    evaluations: int  # C: the experiment ends after C completed evaluations
    seed: int = 0
    algorithm: Literal["aging", "non-aging", "random"] = "aging"
    mutation: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, Any] = field(default_factory=lambda: {"kind": "accuracy"})
    training: dict[str, Any] = field(default_factory=dict)
    lease_timeout_s: float = 60.0
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class Experiment:
    """An experiment as stored: its spec plus progress counters."""

    id: int
    spec: ExperimentSpec
    state: ExperimentState
    created_at: float
    proposals: int  # number of proposals made so far (the next proposal number)
    completed: int
    failed: int
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """Who is asking: a stable id chosen by the worker, its host, and what it can do."""

    worker_id: str
    host: str = ""
    evaluator: str = ""


@dataclass(frozen=True, slots=True)
class Lease:
    """Work handed to a worker. ``lease_id`` is the individual's id; ``token`` is secret per attempt."""

    experiment: str
    individual_id: int
    proposal_seq: int
    token: str
    deadline: float  # unix seconds
    attempt: int
    genome: dict[str, Any]  # canonical genome JSON
    space: str
    seed: int
    training: dict[str, Any]
    parent_seq: int | None = None
    mutation: str = ""


@dataclass(frozen=True, slots=True)
class NoWork:
    """Nothing to hand out now (every remaining individual is leased); ask again after ``retry_after_s``.

    ``done`` is true when the experiment (or, for "any experiment", every experiment) is finished,
    so workers can exit or move on.
    """

    done: bool
    retry_after_s: float = 1.0
    message: str = ""


@dataclass(frozen=True, slots=True)
class ReportedMetrics:
    """Metrics a worker reports; validated by the service (finite, in range)."""

    accuracy: float
    latency_ms: float | None = None
    params: int | None = None
    mult_adds: int | None = None
    train_seconds: float = 0.0
    compile_seconds: float = 0.0
    fits_on_chip: bool | None = None


@dataclass(frozen=True, slots=True)
class Individual:
    """One proposal and its outcome, as stored."""

    id: int
    experiment: str
    proposal_seq: int
    genome: dict[str, Any]
    fingerprint: str
    parent_seq: int | None
    mutation: str
    state: IndividualState
    attempts: int
    fitness: float | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    params: int | None = None
    mult_adds: int | None = None
    train_seconds: float | None = None
    compile_seconds: float | None = None
    lease_owner: str | None = None
    lease_deadline: float | None = None
    failure_reason: str | None = None
    created_at: float = 0.0
    completed_at: float | None = None
    completion_rank: int | None = None  # 0-based order of completion within the experiment
    in_population: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """A page of individuals and the token of the next page ('' when this is the last)."""

    individuals: tuple[Individual, ...]
    next_page_token: str


class OrchestratorService(Protocol):
    """The use cases. Each call is one transaction: load -> pure step -> persist (with its events).

    Every state change is committed, with its event, before the call returns. Errors are DomainErrors.
    """

    def create_experiment(self, spec: ExperimentSpec) -> Experiment: ...

    def get_experiment(self, name: str) -> Experiment: ...

    def list_experiments(self) -> list[Experiment]: ...

    def lease(self, worker: WorkerInfo, experiment: str | None) -> Lease | NoWork:
        """Requeued individuals (expired leases) first, then a new proposal; NoWork(done=True) after C."""
        ...

    def heartbeat(self, individual_id: int, token: str, worker_id: str) -> float:
        """Extend the lease; return the new deadline. FailedPrecondition when expired or re-issued."""
        ...

    def report(
        self, individual_id: int, token: str, worker_id: str, metrics: ReportedMetrics, lease_next: bool = False
    ) -> Lease | NoWork | None:
        """Record a completed evaluation; with ``lease_next``, lease the next work in the same round trip."""
        ...

    def fail(self, individual_id: int, token: str, worker_id: str, reason: str, retryable: bool = False) -> None:
        """Record a failed evaluation (never enters the population); retryable failures requeue."""
        ...

    def release(self, individual_id: int, token: str, worker_id: str) -> None:
        """Give a lease back unfinished (worker shutting down): requeued at once without using an attempt."""
        ...

    def status(self, experiment: str) -> dict[str, Any]:
        """A JSON-ready status snapshot (schema documented in the README)."""
        ...

    def list_individuals(self, experiment: str, page_size: int, page_token: str, state: str | None) -> Page: ...
