"""``amoeba replay`` on a database file copied elsewhere (no server): --verify passes and catches tampering,
--at is the folded log, --export writes the tables and valid PNGs; ``amoeba experiment fork`` continues
from an event with other P/S and its own seed, and the fork replays too."""

from __future__ import annotations

import csv
import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

import spaces
from cli.main import main
from db import open_store
from genome.base import canonical_json
from orchestrator.readmodel import ReadModel
from tests.builders import Clock, build_experiment, nb201_metrics
from ui.schema import snapshot_problems

pytestmark = pytest.mark.service


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture
def copied(sqlite_url: str, tmp_path: Path) -> Path:
    """An experiment's database, closed and copied to another folder: what someone sends you."""
    build_experiment(sqlite_url, evaluations=60).store.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "copy.db"
    shutil.copyfile(sqlite_url.removeprefix("sqlite:///"), target)
    return target


def test_verify_passes_on_a_copy_and_reports_what_it_checked(copied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "replay", "--db", str(copied), "--verify", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report == {"experiment": "exp", "ok": True, "events": report["events"], "proposals": report["proposals"],
                      "completed": 60, "failed": 1, "problems": []}
    assert report["proposals"] == 61  # 60 completed + 1 failed; the expired and released ones were re-leased
    code, out, _ = _run(capsys, "replay", "--db", str(copied), "--verify")
    assert code == 0 and "all match" in out


def _mutated_row(db: Path) -> tuple[int, str]:
    with sqlite3.connect(db) as conn:
        seq, genome = conn.execute("SELECT proposal_seq, genome_json FROM individuals WHERE parent_seq IS NOT NULL "
                                   "ORDER BY proposal_seq LIMIT 1 OFFSET 5").fetchone()
    return int(seq), str(genome)


def test_verify_names_the_first_mismatch_and_exits_non_zero(copied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seq, genome_json = _mutated_row(copied)
    space = spaces.get("nb201")
    genome = space.parse(json.loads(genome_json))
    # Another cell, with a consistent fingerprint: only re-deriving the proposal can tell.
    other = next(g for g in (space.sample(random.Random(i)) for i in range(100)) if g != genome)
    with sqlite3.connect(copied) as conn:
        conn.execute("UPDATE individuals SET genome_json = ?, fingerprint = ? WHERE proposal_seq = ?",
                     (canonical_json(other.to_json()), other.fingerprint, seq))
        conn.execute("UPDATE events SET data_json = replace(data_json, ?, ?) WHERE proposal_seq = ? AND kind = 'proposed'",
                     (genome.fingerprint, other.fingerprint, seq))
    code, out, _ = _run(capsys, "replay", "--db", str(copied), "--verify")
    assert code == 1
    assert out.startswith("exp: replay mismatch: event ")
    assert f"proposal {seq} re-derives as {genome.fingerprint}" in out and other.fingerprint in out
    code, out, _ = _run(capsys, "replay", "--db", str(copied), "--verify", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and f"proposal {seq}" in report["problems"][0]


def test_verify_catches_a_genome_edited_behind_the_log(copied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seq, genome_json = _mutated_row(copied)
    with sqlite3.connect(copied) as conn:
        conn.execute("UPDATE individuals SET genome_json = ? WHERE proposal_seq = ?",
                     (genome_json.replace("nor_conv_3x3", "avg_pool_3x3").replace("skip_connect", "none"), seq))
    code, out, _ = _run(capsys, "replay", "--db", str(copied), "--verify", "--json")
    report = json.loads(out)
    assert code == 1 and any(f"proposal {seq}" in p for p in report["problems"])


def test_at_is_the_status_as_of_that_event(copied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "replay", "--db", str(copied), "--at", "40", "--json", "--top", "4")
    assert code == 0, err
    doc = json.loads(out)
    assert snapshot_problems(doc) == [] and doc["seq"] == 40 and len(doc["top"]) <= 4
    with ReadModel(str(copied)) as model:
        assert doc == model.status_at(40, "exp", 4)
    code, out, _ = _run(capsys, "replay", "--db", str(copied), "--at", "40")
    assert code == 0 and "as of event 40" in out
    code, _, err = _run(capsys, "replay", "--db", str(copied), "--at", "100000")
    assert code == 2 and "--at must be an event number between 1 and" in err


def test_export_writes_tables_and_valid_pngs(copied: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "export"
    code, out, err = _run(capsys, "replay", "--db", str(copied), "--export", str(out_dir), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["individuals"] == 61
    for name in ("history", "lineage", "population"):
        assert (out_dir / f"{name}.csv").is_file() and (out_dir / f"{name}.json").is_file()
    for png in ("progress.png", "front.png", "ancestry.png"):
        data = (out_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(out_dir / png) as img:
            img.verify()
    with (out_dir / "history.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 61
    lineage = json.loads((out_dir / "lineage.json").read_text())
    assert lineage[0]["generation"] == len(lineage) - 1 and lineage[-1]["generation"] == 0
    assert lineage[-1]["parent_seq"] is None  # back to a random genome
    timeline = json.loads((out_dir / "population.json").read_text())
    assert len(timeline) == 60 and timeline[-1]["size"] == 10
    code, _, err = _run(capsys, "replay", "--db", str(copied))
    assert code == 2 and "--verify, --at SEQ and/or --export DIR" in err


def test_fork_continues_from_an_event_with_other_settings_and_replays(
    copied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ReadModel(str(copied)) as model:
        at = model.experiment("exp").event_seq // 2
        then = model.status_at(at, "exp")
    code, out, err = _run(capsys, "experiment", "fork", "--db", str(copied), "--from", "exp", "--at", str(at),
                          "--name", "exp-p5", "--population", "5", "--sample", "2", "--evaluations", "30",
                          "--seed", "9", "--json")
    assert code == 0, err
    forked = json.loads(out)
    assert forked["source"] == "exp" and forked["at"] == at and forked["target"] == 35
    assert forked["spec"]["population_size"] == 5 and forked["spec"]["sample_size"] == 2 and forked["spec"]["seed"] == 9
    assert len(forked["seeded"]) == 5
    with ReadModel(str(copied)) as model:
        start = model.status("exp-p5")
    assert (start["completed"], start["population"]["size"], start["proposals"]) == (5, 5, 5)
    # The youngest five members of the source at that event, with their fitness.
    assert start["population"]["best"] <= then["population"]["best"]

    # Run the fork to the end through the service, as workers would.
    from domain import Lease, WorkerInfo
    from orchestrator.service import OrchestratorService

    service = OrchestratorService(open_store(f"sqlite:///{copied}"), clock=Clock(1_900_000_000.0))
    try:
        while isinstance(lease := service.lease(WorkerInfo("w"), "exp-p5"), Lease):
            service.report(lease.individual_id, lease.token, "w", nb201_metrics(lease))
        assert service.get_experiment("exp-p5").completed == 35
    finally:
        service.store.close()
    code, out, err = _run(capsys, "replay", "--db", str(copied), "--experiment", "exp-p5", "--verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"], report
    assert report["completed"] == 35 and report["proposals"] == 30
    # The source is untouched and still verifies.
    code, out, _ = _run(capsys, "replay", "--db", str(copied), "--experiment", "exp", "--verify", "--json")
    assert code == 0 and json.loads(out)["ok"]

    for args, message in [
        (("--from", "exp", "--at", str(at), "--name", "exp-p5"), "exists already"),
        (("--from", "exp", "--at", "0"), "--at must be an event number between 1 and"),
        (("--from", "nope", "--at", "3"), "no experiment named 'nope'"),
        (("--from", "exp", "--at", "3", "--population", "0"), "--population must be >= 1"),
    ]:
        code, _, err = _run(capsys, "experiment", "fork", "--db", str(copied), *args)
        assert code == 2 and err.startswith("amoeba: error:") and message in err and len(err.splitlines()) == 1, err
