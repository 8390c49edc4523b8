"""End to end: a real `amoeba server` process and 4 `amoeba worker` processes run an NB201 experiment (C = 300).

Afterwards the database holds every proposal with its outcome, the population is the last P completed
members, and re-deriving every proposal from the event log and the seed gives exactly the stored genomes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import spec

import db
from evolution import verify
from orchestrator.replay import replay_inputs, verify_experiment
from orchestrator.service import OrchestratorService

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AMOEBA = [sys.executable, "-m", "cli.main"]
ROOT = Path(__file__).resolve().parent.parent
C, P, S = 300, 20, 5


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("AMOEBA_TOKEN", None)
    return env


def start_server(url: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [*AMOEBA, "server", "--db", url, "--port", "0", "--json", "--log-level", "WARNING", *extra],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, int(json.loads(line)["port"])


def stop_server(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_four_worker_processes_run_an_nb201_experiment_to_completion(sqlite_url: str) -> None:
    store = db.open_store(sqlite_url)
    try:
        OrchestratorService(store).create_experiment(spec("nb", population=P, sample=S, evaluations=C, seed=11))
    finally:
        store.close()
    server, port = start_server(sqlite_url)
    try:
        workers = [
            subprocess.Popen(
                [*AMOEBA, "worker", "--server", f"127.0.0.1:{port}", "--experiment", "nb", "--evaluator", "table",
                 "--json", "--log-level", "WARNING", "--worker-id", f"e2e-{k}",
                 # No worker may do it all (a slow machine can start the others late): the work is shared.
                 "--max-evaluations", str(C // 2 + 1)],
                cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for k in range(4)
        ]
        summaries = []
        for w in workers:
            out, err = w.communicate(timeout=120)
            assert w.returncode == 0, err
            summaries.append(json.loads(out))
    finally:
        code = stop_server(server)
    assert code == 0, server.stderr.read() if server.stderr else ""
    assert all(s["exit_reason"] in ("done", "max-evaluations") for s in summaries)
    assert sum(s["evaluated"] for s in summaries) == C
    assert sum(s["evaluated"] > 0 for s in summaries) >= 2, summaries  # the work really was shared

    store = db.open_store(sqlite_url)
    try:
        with store.transaction() as tx:
            exp = tx.experiment("nb")
            assert exp is not None
            rows = tx.individuals(exp.id, -1, 10_000)
            population = [r.proposal_seq for r in tx.population(exp.id)]
        # Every proposal has its outcome, and each was made exactly once, numbered 0..C-1.
        assert sorted(r.proposal_seq for r in rows) == list(range(C))
        assert {r.state for r in rows} == {"completed"}
        assert all(r.accuracy is not None and 0 < r.accuracy < 1 for r in rows)
        # The orchestrator priced each child's simulated Edge TPU latency when it proposed it, and the table
        # evaluator's reports (which carry none) keep it (NB201 cells: about 1 ms).
        assert all(r.latency_ms is not None and 0.5 < r.latency_ms < 3.0 and r.fits_on_chip for r in rows)
        # The population is the last P members to complete, whatever order the workers reported in.
        by_completion = sorted(rows, key=lambda r: r.completion_rank)
        assert [r.completion_rank for r in by_completion] == list(range(C))
        assert sorted(population) == sorted(r.proposal_seq for r in by_completion[-P:])
        # Re-deriving every proposal from the event log and the seed gives exactly the stored genomes.
        inputs, problems = replay_inputs(store, "nb")
        assert problems == []
        assert verify(inputs.algorithm, inputs.spec.seed, inputs.events) is None
        report = verify_experiment(store, "nb")
        assert report.ok and (report.proposals, report.completed) == (C, C), report.problems
        assert any(r.parent_seq is not None for r in rows)  # evolution happened, not just random sampling
    finally:
        store.close()


def test_server_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    proc = subprocess.run([*AMOEBA, "server", "--db", url, "--port", "0"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("amoeba: error: ") and "amoeba migrate" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_sigterm_on_a_worker_releases_its_lease_and_exits_zero(sqlite_url: str) -> None:
    store = db.open_store(sqlite_url)
    service = OrchestratorService(store)
    service.create_experiment(spec("slow", population=3, sample=2, evaluations=5))
    server, port = start_server(sqlite_url)
    try:
        worker = subprocess.Popen(
            [*AMOEBA, "worker", "--server", f"127.0.0.1:{port}", "--experiment", "slow", "--sleep", "60", "--json",
             "--log-level", "WARNING"],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.time() + 60
        while service.status("slow")["leased"] == 0:
            assert time.time() < deadline and worker.poll() is None, "the worker never leased"
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        summary = json.loads(out)
        assert (summary["released"], summary["evaluated"], summary["exit_reason"]) == (1, 0, "stopped")
        status = service.status("slow")
        assert (status["leased"], status["queued"], status["completed"]) == (0, 1, 0)
    finally:
        assert stop_server(server) == 0
        store.close()
