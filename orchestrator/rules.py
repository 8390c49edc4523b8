"""The rules of the use cases as pure functions over values and the current time: what a request may
carry, who holds a lease, what an expired lease becomes, how much work may be outstanding."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from domain import (
    AlreadyExists,
    Artifact,
    FailedPrecondition,
    IndividualState,
    InvalidArgument,
    Metrics,
    NotFound,
    Progress,
)
from domain.values import TERMINAL_STATES

#: Metric bounds beyond which a report is certainly malformed (units: ms, count, count, seconds).
MAX_LATENCY_MS = 1e7
MAX_PARAMS = 10**13
MAX_MULT_ADDS = 10**17
MAX_SECONDS = 1e8
#: Longest strings the store keeps (the sizes of the workers table's columns).
MAX_WORKER_ID, MAX_HOST, MAX_EVALUATOR = 200, 255, 64
MAX_REASON = 2000
#: Proposal numbers are 32-bit columns; a page token is one of them.
MAX_PROPOSAL_SEQ = 2**31 - 1
MAX_PAGE_SIZE = 10_000
#: Epochs (or steps) a progress report may name: more rows than that per child is flooding, not training.
MAX_EPOCHS = 100_000


def finite(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def count(name: str, value: Any, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise InvalidArgument(f"{name} must be an integer between 0 and {high:g}, got {value!r}")
    return value


def text(what: str, value: Any, limit: int) -> str:
    """A string every backend stores verbatim: at most ``limit`` characters and no NUL (PostgreSQL's text
    cannot hold one), else InvalidArgument, before the database sees it."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string")
    if len(value) > limit:
        raise InvalidArgument(f"{what} must be at most {limit} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidArgument(f"{what} must not contain NUL characters")
    return value


def lookup_name(name: Any) -> str:
    """An experiment name to look up; NotFound without a query for what no experiment can be named
    (names are 1-200 of [A-Za-z0-9._-]), which also keeps strings PostgreSQL cannot compare (NUL) away."""
    if not isinstance(name, str) or len(name) > 200 or "\x00" in name:
        shown = repr(name[:60]) + ("..." if len(name) > 60 else "") if isinstance(name, str) else repr(name)
        raise NotFound(f"no experiment named {shown}")
    return name


def worker_fields(worker_id: Any, host: Any = "", evaluator: Any = "") -> None:
    if not isinstance(worker_id, str) or not worker_id:
        raise InvalidArgument("a worker id (1-200 characters) is required")
    text("worker id", worker_id, MAX_WORKER_ID)
    text("worker host", host, MAX_HOST)
    text("worker evaluator", evaluator, MAX_EVALUATOR)


def failure_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgument("a failure needs a reason")
    return text("the failure reason", reason.strip()[:MAX_REASON], MAX_REASON)


def validate_metrics(m: Any) -> Metrics:
    """The metrics, normalized; InvalidArgument for NaN, infinities, wrong types or values out of range."""
    if not isinstance(m, Metrics):
        raise InvalidArgument("metrics are missing")
    latency = None if m.latency_ms is None else finite("latency_ms", m.latency_ms, 0.0, MAX_LATENCY_MS)
    if m.fits_on_chip is not None and not isinstance(m.fits_on_chip, bool):
        raise InvalidArgument(f"fits_on_chip must be a boolean, got {m.fits_on_chip!r}")
    return Metrics(
        accuracy=finite("accuracy", m.accuracy, 0.0, 1.0),
        latency_ms=latency,
        params=count("params", m.params, MAX_PARAMS),
        mult_adds=count("mult_adds", m.mult_adds, MAX_MULT_ADDS),
        train_seconds=finite("train_seconds", m.train_seconds, 0.0, MAX_SECONDS),
        compile_seconds=finite("compile_seconds", m.compile_seconds, 0.0, MAX_SECONDS),
        fits_on_chip=m.fits_on_chip,
        artifact=validate_artifact(m.artifact),
        inherited_params=count("inherited_params", m.inherited_params, MAX_PARAMS),
        initial_accuracy=None if m.initial_accuracy is None else finite("initial_accuracy", m.initial_accuracy, 0.0, 1.0),
    )


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: A store URL plus a child's folder name fits easily; longer is not a URI this server handed out.
MAX_URI = 2000
MAX_ARTIFACT_BYTES = 2**50


def validate_artifact(a: Any) -> Artifact | None:
    """The reported artifact, checked for shape (the service checks it is the one the lease assigned)."""
    if a is None:
        return None
    if not isinstance(a, Artifact):
        raise InvalidArgument("artifact must be an Artifact")
    text("artifact uri", a.uri, MAX_URI)
    if not a.uri:
        raise InvalidArgument("an artifact needs its uri")
    if not isinstance(a.sha256, str) or not _SHA256.match(a.sha256):
        raise InvalidArgument(f"artifact sha256 must be 64 lowercase hex digits, got {str(a.sha256)[:60]!r}")
    return Artifact(a.uri, a.sha256, count("artifact bytes", a.bytes, MAX_ARTIFACT_BYTES) or 0)


def page_request(page_size: Any, page_token: Any, state: Any) -> tuple[int, int, str | None]:
    """(size, after_seq, state) of a ListIndividuals request, or InvalidArgument."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 0 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be between 0 and {MAX_PAGE_SIZE}, got {page_size!r}")
    if state is not None and state not in tuple(IndividualState):
        raise InvalidArgument(f"state must be one of {', '.join(IndividualState)}, got {str(state)[:40]!r}")
    try:
        after = int(page_token) if page_token else -1
    except (TypeError, ValueError):
        after = None
    if after is None or not -1 <= after <= MAX_PROPOSAL_SEQ:
        raise InvalidArgument(f"malformed page token {str(page_token)[:40]!r}")
    return page_size or 100, after, state


# --- leases ----------------------------------------------------------------------------------------------


def check_holder(individual_id: Any, token: Any) -> None:
    """The shape of a lease holder's call, before any query."""
    if isinstance(individual_id, bool) or not isinstance(individual_id, int):
        raise InvalidArgument(f"individual id must be an integer, got {individual_id!r}")
    if not isinstance(token, str) or not token:
        raise InvalidArgument("a lease token is required")


@dataclass(frozen=True, slots=True)
class Holding:
    """What the holder check needs of an individual and its experiment."""

    individual_id: int
    proposal_seq: int
    state: str
    lease_token: str | None
    lease_deadline: float | None
    experiment: str
    experiment_state: str
    completed: int


def check_lease(h: Holding, token: str, now: float, action: str) -> None:
    """Raise unless ``token`` holds a live lease on the individual: AlreadyExists when it has its outcome,
    FailedPrecondition when the experiment is done or the lease expired or was re-issued."""
    if h.state in TERMINAL_STATES:
        raise AlreadyExists(f"individual {h.individual_id} (proposal {h.proposal_seq}) is {h.state} already")
    if h.experiment_state == "done":
        raise FailedPrecondition(
            f"experiment {h.experiment} is done ({h.completed} evaluations); {action} of individual "
            f"{h.individual_id} is not needed"
        )
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a forged token may have them).
    if h.state != IndividualState.LEASED or not secrets.compare_digest((h.lease_token or "").encode(), token.encode()):
        raise FailedPrecondition(f"the lease on individual {h.individual_id} is no longer yours (expired and re-issued)")
    if h.lease_deadline is None or h.lease_deadline < now:
        raise FailedPrecondition(f"the lease on individual {h.individual_id} expired")


