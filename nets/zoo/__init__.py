"""Reference networks in Flax (MobileNet v1, EfficientNet-EdgeTPU-S, Inception v4): ``nets.zoo.get(name)``."""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn

from domain.errors import AmoebaError


@dataclass(frozen=True, slots=True)
class ZooEntry:
    """A reference network: its module (ImageNet classes) and the input size it is published at."""

    name: str
    module: nn.Module
    input_size: int
    published_params: float  # millions
    published_mult_adds: float | None  # millions, where published


class ZooError(AmoebaError, ValueError):
    """An unknown reference-network name."""


def _entries() -> dict[str, ZooEntry]:
    from nets.zoo.efficientnet_edgetpu import efficientnet_edgetpu_s
    from nets.zoo.inception_v4 import InceptionV4
    from nets.zoo.mobilenet_v1 import MobileNetV1

    return {
        "mobilenet_v1": ZooEntry("mobilenet_v1", MobileNetV1(num_classes=1000), 224, 4.2, 569.0),
        "efficientnet_edgetpu_s": ZooEntry("efficientnet_edgetpu_s", efficientnet_edgetpu_s(num_classes=1000), 224, 5.4,
                                           None),
        "inception_v4": ZooEntry("inception_v4", InceptionV4(num_classes=1001), 299, 42.7, None),
    }


NAMES = ("mobilenet_v1", "efficientnet_edgetpu_s", "inception_v4")


def get(name: str) -> ZooEntry:
    """The reference network ``name`` (one of ``NAMES``); call ``entry.module.init``/``apply`` as usual."""
    entries = _entries()
    if name not in entries:
        raise ZooError(f"unknown model {name!r}; expected one of {', '.join(NAMES)}")
    return entries[name]
