"""The NAS-Bench-201 skeleton around a genome's cell as layer IR (the nb201 space's lowering), and the fast
estimate that prices a genome from per-cell totals without lowering the whole network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from genome.base import GenomeError
from genome.nb201 import NB201Genome
from latency.builder import Net, check_args
from latency.estimate import LatencyReport, device_and_clock
from latency.ir import ADD, AVG_POOL, GRAPH_INPUT, Graph, Shape, numel
from latency.totals import ChipTotals, report_from_totals, totals


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


#: ``cell(name, src) -> output``: how the skeleton places a cell (``None``: the output is a constant).
PlaceCell = Callable[[str, int], "int | None"]


def _stages(net: Net, filters: int, cells: int, cell: PlaceCell) -> int | None:
    """Stem, then 3 stages of ``cells`` cells with ``filters``, 2x, 4x channels joined by residual blocks."""
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
                x = cell(f"stage{stage}/cell{k}", x)
    return x


def _name(input_size: int, cells: int, filters: int) -> str:
    return f"nb201 C={filters} N={cells} {input_size}x{input_size}"


def lower_nb201(genome: NB201Genome, *, input_size: int = 32, num_classes: int = 10, cells: int = 5,
                filters: int = 16) -> Graph:
    """The NAS-Bench-201 skeleton around ``genome``'s cell: stem, 3 stages of ``cells`` cells with
    ``filters``, 2x, 4x channels (5 and 16 in the benchmark) joined by residual blocks, head.

    A cell whose output has no path from its input makes the rest of the network a constant: only
    the layers before it remain (the tracing front end sees the same)."""
    check_args(cells, filters, input_size, num_classes)
    net = Net(_name(input_size, cells, filters), (input_size, input_size, 3))
    x = _stages(net, filters, cells, lambda name, src: _nb201_cell(net, name, genome, src))
    if x is None:
        return net.b.build()
    net.bn(x)  # the head's BN (ReLU fuses)
    return net.b.build(net.head(x, num_classes))


# -- the fast estimate: per-cell totals ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CellTotals:
    """One cell alone on an input shape: its live layers' sums; ``constant`` when its output does not
    depend on its input; ``passthrough`` when its output is its input (only skips reach node 3); else
    whether the layer producing its output has no weights (the head's BN then adds to its parameter bytes)."""

    sums: ChipTotals
    constant: bool
    passthrough: bool
    weightless_output: bool


@dataclass(frozen=True, slots=True)
class _Skeleton:
    """Everything but the cells: the layers' sums (the head's BN not counted), each cell's input shape
    in order, and for each cell whether the skeleton layer feeding it has no weights."""

    sums: ChipTotals
    cell_shapes: tuple[Shape, ...]
    fed_by_weightless: tuple[bool, ...]
    head_channels: int


_cells: dict[tuple[NB201Genome, Shape], _CellTotals] = {}
_skeletons: dict[tuple[int, int, int, int], _Skeleton] = {}
_MEMO_LIMIT = 8192


def clear_cell_totals() -> None:
    """Forget the per-cell totals ``estimate_fast`` memoizes (``spaces.clear_cache`` calls this)."""
    _cells.clear()
    _skeletons.clear()


def _cell_totals(genome: NB201Genome, shape: Shape) -> _CellTotals:
    found = _cells.get((genome, shape))
    if found is None:
        net = Net("cell", shape)
        out = _nb201_cell(net, "cell", genome, GRAPH_INPUT)
        if out is None:
            found = _CellTotals(ChipTotals(), True, False, False)
        elif out == GRAPH_INPUT:
            found = _CellTotals(ChipTotals(), False, True, False)
        else:
            live = net.b.build(out).layers  # build(out) keeps the layers node 3 depends on, ending with it
            found = _CellTotals(totals(live), False, False, live[-1].weights == 0)
        if len(_cells) >= _MEMO_LIMIT:
            _cells.clear()
        _cells[(genome, shape)] = found
    return found


def _skeleton(input_size: int, num_classes: int, cells: int, filters: int) -> _Skeleton:
    key = (input_size, num_classes, cells, filters)
    found = _skeletons.get(key)
    if found is None:
        net = Net("skeleton", (input_size, input_size, 3))
        shapes: list[Shape] = []
        fed: list[bool] = []

        def passthrough(_name: str, src: int) -> int:  # an NB201 cell keeps its input's shape
            shapes.append(net.shape(src))
            fed.append(net.b.layers[src].weights == 0)
            return src

        x = _stages(net, filters, cells, passthrough)
        assert x is not None
        channels = net.shape(x)[-1]
        net.head(x, num_classes)
        found = _Skeleton(totals(net.b.layers), tuple(shapes), tuple(fed), channels)
        _skeletons[key] = found
    return found


def estimate_fast(genome: NB201Genome, *, input_size: int, num_classes: int, cells: int, filters: int,
                  device: str, clock_mhz: int | None) -> LatencyReport | None:
    """The latency of ``genome``'s network from memoized per-cell and skeleton totals (the same report as
    ``estimate(lower_nb201(...), layers=False)`` up to float rounding), or None where the full path must
    decide: a cell whose output is a constant, or parameters that do not all fit on the chip.

    A new genome lowers its cell once per stage shape (three cells, not the whole network): the search
    server prices every child this way at proposal."""
    check_args(cells, filters, input_size, num_classes)
    device_and_clock(device, clock_mhz)  # an unknown device or clock is an error before any lowering
    skeleton = _skeleton(input_size, num_classes, cells, filters)
    # The cells of a stage share an input shape: one look-up per stage, times the cells in it.
    per_stage = [_cell_totals(genome, shape) for shape in skeleton.cell_shapes[::cells]]
    if any(c.constant for c in per_stage):
        return None
    total = skeleton.sums
    for c in per_stage:
        total = total + c.sums.times(cells)
    # The head's BN folds into the layer that produced the last cell's output: a convolution's folded
    # bytes are in its bias, a weightless layer's are its own. Every cell is the same genome, so when the
    # cell passes its input through, they all do, and that layer is the last residual block's add.
    last = per_stage[-1]
    weightless = skeleton.fed_by_weightless[-1] if last.passthrough else last.weightless_output
    bn = 2 * skeleton.head_channels
    total = total + ChipTotals(params=bn, param_bytes=bn if weightless else 0)
    if not total.fits_on_chip:
        return None
    return report_from_totals(_name(input_size, cells, filters), total,
                              numel((input_size, input_size, 3)) + num_classes, device, clock_mhz)
