"""`amoeba bench nb201`: the published NAS-Bench-201 protocol, table options and user errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tables.nb201 import default_table_path

pytestmark = pytest.mark.e2e

AMOEBA = [sys.executable, "-m", "cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AMOEBA, *args], capture_output=True, text=True, timeout=120, check=False)


def test_default_protocol_500_runs_aging_beats_random() -> None:
    proc = run("bench", "nb201", "--runs", "500", "--algorithms", "aging,random", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    aging, rand = doc["algorithms"]["aging"], doc["algorithms"]["random"]
    assert aging["runs"] == rand["runs"] == 500
    # Published: REA 93.92 +- 0.30, random 93.70 +- 0.36.
    assert aging["mean"] >= 93.85
    assert aging["mean"] - rand["mean"] >= 0.10
    # A 12,000 s budget of ~120 s evaluations: about a hundred evaluations per run.
    assert 80 < aging["mean_evaluations"] < 130
    assert doc["protocol"]["budget_seconds"] == 12000.0 and doc["protocol"]["population"] == 10


def test_custom_table_columns_and_evaluation_budget(tmp_path: Path) -> None:
    # A table of the same shape with a synthetic column: fitness = number of conv_3x3 edges.
    src = default_table_path()
    out = tmp_path / "t.csv"
    with src.open(newline="") as fh, out.open("w", newline="") as oh:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(oh, fieldnames=["arch_str", "convs"])
        writer.writeheader()
        for row in reader:
            writer.writerow({"arch_str": row["arch_str"], "convs": row["arch_str"].count("nor_conv_3x3")})
    proc = run("bench", "nb201", "--table", str(out), "--fitness-column", "convs", "--report-column", "convs",
               "--budget-evaluations", "60", "--runs", "20", "--algorithms", "aging,non-aging,random", "--json")
    assert proc.returncode == 0, proc.stderr
    algs = json.loads(proc.stdout)["algorithms"]
    assert set(algs) == {"aging", "non-aging", "random"}
    assert all(a["mean_evaluations"] == 60 for a in algs.values())
    # Six conv edges is the optimum; in 60 evaluations evolution climbs well past random sampling.
    assert algs["aging"]["mean"] > algs["random"]["mean"] + 0.5
    assert algs["aging"]["mean"] >= 4.0


def test_one_bench_command_per_space_with_a_tabular_benchmark() -> None:
    # Registered from the space registry: nb201 has a table, nasnet has none.
    proc = run("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "nb201" in proc.stdout and "nasnet" not in proc.stdout
    missing = run("bench", "nasnet")
    assert missing.returncode != 0


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    for args, message in [
        (["--fitness-column", "nope"], "no column 'nope'"),
        (["--algorithms", "no-such-algorithm"], "unknown algorithm"),
        (["--table", str(tmp_path / "missing.csv")], "not found"),
        (["--runs", "0"], "must be positive"),
    ]:
        proc = run("bench", "nb201", "--runs", "1", *args)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
