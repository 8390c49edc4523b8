"""The NASNet op table: one Flax module factory per genome.NASNET_OPS name (names shared with latency/).

Each factory takes ``(filters, stride, dtype, bn_momentum, name)`` and returns a module called as
``op(x, train)``; ``x`` may have any channel count, the result has ``filters`` channels and the
spatial size divided by ``stride``. The ops follow tensorflow/tpu ``amoeba_net`` and slim
``nasnet_utils`` (Apache-2.0):

- ``identity``: ``x`` at stride 1 with matching channels, else ReLU, 1x1 conv (stride), BN.
- ``sep_conv_KxK``: twice [ReLU, depthwise KxK, pointwise 1x1, BN]; only the first depthwise strides.
- ``dil_sep_conv_3x3``: the same with depthwise dilation 2.
- ``avg_pool_3x3`` / ``max_pool_3x3``: 3x3 window, SAME padding (the average excludes padding), then
  ReLU, 1x1 conv, BN only when the channel count differs from ``filters``.
- ``conv_1x7_7x1``: the reference's bottleneck (tensorflow/tpu ``amoeba_net``): ReLU-1x1 conv to
  ``filters // 4``-BN, ReLU-conv 1x7 (stride (1, s))-BN, ReLU-conv 7x1 (stride (s, 1))-BN, ReLU-1x1
  conv to ``filters``-BN; without the two 1x1 layers (at ``filters``) when ``filters < 4``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genome import NASNET_OPS
from nets.layers import BN_MOMENTUM, Dtype, ReLUConvBN, SepConv


class Identity(nn.Module):
    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.strides == 1 and x.shape[-1] == self.features:
            return x
        s = (self.strides, self.strides)
        return ReLUConvBN(self.features, (1, 1), s, dtype=self.dtype, bn_momentum=self.bn_momentum, name="1x1")(x, train)


class StackedSepConv(nn.Module):
    features: int
    kernel_size: int
    strides: int = 1
    dilation: int = 1
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for rep, stride in enumerate((self.strides, 1), start=1):
            x = SepConv(self.features, self.kernel_size, stride, self.dilation, dtype=self.dtype,
                        bn_momentum=self.bn_momentum, name=f"sep{rep}")(x, train)
        return x


class Pool(nn.Module):
    features: int
    kind: str  # "avg" or "max"
    strides: int = 1
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        s = (self.strides, self.strides)
        if self.kind == "avg":
            x = nn.avg_pool(x, (3, 3), strides=s, padding="SAME", count_include_pad=False)
        else:
            x = nn.max_pool(x, (3, 3), strides=s, padding="SAME")
        if x.shape[-1] != self.features:
            x = ReLUConvBN(self.features, dtype=self.dtype, bn_momentum=self.bn_momentum, name="1x1")(x, train)
        return x


class Conv1x7x7x1(nn.Module):
    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        # The reference wraps the factorized 7x7 in a bottleneck of filters // 4 channels (none when
        # that is 0); the paper's parameter counts are only reached with it.
        inner = self.features // 4
        bn = {"dtype": self.dtype, "bn_momentum": self.bn_momentum}
        if inner >= 1:
            x = ReLUConvBN(inner, name="pre_1x1", **bn)(x, train)
        width = inner if inner >= 1 else self.features
        x = ReLUConvBN(width, (1, 7), (1, self.strides), name="conv_1x7", **bn)(x, train)
        x = ReLUConvBN(width, (7, 1), (self.strides, 1), name="conv_7x1", **bn)(x, train)
        if inner >= 1:
            x = ReLUConvBN(self.features, name="post_1x1", **bn)(x, train)
        return x


OpFactory = Callable[..., nn.Module]


def _sep(kernel_size: int, dilation: int = 1) -> OpFactory:
    def make(filters: int, stride: int, dtype: Any, bn_momentum: float, name: str) -> nn.Module:
        return StackedSepConv(filters, kernel_size, stride, dilation, dtype=dtype, bn_momentum=bn_momentum, name=name)

    return make


def _pool(kind: str) -> OpFactory:
    def make(filters: int, stride: int, dtype: Any, bn_momentum: float, name: str) -> nn.Module:
        return Pool(filters, kind, stride, dtype=dtype, bn_momentum=bn_momentum, name=name)

    return make


def _identity(filters: int, stride: int, dtype: Any, bn_momentum: float, name: str) -> nn.Module:
    return Identity(filters, stride, dtype=dtype, bn_momentum=bn_momentum, name=name)


def _conv_1x7_7x1(filters: int, stride: int, dtype: Any, bn_momentum: float, name: str) -> nn.Module:
    return Conv1x7x7x1(filters, stride, dtype=dtype, bn_momentum=bn_momentum, name=name)


#: op name -> factory(filters, stride, dtype, bn_momentum, name) -> module called as op(x, train).
OPS: dict[str, OpFactory] = {
    "identity": _identity,
    "sep_conv_3x3": _sep(3),
    "sep_conv_5x5": _sep(5),
    "sep_conv_7x7": _sep(7),
    "avg_pool_3x3": _pool("avg"),
    "max_pool_3x3": _pool("max"),
    "dil_sep_conv_3x3": _sep(3, dilation=2),
    "conv_1x7_7x1": _conv_1x7_7x1,
}

assert set(OPS) == set(NASNET_OPS), "the op table must cover exactly genome.NASNET_OPS"
