"""The status document, built in one place from typed facts: the live store (the service) and the
replayed event log (``status --at``) both gather ``StatusFacts``; ``status_document`` writes the JSON."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from domain.status import SCHEMA_VERSION, BestInfo, ParetoPoint, StatusSnapshot, TopEntry, WorkerEntry
from evolution.objectives import pareto_flags

#: Completions over which the recent evaluation rate is measured.
RATE_WINDOW = 100


@dataclass(frozen=True, slots=True)
class Entry:
    """One completed individual as the document shows it (``rank``: its 0-based completion order)."""

    seq: int
    fingerprint: str
    fitness: float
    accuracy: float | None
    latency_ms: float | None
    rank: int
    parent_seq: int | None = None
    summary: str = ""


@dataclass(frozen=True, slots=True)
class WorkerView:
    worker_id: str
    host: str
    alive: bool
    lease: int | None
    last_heartbeat: float | None
    evaluations: int


@dataclass(frozen=True, slots=True)
class RunningView:
    """A child in training now, with its last progress report kept (epoch, accuracy, seconds)."""

    seq: int
    worker_id: str | None
    epoch: int | None
    accuracy: float | None
    seconds: float | None


@dataclass(frozen=True, slots=True)
class StatusFacts:
    """Everything the document says, gathered by a producer; the population oldest first.

    ``front`` holds further completed individuals whose accuracy/latency front should be shown besides the
    population and the top (all completions, or a recent window of them, where that is cheap).
    """

    experiment: str
    state: str
    space: str
    algorithm: str
    target: int
    population_size: int
    completed: int
    failed: int
    rejected: int
    proposals: int
    queued: int
    leased: int
    evaluations_per_hour: float
    best: Entry | None
    population: Sequence[Entry]
    top: Sequence[Entry]
    best_so_far: Sequence[tuple[float, float]]
    workers: Sequence[WorkerView]
    generated_at: float
    seq: int
    front: Sequence[Entry] = field(default_factory=tuple)
    paused_reason: str | None = None
    last_failure: str | None = None
    consecutive_failures: int = 0
    stopped: int = 0
    #: Members folded in (completions and stopped children that joined): completion ranks run over them.
    ranked: int | None = None
    saved_train_seconds: float = 0.0
    running: Sequence[RunningView] = field(default_factory=tuple)


def saved_seconds(completed: int, completed_train_seconds: float, stopped: int, stopped_train_seconds: float) -> float:
    """Training time early stopping saved: each stopped child would have trained as long as the average
    completed one; it trained only its own seconds."""
    if completed == 0 or stopped == 0:
        return 0.0
    return max(0.0, stopped * completed_train_seconds / completed - stopped_train_seconds)


def rate_per_hour(first_rank: int, first_at: float | None, last_rank: int, last_at: float | None) -> float:
    """Completions per hour between two completions (0 when unknown)."""
    if first_at is None or last_at is None or last_at <= first_at or last_rank <= first_rank:
        return 0.0
    return (last_rank - first_rank) / (last_at - first_at) * 3600.0


def status_document(f: StatusFacts) -> StatusSnapshot:
    """The documented status document (``domain.status``; fields in ``ui.schema.FIELDS``)."""
    last_rank = (f.completed if f.ranked is None else f.ranked) - 1
    fits = sorted(e.fitness for e in f.population)
    remaining = max(0, f.target - f.completed)
    shown = {(float(e.accuracy), float(e.latency_ms)) for e in (*f.population, *f.top)
             if e.accuracy is not None and e.latency_ms is not None}
    # One point per distinct (accuracy, latency): a genome evaluated twice (or two with the same figures) is one
    # point of the front, as front.png counts it; the earliest proposal stands for it.
    points: dict[tuple[float, float], Entry] = {}
    for e in sorted((*f.front, *f.population, *f.top), key=lambda e: e.seq):
        if e.accuracy is not None and e.latency_ms is not None:
            points.setdefault((float(e.accuracy), float(e.latency_ms)), e)
    ordered = sorted(points.values(), key=lambda e: e.seq)
    flags = pareto_flags([(float(e.accuracy or 0.0), e.latency_ms) for e in ordered])
    pareto: list[ParetoPoint] = [
        {"fingerprint": e.fingerprint, "accuracy": float(e.accuracy or 0.0), "latency_ms": float(e.latency_ms or 0.0),
         "on_front": on}
        for e, on in zip(ordered, flags, strict=True)
        if on or (float(e.accuracy or 0.0), float(e.latency_ms or 0.0)) in shown
    ]
    best: BestInfo | None = None
    if f.best is not None:
        b = f.best
        best = {"fingerprint": b.fingerprint, "accuracy": b.accuracy, "latency_ms": b.latency_ms, "fitness": b.fitness,
                "proposal_seq": b.seq, "summary": b.summary}
    top: list[TopEntry] = [
        {"proposal_seq": e.seq, "fingerprint": e.fingerprint, "fitness": e.fitness, "accuracy": e.accuracy,
         "latency_ms": e.latency_ms, "summary": e.summary, "parent_seq": e.parent_seq, "age": last_rank - e.rank}
        for e in f.top
    ]
    workers: list[WorkerEntry] = [
        {"worker_id": w.worker_id, "host": w.host, "alive": w.alive, "lease": w.lease,
         "last_heartbeat": w.last_heartbeat, "evaluations": w.evaluations}
        for w in f.workers
    ]
    return {
        "schema": SCHEMA_VERSION,
        "experiment": f.experiment,
        "state": f.state,
        "space": f.space,
        "algorithm": f.algorithm,
        "completed": f.completed,
        "failed": f.failed,
        "rejected": f.rejected,
        "target": f.target,
        "proposals": f.proposals,
        "queued": f.queued,
        "leased": f.leased,
        "evaluations_per_hour": f.evaluations_per_hour,
        "eta_seconds": remaining / f.evaluations_per_hour * 3600.0 if f.evaluations_per_hour > 0 else None,
        "best": best,
        "population": {
            "size": len(f.population),
            "target_size": f.population_size,
            "best": fits[-1] if fits else None,
            "median": statistics.median(fits) if fits else None,
            "worst": fits[0] if fits else None,
            "ages": [last_rank - e.rank for e in f.population],
        },
        "best_so_far": [[t, v] for t, v in f.best_so_far],
        "pareto": pareto,
        "top": top,
        "workers": workers,
        "generated_at": f.generated_at,
        "seq": f.seq,
        "paused_reason": f.paused_reason,
        "last_failure": f.last_failure,
        "consecutive_failures": f.consecutive_failures,
        "stopped": f.stopped,
        "saved_train_seconds": f.saved_train_seconds,
        "running": [{"proposal_seq": r.seq, "worker_id": r.worker_id, "epoch": r.epoch, "accuracy": r.accuracy,
                     "seconds": r.seconds} for r in f.running],
    }
