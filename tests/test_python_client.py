"""The Python face as the README shows it: ``amoeba.Client`` driving an ask/tell loop against a real server,
and a user's function as the evaluator of ``amoeba up`` (``--evaluator MODULE:FUNCTION``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
AMOEBA = [sys.executable, "-m", "cli.main"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AMOEBA_TOKEN", "AMOEBA_SERVER")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def test_the_readme_shows_both_examples_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("my_evaluator.py", "client_loop.py"):
        body = (EXAMPLES / name).read_text().split('"""', 2)[2].strip()  # the code after the docstring
        assert body in readme, f"README must show examples/{name} as it is"


def test_a_user_function_evaluates_50_nb201_children_through_amoeba_up(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "my_evaluator.py", tmp_path / "my_evaluator.py")
    run = subprocess.run(
        [*AMOEBA, "up", "--config", "nb201-table", "--evaluations", "50", "--evaluator", "my_evaluator:evaluate",
         "--db", f"sqlite:///{tmp_path / 'demo.db'}", "--results", str(tmp_path / "results"), "--no-export",
         "--json"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert (summary["state"], summary["completed"], summary["failed"]) == ("done", 50, 0)
    assert summary["evaluator"] == "my_evaluator:evaluate"
    best = summary["best"]
    # The function looked the genome up in the NB201 table: the best is a real table accuracy, with the
    # latency the orchestrator priced for it.
    assert 0.8 < best["accuracy"] < 0.95 and best["latency_ms"] > 0
    status = json.loads(subprocess.run([*AMOEBA, "status", "--db", f"sqlite:///{tmp_path / 'demo.db'}", "--json"],
                                       cwd=tmp_path, env=_env(), capture_output=True, text=True, check=True).stdout)
    assert {w["host"] for w in status["workers"]} and status["completed"] == 50


def test_the_client_loop_example_runs_an_experiment_to_the_end(tmp_path: Path) -> None:
    subprocess.run([*AMOEBA, "migrate", "--db", f"sqlite:///{tmp_path / 'client.db'}"], cwd=ROOT, env=_env(),
                   capture_output=True, check=True)
    server = subprocess.Popen([*AMOEBA, "server", "--db", f"sqlite:///{tmp_path / 'client.db'}", "--port", "0",
                               "--json", "--log-level", "WARNING"], cwd=ROOT, env=_env(AMOEBA_TOKEN="s3cret"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line, server.stderr.read() if server.stderr else ""
        port = json.loads(line)["port"]
        run = subprocess.run([sys.executable, str(EXAMPLES / "client_loop.py")], cwd=ROOT, capture_output=True,
                             text=True, timeout=300, check=False,
                             env=_env(AMOEBA_SERVER=f"127.0.0.1:{port}", AMOEBA_TOKEN="s3cret"))
        assert run.returncode == 0, run.stderr[-2000:]
        assert "'fitness':" in run.stdout and "'summary':" in run.stdout
        import amoeba

        with amoeba.Client(f"127.0.0.1:{port}", token="s3cret") as client:
            status = client.status("client-demo")
            assert (status["state"], status["completed"], status["failed"]) == ("done", 300, 0)
            assert status["workers"][0]["worker_id"] == "my-laptop"
            done = list(client.individuals("client-demo", state="completed"))
            assert len(done) == 300 and all(i.genome_json.startswith("{") for i in done)
            with pytest.raises(amoeba.AlreadyExists):
                client.create_experiment("nb201-table", name="client-demo")
            with pytest.raises(amoeba.NotFound):
                client.status("nope")
        with amoeba.Client(f"127.0.0.1:{port}", token="wrong") as client, pytest.raises(amoeba.Unauthenticated):
            client.experiments()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
