"""``amoeba up --config edgetpu-tiny`` as a user runs it: real training of block-space children on the CIFAR
fixture, each report carrying the simulated latency of the deployed (224x224, 1000-class) network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import spaces
from db import open_store
from orchestrator.service import OrchestratorService
from tests.fixtures_data import write_cifar_archive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_edgetpu_tiny_trains_for_real_and_prices_the_deployed_network(tmp_path: Path) -> None:
    write_cifar_archive(tmp_path / "data", per_batch=120, test_size=10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")} | {"AMOEBA_CACHE": str(tmp_path / "cache")}
    db = f"sqlite:///{tmp_path / 'amoeba.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "up", "--config", "edgetpu-tiny", "--evaluations", "2", "--workers", "1",
         "--data-dir", str(tmp_path / "data"), "--db", db, "--results", str(tmp_path / "results"), "--json"],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert (summary["state"], summary["completed"], summary["failed"], summary["evaluator"]) == ("done", 2, 0, "train")
    space = spaces.get("edgetpu")
    deployed = space.latency_settings({"input_size": 224, "num_classes": 1000, "device": "usb3"})
    service = OrchestratorService(open_store(db))
    try:
        completed = service.list_individuals("edgetpu-tiny", 100, "", "completed").individuals
    finally:
        service.store.close()
    assert len(completed) == 2
    for individual in completed:
        genome = space.parse(individual.genome_json)
        latency, fits = space.price(genome, deployed)
        assert individual.latency_ms == pytest.approx(latency, rel=1e-9)
        # Really trained: the fixture is learnable (chance is 0.1), and the proxy is the narrow training network.
        assert individual.accuracy is not None and individual.accuracy > 0.3
        assert individual.params is not None and individual.params < space.graph(genome).total_params() / 10
        reward = individual.accuracy * (latency / 6.0) ** -0.07 * (1.05 if fits else 1.0)
        assert individual.fitness == pytest.approx(reward, rel=1e-6)
