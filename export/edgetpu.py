"""The Edge TPU check of a TFLite model: which operators the compiler would map, and the split.

The facts, from the project's Edge TPU reference (which summarizes the coral.ai compiler documentation,
"TensorFlow models on the Edge TPU": supported operations; copied here so nothing reads the reference at
run time):

- only fully integer-quantized models: every tensor that flows between operators is int8 or uint8
  (weights int8/uint8; int32 is accepted for the constants that are not activations: biases, shapes,
  paddings, axes);
- supported operations: Conv2D, DepthwiseConv2D (same dilation in x and y), FullyConnected, Add, Sub,
  Mul, AveragePool2D, MaxPool2D, Concatenation (the three with no fused activation, as coral.ai's table
  says), Reshape, Pad, Mean, Logistic, ReLU, ReLU6, Tanh, Softmax, L2Normalization,
  ResizeBilinear/NearestNeighbor, Hard-swish (newer compilers);
- Quantize (a requantization, e.g. a uint8 model input to int8) is not in the reference's list, but the
  compiler maps it: coral.ai's supported-operations table lists Quantize, and published
  ``edgetpu_compiler -s`` reports show "QUANTIZE ... Mapped to Edge TPU" (Dequantize is not mapped);
- tensors of at most 3 dimensions, or only the 3 innermost larger than 1 (a 4-D NHWC activation with
  batch 1 is fine);
- anything else runs on the host CPU, and the graph is split there: everything after the first
  unsupported operator also runs on the CPU (older compilers split once). The simulator uses the same
  rule (``latency.estimate``), so the predicted split and the estimate agree.

A newer compiler may map more (its own report, ``edgetpu_compiler -s``, is the authority); this check is
the conservative reading of the reference.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from export.flatbuf import OpInfo, TensorInfo, TfliteModel

#: The operators the Edge TPU compiler maps (TFLite builtin names).
SUPPORTED_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "CONCATENATION", "RESHAPE", "PAD", "MEAN", "LOGISTIC", "RELU", "RELU6", "TANH", "SOFTMAX",
    "L2_NORMALIZATION", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "HARD_SWISH", "QUANTIZE",
})
#: Operators that must not carry a fused activation.
NO_FUSED_ACTIVATION = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"})
QUANTIZED = frozenset({"int8", "uint8"})
#: Constant (non-activation) tensors may also be int32: biases, shapes, paddings, axes.
CONSTANT_TYPES = QUANTIZED | {"int32"}


@dataclass(frozen=True, slots=True)
class OpCheck:
    """One operator: ``supported`` on its own (``reason`` says why not), ``mapped`` once the split is applied."""

    index: int
    name: str
    supported: bool
    mapped: bool
    reason: str


@dataclass(frozen=True, slots=True)
class EdgeTpuReport:
    """The check of a model: per-operator results, the split and the model-wide facts."""

    ops: tuple[OpCheck, ...]
    all_quantized: bool
    non_quantized: tuple[str, ...]  # "tensor name: dtype" of activation tensors that are not int8/uint8
    rank_violations: tuple[str, ...]  # "tensor name: shape"
    subgraphs: int

    @property
    def ops_total(self) -> int:
        return len(self.ops)

    @property
    def ops_mapped(self) -> int:
        return sum(1 for op in self.ops if op.mapped)

    @property
    def unmapped(self) -> tuple[str, ...]:
        """The names of the operators that fall back to the CPU, in execution order."""
        return tuple(op.name for op in self.ops if not op.mapped)

    @property
    def first_unsupported(self) -> OpCheck | None:
        return next((op for op in self.ops if not op.supported), None)

    @property
    def fully_mapped(self) -> bool:
        return self.ops_mapped == self.ops_total

    def to_json(self) -> dict[str, object]:
        first = self.first_unsupported
        return {
            "ops_total": self.ops_total, "ops_mapped": self.ops_mapped, "unmapped": list(self.unmapped),
            "all_quantized": self.all_quantized, "non_quantized": list(self.non_quantized),
            "rank_violations": list(self.rank_violations), "subgraphs": self.subgraphs,
            "first_unsupported": None if first is None else {"index": first.index, "op": first.name,
                                                             "reason": first.reason},
        }


def rank_ok(shape: tuple[int, ...]) -> bool:
    """At most 3 dimensions, or only the 3 innermost larger than 1."""
    return len(shape) <= 3 or all(d == 1 for d in shape[:-3])


def _tensor_problem(t: TensorInfo) -> str:
    if t.const:
        if t.dtype not in CONSTANT_TYPES:
            return f"constant {t.name} is {t.dtype}"
        return ""
    if t.dtype not in QUANTIZED:
        return f"tensor {t.name} is {t.dtype}, not int8/uint8"
    if not rank_ok(t.shape):
        return f"tensor {t.name} has shape {list(t.shape)}: more than the 3 innermost dimensions are larger than 1"
    return ""


def _op_problem(model: TfliteModel, op: OpInfo) -> str:
    if op.name not in SUPPORTED_OPS:
        return f"{op.name} is not in the Edge TPU's supported operations"
    if op.name in NO_FUSED_ACTIVATION and op.options.get("fused_activation_function", "NONE") != "NONE":
        return f"{op.name} with a fused {op.options['fused_activation_function']} activation"
    if op.name == "DEPTHWISE_CONV_2D" and op.options.get("dilation_h_factor", 1) != op.options.get("dilation_w_factor", 1):
        return "DEPTHWISE_CONV_2D with different dilation in x and y"
    for i in (*op.inputs, *op.outputs):
        if i >= 0:
            problem = _tensor_problem(model.tensor(i))
            if problem:
                return problem
    return ""


def check(model: TfliteModel) -> EdgeTpuReport:
    """The Edge TPU check: every operator on its own, then the split at the first unsupported one."""
    checks: list[OpCheck] = []
    split = False
    for op in model.ops:
        problem = _op_problem(model, op)
        if problem and not split:
            split = True
        reason = problem or ("after the first unsupported operator (the graph is split once)" if split else "")
        checks.append(OpCheck(op.index, op.name, supported=not problem, mapped=not split, reason=reason))
    activations = [model.tensor(i) for op in model.ops for i in (*op.inputs, *op.outputs)
                   if i >= 0 and not model.tensor(i).const]
    activations += [model.tensor(i) for i in (*model.inputs, *model.outputs) if i >= 0]
    seen: dict[int, TensorInfo] = {t.index: t for t in activations}
    non_quantized = tuple(f"{t.name}: {t.dtype}" for t in seen.values() if t.dtype not in QUANTIZED)
    ranks = tuple(f"{t.name}: {list(t.shape)}" for t in seen.values() if not rank_ok(t.shape))
    return EdgeTpuReport(ops=tuple(checks), all_quantized=not non_quantized, non_quantized=non_quantized,
                         rank_violations=ranks, subgraphs=model.subgraphs)


def compile_command(path: str) -> str:
    """The command a user runs to compile the model for the Edge TPU (``-s``: print the operator summary)."""
    return f"edgetpu_compiler -s {shlex.quote(path)}"
