"""A database written by the previous version (revision e0df414, before typed events) opened with today's
code: every stored event decodes to its typed payload, the read model and ``amoeba status --db`` show it,
replay verifies it, and the service continues its running experiment (tests/golden/README.md says how the
file was made)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import db
from cli.main import main
from db.schema import head_revision
from domain import Lease, Metrics, WorkerInfo
from domain import events as ev
from orchestrator.readmodel import ReadModel
from orchestrator.replay import verify_experiment
from orchestrator.service import OrchestratorService
from tests.builders import Clock, nb201_metrics
from ui.schema import snapshot_problems

pytestmark = pytest.mark.service

GOLDEN = Path(__file__).parent / "golden" / "v0_nb201.db"
NAMES = ("exp", "lat", "exp-fork")
#: What the old version left in the file (experiments table): state, proposals, completed, failed, rejected.
COUNTERS = {"exp": ("done", 32, 30, 2, 0), "lat": ("done", 16, 12, 0, 4), "exp-fork": ("running", 12, 10, 0, 0)}
#: The event kinds the old version wrote (all of them but killed/paused/resumed, which it did not have).
KINDS = {"completed": 47, "experiment_created": 3, "experiment_done": 2, "expired": 2, "failed": 2, "leased": 56,
         "proposed": 55, "rejected": 4, "released": 3, "requeued": 1, "seeded": 5}
#: The held lease of exp-fork (fake tokens: the generator counts them) and its deadline.
HELD_ID, HELD_TOKEN, HELD_DEADLINE = 59, f"{0x37:032x}", 1_790_000_045.0


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A copy of the old version's database (the golden file itself is never opened for writing)."""
    target = tmp_path / "v0.db"
    shutil.copyfile(GOLDEN, target)
    return target


def _migrated(path: Path) -> str:
    url = f"sqlite:///{path}"
    db.upgrade(url)
    return url


def _rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(
            "SELECT e.name AS experiment, ev.seq, ev.kind, ev.individual_id, ev.proposal_seq, ev.data_json, "
            "i.genome_json, i.fingerprint, i.parent_seq, i.mutation, i.fitness, i.accuracy "
            "FROM events ev JOIN experiments e ON e.id = ev.experiment_id "
            "LEFT JOIN individuals i ON i.id = ev.individual_id ORDER BY e.id, ev.seq")]


