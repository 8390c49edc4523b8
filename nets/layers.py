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


_EDGETPU_FORM: contextvars.ContextVar[bool] = contextvars.ContextVar("edgetpu_form", default=False)


@contextlib.contextmanager
def edgetpu_form() -> Iterator[None]:
    """Trace the networks in their Edge TPU export form (``export.tflite``): the same function of the same
    variables, written with ops the Edge TPU compiler maps.

    Two places differ from the training form, whose TFLite conversion has ops outside the Edge TPU's
    supported set: the factorized reduction's strided slices (``x[:, ::2, ::2]`` and the one-pixel crop
    become STRIDED_SLICE and SLICE) are a 1x1 stride-2 convolution and a 2x2 stride-2 VALID convolution
    whose kernel is the trained 1x1 kernel at tap (1, 1) and zeros elsewhere (after a one-pixel pad at
    the bottom/right for odd sizes); the global average pool (``jnp.mean``, which becomes SUM) is an
    average pool over the whole feature map (AVERAGE_POOL_2D). Training, tracing for the latency
    simulator and counting keep the training form.
    """
    token = _EDGETPU_FORM.set(True)
    try:
        yield
    finally:
        _EDGETPU_FORM.reset(token)


def global_average_pool(x: jax.Array) -> jax.Array:
    """Mean over the spatial axes of NHWC ``x`` -> (N, C); an AVERAGE_POOL_2D in the Edge TPU export form."""
    if _EDGETPU_FORM.get():
        n, h, w, c = x.shape
        return nn.avg_pool(x, (h, w), strides=(h, w), padding="VALID").reshape(n, c)
    return jnp.mean(x, axis=(1, 2))
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
        if _EDGETPU_FORM.get():
            # The same two paths without slicing (see ``edgetpu_form``): the same variables and outputs.
            path1 = Conv(half, strides=(2, 2), dtype=self.dtype, name="path1_conv")(x)
            path2 = ShiftedConv(self.features - half, dtype=self.dtype, name="path2_conv")(x)
            if not train and not self.is_initializing():
                # Inference batch norm as a per-channel affine map applied to each path before the concat,
                # so the converter folds it into the two convolutions (after the concat it stays as three
                # elementwise ops).
                scale, shift = _inference_affine(self.variables, "bn", BN_EPSILON)
                return jnp.concatenate([path1 * scale[:half] + shift[:half], path2 * scale[half:] + shift[half:]],
                                       axis=-1).astype(self.dtype)
        else:
            path1 = Conv(half, dtype=self.dtype, name="path1_conv")(x[:, ::2, ::2, :])
            shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]
            path2 = Conv(self.features - half, dtype=self.dtype, name="path2_conv")(shifted[:, ::2, ::2, :])
        out = jnp.concatenate([path1, path2], axis=-1)
        return batch_norm(train, self.bn_momentum, self.dtype, name="bn")(out)


def _inference_affine(variables: Any, name: str, epsilon: float) -> tuple[jax.Array, jax.Array]:
    """(scale, shift) of batch norm ``name`` in inference mode: ``bn(y) == y * scale + shift``."""
    params, stats = variables["params"][name], variables["batch_stats"][name]
    scale = params["scale"] * jax.lax.rsqrt(stats["var"] + epsilon)
    return scale, params["bias"] - stats["mean"] * scale


class ShiftedConv(nn.Module):
    """A 1x1 convolution at the odd pixels (1, 3, 5, ...; zero past the edge) of each axis, without slicing:
    the kernel [1, 1, Cin, features] sits at tap (1, 1) of a 2x2 stride-2 VALID convolution over the input
    padded by one pixel at the bottom/right when a size is odd. Same ``kernel`` variable as ``Conv``."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _kernel_init, (1, 1, x.shape[-1], self.features), jnp.float32)
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        taps = jnp.pad(kernel, ((1, 0), (1, 0), (0, 0), (0, 0)))
        return fastconv.conv2d(
            x.astype(self.dtype), taps.astype(self.dtype), strides=(2, 2), padding="VALID", dilation=(1, 1),
            impl=_CONV_IMPL.get(),
        )
