"""The Large-Scale Evolution space's network (Flax): the genome's graph, built vertex by vertex from its plan.

Per backbone vertex (``genome.lse.plan``): the primary input (a bias-free SAME convolution, or the source
itself for an identity edge), plus each skip input aligned by the space's merge rule (a strided slice for
the subsampling and any channel cut, zero padding for missing channels), summed; then the vertex's
activation (batch norm + ReLU, or none). The output vertex feeds global average pooling and the
classifier. The same ops in the same order as the latency lowering (``latency.lse``).

Variables are named after the genome's stable ids, so a child's layers have its parent's names wherever
the mutation kept the place: ``params/e{id}/kernel`` for the convolution on edge ``id``,
``params|batch_stats/v{id}_bn`` for the batch norm at vertex ``id``, ``params/classifier``.
The model reads its input size from the images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genome.lse import BN_RELU, LSEGenome, plan
from nets.layers import Conv, Dtype, batch_norm

#: Batch-norm momentum when the training settings name none (Flax's default; the paper does not say).
LSE_BN_MOMENTUM = 0.99
NETWORK_KEYS = frozenset({"input_size", "num_classes"})


def conv_name(edge_id: int) -> str:
    """The variable scope of the convolution on edge ``edge_id``."""
    return f"e{edge_id}"


def bn_name(vertex_id: int) -> str:
    """The variable scope of the batch norm at vertex ``vertex_id``."""
    return f"v{vertex_id}_bn"


class LSENet(nn.Module):
    """The network of ``genome``; ``__call__(x, train)`` returns float32 logits."""

    genome: LSEGenome
    num_classes: int
    dtype: Dtype = jnp.float32
    bn_momentum: float = LSE_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.astype(self.dtype)
        values: dict[int, jax.Array] = {}
        for vp in plan(self.genome):
            v = vp.vertex
            if vp.primary is None:
                values[v.id] = x
                continue
            e = vp.primary
            acc = values[e.src]
            if e.is_conv:
                acc = Conv(e.channels, e.filter, (e.stride, e.stride), dtype=self.dtype, name=conv_name(e.id))(acc)
            for s in vp.skips:
                y = values[s.src]
                if s.stride > 1 or s.channels > vp.channels:
                    n, h, w, _ = y.shape
                    y = jax.lax.slice(y, (0, 0, 0, 0), (n, h, w, min(s.channels, vp.channels)),
                                      (1, s.stride, s.stride, 1))
                if s.channels < vp.channels:
                    y = jnp.pad(y, ((0, 0), (0, 0), (0, 0), (0, vp.channels - s.channels)))
                acc = acc + y
            if v.activation == BN_RELU:
                acc = nn.relu(batch_norm(train, self.bn_momentum, self.dtype, name=bn_name(v.id))(acc))
            values[v.id] = acc
        out = jnp.mean(values[self.genome.output], axis=(1, 2))
        out = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(out)
        return out.astype(jnp.float32)


def build(genome: LSEGenome, network: Mapping[str, Any], *, num_classes: int, dataset: str, dropout: float,
          dtype: Any, bn_momentum: float | None, scan: bool) -> LSENet:
    """The lse space's model builder (``scan`` is accepted and ignored: no block repeats)."""
    from nets.build import ModelConfigError

    unknown = sorted(set(network) - NETWORK_KEYS)
    if unknown:
        raise ModelConfigError(f"the lse network has no {', '.join(unknown)} (its settings: input_size, num_classes)")
    if dropout:
        raise ModelConfigError("the lse network has no dropout")
    return LSENet(genome, num_classes, dtype=dtype, bn_momentum=LSE_BN_MOMENTUM if bn_momentum is None else bn_momentum)
