"""TrainEvaluator end to end: a trial in, real training of the genome's network on the CIFAR fixture, metrics out."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import spaces
from domain import Metrics
from tests.builders import trial
from tests.fixtures_data import write_cifar_archive
from worker.evaluator import EvaluationFailed
from worker.evaluators import build_evaluator
from worker.training.errors import DataError, DatasetUnavailable
from worker.training.evaluator import TrainEvaluator, short_seed
from worker.trial import Trial

pytestmark = pytest.mark.jax

NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
#: The NB201 skeleton with one cell per stage: the cheapest real network to compile on two CPU cores.
SMALL = {"preset": "tiny", "cells": 1, "epochs": 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_cifar_archive(folder, per_batch=120, test_size=10)
    return folder


class SmallNet(nn.Module):
    """Conv-BN-ReLU x2, global pooling, dense: a stand-in with the interface of nets.build models."""

    dtype: Any = jnp.float32
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for features in (8, 16):
            x = nn.Conv(features, (3, 3), dtype=self.dtype)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
            x = nn.relu(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x.mean(axis=(1, 2))).astype(jnp.float32)


def item(genome: dict[str, object], training: dict[str, object], seed: int = 7) -> Trial:
    return trial(genome, space=str(genome["space"]), seed=seed, training=training, experiment="t")


def test_evaluate_trains_the_genome_and_reports_every_metric(data_dir: Path, tmp_path: Path) -> None:
    evaluator = build_evaluator("train", data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"),
                                download=False)
    assert isinstance(evaluator, TrainEvaluator) and evaluator.name == "train"
    assert evaluator.compilation_cache_dir == tmp_path / "cache" / "jax"
    genome = {"space": "nb201", "arch": NB201_ARCH}
    metrics = evaluator.evaluate(item(genome, SMALL), threading.Event())
    assert isinstance(metrics, Metrics)
    assert metrics.accuracy > 0.3  # 10 classes: chance is 0.1
    assert metrics.params is not None and metrics.params > 1000
    assert metrics.mult_adds is not None and metrics.mult_adds > metrics.params
    assert metrics.compile_seconds > 0 and metrics.train_seconds > 0
    # The orchestrator priced the latency when it proposed the child: the evaluator reports none.
    assert metrics.latency_ms is None and metrics.fits_on_chip is None
    assert metrics.extra["steps"] == 3 * (512 // 32)
    from nets.build import model_stats

    stats = model_stats(spaces.parse_genome(genome), cells=1, filters=8, image_size=16)
    assert (metrics.params, metrics.mult_adds) == (stats.params, stats.mult_adds)
    # The persistent compilation cache received the compiled steps (other workers on the host reuse them).
    assert any((tmp_path / "cache" / "jax").iterdir())


@pytest.mark.parametrize(
    ("genome", "training", "reason"),
    [
        ({"space": "nb201", "arch": NB201_ARCH}, {"preset": "nope"}, "bad training settings: unknown training preset"),
        ({"space": "nb201", "arch": NB201_ARCH}, {"preset": "tiny", "epochs": -1}, "bad training settings: .*epochs"),
        ({"space": "nb201", "arch": "|bogus~0|"}, {"preset": "tiny"}, "bad genome: "),
        ({"space": "nb201", "arch": NB201_ARCH}, {"preset": "tiny", "num_classes": 100}, "bad data: CIFAR-10 has 10"),
    ],
)
def test_bad_items_fail_with_the_reason(data_dir: Path, genome: dict[str, object], training: dict[str, object],
                                        reason: str) -> None:
    evaluator = TrainEvaluator(str(data_dir), compilation_cache=False, download=False)
    with pytest.raises(EvaluationFailed, match=f"^{reason}"):
        evaluator.evaluate(item(genome, training), threading.Event())


def test_missing_dataset_is_fatal_not_a_failed_individual(tmp_path: Path) -> None:
    evaluator = TrainEvaluator(str(tmp_path / "empty"), cache_dir=tmp_path / "cache", compilation_cache=False,
                               download=False)
    genome = spaces.get("nasnet").sample(random.Random(0)).to_json()
    with pytest.raises(DatasetUnavailable, match=r"put cifar-10-python\.tar\.gz"):
        evaluator.evaluate(item(genome, {"preset": "tiny"}), threading.Event())


def test_default_preset_is_checked_at_start_up() -> None:
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainEvaluator(None, compilation_cache=False, default_preset="fast")


def test_the_evaluator_no_longer_prices_latency() -> None:
    with pytest.raises(TypeError, match="latency"):
        TrainEvaluator(None, compilation_cache=False, latency=False)  # type: ignore[call-arg]


def test_seeds_fold_into_31_bits() -> None:
    assert short_seed(0) == 0
    assert 0 <= short_seed(2**63 - 1) < 2**31
    assert short_seed(5) != short_seed(5 + 2**40)


def test_imagenet_through_the_evaluator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ImageNet path end to end (a stand-in network keeps it cheap); bad data met while training fails it."""
    from tests.fixtures_data import write_imagenet_folders

    root = write_imagenet_folders(tmp_path / "imagenet", train_per_class=8, val_per_class=2)
    monkeypatch.setattr(TrainEvaluator, "_model", lambda self, genome, config, n: SmallNet(num_classes=n))
    monkeypatch.setattr(TrainEvaluator, "_mult_adds", lambda self, genome, config, n: None)
    evaluator = TrainEvaluator(str(root), compilation_cache=False)
    training = {"preset": "tiny", "dataset": "imagenet", "batch_size": 8, "epochs": 1}
    genome = {"space": "nb201", "arch": NB201_ARCH}
    metrics = evaluator.evaluate(item(genome, training), threading.Event())
    assert 0.0 <= metrics.accuracy <= 1.0 and metrics.extra["steps"] == 3
    # Bad data found while streaming (an undecodable JPEG met mid-epoch) fails the individual with the reason.
    import worker.training.evaluator as evaluator_module

    def undecodable(*args: object, **kwargs: object) -> None:
        raise DataError(f"cannot decode {root}/train/n01443537/zz_broken.JPEG: cannot identify image file")

    monkeypatch.setattr(evaluator_module, "train_and_evaluate", undecodable)
    with pytest.raises(EvaluationFailed, match=r"^bad data: cannot decode .*zz_broken\.JPEG"):
        evaluator.evaluate(item(genome, training), threading.Event())
    with pytest.raises(DatasetUnavailable, match="ImageNet needs --data-dir"):
        TrainEvaluator(None, compilation_cache=False).evaluate(item(genome, training), threading.Event())


