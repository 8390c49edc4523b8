"""A genome's trained Flax network -> a fully integer-quantized TFLite model (and the float one to compare).

Route: ``jax.experimental.jax2tf`` wraps the inference function (batch 1, NHWC, float pixel values 0..255
in, logits out) as a TensorFlow function - jax2tf embeds the function's StableHLO, the only
serialization JAX 0.10 keeps - and TensorFlow's TFLite converter legalizes it to TFLite builtin
operators and quantizes it after training from a representative dataset: ``optimizations=[DEFAULT]``,
``target_spec.supported_ops=[TFLITE_BUILTINS_INT8]`` (conversion fails rather than leave a float
operator), int8 input and output. It is the maintained JAX-to-TFLite path (``TFLiteConverter`` with
jax2tf is what the TensorFlow and JAX documentation give; the converter's post-training quantizer is
what the Edge TPU compiler's inputs are made with), and it needs no training-time change.

What the function contains, and why:

- the input normalization ``(x / 255 - mean) / std`` as one per-channel multiply-add, so the model reads
  raw pixels: the int8 input is ``round(pixel / scale) + zero_point`` with the scale and zero point of
  the model's input tensor (calibrated on 0..255 images: about 1 and -128);
- the network in inference mode (``train=False``: batch norm uses its running statistics), traced with
  XLA's convolution (``nets.layers.conv_impl("xla")``, not the CPU fast path's matmuls) in its Edge TPU
  form (``nets.layers.edgetpu_form``: no strided slices, an average pool for the global mean);
- repeated cells unrolled (a ``nn.scan`` would become a WHILE loop): the scanned variables are split per
  cell (``unstack_scanned``) and the model is built with ``scan=False``.

Batch norm folding: the converter folds every inference batch norm into the convolution before it (scale
into the int8 weights, shift into the int32 bias; checked by counting operators in
``tests/test_export_tflite.py``: no MUL/ADD/SUB is left but the cells' additions); the one batch norm that
follows a concatenation (the factorized reduction's) is applied per path in the Edge TPU form so that it
folds too.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from export.errors import ExportError, ExportUnavailable
from export.native import quiet_native_output
from genome.base import Genome
from worker.training.augment import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD

#: Per-channel statistics (0..1 scale) the training loop normalizes with, by dataset.
NORMALIZATION = {"cifar10": (CIFAR_MEAN, CIFAR_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}

_SCANNED = re.compile(r"^(?P<prefix>.+)_cells(?P<start>\d+)to(?P<end>\d+)$")


def _tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_native_output():
            import tensorflow as tf
    except ImportError:
        raise ExportUnavailable("TensorFlow") from None
    return tf


def unstack_scanned(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The variables of a model built with ``scan=True`` in the layout of ``scan=False``: each
    ``{prefix}_cells{a}to{b}`` subtree (leaves stacked on a leading axis of b - a + 1) becomes
    ``{prefix}_cell{a}`` .. ``{prefix}_cell{b}``. Other keys are kept."""

    def split(tree: Any) -> Any:
        if not isinstance(tree, Mapping):
            return tree
        out: dict[str, Any] = {}
        for key, sub in tree.items():
            match = _SCANNED.match(str(key))
            if match is None:
                out[key] = split(sub)
                continue
            start, end = int(match["start"]), int(match["end"])
            for i, cell in enumerate(range(start, end + 1)):
                out[f"{match['prefix']}_cell{cell}"] = _index(sub, i)
        return out

    return {collection: split(tree) for collection, tree in variables.items()}


def _index(tree: Any, i: int) -> Any:
    if isinstance(tree, Mapping):
        return {k: _index(v, i) for k, v in tree.items()}
    return np.asarray(tree)[i]


def _as_numpy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _as_numpy(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float32)


