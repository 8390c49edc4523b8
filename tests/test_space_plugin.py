"""A third-party search space installed as a plug-in (tests/plugins: a package and its ``amoeba.spaces``
entry point, nothing else) runs an experiment through a real server and real worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"
AMOEBA = [sys.executable, "-m", "cli.main"]


def _env(with_plugin: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AMOEBA_TOKEN"}
    paths = [str(ROOT), *([str(PLUGINS)] if with_plugin else [])]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    return env


def _amoeba(*args: str, with_plugin: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AMOEBA, *args], cwd=ROOT, env=_env(with_plugin), capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_a_plugin_space_runs_an_experiment_through_the_real_server(tmp_path: Path, sqlite_url: str) -> None:
    config = tmp_path / "toy.yaml"
    config.write_text(json.dumps({"name": "toy-run", "space": "toy", "population": 6, "sample": 3,
                                  "evaluations": 30, "seed": 3, "objective": {"kind": "accuracy"}}))
    created = _amoeba("experiment", "create", "--db", sqlite_url, "--config", str(config), "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["space"] == "toy"
    server = subprocess.Popen([*AMOEBA, "server", "--db", sqlite_url, "--port", "0", "--json", "--log-level",
                               "WARNING"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        worker = _amoeba("worker", "--server", f"127.0.0.1:{port}", "--experiment", "toy-run", "--evaluator",
                         "toyspace:evaluate", "--json", "--log-level", "WARNING", timeout=120)
        assert worker.returncode == 0, worker.stderr
        assert json.loads(worker.stdout)["evaluated"] == 30
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    status = json.loads(_amoeba("status", "--db", sqlite_url, "--experiment", "toy-run", "--json").stdout)
    assert (status["state"], status["completed"], status["space"]) == ("done", 30, "toy")
    # Every report carries the latency the orchestrator priced with the plug-in's own lowering.
    assert status["best"]["latency_ms"] > 0 and status["best"]["accuracy"] >= 0.5
    assert all(len(p["fingerprint"]) == 16 for p in status["pareto"])
    verified = _amoeba("replay", "--db", sqlite_url, "--experiment", "toy-run", "--verify", "--json")
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["proposals"] == 30 and report["problems"] == []
    # Without the plug-in installed, the same database names a space nobody knows: one clear line.
    missing = _amoeba("replay", "--db", sqlite_url, "--experiment", "toy-run", "--verify", with_plugin=False)
    assert missing.returncode != 0
    assert "unknown search space 'toy'" in missing.stderr and "Traceback" not in missing.stderr
