"""The orchestrator's use cases over the store: each call is one transaction, load -> pure step -> persist."""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from db.repository import (
    DuplicateName,
    EventRecord,
    ExperimentRecord,
    IndividualRecord,
    NewIndividual,
    Store,
    StoreTx,
    StoreUnavailable,
)
from evolution import EvolutionConfig, Member, Objective, ObjectiveError, build_objective, observe, propose, rng_for
from evolution.objectives import pareto_front_indices
from genome import get_space
from genome.base import canonical_json
from latency.settings import LatencySettings, latency_of, resolve_settings
from mutations import Mutation, build_mutation
from orchestrator.config import parse_spec, spec_from_json, spec_to_dict, spec_to_json
from orchestrator.domain import (
    AlreadyExists,
    Experiment,
    ExperimentSpec,
    FailedPrecondition,
    Individual,
    InvalidArgument,
    Lease,
    NotFound,
    NoWork,
    Page,
    ReportedMetrics,
    Unavailable,
    WorkerInfo,
)

#: Metric bounds beyond which a report is certainly malformed (units: ms, count, count, seconds).
MAX_LATENCY_MS = 1e7
MAX_PARAMS = 10**13
MAX_MULT_ADDS = 10**17
MAX_SECONDS = 1e8
#: Longest strings the store keeps (the sizes of the workers table's columns).
MAX_WORKER_ID, MAX_HOST, MAX_EVALUATOR = 200, 255, 64
#: Proposal numbers are 32-bit columns; a page token is one of them.
MAX_PROPOSAL_SEQ = 2**31 - 1
#: Overdue leases expired per lease call: bounded work per call; the rest go on the next calls.
EXPIRY_BATCH = 64
TOP_K = 10
#: Children over the latency limit rejected (before training) within one lease call before giving up.
MAX_REJECTIONS_PER_LEASE = 200
#: Completions over which status measures the recent rate.
RATE_WINDOW = 100
_TERMINAL = ("completed", "failed", "rejected")


@dataclass(frozen=True, slots=True)
class _Context:
    """What the immutable config of one experiment derives to (cached per experiment id)."""

    spec: ExperimentSpec
    config: EvolutionConfig
    space: Any
    mutation: Mutation
    objective: Objective
    latency: LatencySettings


@dataclass(frozen=True, slots=True)
class _Population:
    """An experiment's population after ``completed`` completions: members oldest first, seq -> row id."""

    completed: int
    members: tuple[Member, ...]
    ids: dict[int, int]


@dataclass(slots=True)
class _Batch:
    """The writes of one use case against one experiment row, flushed once at the end."""

    exp: ExperimentRecord
    changes: dict[str, Any] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)

    def get(self, key: str) -> Any:
        return self.changes.get(key, getattr(self.exp, key))

    def bump(self, key: str, by: int = 1) -> int:
        value = int(self.get(key)) + by
        self.changes[key] = value
        return value

    def event(self, kind: str, at: float, ind_id: int | None = None, seq: int | None = None, **data: Any) -> None:
        n = self.bump("event_seq")
        self.events.append(EventRecord(self.exp.id, n, kind, at, ind_id, seq, canonical_json(data) if data else "{}"))

    def flush(self, tx: StoreTx, now: float) -> None:
        if self.events:
            tx.append_events(self.events)
        if self.changes:
            self.changes["updated_at"] = now
            tx.update_experiment(self.exp.id, self.changes)


