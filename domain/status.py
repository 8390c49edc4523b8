"""The status document's types (schema version 1): what every producer builds and every view reads.

The same document comes from a server (``GetStatus``), a database (``amoeba status --db``) and a replay
at some event (``amoeba replay --at``); ``ui.schema`` documents each field and checks documents.
Fields may be added, never renamed or removed.
"""

# No ``from __future__ import annotations``: TypedDict needs real NotRequired objects for __required_keys__.
from typing import NotRequired, TypedDict

SCHEMA_VERSION = 1


class BestInfo(TypedDict):
    fingerprint: str
    accuracy: float | None
    latency_ms: float | None
    fitness: float
    proposal_seq: int
    summary: str


class PopulationInfo(TypedDict):
    size: int
    best: float | None
    median: float | None
    worst: float | None
    ages: list[int]
    target_size: NotRequired[int]


class ParetoPoint(TypedDict):
    fingerprint: str
    accuracy: float
    latency_ms: float
    on_front: bool


class TopEntry(TypedDict):
    proposal_seq: int
    fingerprint: str
    fitness: float
    accuracy: float | None
    latency_ms: float | None
    summary: str
    parent_seq: int | None
    age: int


class WorkerEntry(TypedDict):
    worker_id: str
    host: str
    alive: bool
    lease: int | None
    last_heartbeat: float | None
    evaluations: int


class RunningEntry(TypedDict):
    proposal_seq: int
    worker_id: str | None
    epoch: int | None
    accuracy: float | None
    seconds: float | None


class StatusSnapshot(TypedDict):
    schema: int
    experiment: str
    state: str
    completed: int
    failed: int
    rejected: int
    target: int
    evaluations_per_hour: float
    eta_seconds: float | None
    best: BestInfo | None
    population: PopulationInfo
    best_so_far: list[list[float]]
    pareto: list[ParetoPoint]
    top: list[TopEntry]
    workers: list[WorkerEntry]
    generated_at: NotRequired[float]
    seq: NotRequired[int]
    leased: NotRequired[int]
    queued: NotRequired[int]
    proposals: NotRequired[int]
    space: NotRequired[str]
    algorithm: NotRequired[str]
    paused_reason: NotRequired[str | None]
    last_failure: NotRequired[str | None]
    consecutive_failures: NotRequired[int]
    stopped: NotRequired[int]
    saved_train_seconds: NotRequired[float]
    running: NotRequired[list[RunningEntry]]
