"""Parameter roles: what a stored parameter means and the scale it is stored at.

A shape type declares each of its array fields with [`diffprims.parameter`][] and a
[`diffprims.Role`][]. Everything that needs to know what a parameter is reads the
declaration, never the field's name: `init` and `from_values` convert values to stored
parameters through it, `paint` gives each role its own learning rate, and
`AbstractShapes.take` knows which fields hold one row per shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

# Values clipped this far inside (0, 1) before the inverse sigmoid, so a colour or
# opacity of exactly 0 or 1 gets a finite parameter.
_EPS = 1e-6
_TRANSFORMS = ("linear", "log", "logit")
#: The kinds of parameter a role can name; `paint` groups learning rates by kind.
KINDS = ("position", "size", "angle", "geometry", "colour", "opacity", "depth")


@dataclasses.dataclass(frozen=True)
class Role:
    """What a stored (unconstrained) parameter means, and how it maps to its value.

    Parameters are stored so that one optimizer step of a given size moves every kind
    about equally usefully (Adam moves each parameter by about its learning rate):
    positions are stored divided by 0.2 (a step of `1e-2` moves a shape by 1/500 of the
    frame), sizes as logarithms, colours and opacities as logits over 3.

    **Fields:**

    - `kind`: one of `"position"`, `"size"`, `"angle"`, `"geometry"` (anything else
      geometric), `"colour"`, `"opacity"`, `"depth"`. `paint` picks learning rates by
      kind; `"position"` and `"size"` values are in frame units (image heights).
    - `transform`: `"linear"` (`value = scale * raw`), `"log"` (`value = exp(raw)`, for
      positive sizes) or `"logit"` (`value = sigmoid(scale * raw)`, for `[0, 1]`).
    - `scale`: the factor of a linear or logit transform.

    Use the predefined roles [`diffprims.roles`][]: `POSITION`, `SIZE`, `ANGLE`,
    `GEOMETRY`, `COLOUR`, `OPACITY`, `DEPTH`.

    ```python
    radius = dp.roles.SIZE.value(raw_radius)      # exp(raw_radius)
    raw = dp.roles.POSITION.raw(jnp.array([0.5, 0.5]))
    ```
    """

    kind: str
    transform: str = "linear"
    scale: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}; got {self.kind!r}.")
        if self.transform not in _TRANSFORMS:
            raise ValueError(f"`transform` must be one of {_TRANSFORMS}; got {self.transform!r}.")
        if not self.scale > 0:
            raise ValueError(f"`scale` must be > 0; got {self.scale!r}.")

    def value(self, raw: Array) -> Array:
        """The value (frame units, radians, `[0, 1]`) of `raw`, a stored parameter."""
        if self.transform == "log":
            # Not clipped: a stored size past 88 (a radius past 1.7e38, which only a fit that
            # diverged reaches) overflows to inf and makes the loss NaN, which is how `fit`
            # and `paint` see the divergence and say to lower the learning rate (clipped,
            # a learning rate of 1e30 ran on to a garbage picture without a word).
            return jnp.exp(raw)
        # No product with a scale of 1 (a float JAX array: others are made float arrays
        # by it): eagerly (an export), each operation compiles a program of its own.
        plain = isinstance(raw, jax.Array) and jnp.issubdtype(raw.dtype, jnp.floating)
        scaled = raw if self.scale == 1.0 and plain else self.scale * raw
        return jax.nn.sigmoid(scaled) if self.transform == "logit" else scaled

    def raw(self, value: Any) -> Array:
        """The stored parameter of a value; the inverse of `value` (float32).

        Logit values are clipped 1e-6 inside `(0, 1)` and log values to at least 1e-30,
        so the ends map to finite parameters; the clip passes gradients as the identity
        does, so an opacity of exactly 1 or a radius of 0 given by a network still learns
        (a clip's own gradient there is 0).
        """
        value = jnp.asarray(value, jnp.float32)
        if self.transform == "log":
            return jnp.log(_clip(value, 1e-30, jnp.inf))
        if self.transform == "logit":
            p = _clip(value, _EPS, 1.0 - _EPS)
            return (jnp.log(p) - jnp.log1p(-p)) / self.scale
        return value / self.scale


def _clip(value: Array, low: Any, high: Any) -> Array:
    """`jnp.clip` with the identity's gradient (straight through)."""
    return value + jax.lax.stop_gradient(jnp.clip(value, low, high) - value)


POSITION = Role("position", "linear", 0.2)
"""Positions and vertices in frame units, stored divided by 0.2."""
SIZE = Role("size", "log")
"""Positive sizes (radii, half-sizes, scales) in frame units, stored as logarithms."""
ANGLE = Role("angle", "linear")
"""Angles in radians, stored as they are."""
GEOMETRY = Role("geometry", "linear")
"""Any other geometry, stored as it is (the role of undeclared fields)."""
COLOUR = Role("colour", "logit", 3.0)
"""Colours in `[0, 1]`, stored as logits over 3."""
OPACITY = Role("opacity", "logit", 3.0)
"""Opacities in `[0, 1]`, stored as logits over 3."""
DEPTH = Role("depth", "linear")
"""Learnable depths (larger is nearer), stored as they are."""


def parameter(role: Role, *, per_shape: bool = True, **kwargs: Any) -> Any:
    """Declare an array field of a shape type: its [`diffprims.Role`][].

    **Arguments:**

    - `role`: what the field stores, e.g. `dp.roles.POSITION`.
    - `per_shape`: whether the field has one row per shape (leading axis `N`); only
      the background is not.
    - `kwargs`: passed on to `equinox.field` (e.g. `default=None`).

    **Returns:**

    A dataclass field.

    ```python
    class Circles(dp.AbstractShapes):
        raw_centres: Float[Array, "N 2"] = dp.parameter(dp.roles.POSITION)
        raw_radii: Float[Array, " N"] = dp.parameter(dp.roles.SIZE)
    ```
    """
    return eqx.field(metadata=role_metadata(role, per_shape=per_shape), **kwargs)


def role_metadata(role: Role, *, per_shape: bool = True) -> dict[str, Any]:
    """The field metadata `parameter` sets (for `eqx.field(metadata=...)`)."""
    if not isinstance(role, Role):
        raise TypeError(f"`role` must be a diffprims.Role such as dp.roles.SIZE; got {role!r}.")
    return {"role": role, "per_shape": bool(per_shape)}


def declared_roles(cls: type) -> dict[str, Role]:
    """Field name -> role of every declared parameter of a class (undeclared: GEOMETRY)."""
    out = {}
    for field in dataclasses.fields(cls):
        if field.metadata.get("static", False):
            continue
        role = field.metadata.get("role")
        out[field.name] = GEOMETRY if role is None else role
    return out


def is_per_shape(cls: type, name: str) -> bool:
    """Whether field `name` of `cls` has one row per shape."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field.metadata.get("per_shape", True)