def expiry_outcome(attempts: int, max_attempts: int) -> IndividualState:
    """An expired lease puts the individual back in the queue until its last attempt, then fails it."""
    return IndividualState.FAILED if attempts >= max_attempts else IndividualState.QUEUED


def budget_used(completed: int, stopped: int, stopped_count: bool) -> int:
    """Evaluations spent of the budget C: completions, and stopped children unless configured otherwise."""
    return completed + (stopped if stopped_count else 0)


def may_propose(target: int, proposals: int, completed: int, failed: int, rejected: int, stopped: int = 0,
                stopped_count: bool = True) -> bool:
    """Never more outstanding work than evaluations still needed: exactly C evaluations end and none is
    wasted; a failure, a rejection (or a stop that does not count) frees a slot for a new proposal."""
    outstanding = proposals - completed - failed - rejected - stopped
    return budget_used(completed, stopped, stopped_count) + outstanding < target


def validate_progress(p: Any) -> Progress:
    """A progress report, normalized; InvalidArgument for an epoch out of range or a non-finite number."""
    if not isinstance(p, Progress):
        raise InvalidArgument("progress is missing")
    if isinstance(p.epoch, bool) or not isinstance(p.epoch, int) or not 1 <= p.epoch <= MAX_EPOCHS:
        raise InvalidArgument(f"progress epoch must be an integer between 1 and {MAX_EPOCHS}, got {p.epoch!r}")
    accuracy = None if p.accuracy is None else finite("progress accuracy", p.accuracy, 0.0, 1.0)
    loss = None if p.train_loss is None else finite("progress train_loss", p.train_loss, -1e12, 1e12)
    return Progress(p.epoch, accuracy, loss, finite("progress seconds", p.seconds, 0.0, MAX_SECONDS))


@dataclass(frozen=True, slots=True)
class Kept:
    """An individual whose artifact is still kept, as retention sees it."""

    id: int
    seq: int
    in_population: bool


def doomed_artifacts(kept: Iterable[Kept], top: Collection[int], needed: Collection[int]) -> list[int]:
    """The ids of kept artifacts retention deletes now: everything but the live population, the ``top`` K
    (their proposal numbers) and the parents a queued or leased child still ``needed`` (proposal numbers).

    Pure, so the bound it keeps (at most P + K + the children in flight) is checked without a store."""
    return [k.id for k in kept if not k.in_population and k.seq not in top and k.seq not in needed]
