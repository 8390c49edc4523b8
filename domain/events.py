"""The experiment event log as typed values: one frozen class per kind, one encoder and one decoder.

Every state change of an experiment is one of these, stored with a per-experiment sequence number
(``kind`` and the payload's JSON in the events table). The JSON keys are those the log has always had,
so databases written by earlier versions decode to the same values; a kind this version does not know
decodes to ``Unknown`` rather than failing, so a newer log stays readable by an older reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar


class EventKind(StrEnum):
    EXPERIMENT_CREATED = "experiment_created"
    PROPOSED = "proposed"
    LEASED = "leased"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    REQUEUED = "requeued"
    RELEASED = "released"
    EXPIRED = "expired"
    EXPERIMENT_DONE = "experiment_done"
    SEEDED = "seeded"
    KILLED = "killed"
    PAUSED = "paused"
    RESUMED = "resumed"
    PROGRESS = "progress"
    STOPPED = "stopped"


class _Payload:
    """Shared codec of the payload classes: their fields are exactly their JSON keys."""

    __slots__ = ()
    kind: ClassVar[EventKind]

    def to_data(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Any:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class ExperimentCreated(_Payload):
    """The experiment was created with this validated config (a fork also names its source)."""

    kind: ClassVar[EventKind] = EventKind.EXPERIMENT_CREATED
    config: dict[str, Any]
    forked_from: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"config": self.config}
        if self.forked_from is not None:
            data["forked_from"] = self.forked_from
        return data


@dataclass(frozen=True, slots=True)
class Proposed(_Payload):
    """A child was proposed (its genome is in the individual's row; the fingerprint checks it)."""

    kind: ClassVar[EventKind] = EventKind.PROPOSED
    fingerprint: str
    parent_seq: int | None = None
    mutation: str = ""


@dataclass(frozen=True, slots=True)
class Leased(_Payload):
    """An individual was leased to a worker (attempt 1, or a retry after an expiry)."""

    kind: ClassVar[EventKind] = EventKind.LEASED
    worker: str
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Completed(_Payload):
    """An evaluation completed with these objectives; the member joins the algorithm's fold."""

    kind: ClassVar[EventKind] = EventKind.COMPLETED
    fitness: float
    accuracy: float
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Failed(_Payload):
    """An individual failed for good (never enters the population)."""

    kind: ClassVar[EventKind] = EventKind.FAILED
    reason: str = ""
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected(_Payload):
    """A child was over the latency limit: rejected before training (or at its report)."""

    kind: ClassVar[EventKind] = EventKind.REJECTED
    reason: str = ""
    latency_ms: float | None = None
    before_training: bool = False

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reason": self.reason, "latency_ms": self.latency_ms}
        if self.before_training:
            data["before_training"] = True
        return data


@dataclass(frozen=True, slots=True)
class Requeued(_Payload):
    """A retryable failure put the individual back in the queue."""

    kind: ClassVar[EventKind] = EventKind.REQUEUED
    reason: str = ""
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class Released(_Payload):
    """A worker gave its lease back unfinished (shutting down); requeued without using an attempt."""

    kind: ClassVar[EventKind] = EventKind.RELEASED
    worker: str = ""


@dataclass(frozen=True, slots=True)
class Expired(_Payload):
    """A lease passed its deadline: requeued, or failed after the last attempt."""

    kind: ClassVar[EventKind] = EventKind.EXPIRED
    attempt: int | None = None
    requeued: bool = True


@dataclass(frozen=True, slots=True)
class ExperimentDone(_Payload):
    """C evaluations completed; nothing more is leased."""

    kind: ClassVar[EventKind] = EventKind.EXPERIMENT_DONE
    completed: int = 0


@dataclass(frozen=True, slots=True)
class Seeded(_Payload):
    """A completed member copied in as is (a forked experiment starts with these; the genome travels here)."""

    kind: ClassVar[EventKind] = EventKind.SEEDED
    fingerprint: str
    genome: dict[str, Any]
    fitness: float
    accuracy: float | None = None
    latency_ms: float | None = None
    source: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Killed(_Payload):
    """A member left the population when a proposal was made (a pairwise tournament's loser)."""

    kind: ClassVar[EventKind] = EventKind.KILLED
    by_proposal: int = 0


@dataclass(frozen=True, slots=True)
class Paused(_Payload):
    """The experiment stopped leasing new work (a user, or a breaker after repeated failures)."""

    kind: ClassVar[EventKind] = EventKind.PAUSED
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Resumed(_Payload):
    """A paused experiment leases work again."""

    kind: ClassVar[EventKind] = EventKind.RESUMED
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ProgressReported(_Payload):
    """A leased child's intermediate result (kept when it moves on a step; the early-stopping rule reads it)."""

    kind: ClassVar[EventKind] = EventKind.PROGRESS
    epoch: int
    accuracy: float | None = None
    train_loss: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Stopped(_Payload):
    """The early-stopping rule stopped a child at ``epoch`` with this partial accuracy; with ``joined`` it
    entered the population with ``fitness`` (as in ASHA), else it never does."""

    kind: ClassVar[EventKind] = EventKind.STOPPED
    epoch: int
    accuracy: float | None = None
    reason: str = ""
    joined: bool = False
    fitness: float | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    """A kind this version does not know (written by a newer Amoeba): kept as its raw data."""

    kind: str
    data: dict[str, Any]

    def to_data(self) -> dict[str, Any]:
        return dict(self.data)


Payload = (
    ExperimentCreated | Proposed | Leased | Completed | Failed | Rejected | Requeued | Released | Expired
    | ExperimentDone | Seeded | Killed | Paused | Resumed | ProgressReported | Stopped | Unknown
)
_BY_KIND: dict[str, type[_Payload]] = {
    cls.kind.value: cls
    for cls in (ExperimentCreated, Proposed, Leased, Completed, Failed, Rejected, Requeued, Released, Expired,
                ExperimentDone, Seeded, Killed, Paused, Resumed, ProgressReported, Stopped)
}


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the log: its sequence number, time, the individual it concerns, and the payload."""

    seq: int
    at: float
    individual_id: int | None
    proposal_seq: int | None
    payload: Payload

    @property
    def kind(self) -> str:
        return str(self.payload.kind)


def encode(payload: Payload) -> tuple[str, str]:
    """(kind, canonical JSON of the payload) as the events table stores them."""
    data = payload.to_data()
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False) if data else "{}"
    return str(payload.kind), text


def decode(kind: str, data_json: str | None) -> Payload:
    """The payload of a stored event; an unknown kind decodes to ``Unknown``."""
    data = json.loads(data_json) if data_json else {}
    if not isinstance(data, dict):
        data = {"value": data}
    cls = _BY_KIND.get(kind)
    if cls is None:
        return Unknown(kind, data)
    payload: Payload = cls.from_data(data)
    return payload
