"""The SQL store's own guarantees: migrations match the models, schema check, SQLite settings, indexed hot
queries, PostgreSQL row locking, several service processes on one database, and ``amoeba migrate``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

import db
from db.engine import make_engine
from db.models import Base
from db.schema import head_revision
from db.sql import _HOT
from domain import Lease, Metrics, NoWork, WorkerInfo
from orchestrator.config import parse_spec
from orchestrator.replay import verify_experiment
from orchestrator.service import OrchestratorService

pytestmark = pytest.mark.contract

def _diffs(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


def _revision(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
    finally:
        engine.dispose()


def test_sqlite_migration_matches_models_and_check_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with pytest.raises(db.SchemaOutOfDate, match="amoeba migrate --db"):
        db.open_store(url)
    assert db.upgrade(url) == head_revision() == db.upgrade(url)  # idempotent
    assert db.check_schema(url) == head_revision()
    assert _diffs(url) == []
    engine = make_engine(url)
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    with pytest.raises(db.SchemaOutOfDate, match=rf"at revision 0001, this version needs {head_revision()}: "
                                                 r"run `amoeba migrate --db .*` first"):
        db.check_schema(url)
    # A revision this version does not know was written by a newer Amoeba: refused, and left as it is.
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'future'"))
    engine.dispose()
    newer = rf"at schema revision future, newer than this version of Amoeba knows \(it ends at {head_revision()}\): " \
            r"upgrade Amoeba to open it"
    with pytest.raises(db.SchemaOutOfDate, match=newer):
        db.check_schema(url)
    with pytest.raises(db.SchemaOutOfDate, match=newer):
        db.upgrade(url)
    with pytest.raises(db.SchemaOutOfDate, match=newer):
        db.open_store(url)
    assert _revision(url) == "future"


@pytest.mark.postgres
def test_postgresql_migration_matches_models(pg_server: Any) -> None:
    url = pg_server.database()
    with pytest.raises(db.SchemaOutOfDate, match="amoeba migrate"):
        db.check_schema(url)
    assert db.upgrade(url) == head_revision()
    assert _diffs(url) == []


def test_hot_queries_use_their_partial_indexes(sqlite_url: str) -> None:
    """No query the service runs per call (or for status) may walk an experiment's history: each must
    search the small partial index made for it."""
    engine = make_engine(sqlite_url)
    params = {"eid": 1, "now": 1.0, "limit": 5, "id": 1, "name": "x", "rank": 3}
    expected = {
        _HOT[False]["overdue"]: "ix_individuals_leased",
        _HOT[False]["queued"]: "ix_individuals_queued",
        _HOT[False]["population"]: "ix_individuals_population",
        _HOT[False]["completions"]: "ix_individuals_rank",
        _HOT[False]["ind_by_id"]: "INTEGER PRIMARY KEY",
        "SELECT count(*) FROM individuals WHERE experiment_id = :eid AND state = 'queued'": "ix_individuals_queued",
        "SELECT count(*) FROM individuals WHERE experiment_id = :eid AND state = 'leased'": "ix_individuals_leased",
        "SELECT * FROM individuals WHERE experiment_id = :eid AND fitness IS NOT NULL AND state = 'completed' "
        "ORDER BY fitness DESC, proposal_seq LIMIT 10": "ix_individuals_fitness",
        "SELECT * FROM individuals WHERE experiment_id = :eid AND completion_rank = 7": "ix_individuals_rank",
        "SELECT * FROM individuals WHERE experiment_id = :eid AND improved = 1 ORDER BY completion_rank":
            "ix_individuals_improved",
        "SELECT * FROM events WHERE experiment_id = :eid AND seq > 5 ORDER BY seq LIMIT 100": "(experiment_id=? AND seq>?)",
    }
    with engine.begin() as conn:
        for sql, index in expected.items():
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
            assert plan.startswith("SEARCH") and index in plan, (sql, plan)
            assert "SCAN" not in plan and "TEMP B-TREE FOR ORDER BY" not in plan, (sql, plan)
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_claims_skip_rows_locked_by_another_transaction(pg_url: str) -> None:
    from db import NewIndividual

    a, b = db.open_store(pg_url), db.open_store(pg_url)
    try:
        with a.transaction() as tx:
            exp = tx.add_experiment("x", "{}", 1, 0.0)
            for seq in range(2):
                tx.add_individual(NewIndividual(exp.id, seq, "{}", "f", None, "random", 1, "queued", 0.0))
        with a.transaction() as ta:
            first = ta.next_queued(exp.id)
            assert first is not None and first.proposal_seq == 0
            with b.transaction() as tb:  # a second server process: the locked row is skipped, not waited for
                second = tb.next_queued(exp.id)
                assert second is not None and second.proposal_seq == 1
    finally:
        a.close()
        b.close()


@pytest.mark.postgres
def test_two_service_processes_on_one_postgresql_database(pg_url: str) -> None:
    """Two services (as two server processes would) lease and report concurrently; the experiment lock
    keeps proposals and completions serial, so the result replays exactly and the population is right."""
    services = [OrchestratorService(db.open_store(pg_url)) for _ in range(2)]
    services[0].create_experiment(parse_spec({"name": "pg", "space": "nb201", "population": 4, "sample": 2,
                                              "evaluations": 40, "seed": 9}))
    errors: list[BaseException] = []

    def worker(svc: OrchestratorService, wid: str) -> None:
        try:
            got: Lease | NoWork | None = svc.lease(WorkerInfo(wid), "pg")
            while True:
                if isinstance(got, NoWork):
                    if got.done:
                        return
                    got = svc.lease(WorkerInfo(wid), "pg")
                    continue
                assert isinstance(got, Lease)
                acc = (int(json.loads(got.genome_json)["arch"].count("conv")) + got.proposal_seq % 3) / 10
                got = svc.report(got.individual_id, got.token, wid, Metrics(accuracy=acc), lease_next=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(services[i % 2], f"w{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    exp = services[1].get_experiment("pg")
    assert (exp.state, exp.completed, exp.proposals) == ("done", 40, 40)
    report = verify_experiment(services[1].store, "pg")
    assert report.ok, report.problems
    for s in services:
        s.store.close()


def test_migrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    target = tmp_path / "m.db"

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_:
            main(["migrate", *args])
        out, err = capsys.readouterr()
        return int(exit_.value.code or 0), out, err

    code, out, err = run("--db", str(target), "--json")
    assert code == 0, err
    assert json.loads(out) == {"database": f"sqlite:///{target}", "previous": None, "revision": head_revision(),
                               "head": head_revision(), "changed": True}
    code, out, _ = run("--db", f"sqlite:///{target}")
    assert code == 0 and "already at revision" in out
    code, _, err = run("--db", str(tmp_path / "missing" / "dir" / "x.db"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("amoeba: error:")


@pytest.mark.postgres
def test_service_survives_a_postgresql_restart(pg_server: Any, pg_url: str) -> None:
    """The restart helper chaos tests use: connections are cut, the next calls reconnect, nothing is lost."""
    from domain import Unavailable

    svc = OrchestratorService(db.open_store(pg_url))
    svc.create_experiment(parse_spec({"name": "r", "space": "nb201", "population": 2, "sample": 1, "evaluations": 3}))
    held = svc.lease(WorkerInfo("w"), "r")
    assert isinstance(held, Lease)
    pg_server.restart()
    for _ in range(3):  # pre-ping replaces dead pooled connections; at worst one call sees Unavailable
        try:
            got = svc.report(held.individual_id, held.token, "w", Metrics(accuracy=0.5), lease_next=True)
            break
        except Unavailable:
            continue
    else:
        pytest.fail("the store did not reconnect after the restart")
    assert isinstance(got, Lease) and got.proposal_seq == 1
    assert svc.get_experiment("r").completed == 1
    svc.store.close()
