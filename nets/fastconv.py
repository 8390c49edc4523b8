"""Convolution primitives used by every Flax layer in Amoeba (NHWC inputs, HWIO kernels).

All convolutions in the models go through these two functions so that a faster CPU implementation
(custom VJP) can be swapped in at one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax import lax

Padding = str | Sequence[tuple[int, int]]


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int] = (1, 1),
    padding: Padding = "SAME",
    dilation: tuple[int, int] = (1, 1),
) -> jax.Array:
    """A regular (or pointwise) convolution: x [N,H,W,Cin], kernel [kh,kw,Cin,Cout]."""
    return lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=padding, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def depthwise_conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int] = (1, 1),
    padding: Padding = "SAME",
    dilation: tuple[int, int] = (1, 1),
) -> jax.Array:
    """A depthwise convolution (multiplier 1): x [N,H,W,C], kernel [kh,kw,1,C]."""
    return lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=padding, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1],
    )
