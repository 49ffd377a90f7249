"""What a shape type supplies, checked where the library first uses it.

A shape type written by a user implements `coverage`, `bounds`, `random_geometry` and
`svg_geometry` (see `AbstractShapes`). A missing method, or an output of the wrong shape
(a transposed coverage broadcasts silently), is reported here, naming the class, the
method, the expected and the got shapes. The shapes are static, so the checks run while
tracing and cost nothing per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validate import is_traced, runtime_check, trusted
from ._roles import is_per_shape

#: The methods a shape type implements.
METHODS = ("coverage", "bounds", "random_geometry", "svg_geometry")
#: Fields every shape set has (colour, opacity, depth): not geometry.
SHARED_FIELDS = ("raw_colours", "raw_opacities", "raw_background", "raw_depths")
_GUIDE = ' See "Write your own shape" in the docs.'


def check_concrete(cls: type) -> None:
    """A `TypeError` naming the abstract methods and attributes `cls` leaves undefined,
    a `random_geometry` that is not a classmethod, or its static settings without a
    default (which `init` and `paint` cannot set).

    Instantiating such a class already fails (`abc`), but `init` and `paint` call the
    classmethod `random_geometry` first, whose abstract body returns None.
    """
    missing = sorted(
        {*getattr(cls, "__abstractmethods__", ()), *getattr(cls, "__abstractvars__", ())}
    )
    if missing:
        raise TypeError(
            f"{cls.__name__} is abstract: it does not implement "
            f"{', '.join(f'`{name}`' for name in missing)}. Expected a shape type that "
            f"implements all of {', '.join(f'`{name}`' for name in METHODS)}.{_GUIDE}"
        )
    # `init` and `paint` call it on the class, before any set exists: as an instance
    # method it got `centres` as `self` ("missing 1 required positional argument").
    method = inspect.getattr_static(cls, "random_geometry")
    if not isinstance(method, classmethod | staticmethod):
        got = "an instance method" if inspect.isfunction(method) else type(method).__name__
        raise TypeError(
            f"{cls.__name__}.random_geometry must be a `@classmethod`, "
            "`def random_geometry(cls, centres, sizes, *, key)`: `init` and `paint` call it "
            f"on the class to make the geometry of new shapes; got {got}. Add "
            f"`@classmethod` above it.{_GUIDE}"
        )
    _check_signatures(cls)
    unset = [
        f.name
        for f in dataclasses.fields(cls)
        if f.metadata.get("static", False)
        and f.name != "softness"  # set by every constructor
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if unset:
        raise TypeError(
            f"{cls.__name__}'s static field(s) {', '.join(f'`{n}`' for n in unset)} have no "
            "default: `init`, `paint` and `from_geometry` build sets without them. Expected "
            "a default, `eqx.field(static=True, default=5)`; a subclass sets another."
            f"{_GUIDE}"
        )


#: How diffprims calls each method (after `self`, or `cls` for `random_geometry`).
_CALLS = {
    "coverage": ("coverage(self, points, edge_width)", (0, 0), {}),
    "bounds": ("bounds(self)", (), {}),
    "random_geometry": ("random_geometry(cls, centres, sizes, *, key)", (0, 0), {"key": 0}),
    "svg_geometry": ("svg_geometry(self, edge_width)", (0,), {}),
}


@functools.cache
def _check_signatures(cls: type) -> None:
    """A `TypeError` naming a method that cannot take the arguments diffprims gives it
    (it was Python's "takes 2 positional arguments but 3 were given" from a render)."""
    for name, (expected, args, kwargs) in _CALLS.items():
        method = getattr(cls, name)
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):  # no signature to read (a builtin): not asked
            continue
        bound = () if name == "random_geometry" else (None,)  # `self` for the others
        try:
            signature.bind(*bound, *args, **kwargs)
        except TypeError as error:
            raise TypeError(
                f"{cls.__name__}.{name} must be `def {expected}`: diffprims calls it so; "
                f"its signature is {name}{signature} ({error}).{_GUIDE}"
            ) from None


