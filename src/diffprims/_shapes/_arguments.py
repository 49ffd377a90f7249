"""A shape set's argument checks: indices into its shapes, the pixel size it renders at."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._finite import non_finite_flag
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


def static_softness(softness: Any) -> float:
    """`softness` as the set stores it: a Python float, finite and > 0. It is static
    (part of the set's structure, as a compiled render sees it), so a traced value is a
    `TypeError`; an int too large for a float a `ValueError` (not an `OverflowError`)."""
    if is_traced(softness):
        raise TypeError(
            "`softness` is a static setting of a shape set (the compiled render depends on "
            "it), so it must be a Python float, not a traced value. To render with a traced "
            "or learned edge width, pass it at render time: "
            "`model.render_image(shape, softness=...)`."
        )
    if isinstance(softness, bool | np.bool_) or not isinstance(
        softness, int | float | np.integer | np.floating
    ):
        raise TypeError(f"`softness` must be a float > 0 (pixels); got {describe(softness)}.")
    if not 0 < as_float(softness) < float("inf"):
        raise ValueError(
            f"`softness` must be a finite float > 0 (pixels); got {shown_number(softness)}."
        )
    return float(softness)


def shown_number(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{type(value).__name__} of {len(text)} digits"


def as_float(number: Any) -> float:
    """`float(number)`, inf for an int too large for a float (10**400)."""
    try:
        return float(number)
    except OverflowError:
        return float("inf")


_NEEDS_FINITE = "Rendering needs a model with finite parameters"
_FINITE_FIX = "Build it with finite values, or take `error.result.model` from a diverged fit."


def check_finite_model(model: Any) -> Array | None:
    """Refuse a model with concrete NaN/inf parameters now (its render would be NaN
    there, silently); the flag of its traced ones for `checked_render`, or None."""
    return non_finite_flag(model, _NEEDS_FINITE, _FINITE_FIX)


def checked_render(out: Array, bad: Array | None) -> Array:
    """`out`, a render, with the traced parameters' check riding on it (always used)."""
    return (
        out
        if bad is None
        else runtime_check(out, bad, f"{_NEEDS_FINITE}; got NaN/inf. {_FINITE_FIX}")
    )
