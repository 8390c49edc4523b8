"""The CPU fast-path convolutions agree with lax.conv_general_dilated: forward, input and weight gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from nets import fastconv

pytestmark = pytest.mark.jax

RTOL = 1e-4
NEG: fastconv.Padding = ((-1, 2), (1, -1))
ODD: fastconv.Padding = ((2, 1), (0, 3))

# (kernel, strides, padding, dilation): every kernel shape of the models, each stride, both
# dilations, SAME/VALID/explicit (also negative) padding; a curated grid rather than the full product
# keeps compile time within the test budget.
CONV_CASES = [
    ((1, 1), (1, 1), "SAME", (1, 1)), ((1, 1), (2, 2), "SAME", (1, 1)), ((1, 1), (1, 2), ODD, (1, 1)),
    ((3, 3), (1, 1), "SAME", (1, 1)), ((3, 3), (2, 2), "SAME", (1, 1)), ((3, 3), (1, 1), "SAME", (2, 2)),
    ((3, 3), (1, 2), "VALID", (1, 1)), ((3, 3), (2, 2), NEG, (2, 2)),
    ((5, 5), (1, 1), "SAME", (1, 1)), ((5, 5), (2, 2), ODD, (1, 1)),
    ((7, 7), (1, 1), "SAME", (1, 1)), ((7, 7), (2, 2), "SAME", (1, 1)),
    ((1, 7), (1, 2), "SAME", (1, 1)), ((1, 7), (1, 1), "VALID", (1, 1)), ((1, 7), (1, 1), "SAME", (2, 2)),
    ((7, 1), (2, 1), "SAME", (1, 1)), ((7, 1), (1, 1), ODD, (1, 1)),
]
DEPTHWISE_CASES = [
    ((3, 3), (1, 1), "SAME", (1, 1)), ((3, 3), (2, 2), "SAME", (1, 1)), ((3, 3), (1, 1), "SAME", (2, 2)),
    ((3, 3), (2, 2), NEG, (2, 2)), ((3, 3), (1, 2), "VALID", (1, 1)),
    ((5, 5), (1, 1), "SAME", (1, 1)), ((5, 5), (2, 2), ODD, (1, 1)),
    ((7, 7), (2, 2), "SAME", (1, 1)), ((7, 7), (1, 1), "VALID", (1, 1)),
    ((1, 7), (1, 1), "SAME", (1, 1)), ((7, 1), (2, 1), "SAME", (1, 1)), ((1, 1), (1, 1), "SAME", (1, 1)),
]


def _reference(x, k, strides, padding, dilation, depthwise):
    return lax.conv_general_dilated(
        x, k, window_strides=strides, padding=padding, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1] if depthwise else 1,
    )


def _compare(cases, depthwise, seed):
    rng = np.random.default_rng(seed)
    cin = 4
    cout = cin if depthwise else 6
    x = jnp.asarray(rng.standard_normal((2, 10, 11, cin)), jnp.float32)
    kernels, cotangents = [], []
    for (kh, kw), strides, padding, dilation in cases:
        k = jnp.asarray(rng.standard_normal((kh, kw, 1 if depthwise else cin, cout)), jnp.float32)
        shape = jax.eval_shape(
            lambda x, k, s=strides, p=padding, d=dilation: _reference(x, k, s, p, d, depthwise), x, k).shape
        assert 0 not in shape, "a case with an empty output tests nothing"
        kernels.append(k)
        cotangents.append(jnp.asarray(rng.standard_normal(shape), jnp.float32))
    fast_fn = fastconv.depthwise_conv2d if depthwise else fastconv.conv2d

    # One jitted function for the whole grid keeps the test's compile time low.
    @jax.jit
    def both(x, kernels, cotangents):
        results = []
        for (_, strides, padding, dilation), k, ct in zip(cases, kernels, cotangents, strict=True):
            def ref(x, k, s=strides, p=padding, d=dilation):
                return _reference(x, k, s, p, d, depthwise)

            def fast(x, k, s=strides, p=padding, d=dilation):
                return fast_fn(x, k, s, p, d, impl="fast")

            y_ref, vjp_ref = jax.vjp(ref, x, k)
            y_fast, vjp_fast = jax.vjp(fast, x, k)
            results.append(((y_ref, *vjp_ref(ct)), (y_fast, *vjp_fast(ct))))
        return results

    for case, (ref, fast) in zip(cases, both(x, kernels, cotangents), strict=True):
        for name, a, b in zip(("forward", "input gradient", "weight gradient"), ref, fast, strict=True):
            assert a.shape == b.shape, (case, name)
            scale = float(jnp.max(jnp.abs(a))) + 1e-6
            err = float(jnp.max(jnp.abs(a - b)))
            assert err <= RTOL * scale, f"{name} differs for {case}: {err} vs magnitude {scale}"


def test_conv2d_matches_xla():
    _compare(CONV_CASES, depthwise=False, seed=1)


def test_depthwise_conv2d_matches_xla():
    _compare(DEPTHWISE_CASES, depthwise=True, seed=2)


def test_the_fast_path_really_differs_from_xla_in_its_program():
    # Guards the dispatch: if "fast" silently fell back to XLA the agreement tests would prove nothing.
    x = jnp.ones((1, 8, 8, 3))
    k = jnp.ones((3, 3, 1, 3))
    fast = jax.jit(lambda x, k: fastconv.depthwise_conv2d(x, k, impl="fast")).lower(x, k).as_text()
    xla = jax.jit(lambda x, k: fastconv.depthwise_conv2d(x, k, impl="xla")).lower(x, k).as_text()
    assert "convolution" in xla and "convolution" not in fast
    wgrad = jax.jit(jax.grad(lambda k: jnp.sum(fastconv.conv2d(x, jnp.ones((3, 3, 3, 2)) * k, impl="fast"))))
    assert "dot_general" in wgrad.lower(jnp.ones((3, 3, 3, 2))).as_text()


def test_vmap_over_kernels_matches_per_kernel_calls():
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 3)), jnp.float32)
    ks = jnp.asarray(rng.standard_normal((4, 3, 3, 3, 5)), jnp.float32)

    def loss(k):
        return jnp.sum(jnp.sin(fastconv.conv2d(x, k, (2, 2), impl="fast")))

    batched = jax.vmap(jax.grad(loss))(ks)
    single = jnp.stack([jax.grad(loss)(k) for k in ks])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)


def test_env_var_selects_the_implementation(monkeypatch):
    monkeypatch.setenv("AMOEBA_CONV_IMPL", "xla")
    assert fastconv.resolve_impl() == "xla"
    assert fastconv.resolve_impl("fast") == "fast"
    monkeypatch.setenv("AMOEBA_CONV_IMPL", "auto")
    assert fastconv.resolve_impl() == ("fast" if jax.default_backend() == "cpu" else "xla")
    monkeypatch.setenv("AMOEBA_CONV_IMPL", "cudnn")
    with pytest.raises(ValueError, match="AMOEBA_CONV_IMPL"):
        fastconv.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)))


def test_bad_shapes_are_one_clear_error():
    with pytest.raises(ValueError, match="input channels"):
        fastconv.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 3, 1)), impl="fast")
    with pytest.raises(ValueError, match="depthwise kernel"):
        fastconv.depthwise_conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), impl="fast")
