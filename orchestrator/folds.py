"""What the service keeps in memory, all of it re-derivable from the database: each experiment's context
(its config built into a space, an algorithm, an objective), parsed genomes, the algorithm's state and the
early-stopping rule's state, each caught up with the database when another process wrote meanwhile."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from db.repository import ExperimentRecord, IndividualRecord, StoreTx
from domain import ExperimentSpec
from evolution import Algorithm, Member, Objective, early_stopping
from evolution.early_stopping import StoppingSettings, StoppingState, parse_stopping
from genome.base import Genome
from latency.settings import LatencySettings
from orchestrator.config import experiment_context, spec_from_json
from orchestrator.stopping import stopping_fold
from spaces import Space

#: Rows read per query when a state that is the whole history catches up.
CATCH_UP_PAGE = 1000
#: Parsed genomes kept (a child's genome is parsed once per process, not once per use).
GENOME_CACHE = 50_000
#: Seconds a transaction waits for another of this process to settle the state it committed (see Offer).
OFFER_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class Context:
    """What the immutable config of one experiment derives to."""

    spec: ExperimentSpec
    space: Space
    algorithm: Algorithm[Any]
    objective: Objective
    latency: LatencySettings
    #: True when the algorithm's state needs the whole history (``restore`` gives None).
    history_state: bool
    stopping: StoppingSettings


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The algorithm's state exactly as of ``ranked`` members folded in and ``proposals`` proposals, and the
    row ids of its population's members (the store flags them ``in_population``)."""

    ranked: int
    proposals: int
    state: Any
    ids: dict[int, int]


class Offer:
    """An algorithm state a transaction of this process is about to commit. Until it is settled, a
    transaction that finds the experiment at exactly its counters waits for it instead of reading the
    population again: the other transaction got the experiment's lock once this one's COMMIT was through,
    possibly before this thread had published what it committed."""

    __slots__ = ("committed", "done", "exp_id", "snapshot")

    def __init__(self, exp_id: int, snapshot: Snapshot) -> None:
        self.exp_id, self.snapshot = exp_id, snapshot
        self.committed = False
        self.done = threading.Event()


class Folds:
    """The service's caches. Reads happen inside the caller's transaction; ``keep_*`` are called once that
    transaction has committed, so a cache never holds what the database does not."""

    def __init__(self) -> None:
        self._contexts: dict[int, Context] = {}
        self._genomes: dict[str, Genome] = {}
        self._snapshots: dict[int, Snapshot] = {}
        self._stopping: dict[int, tuple[int, StoppingState]] = {}
        self._offers: dict[int, list[Offer]] = {}
        self._lock = threading.Lock()

    def context(self, exp: ExperimentRecord) -> Context:
        ctx = self._contexts.get(exp.id)
        if ctx is None:
            spec = spec_from_json(exp.config_json)
            space, algorithm, objective, latency = experiment_context(spec)
            ctx = Context(spec, space, algorithm, objective, latency, algorithm.restore(()) is None,
                          parse_stopping(spec.early_stopping))
            with self._lock:
                self._contexts[exp.id] = ctx
        return ctx

    def genome(self, ctx: Context, genome_json: str) -> Genome:
        genome = self._genomes.get(genome_json)
        if genome is None:
            genome = ctx.space.parse(json.loads(genome_json))
            with self._lock:
                if len(self._genomes) > GENOME_CACHE:
                    self._genomes.clear()
                self._genomes[genome_json] = genome
        return genome

    def member(self, ctx: Context, r: IndividualRecord) -> Member:
        return Member(r.proposal_seq, self.genome(ctx, r.genome_json), r.fitness or 0.0, r.accuracy or 0.0,
                      r.latency_ms)

    def snapshot(self, tx: StoreTx, ctx: Context, exp_id: int, ranked: int, proposals: int) -> Snapshot:
        """The algorithm's state as of the experiment's counters (read under its lock).

        Every member folded in (a completion, a stopped child that joins) bumps ``ranked`` and every proposal
        ``proposals``, so a cached state at the same counters is exact, also when other processes write to
        the same database. Otherwise a state that is the population alone is restored from the
        ``in_population`` rows (a bounded query), and a state that is the whole history folds the
        completions it has not seen, in completion order.
        """
        def exact(s: Snapshot | None) -> bool:
            return s is not None and s.ranked == ranked and (s.proposals == proposals or ctx.history_state)

        cached = self._snapshots.get(exp_id)
        if exact(cached):
            assert cached is not None
            return cached
        offered = next((o for o in self._offers.get(exp_id, ()) if exact(o.snapshot)), None)
        if offered is not None and offered.done.wait(OFFER_WAIT_S) and offered.committed:
            return offered.snapshot
        cached = self._snapshots.get(exp_id)
        if exact(cached):
            assert cached is not None
            return cached
        rows = tx.population(exp_id)
        ids = {r.proposal_seq: r.id for r in rows}
        if not ctx.history_state:
            state = ctx.algorithm.restore(tuple(self.member(ctx, r) for r in rows))
            return Snapshot(ranked, proposals, state, ids)
        start = cached if cached is not None and cached.ranked <= ranked else None
        state = start.state if start is not None else ctx.algorithm.initial()
        rank = start.ranked if start is not None else 0
        while rank < ranked:
            page = tx.completions(exp_id, rank, CATCH_UP_PAGE)
            if not page:
                break
            for r in page:
                state = ctx.algorithm.observe(state, self.member(ctx, r))
            rank = (page[-1].completion_rank or 0) + 1
        return Snapshot(ranked, proposals, state, ids)

    def _keep(self, exp_id: int, snapshot: Snapshot) -> None:
        old = self._snapshots.get(exp_id)
        # Transactions settle in any order; the cache keeps the latest committed state.
        if old is None or (snapshot.ranked, snapshot.proposals) >= (old.ranked, old.proposals):
            self._snapshots[exp_id] = snapshot

    def offer(self, exp_id: int, snapshot: Snapshot) -> Offer:
        """Announce a state the caller's transaction is about to commit; ``settle`` it once that is known."""
        offer = Offer(exp_id, snapshot)
        with self._lock:
            self._offers.setdefault(exp_id, []).append(offer)
        return offer

    def settle(self, offer: Offer, committed: bool) -> None:
        """The offer's transaction committed (the state becomes the cached one) or did not (it is dropped)."""
        if offer.done.is_set():
            return
        with self._lock:
            offers = self._offers.get(offer.exp_id, [])
            if offer in offers:
                offers.remove(offer)
            if committed:
                self._keep(offer.exp_id, offer.snapshot)
            offer.committed = committed
        offer.done.set()

    def stopping(self, tx: StoreTx, ctx: Context, exp: ExperimentRecord) -> StoppingState:
        """The early-stopping rule's state through the log as committed (``exp.event_seq``), caught up from
        the last state this process folded (the events it has not seen yet, in log order)."""
        cached = self._stopping.get(exp.id)
        seq, state = cached if cached is not None and cached[0] <= exp.event_seq else (0, StoppingState())
        while seq < exp.event_seq:
            page = tx.events(exp.id, seq, CATCH_UP_PAGE)
            if not page:
                break
            for e in page:
                state = stopping_fold(ctx.stopping, state, e.kind, e.proposal_seq, e.data_json)
            seq = page[-1].seq
        return state

    def keep_stopping(self, exp_id: int, seq: int, state: early_stopping.StoppingState) -> None:
        with self._lock:
            self._stopping[exp_id] = (seq, state)
