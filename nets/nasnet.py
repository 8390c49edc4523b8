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
- head: ReLU, global average pool, dropout (train only), dense.

Training-only regularizers (tensorflow/tpu ``amoeba_net``; off by default, when the network is exactly
the one above):

- scheduled drop-path (``drop_path_keep_prob`` < 1, in training mode): the output of every op but
  ``identity`` (the reference's ``none``) that feeds a combination is zeroed per example and the kept
  examples are scaled by 1 / keep (``network_utils.drop_path``). The keep probability falls linearly
  with the cell's depth and with training ``progress`` (the reference's ``drop_connect_version`` v3):
  ``1 - progress * (cell + 1) / cells_total * (1 - drop_path_keep_prob)``, cells counted from 0 over
  every cell including reduction and ImageNet stem cells (``drop_path_keep``). It uses the
  ``dropout`` rng.
- auxiliary head (``aux_head``): on the output of the last normal cell before the second reduction
  cell (``model_builder.py``: cell ``reduction_indices[1] - 1``): ReLU, 5x5 average pool stride 3
  VALID, 1x1 conv to 128 + BN + ReLU, a VALID conv to 768 over the remaining extent + BN + ReLU,
  flatten, dense. Built at initialization and run in training mode only; its logits are sown as
  ``intermediates["aux_logits"]`` (apply with ``mutable=["batch_stats", "intermediates"]``), so the
  output and the inference graph stay the plain logits. Its parameters live under ``aux_head``
  (``nets.build.TRAINING_ONLY``: not counted, unused by inference).

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

#: Ops whose output drop-path never drops (the reference drops every path but its ``none`` op).
UNDROPPED_OPS = frozenset({"identity"})
#: The auxiliary head's submodule (and parameter subtree) name.
AUX_HEAD = "aux_head"


def drop_path_keep(keep_prob: float, cell: int, cells_total: int, progress: float | jax.Array) -> jax.Array:
    """The keep probability of drop-path in cell ``cell`` (0-based, of ``cells_total``) at training
    ``progress`` in [0, 1]: 1 at the start of training, ``keep_prob`` in the last cell at the end."""
    progress = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
    return 1.0 - progress * ((cell + 1) / cells_total) * (1.0 - keep_prob)


def drop_path(x: jax.Array, keep: jax.Array, key: jax.Array) -> jax.Array:
    """Zero whole examples of ``x`` with probability 1 - ``keep`` and scale the rest by 1 / ``keep``."""
    kept = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return x * (kept.astype(jnp.float32) / keep).astype(x.dtype)


