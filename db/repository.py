"""The store port: records, errors, and the Store/StoreTx protocols every backend implements.

Contract shared by every backend (the in-memory fake, SQLite and PostgreSQL; one test suite checks all):

- All reads and writes happen inside ``with store.transaction() as tx:``. Leaving the block normally
  commits; an exception rolls back every write made in the block and propagates. Records are values
  (frozen dataclasses) copied out of the store: changing the store later never changes them.
- ``lock=True`` reads take the row's write lock until the transaction ends (``SELECT ... FOR UPDATE`` on
  PostgreSQL; SQLite write transactions are serialized as a whole). The service locks the experiment row
  first in every use case that changes an experiment, which serializes proposals and completions of one
  experiment across server processes.
- Queries used on the hot path are bounded: none reads a number of rows that grows with the history of
  an experiment (population: the in_population rows; expiry and claims: an index range with a limit).
- Rows are never deleted. Writes may reach the database later than the call (with the transaction's next
  statement or its commit: ``append_events``, ``touch_worker``, ``add_individual``, updates with
  ``defer=True``), never later than the commit, always in call order, and every read sees the writes made
  before it in the same transaction. An error of a write that waited (a taken unique key) comes from the
  statement it travelled with.
- Errors: ``DuplicateName`` (experiment name taken), ``StoreUnavailable`` (cannot reach the database),
  ``SchemaOutOfDate`` (the database is not at the code's migration head). Unknown ids are not errors:
  getters return None and updates of a missing row raise ``KeyError``. A ``ValueError`` for a taken
  unique key ends the transaction's usefulness (PostgreSQL aborts it): let it propagate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from domain.errors import AmoebaError


class StoreError(AmoebaError):
    """Base of the store's own errors."""


class DuplicateName(StoreError):
    """An experiment with this name exists already."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or stays locked; the caller may retry with backoff."""


class SchemaOutOfDate(StoreError):
    """The database schema is not at the migration head of this code; the message names ``amoeba migrate``."""


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    id: int
    name: str
    config_json: str
    seed: int
    state: str
    created_at: float
    updated_at: float
    proposals: int
    completed: int
    failed: int
    rejected: int
    event_seq: int
    best_individual_id: int | None
    best_fitness: float | None
    paused_reason: str | None = None
    consecutive_failures: int = 0
    last_failure: str | None = None
    stopped: int = 0
    ranked: int = 0
    completed_train_seconds: float = 0.0
    stopped_train_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class NewIndividual:
    """What a proposal inserts; the store assigns the id."""

    experiment_id: int
    proposal_seq: int
    genome_json: str
    fingerprint: str
    parent_seq: int | None
    mutation: str
    training_seed: int
    state: str
    created_at: float
    attempts: int = 0
    lease_owner: str | None = None
    lease_token: str | None = None
    lease_deadline: float | None = None
    leased_at: float | None = None
    latency_ms: float | None = None
    fits_on_chip: bool | None = None


@dataclass(frozen=True, slots=True)
class IndividualRecord:
    id: int
    experiment_id: int
    proposal_seq: int
    genome_json: str
    fingerprint: str
    parent_seq: int | None
    mutation: str
    training_seed: int
    state: str
    attempts: int
    lease_owner: str | None
    lease_token: str | None
    lease_deadline: float | None
    fitness: float | None
    accuracy: float | None
    latency_ms: float | None
    params: int | None
    mult_adds: int | None
    train_seconds: float | None
    compile_seconds: float | None
    fits_on_chip: bool | None
    failure_reason: str | None
    completion_rank: int | None
    in_population: bool
    improved: bool
    created_at: float
    leased_at: float | None
    completed_at: float | None
    epochs: int | None = None
    progress_accuracy: float | None = None
    progress_loss: float | None = None
    progress_seconds: float | None = None
    artifact_uri: str | None = None
    artifact_sha256: str | None = None
    artifact_bytes: int | None = None
    artifact_state: str | None = None  # "kept", "deleted"; None: never had weights
    inherited_params: int | None = None
    initial_accuracy: float | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    experiment_id: int
    seq: int
    kind: str
    at: float
    individual_id: int | None
    proposal_seq: int | None
    data_json: str


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    worker_id: str
    host: str
    evaluator: str
    first_seen: float
    last_seen: float
    experiment_id: int | None
    current_individual_id: int | None
    evaluations: int


#: Columns ``update_individual`` may change (everything but identity and the genome).
INDIVIDUAL_MUTABLE = frozenset(
    {
        "state", "attempts", "lease_owner", "lease_token", "lease_deadline", "fitness", "accuracy", "latency_ms",
        "params", "mult_adds", "train_seconds", "compile_seconds", "fits_on_chip", "failure_reason",
        "completion_rank", "in_population", "improved", "leased_at", "completed_at", "epochs", "progress_accuracy",
        "progress_loss", "progress_seconds", "artifact_uri", "artifact_sha256", "artifact_bytes", "artifact_state",
        "inherited_params", "initial_accuracy",
    }
)
#: Columns ``update_experiment`` may change.
EXPERIMENT_MUTABLE = frozenset(
    {"state", "updated_at", "proposals", "completed", "failed", "rejected", "event_seq", "best_individual_id", "best_fitness",
     "paused_reason", "consecutive_failures", "last_failure", "stopped", "ranked", "completed_train_seconds",
     "stopped_train_seconds"}
)


