"""Large-Scale Evolution through the service on every backend: seeds first, every tournament loser logged
once as killed and out of the population, the floor held with workers in flight and failures, a restarted
service continuing exactly, and ``amoeba replay --verify/--export`` on a copied database (the kills
re-derived, the population timeline from the killed events, the ancestry figure)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import db
from cli.main import main
from domain import Lease, Metrics, WorkerInfo
from orchestrator.replay import verify_experiment
from orchestrator.service import OrchestratorService, open_service
from tests.builders import Clock
from tests.lse_builders import lse_accuracy, lse_spec, run_pairwise

pytestmark = pytest.mark.service


def _events(store: Any, name: str) -> list[Any]:
    with store.transaction() as tx:
        exp = tx.experiment(name)
        return list(tx.events(exp.id, 0, 1_000_000))


def _individuals(service: OrchestratorService, name: str = "lse") -> list[Any]:
    return list(service.list_individuals(name, 10_000, "", None).individuals)


def test_pairwise_on_lse_kills_each_loser_once_and_replays(store: Any) -> None:
    service = OrchestratorService(store, clock=Clock())
    completed = run_pairwise(service, lse_spec(population=6, evaluations=40), workers=4, fail_every=9)
    inds = {i.proposal_seq: i for i in _individuals(service)}
    seeds = [i for i in inds.values() if i.proposal_seq < 6]
    assert all(i.parent_seq is None and i.mutation == "seed" and i.genome_json == seeds[0].genome_json for i in seeds)
    assert len({i.fingerprint for i in seeds}) == 1
    # Each seed copy trains with a seed of its own.
    assert len({i.proposal_seq for i in seeds}) == 6
    events = _events(store, "lse")
    killed = [e for e in events if e.kind == "killed"]
    killed_seqs = [e.proposal_seq for e in killed]
    assert killed and len(killed_seqs) == len(set(killed_seqs))  # never killed twice
    for e in killed:
        by = json.loads(e.data_json)["by_proposal"]
        assert inds[e.proposal_seq].state == "completed" and not inds[e.proposal_seq].in_population
        assert inds[by].parent_seq is not None and inds[by].parent_seq != e.proposal_seq
    members = [i for i in inds.values() if i.in_population]
    assert len(members) == len(completed) - len(killed) >= 3  # min_population = P // 2
    result = verify_experiment(store, "lse")
    assert result.ok, result.problems
    assert result.completed == 40 and result.failed == sum(1 for i in inds.values() if i.state == "failed")


def test_a_restarted_service_continues_the_tournaments_exactly(store_url: str) -> None:
    store = db.open_store(store_url)
    clock = Clock()
    first = OrchestratorService(store, clock=clock)
    first.create_experiment(lse_spec(population=4, evaluations=20))
    worker = WorkerInfo("w1", "host", "table")
    for _ in range(10):
        got = first.lease(worker, "lse")
        assert isinstance(got, Lease)
        first.report(got.individual_id, got.token, "w1", Metrics(accuracy=lse_accuracy(got.genome_json)))
    if store_url != db.MEMORY_URL:
        store.close()
        store = db.open_store(store_url)
    second = OrchestratorService(store, clock=clock)
    try:
        while isinstance(got := second.lease(worker, "lse"), Lease):
            second.report(got.individual_id, got.token, "w1", Metrics(accuracy=lse_accuracy(got.genome_json)))
        assert second.get_experiment("lse").state == "done"
        result = verify_experiment(store, "lse")
        assert result.ok, result.problems
    finally:
        store.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture
def copied(sqlite_url: str, tmp_path: Path) -> Path:
    service = open_service(sqlite_url, clock=Clock())
    run_pairwise(service, lse_spec(population=6, evaluations=45), workers=3, fail_every=10)
    service.store.close()
    target = tmp_path / "copy.db"
    shutil.copyfile(sqlite_url.removeprefix("sqlite:///"), target)
    return target


def test_replay_verifies_and_exports_a_pairwise_experiment(copied: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "replay", "--db", str(copied), "--verify", "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] is True and json.loads(out)["completed"] == 45
    out_dir = tmp_path / "export"
    code, out, err = _run(capsys, "replay", "--db", str(copied), "--export", str(out_dir), "--json")
    assert code == 0, err
    files = json.loads(out)["files"]
    with Image.open(files["ancestry_png"]) as img:
        img.verify()
    with (out_dir / "population.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    sizes = [int(r["size"]) for r in rows]
    # Seeds join one by one; once tournaments kill, the population hovers below P and never under the floor.
    assert sizes[:3] == [1, 2, 3] and max(sizes) <= 6 + 3 and min(sizes[6:]) >= 3
    with (out_dir / "history.csv").open() as fh:
        history = {int(r["proposal_seq"]): r for r in csv.DictReader(fh)}
    alive = sum(1 for r in history.values() if r["state"] == "completed")
    # After the last completion: every completed member but those killed by proposals logged before it.
    assert sizes[-1] == alive - _kills_before_completion(copied, len(rows))


def _kills_before_completion(path: Path, completions: int) -> int:
    """Killed events logged before the ``completions``-th completed event of a database file."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        kinds = [str(k) for (k,) in conn.execute(
            "SELECT kind FROM events WHERE kind IN ('killed', 'completed') ORDER BY seq")]
    seen = kills = 0
    for kind in kinds:
        if kind == "completed":
            seen += 1
            if seen == completions:
                break
        else:
            kills += 1
    return kills
