"""Building shape sets: checks of a set's fields, sets at given places and values (random
ones: `_random`)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._model import batch_message
from .._validate import (
    check_bool,
    check_float_array,
    check_values,
    describe,
    is_traced,
    runtime_check,
)
from ._arguments import as_float, shown_number, static_softness
from ._compositing import MODES, initial_depths
from ._protocol import SHARED_FIELDS, check_concrete
from ._roles import COLOUR, OPACITY, is_per_shape


def check_set(shapes: Any) -> None:
    """`AbstractShapes.__check_init__`: field types, shapes and static settings."""
    cls = type(shapes)
    kind = cls.__name__
    roles = cls.parameter_roles()
    for name in roles:
        _check_parameter(cls, name, getattr(shapes, name))
    n, channels = shapes.num_shapes, shapes.num_channels
    if shapes.raw_colours.ndim != 2 or n < 1 or channels < 1:
        raise ValueError(
            f"A {kind} set needs colours of shape (N, C) with N >= 1 and C >= 1; got "
            f"{shapes.raw_colours.shape}."
        )
    if shapes.raw_background.shape != (channels,):
        raise ValueError(
            f"background must have shape ({channels},) to match the colours of this {kind} "
            f"set; got {shapes.raw_background.shape}."
        )
    if shapes.raw_opacities.shape != (n,):
        raise ValueError(
            f"opacities must have shape ({n},) to match the colours of this {kind} set; got "
            f"{shapes.raw_opacities.shape}."
        )
    for name in roles:
        leaf = getattr(shapes, name)
        if name == "raw_depths" or not is_per_shape(cls, name) or leaf is None:
            continue
        if jnp.shape(leaf)[:1] != (n,):
            shared = "" if name in _declared(cls) else (
                f" A value shared by every shape is declared so: `{name}: ... = "
                "dp.parameter(role, per_shape=False)`."
            )  # fmt: skip
            raise ValueError(
                f"`{name}` must have leading axis N={n} (one row per shape of this {kind} "
                f"set, as its colours have); got shape {jnp.shape(leaf)}.{shared}"
            )
        trailing = declared_trailing(cls, name)
        if trailing is not None and jnp.shape(leaf)[1:] != trailing:
            # (a centre of shape (N,) rendered to an IndexError deep inside JAX)
            raise ValueError(
                f"`{name}` of a {kind} set must have shape (N, {', '.join(map(str, trailing))})"
                f" as its annotation declares; got shape {jnp.shape(leaf)}."
            )
    softness = shapes.softness
    if isinstance(softness, bool) or not (
        isinstance(softness, float | int) and 0 < as_float(softness) < float("inf")
    ):
        raise ValueError(
            f"`softness` of a {kind} set must be a finite float > 0 (pixels); got "
            f"{shown_number(softness)}."
        )
    if not isinstance(shapes.learn_background, bool | np.bool_):
        raise TypeError(
            f"`learn_background` of a {kind} set must be True or False; got "
            f"{describe(shapes.learn_background)}."
        )
    _check_compositing(shapes, n)


def _check_parameter(cls: type, name: str, leaf: Any) -> None:
    """A parameter field holds a float array (or None, as `raw_depths` may): `fit` trains
    only arrays, so a Python number there was never trained, in silence."""
    if leaf is None:
        return
    if not eqx.is_array(leaf):
        raise TypeError(
            f"`{name}` of {cls.__name__} holds {describe(leaf)}, not an array. Fields with a role "
            "(`dp.parameter(role)`; an undeclared field counts as `dp.roles.GEOMETRY`) are "
            "parameters that `fit` trains, so they hold arrays: `jnp.asarray(...)` (as a default, "
            "`default_factory=lambda: jnp.asarray(1.0)`). A setting that is not learned is "
            "a static field: `eqx.field(static=True, default=..., kw_only=True)`."
        )
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` of {cls.__name__} must be a float array (parameters are trained by "
            f"`fit`); got {describe(leaf)}. Build shape sets with `init`, "
            f"{_given_values(cls)}."
        )


def _check_compositing(shapes: Any, n: int) -> None:
    kind = type(shapes).__name__
    if shapes.compositing not in MODES:
        raise ValueError(
            f"`compositing` of a {kind} set must be one of {MODES}; got {shapes.compositing!r}."
        )
    depths = shapes.raw_depths
    if shapes.compositing == "depth":
        if depths is None or jnp.shape(depths) != (n,):
            raise ValueError(
                f'compositing="depth" needs `raw_depths` of shape ({n},) in a {kind} set; got '
                f"{None if depths is None else jnp.shape(depths)}. "
                'Build the set with `init(..., compositing="depth")` or convert one with '
                '`shapes.with_compositing("depth")`.'
            )
    elif depths is not None:
        raise ValueError(
            f'`raw_depths` of a {kind} set is only used with compositing="depth"; got it with '
            f"{shapes.compositing!r}. Use `shapes.with_compositing(...)` to switch modes."
        )


def _declared(cls: type) -> set[str]:
    """The fields declared with `dp.parameter` (a role in their metadata)."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("role") is not None}


