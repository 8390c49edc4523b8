"""Replay an experiment from its database: the event log as ``evolution.replay`` events, and a verifier."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import evolution
from db.repository import EventRecord, ExperimentRecord, Store
from domain import ExperimentSpec, NotFound
from domain import events as ev
from domain.errors import AmoebaError
from evolution import Algorithm, ReplayMismatch, fold
from evolution.early_stopping import StoppingState, parse_stopping
from evolution.replay import Event
from orchestrator.config import experiment_context, spec_from_json
from orchestrator.stopping import stopping_step
from spaces import Space

PAGE = 5000


@dataclass(frozen=True, slots=True)
class ReplayInputs:
    """What the pure core needs to re-derive an experiment: its config, space, mutation and events."""

    spec: ExperimentSpec
    algorithm: Algorithm[Any]
    space: Space
    events: tuple[Event, ...]
    #: Proposal numbers of the stored population (in_population rows), oldest first.
    stored_population: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The outcome of re-deriving an experiment; ``ok`` when every check passed."""

    experiment: str
    events: int
    proposals: int
    completed: int
    failed: int
    mismatch: ReplayMismatch | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment, "ok": self.ok, "events": self.events, "proposals": self.proposals,
            "completed": self.completed, "failed": self.failed, "problems": list(self.problems),
        }


def _experiment(store: Store, name: str) -> ExperimentRecord:
    with store.transaction() as tx:
        exp = tx.experiment(name)
    if exp is None:
        raise NotFound(f"no experiment named {name!r}")
    return exp


def _stored_fingerprints(store: Store, exp_id: int, space: Space) -> tuple[dict[int, tuple[str, int | None]], list[str]]:
    """proposal seq -> (fingerprint re-computed from the stored genome JSON, parent seq)."""
    out: dict[int, tuple[str, int | None]] = {}
    problems: list[str] = []
    after = -1
    while True:
        with store.transaction() as tx:
            rows = tx.individuals(exp_id, after, PAGE)
        for r in rows:
            try:
                fp = space.parse(json.loads(r.genome_json)).fingerprint
            except (AmoebaError, ValueError) as exc:
                problems.append(f"proposal {r.proposal_seq}: stored genome does not parse ({exc})")
                fp = "unparseable"
            if fp != r.fingerprint:
                problems.append(f"proposal {r.proposal_seq}: stored genome hashes to {fp}, row says {r.fingerprint}")
            out[r.proposal_seq] = (fp, r.parent_seq)
        if len(rows) < PAGE:
            return out, problems
        after = rows[-1].proposal_seq


def read_log(store: Store, exp_id: int, upto: int | None = None) -> Iterator[EventRecord]:
    """The stored event log in order (up to and including event ``upto``), page by page."""
    after = 0
    while True:
        with store.transaction() as tx:
            page = tx.events(exp_id, after, PAGE)
        if upto is not None:
            page = [e for e in page if e.seq <= upto]
        yield from page
        if len(page) < PAGE or (upto is not None and page[-1].seq >= upto):
            return
        after = page[-1].seq


