"""ImageNet from class folders (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``), decoded in a background pipeline.

Class index = position of the folder name in the sorted list of ``train/`` folders. Images are decoded
with Pillow by a thread pool (Pillow releases the GIL while decoding and resizing), resized so the
shorter side is the target resolution and centre-cropped square; a producer thread keeps ``prefetch``
batches ready ahead of the training loop. Random crops and flips happen later, on the device.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worker.training.augment import IMAGENET_MEAN, IMAGENET_STD
from worker.training.datasets import Batch, EvalBatch
from worker.training.errors import DataError, DatasetUnavailable

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass(frozen=True, slots=True)
class ImageFolder:
    """File paths and labels of one split, in sorted (deterministic) order."""

    paths: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


def list_classes(root: Path) -> tuple[str, ...]:
    train = root / "train"
    if not train.is_dir():
        raise DatasetUnavailable(f"ImageNet not found: expected {train}/<class>/*.JPEG (and {root / 'val'}/<class>/*.JPEG)")
    classes = tuple(sorted(p.name for p in train.iterdir() if p.is_dir()))
    if not classes:
        raise DataError(f"{train} has no class folders")
    return classes


def scan_split(root: Path, split: str, classes: tuple[str, ...], limit_per_class: int | None = None) -> ImageFolder:
    """Every image of ``root/split/<class>/``; a class folder unknown to ``train/`` is an error."""
    folder = root / split
    if not folder.is_dir():
        raise DatasetUnavailable(f"ImageNet split not found: expected {folder}/<class>/*.JPEG")
    index = {name: i for i, name in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in index:
            raise DataError(f"{sub} is a class that {root / 'train'} does not have")
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if limit_per_class is not None:
            files = files[:limit_per_class]
        paths.extend(files)
        labels.extend([index[sub.name]] * len(files))
    if not paths:
        raise DataError(f"{folder} has no images (*.JPEG)")
    return ImageFolder(tuple(paths), np.asarray(labels, np.int32), classes)


def decode_image(path: Path, size: int) -> np.ndarray:
    """Decode, convert to RGB, resize the shorter side to ``size`` and centre-crop to ``size`` x ``size``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when the image is much larger
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode {path}: {exc}") from None
    w, h = rgb.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)


class ImageNetData:
    """The TrainData port over class folders: a decode pool plus a prefetching producer thread per pass."""

    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self, root: str | Path, image_size: int = 224, *, workers: int = 8, prefetch: int = 4,
                 train_limit: int | None = None, eval_limit: int | None = None) -> None:
        self.root = Path(root)
        classes = list_classes(self.root)
        self.train = _limit(scan_split(self.root, "train", classes), train_limit)
        self.eval = _limit(scan_split(self.root, "val", classes), eval_limit)
        self.num_classes = len(classes)
        self.image_size = image_size
        self.workers = workers
        self.prefetch = prefetch

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_eval(self) -> int:
        return len(self.eval)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def train_epoch(self, epoch: int, seed: int, batch_size: int) -> Iterator[Batch]:
        order = np.random.default_rng([seed, epoch]).permutation(self.num_train)
        chunks = [order[s:s + batch_size] for s in range(0, self.num_train - batch_size + 1, batch_size)]
        for images, labels, _ in self._pipeline(self.train, chunks, batch_size):
            yield images, labels

    def eval_batches(self, batch_size: int) -> Iterator[EvalBatch]:
        idx = np.arange(self.num_eval)
        yield from self._pipeline(self.eval, [idx[s:s + batch_size] for s in range(0, self.num_eval, batch_size)],
                                  batch_size)

    def _pipeline(self, split: ImageFolder, chunks: list[np.ndarray], batch_size: int) -> Iterator[EvalBatch]:
        """Decode ``chunks`` of indices into batches on background threads, ``prefetch`` batches ahead."""
        ready: queue.Queue[EvalBatch | BaseException | None] = queue.Queue(maxsize=self.prefetch)
        cancelled = threading.Event()

        def put(item: EvalBatch | BaseException | None) -> bool:
            while not cancelled.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                with ThreadPoolExecutor(self.workers, thread_name_prefix="imagenet-decode") as pool:
                    for chunk in chunks:
                        images = list(pool.map(lambda i: decode_image(split.paths[i], self.image_size), chunk))
                        x = np.zeros((batch_size, self.image_size, self.image_size, 3), np.uint8)
                        y = np.zeros(batch_size, np.int32)
                        mask = np.zeros(batch_size, np.float32)
                        x[:len(chunk)] = np.stack(images)
                        y[:len(chunk)] = split.labels[chunk]
                        mask[:len(chunk)] = 1.0
                        if not put((x, y, mask)):
                            return
                put(None)
            except BaseException as exc:
                put(exc)

        producer = threading.Thread(target=produce, name="imagenet-prefetch", daemon=True)
        producer.start()
        try:
            while True:
                item = ready.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()
            producer.join(timeout=10)


def _limit(split: ImageFolder, limit: int | None) -> ImageFolder:
    """The first ``limit`` images after a fixed shuffle (so a small limit still covers every class)."""
    if limit is None or limit >= len(split):
        return split
    keep = np.sort(np.random.default_rng(0).permutation(len(split))[:limit])
    return ImageFolder(tuple(split.paths[i] for i in keep), split.labels[keep], split.classes)
