"""The NASNet macro network of a genome as layer IR (the nasnet space's lowering), and its fast estimate.

Follows ``nets.nasnet`` layer for layer: a stem, three stacks of N normal cells with a reduction cell
after the first two, the head. ``estimate_totals`` prices a genome from memoized per-cell totals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from genome.nasnet import NASNET_OPS, NUM_INPUTS, Cell, NASNetGenome
from latency.builder import LoweringError, Net, check_args
from latency.estimate import LatencyReport, device_and_clock
from latency.ir import ADD, AVG_POOL, CONCAT, GRAPH_INPUT, MAX_POOL, RESHAPE, Graph, IRError, Layer, Shape, numel
from latency.totals import ChipTotals, report_from_totals, totals

STEM_MULTIPLIER = 3  # CIFAR stem: 3F filters
IMAGENET_STEM_FILTERS = 32
#: Inputs at least this large use the ImageNet stem (stride-2 conv and two reduction stem cells).
IMAGENET_MIN_INPUT = 128
#: The stem a network's ``dataset`` setting names (None: by input size).
STEMS = {None: None, "cifar10": "cifar", "imagenet": "imagenet"}

OpLowering = Callable[[Net, str, int, int, int], int]


def _identity(net: Net, name: str, src: int, filters: int, stride: int) -> int:
    if stride == 1 and net.shape(src)[-1] == filters:
        return src
    return net.conv(f"{name}/1x1", src, filters, (1, 1), (stride, stride))


def _sep(kernel: int, dilation: int = 1) -> OpLowering:
    def lower(net: Net, name: str, src: int, filters: int, stride: int) -> int:
        x = src
        for rep, s in enumerate((stride, 1), start=1):
            x = net.depthwise(f"{name}/sep{rep}/depthwise", x, kernel, s, dilation)
            x = net.conv(f"{name}/sep{rep}/pointwise", x, filters)
        return x

    return lower


def _pool(kind: str) -> OpLowering:
    def lower(net: Net, name: str, src: int, filters: int, stride: int) -> int:
        x = net.pool(f"{name}/pool", src, kind, 3, stride)
        if net.shape(x)[-1] != filters:
            x = net.conv(f"{name}/1x1", x, filters)
        return x

    return lower


def _conv_1x7_7x1(net: Net, name: str, src: int, filters: int, stride: int) -> int:
    # The reference (tensorflow/tpu amoeba_net) wraps the factorized 7x7 in a filters // 4 bottleneck,
    # dropped when that is 0; nets.ops follows it, and so must the lowering.
    inner = filters // 4
    x = src
    if inner >= 1:
        x = net.conv(f"{name}/pre_1x1", x, inner)
    width = inner if inner >= 1 else filters
    x = net.conv(f"{name}/conv_1x7", x, width, (1, 7), (1, stride))
    x = net.conv(f"{name}/conv_7x1", x, width, (7, 1), (stride, 1))
    if inner >= 1:
        x = net.conv(f"{name}/post_1x1", x, filters)
    return x


#: The per-op lowering table; its names are exactly genome.NASNET_OPS (a test keeps them in step).
NASNET_OP_LOWERING: dict[str, OpLowering] = {
    "identity": _identity,
    "sep_conv_3x3": _sep(3),
    "sep_conv_5x5": _sep(5),
    "sep_conv_7x7": _sep(7),
    "avg_pool_3x3": _pool(AVG_POOL),
    "max_pool_3x3": _pool(MAX_POOL),
    "dil_sep_conv_3x3": _sep(3, dilation=2),
    "conv_1x7_7x1": _conv_1x7_7x1,
}
assert tuple(NASNET_OP_LOWERING) == NASNET_OPS


def _build_cell(net: Net, name: str, cell: Cell, h_prev: int, h_prevprev: int, filters: int, reduction: bool) -> int:
    """Lower one NASNet cell into ``net``; returns the ref of its output (the concat of its output states)."""
    state0 = net.conv(f"{name}/prev_1x1", h_prev, filters)
    pp_shape, p_shape = net.shape(h_prevprev), net.shape(h_prev)
    if pp_shape[:2] != p_shape[:2]:
        state1 = net.factorized_reduction(f"{name}/prevprev_reduce", h_prevprev, filters)
    elif pp_shape[-1] != filters:
        state1 = net.conv(f"{name}/prevprev_1x1", h_prevprev, filters)
    else:
        state1 = h_prevprev
    states = [state0, state1]
    for k, combo in enumerate(cell.combinations):
        sides = []
        for side, (i, op) in zip(("left", "right"), ((combo.left_input, combo.left_op),
                                                     (combo.right_input, combo.right_op)), strict=True):
            stride = 2 if reduction and i < NUM_INPUTS else 1
            sides.append(NASNET_OP_LOWERING[op](net, f"{name}/comb{k}/{side}_{op}", states[i], filters, stride))
        states.append(net.binary(f"{name}/comb{k}/add", ADD, (sides[0], sides[1])))
    final = net.shape(states[-1])
    outputs = []
    for s in cell.output_states():
        ref = states[s]
        shape = net.shape(ref)
        if shape[:2] != final[:2]:
            # An input state (an extra output) of a reduction cell is still at the input size.
            ref = net.factorized_reduction(f"{name}/out{s}_reduce", ref, filters)
        elif shape[-1] != final[-1]:
            ref = net.conv(f"{name}/out{s}_1x1", ref, filters)
        outputs.append(ref)
    if len(outputs) == 1:
        return outputs[0]
    return net.binary(f"{name}/concat", CONCAT, tuple(outputs))



_H_PREV, _H_PREVPREV = -2, -3  # template codes for a cell's two inputs
_Template = tuple[tuple[tuple[str, Layer, tuple[int, ...]], ...], int]
#: Cell templates shared across genomes (a mutated child keeps at least one of its parent's cells).
_TEMPLATES: dict[tuple[object, ...], _Template] = {}
_TEMPLATE_LIMIT = 1024


def _cell(net: Net, name: str, cell: Cell, h_prev: int, h_prevprev: int, filters: int, reduction: bool) -> int:
    """One NASNet cell, replayed from a template when an identical cell (same genome cell, input shapes and
    filters) was lowered before, here or for another genome: the N cells of a stack repeat layer for layer, so only names and input
    references change. This keeps lowering a genome within a few milliseconds."""
    # Whether both inputs are one tensor (the first cell reads the stem twice) changes the wiring.
    key = (cell, reduction, net.shape(h_prev), net.shape(h_prevprev), filters, h_prev == h_prevprev)
    template = _TEMPLATES.get(key)
    if template is None:
        start = len(net.b.layers)
        out = _build_cell(net, name, cell, h_prev, h_prevprev, filters, reduction)

        def code(ref: int) -> int:
            if ref >= start:
                return ref - start
            if ref == h_prev:
                return _H_PREV
            if ref == h_prevprev:
                return _H_PREVPREV
            raise IRError(f"{name}: a cell layer reads a tensor that is not one of its inputs")

        entries = tuple((layer.name[len(name):], layer, tuple(code(r) for r in layer.inputs))
                        for layer in net.b.layers[start:])
        # No lock: single dict operations are atomic, and a full table is simply started afresh.
        if len(_TEMPLATES) >= _TEMPLATE_LIMIT:
            _TEMPLATES.clear()
        _TEMPLATES[key] = (entries, code(out))
        return out
    entries, out_code = template
    start = len(net.b.layers)
    mapping = {_H_PREV: h_prev, _H_PREVPREV: h_prevprev}
    for suffix, layer, codes in entries:
        inputs = tuple(c + start if c >= 0 else mapping[c] for c in codes)
        net.b.layers.append(Layer(name + suffix, layer.kind, inputs, layer.in_shapes, layer.out_shape, layer.kernel,
                                  layer.stride, layer.dilation, layer.groups, layer.weights, layer.params, layer.macs,
                                  layer.op))
    return out_code + start if out_code >= 0 else mapping[out_code]


R = TypeVar("R")
T = TypeVar("T")


def nasnet_skeleton(genome: NASNetGenome, cells: int, filters: int, stem: str,
                    stem_conv: Callable[[int, tuple[int, int], tuple[int, int], str], R],
                    cell: Callable[[str, Cell, R, R, int, bool], R], head: Callable[[R], T]) -> T:
    """The NASNet macro structure, generic over what a tensor is: ``stem_conv(filters, kernel, stride,
    padding)`` makes the stem, ``cell(name, cell, h_prev, h_prevprev, filters, reduction)`` each cell,
    ``head(last)`` the result. The lowering passes layer refs; the fast estimate passes shapes."""
    if stem == "cifar":
        x = stem_conv(STEM_MULTIPLIER * filters, (3, 3), (1, 1), "SAME")
        prev, prevprev = x, x
    elif stem == "imagenet":
        x = stem_conv(IMAGENET_STEM_FILTERS, (3, 3), (2, 2), "VALID")
        prev, prevprev = x, x
        for j, scale in enumerate((4, 2)):
            out = cell(f"stem_cell{j}", genome.reduction, prev, prevprev, max(1, filters // scale), True)
            prevprev, prev = prev, out
    else:
        raise LoweringError(f"unknown stem {stem!r}; expected cifar or imagenet")
    index = 0
    for stack in range(3):
        f = filters * 2**stack
        if stack > 0:
            out = cell(f"reduction{stack}", genome.reduction, prev, prevprev, f, True)
            prevprev, prev = prev, out
        for _ in range(cells):
            out = cell(f"cell{index}", genome.normal, prev, prevprev, f, False)
            prevprev, prev = prev, out
            index += 1
    return head(prev)


def resolve_stem(input_size: int, stem: str | None) -> str:
    return stem or ("imagenet" if input_size >= IMAGENET_MIN_INPUT else "cifar")


def lower_nasnet(genome: NASNetGenome, *, cells: int, filters: int, input_size: int = 32, num_classes: int = 10,
                 stem: str | None = None) -> Graph:
    """The NASNet macro network of ``genome``: N = ``cells`` normal cells per stack, F = ``filters``."""
    check_args(cells, filters, input_size, num_classes)
    net = Net(f"nasnet N={cells} F={filters} {input_size}x{input_size}", (input_size, input_size, 3))

    def stem_conv(f: int, kernel: tuple[int, int], stride: tuple[int, int], padding: str) -> int:
        return net.conv("stem/conv", GRAPH_INPUT, f, kernel, stride, padding=padding)

    def cell(name: str, c: Cell, h_prev: int, h_prevprev: int, f: int, reduction: bool) -> int:
        return _cell(net, name, c, h_prev, h_prevprev, f, reduction)

    return nasnet_skeleton(genome, cells, filters, resolve_stem(input_size, stem), stem_conv, cell,
                           lambda last: net.b.build(net.head(last, num_classes)))


PREVPREV_PLACEHOLDER = "h_prevprev"


def lower_cell(cell: Cell, reduction: bool, prev_shape: tuple[int, ...], prevprev_shape: tuple[int, ...],
               filters: int, same_input: bool) -> Graph:
    """One NASNet cell alone, its live layers only: the graph input is h_prev; h_prevprev is the input
    itself (``same_input``) or a free placeholder layer named ``PREVPREV_PLACEHOLDER``, kept only when
    the cell reads it."""
    net = Net("cell", prev_shape)
    pp = GRAPH_INPUT if same_input else net.b.add(Layer(PREVPREV_PLACEHOLDER, RESHAPE, (), (), prevprev_shape))
    out = _build_cell(net, "cell", cell, GRAPH_INPUT, pp, filters, reduction)
    return net.b.build(out)


def lower_stem_and_head(stem: str, filters: int, input_size: int, last_shape: tuple[int, ...],
                        num_classes: int) -> tuple[Graph, Graph, tuple[int, ...]]:
    """The stem conv and the head as two small graphs, and the stem's output shape."""
    stem_net = Net("stem", (input_size, input_size, 3))

    def stem_conv(f: int, kernel: tuple[int, int], stride: tuple[int, int], padding: str) -> int:
        return stem_net.conv("stem/conv", GRAPH_INPUT, f, kernel, stride, padding=padding)

    if stem == "cifar":
        stem_conv(STEM_MULTIPLIER * filters, (3, 3), (1, 1), "SAME")
    else:
        stem_conv(IMAGENET_STEM_FILTERS, (3, 3), (2, 2), "VALID")
    head_net = Net("head", last_shape)
    head_net.head(GRAPH_INPUT, num_classes)
    return stem_net.b.build(), head_net.b.build(), stem_net.b.layers[0].out_shape


