"""Building blocks of the reference networks: convolution + batch norm + activation, in NHWC."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import fastconv

_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")
Activation = Callable[[jax.Array], jax.Array] | None


class ConvBN(nn.Module):
    """A bias-free convolution (regular, or depthwise with ``depthwise=True``), batch norm, activation."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    depthwise: bool = False
    activation: Activation = nn.relu
    bn_epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        cin = x.shape[-1]
        if self.depthwise:
            kernel = self.param("kernel", _kernel_init, (*self.kernel_size, 1, cin), jnp.float32)
            x = fastconv.depthwise_conv2d(x, kernel, self.strides, self.padding)
        else:
            kernel = self.param("kernel", _kernel_init, (*self.kernel_size, cin, self.features), jnp.float32)
            x = fastconv.conv2d(x, kernel, self.strides, self.padding)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.997, epsilon=self.bn_epsilon, name="bn")(x)
        return self.activation(x) if self.activation is not None else x


class Classifier(nn.Module):
    """Global average pool, dropout (training only), a dense layer to the class logits."""

    num_classes: int
    dropout: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="logits")(x)


def relu6(x: jax.Array) -> jax.Array:
    return jnp.minimum(nn.relu(x), 6.0)

