"""Writers of tiny datasets in the real on-disk formats: the CIFAR-10 python archive and ImageNet class folders.

Used by the tests (through ``tests/fixtures_data.py``) and by ``benchmarks/device_check.py``, which trains
a child on the learnable CIFAR fixture; numpy only (Pillow for the ImageNet folders, imported there).

The CIFAR layout follows https://www.cs.toronto.edu/~kriz/cifar.html: ``cifar-10-batches-py/`` holding
``data_batch_1..5`` and ``test_batch`` (pickled dicts with ``b'batch_label'``, ``b'labels'``, ``b'data'``
as uint8 ``[n, 3072]`` - the red plane, then green, then blue, each row-major 32x32 - and
``b'filenames'``) and ``batches.meta`` (``b'label_names'``, ``b'num_cases_per_batch'``, ``b'num_vis'``).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: Ten clearly different colours, one per class, so a tiny network can learn the learnable fixture.
_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [128, 128, 128]],
    dtype=np.float32,
)


def cifar_images(labels: np.ndarray, rng: np.random.Generator, learnable: bool = True,
                 noise: float = 40.0) -> np.ndarray:
    """NHWC uint8 images: class colour plus a class-specific stripe pattern plus Gaussian noise of std ``noise``
    (or pure noise). The default is easy; a noise of 100 or more makes children differ in what they learn."""
    n = len(labels)
    if not learnable:
        return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    base = _PALETTE[labels][:, None, None, :] * np.ones((1, 32, 32, 1), np.float32)
    rows = np.arange(32)[None, :, None]
    cols = np.arange(32)[None, None, :]
    period = (2 + labels % 5)[:, None, None]
    stripes = np.where(labels[:, None, None] < 5, (rows // period) % 2, (cols // period) % 2).astype(np.float32)
    base = base * (0.6 + 0.4 * stripes[..., None])
    noisy = base + rng.normal(0.0, noise, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _batch_dict(images: np.ndarray, labels: np.ndarray, name: str) -> dict[bytes, object]:
    # NHWC -> [n, 3072] as channel planes (R, G, B), each 32x32 row-major: the archive's layout.
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(data, dtype=np.uint8),
        b"filenames": [f"{name.replace(' ', '_')}_{i:05d}.png".encode() for i in range(len(images))],
    }


def make_cifar_batches(
    per_batch: int = 100, test_size: int = 100, seed: int = 0, learnable: bool = True, noise: float = 40.0,
) -> dict[str, dict[bytes, object]]:
    """The seven pickled files of ``cifar-10-batches-py`` as dicts (5 training batches, test, meta)."""
    rng = np.random.default_rng(seed)
    files: dict[str, dict[bytes, object]] = {}
    for k in range(1, 6):
        labels = rng.integers(0, 10, size=per_batch)
        files[f"data_batch_{k}"] = _batch_dict(cifar_images(labels, rng, learnable, noise), labels,
                                                f"training batch {k} of 5")
    labels = rng.integers(0, 10, size=test_size)
    files["test_batch"] = _batch_dict(cifar_images(labels, rng, learnable, noise), labels, "testing batch 1 of 1")
    files["batches.meta"] = {
        b"label_names": [c.encode() for c in CIFAR_CLASSES],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    return files


def write_cifar_archive(directory: Path, per_batch: int = 100, test_size: int = 100, seed: int = 0,
                        learnable: bool = True, files: dict[str, dict[bytes, object]] | None = None,
                        noise: float = 40.0) -> Path:
    """Write ``directory/cifar-10-python.tar.gz`` in the official layout and return its path."""
    files = files if files is not None else make_cifar_batches(per_batch, test_size, seed, learnable, noise)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        dir_info = tarfile.TarInfo("cifar-10-batches-py")
        dir_info.type = tarfile.DIRTYPE
        dir_info.mode = 0o755
        tar.addfile(dir_info)
        for name, content in files.items():
            payload = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(payload))
    return path


def write_cifar_extracted(directory: Path, per_batch: int = 100, test_size: int = 100, seed: int = 0,
                          learnable: bool = True) -> Path:
    """Write an extracted ``directory/cifar-10-batches-py/`` and return that folder."""
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in make_cifar_batches(per_batch, test_size, seed, learnable).items():
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))
    return folder


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_imagenet_folders(root: Path, classes: tuple[str, ...] = ("n01440764", "n01443537", "n01484850"),
                           train_per_class: int = 4, val_per_class: int = 2, seed: int = 0) -> Path:
    """Write ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` with Pillow, varied sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, wnid in enumerate(classes):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
                colour = _PALETTE[c % len(_PALETTE)]
                pixels = np.clip(colour + rng.normal(0, 20, size=(h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", format="JPEG", quality=90)
    return root
