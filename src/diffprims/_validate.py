"""Checks at the public boundary: clear errors instead of tracebacks from inside JAX."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import operator
from typing import Any, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.dtypes import canonicalize_dtype
from jaxtyping import Array


def is_traced(x: Any) -> bool:
    """Whether `x` is a tracer (we are inside `jit`/`vmap`/`grad`)."""
    return isinstance(x, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]


def is_typed_key(x: Any) -> bool:
    """Whether `x` is a typed PRNG key array (`jax.random.key`), which NumPy cannot hold."""
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


# Set while the library traces its own compiled programs (paint's rounds, fit's step
# loop), whose inputs were checked at the public boundary: there a traced check is
# dropped. `eqx.error_if` is a host callback, and a program holding one is never
# written to JAX's persistent compilation cache (the command line's second run then
# compiled the step loop again, 2 to 3 s).
_TRUSTED = contextvars.ContextVar("diffprims_trusted", default=False)


def trusted(fn):
    """`fn` with the traced checks inside it (`runtime_check`) dropped: for the library's
    own compiled programs, whose inputs come checked or are made by the library."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        token = _TRUSTED.set(True)
        try:
            return fn(*args, **kwargs)
        finally:
            _TRUSTED.reset(token)

    return wrapper


def runtime_check(x: Any, bad: Any, message: str) -> Any:
    """`eqx.error_if(x, bad, message)`, or `x` inside a `trusted` program."""
    return x if _TRUSTED.get() else eqx.error_if(x, bad, message)


def inside_trace() -> bool:
    """Whether we are tracing (`jit`/`vmap`/`grad`), even with only concrete inputs."""
    return is_traced(jnp.zeros(()))


