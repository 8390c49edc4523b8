"""The vocabulary the spaces' lowerings build layer IR with: conv + BN, pools, adds, concat, the head.

Each search space lowers its network to this IR without JAX (``latency.nasnet``, ``latency.nb201``,
...) and follows its Flax model layer for layer (a test per space compares the two). Batch norm folds
into the layer before it and ReLU fuses into its neighbours, as the Edge TPU compiler does, so neither
appears as a layer: a BN's scale and offset are counted in the parameters of the layer it normalizes.
"""

from __future__ import annotations

from domain.errors import AmoebaError
from latency.ir import (
    CONCAT,
    DENSE,
    MEAN,
    PAD,
    SLICE,
    GraphBuilder,
    IRError,
    Layer,
    conv_layer,
    conv_out,
)


class LoweringError(AmoebaError, ValueError):
    """A genome cannot be lowered with these arguments (bad N, F, input size or class count)."""


class Net:
    """A GraphBuilder with the cell spaces' vocabulary (conv+BN, pools, adds, concat, factorized reduction)."""

    def __init__(self, name: str, input_shape: tuple[int, ...]) -> None:
        self.b = GraphBuilder(name, input_shape)

    def shape(self, ref: int) -> tuple[int, ...]:
        return self.b.shape_of(ref)

    def conv(self, name: str, src: int, features: int, kernel: tuple[int, int] = (1, 1),
             stride: tuple[int, int] = (1, 1), *, bn: bool = True, padding: str = "SAME",
             dilation: tuple[int, int] = (1, 1)) -> int:
        cout = self.shape(src)[-1] if features == 0 else features
        return self.b.add(conv_layer(name, src, self.shape(src), features, kernel, stride, padding=padding,
                                     dilation=dilation, extra_params=2 * cout if bn else 0))

    def depthwise(self, name: str, src: int, kernel: int, stride: int, dilation: int = 1) -> int:
        return self.b.add(conv_layer(name, src, self.shape(src), 0, (kernel, kernel), (stride, stride),
                                     dilation=(dilation, dilation), depthwise=True))

    def bn(self, ref: int) -> None:
        self.b.bump_params(ref, 2 * self.shape(ref)[-1])

    def pool(self, name: str, src: int, kind: str, window: int, stride: int, padding: str = "SAME") -> int:
        h, w, c = self.shape(src)
        out = (conv_out(h, window, stride, 1, padding), conv_out(w, window, stride, 1, padding), c)
        return self.b.add(Layer(name, kind, (src,), (self.shape(src),), out, (window, window), (stride, stride)))

    def binary(self, name: str, kind: str, refs: tuple[int, ...], params: int = 0) -> int:
        shapes = tuple(self.shape(r) for r in refs)
        if kind == CONCAT:
            h, w = shapes[0][0], shapes[0][1]
            if any(s[:2] != (h, w) for s in shapes):
                raise IRError(f"{name}: concat of different spatial sizes {shapes}")
            out: tuple[int, ...] = (h, w, sum(s[-1] for s in shapes))
        else:
            if len(set(shapes)) != 1:
                raise IRError(f"{name}: elementwise op on different shapes {shapes}")
            out = shapes[0]
        return self.b.add(Layer(name, kind, refs, shapes, out, params=params))

    def data_move(self, name: str, kind: str, src: int, out: tuple[int, int, int]) -> int:
        return self.b.add(Layer(name, kind, (src,), (self.shape(src),), out))

    def factorized_reduction(self, name: str, src: int, features: int) -> int:
        """ReLU (fused); path 1: every second pixel, 1x1 conv to features/2; path 2: shift by one pixel
        (pad bottom/right, crop top/left), every second pixel, 1x1 conv to the rest; concat; BN."""
        h, w, c = self.shape(src)
        half = features // 2
        ho, wo = -(-h // 2), -(-w // 2)
        p1 = self.data_move(f"{name}/path1_stride", SLICE, src, (ho, wo, c))
        p1 = self.conv(f"{name}/path1_conv", p1, half, bn=False)
        padded = self.data_move(f"{name}/path2_pad", PAD, src, (h + 1, w + 1, c))
        shifted = self.data_move(f"{name}/path2_crop", SLICE, padded, (h, w, c))
        p2 = self.data_move(f"{name}/path2_stride", SLICE, shifted, (ho, wo, c))
        p2 = self.conv(f"{name}/path2_conv", p2, features - half, bn=False)
        return self.binary(f"{name}/concat", CONCAT, (p1, p2), params=2 * features)

    def head(self, src: int, num_classes: int) -> int:
        c = self.shape(src)[-1]
        pooled = self.b.add(Layer("head/global_pool", MEAN, (src,), (self.shape(src),), (c,)))
        return self.b.add(Layer("head/dense", DENSE, (pooled,), ((c,),), (num_classes,), weights=c * num_classes,
                                params=c * num_classes + num_classes, macs=c * num_classes))


def check_args(cells: int, filters: int, input_size: int, num_classes: int) -> None:
    if cells < 1:
        raise LoweringError(f"cells (N) must be at least 1, got {cells}")
    if filters < 1:
        raise LoweringError(f"filters (F) must be at least 1, got {filters}")
    if input_size < 8:
        raise LoweringError(f"input size must be at least 8, got {input_size}")
    if num_classes < 1:
        raise LoweringError(f"num_classes must be at least 1, got {num_classes}")


