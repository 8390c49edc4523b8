"""Augmentation and input normalization as pure, jit-able JAX functions (random crop with padding, flips)."""

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
