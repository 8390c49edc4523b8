"""Genome lowering: the NASNet and NAS-Bench-201 networks of a genome as layer IR, without JAX.

Follows the shared NASNet macro structure layer for layer (the Flax model in ``nets`` follows the
same spec; a test compares the two). Batch norm folds into the layer before it and ReLU fuses into
its neighbours, as the Edge TPU compiler does, so neither appears as a layer: a BN's scale and
offset are counted in the parameters of the layer whose output it normalizes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from genome import NASNET_OPS, Genome, GenomeError, NASNetGenome, NB201Genome
from genome.nasnet import NUM_INPUTS, Cell
from latency.ir import (
    ADD,
    AVG_POOL,
    CONCAT,
    DENSE,
    GRAPH_INPUT,
    MAX_POOL,
    MEAN,
    PAD,
    RESHAPE,
    SLICE,
    Graph,
    GraphBuilder,
    IRError,
    Layer,
    conv_layer,
    conv_out,
)

STEM_MULTIPLIER = 3  # CIFAR stem: 3F filters
IMAGENET_STEM_FILTERS = 32
#: Inputs at least this large use the ImageNet stem (stride-2 conv and two reduction stem cells).
IMAGENET_MIN_INPUT = 128


class LoweringError(ValueError):
    """A genome cannot be lowered with these arguments (bad N, F, input size or class count)."""


class _Net:
    """A GraphBuilder with the NASNet/NB201 vocabulary (conv+BN, pools, adds, concat, factorized reduction)."""

    def __init__(self, name: str, input_shape: tuple[int, ...]) -> None:
        self.b = GraphBuilder(name, input_shape)

    def shape(self, ref: int) -> tuple[int, ...]:
        return self.b.shape_of(ref)

    def conv(self, name: str, src: int, features: int, kernel: tuple[int, int] = (1, 1),
             stride: tuple[int, int] = (1, 1), *, bn: bool = True, padding: str = "SAME",
             dilation: tuple[int, int] = (1, 1)) -> int:
        cout = self.shape(src)[-1] if features == 0 else features
        return self.b.add(conv_layer(name, src, self.shape(src), features, kernel, stride, padding=padding,
                                     dilation=dilation, extra_params=2 * cout if bn else 0))

    def depthwise(self, name: str, src: int, kernel: int, stride: int, dilation: int = 1) -> int:
        return self.b.add(conv_layer(name, src, self.shape(src), 0, (kernel, kernel), (stride, stride),
                                     dilation=(dilation, dilation), depthwise=True))

    def bn(self, ref: int) -> None:
        self.b.bump_params(ref, 2 * self.shape(ref)[-1])

    def pool(self, name: str, src: int, kind: str, window: int, stride: int, padding: str = "SAME") -> int:
        h, w, c = self.shape(src)
        out = (conv_out(h, window, stride, 1, padding), conv_out(w, window, stride, 1, padding), c)
        return self.b.add(Layer(name, kind, (src,), (self.shape(src),), out, (window, window), (stride, stride)))

    def binary(self, name: str, kind: str, refs: tuple[int, ...], params: int = 0) -> int:
        shapes = tuple(self.shape(r) for r in refs)
        if kind == CONCAT:
            h, w = shapes[0][0], shapes[0][1]
            if any(s[:2] != (h, w) for s in shapes):
                raise IRError(f"{name}: concat of different spatial sizes {shapes}")
            out: tuple[int, ...] = (h, w, sum(s[-1] for s in shapes))
        else:
            if len(set(shapes)) != 1:
                raise IRError(f"{name}: elementwise op on different shapes {shapes}")
            out = shapes[0]
        return self.b.add(Layer(name, kind, refs, shapes, out, params=params))

    def data_move(self, name: str, kind: str, src: int, out: tuple[int, int, int]) -> int:
        return self.b.add(Layer(name, kind, (src,), (self.shape(src),), out))

    def factorized_reduction(self, name: str, src: int, features: int) -> int:
        """ReLU (fused); path 1: every second pixel, 1x1 conv to features/2; path 2: shift by one pixel
        (pad bottom/right, crop top/left), every second pixel, 1x1 conv to the rest; concat; BN."""
        h, w, c = self.shape(src)
        half = features // 2
        ho, wo = -(-h // 2), -(-w // 2)
        p1 = self.data_move(f"{name}/path1_stride", SLICE, src, (ho, wo, c))
        p1 = self.conv(f"{name}/path1_conv", p1, half, bn=False)
        padded = self.data_move(f"{name}/path2_pad", PAD, src, (h + 1, w + 1, c))
        shifted = self.data_move(f"{name}/path2_crop", SLICE, padded, (h, w, c))
        p2 = self.data_move(f"{name}/path2_stride", SLICE, shifted, (ho, wo, c))
        p2 = self.conv(f"{name}/path2_conv", p2, features - half, bn=False)
        return self.binary(f"{name}/concat", CONCAT, (p1, p2), params=2 * features)

    def head(self, src: int, num_classes: int) -> int:
        c = self.shape(src)[-1]
        pooled = self.b.add(Layer("head/global_pool", MEAN, (src,), (self.shape(src),), (c,)))
        return self.b.add(Layer("head/dense", DENSE, (pooled,), ((c,),), (num_classes,), weights=c * num_classes,
                                params=c * num_classes + num_classes, macs=c * num_classes))


# -- NASNet ------------------------------------------------------------------------------------------

OpLowering = Callable[[_Net, str, int, int, int], int]


def _identity(net: _Net, name: str, src: int, filters: int, stride: int) -> int:
    if stride == 1 and net.shape(src)[-1] == filters:
        return src
    return net.conv(f"{name}/1x1", src, filters, (1, 1), (stride, stride))


def _sep(kernel: int, dilation: int = 1) -> OpLowering:
    def lower(net: _Net, name: str, src: int, filters: int, stride: int) -> int:
        x = src
        for rep, s in enumerate((stride, 1), start=1):
            x = net.depthwise(f"{name}/sep{rep}/depthwise", x, kernel, s, dilation)
            x = net.conv(f"{name}/sep{rep}/pointwise", x, filters)
        return x

    return lower


def _pool(kind: str) -> OpLowering:
    def lower(net: _Net, name: str, src: int, filters: int, stride: int) -> int:
        x = net.pool(f"{name}/pool", src, kind, 3, stride)
        if net.shape(x)[-1] != filters:
            x = net.conv(f"{name}/1x1", x, filters)
        return x

    return lower


def _conv_1x7_7x1(net: _Net, name: str, src: int, filters: int, stride: int) -> int:
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


def _build_cell(net: _Net, name: str, cell: Cell, h_prev: int, h_prevprev: int, filters: int, reduction: bool) -> int:
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
_TEMPLATES_LOCK = threading.Lock()


def _cell(net: _Net, name: str, cell: Cell, h_prev: int, h_prevprev: int, filters: int, reduction: bool) -> int:
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
        with _TEMPLATES_LOCK:
            if len(_TEMPLATES) >= _TEMPLATE_LIMIT:
                _TEMPLATES.pop(next(iter(_TEMPLATES)))  # oldest first: children mostly share their parent's cells
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
    net = _Net(f"nasnet N={cells} F={filters} {input_size}x{input_size}", (input_size, input_size, 3))

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
    net = _Net("cell", prev_shape)
    pp = GRAPH_INPUT if same_input else net.b.add(Layer(PREVPREV_PLACEHOLDER, RESHAPE, (), (), prevprev_shape))
    out = _build_cell(net, "cell", cell, GRAPH_INPUT, pp, filters, reduction)
    return net.b.build(out)


def lower_stem_and_head(stem: str, filters: int, input_size: int, last_shape: tuple[int, ...],
                        num_classes: int) -> tuple[Graph, Graph, tuple[int, ...]]:
    """The stem conv and the head as two small graphs, and the stem's output shape."""
    stem_net = _Net("stem", (input_size, input_size, 3))

    def stem_conv(f: int, kernel: tuple[int, int], stride: tuple[int, int], padding: str) -> int:
        return stem_net.conv("stem/conv", GRAPH_INPUT, f, kernel, stride, padding=padding)

    if stem == "cifar":
        stem_conv(STEM_MULTIPLIER * filters, (3, 3), (1, 1), "SAME")
    else:
        stem_conv(IMAGENET_STEM_FILTERS, (3, 3), (2, 2), "VALID")
    head_net = _Net("head", last_shape)
    head_net.head(GRAPH_INPUT, num_classes)
    return stem_net.b.build(), head_net.b.build(), stem_net.b.layers[0].out_shape