def _kinds(path: Path, experiment: str) -> list[str]:
    return [r["kind"] for r in _rows(path) if r["experiment"] == experiment]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_the_golden_file_is_the_old_schema() -> None:
    with sqlite3.connect(f"file:{GOLDEN}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # no -wal file belongs to it
    assert GOLDEN.stat().st_size < 200_000


def test_every_old_event_decodes_to_its_typed_payload(old_db: Path) -> None:
    rows = _rows(old_db)
    assert Counter(r["kind"] for r in rows) == KINDS
    rewritten = []
    for r in rows:
        payload = ev.decode(r["kind"], r["data_json"])
        assert not isinstance(payload, ev.Unknown), r
        assert type(payload) is ev._BY_KIND[r["kind"]] and payload.kind == r["kind"]
        # Nothing stored is lost: every old key comes back with its value; a key the old code left out is
        # a field whose value is None.
        stored, again = json.loads(r["data_json"]), json.loads(ev.encode(payload)[1])
        assert again == {**stored, **dict.fromkeys(again.keys() - stored.keys())}, r
        if again.keys() != stored.keys():
            rewritten.append((r["experiment"], r["seq"], r["kind"]))
        else:
            assert ev.encode(payload) == (r["kind"], r["data_json"]), r
        # The typed values agree with the individual's row.
        if isinstance(payload, ev.Proposed):
            assert (payload.fingerprint, payload.parent_seq, payload.mutation) == (
                r["fingerprint"], r["parent_seq"], r["mutation"])
        elif isinstance(payload, ev.Completed):
            assert (payload.fitness, payload.accuracy) == (r["fitness"], r["accuracy"])
        elif isinstance(payload, ev.Leased):
            assert payload.worker in ("w-a", "w-b") and payload.attempt in (1, 2)
        elif isinstance(payload, ev.Seeded):
            assert payload.genome == json.loads(r["genome_json"]) and payload.fingerprint == r["fingerprint"]
            assert payload.fitness == r["fitness"] and payload.source is not None
            assert payload.source["experiment"] == "exp"
        elif isinstance(payload, ev.ExperimentCreated):
            assert payload.config["name"] == r["experiment"]
            assert (payload.forked_from is not None) == (r["experiment"] == "exp-fork")
    # Only the old expiry's final failure omitted a key (its attempt).
    assert rewritten == [("exp", 22, "failed")]

    by_seq = {(r["experiment"], r["seq"]): ev.decode(r["kind"], r["data_json"]) for r in rows}
    assert by_seq["exp", 19] == ev.Expired(attempt=1, requeued=True)
    assert by_seq["exp", 21] == ev.Expired(attempt=2, requeued=False)
    assert by_seq["exp", 22] == ev.Failed("lease expired 2 times (last holder w-a)", attempt=None)
    assert by_seq["exp", 37] == ev.Released("w-b")
    assert by_seq["exp", 45] == ev.Requeued("preempted", attempt=1)
    assert by_seq["exp", 53] == ev.Failed("out of memory", attempt=1)
    assert by_seq["exp", 105] == ev.ExperimentDone(30)
    assert by_seq["lat", 13] == ev.Rejected("latency 1.4 ms over the objective's max_latency_ms 1.05", 1.4)
    rejected = by_seq["lat", 15]
    assert isinstance(rejected, ev.Rejected) and rejected.before_training and rejected.latency_ms == pytest.approx(1.1124, abs=1e-4)
    assert rejected.reason == "estimated latency 1.112 ms over the objective's max_latency_ms 1.05"
    assert by_seq["lat", 47] == ev.ExperimentDone(12)
    created = by_seq["exp-fork", 1]
    assert isinstance(created, ev.ExperimentCreated) and created.forked_from is not None
    assert (created.forked_from["experiment"], created.forked_from["at"], len(created.forked_from["members"])) == (
        "exp", 52, 5)
    assert [type(by_seq["exp-fork", s]) for s in range(2, 7)] == [ev.Seeded] * 5


def test_migrate_then_status_and_time_travel_read_it(old_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "migrate", "--db", str(old_db), "--json")
    assert code == 0, err
    migrated = json.loads(out)
    assert (migrated["previous"], migrated["revision"], migrated["head"]) == ("0001", head_revision(), head_revision())
    url = f"sqlite:///{old_db}"
    with ReadModel(url) as model:
        for name in NAMES:
            code, out, err = _run(capsys, "status", "--db", url, "--experiment", name, "--json")
            assert code == 0, err
            doc = json.loads(out)
            assert snapshot_problems(doc) == [], (name, snapshot_problems(doc))
            state, proposals, completed, failed, rejected = COUNTERS[name]
            assert (doc["state"], doc["proposals"], doc["completed"], doc["failed"], doc["rejected"]) == (
                state, proposals, completed, failed, rejected), name
            assert doc["population"]["size"] == {"exp": 8, "lat": 5, "exp-fork": 5}[name]
            # A worker is listed under the experiment it last worked on: both moved on to the fork.
            assert [w["worker_id"] for w in doc["workers"]] == (["w-a", "w-b"] if name == "exp-fork" else [])
            now = model.status(name)
            for key in now:
                if key not in ("generated_at", "workers"):
                    assert doc[key] == now[key], (name, key)
            # The log folded to its last event is the present; earlier events fold to the counts so far.
            exp = model.experiment(name)
            last = model.status_at(exp.event_seq, name)
            assert snapshot_problems(last) == []
            for key in ("completed", "failed", "rejected", "target", "proposals", "queued", "leased", "best",
                        "population", "best_so_far", "top", "state", "seq"):
                assert last[key] == now[key], (name, key)
            kinds = _kinds(old_db, name)
            for seq in sorted({1, 2, 7, len(kinds) // 3, len(kinds) // 2, len(kinds) - 1}):
                then = model.status_at(seq, name)
                assert snapshot_problems(then) == [], (name, seq)
                done = kinds[:seq]
                assert then["seq"] == seq
                assert then["completed"] == done.count("completed") + done.count("seeded"), (name, seq)
                assert (then["failed"], then["rejected"]) == (done.count("failed"), done.count("rejected"))
                assert then["state"] == ("done" if "experiment_done" in done else "running")
        # The old expiry put the lost lease back in the queue before w-a took it again.
        kinds = _kinds(old_db, "exp")
        assert model.status_at(kinds.index("expired") + 1, "exp")["queued"] == 1
    code, out, err = _run(capsys, "status", "--db", url, "--experiment", "exp-fork")
    assert code == 0, err
    assert "completed 10 / 15" in out
    # Revision 0004's artifact columns are there and empty: the old rows kept no weights.
    for name in NAMES:
        code, out, err = _run(capsys, "artifacts", "--db", url, "--experiment", name, "--json")
        assert (code, json.loads(out)) == (0, []), err
    with sqlite3.connect(old_db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(individuals)")}
        assert {"artifact_uri", "artifact_sha256", "artifact_bytes", "artifact_state"} <= columns
        assert conn.execute("SELECT COUNT(*) FROM individuals WHERE artifact_uri IS NOT NULL").fetchone() == (0,)


def test_replay_verifies_every_old_experiment(old_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = db.open_store(_migrated(old_db))
    try:
        for name, (proposals, completed) in {"exp": (32, 30), "lat": (16, 12), "exp-fork": (7, 10)}.items():
            report = verify_experiment(store, name)
            assert report.ok, (name, report.problems)
            assert (report.proposals, report.completed) == (proposals, completed), name
    finally:
        store.close()
    code, out, err = _run(capsys, "replay", "--db", str(old_db), "--experiment", "lat", "--verify", "--json")
    assert code == 0 and json.loads(out)["ok"], (out, err)


def test_the_service_continues_the_old_running_experiment(old_db: Path) -> None:
    url = _migrated(old_db)
    service = OrchestratorService(db.open_store(url), clock=Clock(HELD_DEADLINE - 4.0))
    try:
        # The lease the old version handed out is still honoured.
        service.report(HELD_ID, HELD_TOKEN, "w-a", Metrics(accuracy=0.81, latency_ms=1.2))
        worker = WorkerInfo("w-new", "host-new", "table")
        first = service.lease(worker, "exp-fork")
        # The individual the old version requeued (a release: no attempt used), with no priced latency.
        assert isinstance(first, Lease)
        assert (first.individual_id, first.proposal_seq, first.attempt, first.latency_ms) == (60, 11, 1, None)
        got: Any = first
        leased = [first]
        while isinstance(got, Lease):
            got = service.report(got.individual_id, got.token, worker.worker_id, nb201_metrics(got), lease_next=True)
            if isinstance(got, Lease):
                leased.append(got)
        assert got.done
        # Children proposed by today's code are priced at proposal.
        assert [le.proposal_seq for le in leased] == [11, 12, 13, 14]
        assert all(le.latency_ms is not None and le.latency_ms > 0 for le in leased[1:])
        exp = service.get_experiment("exp-fork")
        assert (exp.state, exp.completed, exp.proposals) == ("done", 15, 15)
        report = verify_experiment(service.store, "exp-fork")
        assert report.ok, report.problems
        assert (report.proposals, report.completed) == (10, 15)
        # The log now holds both versions' events; all of them decode.
        with service.store.transaction() as tx:
            rec = tx.experiment("exp-fork")
            assert rec is not None
            events = tx.events(rec.id, 0, 10_000)
        assert [e.seq for e in events] == list(range(1, rec.event_seq + 1))
        assert not any(isinstance(ev.decode(e.kind, e.data_json), ev.Unknown) for e in events)
        assert events[-1].kind == "experiment_done"
        status = service.status("exp-fork")
        assert snapshot_problems(status) == [] and status["completed"] == 15
    finally:
        service.store.close()
