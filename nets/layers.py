"""Flax building blocks (conv, depthwise, separable conv, BN, factorized reduction) over nets.fastconv.

Every convolution goes through ``nets.fastconv.conv2d`` / ``nets.fastconv.depthwise_conv2d`` (never
``nn.Conv``) so the fast CPU path applies to every layer. Parameters are always float32; ``dtype`` is
the compute dtype (bfloat16 on accelerators). Convolutions have no bias, as in the reference models.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import fastconv

#: The reference's batch-norm decay and epsilon (tensorflow/tpu amoeba_net, slim nasnet).
BN_MOMENTUM = 0.9997
BN_EPSILON = 1e-3

Dtype = Any
_CONV_IMPL: contextvars.ContextVar[Any] = contextvars.ContextVar("conv_impl", default=None)


@contextlib.contextmanager
def conv_impl(impl: str | None) -> Iterator[None]:
    """Trace the layers with this ``nets.fastconv`` implementation ("xla", "fast", None = its default).

    Used where only shapes matter (counting): XLA's single convolution op traces far faster than the
    fast path's many small ops, and the shapes are identical.
    """
    token = _CONV_IMPL.set(impl)
    try:
        yield
    finally:
        _CONV_IMPL.reset(token)
_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")


class Conv(nn.Module):
    """A bias-free convolution to ``features`` channels: kernel [kh, kw, Cin, features]."""

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", _kernel_init, shape, jnp.float32)
        return fastconv.conv2d(
            x.astype(self.dtype), kernel.astype(self.dtype),
            strides=self.strides, padding=self.padding, dilation=self.dilation, impl=_CONV_IMPL.get(),
        )


class DepthwiseConv(nn.Module):
    """A depthwise convolution with multiplier 1: kernel [kh, kw, 1, C]."""

    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*self.kernel_size, 1, x.shape[-1])
        kernel = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal",
                                                                       in_axis=(0, 1), out_axis=3), shape, jnp.float32)
        return fastconv.depthwise_conv2d(
            x.astype(self.dtype), kernel.astype(self.dtype),
            strides=self.strides, padding="SAME", dilation=self.dilation, impl=_CONV_IMPL.get(),
        )


def batch_norm(
    train: bool, momentum: float, dtype: Dtype, name: str | None = None, epsilon: float = BN_EPSILON
) -> nn.BatchNorm:
    """Batch norm (reference epsilon by default); float32 scale/bias and statistics in ``batch_stats``."""
    return nn.BatchNorm(
        use_running_average=not train, momentum=momentum, epsilon=epsilon,
        dtype=dtype, param_dtype=jnp.float32, name=name,
    )


class ReLUConvBN(nn.Module):
    """ReLU, a bias-free convolution, batch norm."""

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.relu(x)
        x = Conv(self.features, self.kernel_size, self.strides, dtype=self.dtype, name="conv")(x)
        return batch_norm(train, self.bn_momentum, self.dtype, name="bn", epsilon=self.bn_epsilon)(x)


class SepConv(nn.Module):
    """One separable-conv repetition: ReLU, depthwise KxK (stride, dilation), pointwise 1x1, BN."""

    features: int
    kernel_size: int
    strides: int = 1
    dilation: int = 1
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.relu(x)
        k, s, d = self.kernel_size, self.strides, self.dilation
        x = DepthwiseConv((k, k), (s, s), (d, d), dtype=self.dtype, name="depthwise")(x)
        x = Conv(self.features, dtype=self.dtype, name="pointwise")(x)
        return batch_norm(train, self.bn_momentum, self.dtype, name="bn")(x)


class FactorizedReduction(nn.Module):
    """Halve the spatial size: ReLU, two 1x1 paths (the second shifted by one pixel), concat, BN.

    Path 1 takes every second pixel (a 1x1 average pool with stride 2) and a 1x1 conv to
    ``features // 2``; path 2 first pads bottom/right and crops top/left by one pixel, then does the
    same with ``features - features // 2`` channels (so odd ``features`` still come out exact).
    """

    features: int
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.relu(x)
        half = self.features // 2
        path1 = Conv(half, dtype=self.dtype, name="path1_conv")(x[:, ::2, ::2, :])
        shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]
        path2 = Conv(self.features - half, dtype=self.dtype, name="path2_conv")(shifted[:, ::2, ::2, :])
        out = jnp.concatenate([path1, path2], axis=-1)
        return batch_norm(train, self.bn_momentum, self.dtype, name="bn")(out)
