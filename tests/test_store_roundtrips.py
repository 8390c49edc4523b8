"""What the store sends per use case, and the write-behind it does to send little.

Counts, never timings: round trips on PostgreSQL (libpq's protocol trace), statements on SQLite
(``tests/roundtrips.py``). The figures are what ``db/sql.py`` documents: a report that leases the next work
is 3 round trips on PostgreSQL (it was 13 with a pre-ping), 10 statements on SQLite (it was 13). A change
that adds one fails here; lower the bound when a change removes one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from roundtrips import counting

import db
from db import NewIndividual, Store
from domain import AlreadyExists, FailedPrecondition, Lease, Metrics, NoWork, WorkerInfo
from orchestrator.config import parse_spec
from orchestrator.service import OrchestratorService

pytestmark = pytest.mark.contract

#: At most this many per call, in the steady state (population full, so a completion also retires a member).
BOUNDS = {
    "postgresql": {"report+lease": 3, "report": 2, "lease": 3, "heartbeat": 2},
    "sqlite": {"report+lease": 10, "report": 8, "lease": 8, "heartbeat": 5},
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
def service(sql_url: str) -> Iterator[OrchestratorService]:
    svc = OrchestratorService(db.open_store(sql_url))
    svc.create_experiment(parse_spec({"name": "rt", "space": "nb201", "population": 10, "sample": 3,
                                      "evaluations": 100_000, "seed": 3}))
    yield svc
    svc.store.close()


def _report(svc: OrchestratorService, lease: Lease, k: int, lease_next: bool = True) -> Any:
    return svc.report(lease.individual_id, lease.token, "w", Metrics(accuracy=(k * 37 % 100) / 100), lease_next)


def test_round_trips_per_use_case_stay_few(service: OrchestratorService, sql_url: str) -> None:
    bounds = BOUNDS[service.store.dialect]
    worker = WorkerInfo("w", "h", "table")
    got = service.lease(worker, "rt")
    for k in range(40):  # past the population size: completions now retire members too
        assert isinstance(got, Lease)
        got = _report(service, got, k)
    n = 25
    measured = {}
    with counting(service.store) as c:
        for k in range(n):
            assert isinstance(got, Lease)
            got = _report(service, got, k)
    measured["report+lease"] = c.value / n
    assert isinstance(got, Lease)
    with counting(service.store) as c:
        for _ in range(n):
            service.heartbeat(got.individual_id, got.token, "w")
    measured["heartbeat"] = c.value / n
    reports = leases = 0
    for k in range(n):
        with counting(service.store) as report:
            assert _report(service, got, k, lease_next=False) is None
        with counting(service.store) as lease:
            got = service.lease(worker, "rt")
        assert isinstance(got, Lease)
        reports += report.value
        leases += lease.value
    measured["report"], measured["lease"] = reports / n, leases / n
    print(f"\n{service.store.dialect} per call ({c.kind}): {measured}")  # visible with -s
    for use_case, bound in bounds.items():
        assert measured[use_case] <= bound, (use_case, measured, bounds)
    assert service.get_experiment("rt").completed == 40 + 2 * n


def _new(exp_id: int, seq: int) -> NewIndividual:
    return NewIndividual(experiment_id=exp_id, proposal_seq=seq, genome_json="{}", fingerprint=f"{seq:016x}",
                         parent_seq=None, mutation="random", training_seed=seq, state="queued", created_at=1.0)


def test_deferred_writes_are_seen_by_later_reads_and_fail_by_the_commit(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        first = tx.add_individual(_new(exp.id, 0))
        # Writes to one row in a row (an insert, then updates of it) land in order.
        tx.update_individual(first, {"state": "leased", "lease_token": "t1"}, defer=True)
        tx.update_individual(first, {"lease_token": "t2"}, defer=True)
        tx.update_experiment(exp.id, {"proposals": 1}, defer=True)
        tx.touch_worker("w", "h", "table", 1.0, exp.id, first)
        tx.touch_worker("w", "", "", 2.0, exp.id, None, completed=1)
        got = tx.individual(first)
        assert got is not None and (got.state, got.lease_token) == ("leased", "t2")
        e = tx.experiment_by_id(exp.id)
        assert e is not None and e.proposals == 1
        second = tx.add_individual(_new(exp.id, 1))
        tx.update_individual(second, {"state": "failed"}, defer=True)
    with store.transaction() as tx:
        got = tx.individual(second)
        assert got is not None and got.state == "failed"
        (w,) = tx.workers()
        assert (w.host, w.last_seen, w.current_individual_id, w.evaluations) == ("h", 2.0, None, 1)
    # A deferred update of a row that does not exist fails by the end of the transaction, which rolls back.
    with pytest.raises(KeyError), store.transaction() as tx:
        tx.update_individual(first, {"state": "queued"}, defer=True)
        tx.update_individual(10**9, {"state": "failed"}, defer=True)
    with store.transaction() as tx:
        got = tx.individual(first)
        assert got is not None and got.state == "leased"
    # A duplicate proposal, whose insert waited, fails with the ValueError of the contract.
    with pytest.raises(ValueError), store.transaction() as tx:
        tx.add_individual(_new(exp.id, 0))
        tx.update_experiment(exp.id, {"proposals": 9}, defer=True)
    with store.transaction() as tx:
        e = tx.experiment_by_id(exp.id)
        assert e is not None and e.proposals == 1


def _waiting_for_a_lock(admin: Any) -> bool:
    rows = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                         "AND datname = current_database()").fetchone()
    return bool(rows[0])


@pytest.mark.postgres
def test_a_report_that_waits_for_the_experiment_lock_reads_the_individual_after_it(pg_url: str) -> None:
    """The lock and the read travel in one round trip, as two statements: the read sees what the lock holder
    committed meanwhile (a late duplicate of a report that completed the child is refused, not counted twice)."""
    import psycopg

    svc = OrchestratorService(db.open_store(pg_url))
    svc.create_experiment(parse_spec({"name": "lk", "space": "nb201", "population": 2, "sample": 1,
                                      "evaluations": 10, "seed": 1}))
    held = svc.lease(WorkerInfo("w"), "lk")
    assert isinstance(held, Lease)
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    holder = psycopg.connect(plain)
    admin = psycopg.connect(plain, autocommit=True)
    outcome: list[BaseException | object] = []
    try:
        # Another process holds the experiment's lock and completes the child (as a first report would).
        holder.execute("SELECT id FROM experiments WHERE name = 'lk' FOR UPDATE")
        holder.execute("UPDATE individuals SET state = 'completed', lease_token = NULL, lease_deadline = NULL, "
                       "completion_rank = 0 WHERE id = %s", (held.individual_id,))
        holder.execute("UPDATE experiments SET completed = 1, ranked = 1 WHERE name = 'lk'")

        def late_report() -> None:
            try:
                outcome.append(svc.report(held.individual_id, held.token, "w", Metrics(accuracy=0.5)))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=late_report)
        thread.start()
        deadline = time.monotonic() + 60
        while not _waiting_for_a_lock(admin):
            assert time.monotonic() < deadline, "the report never waited for the experiment lock"
            assert thread.is_alive(), outcome
            time.sleep(0.02)
        holder.commit()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        holder.close()
        admin.close()
    assert len(outcome) == 1 and isinstance(outcome[0], (AlreadyExists, FailedPrecondition)), outcome
    exp = svc.get_experiment("lk")
    assert exp.completed == 1
    svc.store.close()


@pytest.mark.postgres
def test_the_first_call_after_a_postgresql_restart_succeeds(pg_server: Any, pg_url: str) -> None:
    """No pre-ping, and yet no error: the dead pooled connections a call finds are replaced and its first round
    trip (which cannot have committed anything) sent again."""
    svc = OrchestratorService(db.open_store(pg_url))
    svc.create_experiment(parse_spec({"name": "rs", "space": "nb201", "population": 2, "sample": 1,
                                      "evaluations": 10, "seed": 1}))
    # Several pooled connections, all of which the restart kills.
    leases = []
    barrier = threading.Barrier(4)

    def lease(k: int) -> None:
        barrier.wait(30)
        got = svc.lease(WorkerInfo(f"w{k}"), "rs")
        assert isinstance(got, Lease)
        leases.append(got)

    threads = [threading.Thread(target=lease, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(leases) == 4
    pg_server.restart()
    for k, held in enumerate(leases):
        got = svc.report(held.individual_id, held.token, f"w{k}", Metrics(accuracy=0.5), lease_next=True)
        assert isinstance(got, Lease), (k, got)
    assert svc.get_experiment("rs").completed == 4
    svc.store.close()


def test_concurrent_reports_do_not_read_the_population_again(sql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction that gets the experiment's lock right after another of this process committed finds the
    state that one committed (orchestrator.folds.Offer), instead of reading the population rows again."""
    from db.sql import SqlTx

    reads = []
    population = SqlTx.population

    def counted(self: SqlTx, experiment_id: int) -> list[Any]:
        reads.append(experiment_id)
        return population(self, experiment_id)

    monkeypatch.setattr(SqlTx, "population", counted)
    svc = OrchestratorService(db.open_store(sql_url))
    c = 400
    svc.create_experiment(parse_spec({"name": "cc", "space": "nb201", "population": 20, "sample": 5,
                                      "evaluations": c, "seed": 5}))

    def client(k: int) -> None:
        got = svc.lease(WorkerInfo(f"c{k}"), "cc")
        n = 0
        while not (isinstance(got, NoWork) and got.done):
            if isinstance(got, NoWork):
                time.sleep(0.005)
                got = svc.lease(WorkerInfo(f"c{k}"), "cc")
                continue
            n += 1
            got = svc.report(got.individual_id, got.token, f"c{k}", Metrics(accuracy=(n * 31 % 97) / 97), True)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert svc.get_experiment("cc").completed == c
    svc.store.close()
    # The first use reads it once; a wait that gives up (1 s, a very slow machine) may read it again.
    assert len(reads) <= 1 + c // 20, len(reads)
