"""The training loop: compile the steps ahead of time (timed apart), train over epochs, evaluate, classify failures.

Failures become ``EvaluationFailed`` with a reason: a non-finite loss ("nan loss at step k", k counted
from 1, with " (inf)" appended for an infinite loss), out of memory (an XLA RESOURCE_EXHAUSTED error or a host MemoryError), bad data. The stop
event is checked between steps and raises ``EvaluationCancelled``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nets.build import count_params
from worker.evaluator import EvaluationCancelled, EvaluationFailed, EvaluationStopped
from worker.training.datasets import TrainData
from worker.training.presets import TrainingConfig
from worker.training.sharding import DataParallel, data_parallel, round_to_devices
from worker.training.train import TrainState, init_state, make_eval_step, make_optimizer, make_train_step

#: XLA's RngBitGenerator keys. On the CPU, XLA compiles the default threefry generator ~10x more slowly
#: (measured: ~8 s for one jax.random.normal versus ~0.3 s), which would dominate a small network's
#: compile time. Key derivation (split/fold_in) is less studied than threefry's - irrelevant for
#: initialization, shuffling-free augmentation and dropout.
PRNG_IMPL = "unsafe_rbg"


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What one training run measured. ``compile_seconds`` covers XLA compilation of init, train and eval
    steps; ``train_seconds`` the training steps and the evaluation after compilation."""

    accuracy: float
    params: int
    steps: int
    final_loss: float
    train_accuracy: float
    train_seconds: float
    compile_seconds: float
    images_per_second: float
    #: The trained variables ({"params", "batch_stats"} on the host, numpy): what an artifact keeps.
    variables: Any = None
    #: Parameters taken from the parent's weights (weight inheritance), and the accuracy before any step.
    inherited_params: int = 0
    initial_accuracy: float | None = None


def out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc)


@contextmanager
def failures_as_evaluation_failed() -> Iterator[None]:
    """Turn XLA runtime errors into EvaluationFailed with the reason; let everything else through."""
    try:
        yield
    except MemoryError as exc:
        raise EvaluationFailed(f"out of memory: host memory exhausted {exc}".rstrip()) from exc
    except jax.errors.JaxRuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if out_of_memory(exc):
            raise EvaluationFailed(f"out of memory: {first}") from exc
        raise EvaluationFailed(f"XLA runtime error: {first}") from exc


def train_and_evaluate(
    model: nn.Module,
    data: TrainData,
    config: TrainingConfig,
    seed: int,
    stop: threading.Event | None = None,
    *,
    dp: DataParallel | None = None,
    on_step: Callable[[int, int], None] | None = None,
    tracing: Callable[[], AbstractContextManager[Any]] | None = None,
    on_epoch: OnEpoch | None = None,
    initial: Initial | None = None,
    keep_variables: bool = False,
) -> TrainResult:
    """Train ``model`` on ``data`` for ``config.epochs`` (or ``config.steps``) and return its accuracy on the held-out split.

    ``seed`` drives parameter initialization, shuffling, augmentation and dropout. ``on_step(step,
    total)`` is called after each dispatched step (progress display). ``tracing()`` is entered while the
    steps are traced (the evaluator uses it to pick the convolution implementation). With ``on_epoch``,
    the held-out split is evaluated after every epoch and ``on_epoch(epoch, accuracy, loss, seconds)``
    told; when it answers False, training stops there with ``EvaluationStopped``. With ``initial``, the
    freshly initialised variables are handed to it and training starts from what it returns (weight
    inheritance: ``initial(fresh) -> (variables, parameters inherited)``), after measuring the held-out
    accuracy at step 0. ``keep_variables`` returns the trained variables on the host (for an artifact).
    """
    with failures_as_evaluation_failed():
        return _run(model, data, config, seed, stop, dp or data_parallel(), on_step, tracing or nullcontext, on_epoch,
                    initial, keep_variables)


#: ``on_epoch(epoch, validation accuracy, training loss, training seconds) -> go on?``
OnEpoch = Callable[[int, float, float, float], bool]
#: ``initial(fresh variables) -> (variables to start from, parameters inherited)`` (numpy state dicts).
Initial = Callable[[dict[str, Any]], tuple[dict[str, Any], int]]


def host_variables(state: TrainState) -> dict[str, Any]:
    """The model's variables of ``state`` as a host (numpy) state dict: {"params", "batch_stats"}."""
    from flax import serialization

    return {"params": serialization.to_state_dict(jax.device_get(state.params)),
            "batch_stats": serialization.to_state_dict(jax.device_get(state.batch_stats))}


