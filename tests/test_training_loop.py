"""The training loop with a small stand-in network: learning, augmentation, presets, failures, data parallelism."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.fixtures_data import cifar_images, write_cifar_archive
from worker.evaluator import EvaluationCancelled, EvaluationFailed
from worker.training import loop
from worker.training.augment import CIFAR_MEAN, CIFAR_STD, random_crop_flip, resize_area
from worker.training.data_cifar import load_cifar10
from worker.training.datasets import ArrayData
from worker.training.errors import DataError
from worker.training.loop import PRNG_IMPL, train_and_evaluate
from worker.training.presets import PRESETS, TrainingConfigError, resolve_training
from worker.training.train import kernel_mask

pytestmark = pytest.mark.jax

ROOT = Path(__file__).resolve().parent.parent
#: The loop's fast-compiling generator (XLA compiles threefry slowly on the CPU).
KEY = jax.random.key(0, impl=PRNG_IMPL)


class SmallNet(nn.Module):
    """Conv-BN-ReLU x2, global pooling, dense: the same interface as nets.build models."""

    dtype: Any = jnp.float32
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for features in (8, 16):
            x = nn.Conv(features, (3, 3), dtype=self.dtype)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
            x = nn.relu(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x.mean(axis=(1, 2))).astype(jnp.float32)


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> ArrayData:
    path = write_cifar_archive(tmp_path_factory.mktemp("cifar"), per_batch=120, test_size=10)
    splits = load_cifar10(path)
    assert splits.validation is not None
    return ArrayData(resize_area(splits.train.images, 16), splits.train.labels,
                     resize_area(splits.validation.images, 16), splits.validation.labels, 10, CIFAR_MEAN, CIFAR_STD)


def test_tiny_training_learns_the_learnable_fixture(fixture_data: ArrayData) -> None:
    config = resolve_training({"preset": "tiny", "epochs": 3})
    traced: list[str] = []

    @contextlib.contextmanager
    def tracing() -> Iterator[None]:
        traced.append("enter")
        yield
        traced.append("exit")

    result = train_and_evaluate(SmallNet(), fixture_data, config, seed=1, stop=threading.Event(), tracing=tracing)
    assert traced == ["enter", "exit"]  # the steps are traced once, inside the caller's context
    assert result.accuracy > 0.5  # 10 classes: chance is 0.1
    assert result.steps == 3 * (540 // 32)
    assert result.params == sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(
        SmallNet().init(KEY, jnp.zeros((1, 16, 16, 3)), train=False)["params"]))
    assert result.compile_seconds > 0 and result.train_seconds > 0 and np.isfinite(result.final_loss)


def test_a_step_budget_ends_inside_the_last_epoch(fixture_data: ArrayData) -> None:
    per_epoch = 540 // 32
    config = resolve_training({"preset": "tiny", "epochs": 9, "steps": per_epoch + 5})  # steps wins over epochs
    seen: list[int] = []
    result = train_and_evaluate(SmallNet(), fixture_data, config, seed=0,
                                on_epoch=lambda epoch, accuracy, loss, seconds: seen.append(epoch) is None)
    assert result.steps == per_epoch + 5
    assert seen == [1, 2]  # the second epoch is cut short after 5 steps, and still evaluated


def test_noise_labels_stay_near_chance(fixture_data: ArrayData) -> None:
    """The same loop on unlearnable data does not report a high accuracy (it measures, it does not invent)."""
    rng = np.random.default_rng(0)
    noise = ArrayData(fixture_data.train_images, rng.integers(0, 10, fixture_data.num_train).astype(np.int32),
                      fixture_data.eval_images, rng.integers(0, 10, fixture_data.num_eval).astype(np.int32),
                      10, CIFAR_MEAN, CIFAR_STD)
    result = train_and_evaluate(SmallNet(), noise, resolve_training({"preset": "tiny", "epochs": 1}), seed=0)
    assert result.accuracy < 0.35


def test_bfloat16_compute_keeps_float32_params(fixture_data: ArrayData) -> None:
    config = resolve_training({"preset": "tiny", "epochs": 1, "dtype": "bfloat16"})
    result = train_and_evaluate(SmallNet(dtype=jnp.bfloat16), fixture_data, config, seed=0)
    assert np.isfinite(result.final_loss) and 0.0 <= result.accuracy <= 1.0


def test_huge_learning_rate_fails_with_the_nan_step(fixture_data: ArrayData) -> None:
    config = resolve_training({"preset": "tiny", "epochs": 1, "learning_rate": 1e38, "weight_decay": 0.0})
    with pytest.raises(EvaluationFailed, match=r"^nan loss at step \d+( \(inf\))?$") as info:
        train_and_evaluate(SmallNet(), fixture_data, config, seed=0)
    step = int(info.value.reason.split()[4])
    assert 1 < step <= 16  # the first step's loss is finite; the explosion shows within the first epoch


def test_stop_event_cancels_between_steps(fixture_data: ArrayData) -> None:
    stop = threading.Event()
    seen: list[int] = []

    def on_step(step: int, total: int) -> None:
        seen.append(step)
        if step == 3:
            stop.set()

    with pytest.raises(EvaluationCancelled, match="stopped at step 4 of"):
        train_and_evaluate(SmallNet(), fixture_data, resolve_training({"preset": "tiny"}), seed=0, stop=stop,
                           on_step=on_step)
    assert seen == [1, 2, 3]


def test_out_of_memory_is_a_failure_with_the_reason(fixture_data: ArrayData, monkeypatch: pytest.MonkeyPatch) -> None:
    # Raised where XLA raises it, while the parameters are being allocated (before any compilation).
    def init_state(*args: object) -> None:
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.00GiB.")

    monkeypatch.setattr(loop, "init_state", init_state)
    with pytest.raises(EvaluationFailed, match=r"^out of memory: RESOURCE_EXHAUSTED: Out of memory while trying"):
        train_and_evaluate(SmallNet(), fixture_data, resolve_training({"preset": "tiny", "epochs": 1}), seed=0)


def test_bad_data_is_rejected(fixture_data: ArrayData) -> None:
    labels = fixture_data.train_labels.copy()
    labels[3] = 10
    with pytest.raises(DataError, match=r"training labels must be in \[0, 10\)"):
        ArrayData(fixture_data.train_images, labels, fixture_data.eval_images, fixture_data.eval_labels, 10,
                  CIFAR_MEAN, CIFAR_STD)
    with pytest.raises(DataError, match=r"uint8 \[n, h, w, 3\]"):
        ArrayData(fixture_data.train_images[..., :2], fixture_data.train_labels, fixture_data.eval_images,
                  fixture_data.eval_labels, 10, CIFAR_MEAN, CIFAR_STD)
    with pytest.raises(DataError, match="validation images are"):
        ArrayData(fixture_data.train_images, fixture_data.train_labels, fixture_data.eval_images[:, :8],
                  fixture_data.eval_labels, 10, CIFAR_MEAN, CIFAR_STD)
    few = ArrayData(fixture_data.train_images[:10], fixture_data.train_labels[:10], fixture_data.eval_images,
                    fixture_data.eval_labels, 10, CIFAR_MEAN, CIFAR_STD)
    with pytest.raises(EvaluationFailed, match="bad data: 10 training images are fewer than one batch of 32"):
        train_and_evaluate(SmallNet(), few, resolve_training({"preset": "tiny"}), seed=0)


def test_random_crop_flip_is_deterministic_and_shape_preserving() -> None:
    images = jnp.asarray(cifar_images(np.arange(32) % 10, np.random.default_rng(0)))
    crop = jax.jit(random_crop_flip, static_argnums=2)
    key = jax.random.key(3, impl=PRNG_IMPL)
    a, b = np.asarray(crop(key, images, 4)), np.asarray(crop(key, images, 4))
    assert a.shape == images.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, np.asarray(crop(jax.random.key(4, impl=PRNG_IMPL), images, 4)))
    # Without padding only flips remain: every image is itself or its mirror, and both happen.
    flipped = np.asarray(crop(key, images, 0))
    same = [np.array_equal(f, t) for f, t in zip(flipped, np.asarray(images), strict=True)]
    mirrored = [np.array_equal(f, t[:, ::-1]) for f, t in zip(flipped, np.asarray(images), strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and any(same) and any(mirrored)
    # With padding a crop is a shifted window: some images gain a border row of zeros.
    assert (a == 0).all(axis=(2, 3)).any()


def test_resize_area_averages_blocks() -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    small = resize_area(images, 2)
    assert small.shape == (2, 2, 2, 3)
    assert small[0, 0, 0, 0] == round(np.mean([images[0, 0, 0, 0], images[0, 0, 1, 0], images[0, 1, 0, 0],
                                               images[0, 1, 1, 0]]))
    with pytest.raises(ValueError, match="integer factor"):
        resize_area(images, 3)


def test_presets_and_overrides() -> None:
    assert set(PRESETS) == {"amoebanet-search", "nb201-12ep", "tiny", "edgetpu-search", "edgetpu-cifar", "edgetpu-tiny",
                            "lse-cifar10", "lse-tiny", "amoebanet-final", "amoebanet-imagenet-final", "tiny-final"}
    final = resolve_training({"preset": "amoebanet-final"})
    assert (final.cells, final.filters, final.epochs, final.batch_size, final.learning_rate, final.split) == (
        6, 36, 600, 128, 0.024, "final")
    assert resolve_training({"preset": "amoebanet-imagenet-final"}).filters == 190
    with pytest.raises(TrainingConfigError, match="split must be one of search, final"):
        resolve_training({"preset": "tiny", "split": "test"})
    search = resolve_training({"preset": "amoebanet-search"})
    assert (search.cells, search.filters, search.epochs, search.batch_size, search.learning_rate) == (3, 24, 25, 64, 0.024)
    nb = resolve_training({"preset": "nb201-12ep"})
    assert (nb.epochs, nb.batch_size, nb.learning_rate, nb.nesterov, nb.weight_decay) == (12, 256, 0.1, True, 5e-4)
    tiny = resolve_training({"preset": "tiny", "epochs": 2, "dtype": "bfloat16", "learning_rate": 1})
    assert (tiny.cells, tiny.epochs, tiny.dtype, tiny.learning_rate) == (1, 2, "bfloat16", 1.0)
    assert resolve_training({}) == search
    # Large-Scale Evolution counts steps (Real et al. 2017: 25,600 per child), not epochs.
    lse = resolve_training({"preset": "lse-cifar10"})
    assert (lse.steps, lse.batch_size, lse.momentum, lse.weight_decay) == (25_600, 50, 0.9, 1e-4)
    assert resolve_training({"preset": "tiny", "steps": None}).steps is None
    assert json.loads(json.dumps(tiny.to_json()))["preset"] == "tiny"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"preset": "huge"}, "unknown training preset 'huge'"),
        ({"preset": "tiny", "epoch": 3}, "unknown training setting.*epoch"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"learning_rate": "fast"}, "learning_rate must be a number"),
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"dtype": "float16"}, "dtype must be one of float32, bfloat16"),
        ({"dataset": "mnist"}, "dataset must be one of"),
        ({"image_size": 24}, "must divide 32"),
        ({"label_smoothing": 1.5}, r"label_smoothing must be in \[0, 1\)"),
        ({"nesterov": "yes"}, "nesterov must be true or false"),
        ({"conv_impl": "cudnn"}, "conv_impl must be one of auto, xla, fast"),
    ],
)
def test_bad_training_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(TrainingConfigError, match=message):
        resolve_training(settings)


def test_weight_decay_applies_to_kernels_only() -> None:
    params = SmallNet().init(KEY, jnp.zeros((1, 8, 8, 3)), train=False)["params"]
    flags = {"/".join(str(k.key) for k in path): flag
             for path, flag in jax.tree_util.tree_leaves_with_path(kernel_mask(params))}
    assert flags["Conv_0/kernel"] and flags["Dense_0/kernel"]
    assert not flags["Conv_0/bias"] and not flags["BatchNorm_0/scale"] and not flags["BatchNorm_0/bias"]


def test_data_parallel_over_two_host_devices(tmp_path: Path) -> None:
    """Two forced CPU devices: the batch is split over the mesh, parameters replicated, training still learns."""
    script = textwrap.dedent("""
        import json, sys
        sys.path.insert(0, sys.argv[1])
        import jax, numpy as np
        from tests.test_training_loop import SmallNet
        from tests.fixtures_data import write_cifar_archive
        from worker.training.augment import CIFAR_MEAN, CIFAR_STD, resize_area
        from worker.training.data_cifar import load_cifar10
        from worker.training.datasets import ArrayData
        from worker.training.loop import train_and_evaluate
        from worker.training.presets import resolve_training
        from worker.training.sharding import data_parallel
        from pathlib import Path
        s = load_cifar10(write_cifar_archive(Path(sys.argv[2]), per_batch=120, test_size=10))
        data = ArrayData(resize_area(s.train.images, 16), s.train.labels, resize_area(s.validation.images, 16),
                         s.validation.labels, 10, CIFAR_MEAN, CIFAR_STD)
        dp = data_parallel()
        x, = dp.put_batch(np.zeros((32, 16, 16, 3), np.uint8))
        shards = sorted(tuple(sh.data.shape) for sh in x.addressable_shards)
        r = train_and_evaluate(SmallNet(), data, resolve_training({"preset": "tiny", "epochs": 3}), seed=1)
        print(json.dumps({"devices": dp.devices, "shards": shards, "accuracy": r.accuracy}))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script, str(ROOT), str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    assert report["shards"] == [[16, 16, 16, 3], [16, 16, 16, 3]]
    assert report["accuracy"] > 0.5


