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


def test_default_protocol_500_runs_rl_matches_the_published_reinforce() -> None:
    proc = run("bench", "nb201", "--runs", "500", "--algorithms", "rl", "--json")
    assert proc.returncode == 0, proc.stderr
    rl = json.loads(proc.stdout)["algorithms"]["rl"]
    assert rl["runs"] == 500
    # Published (NAS-Bench-201, REINFORCE): 93.85 +- 0.37; the claim is within 0.15 of it.
    assert abs(rl["mean"] - 93.85) <= 0.15, rl
    assert 80 < rl["mean_evaluations"] < 130


def test_curves_plot_and_noise(tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    args = ["bench", "nb201", "--runs", "6", "--algorithms", "aging,rl,random", "--json", "--plot", str(png)]
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("aging", "rl", "random"):
        entry = doc["algorithms"][name]
        assert {"mean", "std", "runs", "mean_evaluations", "curves", "us_per_evaluation"} <= set(entry)
        curves = entry["curves"]
        assert len(curves["t"]) == len(curves["mean"]) == len(curves["std"]) > 50
        assert curves["t"] == sorted(curves["t"]) and curves["t"][-1] == 12000.0
        # The reported accuracy of the best-fitness genome so far (it may fall when a fitter genome tests
        # worse); at the end of the budget it is the runs' final value.
        assert all(0 < m <= 100 and s >= 0 for m, s in zip(curves["mean"], curves["std"], strict=True))
        assert curves["mean"][-1] == pytest.approx(entry["mean"], abs=1e-3)
    # The curves of the three algorithms share one time grid from the first point every run has a value.
    assert len({tuple(doc["algorithms"][n]["curves"]["t"]) for n in ("aging", "rl", "random")}) == 1
    # Noise: seeded per run and evaluation, so the same command gives the same figures; other figures than
    # without noise.
    noisy = [json.loads(run(*args[:-3], "--json", "--noise-std", "1.0").stdout)["algorithms"] for _ in range(2)]
    for entries in noisy:
        for entry in entries.values():
            entry.pop("us_per_evaluation")  # wall time: the only figure that varies
    assert noisy[0] == noisy[1]
    assert noisy[0]["aging"]["mean"] != doc["algorithms"]["aging"]["mean"]
    # An evaluation budget draws the curves against evaluations.
    proc = run("bench", "nb201", "--runs", "3", "--algorithms", "aging", "--budget-evaluations", "40", "--json")
    doc = json.loads(proc.stdout)
    assert doc["protocol"]["curve_x"] == "evaluations" and doc["algorithms"]["aging"]["curves"]["t"][-1] == 40.0


def test_new_flags_are_checked_in_one_line(tmp_path: Path) -> None:
    for args, message in [
        (["--noise-std", "-1"], "--noise-std must be 0 or more"),
        (["--noise-std", "nan"], "must be a finite number"),
        (["--plot", str(tmp_path / "x.svg")], "--plot must name a .png file"),
        (["--algorithms", "rl", "--options", "{"], "--options must be JSON"),
        (["--algorithms", "rl", "--options", '{"aging": {}}'], "not in --algorithms"),
        (["--algorithms", "rl", "--options", '{"rl": {"policy": "gru"}}'], "rl: algorithm option policy"),
        (["--algorithms", "rl,rl"], "names an algorithm twice"),
    ]:
        proc = run("bench", "nb201", "--runs", "1", *args)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
