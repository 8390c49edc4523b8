"""Replay an experiment from its database: the event log as ``evolution.replay`` events, and a verifier."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from db.repository import ExperimentRecord, Store
from evolution import Completed, EvolutionConfig, Failed, Proposed, ReplayMismatch, Seeded, build_objective, fold
from evolution.replay import Event
from genome import GenomeError, get_space
from mutations import Mutation, build_mutation
from orchestrator.config import spec_from_json
from orchestrator.domain import ExperimentSpec, NotFound

PAGE = 5000


@dataclass(frozen=True, slots=True)
class ReplayInputs:
    """What the pure core needs to re-derive an experiment: its config, space, mutation and events."""

    spec: ExperimentSpec
    config: EvolutionConfig
    space: Any
    mutation: Mutation
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


def _stored_fingerprints(store: Store, exp_id: int, space: Any) -> tuple[dict[int, tuple[str, int | None]], list[str]]:
    """proposal seq -> (fingerprint re-computed from the stored genome JSON, parent seq)."""
    out: dict[int, tuple[str, int | None]] = {}
    problems: list[str] = []
    after = -1
    while True:
        with store.transaction() as tx:
            rows = tx.individuals(exp_id, after, PAGE)
        for r in rows:
            try:
                fp = space.from_json(json.loads(r.genome_json)).fingerprint
            except (GenomeError, ValueError) as exc:
                problems.append(f"proposal {r.proposal_seq}: stored genome does not parse ({exc})")
                fp = "unparseable"
            if fp != r.fingerprint:
                problems.append(f"proposal {r.proposal_seq}: stored genome hashes to {fp}, row says {r.fingerprint}")
            out[r.proposal_seq] = (fp, r.parent_seq)
        if len(rows) < PAGE:
            return out, problems
        after = rows[-1].proposal_seq


def _log(store: Store, exp_id: int) -> Iterator[Any]:
    after = 0
    while True:
        with store.transaction() as tx:
            page = tx.events(exp_id, after, PAGE)
        yield from page
        if len(page) < PAGE:
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
    objective = build_objective(spec.objective)
    config = EvolutionConfig(spec.population_size, spec.sample_size, spec.algorithm, spec.seed,
                             "pareto" if objective.selection == "pareto" else "best")
    space = get_space(spec.space)
    mutation = build_mutation(spec.mutation, spec.space)
    stored, problems = _stored_fingerprints(store, exp.id, space)
    events: list[Event] = []
    expected_seq = 1
    for e in _log(store, exp.id):
        if e.seq != expected_seq:
            problems.append(f"event log has a gap: expected event {expected_seq}, found {e.seq}")
        expected_seq = e.seq + 1
        data = json.loads(e.data_json)
        if e.kind == "proposed":
            fp, parent = stored.get(e.proposal_seq, ("missing", None))
            if fp == "missing":
                problems.append(f"event {e.seq}: proposal {e.proposal_seq} has no stored individual")
            elif data.get("fingerprint") != fp:
                problems.append(f"event {e.seq}: logged fingerprint {data.get('fingerprint')} differs from the stored genome's {fp}")
            events.append(Proposed(e.proposal_seq, fp, parent, e.seq))
        elif e.kind == "completed":
            events.append(Completed(e.proposal_seq, data["fitness"], data["accuracy"], data.get("latency_ms"), e.seq))
        elif e.kind in ("failed", "rejected"):
            events.append(Failed(e.proposal_seq, e.seq))
        elif e.kind == "seeded":
            # A forked experiment's first members: copied with their objectives, genome in the event.
            try:
                genome = space.from_json(data["genome"])
            except (GenomeError, KeyError, ValueError) as exc:
                problems.append(f"event {e.seq}: seeded member {e.proposal_seq} has no readable genome ({exc})")
                continue
            fp, _parent = stored.get(e.proposal_seq, ("missing", None))
            if genome.fingerprint != fp:
                problems.append(f"event {e.seq}: seeded genome {genome.fingerprint} differs from the stored {fp}")
            events.append(Seeded(e.proposal_seq, genome, data["fitness"], data["accuracy"], data.get("latency_ms"), e.seq))
    if expected_seq - 1 != exp.event_seq:
        problems.append(f"event log ends at {expected_seq - 1} but the experiment counts {exp.event_seq} events")
    with store.transaction() as tx:
        population = tuple(r.proposal_seq for r in tx.population(exp.id))
    return ReplayInputs(spec, config, space, mutation, tuple(events), population), problems


def verify_experiment(store: Store, name: str) -> ReplayReport:
    """Re-derive every proposal of ``name`` from its seed and log; check genomes, lineage and population."""
    inputs, problems = replay_inputs(store, name)
    state = fold(inputs.config, inputs.space, inputs.mutation, inputs.events)
    if state.mismatch is not None:
        problems.append(state.mismatch.describe())
    else:
        derived = tuple(m.seq for m in state.population)
        if derived != inputs.stored_population:
            problems.append(f"stored population {list(inputs.stored_population)} differs from the replayed {list(derived)}")
    return ReplayReport(
        experiment=name,
        events=len(inputs.events),
        proposals=sum(isinstance(e, Proposed) for e in inputs.events),
        completed=state.completed,
        failed=state.failed,
        mismatch=state.mismatch,
        problems=tuple(problems),
    )
