"""The Large-Scale Evolution space's network as layer IR (the lse space's lowering), from ``genome.lse.plan``.

Follows ``nets.lse`` op for op: per backbone vertex its primary convolution (an identity edge is no layer),
then per skip the merge's data movement (one strided slice for the subsampling and any channel cut, a pad
for missing channels) and an add; batch norm folds into the layer that produced the vertex's sum (a conv,
an add, or nothing when the sum is the image itself, as the tracing front end sees it) and ReLU fuses;
then the global pool and the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genome.lse import BN_RELU, LSEGenome, plan, spatial
from latency.builder import LoweringError, Net
from latency.ir import ADD, GRAPH_INPUT, PAD, SLICE, Graph

NETWORK_KEYS = frozenset({"input_size", "num_classes"})
MIN_INPUT = 8


def lower_lse(genome: LSEGenome, *, input_size: int = 32, num_classes: int = 10) -> Graph:
    """The network of ``genome`` for ``input_size`` x ``input_size`` RGB images and ``num_classes`` classes."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < MIN_INPUT:
        raise LoweringError(f"input size must be an integer of at least {MIN_INPUT}, got {input_size!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise LoweringError(f"num_classes must be at least 1, got {num_classes!r}")
    net = Net(f"lse {input_size}x{input_size}", (input_size, input_size, 3))
    refs: dict[int, int] = {}
    for vp in plan(genome):
        v = vp.vertex
        if vp.primary is None:
            refs[v.id] = GRAPH_INPUT
            continue
        e = vp.primary
        acc = refs[e.src]
        if e.is_conv:
            acc = net.conv(f"v{v.id}/e{e.id}_conv", acc, e.channels, e.filter, (e.stride, e.stride), bn=False)
        size = spatial(input_size, vp.scale)
        for s in vp.skips:
            y = refs[s.src]
            if s.stride > 1 or s.channels > vp.channels:
                y = net.data_move(f"v{v.id}/e{s.edge}_slice", SLICE, y, (size, size, min(s.channels, vp.channels)))
            if s.channels < vp.channels:
                y = net.data_move(f"v{v.id}/e{s.edge}_pad", PAD, y, (size, size, vp.channels))
            acc = net.binary(f"v{v.id}/e{s.edge}_add", ADD, (acc, y))
        if v.activation == BN_RELU:
            net.bn(acc)
        refs[v.id] = acc
    return net.b.build(net.head(refs[genome.output], num_classes))


def lower_network(genome: LSEGenome, network: Mapping[str, Any]) -> Graph:
    """``lower_lse`` with the keys of the space's network (``input_size``, ``num_classes``)."""
    unknown = sorted(set(network) - NETWORK_KEYS)
    if unknown:
        raise LoweringError(f"the lse network has no {', '.join(unknown)} (its settings: input_size, num_classes)")
    return lower_lse(genome, input_size=network["input_size"], num_classes=network["num_classes"])
