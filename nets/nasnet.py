"""The NASNet/AmoebaNet network of a genome (Flax): stem, three stacks of N cells, two reduction cells.

Macro structure (tensorflow/tpu ``amoeba_net``, slim ``nasnet``; shared layer for layer with the
latency simulator's genome lowering):

- stem, CIFAR: conv 3x3 stride 1 to ``stem_multiplier * F`` channels + BN. ImageNet: conv 3x3 stride
  2 VALID to 32 channels + BN, then two reduction cells with ``F // 4`` and ``F // 2`` filters.
- stacks 1..3 of N normal cells with F, 2F, 4F filters; a reduction cell (2F, 4F) before stacks 2, 3.
- every cell reads (h_prev, h_prevprev): h_prev -> ReLU-1x1 conv-BN; h_prevprev -> factorized
  reduction if its spatial size differs, else ReLU-1x1 conv-BN if its channels differ, else as is.
  Hidden state 0 is preprocessed h_prev, 1 is preprocessed h_prevprev. Combination k adds
  ``op_left(state[i]) + op_right(state[j])`` as state 2 + k; in reduction cells ops reading states
  0/1 use stride 2. The output concatenates ``cell.output_states()``; in a reduction cell an output
  state 0 or 1 (only possible through ``extra_outputs``) still has the input's spatial size, so it is
  first reduced by a factorized reduction (``out{i}_reduce``).
- head: ReLU, global average pool, dropout (train only), dense. No auxiliary head is built.

Compile time: cells 3..N of a stack read inputs of identical shapes, so they are one ``nn.scan`` over
a single cell body (parameters stacked on a leading axis, submodule ``stack{s}_cells3to{N}``); the
traced program does not grow with N. ``scan=False`` unrolls them (used to count layers and
multiply-adds per cell, and to compare).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genome.nasnet import CELL_KINDS, NUM_INPUTS, Cell, NASNetGenome, validate_cell
from nets.layers import BN_MOMENTUM, Conv, Dtype, FactorizedReduction, ReLUConvBN, batch_norm, global_average_pool
from nets.ops import OPS

Carry = tuple[jax.Array, jax.Array]


class NASNetCell(nn.Module):
    """One normal or reduction cell; maps the carry (h_prev, h_prevprev) to (output, h_prev)."""

    cell: Cell
    filters: int
    reduction: bool
    train: bool
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, carry: Carry, _: Any = None) -> tuple[Carry, None]:
        h_prev, h_prevprev = carry
        f, train = self.filters, self.train
        kw: dict[str, Any] = {"dtype": self.dtype, "bn_momentum": self.bn_momentum}
        s0 = ReLUConvBN(f, name="prev_1x1", **kw)(h_prev, train)
        if h_prevprev.shape[1:3] != h_prev.shape[1:3]:
            s1 = FactorizedReduction(f, name="prevprev_reduce", **kw)(h_prevprev, train)
        elif h_prevprev.shape[-1] != f:
            s1 = ReLUConvBN(f, name="prevprev_1x1", **kw)(h_prevprev, train)
        else:
            s1 = h_prevprev
        states = [s0, s1]
        for k, combo in enumerate(self.cell.combinations):
            total = None
            for side, index, op in (("left", combo.left_input, combo.left_op),
                                    ("right", combo.right_input, combo.right_op)):
                stride = 2 if self.reduction and index < NUM_INPUTS else 1
                y = OPS[op](f, stride, self.dtype, self.bn_momentum, f"comb{k}_{side}_{op}")(states[index], train)
                total = y if total is None else total + y
            assert total is not None
            states.append(total)
        outputs = []
        for index in self.cell.output_states():
            state = states[index]
            if self.reduction and index < NUM_INPUTS:
                state = FactorizedReduction(f, name=f"out{index}_reduce", **kw)(state, train)
            outputs.append(state)
        return (jnp.concatenate(outputs, axis=-1), h_prev), None


class NASNet(nn.Module):
    """The NASNet-space network of ``genome``; ``__call__(x, train)`` returns float32 logits."""

    genome: NASNetGenome
    cells: int
    filters: int
    num_classes: int
    dataset: str = "cifar10"
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM
    stem_multiplier: int = 3
    scan: bool = True

    def _cell(self, kind: str, filters: int, train: bool, name: str) -> NASNetCell:
        return NASNetCell(self.genome.cell(kind), filters, kind == "reduction", train,
                          dtype=self.dtype, bn_momentum=self.bn_momentum, name=name)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = x.astype(self.dtype)
        if self.dataset == "imagenet":
            x = Conv(32, (3, 3), (2, 2), padding="VALID", dtype=self.dtype, name="stem_conv")(x)
            x = batch_norm(train, self.bn_momentum, self.dtype, name="stem_bn")(x)
            carry: Carry = (x, x)
            for i, scale in enumerate((4, 2), start=1):
                carry, _ = self._cell("reduction", self.filters // scale, train, f"stem_cell{i}")(carry)
        else:
            x = Conv(self.stem_multiplier * self.filters, (3, 3), dtype=self.dtype, name="stem_conv")(x)
            x = batch_norm(train, self.bn_momentum, self.dtype, name="stem_bn")(x)
            carry = (x, x)
        for stack in (1, 2, 3):
            filters = self.filters * 2 ** (stack - 1)
            if stack > 1:
                carry, _ = self._cell("reduction", filters, train, f"reduction{stack - 1}")(carry)
            for i in range(1, min(self.cells, 2) + 1):
                carry, _ = self._cell("normal", filters, train, f"stack{stack}_cell{i}")(carry)
            if self.cells > 2 and self.scan:
                repeated = nn.scan(
                    NASNetCell, variable_axes={"params": 0, "batch_stats": 0},
                    split_rngs={"params": True}, length=self.cells - 2,
                )
                carry, _ = repeated(self.genome.normal, filters, False, train, dtype=self.dtype,
                                    bn_momentum=self.bn_momentum, name=f"stack{stack}_cells3to{self.cells}")(carry, None)
            else:
                for i in range(3, self.cells + 1):
                    carry, _ = self._cell("normal", filters, train, f"stack{stack}_cell{i}")(carry)
        x = nn.relu(carry[0])
        x = global_average_pool(x)
        if self.dropout > 0:
            x = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(x)
        return x.astype(jnp.float32)


def build(genome: NASNetGenome, network: Mapping[str, Any], *, num_classes: int, dataset: str, dropout: float,
          dtype: Any, bn_momentum: float | None, scan: bool) -> NASNet:
    """The nasnet space's model builder (``spaces.Space.model``): N = ``network["cells"]``, F = ``network["filters"]``."""
    from nets.build import ModelConfigError, positive_int

    cells, filters = positive_int(network, "cells"), positive_int(network, "filters")
    for kind in CELL_KINDS:
        validate_cell(genome.cell(kind), kind)
    if dataset == "imagenet" and filters < 4:
        raise ModelConfigError(f"the ImageNet stem needs filters >= 4 (its cells use F/4), got {filters}")
    return NASNet(genome, cells, filters, num_classes, dataset=dataset, dropout=dropout, dtype=dtype,
                  bn_momentum=BN_MOMENTUM if bn_momentum is None else bn_momentum, scan=scan)