@functools.cache  # once a type (6 ms: a warm `paint` of 50 circles on 64^2 takes 100)
def check_shape_type(cls: type) -> None:
    """`check_concrete`, then the outputs of a small set's methods checked abstractly,
    and the values of `random_geometry` on 4 shapes checked against their roles.

    For code that calls `coverage` and `bounds` directly (as `paint` places shapes):
    `jax.eval_shape` traces them on 2 shapes and 3 points and computes nothing.
    """
    check_concrete(cls)

    @trusted  # shapes only: no value is computed, so there is nothing to check
    def probe():
        # `paint` builds sets inside compiled programs: a constructor that reads values
        # (a `__check_init__` with NumPy) works eagerly, as `init`, but cannot paint.
        with _traceable(f"{cls.__name__}'s constructor (its `__check_init__`, if any)",
                        advice=_CONSTRUCTOR_ADVICE):  # fmt: skip
            shapes = cls.init(2, key=jax.random.key(0))  # pyright: ignore[reportAttributeAccessIssue]
        return bounds(shapes), coverage(shapes, jnp.full((3, 2), 0.5), 0.01)

    jax.eval_shape(probe)
    # paint calls `random_geometry` inside its `trusted` programs, where the traced
    # domain checks are dropped (a negative size became an invisible 1e-30): check its
    # values here, on concrete probe shapes, as `init` checks them.
    roles = cls.parameter_roles()  # pyright: ignore[reportAttributeAccessIssue]
    values = _probe_geometry(cls, _PROBE_CENTRES, _PROBE_SIZES, jax.random.key(0))
    for field, value in values.items():
        _in_domain(f"{cls.__name__}.random_geometry", field, roles[field].transform, value)


#: Shapes as paint places them: across the frame, from a pixel of a large image to half
#: the frame.
_PROBE_CENTRES = np.array([[0.5, 0.5], [0.0, 0.0], [1.0, 1.0], [0.25, 0.75]], np.float32)
_PROBE_SIZES = np.array([0.05, 0.002, 0.5, 0.1], np.float32)


@functools.partial(jax.jit, static_argnums=0)  # one small program per class, cached
@trusted  # its values are checked eagerly by the caller
def _probe_geometry(cls: type, centres: Array, sizes: Array, key: Any) -> dict[str, Any]:
    return random_geometry(cls, centres, sizes, key)


def coverage(shapes: Any, points: Array, edge_width: Any) -> Array:
    """`shapes.coverage(points, edge_width)`, checked to be `(N, P)`."""
    with _traceable(f"{type(shapes).__name__}.coverage(points, edge_width)"):
        out = shapes.coverage(points, edge_width)
    expected = (shapes.num_shapes, points.shape[0])
    _check_array(out, f"{type(shapes).__name__}.coverage(points, edge_width)", "(N, P)")
    if not jnp.issubdtype(out.dtype, jnp.floating):  # an int or bool has no gradient
        raise TypeError(
            f"{type(shapes).__name__}.coverage(points, edge_width) must return floats in "
            f"[0, 1] that are a smooth function of the parameters (fit trains the geometry "
            f"through their gradient); got a {out.dtype} array. A threshold or an integer "
            "has no gradient, and `.astype(jnp.float32)` does not bring it back: compute a "
            f"signed distance and return `dp.soft_edge(distance, edge_width)`.{_GUIDE}"
        )
    got = jnp.shape(out)
    if got != expected:
        flipped = " It looks transposed: return it as `(N, P)`." if got == expected[::-1] else ""
        raise ValueError(
            f"{type(shapes).__name__}.coverage(points, edge_width) must return shape "
            f"(N, P) = {expected}: one row per shape, one column per point; got shape "
            f"{got}.{flipped}{_GUIDE}"
        )
    # In the points' dtype (the set's, at least float32): a float64 constant in a user's
    # coverage under `jax_enable_x64` changed the renderers' carry dtype mid-loop.
    return out.astype(points.dtype) if jnp.issubdtype(points.dtype, jnp.floating) else out