def _finite(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _count(name: str, value: Any, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise InvalidArgument(f"{name} must be an integer between 0 and {high:g}, got {value!r}")
    return value


def _text(what: str, value: Any, limit: int) -> str:
    """A string every backend stores verbatim: at most ``limit`` characters and no NUL (PostgreSQL's text
    cannot hold one), else InvalidArgument, before the database sees it."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string")
    if len(value) > limit:
        raise InvalidArgument(f"{what} must be at most {limit} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidArgument(f"{what} must not contain NUL characters")
    return value


def _lookup_name(name: Any) -> str:
    # No experiment can be named so (names are 1-200 of [A-Za-z0-9._-]): NotFound without a query,
    # which also keeps strings PostgreSQL cannot compare (NUL) away from the database.
    if not isinstance(name, str) or len(name) > 200 or "\x00" in name:
        shown = repr(name[:60]) + ("..." if len(name) > 60 else "") if isinstance(name, str) else repr(name)
        raise NotFound(f"no experiment named {shown}")
    return name


def validate_metrics(m: ReportedMetrics) -> ReportedMetrics:
    """The metrics, normalized; InvalidArgument for NaN, infinities, wrong types or values out of range."""
    if not isinstance(m, ReportedMetrics):
        raise InvalidArgument("metrics are missing")
    latency = None if m.latency_ms is None else _finite("latency_ms", m.latency_ms, 0.0, MAX_LATENCY_MS)
    if m.fits_on_chip is not None and not isinstance(m.fits_on_chip, bool):
        raise InvalidArgument(f"fits_on_chip must be a boolean, got {m.fits_on_chip!r}")
    return ReportedMetrics(
        accuracy=_finite("accuracy", m.accuracy, 0.0, 1.0),
        latency_ms=latency,
        params=_count("params", m.params, MAX_PARAMS),
        mult_adds=_count("mult_adds", m.mult_adds, MAX_MULT_ADDS),
        train_seconds=_finite("train_seconds", m.train_seconds, 0.0, MAX_SECONDS),
        compile_seconds=_finite("compile_seconds", m.compile_seconds, 0.0, MAX_SECONDS),
        fits_on_chip=m.fits_on_chip,
    )


def training_seed(experiment_seed: int, proposal_seq: int) -> int:
    """The seed a worker trains proposal k with: like the proposal itself, a function of (seed, k) alone."""
    return rng_for(experiment_seed, proposal_seq, stream="train").getrandbits(31)


class OrchestratorServiceImpl:
    """OrchestratorService over a Store (see orchestrator.domain for each use case's contract).

    Nothing essential lives in memory: every call reads what it needs inside its transaction, so
    several processes may serve one PostgreSQL database and a new process continues exactly. The
    only caches are pure functions of immutable data (an experiment's config; a genome's JSON).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        token_factory: Callable[[], str] = lambda: secrets.token_hex(16),
        retry_after_s: float = 1.0,
    ) -> None:
        self.store = store
        self._clock = clock
        self._token = token_factory
        self._retry_after_s = retry_after_s
        self._contexts: dict[int, _Context] = {}
        self._genomes: dict[str, Any] = {}
        self._populations: dict[int, _Population] = {}
        self._cache_lock = threading.Lock()
        self._local = threading.local()

    # --- helpers -------------------------------------------------------------------------------------

    def _context(self, exp: ExperimentRecord) -> _Context:
        ctx = self._contexts.get(exp.id)
        if ctx is None:
            spec = spec_from_json(exp.config_json)
            objective = build_objective(spec.objective)
            config = EvolutionConfig(
                population_size=spec.population_size,
                sample_size=spec.sample_size,
                algorithm=spec.algorithm,
                seed=spec.seed,
                selection="pareto" if objective.selection == "pareto" else "best",
            )
            ctx = _Context(spec, config, get_space(spec.space), build_mutation(spec.mutation, spec.space), objective,
                           resolve_settings(spec.space, dict(objective.latency)))
            with self._cache_lock:
                self._contexts[exp.id] = ctx
        return ctx

    def _genome(self, ctx: _Context, genome_json: str) -> Any:
        genome = self._genomes.get(genome_json)
        if genome is None:
            genome = ctx.space.from_json(json.loads(genome_json))
            with self._cache_lock:
                if len(self._genomes) > 50_000:
                    self._genomes.clear()
                self._genomes[genome_json] = genome
        return genome

    def _members(self, ctx: _Context, rows: Sequence[IndividualRecord]) -> tuple[Member, ...]:
        return tuple(
            Member(r.proposal_seq, self._genome(ctx, r.genome_json), r.fitness or 0.0, r.accuracy or 0.0, r.latency_ms)
            for r in rows
        )

    def _run(self, fn: Callable[[StoreTx], Any]) -> Any:
        post: list[Callable[[], None]] = []
        self._local.post = post
        try:
            with self.store.transaction() as tx:
                result = fn(tx)
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from None
        finally:
            self._local.post = None
        for step in post:  # only once the transaction has committed
            step()
        return result

    def _after_commit(self, step: Callable[[], None]) -> None:
        self._local.post.append(step)

    def _population(self, tx: StoreTx, ctx: _Context, exp_id: int, completed: int) -> _Population:
        """The population (oldest first) and its members' individual ids.

        The population changes only when an individual completes, and every completion bumps the
        experiment's ``completed`` counter (read under the experiment's lock), so a copy cached at the
        same count is exact, also when other processes write to the same database.
        """
        cached = self._populations.get(exp_id)
        if cached is not None and cached.completed == completed:
            return cached
        rows = tx.population(exp_id)
        return _Population(completed, self._members(ctx, rows), {r.proposal_seq: r.id for r in rows})

    def _remember_population(self, exp_id: int, population: _Population) -> None:
        def step() -> None:
            with self._cache_lock:
                self._populations[exp_id] = population

        self._after_commit(step)

    def _experiment(self, exp: ExperimentRecord) -> Experiment:
        return Experiment(
            id=exp.id,
            spec=self._context(exp).spec,
            state=exp.state,  # type: ignore[arg-type]
            created_at=exp.created_at,
            proposals=exp.proposals,
            completed=exp.completed,
            failed=exp.failed,
            rejected=exp.rejected,
        )

    def _lease_value(self, ctx: _Context, exp: ExperimentRecord, ind_id: int, seq: int, genome_json: str,
                     token: str, deadline: float, attempt: int, parent_seq: int | None, mutation: str,
                     seed: int) -> Lease:
        return Lease(
            experiment=exp.name, individual_id=ind_id, proposal_seq=seq, token=token, deadline=deadline,
            attempt=attempt, genome=json.loads(genome_json), space=ctx.spec.space, seed=seed,
            training=ctx.spec.training, parent_seq=parent_seq, mutation=mutation,
        )

    # --- experiments ---------------------------------------------------------------------------------

    def create_experiment(self, spec: ExperimentSpec) -> Experiment:
        if not isinstance(spec, ExperimentSpec):
            raise InvalidArgument("an experiment spec is required")
        spec = parse_spec(spec_to_dict(spec))  # validates and normalizes (default mutation, objective)
        now = self._clock()

        def work(tx: StoreTx) -> Experiment:
            try:
                exp = tx.add_experiment(spec.name, spec_to_json(spec), spec.seed, now)
            except DuplicateName:
                raise AlreadyExists(f"experiment {spec.name!r} exists already") from None
            batch = _Batch(exp)
            batch.event("experiment_created", now, config=spec_to_dict(spec))
            batch.flush(tx, now)
            return self._experiment(exp)

        result: Experiment = self._run(work)
        return result

    def get_experiment(self, name: str) -> Experiment:
        name = _lookup_name(name)

        def work(tx: StoreTx) -> Experiment:
            exp = tx.experiment(name)
            if exp is None:
                raise NotFound(f"no experiment named {name!r}")
            return self._experiment(exp)

        result: Experiment = self._run(work)
        return result

    def list_experiments(self) -> list[Experiment]:
        result: list[Experiment] = self._run(lambda tx: [self._experiment(e) for e in tx.experiments()])
        return result

    # --- leasing -------------------------------------------------------------------------------------

    def lease(self, worker: WorkerInfo, experiment: str | None) -> Lease | NoWork:
        if not isinstance(worker, WorkerInfo) or not worker.worker_id or len(worker.worker_id) > MAX_WORKER_ID:
            raise InvalidArgument("a worker id (1-200 characters) is required")
        _text("worker id", worker.worker_id, MAX_WORKER_ID)
        _text("worker host", worker.host, MAX_HOST)
        _text("worker evaluator", worker.evaluator, MAX_EVALUATOR)
        now = self._clock()
        if experiment:
            experiment = _lookup_name(experiment)

            def work(tx: StoreTx) -> Lease | NoWork:
                exp = tx.experiment(experiment, lock=True)
                if exp is None:
                    raise NotFound(f"no experiment named {experiment!r}")
                return self._lease_one(tx, exp, worker, now)

            result: Lease | NoWork = self._run(work)
            return result
        # Any running experiment, oldest first; each is tried in its own short transaction.
        running = self._run(lambda tx: [e.id for e in tx.experiments("running")])
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
                   batch: _Batch | None = None, population: tuple[Member, ...] | None = None,
                   completed: int = 0) -> Lease | NoWork:
        batch = batch or _Batch(exp)
        result = self._lease_in(tx, batch, worker, now, population)
        batch.flush(tx, now)
        tx.touch_worker(worker.worker_id, worker.host, worker.evaluator, now, exp.id,
                        result.individual_id if isinstance(result, Lease) else None, completed)
        return result

    def _lease_in(self, tx: StoreTx, batch: _Batch, worker: WorkerInfo, now: float,
                  population: tuple[Member, ...] | None) -> Lease | NoWork:
        exp = batch.exp
        state = batch.get("state")
        if state == "done":
            return NoWork(True, 0.0, f"experiment {exp.name} is done")
        if state != "running":
            return NoWork(False, self._retry_after_s, f"experiment {exp.name} is {state}")
        ctx = self._context(exp)
        spec = ctx.spec
        self._expire(tx, batch, ctx, now)
        deadline = now + spec.lease_timeout_s
        token = self._token()
        queued = tx.next_queued(exp.id)
        if queued is not None:
            attempt = queued.attempts + 1
            tx.update_individual(queued.id, {
                "state": "leased", "attempts": attempt, "lease_owner": worker.worker_id, "lease_token": token,
                "lease_deadline": deadline, "leased_at": now,
            })
            batch.event("leased", now, queued.id, queued.proposal_seq, worker=worker.worker_id, attempt=attempt)
            return self._lease_value(ctx, exp, queued.id, queued.proposal_seq, queued.genome_json, token, deadline,
                                     attempt, queued.parent_seq, queued.mutation, queued.training_seed)
        # Never more outstanding work than completions still needed: exactly C evaluations complete,
        # none is wasted; a failure frees a slot for a new proposal.
        outstanding = batch.get("proposals") - batch.get("completed") - batch.get("failed") - batch.get("rejected")
        if batch.get("completed") + outstanding >= spec.evaluations:
            return NoWork(False, self._retry_after_s, "every remaining individual is leased; ask again")
        if population is None:
            population = self._population(tx, ctx, exp.id, int(batch.get("completed"))).members
        limit = ctx.objective.max_latency_ms
        for _ in range(MAX_REJECTIONS_PER_LEASE):
            seq = int(batch.get("proposals"))
            proposal = propose(ctx.config, ctx.space, ctx.mutation, population, seq)
            genome_json = canonical_json(proposal.genome.to_json())
            fingerprint = proposal.genome.fingerprint
            seed = training_seed(spec.seed, seq)
            if limit is None:
                break
            # The latency simulator is pure and takes milliseconds: children over a hard limit are
            # recorded as rejected (counted, visible in status and replay) and never trained.
            latency_ms, fits = latency_of(proposal.genome, ctx.latency)
            if latency_ms <= limit:
                break
            reason = f"estimated latency {latency_ms:.4g} ms over the objective's max_latency_ms {limit:g}"
            rejected_id = tx.add_individual(NewIndividual(
                experiment_id=exp.id, proposal_seq=seq, genome_json=genome_json, fingerprint=fingerprint,
                parent_seq=proposal.parent_seq, mutation=proposal.mutation[:200], training_seed=seed,
                state="rejected", created_at=now,
            ))
            tx.update_individual(rejected_id, {"failure_reason": reason, "latency_ms": latency_ms,
                                               "fits_on_chip": fits, "completed_at": now})
            batch.bump("proposals")
            batch.bump("rejected")
            batch.event("proposed", now, rejected_id, seq, fingerprint=fingerprint,
                        parent_seq=proposal.parent_seq, mutation=proposal.mutation)
            batch.event("rejected", now, rejected_id, seq, reason=reason, latency_ms=latency_ms, before_training=True)
        else:
            return NoWork(False, self._retry_after_s,
                          f"the last {MAX_REJECTIONS_PER_LEASE} children were all over max_latency_ms {limit:g}")
        ind_id = tx.add_individual(NewIndividual(
            experiment_id=exp.id, proposal_seq=seq, genome_json=genome_json,
            fingerprint=fingerprint, parent_seq=proposal.parent_seq, mutation=proposal.mutation[:200],
            training_seed=seed, state="leased", created_at=now, attempts=1, lease_owner=worker.worker_id,
            lease_token=token, lease_deadline=deadline, leased_at=now,
        ))
        batch.bump("proposals")
        batch.event("proposed", now, ind_id, seq, fingerprint=fingerprint,
                    parent_seq=proposal.parent_seq, mutation=proposal.mutation)
        batch.event("leased", now, ind_id, seq, worker=worker.worker_id, attempt=1)
        return self._lease_value(ctx, exp, ind_id, seq, genome_json, token, deadline, 1, proposal.parent_seq,
                                 proposal.mutation, seed)

    def _expire(self, tx: StoreTx, batch: _Batch, ctx: _Context, now: float) -> None:
        for ind in tx.overdue_leases(batch.exp.id, now, EXPIRY_BATCH):
            if ind.attempts >= ctx.spec.max_attempts:
                reason = f"lease expired {ind.attempts} times (last holder {ind.lease_owner})"
                tx.update_individual(ind.id, {"state": "failed", "failure_reason": reason, "lease_token": None,
                                              "lease_deadline": None})
                batch.bump("failed")
                batch.event("expired", now, ind.id, ind.proposal_seq, attempt=ind.attempts, requeued=False)
                batch.event("failed", now, ind.id, ind.proposal_seq, reason=reason)
            else:
                tx.update_individual(ind.id, {"state": "queued", "lease_owner": None, "lease_token": None,
                                              "lease_deadline": None})
                batch.event("expired", now, ind.id, ind.proposal_seq, attempt=ind.attempts, requeued=True)

    # --- the lease holder's calls --------------------------------------------------------------------

    def _held(self, tx: StoreTx, individual_id: int, token: str, now: float,
              action: str) -> tuple[IndividualRecord, ExperimentRecord]:
        """The individual and its (locked) experiment, after checking that ``token`` holds a live lease."""
        if isinstance(individual_id, bool) or not isinstance(individual_id, int):
            raise InvalidArgument(f"individual id must be an integer, got {individual_id!r}")
        if not isinstance(token, str) or not token:
            raise InvalidArgument("a lease token is required")
        # One read that locks the experiment row and the individual's (PostgreSQL: FOR UPDATE on both).
        found = tx.individual_and_experiment(individual_id, lock=True)
        if found is None:
            raise NotFound(f"no individual {individual_id}")
        ind, exp = found
        if ind.state in _TERMINAL:
            raise AlreadyExists(f"individual {individual_id} (proposal {ind.proposal_seq}) is {ind.state} already")
        if exp.state == "done":
            raise FailedPrecondition(
                f"experiment {exp.name} is done ({exp.completed} evaluations); {action} of individual {individual_id} is not needed"
            )
        # Compared as bytes: compare_digest refuses str with non-ASCII characters (a forged token may have them).
        if ind.state != "leased" or not secrets.compare_digest((ind.lease_token or "").encode(), token.encode()):
            raise FailedPrecondition(f"the lease on individual {individual_id} is no longer yours (expired and re-issued)")
        if ind.lease_deadline is None or ind.lease_deadline < now:
            raise FailedPrecondition(f"the lease on individual {individual_id} expired")
        return ind, exp

    def heartbeat(self, individual_id: int, token: str, worker_id: str) -> float:
        _text("worker id", worker_id, MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> float:
            ind, exp = self._held(tx, individual_id, token, now, "a heartbeat")
            deadline = now + self._context(exp).spec.lease_timeout_s
            tx.update_individual(ind.id, {"lease_deadline": deadline})
            tx.touch_worker(worker_id or ind.lease_owner or "", "", "", now, exp.id, ind.id)
            return deadline

        result: float = self._run(work)
        return result

    def report(
        self, individual_id: int, token: str, worker_id: str, metrics: ReportedMetrics, lease_next: bool = False
    ) -> Lease | NoWork | None:
        metrics = validate_metrics(metrics)
        _text("worker id", worker_id, MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> Lease | NoWork | None:
            nonlocal metrics
            ind, exp = self._held(tx, individual_id, token, now, "the report")
            ctx = self._context(exp)
            if metrics.latency_ms is None and ctx.objective.needs_latency:
                # A worker that cannot estimate latency (an older build, a custom evaluator) still gets a
                # fitness: the orchestrator runs the same pure simulator on the stored genome.
                latency_ms, fits = latency_of(self._genome(ctx, ind.genome_json), ctx.latency)
                metrics = dataclasses.replace(metrics, latency_ms=latency_ms, fits_on_chip=fits)
            try:
                fitness = ctx.objective.fitness(metrics.accuracy, metrics.latency_ms, metrics.fits_on_chip)
            except ObjectiveError as exc:
                raise InvalidArgument(f"metrics do not fit the objective: {exc}") from None
            if not math.isfinite(fitness):
                raise InvalidArgument(f"the objective gives a non-finite fitness {fitness!r} for these metrics")
            batch = _Batch(exp)
            worker = WorkerInfo(worker_id or ind.lease_owner or "")
            common = {
                "accuracy": metrics.accuracy, "latency_ms": metrics.latency_ms, "params": metrics.params,
                "mult_adds": metrics.mult_adds, "train_seconds": metrics.train_seconds,
                "compile_seconds": metrics.compile_seconds, "fits_on_chip": metrics.fits_on_chip,
                "lease_token": None, "lease_deadline": None, "completed_at": now,
            }
            limit = ctx.objective.max_latency_ms
            population: tuple[Member, ...] | None = None
            if limit is not None and metrics.latency_ms is not None and metrics.latency_ms > limit:
                # Over the latency constraint: recorded, never in the population, does not count toward C.
                reason = f"latency {metrics.latency_ms:g} ms over the objective's max_latency_ms {limit:g}"
                tx.update_individual(ind.id, {**common, "state": "rejected", "failure_reason": reason})
                batch.bump("rejected")
                batch.event("rejected", now, ind.id, ind.proposal_seq, reason=reason, latency_ms=metrics.latency_ms)
            else:
                population = self._complete(tx, batch, ctx, ind, fitness, metrics, common, now)
            if lease_next:
                return self._lease_one(tx, batch.exp, worker, now, batch, population, completed=1)
            batch.flush(tx, now)
            tx.touch_worker(worker.worker_id, "", "", now, exp.id, None, completed=1)
            return None

        result: Lease | NoWork | None = self._run(work)
        return result

    def _complete(self, tx: StoreTx, batch: _Batch, ctx: _Context, ind: IndividualRecord, fitness: float,
                  metrics: ReportedMetrics, common: dict[str, Any], now: float) -> tuple[Member, ...]:
        exp = batch.exp
        rank = int(batch.get("completed"))
        before = self._population(tx, ctx, exp.id, rank)
        member = Member(ind.proposal_seq, self._genome(ctx, ind.genome_json), fitness, metrics.accuracy,
                        metrics.latency_ms)
        population, left = observe(ctx.config, before.members, member)
        ids = dict(before.ids)
        ids[member.seq] = ind.id
        if left is not None:
            del ids[left.seq]
        self._remember_population(exp.id, _Population(rank + 1, population, ids))
        best = batch.get("best_fitness")
        improved = best is None or fitness > best
        stays = left is None or left.seq != ind.proposal_seq
        tx.update_individual(ind.id, {**common, "state": "completed", "fitness": fitness, "completion_rank": rank,
                                      "in_population": stays, "improved": improved})
        if left is not None and left.seq != ind.proposal_seq:
            tx.update_individual(before.ids[left.seq], {"in_population": False})
        if improved:
            batch.changes.update(best_fitness=fitness, best_individual_id=ind.id)
        completed = batch.bump("completed")
        batch.event("completed", now, ind.id, ind.proposal_seq, fitness=fitness, accuracy=metrics.accuracy,
                    latency_ms=metrics.latency_ms)
        if completed >= ctx.spec.evaluations:
            batch.changes["state"] = "done"
            batch.event("experiment_done", now, completed=completed)
        return population

    def fail(self, individual_id: int, token: str, worker_id: str, reason: str, retryable: bool = False) -> None:
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidArgument("a failure needs a reason")
        reason = _text("the failure reason", reason.strip()[:2000], 2000)
        _text("worker id", worker_id, MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> None:
            ind, exp = self._held(tx, individual_id, token, now, "the failure report")
            ctx = self._context(exp)
            batch = _Batch(exp)
            cleared = {"lease_token": None, "lease_deadline": None}
            if retryable and ind.attempts < ctx.spec.max_attempts:
                tx.update_individual(ind.id, {**cleared, "state": "queued", "lease_owner": None,
                                              "failure_reason": reason})
                batch.event("requeued", now, ind.id, ind.proposal_seq, reason=reason, attempt=ind.attempts)
            else:
                tx.update_individual(ind.id, {**cleared, "state": "failed", "failure_reason": reason,
                                              "completed_at": now})
                batch.bump("failed")
                batch.event("failed", now, ind.id, ind.proposal_seq, reason=reason, attempt=ind.attempts)
            batch.flush(tx, now)
            tx.touch_worker(worker_id or ind.lease_owner or "", "", "", now, exp.id, None)

        self._run(work)

    def release(self, individual_id: int, token: str, worker_id: str) -> None:
        _text("worker id", worker_id, MAX_WORKER_ID)
        now = self._clock()

        def work(tx: StoreTx) -> None:
            ind, exp = self._held(tx, individual_id, token, now, "the release")
            # Giving work back is not a failed attempt: the next lease gets the same attempt number.
            tx.update_individual(ind.id, {"state": "queued", "attempts": max(0, ind.attempts - 1),
                                          "lease_owner": None, "lease_token": None, "lease_deadline": None})
            batch = _Batch(exp)
            batch.event("released", now, ind.id, ind.proposal_seq, worker=worker_id)
            batch.flush(tx, now)
            tx.touch_worker(worker_id or ind.lease_owner or "", "", "", now, exp.id, None)

        self._run(work)

    # --- views ---------------------------------------------------------------------------------------

    def status(self, experiment: str) -> dict[str, Any]:
        experiment = _lookup_name(experiment)
        now = self._clock()

        def work(tx: StoreTx) -> dict[str, Any]:
            exp = tx.experiment(experiment)
            if exp is None:
                raise NotFound(f"no experiment named {experiment!r}")
            return self._status(tx, exp, now)

        result: dict[str, Any] = self._run(work)
        return result

    def _status(self, tx: StoreTx, exp: ExperimentRecord, now: float) -> dict[str, Any]:
        ctx = self._context(exp)
        spec = ctx.spec
        last_rank = exp.completed - 1

        def summary(r: IndividualRecord) -> str:
            return str(self._genome(ctx, r.genome_json).summary())

        def age(r: IndividualRecord) -> int:
            return last_rank - (r.completion_rank or 0)

        best = tx.individual(exp.best_individual_id) if exp.best_individual_id is not None else None
        pop = tx.population(exp.id)
        fits = sorted(r.fitness for r in pop if r.fitness is not None)
        top = tx.top(exp.id, TOP_K)
        counts = tx.count_states(exp.id, ("queued", "leased"))
        rate = 0.0
        if exp.completed >= 2:
            first_rank = max(0, last_rank - RATE_WINDOW)
            first, last = tx.by_completion_rank(exp.id, first_rank), tx.by_completion_rank(exp.id, last_rank)
            if first and last and first.completed_at and last.completed_at and last.completed_at > first.completed_at:
                rate = (last_rank - first_rank) / (last.completed_at - first.completed_at) * 3600.0
        remaining = max(0, spec.evaluations - exp.completed)
        points = {r.id: r for r in (*pop, *top) if r.latency_ms is not None and r.accuracy is not None}
        ordered = sorted(points.values(), key=lambda r: r.proposal_seq)
        front = set(pareto_front_indices([(r.accuracy or 0.0, r.latency_ms) for r in ordered]))
        workers = []
        for w in tx.workers(exp.id):
            current = tx.individual(w.current_individual_id) if w.current_individual_id is not None else None
            holding = current is not None and current.state == "leased" and current.lease_owner == w.worker_id
            workers.append({
                "worker_id": w.worker_id,
                "host": w.host,
                "alive": now - w.last_seen <= spec.lease_timeout_s,
                "lease": current.proposal_seq if holding and current is not None else None,
                "last_heartbeat": w.last_seen,
                "evaluations": w.evaluations,
            })
        return {
            "schema": 1,
            "experiment": exp.name,
            "state": exp.state,
            "space": spec.space,
            "algorithm": spec.algorithm,
            "completed": exp.completed,
            "failed": exp.failed,
            "rejected": exp.rejected,
            "target": spec.evaluations,
            "proposals": exp.proposals,
            "queued": counts["queued"],
            "leased": counts["leased"],
            "evaluations_per_hour": rate,
            "eta_seconds": remaining / rate * 3600.0 if rate > 0 else None,
            "best": None if best is None or best.fitness is None else {
                "fingerprint": best.fingerprint,
                "accuracy": best.accuracy,
                "latency_ms": best.latency_ms,
                "fitness": best.fitness,
                "proposal_seq": best.proposal_seq,
                "summary": summary(best),
            },
            "population": {
                "size": len(pop),
                "target_size": spec.population_size,
                "best": fits[-1] if fits else None,
                "median": statistics.median(fits) if fits else None,
                "worst": fits[0] if fits else None,
                "ages": [age(r) for r in pop],
            },
            "best_so_far": [[r.completed_at - exp.created_at, r.fitness] for r in tx.improvements(exp.id)
                            if r.completed_at is not None and r.fitness is not None],
            "pareto": [
                {"fingerprint": r.fingerprint, "accuracy": r.accuracy, "latency_ms": r.latency_ms, "on_front": i in front}
                for i, r in enumerate(ordered)
            ],
            "top": [
                {"proposal_seq": r.proposal_seq, "fingerprint": r.fingerprint, "fitness": r.fitness,
                 "accuracy": r.accuracy, "latency_ms": r.latency_ms, "summary": summary(r),
                 "parent_seq": r.parent_seq, "age": age(r)}
                for r in top
            ],
            "workers": workers,
            "generated_at": now,
            "seq": exp.event_seq,
        }

    def list_individuals(self, experiment: str, page_size: int, page_token: str, state: str | None) -> Page:
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 0 <= page_size <= 10_000:
            raise InvalidArgument(f"page_size must be between 0 and 10000, got {page_size!r}")
        size = page_size or 100
        if state is not None and state not in ("queued", "leased", *_TERMINAL):
            raise InvalidArgument(f"state must be queued, leased, completed, failed or rejected, got {state!r}")
        experiment = _lookup_name(experiment)
        try:
            after = int(page_token) if page_token else -1
        except ValueError:
            after = None
        if after is None or not -1 <= after <= MAX_PROPOSAL_SEQ:
            raise InvalidArgument(f"malformed page token {page_token[:40]!r}")

        def work(tx: StoreTx) -> Page:
            exp = tx.experiment(experiment)
            if exp is None:
                raise NotFound(f"no experiment named {experiment!r}")
            rows = tx.individuals(exp.id, after, size, state)
            token = str(rows[-1].proposal_seq) if len(rows) == size else ""
            return Page(tuple(to_individual(exp.name, r) for r in rows), token)

        result: Page = self._run(work)
        return result


def to_individual(experiment: str, r: IndividualRecord) -> Individual:
    """The domain view of a stored individual (no lease token: that stays a secret of the holder)."""
    return Individual(
        id=r.id, experiment=experiment, proposal_seq=r.proposal_seq, genome=json.loads(r.genome_json),
        fingerprint=r.fingerprint, parent_seq=r.parent_seq, mutation=r.mutation, state=r.state,  # type: ignore[arg-type]
        attempts=r.attempts, fitness=r.fitness, accuracy=r.accuracy, latency_ms=r.latency_ms, params=r.params,
        mult_adds=r.mult_adds, train_seconds=r.train_seconds, compile_seconds=r.compile_seconds,
        lease_owner=r.lease_owner, lease_deadline=r.lease_deadline, failure_reason=r.failure_reason,
        created_at=r.created_at, completed_at=r.completed_at, completion_rank=r.completion_rank,
        in_population=r.in_population,
    )


def open_service(url: str, **kwargs: Any) -> OrchestratorServiceImpl:
    """A service over the store at ``url`` (checked to be at the migration head)."""
    from db import open_store

    return OrchestratorServiceImpl(open_store(url), **kwargs)
