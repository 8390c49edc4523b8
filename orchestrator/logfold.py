"""An experiment's status rebuilt from its typed event log, one event at a time (``status --at``, fork).

The algorithm's state follows the same fold the service applies (``observe`` for every completion in
log order, ``propose`` for every proposal), fed with the logged objectives and the stored genomes, so
the population at any event is exactly the one the orchestrator had then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from db.repository import EventRecord
from domain import ExperimentSpec, ExperimentState, IndividualState
from domain import events as ev
from evolution import Member, rng_for
from genome.base import Genome
from orchestrator.config import experiment_context
from orchestrator.statusdoc import RATE_WINDOW, Entry, RunningView, StatusFacts, WorkerView, rate_per_hour

#: seq -> (genome JSON, parent seq, fingerprint) of the asked proposals.
GenomeLoader = Callable[[Sequence[int]], Mapping[int, tuple[str, int | None, str]]]


@dataclass(slots=True)
class _WorkerSeen:
    last_seen: float
    lease: int | None = None
    evaluations: int = 0


@dataclass(frozen=True, slots=True)
class _Done:
    seq: int
    fitness: float
    accuracy: float | None
    latency_ms: float | None
    at: float
    rank: int


@dataclass(slots=True)
class LogFold:
    """Fold events in order with ``apply``; read the state with ``population``, ``facts``."""

    spec: ExperimentSpec
    created_at: float
    genomes: GenomeLoader
    state: str = ExperimentState.RUNNING
    at: float = 0.0
    seq: int = 0
    proposals: int = 0
    completed: int = 0
    failed: int = 0
    rejected: int = 0
    done: list[_Done] = field(default_factory=list)
    best: _Done | None = None
    best_so_far: list[tuple[float, float]] = field(default_factory=list)
    holder: dict[int, str] = field(default_factory=dict)
    open_state: dict[int, str] = field(default_factory=dict)
    workers: dict[str, _WorkerSeen] = field(default_factory=dict)
    fingerprints: dict[int, str] = field(default_factory=dict)
    paused_reason: str | None = None
    last_failure: str | None = None
    consecutive_failures: int = 0
    stopped: int = 0
    ranked: int = 0
    progress: dict[int, tuple[int, float | None, float]] = field(default_factory=dict)
    _algorithm: Any = None
    _space: Any = None
    _algo_state: Any = None
    _parsed: dict[int, Genome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._space, self._algorithm, _objective, _latency = experiment_context(self.spec)
        self._algo_state = self._algorithm.initial()

    @property
    def population(self) -> tuple[Member, ...]:
        members: tuple[Member, ...] = self._algorithm.population(self._algo_state)
        return members

    def apply(self, events: Iterable[EventRecord]) -> None:
        page = list(events)
        # The genomes of this page's completions in one query (proposals re-derive theirs).
        wanted = [e.proposal_seq for e in page if e.kind in (ev.EventKind.COMPLETED, ev.EventKind.STOPPED)
                  and e.proposal_seq is not None and e.proposal_seq not in self._parsed]
        if wanted:
            for seq, (genome_json, _parent, _fp) in self.genomes(wanted).items():
                self._parsed[seq] = self._space.parse(genome_json)
        for e in page:
            self._one(e, ev.decode(e.kind, e.data_json))

    def _touch(self, worker: str, at: float) -> _WorkerSeen:
        seen = self.workers.setdefault(worker, _WorkerSeen(at))
        seen.last_seen = max(seen.last_seen, at)
        return seen

    def _complete(self, seq: int, genome: Genome, fitness: float, accuracy: float | None, latency: float | None,
                  at: float, completion: bool = True) -> None:
        done = _Done(seq, fitness, accuracy, latency, at, self.ranked)
        self.ranked += 1
        self.completed += int(completion)
        self.done.append(done)
        member = Member(seq, genome, fitness, accuracy or 0.0, latency)
        self._algo_state = self._algorithm.observe(self._algo_state, member)
        if self.best is None or fitness > self.best.fitness:
            self.best = done
            self.best_so_far.append((at - self.created_at, fitness))

    def _one(self, e: EventRecord, payload: ev.Payload) -> None:
        self.seq, self.at = e.seq, e.at
        seq = e.proposal_seq
        if isinstance(payload, ev.ExperimentDone):
            self.state = ExperimentState.DONE
        elif isinstance(payload, ev.Paused):
            self.state, self.paused_reason = ExperimentState.PAUSED, payload.reason
        elif isinstance(payload, ev.Resumed):
            self.state, self.paused_reason, self.consecutive_failures = ExperimentState.RUNNING, None, 0
        if seq is None:
            return
        if isinstance(payload, ev.Proposed):
            self.proposals += 1
            self.fingerprints[seq] = payload.fingerprint
            # Re-derive the proposal: the algorithm's state may change when it proposes (a tournament kill).
            _proposal, self._algo_state = self._algorithm.propose(self._algo_state, seq, rng_for(self.spec.seed, seq))
            return
        if isinstance(payload, ev.Seeded):
            self.proposals += 1
            self.fingerprints[seq] = payload.fingerprint
            self._complete(seq, self._space.parse(payload.genome), payload.fitness, payload.accuracy,
                           payload.latency_ms, e.at)
            return
        if isinstance(payload, ev.Leased):
            self.holder[seq] = payload.worker
            self.open_state[seq] = IndividualState.LEASED
            self._touch(payload.worker, e.at).lease = seq
            self.progress.pop(seq, None)  # a new attempt trains afresh
            return
        if isinstance(payload, ev.ProgressReported):
            self.progress[seq] = (payload.epoch, payload.accuracy, payload.seconds)
            return
        if not isinstance(payload, ev.Expired | ev.Released | ev.Requeued | ev.Completed | ev.Failed | ev.Rejected
                          | ev.Stopped):
            return
        self.progress.pop(seq, None)
        holder = self.holder.pop(seq, None)
        if holder is not None:
            # An expiry is the server noticing silence: it is not a sign of life from the worker.
            seen = self.workers[holder] if isinstance(payload, ev.Expired) else self._touch(holder, e.at)
            if seen.lease == seq:
                seen.lease = None
            if isinstance(payload, ev.Completed | ev.Rejected):
                seen.evaluations += 1
        if isinstance(payload, ev.Released | ev.Requeued) or (isinstance(payload, ev.Expired) and payload.requeued):
            self.open_state[seq] = IndividualState.QUEUED
        else:
            self.open_state.pop(seq, None)
        if isinstance(payload, ev.Completed):
            self._complete(seq, self._parsed[seq], payload.fitness, payload.accuracy, payload.latency_ms, e.at)
            self.consecutive_failures = 0
        elif isinstance(payload, ev.Stopped):
            self.stopped += 1
            if payload.joined and payload.fitness is not None:
                self._complete(seq, self._parsed[seq], payload.fitness, payload.accuracy, payload.latency_ms, e.at,
                               completion=False)
        elif isinstance(payload, ev.Failed | ev.Rejected):
            if isinstance(payload, ev.Failed):
                self.failed += 1
            else:
                self.rejected += 1
            self.consecutive_failures += 1
            self.last_failure = payload.reason

    def top(self, k: int) -> list[_Done]:
        return sorted(self.done, key=lambda d: (-d.fitness, d.seq))[:k]

    def facts(self, name: str, hosts: Mapping[str, str], top_k: int) -> StatusFacts:
        """The status facts as of the last event applied (summaries and parents from the stored genomes)."""
        wanted = [d.seq for d in self.top(top_k)] + ([self.best.seq] if self.best is not None else [])
        stored = self.genomes(wanted) if wanted else {}
        ranks = {d.seq: d.rank for d in self.done}

        def entry(d: _Done, summary: bool = True) -> Entry:
            genome_json, parent, fingerprint = stored.get(d.seq, ("", None, self.fingerprints.get(d.seq, "")))
            text = self._space.parse(genome_json).summary() if summary and genome_json else ""
            return Entry(d.seq, fingerprint or self.fingerprints.get(d.seq, ""), d.fitness, d.accuracy, d.latency_ms,
                         d.rank, parent, text)

        by_seq = {d.seq: d for d in self.done}
        rate = 0.0
        if len(self.done) >= 2:
            window = self.done[-(RATE_WINDOW + 1):]
            rate = rate_per_hour(window[0].rank, window[0].at, window[-1].rank, window[-1].at)
        spec = self.spec
        return StatusFacts(
            experiment=name, state=self.state, space=spec.space, algorithm=spec.algorithm, target=spec.evaluations,
            population_size=spec.population_size, completed=self.completed, failed=self.failed,
            rejected=self.rejected, proposals=self.proposals,
            queued=sum(1 for s in self.open_state.values() if s == IndividualState.QUEUED),
            leased=sum(1 for s in self.open_state.values() if s == IndividualState.LEASED),
            evaluations_per_hour=rate,
            best=entry(self.best) if self.best is not None else None,
            population=[Entry(m.seq, self.fingerprints.get(m.seq, ""), m.fitness, by_seq[m.seq].accuracy,
                              by_seq[m.seq].latency_ms, ranks[m.seq]) for m in self.population],
            top=[entry(d) for d in self.top(top_k)],
            best_so_far=self.best_so_far,
            workers=[WorkerView(w, hosts.get(w, ""), self.at - seen.last_seen <= spec.lease_timeout_s, seen.lease,
                                seen.last_seen, seen.evaluations) for w, seen in sorted(self.workers.items())],
            generated_at=self.at, seq=self.seq, paused_reason=self.paused_reason, last_failure=self.last_failure,
            consecutive_failures=self.consecutive_failures, stopped=self.stopped, ranked=self.ranked,
            running=[RunningView(s, self.holder.get(s), *self.progress.get(s, (None, None, None)))
                     for s, state in sorted(self.open_state.items()) if state == IndividualState.LEASED],
            front=[entry(d, summary=False) for d in self.done if d.accuracy is not None and d.latency_ms is not None],
        )
