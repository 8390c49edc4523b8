"""Augmentation and input normalization as pure, jit-able JAX functions (random crop with padding, flips, cutout)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Per-channel statistics of the CIFAR-10 training images (0..1 scale).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
#: ImageNet statistics (0..1 scale), the usual ones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: jax.Array, mean: tuple[float, ...], std: tuple[float, ...], dtype: jnp.dtype) -> jax.Array:
    """uint8 NHWC -> standardized float in ``dtype`` (the conversion happens on the device, after transfer)."""
    x = images.astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x.astype(dtype)


def random_crop_flip(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
    """Zero-pad each image by ``padding``, crop a random window of the original size, flip half horizontally.

    Deterministic in ``key``; works on any dtype and batch size; shapes are unchanged.
    """
    n, h, w, _ = images.shape
    crop_key, flip_key = jax.random.split(key)
    if padding > 0:
        padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * padding + 1)

        def crop(img: jax.Array, off: jax.Array) -> jax.Array:
            return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

        images = jax.vmap(crop)(padded, offsets)
    flips = jax.random.bernoulli(flip_key, 0.5, (n,))
    return jnp.where(flips[:, None, None, None], images[:, :, ::-1, :], images)


def cutout(key: jax.Array, images: jax.Array, side: int) -> jax.Array:
    """Zero a ``side`` x ``side`` square at a random position in each image (DeVries & Taylor 2017).

    The square's centre is uniform over the image, so near a border the square is clipped (as in the
    paper's code): rows ``[cy - side // 2, cy - side // 2 + side)`` and the same for columns, all
    channels. ``side`` 0 returns ``images`` unchanged. Deterministic in ``key``; any dtype and batch size.
    """
    if side <= 0:
        return images
    n, h, w, _ = images.shape
    row_key, col_key = jax.random.split(key)
    top = jax.random.randint(row_key, (n, 1), 0, h) - side // 2
    left = jax.random.randint(col_key, (n, 1), 0, w) - side // 2
    rows, cols = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
    in_rows = (rows >= top) & (rows < top + side)
    in_cols = (cols >= left) & (cols < left + side)
    square = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    return jnp.where(square, jnp.zeros((), images.dtype), images)


def resize_area(images: np.ndarray, size: int) -> np.ndarray:
    """Downscale uint8 NHWC images by an integer factor with area averaging (host side, done once)."""
    h = images.shape[1]
    if size == h:
        return images
    if size > h or h % size:
        raise ValueError(f"can only downscale {h}x{h} images by an integer factor, not to {size}x{size}")
    f = h // size
    n, _, w, c = images.shape
    pooled = images.reshape(n, size, f, w // f, f, c).astype(np.float32).mean(axis=(2, 4))
    rounded: np.ndarray = np.round(pooled).astype(np.uint8)
    return rounded
