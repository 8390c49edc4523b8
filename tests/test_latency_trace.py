"""The tracing front end: jaxpr primitives to IR layers, BN/ReLU folding, sub-jaxprs, CPU fallback."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from latency import estimate
from latency.ir import ADD, AVG_POOL, CONCAT, DENSE, DEPTHWISE, MAX_POOL, MEAN, POINTWISE, UNSUPPORTED
from nets import fastconv
from nets.trace import TraceError, trace_function, trace_module

pytestmark = pytest.mark.jax


class _ConvBNReLU(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], 16))
        x = fastconv.conv2d(x, kernel)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.relu(x)


class _Small(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = _ConvBNReLU()(x, train)
        k = self.param("dw", nn.initializers.lecun_normal(), (3, 3, 1, 16))
        z = fastconv.depthwise_conv2d(y, k)
        z = nn.Conv(16, (1, 1), use_bias=False)(z)
        y = y + z
        a = nn.avg_pool(y, (3, 3), padding="SAME", count_include_pad=False)
        m = nn.max_pool(y, (3, 3), strides=(2, 2), padding="SAME")
        y = jnp.concatenate([a[:, ::2, ::2, :], m], axis=-1)
        return nn.Dense(10)(jnp.mean(y, axis=(1, 2)))


def test_trace_maps_primitives_to_layers_and_folds_bn_and_relu() -> None:
    graph = trace_module(_Small(), (16, 16, 3))
    kinds = [layer.kind for layer in graph.layers]
    assert kinds == ["conv", DEPTHWISE, POINTWISE, ADD, AVG_POOL, MAX_POOL, "slice", CONCAT, MEAN, DENSE]
    conv = graph.layers[0]
    assert conv.weights == 3 * 3 * 3 * 16 and conv.params == conv.weights + 2 * 16  # BN scale+bias folded in
    assert conv.out_shape == (16, 16, 16) and conv.macs == 16 * 16 * 16 * 27
    assert graph.layers[-1].params == 32 * 10 + 10  # dense bias folded
    variables = jax.eval_shape(lambda: _Small().init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3))))
    total = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
    assert graph.total_params() == total
    assert graph.layers[3].inputs == (0, 2)


def test_trace_walks_into_jit_and_custom_vjp() -> None:
    @jax.custom_vjp
    def scaled(x: jax.Array) -> jax.Array:
        return x * 2.0

    scaled.defvjp(lambda x: (scaled(x), None), lambda _, g: (g * 2.0,))

    @jax.jit
    def inner(w: jax.Array, x: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def fn(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return scaled(inner(params["w"], x)) + x

    graph = trace_function(fn, {"w": jnp.zeros((1, 1, 8, 8))}, (1, 8, 8, 8))
    assert [layer.kind for layer in graph.layers] == [POINTWISE, ADD]
    assert graph.layers[1].inputs == (0, -1)


def test_unknown_primitive_becomes_unsupported_and_falls_back_to_the_cpu() -> None:
    def fn(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(x, params["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = jnp.sin(y)
        return jnp.mean(y, axis=(1, 2)) @ params["fc"]

    graph = trace_function(fn, {"w": jnp.zeros((3, 3, 4, 8)), "fc": jnp.zeros((8, 2))}, (1, 8, 8, 4))
    assert [layer.kind for layer in graph.layers] == ["conv", UNSUPPORTED, MEAN, DENSE]
    assert graph.layers[1].op == "sin"
    report = estimate(graph)
    assert report.fallback_ops == ("sin", "mean", "dense")
    assert [c.where for c in report.layers] == ["tpu", "cpu", "cpu", "cpu"]


def test_trace_errors_are_clear() -> None:
    with pytest.raises(TraceError, match="no layer depends on the input"):
        trace_function(lambda p, x: p["w"] * 2, {"w": jnp.zeros((3,))}, (1, 4))
    with pytest.raises(TraceError, match="cannot trace"):
        trace_function(lambda p, x: x @ p["w"], {"w": jnp.zeros((3, 5))}, (1, 4))
