"""MobileNet v1 (Howard et al. 2017), width 1.0: 4.2 M parameters, 569 M mult-adds at 224x224."""

from __future__ import annotations

import flax.linen as nn
import jax

from nets.zoo.blocks import Classifier, ConvBN, relu6

#: (pointwise filters, depthwise stride) of the 13 depthwise-separable blocks.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))


class MobileNetV1(nn.Module):
    num_classes: int = 1000
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = ConvBN(int(32 * self.width), (3, 3), (2, 2), activation=relu6, name="conv0")(x, train)
        for i, (filters, stride) in enumerate(BLOCKS, start=1):
            x = ConvBN(0, (3, 3), (stride, stride), depthwise=True, activation=relu6, name=f"block{i}_dw")(x, train)
            x = ConvBN(int(filters * self.width), (1, 1), activation=relu6, name=f"block{i}_pw")(x, train)
        return Classifier(self.num_classes, dropout=0.001, name="head")(x, train)
