"""The EfficientNet-EdgeTPU block space's network (Flax), built from ``genome.edgetpu.plan`` block by block.

Shared layer for layer with the latency lowering (``latency.edgetpu``): stem 3x3 convolution (stride 2 at
ImageNet sizes, stride 1 below 128 px, so a 32x32 CIFAR image keeps its resolution through the stem and
reaches the head at 2x2) + BN + ReLU; per block a fused expansion (KxK convolution + BN + ReLU) or an
MBConv one (1x1 convolution + BN + ReLU, KxK depthwise + BN + ReLU), a linear 1x1 projection + BN, and the
input added when the stride is 1 and the widths match; the head's 1x1 convolution + BN + ReLU, global
average pooling, dropout (training only) and the classifier. ReLU only, no squeeze-and-excitation: every
op maps onto the Edge TPU (convolution, depthwise convolution, add, the global pool, fully connected); in
the export form (``nets.layers.edgetpu_form``) the global pool is an average pool, since TFLite turns
``jnp.mean`` into SUM, which the compiler does not map.

The model reads its input size from the images (``input_size`` matters to the lowering only). Batch norm
uses the reference's momentum 0.99 and epsilon 1e-3. Stages are short, so no block is scanned
(``scan`` is accepted and ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genome.edgetpu import BlockPlan, EdgeTPUGenome, parse_edgetpu, plan, stem_stride
from nets.layers import Conv, DepthwiseConv, Dtype, batch_norm, global_average_pool

#: tensorflow/tpu efficientnet's batch-norm momentum (its epsilon is nets.layers' default 1e-3).
EDGETPU_BN_MOMENTUM = 0.99
NETWORK_KEYS = frozenset({"input_size", "num_classes", "width", "depth"})


class EdgeTPUBlock(nn.Module):
    """One fused or MBConv block of the plan."""

    block: BlockPlan
    dtype: Dtype = jnp.float32
    bn_momentum: float = EDGETPU_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b, dtype, momentum = self.block, self.dtype, self.bn_momentum
        k, s = (b.kernel, b.kernel), (b.stride, b.stride)
        if b.block == "fused":
            y = Conv(b.expanded, k, s, dtype=dtype, name="expand")(x)
        else:
            y = Conv(b.expanded, dtype=dtype, name="expand")(x)
        y = nn.relu(batch_norm(train, momentum, dtype, name="expand_bn")(y))
        if b.block != "fused":
            y = DepthwiseConv(k, s, dtype=dtype, name="depthwise")(y)
            y = nn.relu(batch_norm(train, momentum, dtype, name="depthwise_bn")(y))
        y = Conv(b.out_filters, dtype=dtype, name="project")(y)
        y = batch_norm(train, momentum, dtype, name="project_bn")(y)
        return x + y if b.skip else y


class EdgeTPUNet(nn.Module):
    """The network of ``genome`` (its coefficients times ``width`` and ``depth``); returns float32 logits."""

    genome: EdgeTPUGenome
    num_classes: int
    width: float = 1.0
    depth: float = 1.0
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    bn_momentum: float = EDGETPU_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        p = plan(self.genome, width=self.width, depth=self.depth)
        dtype, momentum = self.dtype, self.bn_momentum
        x = x.astype(dtype)
        s = stem_stride(int(x.shape[1]))
        x = Conv(p.stem_filters, (3, 3), (s, s), dtype=dtype, name="stem_conv")(x)
        x = nn.relu(batch_norm(train, momentum, dtype, name="stem_bn")(x))
        for b in p.blocks:
            x = EdgeTPUBlock(b, dtype, momentum, name=f"stage{b.stage}_block{b.index}")(x, train)
        x = Conv(p.head_filters, dtype=dtype, name="head_conv")(x)
        x = nn.relu(batch_norm(train, momentum, dtype, name="head_bn")(x))
        x = global_average_pool(x)  # an AVERAGE_POOL_2D in the Edge TPU export form (jnp.mean becomes SUM)
        if self.dropout > 0:
            x = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(x)
        x = nn.Dense(self.num_classes, dtype=dtype, param_dtype=jnp.float32, name="classifier")(x)
        return x.astype(jnp.float32)


def _multiplier(network: Mapping[str, Any], key: str) -> float:
    from nets.build import ModelConfigError

    value = network.get(key, 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 8:
        raise ModelConfigError(f"network {key} must be a number in (0, 8], got {value!r}")
    return float(value)


def build(genome: EdgeTPUGenome, network: Mapping[str, Any], *, num_classes: int, dataset: str, dropout: float,
          dtype: Any, bn_momentum: float | None, scan: bool) -> EdgeTPUNet:
    """The edgetpu space's model builder: ``network["width"]`` and ``["depth"]`` scale the genome's network."""
    from nets.build import ModelConfigError

    parse_edgetpu(genome.to_json())  # a genome built in code is checked as its JSON would be (GenomeError)
    unknown = sorted(set(network) - NETWORK_KEYS)
    if unknown:
        raise ModelConfigError(f"the {genome.space} network has no {', '.join(unknown)} "
                               f"(its settings: {', '.join(sorted(NETWORK_KEYS))})")
    return EdgeTPUNet(genome, num_classes, width=_multiplier(network, "width"), depth=_multiplier(network, "depth"),
                      dropout=dropout, dtype=dtype,
                      bn_momentum=EDGETPU_BN_MOMENTUM if bn_momentum is None else bn_momentum)
