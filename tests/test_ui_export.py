"""Replay exports: PNG figures, CSV/JSON of history, lineage and population timeline; schema docs in step."""

from __future__ import annotations

import csv
import itertools
import json
import random
import re
import struct
import typing
from pathlib import Path
from typing import Any

import pytest

from domain import status
from ui import schema
from ui.derive import histogram, lineage, population_timeline
from ui.export import HISTORY_COLUMNS, LINEAGE_COLUMNS, TIMELINE_COLUMNS, best_record, export_experiment
from ui.plots import front_plot, progress_plot

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _records(n: int = 120, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        failed = i % 17 == 5
        acc = None if failed else rng.uniform(0.80, 0.95)
        out.append({
            "id": i + 1, "experiment": "demo", "proposal_seq": i, "fingerprint": f"{i:016x}",
            "parent_seq": None if i < 10 else rng.randrange(i), "mutation": "" if i < 10 else "op",
            "state": "failed" if failed else "completed", "attempts": 1, "fitness": acc, "accuracy": acc,
            "latency_ms": rng.uniform(1.0, 4.0), "genome": {"normal": [[0, 1, "sep_conv_3x3"]]},
            "created_at": 1000.0 + i, "completed_at": None if failed else 1000.0 + 30.0 * i,
            "completion_rank": None if failed else i, "failure_reason": "nan loss" if failed else None,
            "lease_owner": "w1",  # not an export column: ignored
        })
    return out


def test_plots_write_pngs_of_the_documented_size(tmp_path: Path) -> None:
    pts = [(float(i), 0.5 + 0.001 * i) for i in range(50)]
    p = progress_plot(pts, tmp_path / "sub" / "progress.png")
    assert _png_size(p) == (800, 500)
    f = front_plot([(0.9, 1.0), (0.95, 2.0), (0.85, 3.0)], tmp_path / "front.png")
    assert _png_size(f) == (800, 500)
    # Empty input still gives a figure (a replay before the first completion).
    assert _png_size(progress_plot([], tmp_path / "empty.png")) == (800, 500)
    assert _png_size(front_plot([(float("nan"), 1.0)], tmp_path / "nan.png")) == (800, 500)


def test_export_experiment_writes_every_artifact(tmp_path: Path) -> None:
    recs = _records()
    out = export_experiment(recs, tmp_path / "export", population_size=20, created_at=1000.0, name="demo")
    assert set(out) == {"history_csv", "history_json", "lineage_csv", "lineage_json", "population_csv",
                        "population_json", "progress_png", "front_png", "ancestry_png"}
    for key in ("progress_png", "front_png"):
        assert _png_size(Path(out[key])) == (800, 500)
    assert _png_size(Path(out["ancestry_png"])) == (900, 550)

    with open(out["history_csv"], newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == HISTORY_COLUMNS
    assert len(rows) == 1 + len(recs)
    assert json.loads(rows[1][HISTORY_COLUMNS.index("genome")]) == recs[0]["genome"]
    failed = rows[1 + 5]
    assert failed[HISTORY_COLUMNS.index("state")] == "failed"
    assert failed[HISTORY_COLUMNS.index("fitness")] == ""
    assert failed[HISTORY_COLUMNS.index("failure_reason")] == "nan loss"
    history = json.loads(Path(out["history_json"]).read_text())
    assert [h["proposal_seq"] for h in history] == list(range(len(recs)))
    assert set(history[0]) == set(HISTORY_COLUMNS)

    best = best_record(recs)
    assert best is not None
    lineage_rows = json.loads(Path(out["lineage_json"]).read_text())
    assert lineage_rows[0]["proposal_seq"] == best["proposal_seq"]
    assert lineage_rows[-1]["parent_seq"] is None and lineage_rows[-1]["generation"] == 0
    for child, parent in itertools.pairwise(lineage_rows):
        assert child["parent_seq"] == parent["proposal_seq"]
        assert child["generation"] == parent["generation"] + 1
    with open(out["lineage_csv"], newline="") as fh:
        assert tuple(next(csv.reader(fh))) == LINEAGE_COLUMNS

    with open(out["population_csv"], newline="") as fh:
        timeline = list(csv.DictReader(fh))
    assert tuple(timeline[0]) == TIMELINE_COLUMNS
    completed = [r for r in recs if r["state"] == "completed"]
    assert len(timeline) == len(completed)
    assert [int(r["size"]) for r in timeline[:3]] == [1, 2, 3]
    assert max(int(r["size"]) for r in timeline) == 20


def test_population_timeline_ages_out_the_oldest_or_drops_the_worst() -> None:
    recs = [{"proposal_seq": i, "fitness": f, "completion_rank": i, "state": "completed"}
            for i, f in enumerate([0.5, 0.9, 0.1, 0.7])]
    aging = population_timeline(recs, 2, "aging")
    assert [(r["best"], r["worst"]) for r in aging] == [(0.5, 0.5), (0.9, 0.5), (0.9, 0.1), (0.7, 0.1)]
    non_aging = population_timeline(recs, 2, "non-aging")
    assert [(r["best"], r["worst"]) for r in non_aging] == [(0.5, 0.5), (0.9, 0.5), (0.9, 0.5), (0.9, 0.7)]
    assert aging[-1]["median"] == pytest.approx(0.4)
    # Any other algorithm (a plug-in, the fixed list of a final training) shows the recent window, as aging does.
    assert population_timeline(recs, 2, "greedy") == aging


def test_lineage_follows_parents_and_rejects_cycles() -> None:
    recs = [{"proposal_seq": 0, "parent_seq": None}, {"proposal_seq": 1, "parent_seq": 0},
            {"proposal_seq": 2, "parent_seq": 1}]
    assert [r["proposal_seq"] for r in lineage(recs, 2)] == [2, 1, 0]
    with pytest.raises(ValueError, match="cycle"):
        lineage([{"proposal_seq": 0, "parent_seq": 1}, {"proposal_seq": 1, "parent_seq": 0}], 0)
    with pytest.raises(KeyError):
        lineage(recs, 9)


def test_histogram_bins() -> None:
    assert histogram([0, 1, 2, 3], 2) == ([2, 2], 2)
    assert histogram([0, 0, 5], 10) == ([2, 0, 0, 0, 0, 1], 1)
    assert histogram([], 5) == ([], 1)


def test_schema_fields_typeddicts_and_readme_table_agree() -> None:
    # The TypedDicts live in domain.status (the orchestrator builds the document); ui.schema re-exports them.
    assert schema.StatusSnapshot is status.StatusSnapshot and schema.SCHEMA_VERSION == status.SCHEMA_VERSION
    hints = typing.get_type_hints(schema.StatusSnapshot)
    top_level = {f.path for f in schema.FIELDS if "." not in f.path}
    assert top_level == set(hints)
    required = {f.path for f in schema.FIELDS if "." not in f.path and f.required}
    assert required == schema.StatusSnapshot.__required_keys__
    parts = {"best": schema.BestInfo, "population": schema.PopulationInfo, "pareto[]": schema.ParetoPoint,
             "top[]": schema.TopEntry, "workers[]": schema.WorkerEntry}
    for prefix, td in parts.items():
        assert {f.path.split(".", 1)[1] for f in schema.FIELDS if f.path.startswith(prefix + ".")} == set(
            typing.get_type_hints(td)), prefix
    readme = (Path(schema.__file__).parent / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| (yes|no) \|", readme, flags=re.M)
    assert [(p, t.strip(), r == "yes") for p, t, r in rows] == [
        (f.path, f.type.replace("|", " or "), f.required) for f in schema.FIELDS]
    # The contract: these keys are always there.
    for key in ("experiment", "completed", "failed", "target", "best", "best.fingerprint", "best.accuracy",
                "best.latency_ms", "best.fitness"):
        assert any(f.path == key and f.required for f in schema.FIELDS), key
