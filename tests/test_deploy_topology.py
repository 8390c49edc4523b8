"""The docker-compose topology as plain processes: PostgreSQL, migrate, a server with a token, three workers.

Every command and environment comes from docker-compose.yml itself; only the addresses are mapped
to this machine (the `postgres` service -> a throwaway PostgreSQL, `orchestrator:50051` -> a free
loopback port, /data -> a temp folder, /app -> the repository). The server is declared ready the way
Compose does it: by its health check command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import COMPOSE, IMAGE_ROOT, as_list, load, load_healthcheck

import db
from orchestrator.service import OrchestratorService
from ui.schema import snapshot_problems

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[1]
C = 24
REPLICAS = 3
TOKEN = "topology-token"
healthcheck = load_healthcheck()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_compose_topology_runs_as_processes(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()  # empty and unmigrated, like a fresh pgdata volume
    port = _free_port()
    config = tmp_path / "topology.yaml"
    config.write_text(f"name: topology\nspace: nb201\npopulation: 6\nsample: 3\nevaluations: {C}\nseed: 5\n")
    services = load(COMPOSE, env={"AMOEBA_TOKEN": TOKEN, "AMOEBA_EVALUATOR": "table",
                                  "AMOEBA_CONFIG": str(config)})["services"]
    compose_url = as_list(services["migrate"]["command"])[-1]
    data = tmp_path / "data"
    data.mkdir()

    def local(token: str) -> str:
        # Map the compose network's names onto this machine.
        token = token.replace(compose_url, url).replace("orchestrator:50051", f"127.0.0.1:{port}")
        token = token.replace("localhost:50051", f"127.0.0.1:{port}")
        if token == "0.0.0.0":
            return "127.0.0.1"
        if token == "50051":
            return str(port)
        if token == "/data":
            return str(data)
        return str(ROOT / token[len(IMAGE_ROOT):]) if token.startswith(IMAGE_ROOT) else token

    def argv(service: str, key: str = "command") -> list[str]:
        cmd = [local(t) for t in as_list(services[service][key])]
        if cmd[0] == "amoeba":
            return [sys.executable, "-m", "cli.main", *cmd[1:]]
        if cmd[:2] == ["CMD", "python"]:
            return [sys.executable, *cmd[2:]]
        raise AssertionError(f"unexpected command {cmd}")

    def env(service: str) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")}
        out["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
        # Compose passes unset optional variables as empty strings: the commands must read them as unset.
        out.update({k: local(str(v)) for k, v in (services[service].get("environment") or {}).items()})
        return out

    migrate = subprocess.run(argv("migrate"), env=env("migrate"), cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    assert env("orchestrator")["AMOEBA_TLS_CERT"] == "" and env("orchestrator")["AMOEBA_TOKEN"] == TOKEN

    server = subprocess.Popen(argv("orchestrator"), env=env("orchestrator"), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[subprocess.Popen[str]] = []
    try:
        # Wait in-process (a probe process per poll costs a second of CPU), then run the compose probe once.
        deadline = time.monotonic() + 60
        while not healthcheck.check(f"127.0.0.1:{port}", timeout=1.0)[0]:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the orchestrator never became healthy"
            time.sleep(0.1)
        probe = [sys.executable, *[local(t) for t in as_list(services["orchestrator"]["healthcheck"]["test"])[2:]]]
        assert subprocess.run(probe, env=env("orchestrator"), capture_output=True, timeout=30).returncode == 0

        created = subprocess.run([*argv("experiment"), "--json"], env=env("experiment"), cwd=tmp_path,
                                 capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr

        # Three replicas of the worker service. Each may do C/REPLICAS evaluations: as C are needed, every
        # replica does exactly its share, whichever starts first or runs fastest (on a quiet machine the
        # first one could otherwise finish all C before the others connect).
        worker_env = {**env("worker"), "AMOEBA_CACHE": str(data / "cache")}
        share = C // REPLICAS
        workers = [subprocess.Popen([*argv("worker"), "--json", "--worker-id", f"replica-{k}",
                                     "--max-evaluations", str(share)], env=worker_env,
                                    cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for k in range(REPLICAS)]
        summaries = []
        for w in workers:
            out, err = w.communicate(timeout=180)
            assert w.returncode == 0, err
            summaries.append(json.loads(out.strip().splitlines()[-1]))
        assert sum(s["evaluated"] for s in summaries) == C
        assert sum(s["evaluated"] > 0 for s in summaries) >= 2, summaries  # the replicas shared the work
        assert [s["evaluated"] for s in summaries] == [share] * REPLICAS, summaries
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(10)
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert code == 0, server.stderr.read() if server.stderr else ""

    store = db.open_store(url)
    try:
        doc = OrchestratorService(store).status("topology")
    finally:
        store.close()
    assert doc["completed"] == C and doc["state"] == "done" and doc["failed"] == 0
    seen = {w["worker_id"] for w in doc["workers"]}
    assert seen <= {f"replica-{k}" for k in range(REPLICAS)} and len(seen) >= 2, seen
    assert seen == {f"replica-{k}" for k in range(REPLICAS)}, seen
    assert snapshot_problems(json.loads(json.dumps(doc))) == []
