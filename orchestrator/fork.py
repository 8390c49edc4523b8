"""Fork an experiment at an event: a new experiment whose population starts as the source's at that event.

The members are *copied*: each becomes a completed individual of the fork (proposal numbers 0..n-1,
no parent, mutation ``seeded from SOURCE#SEQ``) with the source's genome, metrics and fitness, and the
fork's log starts with one ``seeded`` event per member that carries the genome and the objectives. A
fork is therefore a self-contained experiment: replay rebuilds its first population from those
events (``evolution.Seeded``) and re-derives every later proposal from the fork's own seed, and the
source can be deleted or changed without touching it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from db.repository import DuplicateName, EventRecord, ExperimentRecord, IndividualRecord, NewIndividual, Store, StoreTx
from domain import AlreadyExists, ExperimentSpec, IndividualState, InvalidArgument, NotFound
from domain import events as ev
from orchestrator.config import parse_spec, spec_from_json, spec_to_dict, spec_to_json
from orchestrator.logfold import LogFold

EVENT_PAGE = 5000


@dataclass(frozen=True, slots=True)
class ForkRequest:
    """What to fork and what to change; None keeps the source's value.

    ``evaluations`` counts the fork's *new* evaluations (default: what the source still had to run at
    ``at``); the fork's stored target C is the seeded members plus these.
    """

    source: str
    at: int
    name: str | None = None
    population_size: int | None = None
    sample_size: int | None = None
    evaluations: int | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ForkResult:
    name: str
    experiment_id: int
    source: str
    at: int
    seeded: tuple[int, ...]  # the source's proposal numbers of the copied members, oldest first
    spec: ExperimentSpec

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.experiment_id, "source": self.source, "at": self.at,
                "seeded": list(self.seeded), "target": self.spec.evaluations, "spec": spec_to_dict(self.spec)}


def _genomes(tx: StoreTx, exp_id: int, seqs: Sequence[int]) -> dict[int, tuple[str, int | None, str]]:
    """The stored genomes of ``seqs``: one range read (a page of the log asks for neighbouring proposals)."""
    if not seqs:
        return {}
    wanted = set(seqs)
    low, high = min(wanted), max(wanted)
    rows = tx.individuals(exp_id, low - 1, high - low + 1)
    return {r.proposal_seq: (r.genome_json, r.parent_seq, r.fingerprint) for r in rows if r.proposal_seq in wanted}


def _fold_to(tx: StoreTx, exp: ExperimentRecord, spec: ExperimentSpec, at: int) -> LogFold:
    fold = LogFold(spec, exp.created_at, lambda seqs: _genomes(tx, exp.id, seqs))
    after = 0
    while after < at:
        page = [e for e in tx.events(exp.id, after, EVENT_PAGE) if e.seq <= at]
        fold.apply(page)
        if len(page) < EVENT_PAGE:
            break
        after = page[-1].seq
    return fold


def _row(tx: StoreTx, exp_id: int, seq: int) -> IndividualRecord:
    rows = tx.individuals(exp_id, seq - 1, 1)
    if not rows or rows[0].proposal_seq != seq:
        raise NotFound(f"proposal {seq} has no stored individual")
    return rows[0]


def fork_experiment(store: Store, request: ForkRequest, clock: Callable[[], float] = time.time) -> ForkResult:
    """Create the fork in one transaction (AlreadyExists, NotFound or InvalidArgument otherwise: nothing written)."""
    now = clock()
    with store.transaction() as tx:
        source = tx.experiment(request.source)
        if source is None:
            raise NotFound(f"no experiment named {request.source!r}")
        at = request.at
        if isinstance(at, bool) or not isinstance(at, int) or not 1 <= at <= source.event_seq:
            raise InvalidArgument(f"--at must be an event number between 1 and {source.event_seq}, got {at}")
        src_spec = spec_from_json(source.config_json)
        fold = _fold_to(tx, source, src_spec, at)
        population = request.population_size or src_spec.population_size
        members = fold.population[-population:]
        new_evaluations = request.evaluations
        if new_evaluations is None:
            new_evaluations = max(1, src_spec.evaluations - fold.completed)
        if new_evaluations < 1:
            raise InvalidArgument(f"--evaluations must be >= 1, got {new_evaluations}")
        values = spec_to_dict(src_spec) | {
            "name": request.name or f"{source.name}-at{at}",
            "population_size": population,
            "sample_size": request.sample_size or src_spec.sample_size,
            "evaluations": len(members) + new_evaluations,
            "seed": src_spec.seed if request.seed is None else request.seed,
        }
        spec = parse_spec(values)
        try:
            exp = tx.add_experiment(spec.name, spec_to_json(spec), spec.seed, now)
        except DuplicateName:
            raise AlreadyExists(f"experiment {spec.name!r} exists already (pass --name NEW)") from None
        def record(payload: ev.Payload, ind_id: int | None = None, seq: int | None = None) -> EventRecord:
            kind, data = ev.encode(payload)
            return EventRecord(exp.id, len(events) + 1, kind, now, ind_id, seq, data)

        events: list[EventRecord] = []
        events.append(record(ev.ExperimentCreated(spec_to_dict(spec), {
            "experiment": source.name, "at": at, "members": [m.seq for m in members]})))
        best: tuple[int, float] | None = None
        for rank, member in enumerate(members):
            row = _row(tx, source.id, member.seq)
            ind_id = tx.add_individual(NewIndividual(
                experiment_id=exp.id, proposal_seq=rank, genome_json=row.genome_json, fingerprint=row.fingerprint,
                parent_seq=None, mutation=f"seeded from {source.name}#{member.seq}"[:200],
                training_seed=row.training_seed, state=IndividualState.COMPLETED, created_at=now,
            ))
            improved = best is None or member.fitness > best[1]
            if improved:
                best = (ind_id, member.fitness)
            tx.update_individual(ind_id, {
                "fitness": member.fitness, "accuracy": row.accuracy, "latency_ms": row.latency_ms,
                "params": row.params, "mult_adds": row.mult_adds, "train_seconds": row.train_seconds,
                "compile_seconds": row.compile_seconds, "fits_on_chip": row.fits_on_chip,
                "completion_rank": rank, "in_population": True, "improved": improved, "completed_at": now,
            })
            events.append(record(ev.Seeded(row.fingerprint, json.loads(row.genome_json), member.fitness, row.accuracy,
                                           row.latency_ms, {"experiment": source.name, "proposal_seq": member.seq}),
                                 ind_id, rank))
        tx.append_events(events)
        tx.update_experiment(exp.id, {
            "proposals": len(members), "completed": len(members), "ranked": len(members), "event_seq": len(events), "updated_at": now,
            "best_individual_id": best[0] if best else None, "best_fitness": best[1] if best else None,
        })
    return ForkResult(spec.name, exp.id, source.name, at, tuple(m.seq for m in members), spec)