def describe(x: Any) -> str:
    """A short description of a value for error messages: dtype and shape."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{x.dtype} array of shape {tuple(x.shape)}"
    if isinstance(x, eqx.Module):  # its repr lists every array it holds
        return f"{type(x).__name__} (an equinox Module)"
    return f"{type(x).__name__} {x!r}"[:120]


def check_not_traced(value: Any, name: str, kind: str, sets: str) -> None:
    """A `TypeError` if `value` is traced: `name` (a `kind`, which sets `sets`) shapes
    the program, so it must be known when JAX traces it."""
    if is_traced(value):
        raise TypeError(
            f"`{name}` must be a concrete {kind}; got a traced {describe(value)} (an "
            f"argument of `jax.jit` or `jax.vmap`). It sets {sets}, so it cannot be "
            "traced: make it static (`jax.jit(f, static_argnums=...)`; `eqx.filter_jit` "
            "keeps Python numbers static) or close over it."
        )


def check_positive_int(
    value: Any, name: str, *, minimum: int = 1, maximum: int = 2**31 - 1, why: str = ""
) -> int:
    """`value` as a Python int in `[minimum, maximum]`, else a `ValueError`/`TypeError`.

    NumPy integers are accepted; bools, floats and strings are not. The default maximum
    is the largest int32 (step counts and sizes become int32 inside JAX); `why` says
    the reason for another (it follows the bound in the message).
    """
    check_not_traced(value, name, "int", "a size or a loop's length")
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        try:
            if isinstance(value, bool | np.bool_):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise TypeError(
                f"`{name}` must be an int >= {minimum}; got {describe(value)}."
            ) from None
    value = int(value)
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value}.")
    if value > maximum:
        why = why or ("JAX counts in int32" if maximum == 2**31 - 1 else "")
        raise ValueError(
            f"`{name}` must be an int <= {maximum}{f' ({why})' if why else ''}; got {value}."
        )
    return value


def check_grid_shape(shape: Any, name: str = "shape") -> tuple[int, int]:
    """`shape` as a pair of positive ints `(H, W)`."""
    try:
        items = tuple(shape)
    except TypeError:
        items = None
    if items is None or len(items) != 2:
        raise ValueError(
            f"`{name}` must be a pair (H, W) of positive ints; got {shape!r}. "
            "For an image, pass `image.shape[:2]`."
        )
    return (
        check_positive_int(items[0], f"{name}[0]"),
        check_positive_int(items[1], f"{name}[1]"),
    )


def check_float_array(
    x: Any,
    name: str,
    *,
    ndim: int | None = None,
    last_dim: int | None = None,
    hint: str = "",
) -> Array:
    """`x` as a floating-point jax array of the expected rank, else a clear error.

    Every float dtype is accepted; half precision (bfloat16, float16) comes back as
    float32, so the library computes in at least float32 whatever it is given.
    """
    if isinstance(x, list | tuple):
        try:
            x = np.asarray(x)
        except ValueError:  # NumPy's "setting an array element with a sequence"
            raise ValueError(
                f"`{name}` must be an array; got a nested {type(x).__name__} whose rows "
                f"have different lengths (or hold other lists).{hint}"
            ) from None
        if x.dtype.kind in "biu":  # numbers written as Python ints: `[[0, 0, 0]]` is black
            x = x.astype(np.float32)
    if isinstance(x, np.ndarray | np.generic) and not x.dtype.isnative:
        # Big-endian data (a FITS image, a .npy from another machine): JAX takes native.
        x = x.astype(x.dtype.newbyteorder("="))
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        if isinstance(x, float | int) and not isinstance(x, bool):
            x = np.asarray(x, dtype=np.float32)
        else:
            raise TypeError(f"`{name}` must be a float array; got {describe(x)}.{hint}")
    # `jnp.issubdtype`: NumPy does not count bfloat16 (an ml_dtypes type) as floating.
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must be a float array; got {describe(x)}. "
            f"Convert it, e.g. `x.astype(np.float32)` (divide uint8 images by 255).{hint}"
        )
    if ndim is not None and x.ndim != ndim:
        axes = "1 axis" if ndim == 1 else f"{ndim} axes"
        raise ValueError(f"`{name}` must have {axes}; got {describe(x)}.{hint}")
    if last_dim is not None and (x.ndim == 0 or x.shape[-1] != last_dim):
        raise ValueError(
            f"`{name}` must have a last axis of size {last_dim}; got {describe(x)}.{hint}"
        )
    _check_fits_default_float(x, name, hint)
    x = jnp.asarray(x)
    return x.astype(jnp.float32) if jnp.finfo(x.dtype).bits < 32 else x


FLOAT32_MAX = float(np.finfo(np.float32).max)  #: larger finite numbers become inf there


def _check_fits_default_float(x: Any, name: str, hint: str) -> None:
    """A `ValueError` for a NumPy float64 array with finite values beyond float32's range
    when JAX works in float32 (no x64): made inf, they were called non-finite input."""
    if not isinstance(x, np.ndarray) or canonicalize_dtype(x.dtype) == x.dtype:
        return  # not NumPy's, or a dtype JAX keeps (float32; float64 under x64)
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(x) & (np.abs(x) > FLOAT32_MAX)
    if beyond.any():
        raise ValueError(
            f"`{name}` must fit in float32 (|values| <= {FLOAT32_MAX:.3g}; JAX computes in "
            f"float32 unless `jax_enable_x64` is set); got {int(beyond.sum())} finite float64 "
            f"value(s) beyond that, up to {float(np.abs(x[beyond]).max()):.3g}. Rescale it "
            f"(e.g. divide by its largest absolute value) or enable float64.{hint}"
        )


def check_not_empty(x: Any, name: str, what: str) -> None:
    """A `ValueError` when `x` holds no elements: `what` (a loss, a metric), a mean over
    them, would be NaN. Shapes are static, so this works under `jit` too."""
    shape = tuple(np.shape(x))
    if 0 in shape:
        channels = " It has no channels: give it at least one channel." if shape[-1] == 0 else ""
        raise ValueError(
            f"{what} needs at least one value to compare; got `{name}` of shape {shape}, "
            f"which holds none (a mean over no values is NaN).{channels} Pass an (H, W, C) "
            "image or (P, C) values with every axis >= 1, or skip the call when there is "
            "nothing to compare."
        )


def upcast_floats(tree: Any) -> Any:
    """`tree` with its floating-point arrays in one dtype, at least float32: half
    precision (bfloat16, float16) as float32, as `check_float_array` upcasts inputs (a
    model cast to half precision renders and fits in float32: its soft edges and
    compositing need the range), and float32 beside float64 (under `jax_enable_x64`) as
    float64 (a scan's carry must keep one dtype). Returns `tree` itself when it is so."""
    floats = [
        x for x in jax.tree.leaves(tree)
        if eqx.is_inexact_array(x) and jnp.issubdtype(x.dtype, jnp.floating)
    ]  # fmt: skip
    if not floats:
        return tree
    dtype = jnp.promote_types(jnp.result_type(*floats), jnp.float32)
    if all(x.dtype == dtype for x in floats):
        return tree

    def cast(x: Any) -> Any:
        floating = eqx.is_inexact_array(x) and jnp.issubdtype(x.dtype, jnp.floating)
        return x.astype(dtype) if floating else x

    return jax.tree.map(cast, tree)


def check_values(
    x: Array,
    name: str,
    *,
    lower: float = -np.inf,
    upper: float = np.inf,
    hint: str = "",
) -> Array:
    """Check `x` is finite and in `[lower, upper]`: eagerly, or with `eqx.error_if`."""
    range_text = f" and in [{lower}, {upper}]" if np.isfinite([lower, upper]).any() else ""
    message = f"`{name}` must be finite{range_text}"
    if is_traced(x):
        x = runtime_check(x, ~jnp.all(jnp.isfinite(x)), f"{message}; got NaN or inf.{hint}")
        if not range_text:
            return x
        bad_range = (x < lower) | (x > upper)
        return runtime_check(x, jnp.any(bad_range), f"{message}; got values outside.{hint}")
    # A concrete array is checked now with NumPy, even inside a trace (where JAX ops on
    # constants would give tracers).
    values = np.asarray(x)
    bad_range = (values < lower) | (values > upper)
    if not np.all(np.isfinite(values)):
        count = int(np.sum(~np.isfinite(values)))
        raise ValueError(f"{message}; got {count} NaN/inf value(s).{hint}")
    if np.any(bad_range):
        # `repr` of the exact extremes: `.4g` showed 1 for a value a rounding error above.
        low, high = float(values.min()), float(values.max())
        clip = ""
        if np.isfinite(lower) and np.isfinite(upper):
            clip = f" To clamp them, use `jnp.clip({name.strip('`')}, {lower}, {upper})`."
        raise ValueError(
            f"{message}; got values in [{low!r}, {high!r}] ({int(np.sum(bad_range))} "
            f"outside).{clip}{hint}"
        )
    return x


def check_points(points: Any, name: str = "points") -> Array:
    """Sample points: a finite `(P, 2)` float array of `(x, y)` in the diffprims frame
    (a NaN point renders NaN silently); checked now, or under `jit` when it runs."""
    hint = (
        " Points are (P, 2) rows of (x, y): a grid's: `dp.pixel_centres((H, W)).reshape(-1, 2)`."
    )
    points = check_float_array(points, name, ndim=2, last_dim=2, hint=hint)
    return check_values(points, name, hint=hint)


def check_key(key: Any, name: str = "key") -> Array:
    """A PRNG key: a typed key (`jax.random.key`) or a raw uint32 `(2,)` key."""
    if isinstance(key, jax.Array) or is_traced(key):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    if isinstance(key, np.ndarray) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))  # a raw key read back from a file
    shape = tuple(getattr(key, "shape", ()))
    typed = jnp.issubdtype(getattr(key, "dtype", np.float32), jax.dtypes.prng_key)
    raw = getattr(key, "dtype", None) == np.uint32 and len(shape) >= 2 and shape[-1] == 2
    many = len(shape) >= 1 and (typed or raw)
    hint = (
        " That is a batch of keys, and this call takes one: map it over them, "
        "`jax.vmap(lambda k: ...(key=k))(keys)`."
        if many
        else ""
    )
    raise TypeError(
        f"`{name}` must be a PRNG key such as `jax.random.key(0)`; got {describe(key)}.{hint}"
    )


