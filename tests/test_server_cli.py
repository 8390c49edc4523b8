"""`amoeba experiment create/list/show` (--db and --server) and `amoeba worker`, run in-process: JSON and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from orchestrator.server import RunningServer, ServerConfig, start
from orchestrator.service import open_service

pytestmark = pytest.mark.e2e

CONFIG = "name: cli-exp\nspace: nb201\npopulation: 4\nsample: 2\nevaluations: 6\nseed: 2\n"


def amoeba(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture
def server(sqlite_url: str) -> Iterator[RunningServer]:
    service = open_service(sqlite_url)
    running = start(service, ServerConfig(port=0, grace_s=0.5))
    yield running
    running.stop(0.5)
    service.store.close()


def test_experiment_commands_on_a_database(capsys: pytest.CaptureFixture[str], sqlite_url: str, config: str) -> None:
    code, out, _ = amoeba(capsys, "experiment", "create", "--config", config, "--db", sqlite_url, "--json")
    created = json.loads(out)
    assert code == 0 and (created["name"], created["evaluations"], created["state"]) == ("cli-exp", 6, "running")
    assert created["spec"]["population_size"] == 4
    code, _, err = amoeba(capsys, "experiment", "create", "--config", config, "--db", sqlite_url)
    assert code == 2 and err.startswith("amoeba: error: ") and len(err.strip().splitlines()) == 1
    code, out, _ = amoeba(capsys, "experiment", "list", "--db", sqlite_url, "--json")
    assert [e["name"] for e in json.loads(out)["experiments"]] == ["cli-exp"]
    code, out, _ = amoeba(capsys, "experiment", "show", "cli-exp", "--db", sqlite_url, "--json")
    shown = json.loads(out)
    assert shown["experiment"]["name"] == "cli-exp" and shown["status"]["completed"] == 0


def test_experiment_and_worker_commands_through_a_server(
    capsys: pytest.CaptureFixture[str], server: RunningServer, config: str
) -> None:
    code, out, _ = amoeba(capsys, "experiment", "create", "--config", config, "--server", server.address, "--json")
    assert code == 0 and json.loads(out)["name"] == "cli-exp"
    code, out, _ = amoeba(capsys, "worker", "--server", server.address, "--experiment", "cli-exp", "--json",
                          "--log-level", "WARNING")
    assert code == 0 and json.loads(out)["evaluated"] == 6
    code, out, _ = amoeba(capsys, "experiment", "show", "cli-exp", "--server", server.address, "--json")
    shown = json.loads(out)
    assert shown["experiment"]["state"] == "done" and shown["status"]["completed"] == 6
    code, _, err = amoeba(capsys, "experiment", "show", "missing", "--server", server.address)
    assert code == 2 and "no experiment named 'missing'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["worker", "--server", "nohost"], "HOST:PORT"),
        (["worker", "--server", "127.0.0.1:1", "--evaluator", "magic"], "unknown evaluator"),
        (["worker", "--server", "127.0.0.1:1", "--evaluator", "no_such_module_xyz:evaluate"],
         "cannot import evaluator module 'no_such_module_xyz'"),
        (["worker", "--server", "127.0.0.1:1", "--evaluator", "json:no_such_function"],
         "module 'json' has no function 'no_such_function'"),
        (["worker", "--server", "127.0.0.1:1", "--evaluator", "table", "--give-up-after", "0"], "--give-up-after"),
        (["worker", "--server", "127.0.0.1:1", "--sleep", "3,1"], "--sleep"),
        (["worker", "--server", "127.0.0.1:1", "--experiment", "x", "--wait"], "--wait"),
        (["experiment", "list", "--server", "127.0.0.1:1", "--db", "sqlite:///x.db"], "either --server or --db"),
        (["server", "--tls-cert", "only.pem"], "both --tls-cert and --tls-key"),
        (["server", "--mode", "fast"], "--mode"),
    ],
)
def test_user_mistakes_are_one_line(capsys: pytest.CaptureFixture[str], args: list[str], text: str) -> None:
    code, _, err = amoeba(capsys, *args)
    assert code == 2 and err.startswith("amoeba: error: ") and text in err, err
    assert len(err.strip().splitlines()) == 1