# -- NAS-Bench-201 ------------------------------------------------------------------------------------



def _nb201_cell(net: _Net, name: str, genome: NB201Genome, src: int | None) -> int | None:
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
    net = _Net(f"nb201 C={filters} N={cells} {input_size}x{input_size}", (input_size, input_size, 3))
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


def check_args(cells: int, filters: int, input_size: int, num_classes: int) -> None:
    if cells < 1:
        raise LoweringError(f"cells (N) must be at least 1, got {cells}")
    if filters < 1:
        raise LoweringError(f"filters (F) must be at least 1, got {filters}")
    if input_size < 8:
        raise LoweringError(f"input size must be at least 8, got {input_size}")
    if num_classes < 1:
        raise LoweringError(f"num_classes must be at least 1, got {num_classes}")


def lower_genome(genome: Genome, *, cells: int, filters: int, input_size: int = 32, num_classes: int = 10,
                 dataset: str | None = None) -> Graph:
    """Lower any supported genome. NASNet: N = ``cells`` per stack, F = ``filters``; NB201: ``cells`` per
    stage and ``filters`` stage-1 channels (the benchmark's skeleton is cells=5, filters=16). ``dataset``
    (cifar10 or imagenet) picks the NASNet stem; by default inputs of 128 pixels and more get the ImageNet one."""
    if isinstance(genome, NASNetGenome):
        stem = {None: None, "cifar10": "cifar", "imagenet": "imagenet"}.get(dataset, dataset)
        return lower_nasnet(genome, cells=cells, filters=filters, input_size=input_size, num_classes=num_classes,
                            stem=stem)
    if isinstance(genome, NB201Genome):
        return lower_nb201(genome, input_size=input_size, num_classes=num_classes, cells=cells, filters=filters)
    raise LoweringError(f"cannot lower genomes of space {genome.space!r}")
