"""The EfficientNet-EdgeTPU block space's network as layer IR (the edgetpu space's lowering), and the block table.

Follows ``nets.edgetpu`` layer for layer, both built from ``genome.edgetpu.plan``: the stem convolution,
each block's expansion (a KxK convolution in a fused block; a 1x1 convolution and a KxK depthwise one in
an MBConv block), its 1x1 projection and its residual add, the head's 1x1 convolution, the global pool and
the classifier. Batch norm folds into each convolution and ReLU fuses (both front ends do this).

``block_table`` prices, for each stage's input and output at 224x224, a regular 3x3 convolution against a
depthwise-separable one and every block the space offers (``amoeba latency --blocks``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genome.base import GenomeError
from genome.edgetpu import (
    BLOCKS,
    EFFICIENTNET_EDGETPU_S,
    EXPANSIONS,
    KERNELS,
    SKELETON,
    BlockPlan,
    EdgeTPUGenome,
    Stage,
    plan,
    stem_stride,
)
from latency.builder import LoweringError, Net
from latency.estimate import estimate
from latency.hardware import MACS_PER_CYCLE
from latency.ir import ADD, GRAPH_INPUT, Graph

MIN_INPUT = 8
#: The largest width or depth multiplier a network may take.
MAX_MULTIPLIER = 8.0


def _block(net: Net, name: str, src: int, b: BlockPlan) -> int:
    k, s = b.kernel, b.stride
    if b.block == "fused":
        y = net.conv(f"{name}/expand", src, b.expanded, (k, k), (s, s))
    else:
        y = net.conv(f"{name}/expand", src, b.expanded)
        y = net.depthwise(f"{name}/depthwise", y, k, s)
        net.bn(y)
    y = net.conv(f"{name}/project", y, b.out_filters)
    return net.binary(f"{name}/add", ADD, (src, y)) if b.skip else y


def lower_edgetpu(genome: EdgeTPUGenome, *, input_size: int = 224, num_classes: int = 1000, width: float = 1.0,
                  depth: float = 1.0) -> Graph:
    """The network of ``genome`` for ``input_size`` x ``input_size`` RGB images and ``num_classes`` classes,
    its filters and layers further scaled by the network's ``width`` and ``depth`` multipliers."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < MIN_INPUT:
        raise LoweringError(f"input size must be an integer of at least {MIN_INPUT}, got {input_size!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise LoweringError(f"num_classes must be at least 1, got {num_classes!r}")
    try:
        p = plan(genome, width=width, depth=depth)
    except GenomeError as exc:
        raise LoweringError(str(exc)) from None
    net = Net(f"edgetpu {input_size}x{input_size}", (input_size, input_size, 3))
    s = stem_stride(input_size)
    x = net.conv("stem/conv", GRAPH_INPUT, p.stem_filters, (3, 3), (s, s))
    for b in p.blocks:
        x = _block(net, f"stage{b.stage}/block{b.index}", x, b)
    x = net.conv("head/conv", x, p.head_filters)
    return net.b.build(net.head(x, num_classes))


def lower_network(genome: EdgeTPUGenome, network: Mapping[str, Any]) -> Graph:
    """``lower_edgetpu`` with the keys of the space's network (``input_size``, ``num_classes``, ``width``, ``depth``)."""
    for key in ("width", "depth"):
        value = network.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_MULTIPLIER:
            raise LoweringError(f"network {key} must be a number in (0, {MAX_MULTIPLIER:g}], got {value!r}")
    return lower_edgetpu(genome, input_size=network["input_size"], num_classes=network["num_classes"],
                         width=network["width"], depth=network["depth"])


# --- the block table: a regular convolution against a depthwise-separable one, fused against MBConv -------

#: Row kinds: a regular 3x3 convolution, a depthwise-separable one (3x3 depthwise + 1x1 pointwise), the blocks.
CONV, SEPARABLE = "conv", "separable"
ROW_KINDS = (CONV, SEPARABLE, *BLOCKS)


@dataclass(frozen=True, slots=True)
class BlockRow:
    """One choice at one stage's shapes: its MACs, effective utilization (MACs over the lanes' capacity in
    the cycles its layers take) and the layers' own time (no invocation cost, no input transfer)."""

    stage: int
    input: tuple[int, ...]
    output: tuple[int, ...]
    kind: str
    kernel: int
    expansion: int | None
    macs: int
    utilization: float
    ms: float

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "input": list(self.input), "output": list(self.output), "kind": self.kind,
                "kernel": self.kernel, "expansion": self.expansion, "macs": self.macs,
                "utilization": round(self.utilization, 4), "ms": round(self.ms, 6)}


def _row(graph: Graph, stage: int, kind: str, kernel: int, expansion: int | None, device: str,
         clock_mhz: int | None) -> BlockRow:
    report = estimate(graph, device, clock_mhz)
    cycles = sum(c.cycles for c in report.layers)
    return BlockRow(stage, graph.input_shape, graph.output_shape, kind, kernel, expansion,
                    report.macs, report.macs / (cycles * MACS_PER_CYCLE) if cycles else 0.0,
                    sum(c.ms for c in report.layers))


def block_table(device: str = "usb3", clock_mhz: int | None = None, input_size: int = 224) -> list[BlockRow]:
    """For each stage's first block in EfficientNet-EdgeTPU-S at ``input_size``: a regular 3x3 convolution and a
    3x3 depthwise-separable one from the stage's input to its output, then each block kind at each kernel
    and expansion the space offers (the block the stage would hold with that choice)."""
    rows: list[BlockRow] = []
    first = {b.stage: b for b in reversed(plan(EFFICIENTNET_EDGETPU_S).blocks)}
    size = -(-input_size // stem_stride(input_size))
    for stage, skeleton in enumerate(SKELETON):
        b = first[stage]
        shape = (size, size, b.in_filters)
        s = skeleton.stride
        conv = Net(f"stage{stage} conv", shape)
        conv.conv("conv", GRAPH_INPUT, b.out_filters, (3, 3), (s, s))
        rows.append(_row(conv.b.build(), stage, CONV, 3, None, device, clock_mhz))
        sep = Net(f"stage{stage} separable", shape)
        sep.conv("pointwise", sep.depthwise("depthwise", GRAPH_INPUT, 3, s), b.out_filters)
        rows.append(_row(sep.b.build(), stage, SEPARABLE, 3, None, device, clock_mhz))
        for kind in BLOCKS:
            for kernel in KERNELS:
                for expansion in EXPANSIONS:
                    stages = list(EFFICIENTNET_EDGETPU_S.stages)
                    old = stages[stage]
                    stages[stage] = Stage(kind, kernel, expansion, old.layers, old.filters)
                    block = plan(EdgeTPUGenome(tuple(stages))).blocks[_index(stage)]
                    net = Net(f"stage{stage} {kind}", shape)
                    _block(net, kind, GRAPH_INPUT, block)
                    rows.append(_row(net.b.build(), stage, kind, kernel, expansion, device, clock_mhz))
        size = -(-size // s)
    return rows


def _index(stage: int) -> int:
    """The position of ``stage``'s first block in EfficientNet-EdgeTPU-S's plan."""
    return sum(st.layers for st in EFFICIENTNET_EDGETPU_S.stages[:stage])
