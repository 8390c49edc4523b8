"""The tests' tiny datasets in the real on-disk formats; the writers live in ``worker.training.fixtures``.

(``benchmarks/device_check.py`` writes the same learnable CIFAR fixture without importing the tests.)
"""

from __future__ import annotations

from worker.training.fixtures import (
    CIFAR_CLASSES,
    cifar_images,
    make_cifar_batches,
    md5_of,
    write_cifar_archive,
    write_cifar_extracted,
    write_imagenet_folders,
)

__all__ = [
    "CIFAR_CLASSES",
    "cifar_images",
    "make_cifar_batches",
    "md5_of",
    "write_cifar_archive",
    "write_cifar_extracted",
    "write_imagenet_folders",
]
