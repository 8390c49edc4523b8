"""The NAS-Bench-201 network (Flax): stem, 3 stages of N cells (C, 2C, 4C) joined by residual blocks.

Follows the NAS-Bench-201 skeleton (D-X-Y/AutoDL-Projects ``TinyNetwork``, MIT): stem conv 3x3 to C +
BN; stages of ``cells`` cells with C = 16, 32, 64 by default; between stages a residual block (ReLU-conv
3x3 stride 2-BN, ReLU-conv 3x3-BN, shortcut 2x2 average pool stride 2 + 1x1 conv); head BN, ReLU,
global average pool, dense. Cell node j sums ``op(j, i)(node i)`` over i < j; the output is node 3.
``none`` edges contribute nothing; a node with only ``none`` inputs is zeros, so a cell whose output is
disconnected still runs (and outputs zeros). Batch norm uses PyTorch's defaults (momentum 0.1 there,
0.9 here; epsilon 1e-5), as the benchmark was trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genome.nb201 import NB201Genome
from nets.layers import Conv, Dtype, ReLUConvBN, batch_norm, global_average_pool

NB201_BN_MOMENTUM = 0.9
NB201_BN_EPSILON = 1e-5


class NB201Cell(nn.Module):
    genome: NB201Genome
    features: int
    dtype: Dtype = jnp.float32
    bn_momentum: float = NB201_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        nodes = [x]
        for j in (1, 2, 3):
            total = None
            for i in range(j):
                op = self.genome.edge_op(j, i)
                name = f"edge{j}_{i}_{op}"
                if op == "none":
                    continue
                if op == "skip_connect":
                    y = nodes[i]
                elif op == "avg_pool_3x3":
                    y = nn.avg_pool(nodes[i], (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)
                else:
                    k = 1 if op == "nor_conv_1x1" else 3
                    y = ReLUConvBN(self.features, (k, k), dtype=self.dtype, bn_momentum=self.bn_momentum,
                                   bn_epsilon=NB201_BN_EPSILON, name=name)(nodes[i], train)
                total = y if total is None else total + y
            nodes.append(jnp.zeros_like(x) if total is None else total)
        return nodes[3]


class ResidualBlock(nn.Module):
    features: int
    dtype: Dtype = jnp.float32
    bn_momentum: float = NB201_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        kw = {"dtype": self.dtype, "bn_momentum": self.bn_momentum, "bn_epsilon": NB201_BN_EPSILON}
        y = ReLUConvBN(self.features, (3, 3), (2, 2), name="conv_a", **kw)(x, train)
        y = ReLUConvBN(self.features, (3, 3), (1, 1), name="conv_b", **kw)(y, train)
        shortcut = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        shortcut = Conv(self.features, dtype=self.dtype, name="shortcut_conv")(shortcut)
        return shortcut + y


class NB201Net(nn.Module):
    """The NAS-Bench-201 network of ``genome``; ``__call__(x, train)`` returns float32 logits."""

    genome: NB201Genome
    num_classes: int
    cells: int = 5
    filters: int = 16
    dtype: Dtype = jnp.float32
    bn_momentum: float = NB201_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = x.astype(self.dtype)
        x = Conv(self.filters, (3, 3), dtype=self.dtype, name="stem_conv")(x)
        x = batch_norm(train, self.bn_momentum, self.dtype, name="stem_bn", epsilon=NB201_BN_EPSILON)(x)
        for stage in (1, 2, 3):
            features = self.filters * 2 ** (stage - 1)
            if stage > 1:
                x = ResidualBlock(features, self.dtype, self.bn_momentum, name=f"resblock{stage - 1}")(x, train)
            for i in range(1, self.cells + 1):
                x = NB201Cell(self.genome, features, self.dtype, self.bn_momentum, name=f"stage{stage}_cell{i}")(x, train)
        x = batch_norm(train, self.bn_momentum, self.dtype, name="head_bn", epsilon=NB201_BN_EPSILON)(x)
        x = nn.relu(x)
        x = global_average_pool(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(x)
        return x.astype(jnp.float32)


def build(genome: NB201Genome, network: Mapping[str, Any], *, num_classes: int, dataset: str, dropout: float,
          dtype: Any, bn_momentum: float | None, scan: bool) -> NB201Net:
    """The nb201 space's model builder: ``network["cells"]`` per stage, ``network["filters"]`` stage-1 channels."""
    from nets.build import ModelConfigError, positive_int

    if dropout:
        raise ModelConfigError("the NB201 network has no dropout")
    return NB201Net(genome, num_classes, cells=positive_int(network, "cells"), filters=positive_int(network, "filters"),
                    dtype=dtype, bn_momentum=NB201_BN_MOMENTUM if bn_momentum is None else bn_momentum)