def replay_inputs(store: Store, name: str) -> tuple[ReplayInputs, list[str]]:
    """Read an experiment's log in order and turn it into replay events.

    Proposed events carry the fingerprint re-computed from the *stored genome* (so a tampered genome
    fails verification) and the stored parent; Completed events the logged objectives; final failures
    and rejections are Failed; a fork's seeded members are Seeded. Also returns the problems found while reading (gaps, broken rows).
    """
    exp = _experiment(store, name)
    spec = spec_from_json(exp.config_json)
    space, algorithm, _objective, _latency = experiment_context(spec)
    stored, problems = _stored_fingerprints(store, exp.id, space)
    events: list[Event] = []
    expected_seq = 1
    stopping = parse_stopping(spec.early_stopping)
    rule_state = StoppingState()
    must_stop: int | None = None  # the child the rule stopped at the previous event: a Stopped event is due
    for e in read_log(store, exp.id):
        if e.seq != expected_seq:
            problems.append(f"event log has a gap: expected event {expected_seq}, found {e.seq}")
        expected_seq = e.seq + 1
        payload = ev.decode(e.kind, e.data_json)
        seq = e.proposal_seq if e.proposal_seq is not None else -1
        # Every stop decision re-derives from the log before it (the rule's own fold), in log order.
        if must_stop is not None and not (isinstance(payload, ev.Stopped) and seq == must_stop):
            problems.append(f"event {e.seq}: the early-stopping rule stops proposal {must_stop} at the event "
                            "before, but the log does not stop it")
        if isinstance(payload, ev.Stopped) and must_stop != seq:
            problems.append(f"event {e.seq}: proposal {seq} is stopped, but the early-stopping rule re-derives no stop")
        rule_state, decision = stopping_step(stopping, rule_state, payload, e.proposal_seq)
        must_stop = seq if decision is not None and decision.stop else None
        if isinstance(payload, ev.Proposed):
            fp, parent = stored.get(seq, ("missing", None))
            if fp == "missing":
                problems.append(f"event {e.seq}: proposal {seq} has no stored individual")
            elif payload.fingerprint != fp:
                problems.append(f"event {e.seq}: logged fingerprint {payload.fingerprint} differs from the stored genome's {fp}")
            events.append(evolution.Proposed(seq, fp, parent, e.seq))
        elif isinstance(payload, ev.Completed):
            events.append(evolution.Completed(seq, payload.fitness, payload.accuracy, payload.latency_ms, e.seq))
        elif isinstance(payload, ev.Failed | ev.Rejected):
            events.append(evolution.Failed(seq, e.seq))
        elif isinstance(payload, ev.Stopped):
            # A stopped child that joined the population is a member of the fold like a completion.
            if payload.joined and payload.fitness is not None:
                events.append(evolution.Completed(seq, payload.fitness, payload.accuracy or 0.0, payload.latency_ms,
                                                  e.seq))
            else:
                events.append(evolution.Failed(seq, e.seq))
        elif isinstance(payload, ev.Seeded):
            # A forked experiment's first members: copied with their objectives, genome in the event.
            try:
                genome = space.parse(payload.genome)
            except AmoebaError as exc:
                problems.append(f"event {e.seq}: seeded member {seq} has no readable genome ({exc})")
                continue
            fp, _parent = stored.get(seq, ("missing", None))
            if genome.fingerprint != fp:
                problems.append(f"event {e.seq}: seeded genome {genome.fingerprint} differs from the stored {fp}")
            events.append(evolution.Seeded(seq, genome, payload.fitness, payload.accuracy or 0.0, payload.latency_ms,
                                           e.seq))
    if expected_seq - 1 != exp.event_seq:
        problems.append(f"event log ends at {expected_seq - 1} but the experiment counts {exp.event_seq} events")
    with store.transaction() as tx:
        population = tuple(r.proposal_seq for r in tx.population(exp.id))
    return ReplayInputs(spec, algorithm, space, tuple(events), population), problems


def verify_experiment(store: Store, name: str) -> ReplayReport:
    """Re-derive every proposal of ``name`` from its seed and log; check genomes, lineage and population."""
    inputs, problems = replay_inputs(store, name)
    state = fold(inputs.algorithm, inputs.spec.seed, inputs.events)
    if state.mismatch is not None:
        problems.append(state.mismatch.describe())
    else:
        derived = tuple(m.seq for m in state.population)
        if derived != inputs.stored_population:
            problems.append(f"stored population {list(inputs.stored_population)} differs from the replayed {list(derived)}")
    return ReplayReport(
        experiment=name,
        events=len(inputs.events),
        proposals=sum(isinstance(e, evolution.Proposed) for e in inputs.events),
        completed=state.completed,
        failed=state.failed,
        mismatch=state.mismatch,
        problems=tuple(problems),
    )


def progress_curves(store: Store, name: str) -> list[dict[str, Any]]:
    """Every progress report kept, in log order: ``{proposal_seq, attempt, epoch, accuracy, train_loss,
    seconds}`` (``attempt`` counts the leases of the individual, so a retried child's curves stay apart)."""
    exp = _experiment(store, name)
    attempts: dict[int, int] = {}
    out: list[dict[str, Any]] = []
    for e in read_log(store, exp.id):
        if e.proposal_seq is None or e.kind not in (ev.EventKind.LEASED, ev.EventKind.PROGRESS):
            continue
        payload = ev.decode(e.kind, e.data_json)
        if isinstance(payload, ev.Leased):
            attempts[e.proposal_seq] = payload.attempt
        elif isinstance(payload, ev.ProgressReported):
            out.append({"proposal_seq": e.proposal_seq, "attempt": attempts.get(e.proposal_seq, 1),
                        "epoch": payload.epoch, "accuracy": payload.accuracy, "train_loss": payload.train_loss,
                        "seconds": payload.seconds})
    return out