# -- the fast estimate: per-cell totals ----------------------------------------------------------------


def _totals(graph: Graph) -> ChipTotals:
    return totals(graph.layers)


_cell_totals: dict[tuple[Any, ...], tuple[ChipTotals, Shape, bool, bool]] = {}
_CELL_TOTALS_LIMIT = 4096


def clear_cell_totals() -> None:
    """Forget the per-cell totals ``estimate_totals`` memoizes (``spaces.clear_cache`` calls this)."""
    _cell_totals.clear()


def estimate_totals(genome: NASNetGenome, cells: int, filters: int, input_size: int, num_classes: int,
                    device: str, clock_mhz: int | None, dataset: str | None) -> LatencyReport | None:
    """The latency of a NASNet genome from per-cell totals (memoized on the cell, its input shapes and
    filters), or None when its parameters do not all fit on chip (then layer order matters: the full path)."""
    check_args(cells, filters, input_size, num_classes)
    stem = resolve_stem(input_size, STEMS.get(dataset, dataset))
    device_and_clock(device, clock_mhz)  # an unknown device or clock is an error before any lowering
    # A tensor is (identity, shape): the identity tells a cell whose two inputs are one tensor, and
    # liveness is tracked per tensor (a cell that never reads state 0 leaves the cell before last dead).
    Tensor = tuple[int, Shape]
    ids = iter(range(1 << 30))
    done: list[tuple[int, int, int, ChipTotals, bool, bool]] = []  # (out, h_prev, h_prevprev, totals, reads...)

    def cell_fn(name: str, cell: Cell, h_prev: Tensor, h_prevprev: Tensor, f: int, reduction: bool) -> Tensor:
        same = h_prev[0] == h_prevprev[0]
        key = (cell, reduction, h_prev[1], h_prevprev[1], f, same)
        found = _cell_totals.get(key)
        if found is None:
            graph = lower_cell(cell, reduction, h_prev[1], h_prevprev[1], f, same)
            reads_prev = any(GRAPH_INPUT in layer.inputs for layer in graph.layers)
            reads_pp = reads_prev if same else any(layer.name == PREVPREV_PLACEHOLDER for layer in graph.layers)
            found = (_totals(graph), graph.output_shape, reads_prev, reads_pp)
            if len(_cell_totals) >= _CELL_TOTALS_LIMIT:
                _cell_totals.clear()
            _cell_totals[key] = found
        out = next(ids)
        done.append((out, h_prev[0], h_prevprev[0], found[0], found[2], found[3]))
        return (out, found[1])

    stem_graph, _, stem_shape = lower_stem_and_head(stem, filters, input_size, (1, 1, 1), num_classes)
    stem_id = next(ids)
    last = nasnet_skeleton(genome, cells, filters, stem, lambda *_: (stem_id, stem_shape), cell_fn, lambda t: t)
    _, head_graph, _ = lower_stem_and_head(stem, filters, input_size, last[1], num_classes)
    live = {last[0]}
    total = _totals(head_graph)
    for out, prev_id, pp_id, cell_totals, reads_prev, reads_pp in reversed(done):
        if out in live:
            total = total + cell_totals
            if reads_prev:
                live.add(prev_id)
            if reads_pp:
                live.add(pp_id)
    if stem_id not in live:
        return None  # the output does not depend on the input; let the full path say what remains
    total = total + _totals(stem_graph)
    if not total.fits_on_chip:
        return None
    return report_from_totals(f"nasnet N={cells} F={filters} {input_size}x{input_size}", total,
                              numel((input_size, input_size, 3)) + num_classes, device, clock_mhz)
