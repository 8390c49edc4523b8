"""Convolution primitives used by every Flax layer in Amoeba (NHWC inputs, HWIO kernels), with a CPU fast path.

All convolutions in the models go through `conv2d` and `depthwise_conv2d`. On the CPU backend XLA's
convolution gradients (and its grouped/depthwise convolution even forward) are an order of magnitude
slower than the same arithmetic written as matrix multiplies or elementwise multiply-adds, so there
these functions dispatch to a `jax.custom_vjp` implementation:

- regular convolutions: XLA's forward convolution and its input gradient (a convolution with the
  flipped kernel) are kept; the weight gradient is kh*kw GEMMs, one per kernel tap, of the tap's
  shifted window of the padded input against the output gradient. A 1x1 kernel is a plain matmul.
- depthwise convolutions: forward and input gradient are kh*kw shifted elementwise multiply-adds
  (no reduction over channels, so XLA fuses each into one loop); the weight gradient is one
  multiply-and-reduce per tap.

Weight gradients loop over the taps (`lax.map`) instead of unrolling them, which keeps compile time
flat in the kernel size: a train step compiles in about the same time with either implementation.

Only the input and the kernel are saved for the backward pass, so memory matches XLA's own
convolution. Strides, dilation (`rhs_dilation`), "SAME"/"VALID" and explicit
(even negative) padding are supported; results agree with `lax.conv_general_dilated` to float32
rounding (tests/test_fastconv_agreement.py).

Dispatch: `impl="auto"` (the default, or the AMOEBA_CONV_IMPL environment variable: xla|fast|auto)
uses the fast path when `jax.default_backend() == "cpu"` and XLA's convolution on GPU/TPU, whose
convolution kernels are fast. The choice is made at trace time; everything is jit-able and vmap-able.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

Padding = str | Sequence[tuple[int, int]]
Impl = Literal["auto", "xla", "fast"]

_IMPLS = ("auto", "xla", "fast")
_DIMS = ("NHWC", "HWIO", "NHWC")
Pads = tuple[tuple[int, int], tuple[int, int]]


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int] = (1, 1),
    padding: Padding = "SAME",
    dilation: tuple[int, int] = (1, 1),
    *,
    impl: Impl | None = None,
) -> jax.Array:
    """A regular (or pointwise) convolution: x [N,H,W,Cin], kernel [kh,kw,Cin,Cout] -> [N,Ho,Wo,Cout].

    `impl` overrides AMOEBA_CONV_IMPL for this call ("auto": fast path on CPU, XLA elsewhere).
    """
    strides, dilation = _pair(strides), _pair(dilation)
    if not _use_fast(impl):
        return lax.conv_general_dilated(
            x, kernel, window_strides=strides, padding=padding, rhs_dilation=dilation, dimension_numbers=_DIMS,
        )
    _check_shapes(x, kernel, depthwise=False)
    pads = _explicit_pads(x.shape, kernel.shape, strides, padding, dilation)
    kh, kw = kernel.shape[0], kernel.shape[1]
    if kh == 1 and kw == 1:
        # A 1x1 convolution is a matmul of a (strided, padded) view; plain autodiff of pad/slice/dot
        # is already optimal, so no custom rule is needed.
        xs = _window(lax.pad(x, jnp.zeros((), x.dtype), _pad_config(pads)), 0, 0, strides, dilation,
                     _out_hw(x.shape, kernel.shape, strides, pads, dilation))
        return lax.dot_general(xs, kernel[0, 0], (((3,), (0,)), ((), ())))
    return _conv_fn(strides, pads, dilation)(x, kernel)


def depthwise_conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int] = (1, 1),
    padding: Padding = "SAME",
    dilation: tuple[int, int] = (1, 1),
    *,
    impl: Impl | None = None,
) -> jax.Array:
    """A depthwise convolution (multiplier 1): x [N,H,W,C], kernel [kh,kw,1,C] -> [N,Ho,Wo,C].

    `impl` overrides AMOEBA_CONV_IMPL for this call ("auto": fast path on CPU, XLA elsewhere).
    """
    strides, dilation = _pair(strides), _pair(dilation)
    if not _use_fast(impl):
        return lax.conv_general_dilated(
            x, kernel, window_strides=strides, padding=padding, rhs_dilation=dilation, dimension_numbers=_DIMS,
            feature_group_count=x.shape[-1],
        )
    _check_shapes(x, kernel, depthwise=True)
    pads = _explicit_pads(x.shape, kernel.shape, strides, padding, dilation)
    return _depthwise_fn(strides, pads, dilation)(x, kernel)


def resolve_impl(impl: Impl | None = None) -> Literal["xla", "fast"]:
    """The implementation a call with this `impl` argument uses on the current default backend."""
    return "fast" if _use_fast(impl) else "xla"


# -- dispatch and geometry -------------------------------------------------------------------------


def _use_fast(impl: str | None) -> bool:
    choice = impl if impl is not None else os.environ.get("AMOEBA_CONV_IMPL", "auto").strip().lower() or "auto"
    if choice not in _IMPLS:
        raise ValueError(f"convolution impl must be one of {', '.join(_IMPLS)}, got {choice!r} "
                         "(argument impl= or AMOEBA_CONV_IMPL)")
    if choice == "auto":
        return jax.default_backend() == "cpu"
    return choice == "fast"


def _pair(v: Sequence[int] | int) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def _check_shapes(x: jax.Array, kernel: jax.Array, *, depthwise: bool) -> None:
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"expected x [N,H,W,C] and kernel [kh,kw,I,O], got {x.shape} and {kernel.shape}")
    if depthwise:
        if kernel.shape[2] != 1 or kernel.shape[3] != x.shape[3]:
            raise ValueError(f"depthwise kernel must be [kh,kw,1,{x.shape[3]}], got {kernel.shape}")
    elif kernel.shape[2] != x.shape[3]:
        raise ValueError(f"kernel input channels {kernel.shape[2]} != input channels {x.shape[3]}")


def _explicit_pads(
    x_shape: Sequence[int], k_shape: Sequence[int], strides: tuple[int, int], padding: Padding,
    dilation: tuple[int, int],
) -> Pads:
    if isinstance(padding, str):
        dk = [(k - 1) * d + 1 for k, d in zip(k_shape[:2], dilation, strict=True)]
        p = lax.padtype_to_pads(tuple(x_shape[1:3]), dk, strides, padding)
        return ((int(p[0][0]), int(p[0][1])), (int(p[1][0]), int(p[1][1])))
    pairs = [tuple(p) for p in padding]
    if len(pairs) != 2 or any(len(p) != 2 for p in pairs):
        raise ValueError(f"padding must be 'SAME', 'VALID' or two (low, high) pairs, got {padding!r}")
    return ((int(pairs[0][0]), int(pairs[0][1])), (int(pairs[1][0]), int(pairs[1][1])))


def _out_hw(
    x_shape: Sequence[int], k_shape: Sequence[int], strides: tuple[int, int], pads: Pads, dilation: tuple[int, int],
) -> tuple[int, int]:
    out = []
    for axis in range(2):
        padded = x_shape[1 + axis] + pads[axis][0] + pads[axis][1]
        dk = (k_shape[axis] - 1) * dilation[axis] + 1
        n = (padded - dk) // strides[axis] + 1
        if n <= 0:
            raise ValueError(f"convolution output would be empty: input {tuple(x_shape)}, kernel "
                             f"{tuple(k_shape)}, padding {pads}, dilation {dilation}")
        out.append(n)
    return (out[0], out[1])


def _pad_config(pads: Pads) -> list[tuple[int, int, int]]:
    return [(0, 0, 0), (pads[0][0], pads[0][1], 0), (pads[1][0], pads[1][1], 0), (0, 0, 0)]


def _window(
    xp: jax.Array, i: int, j: int, strides: tuple[int, int], dilation: tuple[int, int], out_hw: tuple[int, int],
) -> jax.Array:
    """The input pixels that kernel tap (i, j) meets, one per output pixel: [N,Ho,Wo,C]."""
    h0, w0 = i * dilation[0], j * dilation[1]
    return lax.slice(
        xp, (0, h0, w0, 0),
        (xp.shape[0], h0 + (out_hw[0] - 1) * strides[0] + 1, w0 + (out_hw[1] - 1) * strides[1] + 1, xp.shape[3]),
        (1, strides[0], strides[1], 1),
    )


def _tap_window(
    xp: jax.Array, tap: jax.Array, kw: int, strides: tuple[int, int], dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> jax.Array:
    """`_window` for a traced tap index (row-major over the kernel), for loops over the taps."""
    extent = ((out_hw[0] - 1) * strides[0] + 1, (out_hw[1] - 1) * strides[1] + 1)
    start = (jnp.zeros((), jnp.int32), (tap // kw) * dilation[0], (tap % kw) * dilation[1], jnp.zeros((), jnp.int32))
    block = lax.dynamic_slice(xp, start, (xp.shape[0], extent[0], extent[1], xp.shape[3]))
    if strides == (1, 1):
        return block
    return lax.slice(block, (0, 0, 0, 0), block.shape, (1, strides[0], strides[1], 1))


def _unwindow(
    g: jax.Array, i: int, j: int, strides: tuple[int, int], dilation: tuple[int, int], padded_hw: tuple[int, int],
) -> jax.Array:
    """The transpose of `_window`: place g [N,Ho,Wo,C] back on the padded input grid (zeros elsewhere)."""
    cfg = [(0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)]
    for axis, tap in ((0, i), (1, j)):
        lo = tap * dilation[axis]
        extent = (g.shape[1 + axis] - 1) * strides[axis] + 1
        cfg[1 + axis] = (lo, padded_hw[axis] - lo - extent, strides[axis] - 1)
    return lax.pad(g, jnp.zeros((), g.dtype), cfg)


def _unpad(dxp: jax.Array, pads: Pads) -> jax.Array:
    """The transpose of padding the input (lax.pad with negated widths also undoes negative padding)."""
    return lax.pad(dxp, jnp.zeros((), dxp.dtype),
                   [(0, 0, 0), (-pads[0][0], -pads[0][1], 0), (-pads[1][0], -pads[1][1], 0), (0, 0, 0)])


# -- regular convolution ---------------------------------------------------------------------------


@functools.cache
def _conv_fn(strides: tuple[int, int], pads: Pads, dilation: tuple[int, int]):  # type: ignore[no-untyped-def]
    def xla_conv(x: jax.Array, k: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(
            x, k, window_strides=strides, padding=pads, rhs_dilation=dilation, dimension_numbers=_DIMS,
        )

    # XLA's CPU forward convolution and its input gradient (a convolution with the flipped kernel)
    # are reasonably fast; only the weight gradient is pathological, so only it is replaced.
    @jax.custom_vjp
    def conv(x: jax.Array, k: jax.Array) -> jax.Array:
        return xla_conv(x, k)

    def conv_fwd(x: jax.Array, k: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return xla_conv(x, k), (x, k)

    def conv_bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, k = res
        (dx,) = jax.vjp(lambda x_: xla_conv(x_, k), x)[1](g)
        kh, kw, cin, cout = k.shape
        xp = lax.pad(x, jnp.zeros((), x.dtype), _pad_config(pads))
        out_hw = (g.shape[1], g.shape[2])
        rows = g.shape[0] * out_hw[0] * out_hw[1]
        g2 = g.reshape(rows, cout)
        # One [Cin, M] x [M, Cout] GEMM per tap over its shifted window. Not im2col: the kh*kw-times
        # larger patch tensor costs more in fresh memory than one wide GEMM saves.
        # Looped rather than unrolled to keep compile time flat in the kernel size.
        dk = lax.map(
            lambda t: lax.dot_general(_tap_window(xp, t, kw, strides, dilation, out_hw).reshape(rows, cin), g2,
                                      (((0,), (0,)), ((), ()))),
            jnp.arange(kh * kw)).reshape(kh, kw, cin, cout)
        return dx.astype(x.dtype), dk.astype(k.dtype)

    conv.defvjp(conv_fwd, conv_bwd)
    return conv


# -- depthwise convolution -------------------------------------------------------------------------


@functools.cache
def _depthwise_fn(strides: tuple[int, int], pads: Pads, dilation: tuple[int, int]):  # type: ignore[no-untyped-def]
    def geometry(x: jax.Array, k: jax.Array) -> tuple[jax.Array, tuple[int, int], list[tuple[int, int]]]:
        xp = lax.pad(x, jnp.zeros((), x.dtype), _pad_config(pads))
        out_hw = _out_hw(x.shape, k.shape, strides, pads, dilation)
        taps = [(i, j) for i in range(k.shape[0]) for j in range(k.shape[1])]
        return xp, out_hw, taps

    def forward(x: jax.Array, k: jax.Array) -> jax.Array:
        xp, out_hw, taps = geometry(x, k)
        out = None
        for i, j in taps:
            term = _window(xp, i, j, strides, dilation, out_hw) * k[i, j, 0]
            out = term if out is None else out + term
        assert out is not None
        return out

    @jax.custom_vjp
    def dwconv(x: jax.Array, k: jax.Array) -> jax.Array:
        return forward(x, k)

    def dwconv_fwd(x: jax.Array, k: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return forward(x, k), (x, k)

    def dwconv_bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, k = res
        xp, out_hw, taps = geometry(x, k)
        kh, kw, _, c = k.shape
        # A loop over the taps, not kh*kw unrolled reductions: each reduction is its own XLA kernel,
        # and unrolled they dominated compile time (7 s of a 7x7 layer's 8 s); the runtime is the same.
        dk = lax.map(lambda t: jnp.sum(_tap_window(xp, t, kw, strides, dilation, out_hw) * g, axis=(0, 1, 2)),
                     jnp.arange(kh * kw)).reshape(kh, kw, 1, c)
        padded_hw = (xp.shape[1], xp.shape[2])
        dxp = None
        for i, j in taps:
            term = _unwindow(g * k[i, j, 0], i, j, strides, dilation, padded_hw)
            dxp = term if dxp is None else dxp + term
        assert dxp is not None
        return _unpad(dxp, pads).astype(x.dtype), dk.astype(k.dtype)

    dwconv.defvjp(dwconv_fwd, dwconv_bwd)
    return dwconv
