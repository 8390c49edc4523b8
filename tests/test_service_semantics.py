"""Service use cases on every backend (the in-memory fake, SQLite and PostgreSQL): leasing, evolution,
expiry, bad reports, done, restart, replay."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

import db
from db import Store
from db.engine import make_engine
from domain import (
    AlreadyExists,
    ExperimentSpec,
    FailedPrecondition,
    InvalidArgument,
    Lease,
    Metrics,
    NotFound,
    NoWork,
    WorkerInfo,
)
from orchestrator.replay import verify_experiment
from orchestrator.service import OrchestratorService
from tests import builders
from tests.builders import Clock

pytestmark = pytest.mark.service

#: The experiment these tests run unless they say otherwise (config file keys).
SETTINGS: dict[str, Any] = {"population": 5, "sample": 2, "evaluations": 30, "seed": 3, "lease_timeout_s": 10.0,
                            "max_attempts": 2}


def accuracy_of(lease: Lease) -> float:
    """A deterministic stand-in for training: a pseudo-accuracy from the genome's canonical JSON."""
    digest = json.dumps(json.loads(lease.genome_json), sort_keys=True)
    return (sum(ord(c) * (i + 1) for i, c in enumerate(digest)) % 1000) / 1000.0


def spec(name: str = "exp", **kw: Any) -> ExperimentSpec:
    return builders.spec(name, **{**SETTINGS, **kw})


@pytest.fixture
def clock() -> Clock:
    """A clock that stands still until a test moves it (``clock.now += ...``)."""
    return Clock(1_000_000.0, step=0.0)


