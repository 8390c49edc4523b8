"""Int8 TFLite export for the Edge TPU, and reading TFLite files back into the latency IR.

Modules, one role each:

- ``export.tflite``: a genome's trained Flax network -> a fully integer-quantized TFLite model (jax2tf, then
  the TFLite converter's post-training quantization with a representative dataset); also the float model.
- ``export.flatbuf``: a ``.tflite`` flatbuffer -> a plain description (tensors, operators, options), read
  with the TFLite schema that LiteRT ships (no interpreter, no TensorFlow).
- ``export.edgetpu``: the Edge TPU check of such a model (tensor types, ranks, supported ops) and the
  mapped/unmapped split.
- ``export.reader``: the model as ``latency.ir.Graph`` for the simulator (``amoeba latency --tflite``).
- ``export.evaluate``: test-split accuracy of a TFLite model in the LiteRT interpreter.
- ``export.data``: the representative images and the test split, from the training data readers.
- ``export.run``: ``export_individual``, what ``amoeba export`` runs, and its report.

The heavy dependencies (TensorFlow for the conversion, ``ai-edge-litert`` for reading and running) are the
``export`` extra; nothing in the server or the worker imports this package.
"""

from export.errors import EXTRA_HINT, ExportError, ExportUnavailable, NotTflite

__all__ = ["EXTRA_HINT", "ExportError", "ExportUnavailable", "NotTflite"]
