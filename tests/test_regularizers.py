"""AmoebaNet's final-training regularizers: cutout, scheduled drop-path and the auxiliary head, each off by default."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spaces
from nets.build import ModelConfigError, build_model, count_params, init_variables
from nets.layers import conv_impl
from nets.nasnet import AUX_HEAD, NASNet, drop_path_keep
from nets.trace import trace_module
from tests.fixtures_data import write_cifar_archive
from worker.training import train as train_module
from worker.training.augment import CIFAR_MEAN, CIFAR_STD, cutout, normalize
from worker.training.loop import PRNG_IMPL, train_and_evaluate
from worker.training.presets import PRESETS, TrainingConfig, TrainingConfigError, resolve_training
from worker.training.train import cross_entropy, init_state, make_eval_step, make_optimizer, make_train_step

pytestmark = pytest.mark.jax

#: Cheap cells: one separable conv, pools and identities (drop-path applies to all but the identities).
GENOME = spaces.parse_genome({
    "space": "nasnet",
    "normal": {"combinations": [[[0, "sep_conv_3x3"], [1, "identity"]], [[2, "avg_pool_3x3"], [0, "max_pool_3x3"]],
                                [[1, "identity"], [3, "identity"]], [[2, "identity"], [0, "avg_pool_3x3"]],
                                [[4, "identity"], [5, "max_pool_3x3"]]]},
    "reduction": {"combinations": [[[0, "max_pool_3x3"], [1, "avg_pool_3x3"]], [[2, "identity"], [0, "identity"]],
                                   [[3, "max_pool_3x3"], [2, "identity"]], [[4, "identity"], [1, "max_pool_3x3"]],
                                   [[5, "avg_pool_3x3"], [3, "identity"]]]},
})
NB201 = {"space": "nb201", "arch": "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|"
                                   "nor_conv_3x3~2|"}
SHAPE = (4, 8, 8, 3)
FINAL = {"preset": "tiny", "cutout": 4, "drop_path_keep_prob": 0.7, "aux_head_weight": 0.4, "cells": 2}


def key(seed: int) -> jax.Array:
    # The training loop's generator: XLA compiles the default threefry one many times more slowly on the CPU.
    return jax.random.key(seed, impl=PRNG_IMPL)


def nasnet(cells: int = 1, **options: Any) -> nn.Module:
    return build_model(GENOME, cells=cells, filters=4, num_classes=10, bn_momentum=0.9, **options)


def init(model: nn.Module, shape: tuple[int, ...] = SHAPE) -> dict[str, Any]:
    return init_variables(model, shape)


def shapes(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda leaf: leaf.shape, tree)


def jaxpr(fn: Any, *args: Any) -> str:
    with conv_impl("xla"):
        return str(jax.make_jaxpr(fn)(*args))


def pixels(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


# --- settings ---------------------------------------------------------------------------------------------


def test_the_settings_are_off_by_default_and_type_checked() -> None:
    off = TrainingConfig(preset="x")
    assert (off.cutout, off.drop_path_keep_prob, off.aux_head_weight) == (0, 1.0, 0.0)
    for name in ("amoebanet-search", "nb201-12ep", "tiny", "edgetpu-search", "edgetpu-cifar", "edgetpu-tiny",
                 "lse-cifar10", "lse-tiny"):
        p = PRESETS[name]
        assert (p.cutout, p.drop_path_keep_prob, p.aux_head_weight) == (0, 1.0, 0.0), name
    config = resolve_training({**FINAL, "drop_path_keep_prob": 1, "aux_head_weight": 1})
    assert (config.cutout, config.drop_path_keep_prob, config.aux_head_weight) == (4, 1.0, 1.0)
    assert isinstance(config.drop_path_keep_prob, float) and config.to_json()["cutout"] == 4
    for key, bad in (("cutout", 1.5), ("cutout", True), ("cutout", -1), ("drop_path_keep_prob", "0.7"),
                     ("drop_path_keep_prob", 0), ("drop_path_keep_prob", 1.2), ("aux_head_weight", -0.1),
                     ("aux_head_weight", math.inf)):
        with pytest.raises(TrainingConfigError, match=key):
            resolve_training({"preset": "tiny", key: bad})


# --- cutout -----------------------------------------------------------------------------------------------


def test_cutout_zeroes_one_square_per_image_clipped_at_the_borders() -> None:
    side, h, w = 4, 10, 12
    images = jnp.ones((120, h, w, 3), jnp.uint8)
    out = np.asarray(cutout(key(3), images, side))
    assert out.dtype == np.uint8 and out.shape == images.shape
    full = 0
    for image in out:
        zero = image == 0
        assert (zero == zero[..., :1]).all()  # every channel
        rows, cols = np.flatnonzero(zero[..., 0].any(1)), np.flatnonzero(zero[..., 0].any(0))
        assert rows.size and cols.size
        # one axis-aligned rectangle: exactly the product of its row and column ranges
        assert rows[-1] - rows[0] + 1 == rows.size and cols[-1] - cols[0] + 1 == cols.size
        assert zero[..., 0].sum() == rows.size * cols.size
        # side x side, less only where a border clips it
        for span, size in ((rows, h), (cols, w)):
            assert span.size <= side
            assert span.size == side or span[0] == 0 or span[-1] == size - 1
        full += rows.size == side and cols.size == side
    assert 0 < full < len(out)  # interior squares and clipped ones both occur
    np.testing.assert_array_equal(out, np.asarray(cutout(key(3), images, side)))  # deterministic
    assert not np.array_equal(out, np.asarray(cutout(key(4), images, side)))
    assert cutout(key(3), images, 0) is images


def test_the_train_step_cuts_out_deterministically_and_the_eval_step_never(monkeypatch: pytest.MonkeyPatch) -> None:
    config = resolve_training({"preset": "tiny", "cutout": 4, "crop_padding": 0})
    seen: list[int] = []
    real = train_module.cutout
    monkeypatch.setattr(train_module, "cutout", lambda key, x, side: seen.append(side) or real(key, x, side))
    model = Probe()
    tx = make_optimizer(config, 10)
    state = init_state(model, tx, key(0), jnp.zeros((1, 8, 8, 3)))
    images, labels = batch()
    step = jax.jit(make_train_step(model, tx, config, 10, CIFAR_MEAN, CIFAR_STD))
    first = step(state, images, labels, key(1))[1]["loss"]
    assert seen == [4]
    assert float(step(state, images, labels, key(1))[1]["loss"]) == float(first)
    assert float(step(state, images, labels, key(2))[1]["loss"]) != float(first)
    jax.eval_shape(make_eval_step(model, config, CIFAR_MEAN, CIFAR_STD), state, images, labels, jnp.ones(8))
    assert seen == [4]


# --- drop-path --------------------------------------------------------------------------------------------


def test_the_drop_path_schedule_grows_with_depth_and_training() -> None:
    def keep(cell: int, progress: float) -> float:
        return float(drop_path_keep(0.7, cell, 8, progress))

    assert keep(0, 0.0) == keep(7, 0.0) == 1.0  # nothing dropped at the start of training
    assert keep(7, 1.0) == pytest.approx(0.7)  # the last cell reaches the setting at the end
    assert keep(0, 1.0) == pytest.approx(1 - 0.3 / 8)  # the first cell drops least
    assert keep(3, 0.5) == pytest.approx(1 - 0.5 * 4 / 8 * 0.3)
    assert keep(7, 2.0) == pytest.approx(0.7)  # progress is clipped to [0, 1]


def test_drop_path_off_is_todays_network_and_on_only_changes_training() -> None:
    base, off, on = nasnet(), nasnet(drop_path_keep_prob=1.0), nasnet(drop_path_keep_prob=0.5)
    variables, x, k = init(base), pixels(), key(0)
    assert shapes(init(on)) == shapes(variables)
    # Off (or eval mode): the very same program as the network without the option, whatever the progress.
    train = jaxpr(lambda v, x: base.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    assert jaxpr(lambda v, x: off.apply(v, x, train=True, progress=0.3, mutable=["batch_stats"],
                                        rngs={"dropout": k}), variables, x) == train
    evaluate = jaxpr(lambda v, x: base.apply(v, x, train=False), variables, x)
    assert jaxpr(lambda v, x: on.apply(v, x, train=False, progress=0.3), variables, x) == evaluate

    with conv_impl("xla"):
        run = jax.jit(lambda v, x, k, p: on.apply(v, x, train=True, progress=p, mutable=["batch_stats"],
                                                  rngs={"dropout": k})[0])
        a, b = run(variables, x, key(1), 1.0), run(variables, x, key(2), 1.0)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(run(variables, x, key(1), 1.0)))
        assert not np.allclose(np.asarray(a), np.asarray(b))
        # At progress 0 every keep probability is 1: the keys no longer matter.
        np.testing.assert_array_equal(np.asarray(run(variables, x, key(1), 0.0)),
                                      np.asarray(run(variables, x, key(2), 0.0)))


def test_drop_path_reaches_the_scanned_cells() -> None:
    on = nasnet(cells=3, drop_path_keep_prob=0.5)
    variables = jax.eval_shape(lambda: init(on))
    program = jaxpr(lambda v, x, k: on.apply(v, x, train=True, progress=1.0, mutable=["batch_stats"],
                                             rngs={"dropout": k}), variables, pixels(), key(0))
    off = jaxpr(lambda v, x, k: nasnet(cells=3).apply(v, x, train=True, mutable=["batch_stats"],
                                                       rngs={"dropout": k}), variables, pixels(), key(0))
    # Each scanned body draws its own masks (three stacks, each with a scan over cell 3).
    assert program.count("scan[") == off.count("scan[") == 3
    assert program.count("random_bits") > off.count("random_bits") == 0


def test_only_the_nasnet_space_takes_the_regularizers() -> None:
    nb201 = spaces.parse_genome(NB201)
    build_model(nb201, num_classes=10)  # off: accepted as before
    for option in ({"drop_path_keep_prob": 0.7}, {"aux_head": True}):
        with pytest.raises(ModelConfigError, match="nb201 network has no"):
            build_model(nb201, num_classes=10, **option)
    with pytest.raises(ModelConfigError, match="drop_path_keep_prob"):
        nasnet(drop_path_keep_prob=0.0)
    model = nasnet(drop_path_keep_prob=0.7, aux_head=True)
    assert isinstance(model, NASNet) and model.drop_path_keep_prob == 0.7 and model.aux_head


def test_the_evaluator_builds_the_configured_network(tmp_path: Path) -> None:
    from worker.training.evaluator import TrainEvaluator

    evaluator = TrainEvaluator(None, cache_dir=tmp_path, compilation_cache=False)
    model = evaluator._model(GENOME, resolve_training(FINAL), 10)
    assert (model.drop_path_keep_prob, model.aux_head, model.cells) == (0.7, True, 2)
    model = evaluator._model(GENOME, resolve_training({"preset": "tiny"}), 10)
    assert (model.drop_path_keep_prob, model.aux_head) == (1.0, False)


# --- the auxiliary head -----------------------------------------------------------------------------------


def test_the_aux_head_exists_only_when_asked_and_inference_never_sees_it() -> None:
    base, aux = nasnet(), nasnet(aux_head=True)
    shape = (2, 16, 16, 3)  # stack 2 at 8x8: the reference's 5x5/3 pool leaves 2x2 for the 768-wide conv
    plain = jax.eval_shape(lambda: init(base, shape))
    full = jax.eval_shape(lambda: init(aux, shape))
    assert AUX_HEAD not in plain["params"] and shapes(init(nasnet(aux_head=False), SHAPE)) == shapes(init(base))
    head = full["params"][AUX_HEAD]
    assert head["proj"]["kernel"].shape[-1] == 128 and head["conv"]["kernel"].shape[:2] == (2, 2)
    assert head["conv"]["kernel"].shape[-1] == 768 and head["classifier"]["kernel"].shape == (768, 10)
    # Everything else is the network without the head, which is all that is counted.
    assert shapes({k: v for k, v in full["params"].items() if k != AUX_HEAD}) == shapes(plain["params"])
    assert count_params(full) == count_params(plain)
    # Inference (eval mode) needs none of the head's variables and is the same program; so is the latency trace.
    x = pixels(shape)
    evaluate = jaxpr(lambda v, x: base.apply(v, x, train=False), plain, x)
    assert jaxpr(lambda v, x: aux.apply(v, x, train=False), plain, x) == evaluate
    assert trace_module(aux, shape[1:], train=False).layers == trace_module(base, shape[1:], train=False).layers
    # Training mode sows its logits beside the plain ones.
    logits, updates = jax.eval_shape(lambda v, x: aux.apply(v, x, train=True, mutable=["batch_stats", "intermediates"]),
                                     full, x)
    assert logits.shape == updates["intermediates"]["aux_logits"][0].shape == (2, 10)


def test_the_loss_adds_the_weighted_aux_cross_entropy() -> None:
    config = resolve_training({"preset": "tiny", "aux_head_weight": 0.4, "label_smoothing": 0.1, "crop_padding": 0})
    model = Probe(aux=True)
    tx = make_optimizer(config, 10)
    state = init_state(model, tx, key(0), jnp.zeros((1, 8, 8, 3)))
    assert AUX_HEAD in state.params
    images, labels = batch(flip_invariant=True)  # no crop, flips change nothing: the step sees these pixels
    new, metrics = jax.jit(make_train_step(model, tx, config, 10, CIFAR_MEAN, CIFAR_STD))(
        state, images, labels, key(1))
    x = normalize(images, CIFAR_MEAN, CIFAR_STD, jnp.float32)
    logits, updates = model.apply({"params": state.params, "batch_stats": state.batch_stats}, x, train=True,
                                  mutable=["batch_stats", "intermediates"])
    main = cross_entropy(logits, labels, 10, 0.1)
    aux = cross_entropy(updates["intermediates"]["aux_logits"][0], labels, 10, 0.1)
    assert float(metrics["loss"]) == pytest.approx(float(main + 0.4 * aux), rel=1e-5)
    assert float(aux) > 0.1 and abs(float(metrics["loss"]) - float(main)) > 0.04
    # The head is trained with the network.
    assert not np.allclose(new.params[AUX_HEAD]["kernel"], state.params[AUX_HEAD]["kernel"])
    # A weight without a head is a mistake, not a silent no-op.
    plain = Probe()
    plain_state = init_state(plain, tx, key(0), jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="no auxiliary head"):
        jax.eval_shape(make_train_step(plain, tx, config, 10, CIFAR_MEAN, CIFAR_STD), plain_state, images, labels,
                       key(1))


def test_the_train_step_feeds_drop_path_the_training_progress() -> None:
    config = resolve_training({"preset": "tiny", "drop_path_keep_prob": 0.7})
    model = Probe()
    tx = make_optimizer(config, 4)
    with pytest.raises(ValueError, match="total_steps"):
        make_train_step(model, tx, config, 10, CIFAR_MEAN, CIFAR_STD)
    state = init_state(model, tx, key(0), jnp.zeros((1, 8, 8, 3)))
    step = jax.jit(make_train_step(model, tx, config, 10, CIFAR_MEAN, CIFAR_STD, total_steps=4))
    images, labels = batch()
    # The probe's logits are scaled by the progress: at step 0 of 4 they are all zero (uniform), later not.
    state, first = step(state, images, labels, key(1))
    assert float(first["loss"]) == pytest.approx(math.log(10), rel=1e-6)
    state, second = step(state, images, labels, key(1))
    assert float(second["loss"]) != pytest.approx(math.log(10), rel=1e-3)


# --- end to end -------------------------------------------------------------------------------------------


def test_tiny_training_with_every_regularizer_on(tmp_path: Path) -> None:
    from worker.training.evaluator import TrainEvaluator

    write_cifar_archive(tmp_path / "data", per_batch=120, test_size=10)
    evaluator = TrainEvaluator(str(tmp_path / "data"), cache_dir=tmp_path / "cache", compilation_cache=False,
                               download=False)
    config = resolve_training(FINAL)
    data = evaluator.dataset(config)
    model = evaluator._model(GENOME, config, data.num_classes)
    result = train_and_evaluate(model, data, config, seed=3, tracing=lambda: conv_impl("xla"), keep_variables=True)
    assert math.isfinite(result.final_loss) and result.steps == config.epochs * (data.num_train // config.batch_size)
    assert 0.0 <= result.accuracy <= 1.0
    # The head was trained and kept, but is not counted as the network's parameters.
    assert AUX_HEAD in result.variables["params"]
    from nets.build import model_stats

    assert result.params == model_stats(GENOME, cells=2, filters=8, image_size=16).params


# --- helpers ----------------------------------------------------------------------------------------------


class Probe(nn.Module):
    """A conv-BN-dense stand-in with the NASNet model's interface: ``progress`` scales its logits (so a test
    can read it back) and, with ``aux``, an auxiliary dense head sown as ``intermediates["aux_logits"]``."""

    aux: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, progress: float | jax.Array = 1.0) -> jax.Array:
        x = nn.Conv(4, (3, 3))(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        pooled = x.mean(axis=(1, 2))
        if self.aux and (train or self.is_initializing()):
            aux = nn.Dense(10, name=AUX_HEAD)(pooled)
            if not self.is_initializing():
                self.sow("intermediates", "aux_logits", aux)
        logits: jax.Array = nn.Dense(10)(pooled) * progress
        return logits


def batch(flip_invariant: bool = False) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    if flip_invariant:
        images = np.repeat(images[:, :, :1], 8, axis=2)
    return jnp.asarray(images), jnp.asarray(np.arange(8) % 10, jnp.int32)