def bounds(shapes: Any) -> Array:
    """`shapes.bounds()`, checked to be `(N, 4)`."""
    with _traceable(f"{type(shapes).__name__}.bounds()"):
        out = shapes.bounds()
    expected = (shapes.num_shapes, 4)
    _check_array(out, f"{type(shapes).__name__}.bounds()", "(N, 4)")
    if jnp.shape(out) != expected:
        raise ValueError(
            f"{type(shapes).__name__}.bounds() must return shape (N, 4) = {expected}: one "
            f"box (x_min, y_min, x_max, y_max) per shape; got {_shape_of(out)}.{_GUIDE}"
        )
    return out


def random_geometry(cls: type, centres: Array, sizes: Array, key: Any) -> dict[str, Any]:
    """`cls.random_geometry(...)`, checked: a dict of the geometry fields, leading axis N."""
    check_concrete(cls)
    name, n = f"{cls.__name__}.random_geometry", centres.shape[0]
    with _traceable(name):
        values = cls.random_geometry(centres, sizes, key=key)  # pyright: ignore[reportAttributeAccessIssue]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in SHARED_FIELDS}
    fields = {k: f for k, f in fields.items() if not f.metadata.get("static", False)}
    if not isinstance(values, dict):
        raise TypeError(
            f"{name} must return a dict from field name to value; got "
            f"{type(values).__name__}.{_GUIDE}"
        )
    required = {
        k
        for k, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown, missing = sorted(set(values) - set(fields)), sorted(required - set(values))
    if unknown or missing:
        raise ValueError(
            f"{name} must return the geometry fields {sorted(fields)}; got keys "
            f"{sorted(values)} (missing {missing}, unknown {unknown}).{_GUIDE}"
        )
    for key_name, value in values.items():
        if is_per_shape(cls, key_name) and jnp.shape(value)[:1] != (n,):
            raise ValueError(
                f"{name} must give `{key_name}` a leading axis N = {n} (one row per "
                f"centre); got shape {jnp.shape(value)}.{_GUIDE}"
            )
    _check_shared_shapes(cls)
    roles = cls.parameter_roles()  # pyright: ignore[reportAttributeAccessIssue]
    return {k: _in_domain(name, k, roles[k].transform, v) for k, v in values.items()}


@functools.cache
def _check_shared_shapes(cls: type) -> None:
    """A `ValueError` if `random_geometry` gives a field shared by every shape
    (`per_shape=False`) a shape that changes with `N`: one value per shape there was
    taken by `init`, and every render then blamed `coverage`. Asked abstractly, for 2
    and 3 shapes, once per type (a method that is not traceable is not asked)."""
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("static", False)]
    shared = [
        f.name for f in fields if f.name not in SHARED_FIELDS and not is_per_shape(cls, f.name)
    ]
    if not shared:
        return
    try:
        two, three = (
            jax.eval_shape(
                lambda c, s: cls.random_geometry(c, s, key=jax.random.key(0)),  # pyright: ignore
                jax.ShapeDtypeStruct((n, 2), jnp.float32),
                jax.ShapeDtypeStruct((n,), jnp.float32),
            )
            for n in (2, 3)
        )
    except Exception:  # said where the method runs, as it runs
        return
    for field in shared:
        shapes = [getattr(values.get(field), "shape", None) for values in (two, three)]
        if shapes[0] != shapes[1]:
            raise ValueError(
                f"{cls.__name__}.random_geometry must give `{field}`, a field shared by every "
                f"shape (`per_shape=False`), one value whatever the number of shapes; got "
                f"shape {shapes[0]} for 2 shapes and {shapes[1]} for 3. Give it without a "
                f"leading axis N.{_GUIDE}"
            )


_DOMAINS = {"log": "finite and > 0", "logit": "in [0, 1]", "linear": "finite"}


def _in_domain(name: str, field: str, transform: str, value: Any) -> Any:
    """A `random_geometry` value its role can store: `Role.raw` would otherwise clamp it
    in silence (a size of 0 became an invisible 1e-30, a logit value of 2 became 1)."""

    def bad_values(x):
        xp = jnp if is_traced(x) else np
        bad = ~xp.isfinite(x)
        if transform == "log":
            bad = bad | (x <= 0)
        elif transform == "logit":
            bad = bad | (x < 0) | (x > 1)
        return bad

    message = (
        f"{name} must give `{field}` values {_DOMAINS[transform]} (its role stores them "
        f"with a {transform!r} transform)"
    )
    if is_traced(value):
        return runtime_check(value, jnp.any(bad_values(value)), f"{message}.{_GUIDE}")
    array = np.asarray(value, np.float64)
    bad = bad_values(array)
    if np.any(bad):
        raise ValueError(
            f"{message}; got {int(np.sum(bad))} value(s) outside, e.g. "
            f"{float(array[bad].flat[0])!r}.{_GUIDE}"
        )
    return value


