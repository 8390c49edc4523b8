"""The PyTorch peer of nets.nasnet: the same NASNet macro structure, cells and ops, for the throughput benchmark.

Layer for layer as ``nets/nasnet.py``, ``nets/ops.py`` and ``nets/layers.py`` (CIFAR stem only):
stem conv 3x3 to 3F + BN; three stacks of N normal cells with a reduction cell before stacks 2 and 3
(filters F, 2F, 4F); each cell preprocesses h_prev (ReLU-1x1-BN) and h_prevprev (factorized reduction,
ReLU-1x1-BN or as is); combinations ``op(state[i]) + op(state[j])``, stride 2 on states 0/1 in a
reduction cell; the output concatenates ``cell.output_states()`` (output states 0/1 of a reduction
cell through a factorized reduction); head ReLU, global average pool, (dropout,) linear. BN epsilon
1e-3 and the same momentum; all convolutions bias-free. The parameter count equals the Flax model's
(the benchmark prints both).

Only padding differs: TensorFlow/JAX "SAME" pads stride-2 windows asymmetrically (more at the
bottom/right), PyTorch pads symmetrically; output shapes and arithmetic are identical, the windows
are shifted by a pixel. Cells 3..N are plain repeated modules (PyTorch runs eagerly, nothing to compile).
Needs ``pip install 'amoeba-nas[bench]'`` (torch 2.13 CPU).
"""

from __future__ import annotations

import torch
from torch import nn

from genome.nasnet import NUM_INPUTS, Cell, NASNetGenome

BN_EPSILON = 1e-3


def _bn(channels: int, momentum: float) -> nn.BatchNorm2d:
    # Flax's momentum is the decay of the running average; PyTorch's is the weight of the new batch.
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=1.0 - momentum)


class ReLUConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: tuple[int, int] = (1, 1), stride: tuple[int, int] = (1, 1),
                 momentum: float = 0.9997) -> None:
        super().__init__()
        pad = (kernel[0] // 2, kernel[1] // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad, bias=False)
        self.bn = _bn(cout, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(torch.relu(x)))


class SepConv(nn.Module):
    """ReLU, depthwise KxK (stride, dilation), pointwise 1x1, BN."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, dilation: int, momentum: float) -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.depthwise = nn.Conv2d(cin, cin, kernel, stride, pad, dilation=dilation, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = _bn(cout, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(torch.relu(x))))


class StackedSepConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, dilation: int, momentum: float) -> None:
        super().__init__()
        self.sep1 = SepConv(cin, cout, kernel, stride, dilation, momentum)
        self.sep2 = SepConv(cout, cout, kernel, 1, dilation, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sep2(self.sep1(x))


class Identity(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, momentum: float) -> None:
        super().__init__()
        self.proj = None if stride == 1 and cin == cout else ReLUConvBN(cin, cout, (1, 1), (stride, stride), momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)


class Pool(nn.Module):
    def __init__(self, kind: str, cin: int, cout: int, stride: int, momentum: float) -> None:
        super().__init__()
        self.pool: nn.Module = (nn.AvgPool2d(3, stride, 1, count_include_pad=False) if kind == "avg"
                                else nn.MaxPool2d(3, stride, 1))
        self.proj = None if cin == cout else ReLUConvBN(cin, cout, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return x if self.proj is None else self.proj(x)


class Conv1x7x7x1(nn.Module):
    """The reference's bottleneck: ReLU-1x1 to F/4-BN, ReLU-1x7-BN, ReLU-7x1-BN, ReLU-1x1 to F-BN."""

    def __init__(self, cin: int, cout: int, stride: int, momentum: float) -> None:
        super().__init__()
        inner = cout // 4
        width = inner if inner >= 1 else cout
        layers: list[nn.Module] = []
        if inner >= 1:
            layers.append(ReLUConvBN(cin, inner, momentum=momentum))
        layers.append(ReLUConvBN(inner if inner >= 1 else cin, width, (1, 7), (1, stride), momentum))
        layers.append(ReLUConvBN(width, width, (7, 1), (stride, 1), momentum))
        if inner >= 1:
            layers.append(ReLUConvBN(width, cout, momentum=momentum))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_op(name: str, cin: int, cout: int, stride: int, momentum: float) -> nn.Module:
    """The module of genome op ``name`` (genome.NASNET_OPS), mapping cin to cout channels."""
    if name == "identity":
        return Identity(cin, cout, stride, momentum)
    if name.startswith("sep_conv_"):
        return StackedSepConv(cin, cout, int(name[-1]), stride, 1, momentum)
    if name == "dil_sep_conv_3x3":
        return StackedSepConv(cin, cout, 3, stride, 2, momentum)
    if name in ("avg_pool_3x3", "max_pool_3x3"):
        return Pool(name[:3], cin, cout, stride, momentum)
    if name == "conv_1x7_7x1":
        return Conv1x7x7x1(cin, cout, stride, momentum)
    raise ValueError(f"unknown NASNet op {name!r}")


class FactorizedReduction(nn.Module):
    def __init__(self, cin: int, cout: int, momentum: float) -> None:
        super().__init__()
        half = cout // 2
        self.path1 = nn.Conv2d(cin, half, 1, bias=False)
        self.path2 = nn.Conv2d(cin, cout - half, 1, bias=False)
        self.bn = _bn(cout, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        p1 = self.path1(x[:, :, ::2, ::2])
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        p2 = self.path2(shifted[:, :, ::2, ::2])
        return self.bn(torch.cat([p1, p2], dim=1))


class NASNetCell(nn.Module):
    """One cell: (h_prev, h_prevprev) -> output. Channel and size bookkeeping mirrors nets.nasnet.NASNetCell."""

    def __init__(self, cell: Cell, filters: int, reduction: bool, prev: tuple[int, int], prevprev: tuple[int, int],
                 momentum: float) -> None:
        super().__init__()
        (c_prev, size_prev), (c_pp, size_pp) = prev, prevprev
        self.cell = cell
        self.reduction = reduction
        self.prev_1x1 = ReLUConvBN(c_prev, filters, momentum=momentum)
        self.prevprev: nn.Module | None
        if size_pp != size_prev:
            self.prevprev = FactorizedReduction(c_pp, filters, momentum)
        elif c_pp != filters:
            self.prevprev = ReLUConvBN(c_pp, filters, momentum=momentum)
        else:
            self.prevprev = None
        self.ops = nn.ModuleList()
        for combo in cell.combinations:
            for index, op in ((combo.left_input, combo.left_op), (combo.right_input, combo.right_op)):
                stride = 2 if reduction and index < NUM_INPUTS else 1
                self.ops.append(make_op(op, filters, filters, stride, momentum))
        self.out_reduce = nn.ModuleDict({
            str(i): FactorizedReduction(filters, filters, momentum)
            for i in cell.output_states() if reduction and i < NUM_INPUTS
        })
        self.out_channels = filters * len(cell.output_states())
        self.out_size = size_prev // 2 if reduction else size_prev

    def forward(self, h_prev: torch.Tensor, h_prevprev: torch.Tensor) -> torch.Tensor:
        s1 = h_prevprev if self.prevprev is None else self.prevprev(h_prevprev)
        states = [self.prev_1x1(h_prev), s1]
        for k, combo in enumerate(self.cell.combinations):
            states.append(self.ops[2 * k](states[combo.left_input]) + self.ops[2 * k + 1](states[combo.right_input]))
        outputs = []
        for i in self.cell.output_states():
            key = str(i)
            outputs.append(self.out_reduce[key](states[i]) if key in self.out_reduce else states[i])
        return torch.cat(outputs, dim=1)


class TorchNASNet(nn.Module):
    """The CIFAR NASNet of ``genome`` with N = ``cells`` and F = ``filters``; NCHW input, logits out."""

    def __init__(self, genome: NASNetGenome, cells: int, filters: int, num_classes: int = 10,
                 bn_momentum: float = 0.9997, stem_multiplier: int = 3, image_size: int = 32,
                 dropout: float = 0.0) -> None:
        super().__init__()
        stem = stem_multiplier * filters
        self.stem_conv = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.stem_bn = _bn(stem, bn_momentum)
        prev = prevprev = (stem, image_size)
        self.cells = nn.ModuleList()
        for stack in (1, 2, 3):
            f = filters * 2 ** (stack - 1)
            kinds = (["reduction"] if stack > 1 else []) + ["normal"] * cells
            for kind in kinds:
                cell = NASNetCell(genome.cell(kind), f, kind == "reduction", prev, prevprev, bn_momentum)
                self.cells.append(cell)
                prevprev, prev = prev, (cell.out_channels, cell.out_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(prev[0], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_bn(self.stem_conv(x))
        h_prev = h_prevprev = x
        for cell in self.cells:
            h_prev, h_prevprev = cell(h_prev, h_prevprev), h_prev
        x = torch.relu(h_prev).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
