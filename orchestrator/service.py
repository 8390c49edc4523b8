"""The orchestrator's use cases over the store: each call is one transaction, load -> pure step -> persist.

The rules (what a request may carry, who holds a lease, what an expiry becomes) are pure functions in
``orchestrator.rules``; the search itself is the experiment's algorithm plug-in; the status document
is written by ``orchestrator.statusdoc``. This module sequences them inside transactions.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from artifacts.store import ArtifactStore
from db.repository import (
    DuplicateName,
    ExperimentRecord,
    IndividualRecord,
    NewIndividual,
    Store,
    StoreTx,
    StoreUnavailable,
)
from domain import (
    AlreadyExists,
    Artifact,
    Experiment,
    ExperimentSpec,
    ExperimentState,
    FailedPrecondition,
    Individual,
    IndividualState,
    InvalidArgument,
    Lease,
    Metrics,
    NotFound,
    NoWork,
    Page,
    Progress,
    ProgressAnswer,
    Unavailable,
    WorkerInfo,
)
from domain import events as ev
from domain.errors import AmoebaError
from domain.status import StatusSnapshot
from evolution import Member, early_stopping, rng_for
from genome.base import canonical_json
from orchestrator import rules
from orchestrator.batch import EventBatch
from orchestrator.config import parse_spec, spec_to_dict, spec_to_json
from orchestrator.folds import Context, Folds, Offer, Snapshot
from orchestrator.statusdoc import (
    RATE_WINDOW,
    Entry,
    RunningView,
    StatusFacts,
    WorkerView,
    rate_per_hour,
    saved_seconds,
    status_document,
)

#: Overdue leases expired per call: bounded work per call; the rest go on the next calls.
EXPIRY_BATCH = 64
TOP_K = 10
#: Children in training the status document lists (with their last progress).
RUNNING_SHOWN = 100
#: Children over the latency limit rejected (before training) within one lease call before giving up.
MAX_REJECTIONS_PER_LEASE = 200


def training_seed(experiment_seed: int, proposal_seq: int) -> int:
    """The seed a worker trains proposal k with: like the proposal itself, a function of (seed, k) alone."""
    return rng_for(experiment_seed, proposal_seq, stream="train").getrandbits(31)


class OrchestratorService:
    """The use cases over a Store (see each method for its contract; errors are ``domain`` errors).

    Nothing essential lives in memory: every call reads what it needs inside its transaction, so several
    processes may serve one PostgreSQL database and a new process continues exactly. The caches are pure
    functions of immutable data (an experiment's config; a genome's JSON) or are keyed by the counters
    that change with the data they summarize (the algorithm's state, by completions and proposals).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        token_factory: Callable[[], str] = lambda: secrets.token_hex(16),
        retry_after_s: float = 1.0,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.store = store
        #: Where workers write trained weights (handed out with each lease); None: no artifacts are kept.
        self.artifacts = artifacts
        self._clock = clock
        self._token = token_factory
        self._retry_after_s = retry_after_s
        self._folds = Folds()
        self._local = threading.local()

    def now(self) -> float:
        """The service's clock (tests give it a fake one)."""
        return self._clock()

    # --- plumbing ------------------------------------------------------------------------------------

    def _run(self, fn: Callable[[StoreTx], Any]) -> Any:
        post: list[Callable[[], object]] = []
        offers: list[Offer] = []
        self._local.post, self._local.offers = post, offers
        committed = False
        try:
            with self.store.transaction() as tx:
                result = fn(tx)
            committed = True
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from None
        finally:
            self._local.post = self._local.offers = None
            for offer in offers:  # the algorithm states it committed are the cache's now (or dropped)
                self._folds.settle(offer, committed)
        for step in post:  # only once the transaction has committed
            step()
        return result

    def _after_commit(self, step: Callable[[], object]) -> None:
        self._local.post.append(step)

    def _remember(self, exp_id: int, snapshot: Snapshot) -> None:
        self._local.offers.append(self._folds.offer(exp_id, snapshot))

    def _experiment(self, exp: ExperimentRecord) -> Experiment:
        return Experiment(
            id=exp.id, spec=self._folds.context(exp).spec, state=exp.state, created_at=exp.created_at,
            proposals=exp.proposals, completed=exp.completed, failed=exp.failed, rejected=exp.rejected,
            paused_reason=exp.paused_reason,
        )

    def _lease_value(self, tx: StoreTx, ctx: Context, exp: ExperimentRecord, ind_id: int, seq: int, genome_json: str,
                     fingerprint: str, token: str, deadline: float, attempt: int, parent_seq: int | None,
                     mutation: str, seed: int, latency_ms: float | None, fits_on_chip: bool | None) -> Lease:
        artifact_uri, parent_artifact = "", None
        if self.artifacts is not None:
            artifact_uri = self.artifacts.uri_for(exp.name, seq, fingerprint)
            if parent_seq is not None:
                parent_artifact = self._kept_artifact(tx, exp.id, parent_seq)
        return Lease(
            experiment=exp.name, individual_id=ind_id, proposal_seq=seq, token=token, deadline=deadline,
            attempt=attempt, genome_json=genome_json, space=ctx.spec.space, seed=seed, training=ctx.spec.training,
            parent_seq=parent_seq, mutation=mutation, latency_ms=latency_ms, fits_on_chip=fits_on_chip,
            artifact_uri=artifact_uri, parent_artifact=parent_artifact,
        )

    @staticmethod
    def _kept_artifact(tx: StoreTx, exp_id: int, seq: int) -> Artifact | None:
        rows = tx.individuals(exp_id, seq - 1, 1)
        if not rows or rows[0].proposal_seq != seq:
            return None
        return artifact_of(rows[0])

    def _one_experiment(self, tx: StoreTx, name: str, *, lock: bool = False) -> ExperimentRecord:
        exp = tx.experiment(name, lock=lock)
        if exp is None:
            raise NotFound(f"no experiment named {name!r}")
        return exp

    # --- experiments ---------------------------------------------------------------------------------

    def create_experiment(self, spec: ExperimentSpec) -> Experiment:
        """Validate (fills the space's default mutation, normalizes the objective) and store a new experiment."""
        if not isinstance(spec, ExperimentSpec):
            raise InvalidArgument("an experiment spec is required")
        spec = parse_spec(spec_to_dict(spec))
        now = self._clock()

        def work(tx: StoreTx) -> Experiment:
            try:
                exp = tx.add_experiment(spec.name, spec_to_json(spec), spec.seed, now)
            except DuplicateName:
                raise AlreadyExists(f"experiment {spec.name!r} exists already") from None
            batch = EventBatch(exp)
            batch.event(ev.ExperimentCreated(spec_to_dict(spec)), now)
            batch.flush(tx, now)
            return self._experiment(exp)

        result: Experiment = self._run(work)
        return result

    def get_experiment(self, name: str) -> Experiment:
        name = rules.lookup_name(name)
        result: Experiment = self._run(lambda tx: self._experiment(self._one_experiment(tx, name)))
        return result

    def list_experiments(self) -> list[Experiment]:
        result: list[Experiment] = self._run(lambda tx: [self._experiment(e) for e in tx.experiments()])
        return result

    # --- leasing -------------------------------------------------------------------------------------

    def lease(self, worker: WorkerInfo, experiment: str | None) -> Lease | NoWork:
        """Requeued individuals (expired leases) first, then a new proposal; NoWork(done=True) after C."""
        if not isinstance(worker, WorkerInfo):
            raise InvalidArgument("a worker id (1-200 characters) is required")
        rules.worker_fields(worker.worker_id, worker.host, worker.evaluator)
        now = self._clock()
        if experiment:
            name = rules.lookup_name(experiment)
            result: Lease | NoWork = self._run(
                lambda tx: self._lease_one(tx, self._one_experiment(tx, name, lock=True), worker, now))
            return result
        # Any running experiment, oldest first; each is tried in its own short transaction.
        running = self._run(lambda tx: [e.id for e in tx.experiments(ExperimentState.RUNNING)])
        waiting = False
        for exp_id in running:
            def attempt(tx: StoreTx, exp_id: int = exp_id) -> Lease | NoWork:
                exp = tx.experiment_by_id(exp_id, lock=True)
                assert exp is not None
                return self._lease_one(tx, exp, worker, now)

            got = self._run(attempt)
            if isinstance(got, Lease):
                return got
            waiting = waiting or not got.done
        if waiting:
            return NoWork(False, self._retry_after_s, "every remaining individual is leased; ask again")
        return NoWork(True, 0.0, "no running experiment")

    def _lease_one(self, tx: StoreTx, exp: ExperimentRecord, worker: WorkerInfo, now: float,
                   batch: EventBatch | None = None, snapshot: Snapshot | None = None, completed: int = 0) -> Lease | NoWork:
        batch = batch or EventBatch(exp)
        result = self._lease_in(tx, batch, worker, now, snapshot)
        batch.flush(tx, now)
        tx.touch_worker(worker.worker_id, worker.host, worker.evaluator, now, exp.id,
                        result.individual_id if isinstance(result, Lease) else None, completed)
        return result

    def _lease_in(self, tx: StoreTx, batch: EventBatch, worker: WorkerInfo, now: float,
                  snapshot: Snapshot | None) -> Lease | NoWork:
        exp = batch.exp
        state = batch.get("state")
        if state == ExperimentState.DONE:
            return NoWork(True, 0.0, f"experiment {exp.name} is done")
        if state != ExperimentState.RUNNING:
            return NoWork(False, self._retry_after_s, f"experiment {exp.name} is {state}")
        ctx = self._folds.context(exp)
        spec = ctx.spec
        self._expire(tx, batch, ctx, now)
        deadline = now + spec.lease_timeout_s
        token = self._token()
        queued = tx.next_queued(exp.id)
        if queued is not None:
            attempt = queued.attempts + 1
            tx.update_individual(queued.id, {
                "state": IndividualState.LEASED, "attempts": attempt, "lease_owner": worker.worker_id,
                "lease_token": token, "lease_deadline": deadline, "leased_at": now,
            }, defer=True)
            batch.event(ev.Leased(worker.worker_id, attempt), now, queued.id, queued.proposal_seq)
            return self._lease_value(tx, ctx, exp, queued.id, queued.proposal_seq, queued.genome_json,
                                     queued.fingerprint, token, deadline, attempt, queued.parent_seq, queued.mutation,
                                     queued.training_seed, queued.latency_ms, queued.fits_on_chip)
        if not rules.may_propose(spec.evaluations, batch.get("proposals"), batch.get("completed"), batch.get("failed"),
                                 batch.get("rejected"), batch.get("stopped"), ctx.stopping.count_towards_budget):
            return NoWork(False, self._retry_after_s, "every remaining individual is leased; ask again")
        snap = snapshot or self._folds.snapshot(tx, ctx, exp.id, int(batch.get("ranked")), int(batch.get("proposals")))
        limit = ctx.objective.max_latency_ms
        for _ in range(MAX_REJECTIONS_PER_LEASE):
            seq = int(batch.get("proposals"))
            proposal, state = ctx.algorithm.propose(snap.state, seq, rng_for(spec.seed, seq))
            snap = self._after_proposal(tx, batch, ctx, snap, state, seq, now)
            genome_json = canonical_json(proposal.genome.to_json())
            fingerprint = proposal.genome.fingerprint
            seed = training_seed(spec.seed, seq)
            # The one place a child's latency is priced: the objective's network, when it is proposed. The
            # simulator is pure and takes milliseconds, so children over a hard limit are never trained.
            latency_ms, fits = ctx.space.price(proposal.genome, ctx.latency)
            if limit is None or latency_ms <= limit:
                break
            reason = f"estimated latency {latency_ms:.4g} ms over the objective's max_latency_ms {limit:g}"
            rejected_id = tx.add_individual(NewIndividual(
                experiment_id=exp.id, proposal_seq=seq, genome_json=genome_json, fingerprint=fingerprint,
                parent_seq=proposal.parent_seq, mutation=proposal.mutation[:200], training_seed=seed,
                state=IndividualState.REJECTED, created_at=now, latency_ms=latency_ms, fits_on_chip=fits,
            ))
            tx.update_individual(rejected_id, {"failure_reason": reason, "completed_at": now}, defer=True)
            batch.bump("proposals")
            batch.bump("rejected")
            batch.event(ev.Proposed(fingerprint, proposal.parent_seq, proposal.mutation), now, rejected_id, seq)
            batch.event(ev.Rejected(reason, latency_ms, before_training=True), now, rejected_id, seq)
            self._setback(batch, ctx, reason, now)
            if batch.get("state") != ExperimentState.RUNNING:
                self._remember(exp.id, Snapshot(snap.ranked, int(batch.get("proposals")), snap.state, snap.ids))
                return NoWork(False, self._retry_after_s, str(batch.get("paused_reason")))
        else:
            self._remember(exp.id, Snapshot(snap.ranked, int(batch.get("proposals")), snap.state, snap.ids))
            return NoWork(False, self._retry_after_s,
                          f"the last {MAX_REJECTIONS_PER_LEASE} children were all over max_latency_ms {limit:g}")
        ind_id = tx.add_individual(NewIndividual(
            experiment_id=exp.id, proposal_seq=seq, genome_json=genome_json, fingerprint=fingerprint,
            parent_seq=proposal.parent_seq, mutation=proposal.mutation[:200], training_seed=seed,
            state=IndividualState.LEASED, created_at=now, attempts=1, lease_owner=worker.worker_id, lease_token=token,
            lease_deadline=deadline, leased_at=now, latency_ms=latency_ms, fits_on_chip=fits,
        ))
        batch.bump("proposals")
        batch.event(ev.Proposed(fingerprint, proposal.parent_seq, proposal.mutation), now, ind_id, seq)
        batch.event(ev.Leased(worker.worker_id, 1), now, ind_id, seq)
        self._remember(exp.id, Snapshot(snap.ranked, int(batch.get("proposals")), snap.state, snap.ids))
        return self._lease_value(tx, ctx, exp, ind_id, seq, genome_json, fingerprint, token, deadline, 1,
                                 proposal.parent_seq, proposal.mutation, seed, latency_ms, fits)

    def _after_proposal(self, tx: StoreTx, batch: EventBatch, ctx: Context, snap: Snapshot, state: Any, seq: int,
                        now: float) -> Snapshot:
        """Apply what a proposal changed in the algorithm's state: members it removed leave the population."""
        if state is snap.state:
            return snap
        kept = {m.seq for m in ctx.algorithm.population(state)}
        ids = dict(snap.ids)
        for member in ctx.algorithm.population(snap.state):
            if member.seq not in kept and member.seq in ids:
                ind_id = ids.pop(member.seq)
                tx.update_individual(ind_id, {"in_population": False}, defer=True)
                batch.event(ev.Killed(seq), now, ind_id, member.seq)
        return Snapshot(snap.ranked, snap.proposals, state, ids)

    def _setback(self, batch: EventBatch, ctx: Context, reason: str, now: float) -> None:
        """Count a failure or rejection toward the circuit breaker; past the experiment's limit of them in a
        row without a completion, pause it (no more work is leased until someone resumes it)."""
        failures = batch.bump("consecutive_failures")
        batch.changes["last_failure"] = reason[:rules.MAX_REASON]
        limit = ctx.spec.max_consecutive_failures
        if limit and failures >= limit and batch.get("state") == ExperimentState.RUNNING:
            why = (f"paused after {failures} failures or rejections in a row without a completion; the last: "
                   f"{reason[:500]}; fix the cause, then `amoeba experiment resume {batch.exp.name}`")
            batch.changes.update(state=ExperimentState.PAUSED, paused_reason=why)
            batch.event(ev.Paused(why), now)

    def _expire(self, tx: StoreTx, batch: EventBatch, ctx: Context, now: float) -> int:
        """Requeue (or, after the last attempt, fail) this experiment's overdue leases; how many there were."""
        overdue = tx.overdue_leases(batch.exp.id, now, EXPIRY_BATCH)
        for ind in overdue:
            cleared = {"lease_token": None, "lease_deadline": None}
            if rules.expiry_outcome(ind.attempts, ctx.spec.max_attempts) == IndividualState.FAILED:
                reason = f"lease expired {ind.attempts} times (last holder {ind.lease_owner})"
                tx.update_individual(ind.id, {**cleared, "state": IndividualState.FAILED, "failure_reason": reason},
                                     defer=True)
                batch.bump("failed")
                batch.event(ev.Expired(ind.attempts, requeued=False), now, ind.id, ind.proposal_seq)
                batch.event(ev.Failed(reason), now, ind.id, ind.proposal_seq)
                self._setback(batch, ctx, reason, now)
            else:
                tx.update_individual(ind.id, {**cleared, "state": IndividualState.QUEUED, "lease_owner": None},
                                     defer=True)
                batch.event(ev.Expired(ind.attempts, requeued=True), now, ind.id, ind.proposal_seq)
        return len(overdue)

    def sweep(self) -> int:
        """Requeue the expired leases of every running experiment now, with no worker asking (a background
        sweeper calls this); returns how many leases expired."""
        now = self._clock()
        running = self._run(lambda tx: [e.id for e in tx.experiments(ExperimentState.RUNNING)])
        total = 0
        for exp_id in running:
            def work(tx: StoreTx, exp_id: int = exp_id) -> int:
                exp = tx.experiment_by_id(exp_id, lock=True)
                if exp is None or exp.state != ExperimentState.RUNNING:
                    return 0
                batch = EventBatch(exp)
                n = self._expire(tx, batch, self._folds.context(exp), now)
                batch.flush(tx, now)
                return n

            total += int(self._run(work))
        return total

    # --- the lease holder's calls --------------------------------------------------------------------

    def _held(self, tx: StoreTx, individual_id: int, token: str, now: float,
              action: str) -> tuple[IndividualRecord, ExperimentRecord]:
        """The individual and its (locked) experiment, after checking that ``token`` holds a live lease."""
        rules.check_holder(individual_id, token)
        # One read that locks the experiment row and the individual's (PostgreSQL: FOR UPDATE on both).
        found = tx.individual_and_experiment(individual_id, lock=True)
        if found is None:
            raise NotFound(f"no individual {individual_id}")
        ind, exp = found
        rules.check_lease(rules.Holding(ind.id, ind.proposal_seq, ind.state, ind.lease_token, ind.lease_deadline,
                                        exp.name, exp.state, exp.completed), token, now, action)
        return ind, exp

    def heartbeat(self, individual_id: int, token: str, worker_id: str) -> float:
        """Extend the lease; return the new deadline. FailedPrecondition when expired or re-issued."""
        rules.text("worker id", worker_id, rules.MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> float:
            ind, exp = self._held(tx, individual_id, token, now, "a heartbeat")
            deadline = now + self._folds.context(exp).spec.lease_timeout_s
            tx.update_individual(ind.id, {"lease_deadline": deadline}, defer=True)
            tx.touch_worker(worker_id or ind.lease_owner or "", "", "", now, exp.id, ind.id)
            return deadline

        result: float = self._run(work)
        return result

    def report(
        self, individual_id: int, token: str, worker_id: str, metrics: Metrics, lease_next: bool = False
    ) -> Lease | NoWork | None:
        """Record a completed evaluation; with ``lease_next``, lease the next work in the same round trip.

        The latency priced at proposal stands unless the worker measured one (``metrics.latency_ms``).
        """
        metrics = rules.validate_metrics(metrics)
        rules.text("worker id", worker_id, rules.MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> Lease | NoWork | None:
            ind, exp = self._held(tx, individual_id, token, now, "the report")
            ctx = self._folds.context(exp)
            latency_ms, fits = metrics.latency_ms, metrics.fits_on_chip
            if latency_ms is None:
                latency_ms, fits = ind.latency_ms, ind.fits_on_chip
            if latency_ms is None and ctx.objective.needs_latency:
                # A row proposed by an older version carries no priced latency: price it now, once.
                latency_ms, fits = ctx.space.price(self._folds.genome(ctx, ind.genome_json), ctx.latency)
            try:
                fitness = ctx.objective.fitness(metrics.accuracy, latency_ms, fits)
            except AmoebaError as exc:
                raise InvalidArgument(f"metrics do not fit the objective: {exc}") from None
            if not math.isfinite(fitness):
                raise InvalidArgument(f"the objective gives a non-finite fitness {fitness!r} for these metrics")
            batch = EventBatch(exp)
            worker = WorkerInfo(worker_id or ind.lease_owner or "")
            common = {
                "accuracy": metrics.accuracy, "latency_ms": latency_ms, "params": metrics.params,
                "mult_adds": metrics.mult_adds, "train_seconds": metrics.train_seconds,
                "compile_seconds": metrics.compile_seconds, "fits_on_chip": fits,
                "inherited_params": metrics.inherited_params, "initial_accuracy": metrics.initial_accuracy,
                "lease_token": None, "lease_deadline": None, "completed_at": now,
                **self._artifact_columns(exp, ind, metrics.artifact),
            }
            limit = ctx.objective.max_latency_ms
            snapshot: Snapshot | None = None
            if limit is not None and latency_ms is not None and latency_ms > limit:
                # A measured latency over the constraint: recorded, never in the population, not counted in C.
                reason = f"latency {latency_ms:g} ms over the objective's max_latency_ms {limit:g}"
                tx.update_individual(ind.id, {**common, "state": IndividualState.REJECTED, "failure_reason": reason},
                                     defer=True)
                batch.bump("rejected")
                batch.event(ev.Rejected(reason, latency_ms), now, ind.id, ind.proposal_seq)
                self._setback(batch, ctx, reason, now)
            else:
                snapshot = self._complete(tx, batch, ctx, ind, fitness, metrics.accuracy, latency_ms, common, now)
            if self.artifacts is not None:
                self._retain(tx, exp, ctx)
            if lease_next:
                return self._lease_one(tx, batch.exp, worker, now, batch, snapshot, completed=1)
            batch.flush(tx, now)
            tx.touch_worker(worker.worker_id, "", "", now, exp.id, None, completed=1)
            return None

        result: Lease | NoWork | None = self._run(work)
        return result

    def _artifact_columns(self, exp: ExperimentRecord, ind: IndividualRecord, artifact: Artifact | None) -> dict[str, Any]:
        """The columns of a reported artifact, after checking it is the folder this child's lease assigned
        (retention deletes what the rows name: a row must never name something the store does not own)."""
        if artifact is None:
            return {}
        if self.artifacts is None:
            raise InvalidArgument("this server keeps no artifacts (start it with --artifacts URL); report without one")
        expected = self.artifacts.uri_for(exp.name, ind.proposal_seq, ind.fingerprint)
        if artifact.uri != expected:
            raise InvalidArgument(f"artifact uri {artifact.uri[:60]!r} is not the one leased for individual "
                                  f"{ind.proposal_seq} ({expected[:60]!r})")
        return {"artifact_uri": artifact.uri, "artifact_sha256": artifact.sha256, "artifact_bytes": artifact.bytes,
                "artifact_state": "kept"}

    def _retain(self, tx: StoreTx, exp: ExperimentRecord, ctx: Context) -> None:
        """Retention: mark the artifacts no longer needed deleted in this transaction, remove their folders
        once it commits (a crash in between leaves an orphan folder, never a row naming a deleted one)."""
        keep = ctx.spec.artifacts.get("keep", 20)
        if keep == "all":
            return
        kept = tx.artifacts(exp.id)
        if not kept:
            return
        top = {r.proposal_seq for r in tx.top(exp.id, int(keep))}
        outstanding = tx.leased(exp.id, rules.MAX_PAGE_SIZE) + tx.individuals(
            exp.id, -1, rules.MAX_PAGE_SIZE, IndividualState.QUEUED)
        needed = {r.parent_seq for r in outstanding if r.parent_seq is not None}
        # The reported row's in_population flag was just written in this transaction; the read above sees it.
        doomed = set(rules.doomed_artifacts((rules.Kept(r.id, r.proposal_seq, r.in_population) for r in kept),
                                            top, needed))
        uris = []
        for r in kept:
            if r.id in doomed:
                tx.update_individual(r.id, {"artifact_state": "deleted"})
                if r.artifact_uri:
                    uris.append(r.artifact_uri)
        if uris:
            store = self.artifacts
            assert store is not None
            self._after_commit(lambda: store.discard(uris))

    def _enter(self, tx: StoreTx, batch: EventBatch, ctx: Context, ind: IndividualRecord, fitness: float,
               accuracy: float, latency_ms: float | None, row: dict[str, Any], now: float) -> Snapshot:
        """Fold ``ind`` into the algorithm as a member (a completion, or a stopped child that joins): its
        completion rank, the population flags of those who leave, and the best so far."""
        exp = batch.exp
        rank = int(batch.get("ranked"))
        before = self._folds.snapshot(tx, ctx, exp.id, rank, int(batch.get("proposals")))
        member = Member(ind.proposal_seq, self._folds.genome(ctx, ind.genome_json), fitness, accuracy, latency_ms)
        state = ctx.algorithm.observe(before.state, member)
        kept = {m.seq for m in ctx.algorithm.population(state)}
        ids = dict(before.ids)
        stays = member.seq in kept
        if stays:
            ids[member.seq] = ind.id
        for seq in [s for s in ids if s not in kept]:
            tx.update_individual(ids.pop(seq), {"in_population": False}, defer=True)
        best = batch.get("best_fitness")
        improved = best is None or fitness > best
        tx.update_individual(ind.id, {**row, "fitness": fitness, "completion_rank": rank, "in_population": stays,
                                      "improved": improved}, defer=True)
        if improved:
            batch.changes.update(best_fitness=fitness, best_individual_id=ind.id)
        batch.bump("ranked")
        snapshot = Snapshot(rank + 1, int(batch.get("proposals")), state, ids)
        self._remember(exp.id, snapshot)
        return snapshot

    def _complete(self, tx: StoreTx, batch: EventBatch, ctx: Context, ind: IndividualRecord, fitness: float,
                  accuracy: float, latency_ms: float | None, common: dict[str, Any], now: float) -> Snapshot:
        snapshot = self._enter(tx, batch, ctx, ind, fitness, accuracy, latency_ms,
                               {**common, "state": IndividualState.COMPLETED}, now)
        batch.bump("completed")
        batch.add("completed_train_seconds", float(common.get("train_seconds") or 0.0))
        if batch.get("consecutive_failures"):
            batch.changes["consecutive_failures"] = 0
        batch.event(ev.Completed(fitness, accuracy, latency_ms), now, ind.id, ind.proposal_seq)
        self._check_done(batch, ctx, now)
        return snapshot

    def _check_done(self, batch: EventBatch, ctx: Context, now: float) -> None:
        """C reached (completions, and stopped children when they count towards the budget): done."""
        if rules.budget_used(batch.get("completed"), batch.get("stopped"), ctx.stopping.count_towards_budget) \
                >= ctx.spec.evaluations and batch.get("state") != ExperimentState.DONE:
            batch.changes["state"] = ExperimentState.DONE
            batch.event(ev.ExperimentDone(int(batch.get("completed"))), now)

    # --- progress and early stopping -----------------------------------------------------------------

    def progress(self, individual_id: int, token: str, worker_id: str, progress: Progress) -> ProgressAnswer:
        """Keep a progress report of a leased child (it also extends the lease) and answer whether to go on.

        Only a report that moves the child on by an epoch is kept (a chatty worker writes nothing more);
        the experiment's early-stopping rule decides from the log as it stands, in log order, so replay
        re-derives the decision. A stopped child is recorded at once with its partial accuracy; the worker
        reports nothing more for it.
        """
        progress = rules.validate_progress(progress)
        rules.text("worker id", worker_id, rules.MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> ProgressAnswer:
            ind, exp = self._held(tx, individual_id, token, now, "the progress report")
            ctx = self._folds.context(exp)
            deadline = now + ctx.spec.lease_timeout_s
            if ind.epochs is not None and progress.epoch <= ind.epochs:
                tx.update_individual(ind.id, {"lease_deadline": deadline}, defer=True)
                return ProgressAnswer(False, "")
            batch = EventBatch(exp)
            tx.update_individual(ind.id, {"epochs": progress.epoch, "progress_accuracy": progress.accuracy,
                                          "progress_loss": progress.train_loss, "progress_seconds": progress.seconds,
                                          "lease_deadline": deadline}, defer=True)
            batch.event(ev.ProgressReported(progress.epoch, progress.accuracy, progress.train_loss, progress.seconds),
                        now, ind.id, ind.proposal_seq)
            answer = ProgressAnswer(False, "")
            if ctx.stopping.rule != "none":
                folded = self._folds.stopping(tx, ctx, exp)
                state, decision = early_stopping.progress(ctx.stopping, folded, ind.proposal_seq, progress.epoch,
                                                          progress.accuracy)
                if decision.stop:
                    best = max(state.running[ind.proposal_seq].values())
                    self._stop(tx, batch, ctx, ind, progress, best, decision.reason, now)
                    state = early_stopping.ended(state, ind.proposal_seq)
                    answer = ProgressAnswer(True, decision.reason)
                self._remember_stopping(exp.id, int(batch.get("event_seq")), state)
            batch.flush(tx, now)
            tx.touch_worker(worker_id or ind.lease_owner or "", "", "", now, exp.id, None if answer.stop else ind.id)
            return answer

        result: ProgressAnswer = self._run(work)
        return result

    def _remember_stopping(self, exp_id: int, seq: int, state: early_stopping.StoppingState) -> None:
        self._after_commit(lambda: self._folds.keep_stopping(exp_id, seq, state))

    def _stop(self, tx: StoreTx, batch: EventBatch, ctx: Context, ind: IndividualRecord, progress: Progress,
              accuracy: float, reason: str, now: float) -> None:
        """Record the child as stopped with its partial result; with ``join_population`` it is folded in."""
        row = {"state": IndividualState.STOPPED, "accuracy": accuracy, "train_seconds": progress.seconds,
               "lease_token": None, "lease_deadline": None, "completed_at": now, "failure_reason": reason[:2000]}
        fitness: float | None = None
        if ctx.stopping.join_population:
            fitness = ctx.objective.fitness(accuracy, ind.latency_ms, ind.fits_on_chip)
            self._enter(tx, batch, ctx, ind, fitness, accuracy, ind.latency_ms, row, now)
        else:
            tx.update_individual(ind.id, row, defer=True)
        batch.bump("stopped")
        batch.add("stopped_train_seconds", progress.seconds)
        batch.event(ev.Stopped(progress.epoch, accuracy, reason, fitness is not None, fitness, ind.latency_ms), now,
                    ind.id, ind.proposal_seq)
        self._check_done(batch, ctx, now)

    def fail(self, individual_id: int, token: str, worker_id: str, reason: str, retryable: bool = False) -> None:
        """Record a failed evaluation (never enters the population); retryable failures requeue."""
        reason = rules.failure_reason(reason)
        rules.text("worker id", worker_id, rules.MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> None:
            ind, exp = self._held(tx, individual_id, token, now, "the failure report")
            ctx = self._folds.context(exp)
            batch = EventBatch(exp)
            cleared = {"lease_token": None, "lease_deadline": None}
            if retryable and ind.attempts < ctx.spec.max_attempts:
                tx.update_individual(ind.id, {**cleared, "state": IndividualState.QUEUED, "lease_owner": None,
                                              "failure_reason": reason}, defer=True)
                batch.event(ev.Requeued(reason, ind.attempts), now, ind.id, ind.proposal_seq)
            else:
                tx.update_individual(ind.id, {**cleared, "state": IndividualState.FAILED, "failure_reason": reason,
                                              "completed_at": now}, defer=True)
                batch.bump("failed")
                batch.event(ev.Failed(reason, ind.attempts), now, ind.id, ind.proposal_seq)
                self._setback(batch, ctx, reason, now)
            batch.flush(tx, now)
            tx.touch_worker(worker_id or ind.lease_owner or "", "", "", now, exp.id, None)

        self._run(work)

    def release(self, individual_id: int, token: str, worker_id: str) -> None:
        """Give a lease back unfinished (worker shutting down): requeued at once without using an attempt."""
        rules.text("worker id", worker_id, rules.MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> None:
            ind, exp = self._held(tx, individual_id, token, now, "the release")
            # Giving work back is not a failed attempt: the next lease gets the same attempt number.
            tx.update_individual(ind.id, {"state": IndividualState.QUEUED, "attempts": max(0, ind.attempts - 1),
                                          "lease_owner": None, "lease_token": None, "lease_deadline": None},
                                 defer=True)
            batch = EventBatch(exp)
            batch.event(ev.Released(worker_id), now, ind.id, ind.proposal_seq)
            batch.flush(tx, now)
            tx.touch_worker(worker_id or ind.lease_owner or "", "", "", now, exp.id, None)

        self._run(work)

    # --- holding an experiment ----------------------------------------------------------------------------

    def pause(self, name: str, reason: str = "") -> Experiment:
        """Stop leasing new work of a running experiment (leases out now finish and report as usual)."""
        name = rules.lookup_name(name)
        why = rules.text("the pause reason", reason.strip() or "paused by a user", rules.MAX_REASON)
        now = self._clock()

        def work(tx: StoreTx) -> Experiment:
            exp = self._one_experiment(tx, name, lock=True)
            if exp.state != ExperimentState.RUNNING:
                raise FailedPrecondition(f"experiment {name} is {exp.state}, not running")
            batch = EventBatch(exp)
            batch.changes.update(state=ExperimentState.PAUSED, paused_reason=why)
            batch.event(ev.Paused(why), now)
            batch.flush(tx, now)
            return self._experiment(replace(exp, **batch.changes))

        result: Experiment = self._run(work)
        return result

    def resume(self, name: str) -> Experiment:
        """Lease work of a paused experiment again (the circuit breaker's count starts afresh)."""
        name = rules.lookup_name(name)
        now = self._clock()

        def work(tx: StoreTx) -> Experiment:
            exp = self._one_experiment(tx, name, lock=True)
            if exp.state != ExperimentState.PAUSED:
                raise FailedPrecondition(f"experiment {name} is {exp.state}, not paused")
            batch = EventBatch(exp)
            batch.changes.update(state=ExperimentState.RUNNING, paused_reason=None, consecutive_failures=0)
            batch.event(ev.Resumed(f"was: {exp.paused_reason or 'paused'}"[:rules.MAX_REASON]), now)
            batch.flush(tx, now)
            return self._experiment(replace(exp, **batch.changes))

        result: Experiment = self._run(work)
        return result

    # --- views ---------------------------------------------------------------------------------------

    def status(self, experiment: str, top_k: int = TOP_K) -> StatusSnapshot:
        """The status document of ``experiment`` now (schema in ``domain.status``)."""
        name = rules.lookup_name(experiment)
        now = self._clock()
        result: StatusSnapshot = self._run(lambda tx: status_document(
            self.status_facts(tx, self._one_experiment(tx, name), now, top_k)))
        return result

    def entry(self, ctx: Context, r: IndividualRecord, summary: bool = True) -> Entry:
        return Entry(r.proposal_seq, r.fingerprint, r.fitness or 0.0, r.accuracy, r.latency_ms, r.completion_rank or 0,
                     r.parent_seq, self._folds.genome(ctx, r.genome_json).summary() if summary else "")

    def status_facts(self, tx: StoreTx, exp: ExperimentRecord, now: float, top_k: int = TOP_K,
                     front: Sequence[Entry] = ()) -> StatusFacts:
        """What the status document says of ``exp``, read from the store (every query an index range)."""
        ctx = self._folds.context(exp)
        spec = ctx.spec
        last_rank = exp.ranked - 1
        best = tx.individual(exp.best_individual_id) if exp.best_individual_id is not None else None
        counts = tx.count_states(exp.id, (IndividualState.QUEUED, IndividualState.LEASED))
        rate = 0.0
        if exp.ranked >= 2:
            first_rank = max(0, last_rank - RATE_WINDOW)
            first, last = tx.by_completion_rank(exp.id, first_rank), tx.by_completion_rank(exp.id, last_rank)
            if first is not None and last is not None:
                rate = rate_per_hour(first_rank, first.completed_at, last_rank, last.completed_at)
        workers = []
        for w in tx.workers(exp.id):
            current = tx.individual(w.current_individual_id) if w.current_individual_id is not None else None
            holding = current is not None and current.state == IndividualState.LEASED and current.lease_owner == w.worker_id
            workers.append(WorkerView(w.worker_id, w.host, now - w.last_seen <= spec.lease_timeout_s,
                                      current.proposal_seq if holding and current is not None else None, w.last_seen,
                                      w.evaluations))
        return StatusFacts(
            experiment=exp.name, state=exp.state, space=spec.space, algorithm=spec.algorithm, target=spec.evaluations,
            population_size=spec.population_size, completed=exp.completed, failed=exp.failed, rejected=exp.rejected,
            proposals=exp.proposals, queued=counts[IndividualState.QUEUED], leased=counts[IndividualState.LEASED],
            evaluations_per_hour=rate,
            best=None if best is None or best.fitness is None else self.entry(ctx, best),
            population=[self.entry(ctx, r, summary=False) for r in tx.population(exp.id)],
            top=[self.entry(ctx, r) for r in tx.top(exp.id, top_k)],
            best_so_far=[(r.completed_at - exp.created_at, r.fitness) for r in tx.improvements(exp.id)
                         if r.completed_at is not None and r.fitness is not None],
            workers=workers, generated_at=now, seq=exp.event_seq, front=front, paused_reason=exp.paused_reason,
            last_failure=exp.last_failure, consecutive_failures=exp.consecutive_failures, stopped=exp.stopped,
            ranked=exp.ranked,
            saved_train_seconds=saved_seconds(exp.completed, exp.completed_train_seconds, exp.stopped,
                                              exp.stopped_train_seconds),
            running=[RunningView(r.proposal_seq, r.lease_owner, r.epochs, r.progress_accuracy, r.progress_seconds)
                     for r in tx.leased(exp.id, RUNNING_SHOWN)],
        )

    def list_individuals(self, experiment: str, page_size: int, page_token: str, state: str | None) -> Page:
        """A page of an experiment's individuals by proposal number (optionally in one state)."""
        size, after, wanted = rules.page_request(page_size, page_token, state)
        name = rules.lookup_name(experiment)

        def work(tx: StoreTx) -> Page:
            exp = self._one_experiment(tx, name)
            rows = tx.individuals(exp.id, after, size, wanted)
            token = str(rows[-1].proposal_seq) if len(rows) == size else ""
            return Page(tuple(to_individual(exp.name, r) for r in rows), token)

        result: Page = self._run(work)
        return result


def to_individual(experiment: str, r: IndividualRecord) -> Individual:
    """The domain view of a stored individual (no lease token: that stays a secret of the holder)."""
    return Individual(
        id=r.id, experiment=experiment, proposal_seq=r.proposal_seq, genome_json=r.genome_json,
        fingerprint=r.fingerprint, parent_seq=r.parent_seq, mutation=r.mutation, state=r.state,
        attempts=r.attempts, fitness=r.fitness, accuracy=r.accuracy, latency_ms=r.latency_ms, params=r.params,
        mult_adds=r.mult_adds, train_seconds=r.train_seconds, compile_seconds=r.compile_seconds,
        lease_owner=r.lease_owner, lease_deadline=r.lease_deadline, failure_reason=r.failure_reason,
        created_at=r.created_at, completed_at=r.completed_at, completion_rank=r.completion_rank,
        in_population=r.in_population, epochs=r.epochs, artifact=artifact_of(r),
        artifact_state=r.artifact_state or "", inherited_params=r.inherited_params,
        initial_accuracy=r.initial_accuracy,
    )


def artifact_of(r: IndividualRecord) -> Artifact | None:
    """The kept artifact of a stored individual, or None (none written, or deleted by retention)."""
    if r.artifact_state != "kept" or not r.artifact_uri or r.artifact_sha256 is None:
        return None
    return Artifact(r.artifact_uri, r.artifact_sha256, int(r.artifact_bytes or 0))


def open_service(url: str, **kwargs: Any) -> OrchestratorService:
    """A service over the store at ``url`` (checked to be at the migration head)."""
    from db import open_store

    return OrchestratorService(open_store(url), **kwargs)
