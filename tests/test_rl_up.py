"""The learned algorithms through the real stack: an rl experiment (NB201 table evaluator, 4 worker processes,
C = 300) and a guided one (2 workers, C = 100) under ``amoeba up`` complete, and ``amoeba replay --verify``
re-derives every proposal of each parallel run; ``amoeba compare`` reads both from the same database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = """\
name: {name}
space: nb201
population: 20
sample: 5
evaluations: {evaluations}
seed: 3
algorithm: {algorithm}
mutation: {{type: edge_op}}
objective: {{kind: accuracy}}
training:
  table: {{column: c10v_valid_acc_12ep, cost_column: est_cost_12ep_sec, sleep_s: 0}}
lease_timeout_s: 30
max_attempts: 3
"""


#: (experiment, algorithm, C, worker processes)
RUNS = (("rl-c300", "rl", 300, 4), ("guided-c100", "guided", 100, 2))


def amoeba(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")} | {"COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("rl-up")
    url = f"sqlite:///{tmp / 'runs.db'}"
    for name, algorithm, evaluations, workers in RUNS:
        (tmp / f"{name}.yaml").write_text(CONFIG.format(name=name, algorithm=algorithm, evaluations=evaluations))
        proc = amoeba("up", "--config", f"{name}.yaml", "--workers", str(workers), "--db", url, "--results",
                      str(tmp / "results"), "--artifacts", "none", "--no-export", cwd=tmp)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert f"{name} done: {evaluations}/{evaluations} evaluations, 0 failed" in proc.stdout
    return tmp, url


@pytest.mark.parametrize(("name", "evaluations"), [(r[0], r[2]) for r in RUNS])
def test_a_parallel_run_completes_and_replay_verifies_every_proposal(database: tuple[Path, str], name: str,
                                                                     evaluations: int) -> None:
    tmp, url = database
    proc = amoeba("replay", "--db", url, "--experiment", name, "--verify", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert f"verified {evaluations} proposals, {evaluations} completions and 0 failures" in proc.stdout
    assert "all match" in proc.stdout


def test_compare_reads_both_experiments(database: tuple[Path, str]) -> None:
    tmp, url = database
    png = tmp / "compare.png"
    proc = amoeba("compare", "--db", url, "rl-c300", "guided-c100", "--plot", str(png), "--json", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["plot"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"
    for name, algorithm, evaluations, _ in RUNS:
        row = doc["experiments"][name]
        assert row["algorithm"] == algorithm and row["state"] == "done"
        assert row["evaluations"] == evaluations and row["population"] == 20
        assert 0.8 < row["best_fitness"] <= 0.95 and row["evaluations_to_99"] <= evaluations
        assert row["hours_to_99"] <= row["hours"]
        assert row["progress"]["best_fitness"] == sorted(row["progress"]["best_fitness"])
        assert row["progress"]["best_fitness"][-1] == row["best_fitness"]
    missing = amoeba("compare", "--db", url, "rl-c300", "nope", "--no-plot", cwd=tmp)
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == ["amoeba: error: no experiment named 'nope'"]


def test_compare_rows_of_an_experiment_without_completions() -> None:
    from cli.compare import summarize

    row = summarize([{"state": "leased", "fitness": None, "completion_rank": None, "proposal_seq": 0,
                      "completed_at": None, "in_population": False, "accuracy": None}], 100.0)
    assert row["evaluations"] == 0 and row["best_fitness"] is None and row["hours_to_99"] is None
    assert row["median_population_fitness"] is None and row["progress"]["best_fitness"] == []
