"""The NAS-Bench-201 skeleton around a genome's cell as layer IR (the nb201 space's lowering)."""

from __future__ import annotations

from genome.base import GenomeError
from genome.nb201 import NB201Genome
from latency.builder import Net, check_args
from latency.ir import ADD, AVG_POOL, GRAPH_INPUT, Graph


def _nb201_cell(net: Net, name: str, genome: NB201Genome, src: int | None) -> int | None:
    """One NB201 cell; ``None`` stands for a tensor that no longer depends on the input (a node fed
    only by ``none`` edges is zeros, and every op of a constant is a constant the compiler folds)."""
    nodes: list[int | None] = [src]
    for j in (1, 2, 3):
        acc: int | None = None
        for i in range(j):
            op = genome.edge_op(j, i)
            x = nodes[i]
            if op == "none" or x is None:
                continue
            c = net.shape(x)[-1]
            if op == "skip_connect":
                term = x
            elif op == "nor_conv_1x1":
                term = net.conv(f"{name}/edge{j}_{i}_conv1x1", x, c, (1, 1))
            elif op == "nor_conv_3x3":
                term = net.conv(f"{name}/edge{j}_{i}_conv3x3", x, c, (3, 3))
            elif op == "avg_pool_3x3":
                term = net.pool(f"{name}/edge{j}_{i}_avg3x3", x, AVG_POOL, 3, 1)
            else:  # pragma: no cover - the genome validates its ops
                raise GenomeError(f"unknown NB201 op {op!r}")
            # Running sum in edge order, as the model adds each edge's output as it is computed.
            acc = term if acc is None else net.binary(f"{name}/node{j}_add{i}", ADD, (acc, term))
        nodes.append(acc)
    return nodes[3]


def lower_nb201(genome: NB201Genome, *, input_size: int = 32, num_classes: int = 10, cells: int = 5,
                filters: int = 16) -> Graph:
    """The NAS-Bench-201 skeleton around ``genome``'s cell: stem, 3 stages of ``cells`` cells with
    ``filters``, 2x, 4x channels (5 and 16 in the benchmark) joined by residual blocks, head.

    A cell whose output has no path from its input makes the rest of the network a constant: only
    the layers before it remain (the tracing front end sees the same)."""
    check_args(cells, filters, input_size, num_classes)
    net = Net(f"nb201 C={filters} N={cells} {input_size}x{input_size}", (input_size, input_size, 3))
    x: int | None = net.conv("stem/conv", GRAPH_INPUT, filters, (3, 3))
    for stage in range(3):
        c = filters * 2**stage
        if stage > 0 and x is not None:
            name = f"resblock{stage}"
            a = net.conv(f"{name}/conv_a", x, c, (3, 3), (2, 2))
            b = net.conv(f"{name}/conv_b", a, c, (3, 3))
            short = net.pool(f"{name}/shortcut_pool", x, AVG_POOL, 2, 2, padding="VALID")
            short = net.conv(f"{name}/shortcut_conv", short, c, bn=False)
            x = net.binary(f"{name}/add", ADD, (short, b))
        for k in range(cells):
            if x is not None:
                x = _nb201_cell(net, f"stage{stage}/cell{k}", genome, x)
    if x is None:
        return net.b.build()
    net.bn(x)  # the head's BN (ReLU fuses)
    return net.b.build(net.head(x, num_classes))