def check_scalar(
    value: Any,
    name: str,
    *,
    lower: float | None = None,
    upper: float | None = None,
    hint: str = "",
) -> Any:
    """`value` as a finite real number in the open interval `(lower, upper)`.

    A Python number comes back as a `float`; an array scalar is checked eagerly, or with
    `eqx.error_if` under `jit`, and comes back as an array.
    """
    bounds = (
        f" in ({lower}, {upper})"
        if lower is not None and upper is not None
        else (f" > {lower}" if lower is not None else (f" < {upper}" if upper is not None else ""))
    )
    message = f"`{name}` must be a finite number{bounds}"
    if isinstance(value, bool | np.bool_) or not (
        isinstance(value, int | float | np.integer | np.floating)
        or (hasattr(value, "dtype") and hasattr(value, "shape"))
    ):
        raise TypeError(f"{message}; got {describe(value)}.{hint}")
    if hasattr(value, "shape") and not isinstance(value, np.generic):
        value = cast(Any, value)
        if value.shape != () or not (
            jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
        ):
            raise TypeError(f"{message}; got {describe(value)}.{hint}")
        xp = jnp if is_traced(value) else np
        concrete = value if is_traced(value) else np.asarray(value).astype(np.float64)
        bad = ~xp.isfinite(concrete)
        if lower is not None:
            bad = bad | (concrete <= lower)
        if upper is not None:
            bad = bad | (concrete >= upper)
        if is_traced(value):
            return runtime_check(value, bad, f"{message}.{hint}")
        if bool(bad):
            raise ValueError(f"{message}; got {float(value)!r}.{hint}")
        return value
    try:
        number = float(value)
    except OverflowError:  # an int past float64 (10 ** 400)
        raise ValueError(f"{message}; got an integer too large for a float.{hint}") from None
    if (
        not np.isfinite(number)
        or (lower is not None and number <= lower)
        or (upper is not None and number >= upper)
    ):
        raise ValueError(f"{message}; got {value!r}.{hint}")
    return number


