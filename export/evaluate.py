"""Accuracy of a TFLite classifier on a labelled split, run by the LiteRT interpreter (``ai_edge_litert``).

The model takes one NHWC image of float pixel values 0..255 (the float model) or their int8/uint8
quantization (``round(pixel / scale) + zero_point`` with the input tensor's own scale and zero point, as a
device feeds it); the predicted class is the arg-max of the output, dequantized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from export.errors import ExportError, ExportUnavailable
from export.native import quiet_native_output


def _interpreter(model: bytes, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ExportUnavailable("ai-edge-litert (LiteRT)") from None
    try:
        with quiet_native_output():
            interpreter = Interpreter(model_content=model, num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"LiteRT cannot load the model: {exc}") from None
    return interpreter


@dataclass(frozen=True, slots=True)
class InputQuantization:
    """How pixel values become the model's input: ``q = round(x / scale) + zero_point`` (scale 0: float input)."""

    dtype: str
    scale: float
    zero_point: int

    def quantize(self, images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)
        if self.scale == 0.0:
            return x
        info = np.iinfo(np.dtype(self.dtype))
        return np.clip(np.round(x / self.scale) + self.zero_point, info.min, info.max).astype(self.dtype)

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


def input_quantization(model: bytes) -> InputQuantization:
    detail = _interpreter(model, 1).get_input_details()[0]
    scale, zero = detail.get("quantization", (0.0, 0))
    return InputQuantization(np.dtype(detail["dtype"]).name, float(scale), int(zero))


def predict(model: bytes, images: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """The predicted class of each uint8 NHWC image, one image per invocation (batch 1, as on the device)."""
    interpreter = _interpreter(model, threads)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    if len(shape) != 4 or images.ndim != 4 or tuple(images.shape[1:]) != shape[1:]:
        raise ExportError(f"the model takes images of {list(shape[1:])}, got {list(images.shape[1:])}")
    scale, zero = inp.get("quantization", (0.0, 0))
    quant = InputQuantization(np.dtype(inp["dtype"]).name, float(scale), int(zero))
    x = quant.quantize(images)
    predictions = np.empty(len(images), np.int64)
    for i in range(len(images)):
        interpreter.set_tensor(inp["index"], x[i:i + 1])
        interpreter.invoke()
        predictions[i] = int(np.argmax(interpreter.get_tensor(out["index"]).reshape(-1)))
    return predictions


def accuracy(model: bytes, images: np.ndarray, labels: np.ndarray, *, threads: int = 1) -> float:
    """Top-1 accuracy of the TFLite ``model`` on ``images`` (uint8 NHWC) and integer ``labels``."""
    if len(images) == 0 or len(images) != len(labels):
        raise ExportError(f"{len(images)} images for {len(labels)} labels")
    predictions = predict(model, np.asarray(images), threads=threads)
    return float(np.mean(predictions == np.asarray(labels).astype(np.int64)))
