"""CIFAR-10 from its official python archive: locate (data dir, cache, download with MD5), read, split.

Split for search: the validation set is the *last* tenth of the 50,000 training images (the last
5,000: the second half of ``data_batch_5``), the rest is the training set; ``test_batch`` is never
read in search mode. Final mode trains on all 50,000 and returns the test batch.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worker.training.errors import DataError, DatasetUnavailable

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_FILE = "test_batch"
NUM_CLASSES = 10
#: Fraction of the training images held out for validation: 5,000 of 50,000.
VALIDATION_FRACTION = 10

Mode = Literal["search", "final"]


def cache_root() -> Path:
    """Amoeba's cache directory: ``$AMOEBA_CACHE`` or ``~/.cache/amoeba``."""
    env = os.environ.get("AMOEBA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "amoeba"


def default_cifar_cache() -> Path:
    return cache_root() / "cifar10"


@dataclass(frozen=True, slots=True)
class ImageSplit:
    """Images (uint8 NHWC) and their integer labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, limit: int | None) -> ImageSplit:
        """The first ``limit`` examples (all of them when ``limit`` is None)."""
        if limit is None or limit >= len(self):
            return self
        return ImageSplit(self.images[:limit], self.labels[:limit])


@dataclass(frozen=True, slots=True)
class CifarSplits:
    """Search mode: train + validation (test is None). Final mode: all training images + test."""

    train: ImageSplit
    validation: ImageSplit | None
    test: ImageSplit | None
    num_classes: int = NUM_CLASSES


# --- locating and downloading -----------------------------------------------------------------------


def _existing_copy(directory: Path) -> Path | None:
    if (directory / ARCHIVE_NAME).is_file():
        return directory / ARCHIVE_NAME
    if (directory / FOLDER_NAME / TRAIN_FILES[0]).is_file():
        return directory / FOLDER_NAME
    if directory.name == FOLDER_NAME and (directory / TRAIN_FILES[0]).is_file():
        return directory
    return None


def locate_cifar10(
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    download: bool = True,
    progress: bool = True,
    timeout_s: float = 30.0,
) -> Path:
    """The archive or extracted folder to read: ``data_dir`` first, then the cache, else download into the cache.

    Raises DatasetUnavailable (saying where to put the archive) when no copy exists and the download
    is disabled or fails; DataError when a download's MD5 is wrong.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cifar_cache()
    for directory in ([Path(data_dir).expanduser()] if data_dir else []) + [cache]:
        found = _existing_copy(directory)
        if found is not None:
            return found
    where = f"{Path(data_dir).expanduser()} (--data-dir) or {cache}" if data_dir else str(cache)
    if not download:
        raise DatasetUnavailable(f"CIFAR-10 not found: put {ARCHIVE_NAME} (from {url}) into {where}")
    try:
        return download_file(url, cache / ARCHIVE_NAME, md5=md5, progress=progress, timeout_s=timeout_s)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DatasetUnavailable(
            f"CIFAR-10 not found and the download from {url} failed ({reason}): "
            f"put {ARCHIVE_NAME} into {where}"
        ) from None


def download_file(url: str, dest: Path, *, md5: str | None, progress: bool = True, timeout_s: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically (temp file in the same folder, checksum, rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            for chunk in _progress_chunks(response, total, dest.name, progress):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise DataError(f"downloaded {url} has MD5 {digest.hexdigest()}, expected {md5}; not kept")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _progress_chunks(response: Any, total: int | None, label: str, progress: bool) -> Iterator[bytes]:
    def chunks() -> Iterator[bytes]:
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                return
            yield chunk

    if not progress:
        yield from chunks()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"downloading {label}", total=total)
        for chunk in chunks():
            bar.advance(task, len(chunk))
            yield chunk


# --- reading ---------------------------------------------------------------------------------------


def _read_members(source: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The raw bytes of the named batch files, from the archive or the extracted folder; nothing else is read."""
    found: dict[str, bytes] = {}
    try:
        if source.is_dir():
            for name in names:
                path = source / name
                if not path.is_file():
                    raise DataError(f"{source} has no {name}")
                found[name] = path.read_bytes()
            return found
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if base in names and member.isfile() and base not in found:
                    handle = tar.extractfile(member)
                    if handle is None:
                        raise DataError(f"{source}: cannot read {member.name}")
                    found[base] = handle.read()
                    if len(found) == len(names):
                        break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"corrupt CIFAR-10 archive {source}: {exc}") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)}")
    return found


def decode_batch(payload: bytes, name: str) -> ImageSplit:
    """One pickled batch -> NHWC uint8 images and int32 labels, with every field checked."""
    try:
        batch = pickle.loads(payload, encoding="bytes")
    except Exception as exc:
        raise DataError(f"{name} is not a CIFAR-10 batch: {type(exc).__name__}: {exc}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{name} is not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{name}: data must be uint8 [n, 3072], got {data.dtype} {list(data.shape)}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataError(f"{name}: {labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{name}: labels must be integers in [0, {NUM_CLASSES}), got range "
                        f"[{labels.min()}, {labels.max()}]")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ImageSplit(np.ascontiguousarray(images), labels.astype(np.int32))


def _concat(parts: list[ImageSplit]) -> ImageSplit:
    return ImageSplit(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))


def split_validation(train: ImageSplit) -> tuple[ImageSplit, ImageSplit]:
    """(train, validation): validation is the last tenth, 5,000 of CIFAR-10's 50,000."""
    n_val = len(train) // VALIDATION_FRACTION
    if n_val < 1 or n_val >= len(train):
        raise DataError(f"{len(train)} training images are too few to hold out a validation tenth")
    cut = len(train) - n_val
    return (ImageSplit(train.images[:cut], train.labels[:cut]),
            ImageSplit(train.images[cut:], train.labels[cut:]))


_cache_lock = threading.Lock()
_loaded: dict[tuple[str, float, int, str], CifarSplits] = {}


def load_cifar10(source: str | Path, mode: Mode = "search") -> CifarSplits:
    """Read the archive or folder; memoized per file so a worker reads the data once."""
    path = Path(source)
    if mode not in ("search", "final"):
        raise ValueError(f"mode must be 'search' or 'final', got {mode!r}")
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 at {path}: {exc.strerror}") from None
    key = (str(path.resolve()), stat.st_mtime, stat.st_size, mode)
    with _cache_lock:
        hit = _loaded.get(key)
        if hit is not None:
            return hit
        splits = _load(path, mode)
        _loaded.clear()  # keep one dataset in memory: 150 MB each
        _loaded[key] = splits
        return splits


def _load(path: Path, mode: Mode) -> CifarSplits:
    names = TRAIN_FILES + ((TEST_FILE,) if mode == "final" else ())
    raw = _read_members(path, names)
    train = _concat([decode_batch(raw[name], name) for name in TRAIN_FILES])
    if mode == "final":
        return CifarSplits(train=train, validation=None, test=decode_batch(raw[TEST_FILE], TEST_FILE))
    fit, validation = split_validation(train)
    return CifarSplits(train=fit, validation=validation, test=None)
