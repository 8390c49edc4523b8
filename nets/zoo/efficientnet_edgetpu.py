"""EfficientNet-EdgeTPU-S (Gupta & Tan 2019): fused inverted bottlenecks early, MBConv later, ReLU, no SE.

Block table after tensorflow/tpu ``models/official/efficientnet/edgetpu`` (Apache-2.0): stem 3x3/2 to
32, then stages (repeats, kernel, stride, expansion, output filters, fused); the first fused block
expands from 24 channels' worth (96) although its input has the stem's 32. Head 1x1 to 1280.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from nets.zoo.blocks import Classifier, ConvBN

#: (repeats, kernel, stride, expand ratio, output filters, fused) per stage; S = width 1.0, depth 1.0.
STAGES = (
    (1, 3, 1, 4, 24, True),
    (2, 3, 2, 8, 32, True),
    (4, 3, 2, 8, 48, True),
    (5, 5, 2, 8, 96, False),
    (4, 5, 1, 8, 144, False),
    (2, 5, 2, 8, 192, False),
)


class FusedMBConv(nn.Module):
    """A regular KxK expansion convolution in place of expand 1x1 + depthwise, then a 1x1 projection."""

    expanded: int
    features: int
    kernel: int
    stride: int
    skip: bool

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        k, s = self.kernel, self.stride
        y = ConvBN(self.expanded, (k, k), (s, s), name="expand")(x, train)
        y = ConvBN(self.features, (1, 1), activation=None, name="project")(y, train)
        return x + y if self.skip else y


class MBConv(nn.Module):
    """Inverted bottleneck: expand 1x1, depthwise KxK, project 1x1 (linear)."""

    expanded: int
    features: int
    kernel: int
    stride: int
    skip: bool

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        k, s = self.kernel, self.stride
        y = ConvBN(self.expanded, (1, 1), name="expand")(x, train)
        y = ConvBN(0, (k, k), (s, s), depthwise=True, name="depthwise")(y, train)
        y = ConvBN(self.features, (1, 1), activation=None, name="project")(y, train)
        return x + y if self.skip else y


class EfficientNetEdgeTPUS(nn.Module):
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = ConvBN(32, (3, 3), (2, 2), name="stem")(x, train)
        block = 0
        for stage, (repeats, kernel, stride, expand, filters, fused) in enumerate(STAGES):
            for r in range(repeats):
                cin = x.shape[-1]
                s = stride if r == 0 else 1
                # The first block's expansion is sized from 24 channels, as in the reference table.
                expanded = (24 if stage == 0 else cin) * expand
                skip = s == 1 and cin == filters and stage > 0
                cls = FusedMBConv if fused else MBConv
                x = cls(expanded, filters, kernel, s, skip, name=f"block{block}")(x, train)
                block += 1
        x = ConvBN(1280, (1, 1), name="head_conv")(x, train)
        return Classifier(self.num_classes, dropout=0.2, name="head")(x, train)