@dataclass
class _Compiled:
    """The initial state and the compiled steps of one training run, and what they were compiled for."""

    state: Any
    tx: Any
    train_step: Any
    eval_step: Any
    batch: int
    eval_batch: int
    total_steps: int
    epochs: int
    step_key: Any
    params: int
    compile_seconds: float


def _compile(model: nn.Module, data: TrainData, config: TrainingConfig, seed: int, dp: DataParallel,
             tracing: Callable[[], AbstractContextManager[Any]]) -> _Compiled:
    """Initialise the state and compile the train and eval steps ahead of time for ``data``'s shapes."""
    batch = round_to_devices(config.batch_size, dp.devices)
    eval_batch = round_to_devices(min(config.eval_batch_size, max(data.num_eval, 1)), dp.devices)
    if data.num_train < batch:
        raise EvaluationFailed(f"bad data: {data.num_train} training images are fewer than one batch of {batch}")
    steps_per_epoch = data.num_train // batch
    total_steps = steps_per_epoch * config.epochs if config.steps is None else config.steps
    epochs = math.ceil(total_steps / steps_per_epoch)
    tx = make_optimizer(config, total_steps)
    h, w, c = data.image_shape
    init_key, step_key = jax.random.split(jax.random.key(seed, impl=PRNG_IMPL))

    compile_start = time.perf_counter()
    with tracing():
        init = jax.jit(lambda k: init_state(model, tx, k, jnp.zeros((1, h, w, c), jnp.float32)),
                       out_shardings=dp.replicated)
        state: TrainState = init(init_key)
        params = count_params(state.params)  # training-only heads (the auxiliary classifier) not counted
        images_spec = jax.ShapeDtypeStruct((batch, h, w, c), jnp.uint8, sharding=dp.batch)
        labels_spec = jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=dp.batch)
        train_step = jax.jit(
            make_train_step(model, tx, config, data.num_classes, data.mean, data.std, total_steps),
            in_shardings=(dp.replicated, dp.batch, dp.batch, dp.replicated),
            out_shardings=(dp.replicated, dp.replicated),
            donate_argnums=0,
        ).lower(state, images_spec, labels_spec, step_key).compile()
        eval_step = jax.jit(
            make_eval_step(model, config, data.mean, data.std),
            in_shardings=(dp.replicated, dp.batch, dp.batch, dp.batch),
            out_shardings=dp.replicated,
        ).lower(
            state,
            jax.ShapeDtypeStruct((eval_batch, h, w, c), jnp.uint8, sharding=dp.batch),
            jax.ShapeDtypeStruct((eval_batch,), jnp.int32, sharding=dp.batch),
            jax.ShapeDtypeStruct((eval_batch,), jnp.float32, sharding=dp.batch),
        ).compile()
    jax.block_until_ready(state)
    return _Compiled(state, tx, train_step, eval_step, batch, eval_batch, total_steps, epochs, step_key, params,
                     time.perf_counter() - compile_start)


def compile_ahead(model: nn.Module, data: TrainData, config: TrainingConfig, seed: int, *,
                  dp: DataParallel | None = None,
                  tracing: Callable[[], AbstractContextManager[Any]] | None = None) -> float:
    """Compile ``model``'s steps exactly as ``train_and_evaluate`` will, and drop them: with the persistent
    compilation cache on, the training that follows loads them instead of compiling (a worker prepares its
    next child this way while the current one trains). Seconds spent compiling."""
    with failures_as_evaluation_failed():
        return _compile(model, data, config, seed, dp or data_parallel(), tracing or nullcontext).compile_seconds