def num_shapes(shapes) -> int:
    """`N`, from the colours `(N, C)`. A batch of sets (`jax.vmap` over a constructor)
    is a `ValueError`: its batch axis was silently taken for `N`."""
    colours = shapes.raw_colours
    if colours.ndim > 2:
        raise ValueError(batch_message(shapes, tuple(colours.shape[:-2]), "num_shapes"))
    return colours.shape[0]


def take(shapes, indices):
    """`AbstractShapes.take`: the shapes at (checked) `indices`, the rest as it is."""
    per_shape, rest = shapes.partition_shapes()
    return eqx.combine(jax.tree.map(lambda x: x[indices], per_shape), rest)


def placed(cls, centres, sizes, colours, background, *, key, opacity, softness,
           compositing="over", learn_background=True):  # fmt: skip
    """A set of `cls` at `centres` and of about `sizes` (`random_geometry`), coloured."""
    raw = appearance(colours, background, opacity)
    return assembled(cls, centres, sizes, raw, key, softness, compositing, learn_background)


def appearance(colours, background, opacity) -> tuple[Array, Array, Array]:
    """`(raw_colours, raw_opacities, raw_background)`: `(N, C)` colours, one opacity for all."""
    n = colours.shape[0]
    return COLOUR.raw(colours), jnp.full((n,), OPACITY.raw(opacity)), COLOUR.raw(background)


def assembled(cls, centres, sizes, raw, key, softness, compositing, learn_background):
    """A set of `cls`: its geometry from `random_geometry` at `centres` and `sizes`, its
    stored appearance `raw` (`appearance`); the part of `placed` that is the type's."""
    raw_colours, raw_opacities, raw_background = raw
    return cls(
        raw_colours=raw_colours,
        raw_opacities=raw_opacities,
        raw_background=raw_background,
        softness=static_softness(softness),
        compositing=compositing,
        learn_background=check_bool(learn_background, "learn_background"),
        raw_depths=initial_depths(centres.shape[0]) if compositing == "depth" else None,
        **cls.raw_geometry(centres, sizes, key=key),
    )


def from_geometry(cls, geometry, colours, opacities, background, softness, options):
    """`AbstractShapes.from_geometry`: see there."""
    check_concrete(cls)
    unknown = set(options) - {"compositing", "learn_background", "depths"}
    if unknown:
        raise TypeError(
            f"Unexpected keyword argument(s) {sorted(unknown)}; expected `compositing`, "
            "`learn_background` or `depths`."
        )
    _check_geometry_names(cls, geometry)
    roles = cls.parameter_roles()
    checks, shared = {}, {}
    for name, (label, value, trailing, *zero_ok) in geometry.items():
        strict = roles[name].transform == "log" and not (zero_ok and zero_ok[0])
        check = (value, tuple(trailing), 0.0 if strict else None)
        if is_per_shape(cls, name):
            checks[label] = check
        else:  # one value for every shape (`per_shape=False`): no leading axis N
            shared[label] = _shared_value(cls, name, label, *check)
    values = shape_values(**checks)
    # N from the rows of the per-shape values, or from the colours (every field shared)
    rows = next(iter(values.values())) if values else check_float_array(colours, "colours")
    n = rows.shape[0]
    values.update(shared)
    for name, (label, *_) in geometry.items():
        if roles[name].transform == "log":
            values[label] = check_values(values[label], label, lower=0.0)
        elif roles[name].transform == "logit":  # else clipped into (0, 1) in silence
            values[label] = check_values(values[label], label, lower=0.0, upper=1.0)
    raw = {name: roles[name].raw(values[label]) for name, (label, *_) in geometry.items()}
    raw_colours, raw_opacities, raw_background = shared_values(colours, opacities, background, n)
    compositing = options.get("compositing", "over")
    depths = options.get("depths")
    if depths is not None:
        depths = check_values(check_float_array(depths, "depths", ndim=1), "depths")
    elif compositing == "depth":
        depths = initial_depths(n)
    return cls(
        raw_colours=raw_colours,
        raw_opacities=raw_opacities,
        raw_background=raw_background,
        softness=static_softness(softness),
        compositing=compositing,
        learn_background=check_bool(options.get("learn_background", True), "learn_background"),
        raw_depths=depths,
        **raw,
    )