class AuxHead(nn.Module):
    """The auxiliary classifier (ReLU, avg pool 5x5/3 VALID, 1x1 conv 128-BN-ReLU, conv 768-BN-ReLU, dense)."""

    num_classes: int
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.relu(x)
        # The reference's 5x5 window; feature maps smaller than that (tiny inputs) are pooled whole.
        window = (min(5, x.shape[1]), min(5, x.shape[2]))
        x = nn.avg_pool(x, window, strides=(3, 3), padding="VALID")
        x = Conv(128, dtype=self.dtype, name="proj")(x)
        x = nn.relu(batch_norm(train, self.bn_momentum, self.dtype, name="proj_bn")(x))
        x = Conv(768, (int(x.shape[1]), int(x.shape[2])), padding="VALID", dtype=self.dtype, name="conv")(x)
        x = nn.relu(batch_norm(train, self.bn_momentum, self.dtype, name="conv_bn")(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(x)
        return x.astype(jnp.float32)


class NASNetCell(nn.Module):
    """One normal or reduction cell; maps the carry (h_prev, h_prevprev) to (output, h_prev).

    ``keep`` is this cell's drop-path keep probability (a scalar; None: no drop-path).
    """

    cell: Cell
    filters: int
    reduction: bool
    train: bool
    dtype: Dtype = jnp.float32
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, carry: Carry, keep: jax.Array | None = None) -> tuple[Carry, None]:
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
                if keep is not None and op not in UNDROPPED_OPS:
                    y = drop_path(y, keep, self.make_rng("dropout"))
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
    """The NASNet-space network of ``genome``; ``__call__(x, train, progress=1.0)`` returns float32 logits.

    ``progress`` (training progress in [0, 1], a traced scalar) only matters to drop-path.
    """

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
    drop_path_keep_prob: float = 1.0
    aux_head: bool = False

    def _cell(self, kind: str, filters: int, train: bool, name: str) -> NASNetCell:
        return NASNetCell(self.genome.cell(kind), filters, kind == "reduction", train,
                          dtype=self.dtype, bn_momentum=self.bn_momentum, name=name)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, progress: float | jax.Array = 1.0) -> jax.Array:
        stem_cells = 2 if self.dataset == "imagenet" else 0
        cells_total = stem_cells + 3 * self.cells + 2
        dropping = train and self.drop_path_keep_prob < 1.0

        def keep(cell: int) -> jax.Array | None:
            return drop_path_keep(self.drop_path_keep_prob, cell, cells_total, progress) if dropping else None

        x = x.astype(self.dtype)
        if self.dataset == "imagenet":
            x = Conv(32, (3, 3), (2, 2), padding="VALID", dtype=self.dtype, name="stem_conv")(x)
            x = batch_norm(train, self.bn_momentum, self.dtype, name="stem_bn")(x)
            carry: Carry = (x, x)
            for i, scale in enumerate((4, 2), start=1):
                carry, _ = self._cell("reduction", self.filters // scale, train, f"stem_cell{i}")(carry, keep(i - 1))
        else:
            x = Conv(self.stem_multiplier * self.filters, (3, 3), dtype=self.dtype, name="stem_conv")(x)
            x = batch_norm(train, self.bn_momentum, self.dtype, name="stem_bn")(x)
            carry = (x, x)
        for stack in (1, 2, 3):
            filters = self.filters * 2 ** (stack - 1)
            # Cell index (for drop-path) of this stack's first normal cell: stem cells, earlier stacks and
            # their reduction cells come first.
            first = stem_cells + (stack - 1) * (self.cells + 1)
            if stack > 1:
                carry, _ = self._cell("reduction", filters, train, f"reduction{stack - 1}")(carry, keep(first - 1))
            for i in range(1, min(self.cells, 2) + 1):
                carry, _ = self._cell("normal", filters, train, f"stack{stack}_cell{i}")(carry, keep(first + i - 1))
            if self.cells > 2 and self.scan:
                repeated = nn.scan(
                    NASNetCell, variable_axes={"params": 0, "batch_stats": 0},
                    split_rngs={"params": True, "dropout": True} if dropping else {"params": True},
                    length=self.cells - 2,
                )
                keeps = None
                if dropping:  # one keep probability per repeated cell, scanned over with it
                    keeps = jnp.stack([drop_path_keep(self.drop_path_keep_prob, first + i - 1, cells_total, progress)
                                       for i in range(3, self.cells + 1)])
                carry, _ = repeated(self.genome.normal, filters, False, train, dtype=self.dtype,
                                    bn_momentum=self.bn_momentum, name=f"stack{stack}_cells3to{self.cells}")(carry, keeps)
            else:
                for i in range(3, self.cells + 1):
                    carry, _ = self._cell("normal", filters, train, f"stack{stack}_cell{i}")(carry, keep(first + i - 1))
            if stack == 2 and self.aux_head and (train or self.is_initializing()):
                aux = AuxHead(self.num_classes, self.dtype, self.bn_momentum, name=AUX_HEAD)(carry[0], train)
                if not self.is_initializing():
                    self.sow("intermediates", "aux_logits", aux)
        x = nn.relu(carry[0])
        x = global_average_pool(x)
        if self.dropout > 0:
            x = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(x)
        return x.astype(jnp.float32)


def build(genome: NASNetGenome, network: Mapping[str, Any], *, num_classes: int, dataset: str, dropout: float,
          dtype: Any, bn_momentum: float | None, scan: bool, drop_path_keep_prob: float = 1.0,
          aux_head: bool = False) -> NASNet:
    """The nasnet space's model builder (``spaces.Space.model``): N = ``network["cells"]``, F = ``network["filters"]``;
    it also takes the training-only ``drop_path_keep_prob`` and ``aux_head`` (see the module docstring)."""
    from nets.build import ModelConfigError, positive_int

    cells, filters = positive_int(network, "cells"), positive_int(network, "filters")
    for kind in CELL_KINDS:
        validate_cell(genome.cell(kind), kind)
    if dataset == "imagenet" and filters < 4:
        raise ModelConfigError(f"the ImageNet stem needs filters >= 4 (its cells use F/4), got {filters}")
    return NASNet(genome, cells, filters, num_classes, dataset=dataset, dropout=dropout, dtype=dtype,
                  bn_momentum=BN_MOMENTUM if bn_momentum is None else bn_momentum, scan=scan,
                  drop_path_keep_prob=drop_path_keep_prob, aux_head=aux_head)
