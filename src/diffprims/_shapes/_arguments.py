"""A shape set's argument checks: indices into its shapes, the pixel size it renders at."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validate import check_scalar, describe, is_traced, runtime_check


def check_indices(indices: Any, size: int, name: str = "indices") -> Array:
    """Integer indices into an axis of length `size`, all in `[0, size)`."""
    if not hasattr(indices, "dtype"):
        indices = np.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"`{name}` must be an integer array; got {describe(indices)}.")
    if indices.ndim != 1 or indices.shape[0] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1D array of shape indices (a set holds at least "
            f"one shape); got {describe(indices)}. For one shape, `model.take(jnp.array([i]))`."
        )
    message = f"`{name}` must lie in [0, {size}) for a set of {size} shapes"
    if is_traced(indices):
        return runtime_check(indices, jnp.any((indices < 0) | (indices >= size)), message + ".")
    values = np.asarray(indices)
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(f"{message}; got values in [{values.min()}, {values.max()}].")
    return jnp.asarray(indices)


def check_pixel_size(points: Array, pixel_size: Any) -> tuple[Array, Any]:
    """`(points, pixel_size)` with `pixel_size` checked to be a finite number > 0.

    Under `jit` the check rides on `points` (always used), so it cannot be optimised
    away even by a model whose values do not depend on the pixel size.
    """
    hint = " It is the size of one pixel in frame units: 1 / H for an (H, W) grid."
    checked = check_scalar(pixel_size, "pixel_size", lower=0.0, hint=hint)
    if is_traced(checked):
        bad = ~jnp.isfinite(pixel_size) | (pixel_size <= 0)
        points = runtime_check(points, bad, f"`pixel_size` must be a finite number > 0.{hint}")
    return points, checked