def test_imagenet_folders_feed_the_same_loop(tmp_path: Path) -> None:
    from tests.fixtures_data import write_imagenet_folders
    from worker.training.data_imagenet import ImageNetData

    root = write_imagenet_folders(tmp_path / "imagenet", train_per_class=12, val_per_class=4)
    data = ImageNetData(root, image_size=16, workers=2, prefetch=2)
    config = resolve_training({"preset": "tiny", "dataset": "imagenet", "batch_size": 8, "epochs": 4,
                               "learning_rate": 0.1})
    result = train_and_evaluate(SmallNet(num_classes=3), data, config, seed=0)
    assert result.steps == 4 * (36 // 8)
    assert result.accuracy > 0.6  # 3 colour classes: chance is 1/3


@pytest.mark.parametrize("name", ["tiny", "amoebanet-search", "nb201-12ep"])
def test_shipped_training_configs_parse_and_resolve(name: str) -> None:
    from configs import load_config
    from orchestrator.config import parse_spec

    spec = parse_spec(load_config(name))
    assert resolve_training(spec.training).preset == name
    if name == "tiny":
        assert spec.evaluations == 6 and spec.space == "nasnet"
    if name == "amoebanet-search":
        assert (spec.population_size, spec.sample_size, spec.evaluations) == (100, 25, 20000)
