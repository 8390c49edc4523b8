"""Pure training and evaluation steps (optax SGD with cosine decay, L2 on kernels, label smoothing).

The steps are plain functions of (state, batch); ``loop.py`` jits them with shardings, compiles them
ahead of time and drives them over the data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from worker.training.augment import normalize, random_crop_flip
from worker.training.presets import TrainingConfig


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; a pytree so it can be donated and sharded."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def kernel_mask(params: Any) -> Any:
    """True for weight kernels (conv, depthwise, dense: rank >= 2), False for biases and batch-norm scales."""
    return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: TrainingConfig, total_steps: int) -> optax.GradientTransformation:
    """SGD with momentum (optionally Nesterov), cosine decay to zero, and L2 weight decay on kernels.

    Decay is added to the gradient before momentum, which is exactly an L2 penalty on the loss.
    """
    schedule = optax.cosine_decay_schedule(config.learning_rate, max(1, total_steps))
    parts = []
    if config.weight_decay > 0:
        parts.append(optax.add_decayed_weights(config.weight_decay, mask=kernel_mask))
    parts.append(optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov))
    return optax.chain(*parts)


def init_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array, sample: jax.Array) -> TrainState:
    """Initial parameters (float32), batch statistics and optimizer state for inputs shaped like ``sample``."""
    variables = model.init(key, sample, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
    """Mean softmax cross-entropy in float32, with optional label smoothing."""
    targets = jax.nn.one_hot(labels, num_classes)
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    loss: jax.Array = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()
    return loss


def make_train_step(
    model: nn.Module, tx: optax.GradientTransformation, config: TrainingConfig, num_classes: int,
    mean: tuple[float, ...], std: tuple[float, ...],
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """``step(state, images_uint8, labels, key) -> (state, {"loss", "accuracy"})``; augmentation inside."""
    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32

    def step(state: TrainState, images: jax.Array, labels: jax.Array, key: jax.Array
             ) -> tuple[TrainState, dict[str, jax.Array]]:
        step_key = jax.random.fold_in(key, state.step)
        aug_key, dropout_key = jax.random.split(step_key)
        x = normalize(random_crop_flip(aug_key, images, config.crop_padding), mean, std, dtype)

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
            logits: jax.Array
            logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, x, train=True,
                                          mutable=["batch_stats"], rngs={"dropout": dropout_key})
            return cross_entropy(logits, labels, num_classes, config.label_smoothing), (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        deltas, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, deltas),
                               batch_stats=updates.get("batch_stats", state.batch_stats), opt_state=opt_state)
        accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
        return new_state, {"loss": loss, "accuracy": accuracy}

    return step


def make_eval_step(
    model: nn.Module, config: TrainingConfig, mean: tuple[float, ...], std: tuple[float, ...],
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], dict[str, jax.Array]]:
    """``eval(state, images_uint8, labels, mask) -> {"correct", "count"}`` (padding rows have mask 0)."""
    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32

    def evaluate(state: TrainState, images: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
        x = normalize(images, mean, std, dtype)
        logits: jax.Array = model.apply(  # type: ignore[assignment]  # without mutable=, apply returns the output only
            {"params": state.params, "batch_stats": state.batch_stats}, x, train=False)
        hits = (jnp.argmax(logits, -1) == labels).astype(jnp.float32) * mask
        return {"correct": hits.sum(), "count": mask.sum()}

    return evaluate
