"""Pure training and evaluation steps (optax SGD with cosine decay, L2 on kernels, label smoothing, and the
optional regularizers of AmoebaNet's final training: cutout, scheduled drop-path, the auxiliary head's loss).

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

from worker.training.augment import cutout, normalize, random_crop_flip
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


#: Stream of the step key that places the cutout squares (apart from the crop/flip and dropout keys).
CUTOUT_STREAM = 1


def make_train_step(
    model: nn.Module, tx: optax.GradientTransformation, config: TrainingConfig, num_classes: int,
    mean: tuple[float, ...], std: tuple[float, ...], total_steps: int | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """``step(state, images_uint8, labels, key) -> (state, {"loss", "accuracy"})``; augmentation inside.

    Every random choice comes from ``key`` folded with the step number. ``config.cutout`` zeroes a square
    of the normalized image (the dataset mean, as DeVries & Taylor apply it) after the crop and flip.
    With ``config.drop_path_keep_prob`` < 1 the model is applied with ``progress = step / total_steps``
    (``total_steps`` is then required; the model must take ``progress``, as NASNet-space models do). With
    ``config.aux_head_weight`` > 0 the model must sow ``intermediates["aux_logits"]`` in training mode (a
    NASNet-space model built with ``aux_head=True``), and the loss adds the weight times their
    cross-entropy (same label smoothing); the reported loss is that total.
    """
    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32
    drop_path = config.drop_path_keep_prob < 1.0
    aux_weight = config.aux_head_weight
    if drop_path and not (total_steps and total_steps > 0):
        raise ValueError("drop-path needs the number of training steps (total_steps) for its schedule")
    mutable = ["batch_stats", "intermediates"] if aux_weight > 0 else ["batch_stats"]

    def step(state: TrainState, images: jax.Array, labels: jax.Array, key: jax.Array
             ) -> tuple[TrainState, dict[str, jax.Array]]:
        step_key = jax.random.fold_in(key, state.step)
        aug_key, dropout_key = jax.random.split(step_key)
        x = normalize(random_crop_flip(aug_key, images, config.crop_padding), mean, std, dtype)
        if config.cutout > 0:
            x = cutout(jax.random.fold_in(aug_key, CUTOUT_STREAM), x, config.cutout)
        extra: dict[str, Any] = {}
        if drop_path:
            assert total_steps is not None
            extra["progress"] = state.step.astype(jnp.float32) / total_steps

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
            logits: jax.Array
            logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, x, train=True,
                                          mutable=mutable, rngs={"dropout": dropout_key}, **extra)
            loss = cross_entropy(logits, labels, num_classes, config.label_smoothing)
            if aux_weight > 0:
                sown = updates.get("intermediates", {}).get("aux_logits")
                if not sown:
                    raise ValueError("aux_head_weight > 0 but the model has no auxiliary head "
                                     "(a NASNet-space model built with aux_head=True)")
                loss = loss + aux_weight * cross_entropy(sown[0], labels, num_classes, config.label_smoothing)
            return loss, (logits, updates)

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
