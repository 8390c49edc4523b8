"""The layer IR shared by both front ends (genome lowering and jaxpr tracing): layers with shapes and costs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from domain.errors import AmoebaError

Shape = tuple[int, ...]

# Layer kinds. MAC layers carry weights; the rest are vector or data-movement ops.
CONV = "conv"  # regular convolution (kernel larger than 1x1, or grouped but not depthwise)
POINTWISE = "pointwise"  # 1x1 convolution
DEPTHWISE = "depthwise"  # one filter per channel (feature_group_count == channels)
DENSE = "dense"  # fully connected
AVG_POOL = "avg_pool"
MAX_POOL = "max_pool"
ADD = "add"  # elementwise add/sub of two activations
MUL = "mul"  # elementwise product of two activations
CONCAT = "concat"
MEAN = "mean"  # reduction over spatial axes (global average pool)
ACTIVATION = "activation"  # a non-fused activation (logistic, tanh, softmax, ...)
PAD = "pad"
SLICE = "slice"  # (strided) slicing / cropping
RESHAPE = "reshape"  # free: a view of the same bytes
UNSUPPORTED = "unsupported"  # anything the Edge TPU compiler cannot map: runs on the host CPU

MAC_KINDS = frozenset({CONV, POINTWISE, DEPTHWISE, DENSE})
KINDS = (CONV, POINTWISE, DEPTHWISE, DENSE, AVG_POOL, MAX_POOL, ADD, MUL, CONCAT, MEAN, ACTIVATION, PAD, SLICE,
         RESHAPE, UNSUPPORTED)

#: Index used in ``Layer.inputs`` for the graph's input tensor.
GRAPH_INPUT = -1


class IRError(AmoebaError, ValueError):
    """A layer or graph is malformed (bad kind, shapes or references)."""


def numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer, batch dimension dropped (activations are (H, W, C) or (C,)).

    ``weights`` counts the weight-tensor elements (stored as int8 on the Edge TPU); ``params`` counts
    trainable parameters attributed to the layer, including folded batch-norm scale/offset and biases;
    ``macs`` counts multiply-accumulates (convolutions and dense layers only, as in published
    mult-add figures). ``inputs`` are indices of earlier layers, ``GRAPH_INPUT`` for the graph input.
    ``op`` names the source primitive of an unsupported layer.
    """

    name: str
    kind: str
    inputs: tuple[int, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    weights: int = 0
    params: int = 0
    macs: int = 0
    op: str = ""

    @property
    def in_channels(self) -> int:
        return self.in_shapes[0][-1] if self.in_shapes and self.in_shapes[0] else 1

    @property
    def out_channels(self) -> int:
        return self.out_shape[-1] if self.out_shape else 1

    @property
    def in_elements(self) -> int:
        return sum(numel(s) for s in self.in_shapes)

    @property
    def out_elements(self) -> int:
        return numel(self.out_shape)


@dataclass(frozen=True, slots=True)
class Graph:
    """Layers in topological order; the last layer's output is the graph output."""

    name: str
    input_shape: Shape
    layers: tuple[Layer, ...]

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape if self.layers else self.input_shape

    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def total_weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    def count_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
        return counts


@dataclass(slots=True)
class GraphBuilder:
    """Appends layers and hands back their indices; validates references and kinds as it goes."""

    name: str
    input_shape: Shape
    layers: list[Layer] = field(default_factory=list)

    def shape_of(self, ref: int) -> Shape:
        return self.input_shape if ref == GRAPH_INPUT else self.layers[ref].out_shape

    def add(self, layer: Layer) -> int:
        if layer.kind not in KINDS:
            raise IRError(f"layer {layer.name!r}: unknown kind {layer.kind!r}")
        for ref in layer.inputs:
            if not (ref == GRAPH_INPUT or 0 <= ref < len(self.layers)):
                raise IRError(f"layer {layer.name!r}: input {ref} is not an earlier layer")
        self.layers.append(layer)
        return len(self.layers) - 1

    def bump_params(self, ref: int, extra: int) -> None:
        """Attribute folded parameters (batch norm, bias) to the layer that produced ``ref``."""
        if ref == GRAPH_INPUT or extra == 0:
            return
        old = self.layers[ref]
        self.layers[ref] = _replace_params(old, old.params + extra)

    def build(self, output: int | None = None) -> Graph:
        """The graph; with ``output``, only the layers it depends on, ending with it (the compiler drops
        dead layers, such as an NB201 edge into a node that never reaches the cell output)."""
        if output is None or output == GRAPH_INPUT:
            return Graph(self.name, self.input_shape, tuple(self.layers))
        live = [False] * len(self.layers)
        live[output] = True
        for i in range(output, -1, -1):
            if live[i]:
                for ref in self.layers[i].inputs:
                    if ref != GRAPH_INPUT:
                        live[ref] = True
        if all(live[: output + 1]) and output == len(self.layers) - 1:
            return Graph(self.name, self.input_shape, tuple(self.layers))
        index: dict[int, int] = {GRAPH_INPUT: GRAPH_INPUT}
        kept: list[Layer] = []
        for i in range(output + 1):
            if live[i]:
                layer = self.layers[i]
                index[i] = len(kept)
                kept.append(_with_inputs(layer, tuple(index[r] for r in layer.inputs)))
        return Graph(self.name, self.input_shape, tuple(kept))


def _with_inputs(layer: Layer, inputs: tuple[int, ...]) -> Layer:
    return Layer(layer.name, layer.kind, inputs, layer.in_shapes, layer.out_shape, layer.kernel, layer.stride,
                 layer.dilation, layer.groups, layer.weights, layer.params, layer.macs, layer.op)


def _replace_params(layer: Layer, params: int) -> Layer:
    return Layer(layer.name, layer.kind, layer.inputs, layer.in_shapes, layer.out_shape, layer.kernel, layer.stride,
                 layer.dilation, layer.groups, layer.weights, params, layer.macs, layer.op)


def conv_out(size: int, kernel: int, stride: int, dilation: int = 1, padding: str = "SAME") -> int:
    """Output extent of a convolution or pool along one axis (TensorFlow/XLA SAME and VALID rules)."""
    if padding == "SAME":
        return -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    if size < effective:
        raise IRError(f"VALID window of {effective} does not fit an input of {size}")
    return (size - effective) // stride + 1


def conv_layer(
    name: str, src: int, in_shape: Shape, features: int, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
    *, dilation: tuple[int, int] = (1, 1), padding: str = "SAME", depthwise: bool = False, bias: bool = False,
    extra_params: int = 0,
) -> Layer:
    """A convolution layer on an (H, W, C) input with MACs, weights and parameters filled in.

    ``extra_params`` adds folded parameters (a following batch norm's scale and offset)."""
    h, w, c = in_shape
    ho = conv_out(h, kernel[0], stride[0], dilation[0], padding)
    wo = conv_out(w, kernel[1], stride[1], dilation[1], padding)
    if depthwise:
        cout, groups, cin_g, kind = c, c, 1, DEPTHWISE
    else:
        cout, groups, cin_g = features, 1, c
        kind = POINTWISE if kernel == (1, 1) else CONV
    weights = kernel[0] * kernel[1] * cin_g * cout
    macs = ho * wo * weights
    params = weights + (cout if bias else 0) + extra_params
    return Layer(name, kind, (src,), (in_shape,), (ho, wo, cout), kernel, stride, dilation, groups, weights, params, macs)


def shapes_of(builder: GraphBuilder, refs: Sequence[int]) -> tuple[Shape, ...]:
    return tuple(builder.shape_of(r) for r in refs)
