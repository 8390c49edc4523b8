"""The public model entry point: build_model(genome, ...) plus parameter, multiply-add and layer counts.

Counting method (``model_stats``): the unrolled model (``scan=False``) is traced abstractly with
``jax.eval_shape`` - nothing is allocated or computed - while ``flax.linen.intercept_methods`` records
every Conv, DepthwiseConv and Dense call with its real input/output shapes. Multiply-adds per image are
then exact for those layers: conv ``Ho*Wo*Cout*kh*kw*Cin``, depthwise ``Ho*Wo*C*kh*kw``, dense
``in*out``; batch norm, pooling, additions and activations are not counted (the papers' convention).
``layers`` is the number of those weight layers applied in one forward pass (a separable conv counts
as two: depthwise and pointwise).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import spaces
from domain.errors import AmoebaError
from genome.base import Genome
from nets.layers import Conv, DepthwiseConv, conv_impl

DATASETS = ("cifar10", "imagenet")
#: Default input resolution per dataset (the published ImageNet AmoebaNet-A figures use 331).
IMAGE_SIZES = {"cifar10": 32, "imagenet": 224}
NUM_CLASSES = {"cifar10": 10, "imagenet": 1000}
#: Top-level parameter subtrees that only training uses (the NASNet auxiliary head): not counted as the
#: network's parameters (the papers' convention) and never read in inference mode.
TRAINING_ONLY = frozenset({"aux_head"})
#: The training-only regularizers a space's builder may take as keywords, each with its "off" value:
#: it is passed only when set, so builders without it keep working (and refuse it when it is set).
REGULARIZERS = {"drop_path_keep_prob": 1.0, "aux_head": False}


class ModelConfigError(AmoebaError, ValueError):
    """The model cannot be built with these settings; the message says why."""


def positive_int(network: Mapping[str, Any], key: str) -> int:
    """``network[key]`` as a positive integer, else ModelConfigError (for the spaces' builders)."""
    value = network.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def build_model(
    genome: Genome,
    network: Mapping[str, Any] | None = None,
    *,
    num_classes: int,
    dataset: str = "cifar10",
    dropout: float = 0.0,
    dtype: Any = jnp.float32,
    bn_momentum: float | None = None,
    scan: bool = True,
    drop_path_keep_prob: float = 1.0,
    aux_head: bool = False,
    **sizes: Any,
) -> nn.Module:
    """The Flax network of ``genome``: ``model.apply(variables, x, train=...)`` returns float32 logits.

    The genome's space builds it (``spaces.Space.model``) from ``network`` (its standard network's keys,
    such as ``cells`` and ``filters``; keyword ``sizes`` add to it). ``x`` is NHWC. Variables:
    ``params`` (always float32) and ``batch_stats``; call with ``mutable=["batch_stats"]`` when
    ``train=True``, and pass a ``dropout`` rng when ``dropout > 0``. ``dtype`` is the compute dtype
    (``jnp.bfloat16`` on GPU/TPU). ``bn_momentum`` None keeps each model's reference value; runs of a
    few hundred steps need a smaller value (e.g. 0.9) or the running statistics stay near their start.
    ``drop_path_keep_prob`` < 1 (scheduled drop-path; apply with a ``progress`` scalar and a ``dropout``
    rng) and ``aux_head`` (an auxiliary classifier sown as ``intermediates["aux_logits"]`` in training
    mode) are training-only regularizers of the NASNet space (``nets.nasnet``); a space whose builder
    does not take them refuses them with ModelConfigError. Off, the network is unchanged.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if dataset not in DATASETS:
        raise ModelConfigError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if not 0.0 <= dropout < 1.0:
        raise ModelConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    if bn_momentum is not None and not 0.0 <= bn_momentum < 1.0:
        raise ModelConfigError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}")
    if not 0.0 < drop_path_keep_prob <= 1.0:
        raise ModelConfigError(f"drop_path_keep_prob must be in (0, 1], got {drop_path_keep_prob!r}")
    space = spaces.get(genome.space)
    merged = {**space.network, **(network or {}), **sizes}
    builder = space.load_model()
    chosen = {"drop_path_keep_prob": drop_path_keep_prob, "aux_head": bool(aux_head)}
    extras = {key: value for key, value in chosen.items() if value != REGULARIZERS[key]}
    unsupported = [key for key in extras if not _takes(builder, key)]
    if unsupported:
        raise ModelConfigError(f"the {space.name} network has no {' or '.join(unsupported)} (a NASNet-space option)")
    model: nn.Module = builder(genome, merged, num_classes=num_classes, dataset=dataset, dropout=dropout, dtype=dtype,
                               bn_momentum=bn_momentum, scan=scan, **extras)
    return model


def _takes(function: Any, keyword: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return keyword in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def input_shape(dataset: str, image_size: int | None = None, batch: int = 1) -> tuple[int, int, int, int]:
    """NHWC input shape for ``dataset`` (default resolution ``IMAGE_SIZES[dataset]``)."""
    if dataset not in DATASETS:
        raise ModelConfigError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    size = IMAGE_SIZES[dataset] if image_size is None else image_size
    if size < 8:
        raise ModelConfigError(f"image size must be at least 8 pixels, got {size}")
    return (batch, size, size, 3)


def count_params(variables: Any) -> int:
    """Number of trainable parameters (the ``params`` collection, or a params tree; works on arrays or
    ShapeDtypeStructs), training-only heads (``TRAINING_ONLY``) excluded."""
    params = variables.get("params", variables) if hasattr(variables, "get") else variables
    if isinstance(params, Mapping):
        params = {key: value for key, value in params.items() if key not in TRAINING_ONLY}
    total = 0
    for leaf in jax.tree_util.tree_leaves(params):
        size = 1
        for d in leaf.shape:
            size *= int(d)
        total += size
    return total


@dataclass(frozen=True, slots=True)
class ModelStats:
    """Size of a network for one image: trainable parameters, multiply-adds and weight layers."""

    params: int
    mult_adds: int
    layers: int

    def to_json(self) -> dict[str, int]:
        return {"params": self.params, "mult_adds": self.mult_adds, "layers": self.layers}


def model_stats(
    genome: Genome,
    network: Mapping[str, Any] | None = None,
    dataset: str = "cifar10",
    *,
    image_size: int | None = None,
    num_classes: int | None = None,
    **sizes: Any,
) -> ModelStats:
    """Parameters, multiply-adds and weight layers of the network for one image (see the module docstring).

    ``network`` (and keyword ``sizes`` such as ``cells=6, filters=36``) update the space's standard network.
    """
    classes = NUM_CLASSES[dataset] if num_classes is None and dataset in NUM_CLASSES else num_classes
    model = build_model(genome, network, num_classes=classes or 10, dataset=dataset, scan=False, **sizes)
    shape = input_shape(dataset, image_size)
    macs: list[int] = []

    def record(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__":
            return out
        if isinstance(module, Conv):
            kh, kw = module.kernel_size
            macs.append(_size(out.shape[1:]) * kh * kw * int(args[0].shape[-1]))
        elif isinstance(module, DepthwiseConv):
            kh, kw = module.kernel_size
            macs.append(_size(out.shape[1:]) * kh * kw)
        elif isinstance(module, nn.Dense):
            macs.append(int(args[0].shape[-1]) * module.features)
        return out

    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    with nn.intercept_methods(record), conv_impl("xla"):
        variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return ModelStats(params=count_params(variables), mult_adds=sum(macs), layers=len(macs))


def init_variables(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> dict[str, Any]:
    """Initial ``params`` and ``batch_stats`` of ``model`` for inputs of ``shape``, without compiling.

    ``model.init`` under ``jit`` compiles the whole forward pass plus one random-number kernel per
    parameter (tens of seconds on CPU for a NASNet); here the structure comes from an abstract trace and
    the values from NumPy, drawn from the layers' own initializers' distributions: conv kernels He
    normal (fan-out, truncated at 2 std), depthwise kernels He normal (fan-in), dense kernels LeCun
    normal, BN scale 1 / bias 0, running mean 0 / variance 1. Deterministic in ``seed``.
    """
    with conv_impl("xla"):  # only shapes are needed, and XLA's single conv op traces fastest
        abstract = jax.eval_shape(
            lambda x: model.init(jax.random.key(0), x, train=False), jax.ShapeDtypeStruct(shape, jnp.float32)
        )
    rng = np.random.default_rng(seed)

    def fill(path: tuple[Any, ...], leaf: Any) -> jax.Array:
        keys = [str(getattr(p, "key", p)) for p in path]
        name = keys[-1]
        if name in ("scale", "var"):
            return jnp.ones(leaf.shape, leaf.dtype)
        if name != "kernel":
            return jnp.zeros(leaf.shape, leaf.dtype)
        if len(keys) >= 2 and keys[-2] == "depthwise":
            kh, kw = leaf.shape[-4], leaf.shape[-3]
            std = np.sqrt(2.0 / (kh * kw))
        elif len(keys) >= 2 and keys[-2] == "classifier":
            std = np.sqrt(1.0 / leaf.shape[-2])
        else:
            kh, kw, _, cout = leaf.shape[-4:]
            std = np.sqrt(2.0 / (kh * kw * cout))
        return jnp.asarray(_truncated_normal(rng, leaf.shape) * std, leaf.dtype)

    return dict(jax.tree_util.tree_map_with_path(fill, abstract))


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal truncated to [-2, 2], rescaled to unit variance (as flax's truncated_normal)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2
    return z / 0.87962566103423978


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
