"""Inception v4 (Szegedy et al. 2016) at 299x299: about 42.7 M parameters.

Layer for layer after slim ``nets/inception_v4.py`` (tensorflow/models, Apache-2.0): the stem with
VALID convolutions, 4 Inception-A, Reduction-A, 7 Inception-B, Reduction-B, 3 Inception-C blocks.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets.zoo.blocks import Classifier, ConvBN


class _Block(nn.Module):
    """Shared helpers: ``c(name, x, filters, kernel, stride, padding)`` is conv + BN + ReLU."""

    def c(self, x: jax.Array, train: bool, name: str, filters: int, kernel: tuple[int, int] = (1, 1),
          stride: int = 1, padding: str = "SAME") -> jax.Array:
        return ConvBN(filters, kernel, (stride, stride), padding, name=name)(x, train)


def _avg3(x: jax.Array) -> jax.Array:
    return nn.avg_pool(x, (3, 3), (1, 1), padding="SAME", count_include_pad=False)


def _max3s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


class Stem(_Block):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.c(x, train, "conv1a", 32, (3, 3), 2, "VALID")
        x = self.c(x, train, "conv2a", 32, (3, 3), 1, "VALID")
        x = self.c(x, train, "conv2b", 64, (3, 3))
        x = jnp.concatenate([_max3s2(x), self.c(x, train, "mixed3a", 96, (3, 3), 2, "VALID")], axis=-1)
        b0 = self.c(self.c(x, train, "mixed4a_b0_1x1", 64), train, "mixed4a_b0_3x3", 96, (3, 3), 1, "VALID")
        b1 = self.c(x, train, "mixed4a_b1_1x1", 64)
        b1 = self.c(b1, train, "mixed4a_b1_1x7", 64, (1, 7))
        b1 = self.c(b1, train, "mixed4a_b1_7x1", 64, (7, 1))
        b1 = self.c(b1, train, "mixed4a_b1_3x3", 96, (3, 3), 1, "VALID")
        x = jnp.concatenate([b0, b1], axis=-1)
        return jnp.concatenate([self.c(x, train, "mixed5a", 192, (3, 3), 2, "VALID"), _max3s2(x)], axis=-1)


class InceptionA(_Block):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b0 = self.c(x, train, "b0_1x1", 96)
        b1 = self.c(self.c(x, train, "b1_1x1", 64), train, "b1_3x3", 96, (3, 3))
        b2 = self.c(self.c(self.c(x, train, "b2_1x1", 64), train, "b2_3x3a", 96, (3, 3)), train, "b2_3x3b", 96, (3, 3))
        b3 = self.c(_avg3(x), train, "b3_1x1", 96)
        return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class ReductionA(_Block):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b0 = self.c(x, train, "b0_3x3", 384, (3, 3), 2, "VALID")
        b1 = self.c(self.c(x, train, "b1_1x1", 192), train, "b1_3x3a", 224, (3, 3))
        b1 = self.c(b1, train, "b1_3x3b", 256, (3, 3), 2, "VALID")
        return jnp.concatenate([b0, b1, _max3s2(x)], axis=-1)


class InceptionB(_Block):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b0 = self.c(x, train, "b0_1x1", 384)
        b1 = self.c(x, train, "b1_1x1", 192)
        b1 = self.c(self.c(b1, train, "b1_1x7", 224, (1, 7)), train, "b1_7x1", 256, (7, 1))
        b2 = self.c(x, train, "b2_1x1", 192)
        b2 = self.c(self.c(b2, train, "b2_7x1a", 192, (7, 1)), train, "b2_1x7a", 224, (1, 7))
        b2 = self.c(self.c(b2, train, "b2_7x1b", 224, (7, 1)), train, "b2_1x7b", 256, (1, 7))
        b3 = self.c(_avg3(x), train, "b3_1x1", 128)
        return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class ReductionB(_Block):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b0 = self.c(self.c(x, train, "b0_1x1", 192), train, "b0_3x3", 192, (3, 3), 2, "VALID")
        b1 = self.c(x, train, "b1_1x1", 256)
        b1 = self.c(self.c(b1, train, "b1_1x7", 256, (1, 7)), train, "b1_7x1", 320, (7, 1))
        b1 = self.c(b1, train, "b1_3x3", 320, (3, 3), 2, "VALID")
        return jnp.concatenate([b0, b1, _max3s2(x)], axis=-1)


class InceptionC(_Block):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b0 = self.c(x, train, "b0_1x1", 256)
        b1 = self.c(x, train, "b1_1x1", 384)
        b1 = jnp.concatenate([self.c(b1, train, "b1_1x3", 256, (1, 3)), self.c(b1, train, "b1_3x1", 256, (3, 1))], -1)
        b2 = self.c(x, train, "b2_1x1", 384)
        b2 = self.c(self.c(b2, train, "b2_3x1", 448, (3, 1)), train, "b2_1x3", 512, (1, 3))
        b2 = jnp.concatenate([self.c(b2, train, "b2_1x3b", 256, (1, 3)), self.c(b2, train, "b2_3x1b", 256, (3, 1))], -1)
        b3 = self.c(_avg3(x), train, "b3_1x1", 256)
        return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class InceptionV4(nn.Module):
    num_classes: int = 1001

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = Stem(name="stem")(x, train)
        for i in range(4):
            x = InceptionA(name=f"mixed5{'bcde'[i]}")(x, train)
        x = ReductionA(name="mixed6a")(x, train)
        for i in range(7):
            x = InceptionB(name=f"mixed6{'bcdefgh'[i]}")(x, train)
        x = ReductionB(name="mixed7a")(x, train)
        for i in range(3):
            x = InceptionC(name=f"mixed7{'bcd'[i]}")(x, train)
        return Classifier(self.num_classes, dropout=0.2, name="head")(x, train)
