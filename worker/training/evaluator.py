"""TrainEvaluator: trains the Flax network of a leased genome and reports its validation accuracy."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import spaces
from domain import Metrics
from domain.errors import AmoebaError
from genome.base import Genome
from worker.evaluator import EvaluationFailed
from worker.training.augment import CIFAR_MEAN, CIFAR_STD, resize_area
from worker.training.data_cifar import CIFAR10_MD5, CIFAR10_URL, cache_root, load_cifar10, locate_cifar10
from worker.training.datasets import ArrayData, TrainData
from worker.training.errors import DataError, DatasetUnavailable
from worker.training.loop import Initial, compile_ahead, train_and_evaluate
from worker.training.presets import DEFAULT_PRESET, TrainingConfig, TrainingConfigError, resolve_training
from worker.trial import Trial

_cache_configured: str | None = None
log = logging.getLogger(__name__)


def save_weights(trial: Trial, variables: Any, manifest: dict[str, Any]) -> None:
    """Write the trained variables as the trial's artifact (Flax msgpack: the state dict's own format,
    read back with ``flax.serialization.msgpack_restore`` without the model's code). A store that cannot
    be written fails the evaluation: no result is reported without the weights it was to keep."""
    from flax import serialization

    from artifacts.store import ArtifactError

    try:
        trial.save_artifact(serialization.msgpack_serialize(variables), manifest)
    except ArtifactError as exc:
        raise EvaluationFailed(str(exc)) from None


def inheritance(trial: Trial, space: Any, genome: Genome) -> Initial | None:
    """How a child starts from its parent's weights, when its space inherits them (``Space.inherit``).

    None for spaces that do not; for those that do, a function of the fresh variables that loads the
    parent's artifact (checked by sha256) and lets the space copy what the mutation left in place. A
    child whose parent has no weights kept starts fresh (and still measures its step-0 accuracy)."""
    inherit = space.inherit
    if inherit is None:
        return None
    parent = trial.parent_artifact

    def start(fresh: dict[str, Any]) -> tuple[dict[str, Any], int]:
        if parent is None:
            return fresh, 0
        from flax import serialization

        from artifacts.store import ArtifactError, read_artifact, read_manifest

        try:
            weights = serialization.msgpack_restore(read_artifact(parent))
            parent_genome = spaces.parse_genome(read_manifest(parent)["genome"], trial.space)
        except ArtifactError as exc:
            raise EvaluationFailed(f"cannot inherit the parent's weights: {exc}") from None
        except (KeyError, AmoebaError, ValueError) as exc:
            raise EvaluationFailed(f"cannot inherit the parent's weights: bad manifest at {parent.uri}: {exc}") from None
        chosen, count = inherit(parent_genome, genome, trial.lease.mutation, weights, fresh)
        return dict(chosen), int(count)

    return start


def enable_compilation_cache(directory: str | Path) -> Path:
    """Point JAX's persistent compilation cache at ``directory`` (process-wide) and cache every compilation.

    Several workers on one host share the directory, so a genome compiled by one is loaded by the others.
    """
    global _cache_configured
    path = Path(directory).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    if _cache_configured != str(path):
        jax.config.update("jax_compilation_cache_dir", str(path))
        # The defaults skip compilations under 1 s; a small network's steps are worth caching too.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        _cache_configured = str(path)
    return path


def _conv_impl(choice: str) -> AbstractContextManager[None]:
    from nets.layers import conv_impl

    return conv_impl(None if choice == "auto" else choice)


def short_seed(seed: int) -> int:
    """Fold a 64-bit work-item seed into the 31 bits JAX keys take without x64 mode."""
    seed &= (1 << 64) - 1
    return (seed ^ (seed >> 31) ^ (seed >> 62)) & 0x7FFFFFFF


def training_network(genome: Genome, config: TrainingConfig) -> dict[str, Any]:
    """The keys of the genome's space's network that training sets: ``cells``/``filters`` where the space's
    network has them (the cell spaces), then ``config.network``; EvaluationFailed for a key it lacks."""
    import spaces

    try:
        standard = spaces.get(genome.space).network
    except AmoebaError as exc:
        raise EvaluationFailed(f"bad genome: {exc}") from None
    network: dict[str, Any] = {k: getattr(config, k) for k in ("cells", "filters") if k in standard}
    network.update(config.network_dict())
    unknown = sorted(set(network) - set(standard))
    if unknown:
        raise EvaluationFailed(f"bad training settings: the {genome.space} network has no {', '.join(unknown)} "
                               f"(its settings: {', '.join(standard)})")
    return network


class TrainEvaluator:
    """The ``train`` evaluator: real training of the genome's network on CIFAR-10 or ImageNet.

    Options: ``cache_dir`` (data and compilation cache root; default ``$AMOEBA_CACHE`` or
    ``~/.cache/amoeba``), ``compilation_cache`` (True: ``<cache_dir>/jax``; a path; or False),
    ``download`` (fetch CIFAR-10 when missing), ``cifar_url``/``cifar_md5`` (the download source;
    default ``$AMOEBA_CIFAR10_URL``/``$AMOEBA_CIFAR10_MD5`` or the official archive),
    ``progress`` (download progress bar), ``default_preset`` (when the experiment names none),
    ``decode_workers`` (ImageNet). The latency of a trained child is the one the orchestrator priced
    for the objective's network when it proposed the child; this evaluator does not price it again.

    A missing dataset raises ``DatasetUnavailable`` (it ends the worker with a one-line message);
    everything the individual is to blame for, or that is specific to it, is ``EvaluationFailed``.
    """

    name = "train"

    def __init__(
        self,
        data_dir: str | None = None,
        *,
        cache_dir: str | Path | None = None,
        compilation_cache: bool | str | Path = True,
        download: bool = True,
        cifar_url: str | None = None,
        cifar_md5: str | None = None,
        progress: bool = True,
        default_preset: str = DEFAULT_PRESET,
        decode_workers: int = 8,
    ) -> None:
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
        self.download = download
        self.cifar_url = cifar_url or os.environ.get("AMOEBA_CIFAR10_URL") or CIFAR10_URL
        self.cifar_md5 = cifar_md5 or os.environ.get("AMOEBA_CIFAR10_MD5") or CIFAR10_MD5
        self.progress = progress
        self.decode_workers = decode_workers
        resolve_training({"preset": default_preset})  # fail at start-up, not per individual
        self.default_preset = default_preset
        self.compilation_cache_dir: Path | None = None
        if compilation_cache:
            where = self.cache_dir / "jax" if compilation_cache is True else Path(str(compilation_cache))
            self.compilation_cache_dir = enable_compilation_cache(where)
        #: Compile the next child while this one trains (``amoeba worker --prefetch auto``): with an accelerator
        #: the host's cores are idle during training; on a CPU they are the ones training.
        self.prefers_prefetch = self.compilation_cache_dir is not None and jax.default_backend() != "cpu"
        self._data_lock = threading.Lock()
        self._data: dict[tuple[Any, ...], TrainData] = {}
        self._stats: dict[tuple[Any, ...], tuple[int | None, int | None]] = {}

    # --- the Evaluator protocol ---

    def _setup(self, trial: Trial) -> tuple[Any, Genome, TrainingConfig, TrainData, Any]:
        """The space, genome, training config, data and Flax model of ``trial`` (EvaluationFailed for what
        the individual is to blame for)."""
        try:
            genome = trial.genome
        except AmoebaError as exc:
            raise EvaluationFailed(f"bad genome: {exc}") from None
        space = spaces.get(trial.space)
        # A genome may carry training settings of its own (Large-Scale Evolution evolves the learning rate).
        overrides = space.training_overrides
        settings = {**trial.training, **(dict(overrides(genome)) if overrides is not None else {})}
        try:
            config = resolve_training(settings, self.default_preset)
        except TrainingConfigError as exc:
            raise EvaluationFailed(f"bad training settings: {exc}") from None
        try:
            data = self.dataset(config)
        except DatasetUnavailable:
            raise
        except DataError as exc:
            raise EvaluationFailed(f"bad data: {exc}") from None
        return space, genome, config, data, self._model(genome, config, data.num_classes)

    def prepare(self, trial: Trial) -> float:
        """Compile ``trial``'s training and evaluation steps ahead (a prefetched lease, while another child
        trains): the persistent compilation cache keeps them, and ``evaluate`` loads instead of compiling.
        Seconds spent; 0.0 without a compilation cache (nothing would be kept). Never raises: whatever goes
        wrong here goes wrong again, and is reported, when the trial is evaluated."""
        if self.compilation_cache_dir is None:
            return 0.0
        try:
            _, _, config, data, model = self._setup(trial)
            return compile_ahead(model, data, config, short_seed(trial.seed), tracing=lambda: _conv_impl(config.conv_impl))
        except Exception as exc:  # reported by evaluate, with its proper reason
            log.info("could not compile individual %d ahead: %s", trial.individual_id, exc)
            return 0.0

    def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics:
        space, genome, config, data, model = self._setup(trial)
        initial = inheritance(trial, space, genome)
        try:
            result = train_and_evaluate(model, data, config, short_seed(trial.seed), stop,
                                        tracing=lambda: _conv_impl(config.conv_impl),
                                        on_epoch=lambda e, acc, loss, secs: trial.progress(e, acc, loss, secs),
                                        initial=initial, keep_variables=bool(trial.artifact_uri))
        except DatasetUnavailable:
            raise
        except DataError as exc:  # found while streaming (an undecodable JPEG, ...)
            raise EvaluationFailed(f"bad data: {exc}") from None
        stats_start = time.perf_counter()
        mult_adds = self._mult_adds(genome, config, data.num_classes)
        extra = {
            "steps": float(result.steps),
            "final_loss": result.final_loss,
            "train_accuracy": result.train_accuracy,
            "images_per_second": result.images_per_second,
            "stats_seconds": time.perf_counter() - stats_start,
        }
        if trial.artifact_uri:
            save_weights(trial, result.variables, {
                "format": "flax-msgpack", "model": space.model, "network": training_network(genome, config),
                "num_classes": data.num_classes, "training_config": dataclasses.asdict(config),
                "metrics": {"accuracy": result.accuracy, "params": result.params, "mult_adds": mult_adds,
                            "inherited_params": result.inherited_params if initial is not None else None,
                            "initial_accuracy": result.initial_accuracy, **extra},
            })
        return Metrics(
            accuracy=result.accuracy,
            params=result.params,
            mult_adds=mult_adds,
            train_seconds=result.train_seconds,
            compile_seconds=result.compile_seconds,
            extra=extra,
            inherited_params=result.inherited_params if initial is not None else None,
            initial_accuracy=result.initial_accuracy,
        )

    # --- data, model, side metrics ---

    def dataset(self, config: TrainingConfig) -> TrainData:
        """The (memoized) training data for ``config``; DatasetUnavailable/DataError when it cannot be had."""
        key = (config.dataset, config.image_size, config.train_examples, config.validation_examples,
               config.num_classes, config.split)
        with self._data_lock:
            if key not in self._data:
                self._data[key] = self._load(config)
            return self._data[key]

    def _load(self, config: TrainingConfig) -> TrainData:
        if config.dataset == "imagenet":
            from worker.training.data_imagenet import ImageNetData

            if not self.data_dir:
                raise DatasetUnavailable("ImageNet needs --data-dir DIR with DIR/train/<class>/*.JPEG and "
                                         "DIR/val/<class>/*.JPEG")
            data = ImageNetData(self.data_dir, config.image_size, workers=self.decode_workers,
                                train_limit=config.train_examples, eval_limit=config.validation_examples)
            if config.num_classes is not None and config.num_classes != data.num_classes:
                raise DataError(f"num_classes is {config.num_classes} but {self.data_dir}/train has "
                                f"{data.num_classes} class folders")
            return data
        source = locate_cifar10(self.data_dir, cache_dir=self.cache_dir / "cifar10", url=self.cifar_url,
                                md5=self.cifar_md5, download=self.download, progress=self.progress)
        # A final training learns from every training image and is scored on the test split, which nothing
        # else opens: a search never sees it.
        splits = load_cifar10(source, "final" if config.split == "final" else "search")
        held_out = splits.test if config.split == "final" else splits.validation
        assert held_out is not None
        train = splits.train.take(config.train_examples)
        val = held_out.take(config.validation_examples)
        if config.num_classes is not None and config.num_classes != splits.num_classes:
            raise DataError(f"CIFAR-10 has 10 classes, but num_classes is {config.num_classes}")
        return ArrayData(resize_area(train.images, config.image_size), train.labels,
                         resize_area(val.images, config.image_size), val.labels,
                         splits.num_classes, CIFAR_MEAN, CIFAR_STD)

    def _model(self, genome: Genome, config: TrainingConfig, num_classes: int) -> Any:
        from nets.build import ModelConfigError, build_model

        try:
            return build_model(genome, training_network(genome, config), num_classes=num_classes,
                               dataset=config.dataset, dropout=config.dropout,
                               dtype=jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32,
                               bn_momentum=config.bn_momentum, drop_path_keep_prob=config.drop_path_keep_prob,
                               aux_head=config.aux_head_weight > 0)
        except (ModelConfigError, AmoebaError) as exc:
            raise EvaluationFailed(f"bad model settings: {exc}") from None

    def _mult_adds(self, genome: Genome, config: TrainingConfig, num_classes: int) -> int | None:
        network = training_network(genome, config)
        key = (genome.fingerprint, tuple(sorted(network.items())), config.dataset, config.image_size, num_classes)
        if key not in self._stats:
            from nets.build import model_stats

            try:
                stats = model_stats(genome, network, config.dataset, image_size=config.image_size,
                                    num_classes=num_classes)
            except ValueError:
                return None  # the count is informative; the trained accuracy still stands
            self._stats[key] = (stats.params, stats.mult_adds)
        return self._stats[key][1]
