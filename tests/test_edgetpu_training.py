"""Training a block-space child: the preset's network (a narrow proxy) reaches the model, the cell spaces keep
their cells/filters, and a real edgetpu-tiny run on the CIFAR fixture learns."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

import spaces
from nets.build import model_stats
from tests.builders import trial
from tests.fixtures_data import write_cifar_archive
from worker.evaluator import EvaluationFailed
from worker.training.evaluator import TrainEvaluator, training_network
from worker.training.presets import resolve_training

pytestmark = pytest.mark.jax


def test_the_training_network_of_each_space() -> None:
    edgetpu = spaces.named_genome("efficientnet-edgetpu-s")
    assert training_network(edgetpu, resolve_training({"preset": "edgetpu-tiny"})) == {"depth": 0.16, "width": 0.25}
    assert training_network(edgetpu, resolve_training({"preset": "edgetpu-cifar"})) == {}
    # The cell spaces' presets set N and F, as before; a network mapping may override them.
    nasnet = spaces.named_genome("nasnet-a")
    assert training_network(nasnet, resolve_training({"preset": "tiny"})) == {"cells": 1, "filters": 8}
    assert training_network(nasnet, resolve_training({"preset": "tiny", "network": {"cells": 2}})) == {
        "cells": 2, "filters": 8}
    with pytest.raises(EvaluationFailed, match="the edgetpu network has no cells"):
        training_network(edgetpu, resolve_training({"preset": "tiny", "network": {"cells": 2}}))
    with pytest.raises(EvaluationFailed, match="the nasnet network has no depth, width"):
        training_network(nasnet, resolve_training({"preset": "edgetpu-tiny"}))


def test_an_edgetpu_tiny_child_trains_on_the_fixture(tmp_path: Path) -> None:
    write_cifar_archive(tmp_path / "data", per_batch=120, test_size=10)
    evaluator = TrainEvaluator(str(tmp_path / "data"), cache_dir=tmp_path / "cache", compilation_cache=False,
                               download=False, progress=False)
    genome = spaces.get("edgetpu").sample(random.Random(3))
    training = {"preset": "edgetpu-tiny", "epochs": 3}
    metrics = evaluator.evaluate(trial(genome.to_json(), space="edgetpu", seed=5, training=training, experiment="t"),
                                 threading.Event())
    assert metrics.accuracy > 0.3  # 10 classes: chance is 0.1
    # The proxy is the preset's narrow, shallow network at 16x16, not the deployed one.
    stats = model_stats(genome, {"width": 0.25, "depth": 0.16}, "cifar10", image_size=16, num_classes=10)
    assert (metrics.params, metrics.mult_adds) == (stats.params, stats.mult_adds)
    assert metrics.params < model_stats(genome, None, "cifar10").params / 10
    assert metrics.latency_ms is None  # the orchestrator priced the deployed network when it proposed the child
