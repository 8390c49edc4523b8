"""A TFLite model as the simulator's layer IR (``latency.ir.Graph``), for ``amoeba latency --tflite``.

The same vocabulary and folding rules as the other two front ends (genome lowering, jaxpr tracing):

- CONV_2D -> ``conv``/``pointwise`` (grouped when the filter has fewer input channels than the input),
  DEPTHWISE_CONV_2D -> ``depthwise``, FULLY_CONNECTED -> ``dense``, with weights and MACs from the filter
  and output shapes; biases count as parameters;
- AVERAGE/MAX_POOL_2D -> pools with their window and stride, MEAN -> ``mean``, PAD -> ``pad``,
  CONCATENATION -> ``concat``, ADD/SUB/MUL of two activations -> ``add``/``mul``;
- ReLU, ReLU6, Reshape, Quantize (a requantization) and ADD/SUB/MUL with a constant operand (a batch norm the converter left, an
  input normalization) fold into the layer before them; Logistic, Tanh, Softmax, Hard-swish,
  L2Normalization and resizes are ``activation`` layers (one vector op per output element);
- every operator the Edge TPU check (``export.edgetpu``) rejects becomes an ``unsupported`` layer named
  after it, so the simulator splits the graph where the check does and prices the rest on the CPU.

Shapes drop the batch dimension of 1, as the tracer does.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from export.edgetpu import EdgeTpuReport, check
from export.flatbuf import OpInfo, TfliteModel, read_tflite
from latency.ir import (
    ACTIVATION,
    ADD,
    AVG_POOL,
    CONCAT,
    CONV,
    DENSE,
    DEPTHWISE,
    GRAPH_INPUT,
    MAX_POOL,
    MEAN,
    MUL,
    PAD,
    POINTWISE,
    SLICE,
    UNSUPPORTED,
    Graph,
    GraphBuilder,
    Layer,
)

_FOLD = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "QUANTIZE"})
_ELEMENTWISE = {"ADD": ADD, "SUB": ADD, "MUL": MUL}
_ACTIVATION_OPS = frozenset({"LOGISTIC", "TANH", "SOFTMAX", "HARD_SWISH", "L2_NORMALIZATION", "RESIZE_BILINEAR",
                             "RESIZE_NEAREST_NEIGHBOR"})
_POOLS = {"AVERAGE_POOL_2D": AVG_POOL, "MAX_POOL_2D": MAX_POOL}
_REDUCTIONS = frozenset({"MEAN", "SUM"})
_SLICES = frozenset({"SLICE", "STRIDED_SLICE"})
_PRIMITIVE = re.compile(r"^[a-z_]+\d*$")


def _drop_batch(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[1:] if len(shape) >= 2 and shape[0] == 1 else shape


def _label(name: str, fallback: str) -> str:
    """A readable layer name from a tensor name: the first of a fused ``a;b`` list, without jax2tf's
    ``jit(f)/`` prefix and trailing primitive name (``.../sep1/depthwise/conv_general_dilated1``)."""
    parts = name.split(";", 1)[0].split("/")
    if parts and parts[0].startswith("jit("):
        parts = parts[1:]
    if len(parts) >= 3 and _PRIMITIVE.match(parts[-1]):
        parts = parts[:-1]
    return "/".join(parts) or fallback


class _Reader:
    def __init__(self, model: TfliteModel, report: EdgeTpuReport) -> None:
        self.model = model
        self.report = report
        first = model.tensor(model.inputs[0]) if model.inputs else None
        self.b = GraphBuilder(model.name, _drop_batch(first.shape) if first is not None else ())
        # tensor index -> (IR layer that produced it, its IR shape); graph inputs are GRAPH_INPUT
        self.owner: dict[int, tuple[int, tuple[int, ...]]] = {
            i: (GRAPH_INPUT, _drop_batch(model.tensor(i).shape)) for i in model.inputs}

    def acts(self, op: OpInfo) -> list[int]:
        """The op's inputs that carry activations (produced by an earlier layer or the graph input)."""
        return [i for i in op.inputs if i >= 0 and i in self.owner]

    def add(self, source: OpInfo, kind: str, inputs: list[int], **fields: object) -> int:
        op = source
        out = self.model.tensor(op.outputs[0]) if op.outputs else None
        out_shape = _drop_batch(out.shape) if out is not None else ()
        name = _label(out.name if out is not None else "", f"{op.name.lower()}{op.index}")
        layer = Layer(f"{name}#{op.index}", kind, tuple(self.owner[i][0] for i in inputs),
                      tuple(self.owner[i][1] for i in inputs), out_shape, **fields)  # type: ignore[arg-type]
        ref = self.b.add(layer)
        for t in op.outputs:
            self.owner[t] = (ref, _drop_batch(self.model.tensor(t).shape))
        return ref

    def fold(self, op: OpInfo, src: int, extra_params: int = 0) -> None:
        ref = self.owner[src][0]
        self.b.bump_params(ref, extra_params)
        for t in op.outputs:
            self.owner[t] = (ref, _drop_batch(self.model.tensor(t).shape))

    def run(self) -> Graph:
        for op in self.model.ops:
            self.op(op)
        outs = [self.owner[i][0] for i in self.model.outputs if i in self.owner]
        if not self.b.layers:
            return Graph(self.model.name, self.b.input_shape, ())
        return self.b.build(outs[0] if len(outs) == 1 else None)

    def op(self, op: OpInfo) -> None:
        acts = self.acts(op)
        if not acts:
            return  # computed from constants only: not a layer (the converter folds such ops)
        supported = self.report.ops[op.index].supported
        fields = self.costs(op, acts)
        if not supported:
            self.add(op, UNSUPPORTED, acts, op=op.name, **{k: v for k, v in fields.items() if k in ("macs",)})
            return
        name = op.name
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            kind = str(fields.pop("kind"))
            self.add(op, kind, acts[:1], **fields)
        elif name in _POOLS:
            self.add(op, _POOLS[name], acts[:1], **fields)
        elif name in _REDUCTIONS:
            self.add(op, MEAN, acts[:1])
        elif name == "PAD" or name == "PADV2":
            self.add(op, PAD, acts[:1])
        elif name in _SLICES:
            self.add(op, SLICE, acts[:1])
        elif name == "CONCATENATION":
            if len(acts) == 1:
                self.fold(op, acts[0])
            else:
                self.add(op, CONCAT, acts)
        elif name in _ELEMENTWISE:
            if len(acts) == 2:
                self.add(op, _ELEMENTWISE[name], acts)
            else:
                consts = sum(math.prod(t.shape) for t in self.model.constants(op))
                self.fold(op, acts[0], consts)
        elif name in _FOLD:
            self.fold(op, acts[0])
        elif name in _ACTIVATION_OPS:
            self.add(op, ACTIVATION, acts[:1])
        else:
            self.add(op, UNSUPPORTED, acts, op=op.name)

    def costs(self, op: OpInfo, acts: list[int]) -> dict[str, object]:
        """Kind, kernel, stride, dilation, groups, weights, parameters and MACs of a MAC or pooling op."""
        m = self.model
        o = op.options
        out = m.tensor(op.outputs[0]) if op.outputs else None
        if out is None:
            return {}
        x = m.tensor(acts[0])
        consts = [m.tensor(i) for i in op.inputs[1:] if i >= 0 and m.tensor(i).const]
        stride = (int(o.get("stride_h", 1)), int(o.get("stride_w", 1)))
        dilation = (int(o.get("dilation_h_factor", 1)), int(o.get("dilation_w_factor", 1)))
        bias = sum(math.prod(t.shape) for t in consts[1:])
        if op.name == "CONV_2D" and consts and len(consts[0].shape) == 4:
            cout, kh, kw, cin_g = consts[0].shape
            cin = x.shape[-1] if x.shape else cin_g
            groups = max(1, cin // max(1, cin_g))
            spatial = math.prod(out.shape[1:-1]) if len(out.shape) >= 2 else 1
            weights = cout * kh * kw * cin_g
            if groups > 1 and groups == cin:
                kind = DEPTHWISE
            elif (kh, kw) == (1, 1) and groups == 1:
                kind = POINTWISE
            else:
                kind = CONV
            return {"kind": kind, "kernel": (kh, kw), "stride": stride, "dilation": dilation, "groups": groups,
                    "weights": weights, "params": weights + bias, "macs": spatial * weights}
        if op.name == "DEPTHWISE_CONV_2D" and consts and len(consts[0].shape) == 4:
            _, kh, kw, cout = consts[0].shape
            cin = x.shape[-1] if x.shape else cout
            spatial = math.prod(out.shape[1:-1]) if len(out.shape) >= 2 else 1
            weights = kh * kw * cout
            return {"kind": DEPTHWISE, "kernel": (kh, kw), "stride": stride, "dilation": dilation, "groups": cin,
                    "weights": weights, "params": weights + bias, "macs": spatial * weights}
        if op.name == "FULLY_CONNECTED" and consts and len(consts[0].shape) == 2:
            units, depth = consts[0].shape
            rows = max(1, math.prod(x.shape) // max(1, depth))
            weights = units * depth
            return {"kind": DENSE, "weights": weights, "params": weights + bias, "macs": rows * weights}
        if op.name in _POOLS:
            return {"kernel": (int(o.get("filter_height", 1)), int(o.get("filter_width", 1))), "stride": stride}
        return {}


def tflite_graph(model: TfliteModel, report: EdgeTpuReport | None = None) -> Graph:
    """The layer IR of a read TFLite model (``report``: its Edge TPU check, computed when not given)."""
    return _Reader(model, report or check(model)).run()


def read_graph(source: str | Path | bytes, *, name: str | None = None) -> tuple[Graph, EdgeTpuReport, TfliteModel]:
    """Read a ``.tflite`` file (or its bytes): its layer IR, its Edge TPU check and the model description."""
    model = read_tflite(source, name=name)
    report = check(model)
    return tflite_graph(model, report), report, model
