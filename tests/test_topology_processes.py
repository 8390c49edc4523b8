"""The docker-compose topology as plain processes: a throwaway PostgreSQL, ``amoeba migrate``, ``amoeba server``
with a token, ``amoeba experiment create`` and three ``amoeba worker`` processes complete an NB201 table
experiment; then status through the server and replay straight from the database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ui.schema import snapshot_problems

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

TOKEN = "topology-test-token"
CONFIG = """\
name: topology
space: nb201
population: 10
sample: 3
evaluations: 90
seed: 21
mutation: {type: edge_op}
training:
  table: {sleep_s: [0.0, 0.02]}
lease_timeout_s: 20
"""


def _amoeba(*args: str, env: dict[str, str], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False, **kw)


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    from cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    return captured.out


def test_postgres_migrate_server_with_token_and_three_workers_as_processes(
    tmp_path: Path, pg_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg_server.database()  # empty: `amoeba migrate` creates the schema, as the compose service does
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")}
    migrated = _amoeba("migrate", "--db", url, "--json", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["changed"] is True

    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "server", "--db", url, "--port", "0", "--json", "--log-level", "WARNING"],
        env=env | {"AMOEBA_TOKEN": TOKEN}, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen[str]] = []
    try:
        assert server.stdout is not None
        listening = json.loads(server.stdout.readline() or "{}")
        assert listening.get("auth") is True, server.stderr.read() if server.stderr else ""
        address = f"127.0.0.1:{listening['port']}"

        # Without the token the server refuses, in one line.
        denied = _amoeba("experiment", "list", "--server", address, env=env, cwd=tmp_path)
        assert denied.returncode != 0 and "refused the credentials" in denied.stderr

        (tmp_path / "topology.yaml").write_text(CONFIG)
        authed = env | {"AMOEBA_TOKEN": TOKEN}
        created = _amoeba("experiment", "create", "--config", "topology.yaml", "--server", address, "--json",
                          env=authed, cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["evaluations"] == 90

        for i in range(3):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "cli.main", "worker", "--server", address, "--evaluator", "table",
                 "--worker-id", f"topo-{i}", "--json", "--log-level", "WARNING",
                 "--max-evaluations", "46"],  # no worker may do all 90 alone: the work is shared however slow the start
                env=authed, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL,
            ))
        summaries = []
        for w in workers:
            out, err = w.communicate(timeout=120)
            assert w.returncode == 0, err
            summaries.append(json.loads(out.strip().splitlines()[-1]))
        assert sum(s["evaluated"] for s in summaries) == 90
        assert all(s["exit_reason"] in ("done", "max-evaluations") for s in summaries)
        assert sum(1 for s in summaries if s["evaluated"] > 0) >= 2  # the work really was shared

        status = _amoeba("status", "--server", address, "--experiment", "topology", "--json", env=authed, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert snapshot_problems(doc) == []
        assert (doc["state"], doc["completed"], doc["target"]) == ("done", 90, 90)
        assert {w["worker_id"] for w in doc["workers"]} == {"topo-0", "topo-1", "topo-2"}
        assert sum(w["evaluations"] for w in doc["workers"]) == 90

        # The database alone (read-only transactions), with the server still up, says the same and replays
        # (in this process: one interpreter start-up less).
        doc_db = json.loads(_in_process(capsys, "status", "--db", url, "--json"))
        assert doc_db["best"] == doc["best"] and doc_db["completed"] == 90
        report = json.loads(_in_process(capsys, "replay", "--db", url, "--experiment", "topology", "--verify", "--json"))
        assert report["ok"] is True and report["proposals"] == 90
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0
