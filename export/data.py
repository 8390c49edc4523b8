"""What an export needs of the data: representative images from the training split (calibration) and the
test split (float against int8 accuracy), at the size the network was trained at: CIFAR-10's archive or
ImageNet's class folders."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.errors import ExportError
from worker.training.augment import resize_area
from worker.training.data_cifar import load_cifar10

#: Calibration images by default: a few hundred cover the activation ranges of a CIFAR network.
REPRESENTATIVE = 256


@dataclass(frozen=True, slots=True)
class ExportData:
    """uint8 NHWC images: ``representative`` (from the training split) and the labelled ``test`` split."""

    representative: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    dataset: str = "cifar10"

    def __post_init__(self) -> None:
        for what, images in (("representative", self.representative), ("test", self.test_images)):
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
                raise ExportError(f"{what} images must be uint8 [n, h, w, 3], got {images.dtype} {list(images.shape)}")
        if self.representative.shape[1:] != self.test_images.shape[1:]:
            raise ExportError(f"representative images are {list(self.representative.shape[1:])} but test images "
                              f"are {list(self.test_images.shape[1:])}")
        if self.test_labels.shape != (len(self.test_images),):
            raise ExportError(f"{len(self.test_labels)} labels for {len(self.test_images)} test images")

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.test_images.shape[1]), int(self.test_images.shape[2])


def spread(n: int, count: int) -> np.ndarray:
    """``count`` indices spread evenly over ``range(n)`` (all of them when count >= n)."""
    if count >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, count).round().astype(np.int64)


def cifar_export_data(source: str | Path, *, image_size: int = 32, representative: int = REPRESENTATIVE,
                      test_limit: int | None = None) -> ExportData:
    """CIFAR-10 from its python archive or folder (``worker.training.data_cifar``, final mode: all 50,000
    training images and the test batch): ``representative`` training images spread over the split, and
    the first ``test_limit`` test images (all when None), downsampled to ``image_size`` as training does."""
    if representative < 1:
        raise ExportError(f"need at least one representative image, got {representative}")
    splits = load_cifar10(source, "final")
    assert splits.test is not None
    train, test = splits.train, splits.test.take(test_limit)
    chosen = train.images[spread(len(train), representative)]
    return ExportData(resize_area(chosen, image_size), resize_area(test.images, image_size), test.labels,
                      splits.num_classes, "cifar10")


#: Threads decoding ImageNet JPEGs (Pillow releases the GIL while it decodes).
DECODE_WORKERS = 8


def imagenet_export_data(root: str | Path, *, image_size: int = 224, representative: int = REPRESENTATIVE,
                         test_limit: int | None = None) -> ExportData:
    """ImageNet from class folders (``worker.training.data_imagenet``: ``train/<wnid>/``, ``val/<wnid>/``, the
    val folder being the test split of a final training): ``representative`` training images and
    ``test_limit`` val images (all when None), each spread over the sorted split so that every class is
    drawn from, decoded as training evaluates them (shorter side to ``image_size``, centre crop)."""
    from worker.training.data_imagenet import decode_image, list_classes, scan_split

    if representative < 1:
        raise ExportError(f"need at least one representative image, got {representative}")
    folder = Path(root)
    classes = list_classes(folder)
    train, test = scan_split(folder, "train", classes), scan_split(folder, "val", classes)
    chosen = spread(len(train), representative)
    scored = spread(len(test), len(test) if test_limit is None else test_limit)

    def decode(paths: Sequence[Path]) -> np.ndarray:
        with ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="export-decode") as pool:
            return np.stack(list(pool.map(lambda p: decode_image(p, image_size), paths)))

    return ExportData(decode([train.paths[i] for i in chosen]), decode([test.paths[i] for i in scored]),
                      test.labels[scored], len(classes), "imagenet")