def _run(model: nn.Module, data: TrainData, config: TrainingConfig, seed: int, stop: threading.Event | None,
         dp: DataParallel, on_step: Callable[[int, int], None] | None,
         tracing: Callable[[], AbstractContextManager[Any]], on_epoch: OnEpoch | None = None,
         initial: Initial | None = None, keep_variables: bool = False) -> TrainResult:
    compiled = _compile(model, data, config, seed, dp, tracing)
    state, tx, train_step, eval_step = compiled.state, compiled.tx, compiled.train_step, compiled.eval_step
    batch, eval_batch, total_steps, step_key = compiled.batch, compiled.eval_batch, compiled.total_steps, compiled.step_key
    params, compile_seconds = compiled.params, compiled.compile_seconds
    inherited, initial_accuracy = 0, None
    if initial is not None:
        state, inherited = _start_from(state, tx, dp, initial)
        initial_accuracy = _evaluate(data, dp, eval_step, state, eval_batch)

    train_start = time.perf_counter()
    step = 0
    pending: tuple[int, dict[str, jax.Array]] | None = None
    last: dict[str, float] = {"loss": math.nan, "accuracy": math.nan}
    epochs = compiled.epochs
    for epoch in range(epochs):
        for images, labels in data.train_epoch(epoch, seed, batch):
            if step >= total_steps:  # a step budget (config.steps) ends inside its last epoch
                break
            if stop is not None and stop.is_set():
                raise EvaluationCancelled(f"stopped at step {step + 1} of {total_steps}")
            x, y = dp.put_batch(images, labels.astype(np.int32))
            state, metrics = train_step(state, x, y, step_key)
            step += 1
            # Check the previous step's loss while this one runs: the host never waits on the device.
            if pending is not None:
                last = _checked(*pending)
            pending = (step, metrics)
            if on_step is not None:
                on_step(step, total_steps)
        if on_epoch is not None:
            if pending is not None:
                last, pending = _checked(*pending), None
            accuracy = _evaluate(data, dp, eval_step, state, eval_batch)
            if not on_epoch(epoch + 1, accuracy, last["loss"], time.perf_counter() - train_start):
                raise EvaluationStopped(f"stopped early after epoch {epoch + 1} of {epochs}")
    if pending is not None:
        last = _checked(*pending)

    # With per-epoch evaluation the last epoch's accuracy is the result; evaluating again would repeat it.
    if on_epoch is None or epochs == 0:
        accuracy = _evaluate(data, dp, eval_step, state, eval_batch)
    train_seconds = time.perf_counter() - train_start
    return TrainResult(
        accuracy=accuracy, params=params, steps=step, final_loss=last["loss"],
        train_accuracy=last["accuracy"], train_seconds=train_seconds, compile_seconds=compile_seconds,
        images_per_second=step * batch / train_seconds if train_seconds > 0 else 0.0,
        variables=host_variables(state) if keep_variables else None,
        inherited_params=inherited, initial_accuracy=initial_accuracy,
    )


def _start_from(state: TrainState, tx: Any, dp: DataParallel, initial: Initial) -> tuple[TrainState, int]:
    """``state`` with the variables ``initial`` chose (same tree and shapes as the fresh ones), a fresh optimizer."""
    from flax import serialization

    fresh = host_variables(state)
    chosen, inherited = initial(fresh)
    try:
        params = serialization.from_state_dict(jax.device_get(state.params), chosen["params"])
        stats = serialization.from_state_dict(jax.device_get(state.batch_stats), chosen.get("batch_stats", {}))
    except (KeyError, ValueError, TypeError) as exc:
        raise EvaluationFailed(f"inherited weights do not fit the child's network: {exc}") from None
    for new, old in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(jax.device_get(state.params)),
                        strict=True):
        if np.shape(new) != np.shape(old):
            raise EvaluationFailed(f"inherited weights do not fit the child's network: shape {np.shape(new)} "
                                   f"for {np.shape(old)}")
    params = jax.device_put(jax.tree_util.tree_map(jnp.asarray, params), dp.replicated)
    stats = jax.device_put(jax.tree_util.tree_map(jnp.asarray, stats), dp.replicated)
    return state.replace(params=params, batch_stats=stats, opt_state=tx.init(params)), inherited


def _evaluate(data: TrainData, dp: DataParallel, eval_step: Any, state: TrainState, eval_batch: int) -> float:
    """Accuracy on the held-out split."""
    correct = 0.0
    count = 0.0
    for images, labels, mask in data.eval_batches(eval_batch):
        x, y, m = dp.put_batch(images, labels.astype(np.int32), mask)
        out = eval_step(state, x, y, m)
        correct += float(out["correct"])
        count += float(out["count"])
    if count == 0:
        raise EvaluationFailed("bad data: the validation split is empty")
    return correct / count


def _checked(step: int, metrics: dict[str, jax.Array]) -> dict[str, float]:
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise EvaluationFailed(f"nan loss at step {step}" + ("" if math.isnan(loss) else " (inf)"))
    return {"loss": loss, "accuracy": float(metrics["accuracy"])}
