"""The read model: the status document from a database opened read-only, time travel by folding the log,
and ``amoeba status --db``: it agrees with the service, conforms to the schema and never writes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from db import StoreError
from domain import InvalidArgument, NotFound
from orchestrator.readmodel import ReadModel
from orchestrator.service import open_service
from tests.builders import build_experiment
from ui.schema import snapshot_problems

pytestmark = pytest.mark.service


@pytest.fixture
def built(sqlite_url: str) -> str:
    service = build_experiment(sqlite_url)
    service.store.close()
    return sqlite_url


def test_status_from_the_database_is_the_services_document_plus_the_whole_front(built: str) -> None:
    live = open_service(built)
    try:
        expected = live.status("exp")
    finally:
        live.store.close()
    with ReadModel(built) as model:
        doc = model.status("exp")
    assert snapshot_problems(doc) == []
    for key in expected:
        if key not in ("pareto", "generated_at", "workers"):
            assert doc[key] == expected[key], key
    assert [w["worker_id"] for w in doc["workers"]] == ["w-a", "w-b"]
    assert (doc["completed"], doc["failed"], doc["state"]) == (80, 1, "done")
    # The service shows the population and the top; the database view adds the non-dominated points of everyone.
    def points(ps: list[dict[str, Any]]) -> set[tuple[str, float, float]]:
        return {(p["fingerprint"], p["accuracy"], p["latency_ms"]) for p in ps}

    assert points(expected["pareto"]) < points(doc["pareto"])
    front = [p for p in doc["pareto"] if p["on_front"]]
    assert front
    with sqlite3.connect(built.removeprefix("sqlite:///")) as conn:
        rows = conn.execute("SELECT accuracy, latency_ms FROM individuals WHERE state = 'completed'").fetchall()
    for p in front:  # nothing completed dominates a point shown on the front
        assert not any(a >= p["accuracy"] and lat <= p["latency_ms"] and (a, lat) != (p["accuracy"], p["latency_ms"])
                       for a, lat in rows)
    # The same front as front.png draws: one point per distinct (accuracy, latency), the same count.
    from ui.derive import front_line

    assert sorted((p["accuracy"], p["latency_ms"]) for p in front) == sorted(front_line([(a, lat) for a, lat in rows]))


def test_time_travel_at_the_last_event_is_the_present_and_earlier_events_fold_exactly(built: str) -> None:
    with ReadModel(built) as model:
        now = model.status("exp", top_k=5)
        exp = model.experiment("exp")
        last = model.status_at(exp.event_seq, "exp", top_k=5)
        assert snapshot_problems(last) == []
        for key in ("completed", "failed", "rejected", "target", "proposals", "queued", "leased", "best", "population",
                    "best_so_far", "top", "state", "seq"):
            assert last[key] == now[key], key
        assert {w["worker_id"]: w["evaluations"] for w in last["workers"]} == {
            w["worker_id"]: w["evaluations"] for w in now["workers"]}
        # Walk the log: the completed count at each event is the number of completion events so far.
        with sqlite3.connect(built.removeprefix("sqlite:///")) as conn:
            kinds = [k for (k,) in conn.execute("SELECT kind FROM events ORDER BY seq")]
        for seq in (1, 2, 17, len(kinds) // 2, len(kinds) - 1):
            doc = model.status_at(seq, "exp")
            assert snapshot_problems(doc) == []
            assert doc["seq"] == seq
            assert doc["completed"] == kinds[:seq].count("completed")
            assert doc["failed"] == kinds[:seq].count("failed")
            assert doc["population"]["size"] == min(10, doc["completed"])
            assert doc["state"] == ("done" if "experiment_done" in kinds[:seq] else "running")
        # The expired lease was put back in the queue before someone took it again.
        expired = kinds.index("expired") + 1
        assert model.status_at(expired, "exp")["queued"] == 1
        with pytest.raises(InvalidArgument, match="between 1 and"):
            model.status_at(exp.event_seq + 1, "exp")


def test_the_read_model_cannot_write(built: str) -> None:
    path = Path(built.removeprefix("sqlite:///"))
    before = path.read_bytes()
    with ReadModel(built) as model:
        exp_id = model.experiment("exp").id
        with pytest.raises((StoreError, sqlite3.Error)) as exc_info, model.db.store.transaction() as tx:
            tx.update_experiment(exp_id, {"state": "paused"})
    assert "readonly" in str(exc_info.value).replace(" ", "").lower() or "read-only" in str(exc_info.value).lower()
    assert path.read_bytes() == before


def test_unknown_names_and_missing_files_are_errors(built: str, tmp_path: Path) -> None:
    with ReadModel(built) as model:
        with pytest.raises(NotFound):
            model.status("nope")
        assert model.experiment(None).name == "exp"
        with pytest.raises(InvalidArgument):
            model.status("exp", top_k=-1)
    with pytest.raises(FileNotFoundError):
        ReadModel(str(tmp_path / "missing.db"))


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_amoeba_status_db_json_top_and_view(built: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "status", "--db", built, "--json", "--top", "25")
    assert code == 0, err
    doc = json.loads(out)
    assert snapshot_problems(doc) == [] and len(doc["top"]) == 25
    fits = [t["fitness"] for t in doc["top"]]
    assert fits == sorted(fits, reverse=True) and doc["best"]["fitness"] == fits[0]
    code, out, err = _run(capsys, "status", "--db", built, "--experiment", "exp", "--top", "3")
    assert code == 0, err
    assert "completed 80 / 80" in out and "w-a" in out
    # --watch on a finished experiment: one plain line (no terminal here), then it returns by itself.
    code, out, err = _run(capsys, "status", "--db", built, "--watch", "--interval", "0.05")
    assert code == 0, err
    assert out.startswith("exp done | 80/80 (100.0%)") and len(out.splitlines()) == 1
    for args, message in [
        (("status",), "give either --server HOST:PORT or --db URL"),
        (("status", "--db", built, "--experiment", "zz"), "no experiment named 'zz'"),
        (("status", "--db", built + ".missing"), "no database file"),
        (("status", "--db", built, "--top", "5000"), "--top must be between 0 and 1000"),
        (("status", "--db", built, "--watch", "--json"), "use --json without --watch"),
    ]:
        code, out, err = _run(capsys, *args)
        assert code == 2 and err.startswith("amoeba: error:") and message in err and len(err.splitlines()) == 1, err


def test_the_readme_documents_the_status_schema_as_ui_schema_defines_it() -> None:
    import re

    from ui.schema import FIELDS

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### `amoeba status`", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| (yes|no) \|", section, flags=re.M)
    assert [(p, t.strip(), r == "yes") for p, t, r in rows] == [
        (f.path, f.type.replace("|", " or "), f.required) for f in FIELDS]
