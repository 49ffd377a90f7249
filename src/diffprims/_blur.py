"""A Gaussian blur of an `(H, W, C)` image, renormalised at the borders."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._validate import is_traced

#: The kernel's radius in sigmas: the weight left out beyond it is 3e-7 of the whole,
#: so a step edge moves by at most that (at 4 sigmas, 3e-5).
TRUNCATE = 5.0

#: Images whose height + width is at most this take the two dense products: at 256 x 256
#: they cost 2 ms against the separable blur's 1.2, and compile once per image shape,
#: where the separable blur compiles once per kernel radius (~0.15 s each, three for
#: `paint`'s coarse-to-fine sigmas: +0.45 s on a first call for 1 ms a call).
DENSE_SIDES = 1024


def blur(image: Float[Array, "H W C"], sigma: float | Array) -> Float[Array, "H W C"]:
    """Gaussian blur of an `(H, W, C)` image with standard deviation `sigma` pixels.

    Separable, renormalised at the borders: each output is the weighted mean of the
    pixels inside the image, `sum_j w(i - j) x[j] / sum_j w(i - j)` along each axis.
    A concrete `sigma` (a Python number or a concrete array, also inside `jax.jit`)
    is a 1D convolution with the Gaussian cut at `TRUNCATE` sigmas or a little more,
    computed as small band matrices tile by tile, compiled once per image shape and
    kernel radius (`sigma` is an argument of the compiled program, not a constant); a
    traced `sigma` (under `jit`/`vmap`/`grad` of sigma) has no known radius and takes
    the whole image as the kernel's width (two dense matrix products), as do images of
    at most `DENSE_SIDES` height + width. A `sigma` near 0 returns the image unchanged.
    """
    image = jnp.asarray(image)
    height, width, _ = image.shape
    if is_traced(sigma) or height + width <= DENSE_SIDES:
        return _dense(image, sigma)
    value = max(float(sigma), 1e-3)
    if not math.isfinite(value):
        return _dense(image, sigma)
    # Rounded up to 2^k - 1 pixels: paint's coarse-to-fine sigmas (3, 2.57, ..., 0.43)
    # compile 3 programs, not 7 (~0.15 s each); the wider kernel costs little.
    radius = 2 ** math.ceil(TRUNCATE * value).bit_length() - 1
    radii = (min(radius, height - 1), min(radius, width - 1))
    return _separable(image, jnp.float32(value), radii)


@functools.partial(jax.jit, static_argnames="radii")
def _separable(image: Array, sigma: Array, radii: tuple[int, int]) -> Array:
    dtype = jnp.result_type(image.dtype, jnp.float32)
    rows = _along_first(image.astype(dtype), sigma, radii[0])
    return jnp.swapaxes(_along_first(jnp.swapaxes(rows, 0, 1), sigma, radii[1]), 0, 1)


def _along_first(x: Array, sigma: Array, radius: int) -> Array:
    """The renormalised blur along the first axis: each tile of outputs is a band matrix
    `(tile, tile + 2 radius)` times its window of the zero-padded input."""
    size = x.shape[0]
    tile = min(size, 32 * -(-(2 * radius + 1) // 32))  # as the filter banks' passes
    count = -(-size // tile)
    offset = jnp.arange(tile + 2 * radius)[None, :] - jnp.arange(tile)[:, None]
    weights = jnp.exp(-0.5 * ((offset - radius).astype(x.dtype) / sigma) ** 2)
    band = jnp.where((offset >= 0) & (offset <= 2 * radius), weights, 0.0)
    index = jnp.arange(count)[:, None] * tile + jnp.arange(tile + 2 * radius)[None, :]
    after = count * tile + radius - size
    padded = jnp.pad(x, [(radius, after)] + [(0, 0)] * (x.ndim - 1))
    out = jnp.einsum("tu,bu...->bt...", band, padded[index])
    inside = jnp.pad(jnp.ones(size, x.dtype), (radius, after))
    total = (inside[index] @ band.T).reshape(-1)[:size]
    out = out.reshape(count * tile, *x.shape[1:])[:size]
    return out / total.reshape((size,) + (1,) * (x.ndim - 1))


def _blur_matrix(size: int, sigma: Array) -> Array:
    """`(size, size)` Gaussian blur along one axis, rows renormalised at the borders."""
    offsets = jnp.arange(size, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / sigma) ** 2)
    return weights / jnp.sum(weights, 1, keepdims=True)


@jax.jit
def _dense(image: Any, sigma: Any) -> Array:
    sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)
    height, width, _ = image.shape
    rows, cols = _blur_matrix(height, sigma), _blur_matrix(width, sigma)
    return jnp.einsum("ij,jkc,lk->ilc", rows, image, cols)
