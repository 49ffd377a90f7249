"""What losses take: weights, the pair `(pred, target)`, functions' names for messages."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._validate import (
    FLOAT32_MAX,
    check_float_array,
    check_not_empty,
    check_not_traced,
    check_scalar,
    is_traced,
)


def as_weight(value: Any, name: str) -> Array:
    """A weight as a float array: an integer one counts, as a Python int does, bools do
    not. A concrete one must fit in float32 (1e39 became inf, then "not finite")."""
    if hasattr(value, "dtype") and jnp.issubdtype(value.dtype, jnp.integer):
        value = jnp.asarray(value, jnp.float32)
    if not is_traced(value) and not isinstance(value, bool):
        try:
            exact = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            exact = np.asarray(np.nan)  # not a number: `check_float_array` says so
        finite = np.all(np.isfinite(exact))
        if finite and np.any(np.abs(exact) > FLOAT32_MAX):
            raise ValueError(
                f"`{name}` must fit in float32 (magnitude at most {FLOAT32_MAX:.3g}); got "
                f"{exact.tolist()}."
            )
        if finite and np.any((exact != 0) & (exact.astype(np.float32) == 0)):
            raise ValueError(  # 1e-46 * L2() became 0 * L2(), and the term vanished
                f"`{name}` must fit in float32 (0, or a magnitude at least 1.4e-45); got "
                f"{exact.tolist()}, which float32 rounds to 0."
            )
    return check_float_array(value, name)


def reciprocal_weight(divisor: Any, name: str) -> Any:
    """The weight `1 / divisor` stored as multiplying by the reciprocal would store it: a
    Python number's (or a weakly typed array's) as a Python float (float32 in the loss),
    an array's in its own dtype (`L2() / 3` was float64 under x64, `L2() * (1 / 3)`
    float32). Concrete ones checked before float32 rounds them (1 / 1e-300 to inf)."""
    if is_traced(divisor):
        return 1.0 / as_weight(divisor, name)
    as_weight(divisor, name)  # its type and shape
    given = np.asarray(divisor)
    exact = given.astype(np.float64)
    if not np.all(exact != 0):
        raise ValueError(f"`{name}` must be non-zero; got {exact.tolist()}.")
    python = isinstance(divisor, int | float) and not isinstance(divisor, bool | np.generic)
    if python or getattr(divisor, "weak_type", False):
        return float(1.0 / exact)
    return np.asarray(1.0 / exact, np.result_type(given.dtype, np.float32))


def is_zero(x: Any) -> bool:
    """A concrete scalar zero: Python's, NumPy's or JAX's (`loss + 0`, `sum([...])`)."""
    if isinstance(x, bool) or is_traced(x) or np.ndim(x) != 0:
        return False
    return isinstance(x, int | float | np.number | jax.Array) and float(x) == 0


def function_name(fn: Any) -> str:
    """A function's name for messages (`<lambda>`, a module's class)."""
    return getattr(fn, "__name__", None) or type(fn).__name__


def check_pair(pred: Any, target: Any, what: str = "A loss") -> tuple[Array, Array]:
    """`pred` and `target` as float arrays of one shape (no silent broadcasting), with
    at least one element (`what`, the loss, would average over none: NaN)."""
    pred = check_float_array(pred, "pred")
    target = check_float_array(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape; got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}. Losses compare images (H, W, C) or sampled values "
            "(P, C) element by element and never broadcast."
        )
    check_not_empty(pred, "pred", what)
    return pred, target


def static_number(value: Any, name: str) -> float:
    """A loss's static setting (it picks the formula, so it cannot be traced): a
    concrete real number >= 0, finite, as a Python float."""
    check_not_traced(value, name, "number >= 0", "which formula the loss computes")
    # -0.0 is 0.0 (one setting, one identity)
    number = float(np.asarray(check_scalar(value, name))) + 0.0
    if number < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    if number and not TINY <= number <= FLOAT32_MAX:  # 2 d underflowed: NaN gradients
        raise ValueError(
            f"`{name}` must be 0 or in float32's normal range [{TINY:.3g}, "
            f"{FLOAT32_MAX:.3g}], where the loss computes; got {value!r}."
        )
    return number


TINY = float(np.finfo(np.float32).tiny)