def check_bool(value: Any, name: str) -> bool:
    """`value` if it is a bool (NumPy's too), else a `TypeError`: a string such as "no"
    or a number would otherwise count as true."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be True or False; got {describe(value)}.")
    return bool(value)


def check_progress(value: Any) -> bool | str:
    """`progress` as `fit` and `paint` take it: a bool, or a label for the bar (a
    non-empty string: on and labelled), else a `TypeError` (a string such as "no" would
    otherwise count as true)."""
    if isinstance(value, str):
        if not value.strip():
            raise TypeError("`progress` must be True, False or a label for the bar (a "
                            "non-empty string); got an empty string.")  # fmt: skip
        return value
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`progress` must be True, False or a label for the bar (a "
                        f"string); got {describe(value)}.")  # fmt: skip
    return bool(value)


def run_checks(tree: Any) -> None:
    """Run the `__check_init__` of every module in `tree` (as its constructor did): for
    models made without their constructor (`jax.vmap`, `tree_at`, a file's records)."""
    if isinstance(tree, eqx.Module):
        for kls in type(tree).__mro__:
            check = kls.__dict__.get("__check_init__")
            if check is not None:
                check(tree)
        for field in dataclasses.fields(tree):
            run_checks(getattr(tree, field.name, None))
    elif isinstance(tree, tuple | list):
        for item in tree:
            run_checks(item)