_CONSTRUCTOR_ADVICE = (
    " `dp.paint` (and the command line) build sets inside compiled programs, where a "
    "value check must be traced too: use `eqx.error_if` (or check in a function of your "
    "own before calling `init`)."
)


@contextlib.contextmanager
def _traceable(name: str, advice: str = "") -> Iterator[None]:
    """Reword JAX's errors for a method that converts traced values to numpy or Python.

    `coverage`, `bounds` and `random_geometry` run under `jit` (an eager `render_image`
    too: it calls one compiled program), so their arguments are tracers. `advice` ends
    the message.
    """
    try:
        yield
    except (
        jax.errors.TracerArrayConversionError,
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerBoolConversionError,
        jax.errors.TracerIntegerConversionError,
    ) as error:
        first = str(error).strip().splitlines()[0]
        first += "" if first.endswith((".", ":")) else "."
        raise TypeError(
            f"{name} is traced by JAX (diffprims calls it under `jit`, `grad` and "
            f"`vmap`, an eager `render_image` too), so it must compute with `jax.numpy` "
            f"and `jax.lax`: not `numpy`, `float(...)` or an `if` on an array's value. "
            f"JAX said: {type(error).__name__}: {first}{advice}{_GUIDE}"
        ) from error
    except (TypeError, ValueError) as error:  # its own mistake (shapes that do not broadcast)
        if type(error) not in (TypeError, ValueError):  # a class of its own: kept as it is
            raise
        if str(error).endswith(_GUIDE):  # worded by a check within (random_geometry's)
            raise
        said = str(error)  # Python's own messages end without a full stop
        said += "" if said.endswith((".", "?", "!")) else "."
        raise type(error)(f"{name} raised {type(error).__name__}: {said}{_GUIDE}") from error


def svg_geometry(shapes: Any, edge_width: float) -> list[str]:
    """`shapes.svg_geometry(edge_width)`, checked: a list of `N` strings.

    A type with no SVG form raises `NotImplementedError` there (see `AbstractShapes`);
    that becomes a `TypeError` naming the type and the raster alternative.
    """
    name, n = f"{type(shapes).__name__}.svg_geometry()", shapes.num_shapes
    try:
        out = shapes.svg_geometry(edge_width)
    except NotImplementedError as error:
        reason = f" ({error})" if str(error) else ""
        raise TypeError(
            f"{type(shapes).__name__} has no SVG form: {name} raised "
            f"NotImplementedError{reason}. Expected a shape type that implements "
            "`svg_geometry` for SVG export; save a raster instead, "
            "`dp.save_image(path, model.render_image(shape))`, or implement it."
            f"{_GUIDE}"
        ) from error
    if not isinstance(out, list | tuple) or not all(isinstance(e, str) for e in out):
        raise TypeError(f"{name} must return a list of {n} SVG strings; got {_shape_of(out)}.")
    if len(out) != n:
        raise ValueError(
            f"{name} gave {len(out)} element{'' if len(out) == 1 else 's'} for {n} shapes; it "
            "must give one per shape."
        )
    return list(out)


def _check_array(out: Any, name: str, shape: str) -> None:
    """A `TypeError` unless `out` is one array (a list of rows gave JAX's traceback)."""
    if not (isinstance(out, jax.Array | np.ndarray) or hasattr(out, "aval")):
        raise TypeError(
            f"{name} must return one {shape} array; got {type(out).__name__}. Stack rows "
            f"with `jnp.stack(...)`.{_GUIDE}"
        )


def _shape_of(x: Any) -> str:
    if hasattr(x, "shape"):
        return f"shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:120]
