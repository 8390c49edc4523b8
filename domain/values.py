"""The values the orchestrator, the workers, the wire codec and the client share, one class per concept.

Genomes travel as their canonical JSON string, unchanged from the database row to the worker, which
parses it once; training settings are a JSON object the orchestrator never interprets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ExperimentState(StrEnum):
    """Where an experiment is: leasing work, finished after C completions, or held (by a user or a breaker)."""

    RUNNING = "running"
    DONE = "done"
    PAUSED = "paused"


class IndividualState(StrEnum):
    """The life of one proposal: queued -> leased -> one terminal outcome (completed, failed, rejected, or
    stopped early by the experiment's early-stopping rule)."""

    QUEUED = "queued"
    LEASED = "leased"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        return self not in (IndividualState.QUEUED, IndividualState.LEASED)


TERMINAL_STATES: tuple[IndividualState, ...] = tuple(s for s in IndividualState if s.terminal)


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    """What a user asks for (from YAML/JSON); validated by ``orchestrator.config.parse_spec``.

    ``space`` and ``algorithm`` name registry entries (``spaces``, ``evolution.algorithms``);
    ``algorithm_options`` are that algorithm's own settings. ``mutation`` and ``objective`` are JSON
    specs; ``training`` is opaque to the orchestrator and handed to workers as is.
    """

    name: str
    space: str
    population_size: int
    sample_size: int
    evaluations: int  # C: the experiment ends after C completed evaluations
    seed: int = 0
    algorithm: str = "aging"
    algorithm_options: dict[str, Any] = field(default_factory=dict)
    mutation: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, Any] = field(default_factory=lambda: {"kind": "accuracy"})
    training: dict[str, Any] = field(default_factory=dict)
    lease_timeout_s: float = 60.0
    max_attempts: int = 3
    #: The circuit breaker: pause after this many failures or rejections in a row without a completion (0: never).
    max_consecutive_failures: int = 25
    #: The early-stopping rule and its settings (``evolution.early_stopping``); ``{"rule": "none"}`` by default.
    early_stopping: dict[str, Any] = field(default_factory=lambda: {"rule": "none"})
    #: Artifact retention: ``{"keep": K}`` keeps the population, the top K and parents still needed; ``"all"`` all.
    artifacts: dict[str, Any] = field(default_factory=lambda: {"keep": 20})


@dataclass(frozen=True, slots=True)
class Experiment:
    """An experiment as stored: its spec plus progress counters."""

    id: int
    spec: ExperimentSpec
    state: str
    created_at: float
    proposals: int  # number of proposals made so far (the next proposal number)
    completed: int
    failed: int
    rejected: int = 0
    paused_reason: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """Who is asking: a stable id chosen by the worker, its host, and its evaluator's name."""

    worker_id: str
    host: str = ""
    evaluator: str = ""


@dataclass(frozen=True, slots=True)
class Artifact:
    """A child's trained weights in the artifact store: where, their sha256 and size (never the bytes)."""

    uri: str
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Work handed to a worker: one individual, the secret token of this attempt, and its deadline.

    ``genome_json`` is the stored canonical JSON; ``latency_ms``/``fits_on_chip`` are the simulated
    Edge TPU figures of the objective's network, priced once when the child was proposed.
    """

    experiment: str
    individual_id: int
    proposal_seq: int
    token: str
    deadline: float  # unix seconds
    attempt: int
    genome_json: str
    space: str
    seed: int
    training: dict[str, Any] = field(default_factory=dict)
    parent_seq: int | None = None
    mutation: str = ""
    latency_ms: float | None = None
    fits_on_chip: bool | None = None
    #: Where this child's trained weights go (``Trial.save_artifact``); empty when the server keeps no artifacts.
    artifact_uri: str = ""
    #: The parent's kept weights (for weight inheritance), when the parent has an artifact still in the store.
    parent_artifact: Artifact | None = None


@dataclass(frozen=True, slots=True)
class NoWork:
    """Nothing to hand out now; ask again after ``retry_after_s``.

    ``done`` is true when the experiment (or, for "any experiment", every experiment) is finished,
    so workers can exit or move on.
    """

    done: bool
    retry_after_s: float = 1.0
    message: str = ""


@dataclass(frozen=True, slots=True)
class Metrics:
    """What an evaluation reports. ``accuracy`` is validation accuracy in [0, 1].

    ``latency_ms`` is set only when the evaluator measured a real latency; otherwise the orchestrator
    keeps the simulated one it priced at proposal time. ``extra`` holds an evaluator's further numeric
    figures (steps, loss, images/s); the orchestrator does not store them.
    """

    accuracy: float
    latency_ms: float | None = None
    params: int | None = None
    mult_adds: int | None = None
    train_seconds: float = 0.0
    compile_seconds: float = 0.0
    fits_on_chip: bool | None = None
    extra: Mapping[str, float] = field(default_factory=dict)
    #: The trained weights written to the artifact store, when the evaluator kept them.
    artifact: Artifact | None = None
    #: Weight inheritance: parameters the child took from its parent, and its accuracy before any training.
    inherited_params: int | None = None
    initial_accuracy: float | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """An intermediate result of an evaluation: after ``epoch`` epochs (or steps), the validation accuracy
    and training loss so far, and the seconds it has trained."""

    epoch: int
    accuracy: float | None = None
    train_loss: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ProgressAnswer:
    """The orchestrator's answer to a progress report: go on, or stop (the child is then recorded as
    stopped with its partial result; the worker reports nothing more for it)."""

    stop: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Individual:
    """One proposal and its outcome, as stored (the lease token stays a secret of its holder)."""

    id: int
    experiment: str
    proposal_seq: int
    genome_json: str
    fingerprint: str
    parent_seq: int | None
    mutation: str
    state: str
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
    epochs: int | None = None  # epochs trained, when the worker reported progress
    artifact: Artifact | None = None  # its kept weights (None: never had any, or deleted by retention)
    artifact_state: str = ""  # "kept", "deleted" or "" (never had any)
    inherited_params: int | None = None  # parameters taken from the parent's weights
    initial_accuracy: float | None = None  # accuracy before training (step 0)


@dataclass(frozen=True, slots=True)
class Page:
    """A page of individuals and the token of the next page ('' when this is the last)."""

    individuals: tuple[Individual, ...]
    next_page_token: str