class StoreTx(Protocol):
    """One open transaction (see the module docstring for the shared contract)."""

    # --- experiments ---
    def add_experiment(self, name: str, config_json: str, seed: int, now: float) -> ExperimentRecord:
        """Insert a running experiment with zero counters. Raises DuplicateName."""
        ...

    def experiment(self, name: str, *, lock: bool = False) -> ExperimentRecord | None: ...

    def experiment_by_id(self, experiment_id: int, *, lock: bool = False) -> ExperimentRecord | None: ...

    def experiments(self, state: str | None = None) -> list[ExperimentRecord]:
        """All experiments (or those in ``state``), oldest first."""
        ...

    def update_experiment(self, experiment_id: int, changes: Mapping[str, Any], *, defer: bool = False) -> None:
        """Set columns from EXPERIMENT_MUTABLE. KeyError for an unknown id, ValueError for other columns.

        ``defer``: the caller knows the row exists (it read it), so the store may send the update with the
        transaction's next statement or its commit (PostgreSQL: no round trip of its own); a KeyError then
        comes from that statement. Reads later in the transaction see the update either way."""
        ...

    # --- individuals ---
    def add_individual(self, new: NewIndividual) -> int:
        """Insert and return the new id. The (experiment, proposal_seq) pair is unique (ValueError if taken)."""
        ...

    def individual(self, individual_id: int, *, lock: bool = False) -> IndividualRecord | None: ...

    def individual_and_experiment(
        self, individual_id: int, *, lock: bool = False
    ) -> tuple[IndividualRecord, ExperimentRecord] | None:
        """An individual with its experiment; ``lock`` locks the experiment row first (every use case that
        changes an individual holds its experiment's lock, so the individual read after it is current)."""
        ...

    def update_individual(self, individual_id: int, changes: Mapping[str, Any], *, defer: bool = False) -> None:
        """Set columns from INDIVIDUAL_MUTABLE. KeyError for an unknown id, ValueError for other columns.

        ``defer`` as for ``update_experiment``: for a row the caller read, in this transaction or an earlier
        one (rows are never deleted)."""
        ...

    def overdue_leases(self, experiment_id: int, now: float, limit: int) -> list[IndividualRecord]:
        """Leased individuals whose deadline is before ``now``, earliest deadline first, at most ``limit``.

        On PostgreSQL rows locked by another transaction (a heartbeat extending them) are skipped.
        """
        ...

    def next_queued(self, experiment_id: int) -> IndividualRecord | None:
        """The queued individual with the lowest proposal number, locked for this transaction
        (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), or None."""
        ...

    def population(self, experiment_id: int) -> list[IndividualRecord]:
        """The in_population individuals in completion order (oldest first)."""
        ...

    def count_states(self, experiment_id: int, states: Iterable[str]) -> dict[str, int]:
        """How many individuals are in each of ``states`` (index-only; meant for queued and leased)."""
        ...

    def top(self, experiment_id: int, k: int) -> list[IndividualRecord]:
        """The k completed individuals with the highest fitness, best first (ties: lower proposal first)."""
        ...

    def improvements(self, experiment_id: int) -> list[IndividualRecord]:
        """The completions that raised the best fitness, in completion order."""
        ...

    def by_completion_rank(self, experiment_id: int, rank: int) -> IndividualRecord | None: ...

    def leased(self, experiment_id: int, limit: int) -> list[IndividualRecord]:
        """Individuals leased now, earliest deadline first, at most ``limit`` (the leased partial index)."""
        ...

    def completions(self, experiment_id: int, from_rank: int, limit: int) -> list[IndividualRecord]:
        """Completed individuals with completion rank >= ``from_rank``, in completion order, at most ``limit``
        (walks the rank index: how an algorithm whose state is its whole history catches up)."""
        ...

    def individuals(
        self, experiment_id: int, after_seq: int, limit: int, state: str | None = None
    ) -> list[IndividualRecord]:
        """Individuals with proposal_seq > after_seq (optionally in ``state``), by proposal_seq, at most ``limit``."""
        ...

    def artifacts(self, experiment_id: int, state: str | None = "kept") -> list[IndividualRecord]:
        """Individuals with an artifact (in ``state``: "kept" by default, None for any), by proposal_seq.

        The kept ones are few (population, top K, parents still needed), and a partial index holds them:
        retention reads them after every report that carries weights."""
        ...

    # --- events ---
    def append_events(self, events: Sequence[EventRecord]) -> None:
        """Append events (one statement). (experiment, seq) is unique: ValueError when taken."""
        ...

    def events(self, experiment_id: int, after_seq: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Events with seq > after_seq in seq order, at most ``limit``."""
        ...

    # --- workers ---
    def touch_worker(
        self,
        worker_id: str,
        host: str,
        evaluator: str,
        now: float,
        experiment_id: int | None,
        current_individual_id: int | None,
        completed: int = 0,
    ) -> None:
        """Insert or update a worker: last seen now, its experiment and lease, evaluations += completed.

        An empty ``host``/``evaluator`` keeps the stored value."""
        ...

    def workers(self, experiment_id: int | None = None) -> list[WorkerRecord]:
        """Workers (last working on ``experiment_id`` when given), by id."""
        ...


class Store(Protocol):
    """A population store: a factory of transactions over one database."""

    @property
    def dialect(self) -> str:
        """``memory``, ``sqlite`` or ``postgresql``."""
        ...

    def transaction(self) -> AbstractContextManager[StoreTx]: ...

    def close(self) -> None: ...