@pytest.fixture
def svc(store: Store, clock: Clock) -> OrchestratorService:
    """The service over each backend in turn (``store``/``store_url`` of tests/conftest.py)."""
    return OrchestratorService(store, clock=clock)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    """A migrated SQL database (tests that edit rows behind the service's back with SQL)."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


W1, W2 = WorkerInfo("w1", "host-a", "table"), WorkerInfo("w2", "host-b", "table")


def lease(svc: OrchestratorService, worker: WorkerInfo = W1, exp: str | None = "exp") -> Lease:
    got = svc.lease(worker, exp)
    assert isinstance(got, Lease), got
    return got


def report(svc: OrchestratorService, le: Lease, worker: str = "w1", lease_next: bool = False, **metrics: Any) -> Any:
    return svc.report(le.individual_id, le.token, worker, Metrics(accuracy=accuracy_of(le), **metrics),
                      lease_next=lease_next)


def snapshot(store: Store) -> Any:
    """Everything the store holds, through the port (so it works on every backend)."""
    with store.transaction() as tx:
        exps = tx.experiments()
        return (
            exps,
            [tx.individuals(e.id, -1, 10_000) for e in exps],
            [tx.events(e.id, 0, 100_000) for e in exps],
            tx.workers(),
        )


def population_seqs(svc: OrchestratorService, exp: str = "exp") -> list[int]:
    page = svc.list_individuals(exp, 10_000, "", "completed")
    members = sorted((i for i in page.individuals if i.in_population), key=lambda i: i.completion_rank or 0)
    return [i.proposal_seq for i in members]


def test_random_phase_then_evolution_and_population_is_last_p(svc: OrchestratorService) -> None:
    svc.create_experiment(spec())
    completed_order: list[int] = []
    le = lease(svc)
    while isinstance(le, Lease):
        if le.proposal_seq < 5:
            assert le.parent_seq is None and le.mutation == "random"
        else:
            # the parent is a member of the population the proposal saw
            assert le.parent_seq in completed_order[-5:], (le.proposal_seq, le.parent_seq)
            assert le.mutation != "random"
        assert le.attempt == 1 and le.space == "nb201" and len(le.token) == 32
        completed_order.append(le.proposal_seq)
        assert population_seqs(svc) == completed_order[:-1][-5:]
        le = report(svc, le, lease_next=True)
    assert le == NoWork(True, 0.0, "experiment exp is done")
    assert population_seqs(svc) == completed_order[-5:]
    exp = svc.get_experiment("exp")
    assert (exp.state, exp.completed, exp.proposals, exp.failed) == ("done", 30, 30, 0)
    assert svc.lease(W1, "exp") == NoWork(True, 0.0, "experiment exp is done")
    assert verify_experiment(svc.store, "exp").ok


def test_out_of_order_completions_with_failures_and_expiry_replay_exactly(
    svc: OrchestratorService, clock: Clock
) -> None:
    svc.create_experiment(spec(evaluations=40, population=6, sample=3))
    rng = random.Random(5)
    held: list[Lease] = []
    completion: list[int] = []
    while svc.get_experiment("exp").state == "running":
        while len(held) < 4:
            got = svc.lease(WorkerInfo(f"w{len(held)}"), "exp")
            if not isinstance(got, Lease):
                break
            held.append(got)
        le = held.pop(rng.randrange(len(held)))
        roll = rng.random()
        if roll < 0.1:
            svc.fail(le.individual_id, le.token, "w", "out of memory")
        elif roll < 0.15:
            clock.now += 11.0  # every held lease expires; they come back with attempt + 1
            held.clear()
        else:
            report(svc, le)
            completion.append(le.proposal_seq)
    assert population_seqs(svc) == completion[-6:]
    result = verify_experiment(svc.store, "exp")
    assert result.ok, result.problems
    assert result.completed == 40 and result.proposals == svc.get_experiment("exp").proposals


def test_lease_expiry_requeues_with_attempt_plus_one_then_fails(svc: OrchestratorService, clock: Clock) -> None:
    svc.create_experiment(spec(max_attempts=2))
    first = lease(svc, W1)
    clock.now += 10.5
    again = lease(svc, W2)
    assert (again.individual_id, again.proposal_seq, again.attempt) == (first.individual_id, 0, 2)
    assert again.token != first.token and again.genome_json == first.genome_json and again.seed == first.seed
    with pytest.raises(FailedPrecondition, match="no longer yours"):
        report(svc, first)
    clock.now += 10.5
    third = lease(svc, W1)
    assert third.proposal_seq == 1  # proposal 0 used its 2 attempts
    (failed,) = svc.list_individuals("exp", 10, "", "failed").individuals
    assert failed.proposal_seq == 0 and failed.attempts == 2 and "expired 2 times" in (failed.failure_reason or "")
    assert svc.get_experiment("exp").failed == 1
    with svc.store.transaction() as tx:
        exp = tx.experiment("exp")
        assert exp is not None
        kinds = [e.kind for e in tx.events(exp.id)]
    assert kinds == ["experiment_created", "proposed", "leased", "expired", "leased", "expired", "failed", "proposed",
                     "leased"]


def test_heartbeat_extends_and_release_requeues_without_using_an_attempt(
    svc: OrchestratorService, clock: Clock
) -> None:
    svc.create_experiment(spec())
    le = lease(svc)
    clock.now += 8.0
    deadline = svc.heartbeat(le.individual_id, le.token, "w1")
    assert deadline == clock.now + 10.0
    clock.now += 8.0  # past the first deadline, within the extended one
    assert isinstance(lease(svc, W2), Lease)  # the sweep does not take it back
    svc.release(le.individual_id, le.token, "w1")
    back = lease(svc, W1)
    assert (back.individual_id, back.attempt) == (le.individual_id, 1)
    with pytest.raises(FailedPrecondition):
        svc.heartbeat(le.individual_id, le.token, "w1")


def test_retryable_failure_requeues_and_final_failure_never_joins(svc: OrchestratorService) -> None:
    svc.create_experiment(spec(max_attempts=2))
    le = lease(svc)
    svc.fail(le.individual_id, le.token, "w1", "preempted", retryable=True)
    again = lease(svc)
    assert (again.individual_id, again.attempt) == (le.individual_id, 2)
    svc.fail(again.individual_id, again.token, "w1", "preempted", retryable=True)  # attempts used up: final
    (ind,) = svc.list_individuals("exp", 1, "", None).individuals
    assert (ind.state, ind.failure_reason, ind.in_population) == ("failed", "preempted", False)
    assert svc.get_experiment("exp").failed == 1


def test_bad_reports_get_the_right_error_and_change_nothing(svc: OrchestratorService, clock: Clock) -> None:
    svc.create_experiment(spec(max_attempts=3))
    le = lease(svc)
    done = lease(svc, W2)
    report(svc, done, "w2")
    expired = lease(svc, W2)
    before = snapshot(svc.store)
    good = Metrics(accuracy=0.5)
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: svc.report(10**9, le.token, "w1", good), NotFound, "no individual"),
        (lambda: svc.report(le.individual_id, "f" * 32, "w1", good), FailedPrecondition, "no longer yours"),
        (lambda: svc.report(le.individual_id, "", "w1", good), InvalidArgument, "token"),
        (lambda: svc.report(done.individual_id, done.token, "w2", good), AlreadyExists, "completed already"),
        (lambda: svc.fail(done.individual_id, done.token, "w2", "late"), AlreadyExists, "completed already"),
        (lambda: svc.report(le.individual_id, le.token, "w1", Metrics(accuracy=math.nan)), InvalidArgument,
         "accuracy"),
        (lambda: svc.report(le.individual_id, le.token, "w1", Metrics(accuracy=1.5)), InvalidArgument, "accuracy"),
        (lambda: svc.report(le.individual_id, le.token, "w1", Metrics(accuracy=0.5, latency_ms=-1.0)),
         InvalidArgument, "latency"),
        (lambda: svc.report(le.individual_id, le.token, "w1", Metrics(accuracy=0.5, train_seconds=math.inf)),
         InvalidArgument, "train_seconds"),
        (lambda: svc.report(le.individual_id, le.token, "w1", Metrics(accuracy=0.5, params=-3)),
         InvalidArgument, "params"),
        (lambda: svc.report(le.individual_id, le.token, "w1", Metrics(accuracy=0.5, mult_adds=10**30)),
         InvalidArgument, "mult_adds"),
        (lambda: svc.report(le.individual_id, le.token, "w1", Metrics(accuracy=True)), InvalidArgument,
         "accuracy"),
        (lambda: svc.fail(le.individual_id, le.token, "w1", "  "), InvalidArgument, "reason"),
        (lambda: svc.heartbeat(le.individual_id, "x", "w1"), FailedPrecondition, "no longer yours"),
        (lambda: svc.release(le.individual_id, "x", "w1"), FailedPrecondition, "no longer yours"),
        (lambda: svc.lease(WorkerInfo(""), "exp"), InvalidArgument, "worker id"),
        (lambda: svc.lease(W1, "nope"), NotFound, "nope"),
        (lambda: svc.list_individuals("exp", 10, "zz", None), InvalidArgument, "page token"),
        (lambda: svc.status("nope"), NotFound, "nope"),
    ]
    for call, error, text in cases:
        with pytest.raises(error, match=text):
            call()
        assert snapshot(svc.store) == before, text
    clock.now += 10.5  # past every deadline, before any sweep ran
    with pytest.raises(FailedPrecondition, match="expired"):
        report(svc, expired, "w2")
    assert snapshot(svc.store) == before


def test_done_after_c_and_work_is_capped_at_c(svc: OrchestratorService) -> None:
    svc.create_experiment(spec(evaluations=3))
    a, b, c = lease(svc), lease(svc, W2), lease(svc)
    wait = svc.lease(W2, "exp")
    assert isinstance(wait, NoWork) and not wait.done  # three outstanding cover C = 3
    svc.fail(a.individual_id, a.token, "w1", "nan loss")
    d = lease(svc, W2)  # the failure freed a slot
    for le in (b, c, d):
        report(svc, le)
    assert svc.get_experiment("exp").state == "done"
    assert svc.lease(W1, None) == NoWork(True, 0.0, "no running experiment")
    st = svc.status("exp")
    assert (st["completed"], st["failed"], st["target"], st["state"], st["leased"], st["queued"]) == (3, 1, 3, "done",
                                                                                                      0, 0)


def test_several_experiments_share_the_store(svc: OrchestratorService) -> None:
    svc.create_experiment(spec("one", evaluations=2, seed=1))
    svc.create_experiment(spec("two", evaluations=2, seed=2))
    with pytest.raises(AlreadyExists):
        svc.create_experiment(spec("one"))
    seen = []
    got = svc.lease(W1, None)
    while isinstance(got, Lease):
        seen.append((got.experiment, got.proposal_seq))
        got = report(svc, got, lease_next=True)
        if isinstance(got, NoWork):
            got = svc.lease(W1, None)
    assert seen == [("one", 0), ("one", 1), ("two", 0), ("two", 1)]
    assert got.done
    assert [e.spec.name for e in svc.list_experiments()] == ["one", "two"]
    assert all(verify_experiment(svc.store, n).ok for n in ("one", "two"))


def test_max_latency_rejects_and_pareto_selects(svc: OrchestratorService) -> None:
    svc.create_experiment(spec(objective={"kind": "pareto", "max_latency_ms": 5.0}, evaluations=12, population=3))
    le = lease(svc)
    report(svc, le, latency_ms=9.0)
    (rejected,) = svc.list_individuals("exp", 10, "", "rejected").individuals
    assert rejected.proposal_seq == 0 and "max_latency_ms" in (rejected.failure_reason or "")
    got: Any = lease(svc)
    while isinstance(got, Lease):
        got = svc.report(got.individual_id, got.token, "w1",
                         Metrics(accuracy=accuracy_of(got), latency_ms=1.0 + got.proposal_seq % 4),
                         lease_next=True)
    exp = svc.get_experiment("exp")
    assert (exp.completed, exp.rejected) == (12, 1)
    assert verify_experiment(svc.store, "exp").ok


def test_status_and_paging(svc: OrchestratorService, clock: Clock) -> None:
    from ui.schema import snapshot_problems

    svc.create_experiment(spec(evaluations=12, lease_timeout_s=120.0))
    assert snapshot_problems(svc.status("exp")) == []
    got: Any = lease(svc)
    for _ in range(8):
        clock.now += 60.0
        got = svc.report(got.individual_id, got.token, "w1", Metrics(accuracy=accuracy_of(got), latency_ms=2.0),
                         lease_next=True)
    st = svc.status("exp")
    assert snapshot_problems(st) == []
    assert st["completed"] == 8 and st["leased"] == 1 and st["population"]["size"] == 5
    assert st["population"]["ages"] == [4, 3, 2, 1, 0]
    assert st["evaluations_per_hour"] == pytest.approx(60.0)
    assert st["eta_seconds"] == pytest.approx(4 * 60.0)
    best = max(svc.list_individuals("exp", 100, "", "completed").individuals, key=lambda i: (i.fitness or 0, -i.proposal_seq))
    assert st["best"]["proposal_seq"] == best.proposal_seq == st["top"][0]["proposal_seq"]
    assert st["best_so_far"][-1][1] == best.fitness
    (w,) = st["workers"]
    assert (w["worker_id"], w["host"], w["evaluations"], w["lease"], w["alive"]) == ("w1", "host-a", 8, 8, True)
    pages, token = [], ""
    while True:
        page = svc.list_individuals("exp", 4, token, None)
        pages.append([i.proposal_seq for i in page.individuals])
        token = page.next_page_token
        if not token:
            break
    assert [s for p in pages for s in p] == list(range(9))


def test_restart_continues_exactly(store_url: str, clock: Clock) -> None:
    """A new service (a restarted server) over the same data continues where the first left off: on SQL
    the store is closed and opened again; in memory the new service shares the store but none of the
    first one's caches."""
    store = db.open_store(store_url)
    first = OrchestratorService(store, clock=clock)
    first.create_experiment(spec(evaluations=20))
    got: Any = lease(first)
    for _ in range(10):
        got = report(first, got, lease_next=True)
    in_flight = lease(first, W2)  # still valid when the "server" restarts
    pop_before = population_seqs(first)
    if store_url != db.MEMORY_URL:
        store.close()
        store = db.open_store(store_url)

    second = OrchestratorService(store, clock=clock)
    try:
        assert population_seqs(second) == pop_before
        assert second.get_experiment("exp").proposals == 12
        report(second, in_flight, "w2")  # the old lease is honoured
        nxt = lease(second)
        assert nxt.proposal_seq == 12  # sequence numbers continue
        while isinstance(nxt, Lease):
            nxt = report(second, nxt, lease_next=True)
        report(second, got)
        assert second.get_experiment("exp").state == "done"
        assert verify_experiment(second.store, "exp").ok
    finally:
        store.close()


def test_replay_detects_a_tampered_genome(sql_url: str) -> None:
    from sqlalchemy import text

    svc = OrchestratorService(db.open_store(sql_url))
    try:
        svc.create_experiment(spec(evaluations=15))
        got: Any = lease(svc)
        while isinstance(got, Lease):
            got = report(svc, got, lease_next=True)
        assert verify_experiment(svc.store, "exp").ok
        engine = make_engine(sql_url)
        try:
            with engine.begin() as conn:
                genome = conn.execute(text("SELECT genome_json FROM individuals WHERE proposal_seq = 9")).scalar_one()
                ops = json.loads(genome)["arch"]
                tampered = ops.replace("none", "skip_connect", 1) if "none" in ops else ops.replace("skip_connect", "none", 1)
                conn.execute(text("UPDATE individuals SET genome_json = :g WHERE proposal_seq = 9"),
                             {"g": json.dumps({"arch": tampered, "space": "nb201"}, sort_keys=True, separators=(",", ":"))})
        finally:
            engine.dispose()
        result = verify_experiment(svc.store, "exp")
        assert not result.ok
        assert any("proposal 9" in p for p in result.problems), result.problems
    finally:
        svc.store.close()
