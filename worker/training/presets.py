"""Named training configurations and their resolution from an experiment's ``training`` settings.

An experiment's settings name a preset and may override any field:
``{"preset": "tiny", "epochs": 2, "dtype": "bfloat16"}``. Unknown keys and wrong types are errors. A
``network`` mapping updates the preset's (``{"preset": "edgetpu-tiny", "network": {"width": 0.5}}`` keeps
its depth).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.errors import AmoebaError

DATASETS = ("cifar10", "imagenet")
DTYPES = ("float32", "bfloat16")
CONV_IMPLS = ("auto", "xla", "fast")
#: ``search``: train on the training split less a held-out validation split, report validation accuracy (what
#: a search sees); ``final``: train on the whole training split and report test-split accuracy (CIFAR-10's
#: test batch; for ImageNet the val/ folder, ImageNet's usual test set). Only final training opens the test split.
SPLITS = ("search", "final")
DEFAULT_PRESET = "amoebanet-search"


class TrainingConfigError(AmoebaError, ValueError):
    """The training settings are invalid; the message names the key and what is expected."""


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """Everything the training loop needs besides the genome, the data and the seed.

    ``cells``/``filters`` are N and F (NB201 genomes: cells per stage and stage-1 channels); they apply to
    the spaces whose network has those keys. ``network`` holds any other keys of the genome's space's
    network for training (sorted pairs; e.g. the edgetpu space's ``width``/``depth`` multipliers), merged
    over the space's standard network after ``cells``/``filters``; latency is priced for the objective's
    network, never this one.
    ``train_examples``/``validation_examples`` cap the split sizes (first examples of each split; None
    = all). ``image_size`` below 32 downsamples CIFAR by an integer factor. ``bn_momentum`` None keeps
    the model's reference value (0.9997 NASNet, 0.9 NB201). Weight decay is L2 on kernels only.
    The regularizers of AmoebaNet's final training, all off by default: ``cutout`` zeroes a square of that
    side (pixels) at a random position in each training image after the crop and flip (DeVries & Taylor
    2017: 16 on CIFAR-10); ``drop_path_keep_prob`` below 1 drops each op's output feeding a NASNet-space
    cell's combination per example, more in later cells and as training goes on (reaching the value in the
    last cell at the end of training); ``aux_head_weight`` above 0 trains the auxiliary classifier (on the
    cell before the second reduction cell) and adds its cross-entropy times the weight to the loss
    (tensorflow/tpu amoeba_net: 0.4). Evaluation and export never see them.
    ``steps`` None trains ``epochs`` whole epochs; a number trains exactly that many steps instead (the
    papers that count steps, not epochs): ceil(steps / steps per epoch) epochs, the last one cut short, and
    the learning-rate schedule spans those steps; ``epochs`` is then not used.
    """

    preset: str
    dataset: str = "cifar10"
    cells: int = 3
    filters: int = 24
    epochs: int = 25
    steps: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    learning_rate: float = 0.024
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    dropout: float = 0.0
    dtype: str = "float32"
    image_size: int = 32
    crop_padding: int = 4
    cutout: int = 0
    drop_path_keep_prob: float = 1.0
    aux_head_weight: float = 0.0
    train_examples: int | None = None
    validation_examples: int | None = None
    bn_momentum: float | None = None
    num_classes: int | None = None  # None: the dataset's (10, or the ImageNet folder's class count)
    conv_impl: str = "auto"  # nets.fastconv: "auto" (fast path on CPU), "xla" (compiles faster), "fast"
    split: str = "search"  # SPLITS: "final" trains on all training images and reports test accuracy
    network: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["network"] = dict(self.network)
        return doc

    def network_dict(self) -> dict[str, Any]:
        return dict(self.network)


PRESETS: dict[str, TrainingConfig] = {
    # The paper's search setting (Real et al. 2019, section 4 / appendix): N=3, F=24, 25 epochs.
    "amoebanet-search": TrainingConfig(
        preset="amoebanet-search", cells=3, filters=24, epochs=25, batch_size=64, learning_rate=0.024,
        momentum=0.9, weight_decay=5e-4,
    ),
    # The NAS-Bench-201 skeleton (16 channels, 5 cells per stage) with the benchmark's 12-epoch schedule.
    "nb201-12ep": TrainingConfig(
        preset="nb201-12ep", cells=5, filters=16, epochs=12, batch_size=256, learning_rate=0.1,
        momentum=0.9, nesterov=True, weight_decay=5e-4,
    ),
    # CPU smoke configuration: trains in about a minute on two cores and still learns a learnable fixture.
    "tiny": TrainingConfig(
        preset="tiny", cells=1, filters=8, epochs=4, batch_size=32, eval_batch_size=100, learning_rate=0.05,
        momentum=0.9, nesterov=True, weight_decay=5e-4, image_size=16, crop_padding=2, train_examples=512,
        validation_examples=256, bn_momentum=0.9,
    ),
    # The EfficientNet-EdgeTPU search's proxy children, as MnasNet trained them: 5 epochs on ImageNet at 224
    # (here SGD with Nesterov momentum and a cosine schedule, bfloat16; accuracy on the val/ folder).
    "edgetpu-search": TrainingConfig(
        preset="edgetpu-search", dataset="imagenet", image_size=224, epochs=5, batch_size=256, eval_batch_size=256,
        learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5, label_smoothing=0.1, dtype="bfloat16",
    ),
    # The same children on CIFAR-10 for one GPU: 32x32 (a stride-1 stem), 10 epochs, the full-width network.
    "edgetpu-cifar": TrainingConfig(
        preset="edgetpu-cifar", epochs=10, batch_size=128, learning_rate=0.1, momentum=0.9, nesterov=True,
        weight_decay=5e-4, label_smoothing=0.1, dtype="bfloat16", bn_momentum=0.9,
    ),
    # CPU smoke configuration of the edgetpu space: a quarter of the width, one block per stage whatever the
    # genome's layers (ceil(0.16 x 6) = 1), 16x16 images.
    "edgetpu-tiny": TrainingConfig(
        preset="edgetpu-tiny", epochs=4, batch_size=32, eval_batch_size=100, learning_rate=0.05, momentum=0.9,
        nesterov=True, weight_decay=5e-4, image_size=16, crop_padding=2, train_examples=512, validation_examples=256,
        bn_momentum=0.9, network=(("depth", 0.16), ("width", 0.25)),
    ),
    # Large-Scale Evolution's children (Real et al. 2017, section 3, "Training and validation" and "Initial
    # conditions"): SGD with momentum 0.9, batch 50, weight decay 0.0001, on 45,000 CIFAR-10 training images
    # (5,000 held out for validation); every child trains 25,600 steps, here 28 epochs of 900 steps = 25,200
    # (this config counts epochs). The learning rate is the genome's (the lse space's training_overrides;
    # 0.1 is the seeds'), and children start from their parents' weights where the space inherits them.
    "lse-cifar10": TrainingConfig(
        preset="lse-cifar10", epochs=29, steps=25_600, batch_size=50, eval_batch_size=500, learning_rate=0.1, momentum=0.9,
        weight_decay=1e-4,
    ),
    # Final training (``amoeba retrain``) of AmoebaNet-A-sized models on CIFAR-10: N = 6, F = 36 (the published
    # CIFAR-10 model, 3.2 M parameters), 600 epochs, batch 128, learning rate 0.024 with cosine decay (Real et al.
    # 2019, section 4 and appendix A), SGD with momentum 0.9 and weight decay 5e-4 as in the search setting; label
    # smoothing 0.1, drop-path keep probability 0.7 and the auxiliary head at loss weight 0.4 as the reference code
    # trains AmoebaNet (tensorflow/tpu models/official/amoeba_net/amoeba_net_model.py, imagenet_hparams:
    # label_smoothing, drop_connect_keep_prob; model_builder.py _build_loss: the auxiliary loss's weights=0.4);
    # cutout of 16 px, the CIFAR-10 size of DeVries &
    # Taylor 2017 (the reference notes here do not give the paper's own value).
    "amoebanet-final": TrainingConfig(
        preset="amoebanet-final", cells=6, filters=36, epochs=600, batch_size=128, learning_rate=0.024,
        momentum=0.9, weight_decay=5e-4, label_smoothing=0.1, split="final", cutout=16, drop_path_keep_prob=0.7,
        aux_head_weight=0.4,
    ),
    # The ImageNet model of the paper (N = 6, F = 190: 86.7 M parameters, 23.1 B multiply-adds, Real et al. 2019
    # table 3) with the reference code's ImageNet settings (amoeba_net_model.py imagenet_hparams: 299x299 images,
    # 100 epochs, weight decay 4e-5, label smoothing 0.1, momentum 0.9; amoeba_net.py: global batch 256). The
    # reference optimises with RMSProp and exponential decay; this stack uses SGD with cosine decay, so the
    # learning rate is SGD's usual 0.1 per 256 images (Goyal et al. 2017), not the reference's 0.015.
    "amoebanet-imagenet-final": TrainingConfig(
        preset="amoebanet-imagenet-final", dataset="imagenet", cells=6, filters=190, epochs=100, batch_size=256,
        eval_batch_size=256, image_size=299, learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5,
        label_smoothing=0.1, dtype="bfloat16", split="final", drop_path_keep_prob=0.7, aux_head_weight=0.4,
    ),
    # CPU final training for the tests: the tiny network and schedule on the whole (fixture) training split,
    # scored on its test split.
    "tiny-final": TrainingConfig(
        preset="tiny-final", cells=1, filters=8, epochs=4, batch_size=32, eval_batch_size=100, learning_rate=0.05,
        momentum=0.9, nesterov=True, weight_decay=5e-4, image_size=16, crop_padding=2, bn_momentum=0.9,
        split="final",
    ),
    # CPU smoke configuration of the lse space: 16x16 images, 512 training and 256 validation examples, 2 epochs
    # (32 steps of 32); a seed or a few-layer child trains in seconds on two cores.
    "lse-tiny": TrainingConfig(
        preset="lse-tiny", epochs=2, batch_size=32, eval_batch_size=128, learning_rate=0.1, momentum=0.9,
        weight_decay=1e-4, image_size=16, crop_padding=2, train_examples=512, validation_examples=256,
        bn_momentum=0.9,
    ),
}

_FIELDS = {f.name: f for f in dataclasses.fields(TrainingConfig)}
_INT_KEYS = {"cells", "filters", "epochs", "steps", "batch_size", "eval_batch_size", "image_size", "crop_padding", "cutout",
             "train_examples", "validation_examples", "num_classes"}
_FLOAT_KEYS = {"learning_rate", "momentum", "weight_decay", "label_smoothing", "dropout", "bn_momentum",
               "drop_path_keep_prob", "aux_head_weight"}
_OPTIONAL = {"steps", "train_examples", "validation_examples", "bn_momentum", "num_classes"}


def resolve_training(settings: Mapping[str, Any] | None, default_preset: str = DEFAULT_PRESET) -> TrainingConfig:
    """The preset named by ``settings["preset"]`` (default ``default_preset``) with the other keys applied."""
    settings = dict(settings or {})
    name = settings.pop("preset", default_preset)
    if name not in PRESETS:
        raise TrainingConfigError(f"unknown training preset {name!r}; expected one of {', '.join(PRESETS)}")
    unknown = sorted(set(settings) - set(_FIELDS))
    if unknown:
        raise TrainingConfigError(f"unknown training setting(s) {', '.join(unknown)}; "
                                  f"valid: preset, {', '.join(k for k in _FIELDS if k != 'preset')}")
    values = {key: _check(key, value) for key, value in settings.items()}
    if "network" in values:  # keys update the preset's network rather than replace it
        values["network"] = tuple(sorted({**dict(PRESETS[name].network), **dict(values["network"])}.items()))
    config = dataclasses.replace(PRESETS[name], **values)
    _validate(config)
    return config


def _check(key: str, value: Any) -> Any:
    if value is None and key in _OPTIONAL:
        return None
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TrainingConfigError(f"training setting {key} must be an integer, got {value!r}")
        return value
    if key in _FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TrainingConfigError(f"training setting {key} must be a number, got {value!r}")
        return float(value)
    if key == "network":
        return _network(value)
    if key == "nesterov":
        if not isinstance(value, bool):
            raise TrainingConfigError(f"training setting nesterov must be true or false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise TrainingConfigError(f"training setting {key} must be a string, got {value!r}")
    return value


#: Keys of a training ``network`` and their values are checked by the genome's space when the model is built;
#: here only their form: a mapping of names to positive numbers, strings or null, at most this many.
MAX_NETWORK_KEYS = 32


def _network(value: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping):
        raise TrainingConfigError(f"training setting network must be a mapping of network settings, got {value!r}"[:200])
    if len(value) > MAX_NETWORK_KEYS:
        raise TrainingConfigError(f"training setting network has more than {MAX_NETWORK_KEYS} keys")
    for key, item in value.items():
        if not isinstance(key, str):
            raise TrainingConfigError(f"training setting network keys must be strings, got {key!r}"[:200])
        if isinstance(item, bool) or not (item is None or isinstance(item, str | int | float)):
            raise TrainingConfigError(f"training setting network.{key[:60]} must be a number, a string or null, "
                                      f"got {item!r}"[:200])
        if isinstance(item, int | float) and not (math.isfinite(item) and item > 0):
            raise TrainingConfigError(f"training setting network.{key[:60]} must be positive, got {item!r}")
    return tuple(sorted(value.items()))


def _validate(c: TrainingConfig) -> None:
    def positive(key: str) -> None:
        value = getattr(c, key)
        if value is not None and value < 1:
            raise TrainingConfigError(f"training setting {key} must be >= 1, got {value}")

    for key in ("cells", "filters", "epochs", "steps", "batch_size", "eval_batch_size", "image_size",
                "train_examples", "validation_examples", "num_classes"):
        positive(key)
    if c.dataset not in DATASETS:
        raise TrainingConfigError(f"training setting dataset must be one of {', '.join(DATASETS)}, got {c.dataset!r}")
    if c.dtype not in DTYPES:
        raise TrainingConfigError(f"training setting dtype must be one of {', '.join(DTYPES)}, got {c.dtype!r}")
    if c.split not in SPLITS:
        raise TrainingConfigError(f"training setting split must be one of {', '.join(SPLITS)}, got {c.split!r}")
    if c.conv_impl not in CONV_IMPLS:
        raise TrainingConfigError(f"training setting conv_impl must be one of {', '.join(CONV_IMPLS)}, "
                                  f"got {c.conv_impl!r}")
    if not c.learning_rate > 0:
        raise TrainingConfigError(f"training setting learning_rate must be > 0, got {c.learning_rate}")
    for key in ("momentum", "label_smoothing", "dropout", "bn_momentum"):
        value = getattr(c, key)
        if value is not None and not 0.0 <= value < 1.0:
            raise TrainingConfigError(f"training setting {key} must be in [0, 1), got {value}")
    if c.weight_decay < 0:
        raise TrainingConfigError(f"training setting weight_decay must be >= 0, got {c.weight_decay}")
    if c.crop_padding < 0:
        raise TrainingConfigError(f"training setting crop_padding must be >= 0, got {c.crop_padding}")
    if c.cutout < 0:
        raise TrainingConfigError(f"training setting cutout must be >= 0, got {c.cutout}")
    if not 0.0 < c.drop_path_keep_prob <= 1.0:
        raise TrainingConfigError(f"training setting drop_path_keep_prob must be in (0, 1], got {c.drop_path_keep_prob}")
    if not (math.isfinite(c.aux_head_weight) and c.aux_head_weight >= 0):
        raise TrainingConfigError(f"training setting aux_head_weight must be >= 0, got {c.aux_head_weight}")
    if c.dataset == "cifar10" and (c.image_size > 32 or 32 % c.image_size):
        raise TrainingConfigError(f"CIFAR-10 image_size must divide 32 (32, 16, 8), got {c.image_size}")
    if c.image_size < 8:
        raise TrainingConfigError(f"training setting image_size must be at least 8, got {c.image_size}")
