"""`amoeba worker` as a process: a user's ``--evaluator MODULE:FUNCTION`` against a real server (NB201, the
function reads the tabular benchmark), an exception in that function (a failed evaluation with its message,
the worker carries on), and SIGTERM while the server is gone (the worker exits at once, no retry storm)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import nb201_metrics, spec
from chaos_helpers import AMOEBA, ROOT, ServerProcess, check_invariants, env, free_port, status

import db
from orchestrator.service import OrchestratorService
from protos.client import OrchestratorClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: A user's evaluator module: it checks what a Trial is, then looks the genome up in the NB201 table.
USER_MODULE = '''\
import json

from genome import NB201Genome
from genome.base import Genome
from tables import nb201

_TABLE = None


def evaluate(trial):
    global _TABLE
    assert isinstance(trial.genome, Genome) and isinstance(trial.genome, NB201Genome), type(trial.genome)
    assert isinstance(trial.genome_json, str), type(trial.genome_json)
    assert json.loads(trial.genome_json) == trial.genome.to_json()
    assert trial.space == "nb201", trial.space
    assert isinstance(trial.seed, int) and not isinstance(trial.seed, bool), trial.seed
    assert isinstance(trial.training, dict) and trial.training["note"] == "from the config", trial.training
    if trial.proposal_seq in FAIL:
        raise ValueError(f"cannot build cell of proposal {trial.proposal_seq}")
    _TABLE = _TABLE or nb201.load_table()
    return {"accuracy": _TABLE.get(trial.genome, "c10v_valid_acc_12ep") / 100, "train_seconds": 2.5}
'''


def _create(url: str, name: str, evaluations: int) -> None:
    store = db.open_store(url)
    try:
        OrchestratorService(store).create_experiment(
            spec(name, population=4, sample=2, evaluations=evaluations, seed=3, training={"note": "from the config"}))
    finally:
        store.close()


@pytest.fixture
def user_code(tmp_path: Path) -> Path:
    """A folder outside the repository (and not the worker's cwd): only PYTHONPATH makes its modules importable."""
    folder = tmp_path / "user-code"
    folder.mkdir()
    (folder / "nas_user_eval.py").write_text("FAIL = frozenset()\n\n" + USER_MODULE)
    (folder / "nas_user_flaky.py").write_text("FAIL = frozenset({1, 3})\n\n" + USER_MODULE)
    return folder


@pytest.fixture
def server(sqlite_url: str) -> Iterator[ServerProcess]:
    running = ServerProcess(sqlite_url, free_port())
    running.start()
    yield running
    assert running.stop() == 0


def _worker(server: ServerProcess, experiment: str, evaluator: str, user_code: Path, cwd: Path) -> dict[str, Any]:
    environment = env()
    environment["PYTHONPATH"] = str(user_code) + os.pathsep + environment["PYTHONPATH"]
    proc = subprocess.run(
        [*AMOEBA, "worker", "--server", server.address, "--experiment", experiment, "--evaluator", evaluator,
         "--json", "--log-level", "WARNING", "--worker-id", f"user-{experiment}"],
        cwd=cwd, env=environment, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary


def test_a_user_function_evaluates_an_nb201_experiment_to_the_end(
    sqlite_url: str, server: ServerProcess, user_code: Path, tmp_path: Path
) -> None:
    _create(sqlite_url, "user", evaluations=10)
    summary = _worker(server, "user", "nas_user_eval:evaluate", user_code, cwd=tmp_path)
    with OrchestratorClient(server.address, rpc_timeout_s=10) as client:
        rows = client.list_individuals("user", page_size=100).individuals
    reasons = [r.failure_reason for r in rows if r.failure_reason]
    assert (summary["evaluated"], summary["failed"], summary["exit_reason"]) == (10, 0, "done"), reasons
    doc = status(sqlite_url, "user")
    assert (doc["state"], doc["completed"], doc["failed"]) == ("done", 10, 0)
    # What the function returned is what was stored: the table's accuracy, and its train_seconds.
    assert len(rows) == 10 and {r.state for r in rows} == {"completed"}
    for r in rows:
        assert r.accuracy == pytest.approx(nb201_metrics(r.genome_json).accuracy)
        assert r.train_seconds == pytest.approx(2.5)
    check_invariants(sqlite_url, "user")


def test_an_exception_in_the_user_function_fails_that_evaluation_and_the_worker_carries_on(
    sqlite_url: str, server: ServerProcess, user_code: Path, tmp_path: Path
) -> None:
    _create(sqlite_url, "flaky", evaluations=6)
    summary = _worker(server, "flaky", "nas_user_flaky:evaluate", user_code, cwd=tmp_path)
    # Failed proposals do not count towards C: the worker went on until 6 completed.
    assert (summary["evaluated"], summary["failed"], summary["dropped"], summary["exit_reason"]) == (6, 2, 0, "done")
    with OrchestratorClient(server.address, rpc_timeout_s=10) as client:
        failed = client.list_individuals("flaky", state="failed").individuals
        completed = client.list_individuals("flaky", state="completed").individuals
    assert sorted(r.proposal_seq for r in failed) == [1, 3]
    for r in failed:
        # The exception's type and message (one line), and where in the user's file it was raised.
        reason = r.failure_reason or ""
        assert reason.startswith(f"ValueError: cannot build cell of proposal {r.proposal_seq} (nas_user_flaky.py:"), reason
        assert "\n" not in reason
    assert len(completed) == 6 and 1 not in {r.proposal_seq for r in completed}
    doc = status(sqlite_url, "flaky")
    assert (doc["state"], doc["completed"], doc["failed"]) == ("done", 6, 2)
    check_invariants(sqlite_url, "flaky")


def _stamp(line: str) -> datetime.datetime | None:
    # logging's default asctime: "2026-12-01 17:37:24,772"
    try:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None


def test_sigterm_while_the_server_is_gone_exits_at_once_without_a_retry_storm(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    proc = subprocess.Popen(
        # A patient worker: on its own it would keep retrying for ten minutes.
        [*AMOEBA, "worker", "--server", f"127.0.0.1:{port}", "--experiment", "gone", "--give-up-after", "600",
         "--json", "--log-level", "INFO"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while sum("retrying" in ln for ln in lines) < 2:
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the worker never retried: " + "".join(lines)
            time.sleep(0.05)
        signalled_at = datetime.datetime.now()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)  # (stderr is the reader's; stdout holds one summary line)
        except subprocess.TimeoutExpired:
            raise AssertionError("the worker did not exit within 5 s of SIGTERM: " + "".join(lines[-20:])) from None
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(10)
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert elapsed < 5 and proc.returncode == 0, "".join(lines[-20:])
    assert len(lines) < 100, f"{len(lines)} lines on stderr"
    # At most the one last attempt after the signal; it is not logged as a retry: no retry is stamped after it.
    late = [ln for ln in lines if "retrying" in ln and (_stamp(ln) or signalled_at) > signalled_at]
    assert len(late) <= 1, late
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["exit_reason"], summary["evaluated"], summary["released"]) == ("stopped", 0, 0)


def test_sigterm_with_a_lease_held_and_the_server_gone_tries_the_release_once_and_exits(
    sqlite_url: str, tmp_path: Path
) -> None:
    _create(sqlite_url, "held", evaluations=5)
    server = ServerProcess(sqlite_url, free_port())
    server.start()
    proc = subprocess.Popen(
        [*AMOEBA, "worker", "--server", server.address, "--experiment", "held", "--sleep", "120",
         "--give-up-after", "600", "--json", "--log-level", "INFO"],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while status(sqlite_url, "held")["leased"] == 0:
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        server.kill()  # the server is gone while the worker evaluates
        time.sleep(1.0)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)  # (stderr is the reader's; stdout holds one summary line)
        except subprocess.TimeoutExpired:
            raise AssertionError("the worker did not exit within 5 s of SIGTERM: " + "".join(lines[-20:])) from None
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        server.stop()
    reader.join(10)
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert elapsed < 5 and proc.returncode == 0, "".join(lines[-20:])
    assert len(lines) < 100, f"{len(lines)} lines on stderr"
    # The release could not reach the server: said once; the lease expires on the server by itself.
    assert sum("could not release" in ln for ln in lines) == 1, "".join(lines)
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["exit_reason"], summary["evaluated"], summary["released"]) == ("stopped", 0, 0)