def _check_geometry_names(cls: type, geometry: dict[str, Any]) -> None:
    """A `ValueError` naming the unknown and the missing fields of a `from_geometry`
    (they were a bare `KeyError` and the constructor's "missing 2 required positional
    arguments")."""
    fields = {
        f.name: f
        for f in dataclasses.fields(cls)
        if f.name not in SHARED_FIELDS and not f.metadata.get("static", False)
    }
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    unknown = sorted(set(geometry) - set(fields))
    missing = [name for name in required if name not in geometry]
    if unknown or missing:
        wrong = "; ".join(
            f"{what} {names}" for what, names in (("unknown", unknown), ("missing", missing))
            if names
        )  # fmt: skip
        raise ValueError(
            f"{cls.__name__}.from_geometry takes its geometry fields {sorted(fields)} "
            f"(required: {required}) by field name; got {sorted(geometry)} ({wrong}).{_FORM}"
        )
    for name, entry in geometry.items():  # unpacked below: a bare value said "not enough
        if not (isinstance(entry, tuple) and len(entry) in (3, 4) and isinstance(entry[0], str)):
            raise TypeError(  # values to unpack (expected at least 3, got 2)", naming nothing
                f"{cls.__name__}.from_geometry's entry for `{name}` must be a tuple "
                f"(argument name, value, trailing shape[, zero allowed]); got {_entry(entry)}."
                f"{_FORM}"
            )


def _entry(entry: Any) -> str:
    if isinstance(entry, tuple):
        return f"a tuple of {len(entry)} starting with {describe(entry[0]) if entry else '()'}"
    return describe(entry)


_FORM = (
    ' Give each as `field: (argument name, value, trailing shape)`, e.g. `{"raw_radii": '
    '("radii", radii, ())}`.'
)


def _shared_value(cls: type, name: str, label: str, value: Any, shape: tuple[int, ...],
                  lower: float | None) -> Array:  # fmt: skip
    """A geometry value shared by every shape (`dp.parameter(..., per_shape=False)`),
    checked as `shape_values` checks one row per shape, but with its own shape."""
    value = check_float_array(value, label)
    if tuple(value.shape) != shape:
        raise ValueError(
            f"`{label}` is one value for every shape ({cls.__name__}.{name} is declared "
            f"with `per_shape=False`), so it must have shape {shape}, with no leading axis "
            f"N; got {value.shape}."
        )
    return _checked(label, value, lower)


def shape_values(**fields: tuple[Any, tuple[int, ...], float | None]) -> dict[str, Array]:
    """Check the geometry arguments of a `from_values`: `name=(value, trailing, lower)`.

    Each value must be a finite float array of shape `(N, *trailing)` with the same `N`
    for all, and (eagerly) greater than `lower` when that is not None.
    """
    out, n = {}, None
    for name, (value, trailing, lower) in fields.items():
        value = check_float_array(value, name, ndim=1 + len(trailing))
        if tuple(value.shape[1:]) != trailing or (n is not None and value.shape[0] != n):
            expected = ", ".join(str(d) for d in ("N" if n is None else n, *trailing))
            expected += "," * (not trailing)  # a tuple of one: (2,)
            raise ValueError(f"`{name}` must have shape ({expected}); got {value.shape}.")
        n = value.shape[0]
        if n < 1:
            raise ValueError(f"`{name}` must hold at least one shape; got shape {value.shape}.")
        out[name] = _checked(name, value, lower)
    return out


