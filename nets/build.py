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

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genome.base import Genome
from genome.nasnet import CELL_KINDS, NASNetGenome, validate_cell
from genome.nb201 import NB201Genome
from nets.layers import BN_MOMENTUM, Conv, DepthwiseConv, conv_impl
from nets.nasnet import NASNet
from nets.nb201 import NB201_BN_MOMENTUM, NB201Net

DATASETS = ("cifar10", "imagenet")
#: Default input resolution per dataset (the published ImageNet AmoebaNet-A figures use 331).
IMAGE_SIZES = {"cifar10": 32, "imagenet": 224}
NUM_CLASSES = {"cifar10": 10, "imagenet": 1000}


class ModelConfigError(ValueError):
    """The model cannot be built with these settings; the message says why."""


def build_model(
    genome: Genome,
    *,
    cells: int,
    filters: int,
    num_classes: int,
    dataset: str = "cifar10",
    dropout: float = 0.0,
    dtype: Any = jnp.float32,
    bn_momentum: float | None = None,
    scan: bool = True,
) -> nn.Module:
    """The Flax network of ``genome``: ``model.apply(variables, x, train=...)`` returns float32 logits.

    ``x`` is NHWC. Variables: ``params`` (always float32) and ``batch_stats``; call with
    ``mutable=["batch_stats"]`` when ``train=True``, and pass a ``dropout`` rng when ``dropout > 0``.
    ``dtype`` is the compute dtype (``jnp.bfloat16`` on GPU/TPU). NASNet genomes: N = ``cells`` cells
    per stack and F = ``filters``. NB201 genomes: ``cells`` per stage (5 in the benchmark) and
    ``filters`` channels in stage 1 (16); ``dataset`` only changes the NASNet stem.
    ``bn_momentum`` defaults to the reference's 0.9997 (NASNet) or 0.9 (NB201); runs of a few hundred
    steps need a smaller value (e.g. 0.9) or the running statistics stay near their initial values.
    """
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise ModelConfigError(f"cells must be a positive integer, got {cells!r}")
    if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
        raise ModelConfigError(f"filters must be a positive integer, got {filters!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if dataset not in DATASETS:
        raise ModelConfigError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if not 0.0 <= dropout < 1.0:
        raise ModelConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    if bn_momentum is not None and not 0.0 <= bn_momentum < 1.0:
        raise ModelConfigError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}")
    if isinstance(genome, NASNetGenome):
        for kind in CELL_KINDS:
            validate_cell(genome.cell(kind), kind)
        if dataset == "imagenet" and filters < 4:
            raise ModelConfigError(f"the ImageNet stem needs filters >= 4 (its cells use F/4), got {filters}")
        return NASNet(genome, cells, filters, num_classes, dataset=dataset, dropout=dropout, dtype=dtype,
                      bn_momentum=BN_MOMENTUM if bn_momentum is None else bn_momentum, scan=scan)
    if isinstance(genome, NB201Genome):
        if dropout:
            raise ModelConfigError("the NB201 network has no dropout")
        return NB201Net(genome, num_classes, cells=cells, filters=filters, dtype=dtype,
                        bn_momentum=NB201_BN_MOMENTUM if bn_momentum is None else bn_momentum)
    raise ModelConfigError(f"no network for genomes of type {type(genome).__name__}")


def input_shape(dataset: str, image_size: int | None = None, batch: int = 1) -> tuple[int, int, int, int]:
    """NHWC input shape for ``dataset`` (default resolution ``IMAGE_SIZES[dataset]``)."""
    if dataset not in DATASETS:
        raise ModelConfigError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    size = IMAGE_SIZES[dataset] if image_size is None else image_size
    if size < 8:
        raise ModelConfigError(f"image size must be at least 8 pixels, got {size}")
    return (batch, size, size, 3)


def count_params(variables: Any) -> int:
    """Number of trainable parameters (the ``params`` collection; works on arrays or ShapeDtypeStructs)."""
    params = variables.get("params", variables) if hasattr(variables, "get") else variables
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
    cells: int,
    filters: int,
    dataset: str = "cifar10",
    *,
    image_size: int | None = None,
    num_classes: int | None = None,
) -> ModelStats:
    """Parameters, multiply-adds and weight layers of the network for one image (see the module docstring)."""
    classes = NUM_CLASSES[dataset] if num_classes is None and dataset in NUM_CLASSES else num_classes
    model = build_model(genome, cells=cells, filters=filters, num_classes=classes or 10, dataset=dataset, scan=False)
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


def count_mult_adds(genome: Genome, cells: int, filters: int, dataset: str = "cifar10", *,
                    image_size: int | None = None) -> int:
    """Multiply-adds for one image, counted from the traced model (see the module docstring)."""
    return model_stats(genome, cells, filters, dataset, image_size=image_size).mult_adds


def layer_count(genome: Genome, cells: int, filters: int, dataset: str = "cifar10") -> int:
    """Weight layers (conv, depthwise, dense) applied in one forward pass."""
    return model_stats(genome, cells, filters, dataset).layers


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
