"""Target kernels for separable filter banks: disk (bokeh), Gaussian, box, regular polygon."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._validate import check_positive_int, describe

# Sub-pixel samples per axis for anti-aliased edges: 16 x 16 gives 257 coverage levels.
_SUPERSAMPLE = 16


def _check_size(size: Any) -> tuple[int, int]:
    if isinstance(size, tuple | list):
        if len(size) != 2:
            raise ValueError(f"`size` must be an int or a pair (Kh, Kw); got {size!r}.")
        return check_positive_int(size[0], "size[0]"), check_positive_int(size[1], "size[1]")
    size = check_positive_int(size, "size")
    return size, size


def _check_length(value: Any, name: str, default: float) -> Any:
    if value is None:
        return default
    if isinstance(value, bool) or not (
        isinstance(value, int | float) or (hasattr(value, "shape") and value.shape == ())
    ):
        raise TypeError(f"`{name}` must be a positive number of pixels; got {describe(value)}.")
    if isinstance(value, int | float) and not value > 0:
        raise ValueError(f"`{name}` must be a positive number of pixels; got {value}.")
    return value


def _offsets(shape: tuple[int, int], samples: int) -> tuple[Array, Array]:
    """`(y, x)` of `samples**2` sub-pixel points per pixel, relative to the kernel centre.

    Shape `(Kh, Kw, S)`, in pixels; with `samples == 1` these are the pixel centres.
    """
    height, width = shape
    sub = (jnp.arange(samples, dtype=jnp.float32) + 0.5) / samples
    ys = (jnp.arange(height, dtype=jnp.float32)[:, None] + sub[None, :]).reshape(-1) - height / 2
    xs = (jnp.arange(width, dtype=jnp.float32)[:, None] + sub[None, :]).reshape(-1) - width / 2
    grid_y, grid_x = jnp.meshgrid(ys, xs, indexing="ij")

    def per_pixel(grid: Array) -> Array:
        grid = grid.reshape(height, samples, width, samples)
        return grid.transpose(0, 2, 1, 3).reshape(height, width, samples * samples)

    return per_pixel(grid_y), per_pixel(grid_x)


# Each kernel is compiled as a whole (eagerly, its small ops cost ~10x more to dispatch).
@functools.partial(jax.jit, static_argnames=("shape", "samples"))
def _disk(shape: tuple[int, int], samples: int, radius: Any) -> Array:
    y, x = _offsets(shape, samples)
    return jnp.mean((y * y + x * x <= radius * radius).astype(jnp.float32), axis=-1)


@functools.partial(jax.jit, static_argnames=("shape", "samples", "sides"))
def _polygon(
    shape: tuple[int, int], samples: int, sides: int, radius: Any, rotation: Any
) -> Array:
    y, x = _offsets(shape, samples)
    apothem = radius * math.cos(math.pi / sides)
    # Edge normals sit half-way between vertices; a vertex points up (-y) at rotation 0.
    angles = jnp.pi / 2 + rotation + (2 * jnp.arange(sides) + 1) * jnp.pi / sides
    distance = x[..., None] * jnp.cos(angles) - y[..., None] * jnp.sin(angles)
    return jnp.mean((jnp.max(distance, axis=-1) <= apothem).astype(jnp.float32), axis=-1)


@functools.partial(jax.jit, static_argnames="shape")
def _gaussian(shape: tuple[int, int], sigma: Any) -> Array:
    y, x = _offsets(shape, 1)
    return jnp.exp(-(y[..., 0] ** 2 + x[..., 0] ** 2) / (2 * sigma * sigma))


def _finish(kernel: Array, normalize: bool) -> Float[Array, "Kh Kw"]:
    return kernel / jnp.sum(kernel) if normalize else kernel


def disk(
    size: int | tuple[int, int],
    *,
    radius: float | None = None,
    antialias: bool = False,
    normalize: bool = False,
) -> Float[Array, "Kh Kw"]:
    """A disk (circular bokeh) kernel: 1 inside the circle, 0 outside.

    The circle is centred in the grid; pixel `(i, j)` has centre `(i + 0.5, j + 0.5)`.
    With a hard edge a pixel is 1 when its centre lies within `radius` of the kernel
    centre; with `antialias=True` it holds the fraction of the pixel inside the circle
    (measured on 16 x 16 sub-pixel samples), so pixels fully outside are exactly 0.

    **Arguments:**

    - `size`: `K` for a `(K, K)` kernel, or `(Kh, Kw)`.
    - `radius`: in pixels; default half the smaller side (the disk touches the edges).
    - `antialias`: partial coverage at the edge instead of a hard 0/1 edge.
    - `normalize`: divide by the sum so the kernel sums to 1 (a blur that keeps
      brightness). The default peak of 1 is the scale the fitting defaults are tuned for.

    **Returns:**

    A `(Kh, Kw)` float32 kernel.

    ```python
    target = dp.kernels.disk(50)                   # the seed's 50 x 50 bokeh disk
    soft = dp.kernels.disk(31, antialias=True, normalize=True)
    ```
    """
    shape = _check_size(size)
    radius = _check_length(radius, "radius", min(shape) / 2)
    kernel = _disk(shape, _SUPERSAMPLE if antialias else 1, radius)
    return _finish(kernel, normalize)


def polygon(
    size: int | tuple[int, int],
    sides: int = 6,
    *,
    radius: float | None = None,
    rotation: float = 0.0,
    antialias: bool = False,
    normalize: bool = False,
) -> Float[Array, "Kh Kw"]:
    """A regular polygon kernel (hexagonal bokeh by default): 1 inside, 0 outside.

    The polygon is centred in the grid; with `rotation=0` one vertex points straight
    up. Hard and anti-aliased edges as in [`diffprims.kernels.disk`][].

    **Arguments:**

    - `size`: `K` for a `(K, K)` kernel, or `(Kh, Kw)`.
    - `sides`: the number of sides, at least 3.
    - `radius`: the circumradius (centre to vertex) in pixels; default half the smaller
      side.
    - `rotation`: counter-clockwise rotation in radians.
    - `antialias`: partial coverage at the edge instead of a hard 0/1 edge.
    - `normalize`: divide by the sum so the kernel sums to 1.

    **Returns:**

    A `(Kh, Kw)` float32 kernel.

    ```python
    hexagon = dp.kernels.polygon(41, 6, antialias=True)
    ```
    """
    shape = _check_size(size)
    sides = check_positive_int(sides, "sides", minimum=3)
    radius = _check_length(radius, "radius", min(shape) / 2)
    kernel = _polygon(shape, _SUPERSAMPLE if antialias else 1, sides, radius, rotation)
    return _finish(kernel, normalize)


def gaussian(
    size: int | tuple[int, int],
    *,
    sigma: float | None = None,
    normalize: bool = False,
) -> Float[Array, "Kh Kw"]:
    """A Gaussian kernel `exp(-d² / (2 sigma²))`, `d` the distance from the grid centre.

    A Gaussian is exactly separable (rank 1), a useful check for a fitted bank.

    **Arguments:**

    - `size`: `K` for a `(K, K)` kernel, or `(Kh, Kw)`.
    - `sigma`: standard deviation in pixels; default a sixth of the smaller side.
    - `normalize`: divide by the sum so the kernel sums to 1 (otherwise the peak is
      1 for odd sizes, a little less for even sizes).

    **Returns:**

    A `(Kh, Kw)` float32 kernel.

    ```python
    blur = dp.kernels.gaussian(15, sigma=2.5, normalize=True)
    ```
    """
    shape = _check_size(size)
    sigma = _check_length(sigma, "sigma", min(shape) / 6)
    return _finish(_gaussian(shape, sigma), normalize)


def box(size: int | tuple[int, int], *, normalize: bool = False) -> Float[Array, "Kh Kw"]:
    """A box kernel: all ones (rank 1).

    **Arguments:**

    - `size`: `K` for a `(K, K)` kernel, or `(Kh, Kw)`.
    - `normalize`: divide by the sum so the kernel sums to 1 (a mean filter).

    **Returns:**

    A `(Kh, Kw)` float32 kernel.

    ```python
    mean_filter = dp.kernels.box(5, normalize=True)
    ```
    """
    return _finish(jnp.ones(_check_size(size), jnp.float32), normalize)