def inference_function(genome: Genome, network: Mapping[str, Any], variables: Mapping[str, Any], *, num_classes: int,
                       dataset: str, edgetpu: bool = True) -> Any:
    """``f(x) -> logits`` for float pixel values x (N, H, W, 3) in 0..255: normalization, then the network
    in inference mode and Edge TPU form (the training form with ``edgetpu=False``), its variables closed
    over as constants."""
    import jax.numpy as jnp

    from nets.build import build_model
    from nets.layers import conv_impl, edgetpu_form

    if dataset not in NORMALIZATION:
        raise ExportError(f"unknown dataset {dataset!r}; expected one of {', '.join(NORMALIZATION)}")
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATION[dataset])
    gain = jnp.asarray(1.0 / (255.0 * std))
    offset = jnp.asarray(-mean / std)
    model = build_model(genome, network, num_classes=num_classes, dataset=dataset, scan=False)
    params = _as_numpy(unstack_scanned(variables))

    def infer(x: Any) -> Any:
        with conv_impl("xla"), edgetpu_form() if edgetpu else contextlib.nullcontext():
            return model.apply(params, x * gain + offset, train=False)

    return infer


def convert(genome: Genome, network: Mapping[str, Any], variables: Mapping[str, Any], *, num_classes: int,
            dataset: str, input_size: tuple[int, int], representative_images: Sequence[np.ndarray] | np.ndarray | None,
            edgetpu: bool = True) -> bytes:
    """The TFLite flatbuffer of the network: fully int8-quantized when ``representative_images`` (uint8
    NHWC) are given, float32 otherwise; ``edgetpu=False`` converts the training form (for comparison)."""
    tf = _tensorflow()
    from jax.experimental import jax2tf

    fn = inference_function(genome, network, variables, num_classes=num_classes, dataset=dataset, edgetpu=edgetpu)
    h, w = input_size
    spec = tf.TensorSpec((1, h, w, 3), tf.float32, name="image")
    tf_fn = tf.function(jax2tf.convert(fn, with_gradient=False, native_serialization_platforms=("cpu",)),
                        autograph=False, input_signature=[spec])
    with quiet_native_output():
        try:
            concrete = tf_fn.get_concrete_function()
            converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf_fn)
            if representative_images is not None:
                images = np.asarray(representative_images)
                if images.ndim != 4 or images.shape[1:] != (h, w, 3) or len(images) == 0:
                    raise ExportError(f"representative images must be [n, {h}, {w}, 3], got {list(images.shape)}")

                def samples() -> Iterator[list[np.ndarray]]:
                    for image in images:
                        yield [image[None].astype(np.float32)]

                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = samples
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            data: bytes = converter.convert()
        except ExportError:
            raise
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"TFLite conversion failed: {detail[:400]}") from exc
    return data


def export_int8(genome: Genome, network: Mapping[str, Any], variables: Mapping[str, Any],
                representative_images: np.ndarray, num_classes: int, dataset: str = "cifar10", *,
                edgetpu: bool = True) -> bytes:
    """The fully integer-quantized (int8 weights, activations, input and output) TFLite model of
    ``genome``'s network with trained ``variables`` (``params`` and ``batch_stats``, as saved by training),
    calibrated on ``representative_images`` (uint8 NHWC from the training split, at the training image size).
    ``edgetpu=False`` converts the training form of the network instead of its Edge TPU form."""
    images = np.asarray(representative_images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ExportError(f"representative images must be uint8 [n, h, w, 3], got {images.dtype} {list(images.shape)}")
    return convert(genome, network, variables, num_classes=num_classes, dataset=dataset,
                   input_size=(int(images.shape[1]), int(images.shape[2])), representative_images=images,
                   edgetpu=edgetpu)


def export_float(genome: Genome, network: Mapping[str, Any], variables: Mapping[str, Any], input_size: tuple[int, int],
                 num_classes: int, dataset: str = "cifar10") -> bytes:
    """The same network as a float32 TFLite model (the reference the int8 accuracy is compared with)."""
    return convert(genome, network, variables, num_classes=num_classes, dataset=dataset, input_size=input_size,
                   representative_images=None)
