"""Read a TFLite flatbuffer into a plain description: tensors (shape, type, constant or not, quantization),
operators in execution order (name, inputs, outputs, the options the checks and the simulator need).

The schema is LiteRT's ``ai_edge_litert.schema_py_generated`` (the generated reader of TFLite's
``schema.fbs``, shipped with the ``ai-edge-litert`` package and its ``flatbuffers`` dependency). This
route parses the file without building an interpreter, so it reads any ``.tflite`` - models with custom
operators (an ``edgetpu_compiler`` output's ``edgetpu-custom-op``) or kernels this LiteRT lacks
included - without TensorFlow (1.3 GB) and in well under a second; LiteRT's interpreter only lists
tensor details through private methods, and TensorFlow's ``flatbuffer_utils`` copies every weight
buffer into Python objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.errors import ExportUnavailable, NotTflite

#: The file identifier of a TFLite flatbuffer (bytes 4..8).
IDENTIFIER = b"TFL3"


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor of the main subgraph. ``const``: backed by a non-empty buffer (weights, biases, shapes)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8", "uint8", "int32", "float32", ...
    const: bool
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class OpInfo:
    """One operator, in the subgraph's execution order; ``inputs``/``outputs`` index ``TfliteModel.tensors``
    (-1 for an omitted optional input). ``options`` holds the read builtin options (strides, filter sizes,
    dilation, padding, fused activation, depth multiplier, axis) by snake_case name."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TfliteModel:
    """The main subgraph of a TFLite model (the only one the Edge TPU compiler maps)."""

    name: str
    size_bytes: int
    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: int

    def tensor(self, index: int) -> TensorInfo:
        return self.tensors[index]

    def activations(self, op: OpInfo) -> tuple[TensorInfo, ...]:
        """The op's non-constant input tensors (what flows between layers)."""
        return tuple(self.tensors[i] for i in op.inputs if i >= 0 and not self.tensors[i].const)

    def constants(self, op: OpInfo) -> tuple[TensorInfo, ...]:
        return tuple(self.tensors[i] for i in op.inputs if i >= 0 and self.tensors[i].const)


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise ExportUnavailable("ai-edge-litert (LiteRT)") from None
    return schema_py_generated


def _names(enum: Any) -> dict[int, str]:
    return {value: key for key, value in vars(enum).items() if not key.startswith("_") and isinstance(value, int)}


_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDING = {0: "SAME", 1: "VALID"}


def read_tflite(source: str | Path | bytes, *, name: str | None = None) -> TfliteModel:
    """The description of a ``.tflite`` file (a path) or of its bytes; NotTflite when it is not one."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        label = name or "model"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise NotTflite(f"cannot read {path}: {exc.strerror or exc}") from None
        label = name or path.stem
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise NotTflite(f"{label} is not a TFLite model (no {IDENTIFIER.decode()} flatbuffer identifier)")
    schema = _schema()
    try:
        return _parse(schema, data, label)
    except NotTflite:
        raise
    except Exception as exc:  # a truncated or corrupt flatbuffer fails anywhere inside the generated reader
        raise NotTflite(f"{label} is not a readable TFLite model: {type(exc).__name__}: {exc}") from None


def _parse(schema: Any, data: bytes, label: str) -> TfliteModel:
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise NotTflite(f"{label} has no subgraph")
    builtin = _names(schema.BuiltinOperator)
    dtypes = {k: v.lower() for k, v in _names(schema.TensorType).items()}
    codes: list[str] = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        number = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if number == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            codes.append(f"CUSTOM:{custom.decode() if isinstance(custom, bytes) else custom}")
        else:
            codes.append(builtin.get(number, f"BUILTIN_{number}"))
    const_buffers: set[int] = set()
    for b in range(model.BuffersLength()):
        buffer = model.Buffers(b)
        if buffer.DataLength() > 0 or int(buffer.Size()) > 0:
            const_buffers.add(b)
    graph = model.Subgraphs(0)
    tensors: list[TensorInfo] = []
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        quant = tensor.Quantization()
        scale: tuple[float, ...] = ()
        zero: tuple[int, ...] = ()
        if quant is not None and quant.ScaleLength() > 0:
            scale = tuple(float(quant.Scale(k)) for k in range(quant.ScaleLength()))
            zero = tuple(int(quant.ZeroPoint(k)) for k in range(quant.ZeroPointLength()))
        raw = tensor.Name()
        tensors.append(TensorInfo(
            index=t, name=raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or f"tensor{t}"),
            shape=tuple(int(tensor.Shape(k)) for k in range(tensor.ShapeLength())),
            dtype=dtypes.get(int(tensor.Type()), f"type{tensor.Type()}"),
            const=int(tensor.Buffer()) in const_buffers, scale=scale, zero_point=zero,
        ))
    ops: list[OpInfo] = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        op_name = codes[op.OpcodeIndex()] if op.OpcodeIndex() < len(codes) else f"OPCODE_{op.OpcodeIndex()}"
        ops.append(OpInfo(
            index=k, name=op_name,
            inputs=tuple(int(op.Inputs(j)) for j in range(op.InputsLength())),
            outputs=tuple(int(op.Outputs(j)) for j in range(op.OutputsLength())),
            options=_options(schema, op),
        ))
    return TfliteModel(
        name=label, size_bytes=len(data), tensors=tuple(tensors), ops=tuple(ops),
        inputs=tuple(int(graph.Inputs(j)) for j in range(graph.InputsLength())),
        outputs=tuple(int(graph.Outputs(j)) for j in range(graph.OutputsLength())),
        subgraphs=int(model.SubgraphsLength()),
    )


def _options(schema: Any, op: Any) -> dict[str, Any]:
    """The builtin options this package uses, by snake_case name (empty for other option types)."""
    table = op.BuiltinOptions()
    if table is None:
        return {}
    kind = int(op.BuiltinOptionsType())
    kinds = schema.BuiltinOptions
    readers: dict[int, tuple[Any, tuple[str, ...]]] = {
        kinds.Conv2DOptions: (schema.Conv2DOptions, ("Padding", "StrideH", "StrideW", "DilationHFactor",
                                                     "DilationWFactor", "FusedActivationFunction")),
        kinds.DepthwiseConv2DOptions: (schema.DepthwiseConv2DOptions,
                                       ("Padding", "StrideH", "StrideW", "DilationHFactor", "DilationWFactor",
                                        "DepthMultiplier", "FusedActivationFunction")),
        kinds.Pool2DOptions: (schema.Pool2DOptions, ("Padding", "StrideH", "StrideW", "FilterHeight", "FilterWidth",
                                                     "FusedActivationFunction")),
        kinds.ConcatenationOptions: (schema.ConcatenationOptions, ("Axis", "FusedActivationFunction")),
        kinds.AddOptions: (schema.AddOptions, ("FusedActivationFunction",)),
        kinds.SubOptions: (schema.SubOptions, ("FusedActivationFunction",)),
        kinds.MulOptions: (schema.MulOptions, ("FusedActivationFunction",)),
        kinds.FullyConnectedOptions: (schema.FullyConnectedOptions, ("FusedActivationFunction", "KeepNumDims")),
    }
    if kind not in readers:
        return {}
    cls, fields = readers[kind]
    options = cls()
    options.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for f in fields:
        value = getattr(options, f)()
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in f).lstrip("_")
        if f == "FusedActivationFunction":
            value = _ACTIVATIONS.get(int(value), str(value))
        elif f == "Padding":
            value = _PADDING.get(int(value), str(value))
        elif isinstance(value, bool):
            pass
        else:
            value = int(value)
        out[snake] = value
    return out