def test_trained_weights_are_kept_as_a_checked_artifact_and_a_failed_write_fails(data_dir: Path, tmp_path: Path) -> None:
    import dataclasses

    from flax import serialization

    from artifacts.store import read_artifact, read_manifest
    from nets.build import model_stats

    evaluator = TrainEvaluator(str(data_dir), cache_dir=tmp_path / "cache", download=False)
    genome = {"space": "nb201", "arch": NB201_ARCH}
    base = item(genome, SMALL)
    keeping = Trial(dataclasses.replace(base.lease, artifact_uri=str(tmp_path / "store" / "t" / "0000000-x")))
    metrics = evaluator.evaluate(keeping, threading.Event())
    assert keeping.artifact is not None and keeping.artifact.uri == keeping.artifact_uri
    variables = serialization.msgpack_restore(read_artifact(keeping.artifact))
    # The whole trained network: every parameter counted in the report, and the batch-norm statistics.
    leaves = jax.tree_util.tree_leaves(variables["params"])
    assert sum(leaf.size for leaf in leaves) == metrics.params == model_stats(
        spaces.parse_genome(genome), cells=1, filters=8, image_size=16).params
    assert jax.tree_util.tree_leaves(variables["batch_stats"])
    manifest = read_manifest(keeping.artifact)
    assert manifest["format"] == "flax-msgpack" and manifest["network"] == {"cells": 1, "filters": 8}
    assert manifest["metrics"]["accuracy"] == metrics.accuracy and manifest["training_config"]["epochs"] == 3
    assert manifest["fingerprint"] == spaces.parse_genome(genome).fingerprint and "flax" in manifest["versions"]
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    failing = Trial(dataclasses.replace(base.lease, artifact_uri=f"{blocker}/t/0000000-x"))
    with pytest.raises(EvaluationFailed, match="cannot write the artifact store"):
        evaluator.evaluate(failing, threading.Event())