def _checked(name: str, value: Array, lower: float | None) -> Array:
    """`value` as float32, checked finite and (eagerly) greater than `lower` if given."""
    value = check_values(value, name)
    if lower is not None:
        if is_traced(value):
            message = f"`{name}` must be > {lower}."
            value = runtime_check(value, jnp.any(value <= lower), message)
        elif np.any(np.asarray(value) <= lower):
            raise ValueError(
                f"`{name}` must be > {lower}; got a minimum of {float(value.min()):.4g}."
            )
    return jnp.asarray(value, jnp.float32)


def shared_values(
    colours: Any, opacities: Any, background: Any, n: int
) -> tuple[Array, Array, Array]:
    """Validate and convert constrained colour/opacity/background values to parameters."""
    colours = check_float_array(colours, "colours", ndim=2)
    if colours.shape[0] != n:
        raise ValueError(f"`colours` must have shape ({n}, C); got {colours.shape}.")
    channels = colours.shape[1]
    opacities = check_float_array(opacities, "opacities", ndim=1)
    if opacities.shape != (n,):
        raise ValueError(f"`opacities` must have shape ({n},); got {opacities.shape}.")
    background = check_float_array(background, "background")
    if background.shape not in ((), (1,), (channels,)):
        raise ValueError(
            f"`background` must be a scalar grey or have shape ({channels},) to match "
            f"`colours`; got {describe(background)}."
        )
    background = jnp.broadcast_to(background, (channels,))
    colours, opacities, background = (
        check_values(value, name, lower=0.0, upper=1.0)
        for name, value in (
            ("colours", colours),
            ("opacities", opacities),
            ("background", background),
        )
    )
    return COLOUR.raw(colours), OPACITY.raw(opacities), COLOUR.raw(background)


def with_compositing(shapes: Any, mode: str, learn_background: bool | None) -> Any:
    """`AbstractShapes.with_compositing`: see there."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}.")
    if shapes.compositing == "depth" and mode == "over":
        shapes = shapes.take(jnp.argsort(shapes.depths))
    depths = None
    if mode == "depth":
        old = shapes.raw_depths
        depths = initial_depths(shapes.num_shapes, shapes.raw_colours) if old is None else old
    learn = (
        shapes.learn_background
        if learn_background is None
        else check_bool(learn_background, "learn_background")
    )
    return dataclasses.replace(shapes, compositing=mode, learn_background=learn, raw_depths=depths)


def _given_values(cls: type) -> str:
    """How to build a set of `cls` from given values: its `from_values`, or (a type
    with none, as a user's) `from_geometry`, from which one is written."""
    if hasattr(cls, "from_values"):
        return "or from given values with `from_values`"
    return (
        "or from given values with `from_geometry(geometry, colours, opacities)` (the body "
        "of the `from_values` the built-in types have)"
    )


def declared_trailing(cls: type, name: str) -> tuple[int, ...] | None:
    """The trailing shape a field's jaxtyping annotation declares after its leading `N`
    (`Float[Array, "N 2"]`: `(2,)`; `"N"`: `()`), or None where it declares no fixed one
    (a named or variadic axis, no annotation)."""
    for klass in cls.__mro__:
        annotation = vars(klass).get("__annotations__", {}).get(name)
        if annotation is not None:
            break
    else:
        return None
    dims = getattr(annotation, "dim_str", None)  # an evaluated jaxtyping type
    if dims is None:  # a string (`from __future__ import annotations`)
        found = re.search(r"""\[\s*\w+\s*,\s*["']([^"']*)["']\s*\]""", str(annotation))
        dims = found.group(1) if found else None
    tokens = dims.split() if isinstance(dims, str) else []
    if not tokens or not all(t.isdigit() for t in tokens[1:]):
        return None
    return tuple(int(t) for t in tokens[1:])
