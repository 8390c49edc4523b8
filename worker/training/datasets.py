"""The data port of the training loop (epochs of training batches, padded evaluation batches) and its in-memory form."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from worker.training.errors import DataError

#: (images uint8 NHWC, labels int32)
Batch = tuple[np.ndarray, np.ndarray]
#: (images, labels, mask float32): the last batch is padded to full size with mask 0.
EvalBatch = tuple[np.ndarray, np.ndarray, np.ndarray]


class TrainData(Protocol):
    """A training split and a held-out split, batched.

    ``train_epoch`` yields only full batches (the remainder is dropped), shuffled by (seed, epoch);
    ``eval_batches`` covers every held-out example exactly once, in a fixed order.
    """

    @property
    def num_train(self) -> int: ...

    @property
    def num_eval(self) -> int: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def image_shape(self) -> tuple[int, int, int]: ...

    @property
    def mean(self) -> tuple[float, ...]: ...

    @property
    def std(self) -> tuple[float, ...]: ...

    def train_epoch(self, epoch: int, seed: int, batch_size: int) -> Iterator[Batch]: ...

    def eval_batches(self, batch_size: int) -> Iterator[EvalBatch]: ...


def check_split(images: np.ndarray, labels: np.ndarray, num_classes: int, what: str) -> None:
    """Raise DataError unless images are uint8 NHWC with 3 channels and labels are in [0, num_classes)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{what} images must be uint8 [n, h, w, 3], got {images.dtype} {list(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{what}: {labels.shape[0] if labels.ndim else 0} labels for {images.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{what} labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    if images.shape[0] == 0:
        raise DataError(f"{what} split is empty")


@dataclass(frozen=True, slots=True)
class ArrayData:
    """Both splits held in host memory (CIFAR-10: 150 MB)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    eval_images: np.ndarray
    eval_labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        check_split(self.train_images, self.train_labels, self.num_classes, "training")
        check_split(self.eval_images, self.eval_labels, self.num_classes, "validation")
        if self.train_images.shape[1:] != self.eval_images.shape[1:]:
            raise DataError(f"training images are {list(self.train_images.shape[1:])} but validation images "
                            f"are {list(self.eval_images.shape[1:])}")

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def num_eval(self) -> int:
        return int(self.eval_labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.train_images.shape[1:]
        return (int(h), int(w), int(c))

    def train_epoch(self, epoch: int, seed: int, batch_size: int) -> Iterator[Batch]:
        order = np.random.default_rng([seed, epoch]).permutation(self.num_train)
        for start in range(0, self.num_train - batch_size + 1, batch_size):
            idx = np.sort(order[start:start + batch_size])  # sorted gathers are faster; the batch is a set
            yield self.train_images[idx], self.train_labels[idx]

    def eval_batches(self, batch_size: int) -> Iterator[EvalBatch]:
        yield from pad_batches(self.eval_images, self.eval_labels, batch_size)


def pad_batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> Iterator[EvalBatch]:
    """Fixed-size batches over every example; the last is zero-padded with mask 0 so one compilation serves all."""
    for start in range(0, len(labels), batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        mask = np.ones(batch_size, np.float32)
        if len(y) < batch_size:
            pad = batch_size - len(y)
            mask[len(y):] = 0.0
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
        yield x, y, mask
