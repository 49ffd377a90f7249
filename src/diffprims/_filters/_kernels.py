"""Target kernels for separable filter banks: disk (bokeh), Gaussian, box, regular polygon."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validate import (
    check_bool,
    check_not_traced,
    check_positive_int,
    check_scalar,
    is_traced,
    runtime_check,
)

# Sub-pixel samples per axis for anti-aliased edges: 16 x 16 gives 257 coverage levels.
_SUPERSAMPLE = 16
# The most sub-pixel tests (samples x polygon sides) held at once: a kernel is covered a
# block of rows at a time, so a 501 x 501 anti-aliased hexagon (386M tests) stays small.
_BLOCK = 2**21


# The most pixels a kernel maker builds: 8192 x 8192 (256 MB in float32). Past it the
# kernel (and the sub-pixel samples of `disk`/`polygon`) ran out of memory deep in XLA
# (`box(10**6)` asked for 4 TB); no separable bank of such a kernel is practical.
MAX_PIXELS = 2**26


def _check_size(size: Any) -> tuple[int, int]:
    if isinstance(size, tuple | list):
        if len(size) != 2:
            raise ValueError(f"`size` must be an int or a pair (Kh, Kw); got {size!r}.")
        shape = check_positive_int(size[0], "size[0]"), check_positive_int(size[1], "size[1]")
    else:
        side = check_positive_int(size, "size")
        shape = side, side
    if shape[0] * shape[1] > MAX_PIXELS:
        raise ValueError(
            f"`size` must give a kernel of at most {MAX_PIXELS} pixels (8192 x 8192, 256 "
            f"MB in float32); got {size!r}, a {shape[0]} x {shape[1]} kernel of "
            f"{shape[0] * shape[1]:.3g} pixels ({4 * shape[0] * shape[1] / 1e9:.3g} GB). "
            "Give a smaller size (a kernel's size in pixels, not in image units)."
        )
    return shape


def _flag(value: Any, name: str) -> bool:
    """`value` as a Python bool: a string such as "no" counted as true, and a traced
    bool cannot choose the program (the sampling, the division)."""
    check_not_traced(value, name, "bool", "how the kernel is made")
    return check_bool(value, name)


def _check_length(value: Any, name: str, default: float) -> Any:
    """`value` (pixels) as a finite number > 0: a Python number or a scalar array.

    Numbers and concrete arrays are checked now; a traced array (under `jit`) is checked
    when the compiled function runs (`eqx.error_if`).
    """
    if value is None:
        return default
    return check_scalar(value, name, lower=0.0, hint=" It is a length in pixels.")


def _offsets(
    shape: tuple[int, int], samples: int, first: Any = 0, rows: int | None = None
) -> tuple[Array, Array]:
    """`(y, x)` of `samples**2` sub-pixel points per pixel, relative to the kernel centre.

    Shape `(rows, Kw, S)` (`rows` defaults to `Kh`) for the rows from `first` on, in
    pixels; with `samples == 1` these are the pixel centres.
    """
    height, width = shape
    rows = height if rows is None else rows
    sub = (jnp.arange(samples, dtype=jnp.float32) + 0.5) / samples
    row = (first + jnp.arange(rows)).astype(jnp.float32)
    ys = (row[:, None] + sub[None, :]).reshape(-1) - height / 2
    xs = (jnp.arange(width, dtype=jnp.float32)[:, None] + sub[None, :]).reshape(-1) - width / 2
    grid_y, grid_x = jnp.meshgrid(ys, xs, indexing="ij")

    def per_pixel(grid: Array) -> Array:
        grid = grid.reshape(rows, samples, width, samples)
        return grid.transpose(0, 2, 1, 3).reshape(rows, width, samples * samples)

    return per_pixel(grid_y), per_pixel(grid_x)


def _coverage(
    shape: tuple[int, int], samples: int, inside: Any, depth: int, block: int
) -> Float[Array, "Kh Kw"]:
    """The fraction of each pixel's `samples**2` sub-pixel points where `inside(y, x)`
    holds (`y`, `x` as from `_offsets`; `depth` tests per point), a block of rows at a
    time (one after another, `lax.map`) so that at most about `block` tests are held
    (or one row's, if more)."""
    height, width = shape
    rows = min(height, max(1, block // (width * samples * samples * depth)))

    def cover(first: Any) -> Array:
        y, x = _offsets(shape, samples, first, rows)
        return jnp.mean(inside(y, x).astype(jnp.float32), axis=-1)

    if rows == height:
        return cover(0)
    count = -(-height // rows)  # the last block runs past the kernel; cut off below
    blocks = jax.lax.map(cover, jnp.arange(count) * rows)
    return blocks.reshape(count * rows, width)[:height]


# Each kernel is compiled as a whole (eagerly, its small ops cost ~10x more to dispatch).
@functools.partial(jax.jit, static_argnames=("shape", "samples", "block"))
def _disk(shape: tuple[int, int], samples: int, radius: Any, block: int = _BLOCK) -> Array:
    return _coverage(shape, samples, lambda y, x: y * y + x * x <= radius * radius, 1, block)


@functools.partial(jax.jit, static_argnames=("shape", "samples", "sides", "block"))
def _polygon(
    shape: tuple[int, int],
    samples: int,
    sides: int,
    radius: Any,
    rotation: Any,
    block: int = _BLOCK,
) -> Array:
    apothem = radius * math.cos(math.pi / sides)
    # Edge normals sit half-way between vertices; a vertex points up (-y) at rotation 0.
    angles = jnp.pi / 2 + rotation + (2 * jnp.arange(sides) + 1) * jnp.pi / sides
    cos, sin = jnp.cos(angles), jnp.sin(angles)

    def inside(y: Array, x: Array) -> Array:
        return jnp.max(x[..., None] * cos - y[..., None] * sin, axis=-1) <= apothem

    return _coverage(shape, samples, inside, sides, block)


@functools.partial(jax.jit, static_argnames=("shape", "normalize"))
def _gaussian(shape: tuple[int, int], sigma: Any, normalize: bool) -> Array:
    y, x = _offsets(shape, 1)
    squared = y[..., 0] ** 2 + x[..., 0] ** 2
    # Normalised, the exponent is taken relative to the pixels nearest the centre, so they
    # are exp(0) = 1 before the division: a tiny sigma gives the centred delta (its limit)
    # instead of 0 / 0. `where` keeps 0 / 0 out of the exponent when sigma² underflows.
    nearest = jnp.min(squared) if normalize else 0.0
    offset = squared - nearest
    return jnp.exp(-offset / jnp.where(offset == 0, 1.0, 2 * sigma * sigma))


def _finish(kernel: Array, normalize: bool, hint: str = "") -> Float[Array, "Kh Kw"]:
    """`kernel`, divided by its sum with `normalize`; an all-zero kernel has no such scale."""
    if not normalize:
        return kernel
    total = jnp.sum(kernel)
    message = f"cannot normalize an all-zero kernel (it sums to 0): {hint}"
    if is_traced(total):
        kernel = runtime_check(kernel, ~(total > 0), message)
    elif not float(np.asarray(total)) > 0:
        raise ValueError(message)
    return kernel / total


def _empty_hint(shape: tuple[int, int], radius: Any, antialias: bool) -> str:
    """Why a disk or polygon of `radius` can be all zero, and what to do."""
    shown = "" if is_traced(radius) else f" {float(np.asarray(radius)):.4g}"
    if antialias:
        return (
            f"`radius`{shown} covers none of the {_SUPERSAMPLE} x {_SUPERSAMPLE} sub-pixel "
            "samples of any pixel. Pass a larger `radius`."
        )
    nearest = math.hypot(*(0.5 * (1 - side % 2) for side in shape))
    return (
        f"`radius`{shown} reaches no pixel centre of the {shape} grid (the nearest is "
        f"{nearest:.3g} px from the centre). Pass a larger `radius`, or `antialias=True`."
    )


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
    (measured on 16 x 16 sub-pixel samples), so pixels fully outside are exactly 0. The
    samples are tested a block of rows at a time: a large kernel needs little memory.

    **Arguments:**

    - `size`: `K` for a `(K, K)` kernel, or `(Kh, Kw)`.
    - `radius`: in pixels, a finite number > 0 (or a scalar array); default half the
      smaller side (the disk touches the edges).
    - `antialias`: partial coverage at the edge instead of a hard 0/1 edge.
    - `normalize`: divide by the sum so the kernel sums to 1 (a blur that keeps
      brightness). The default peak of 1 is the scale the fitting defaults are tuned for.
      A disk too small to cover any pixel centre (or, antialiased, any sub-pixel
      sample) is all zero and has no such scale: a `ValueError`.

    Bad values raise `ValueError`/`TypeError` at once, for numbers and concrete arrays
    alike; under `jax.jit` a traced `radius` (and the all-zero case) can only be checked
    when the compiled function runs, so the error comes from `eqx.error_if` then.

    The kernel is a step function of `radius` (each sample is in or out), so
    `jax.grad` with respect to it is 0, antialiased or not: to learn a bokeh's size,
    fit a model whose edge is soft (a `dp.Circles` of one shape, rendered on the
    kernel's grid) or search over `radius`.

    **Returns:**

    A `(Kh, Kw)` float32 kernel.

    ```python
    target = dp.kernels.disk(50)                   # the seed's 50 x 50 bokeh disk
    soft = dp.kernels.disk(31, antialias=True, normalize=True)
    ```
    """
    shape = _check_size(size)
    antialias, normalize = _flag(antialias, "antialias"), _flag(normalize, "normalize")
    radius = _check_length(radius, "radius", min(shape) / 2)
    kernel = _disk(shape, _SUPERSAMPLE if antialias else 1, radius)
    return _finish(kernel, normalize, _empty_hint(shape, radius, antialias))


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
    - `radius`: the circumradius (centre to vertex) in pixels, a finite number > 0;
      default half the smaller side.
    - `rotation`: counter-clockwise rotation in radians, a finite number.
    - `antialias`: partial coverage at the edge instead of a hard 0/1 edge.
    - `normalize`: divide by the sum so the kernel sums to 1; an all-zero polygon (too
      small to cover a pixel centre) raises a `ValueError`.

    `radius` and `rotation` may be scalar arrays, checked as in
    [`diffprims.kernels.disk`][] (at once when concrete, at run time when traced); as
    there, the kernel is a step function of them (a gradient of 0).

    **Returns:**

    A `(Kh, Kw)` float32 kernel.

    ```python
    hexagon = dp.kernels.polygon(41, 6, antialias=True)
    ```
    """
    shape = _check_size(size)
    antialias, normalize = _flag(antialias, "antialias"), _flag(normalize, "normalize")
    sides = check_positive_int(sides, "sides", minimum=3)
    radius = _check_length(radius, "radius", min(shape) / 2)
    rotation = check_scalar(rotation, "rotation", hint=" It is an angle in radians.")
    kernel = _polygon(shape, _SUPERSAMPLE if antialias else 1, sides, radius, rotation)
    return _finish(kernel, normalize, _empty_hint(shape, radius, antialias))


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
    - `sigma`: standard deviation in pixels, a finite number > 0; default a sixth of the
      smaller side. A scalar array is checked as in [`diffprims.kernels.disk`][].
    - `normalize`: divide by the sum so the kernel sums to 1. Otherwise the peak is
      `exp(-d0² / (2 sigma²))`, `d0` the distance from the grid centre to the nearest
      pixel centre: 1 when both sides are odd (a pixel sits at the centre), but for an
      even side `d0` is at least 0.5 px and a small kernel peaks well below 1 (with the
      default sigma, square: 0.105 at size 2, 0.57 at 4, 0.78 at 6, 0.97 at 16), and a
      sigma much under 0.5 px leaves it (nearly) all zero. Normalised, it is exact for
      any sigma: as sigma shrinks it tends to the centred delta (the centre pixel, or
      the 2 or 4 pixels nearest the centre, equal), which a tiny sigma gives.

    **Returns:**

    A `(Kh, Kw)` float32 kernel.

    ```python
    blur = dp.kernels.gaussian(15, sigma=2.5, normalize=True)
    ```
    """
    shape = _check_size(size)
    normalize = _flag(normalize, "normalize")
    sigma = _check_length(sigma, "sigma", min(shape) / 6)
    # Never all zero: normalised, the pixels nearest the centre are exp(0) = 1.
    return _finish(_gaussian(shape, sigma, normalize), normalize)


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
    shape, normalize = _check_size(size), _flag(normalize, "normalize")
    return _finish(jnp.ones(shape, jnp.float32), normalize)
