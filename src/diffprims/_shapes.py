"""The shape-set base: colour, opacity, soft edges, background and "over" compositing.

A concrete shape type supplies only its geometry (see `AbstractShapes`); everything else
lives here once.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._model import AbstractModel
from ._validate import (
    check_float_array,
    check_key,
    check_points,
    check_positive_int,
    check_values,
    is_traced,
)

# Constrained values are clipped this far inside (0, 1) before the inverse sigmoid, so a
# colour or opacity of exactly 0 or 1 gets a finite parameter.
_EPS = 1e-6


def logit(p: Any) -> Array:
    """Inverse of `jax.nn.sigmoid`, clipped so 0 and 1 map to finite values."""
    p = jnp.clip(jnp.asarray(p, jnp.float32), _EPS, 1.0 - _EPS)
    return jnp.log(p) - jnp.log1p(-p)


def soft_edge(signed_distance: Array, width: float | Array) -> Array:
    """Coverage in `[0, 1]` from a signed distance (negative inside) and an edge width.

    `sigmoid(-signed_distance / width)`: exactly 0.5 on the boundary, and the 10 %→90 %
    ramp spans about `4.4 * width`. Shapes defined by a signed distance use this to turn
    geometry into coverage.
    """
    return jax.nn.sigmoid(-signed_distance / width)


def safe_norm(x: Array, axis: int = -1) -> Array:
    """Euclidean norm with a finite gradient at zero (a sample exactly at a centre)."""
    return jnp.sqrt(jnp.sum(x * x, axis=axis) + 1e-20)


class AbstractShapes(AbstractModel):
    """A set of `N` soft shapes composited back to front over a background colour.

    All shape types share this machinery: colour `(N, C)`, opacity `(N,)`, a background
    colour `(C,)`, a soft edge whose width is `softness` pixels of the grid being
    rendered, and "over" compositing in a fixed depth order (shape 0 at the back, shape
    `N - 1` in front), equal to the naive loop

    ```python
    image = background
    for i in range(N):
        a = opacities[i] * coverage[i]
        image = (1 - a) * image + a * colours[i]
    ```

    A new shape type subclasses this, adds its geometry as array fields with a leading
    axis `N` (stored unconstrained), and implements `coverage` (and `random_geometry`
    for `init`). Every array field except `raw_background` must have leading axis `N`.
    """

    raw_colours: Float[Array, "N C"]
    raw_opacities: Float[Array, " N"]
    raw_background: Float[Array, " C"]
    softness: float = eqx.field(static=True)

    def __check_init__(self):
        n, channels = self.num_shapes, self.num_channels
        if self.raw_colours.ndim != 2 or n < 1:
            raise ValueError(
                "A shape set needs colours of shape (N, C) with N >= 1; got "
                f"{self.raw_colours.shape}."
            )
        if self.raw_opacities.shape != (n,):
            raise ValueError(
                f"opacities must have shape ({n},) to match the colours; got "
                f"{self.raw_opacities.shape}."
            )
        if self.raw_background.shape != (channels,):
            raise ValueError(
                f"background must have shape ({channels},) to match the colours; got "
                f"{self.raw_background.shape}."
            )
        for name, leaf in self._geometry_fields().items():
            if jnp.shape(leaf)[:1] != (n,):
                raise ValueError(
                    f"`{name}` must have leading axis N={n}; got shape {jnp.shape(leaf)}."
                )
        if not (isinstance(self.softness, float | int) and self.softness > 0):
            raise ValueError(f"`softness` must be a float > 0 (pixels); got {self.softness!r}.")

    # -- what a shape type supplies -------------------------------------------------

    @abc.abstractmethod
    def coverage(
        self, points: Float[Array, "P 2"], edge_width: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        """How much of each point each shape covers, in `[0, 1]`.

        **Arguments:**

        - `points`: `(P, 2)` points `(x, y)` in the diffprims frame.
        - `edge_width`: the width of a soft edge in frame units (already scaled by the
          pixel size); pass signed distances through `diffprims.soft_edge`.

        **Returns:**

        An `(N, P)` array. Must be vectorised over shapes (each geometry field has a
        leading axis `N`) and differentiable in every geometry parameter.
        """

    @abc.abstractmethod
    def bounds(self) -> Float[Array, "N 4"]:
        """Axis-aligned boxes `(x_min, y_min, x_max, y_max)` holding each shape, `(N, 4)`.

        Outside its box (grown by a few edge widths) a shape's coverage must be
        negligible; renderers use this to skip pixels a shape does not touch.
        """

    @classmethod
    @abc.abstractmethod
    def random_geometry(
        cls, centres: Float[Array, "N 2"], sizes: Float[Array, " N"], *, key: PRNGKeyArray
    ) -> dict[str, Array]:
        """Unconstrained geometry fields for `N` shapes at `centres` of about `sizes`.

        Used by `init`; returns a dict from field name to array with leading axis `N`.
        """

    # -- constrained views ----------------------------------------------------------

    @property
    def num_shapes(self) -> int:
        """The number of shapes `N`."""
        return self.raw_colours.shape[0]

    @property
    def num_channels(self) -> int:
        """The number of colour channels `C` (3 for RGB)."""
        return self.raw_colours.shape[-1]

    @property
    def colours(self) -> Float[Array, "N C"]:
        """Colours in `[0, 1]`, `(N, C)`."""
        return jax.nn.sigmoid(self.raw_colours)

    @property
    def opacities(self) -> Float[Array, " N"]:
        """Opacities in `[0, 1]`, `(N,)`."""
        return jax.nn.sigmoid(self.raw_opacities)

    @property
    def background(self) -> Float[Array, " C"]:
        """Background colour in `[0, 1]`, `(C,)`."""
        return jax.nn.sigmoid(self.raw_background)

    # -- rendering ------------------------------------------------------------------

    def alphas(
        self, points: Float[Array, "P 2"], *, pixel_size: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        """Opacity times coverage of every shape at every point, `(N, P)`."""
        edge_width = self.softness * pixel_size
        return self.opacities[:, None] * self.coverage(points, edge_width)

    def render(
        self, points: Float[Array, "P 2"], *, pixel_size: float | Float[Array, ""]
    ) -> Float[Array, "P C"]:
        """Composite the shapes back to front at `points`; see `AbstractModel.render`."""
        points = check_points(points)
        # A fused scan over shapes measured faster than the closed-form transmittance
        # product on CPU (it never materialises N x P arrays): 35 ms vs 45 ms fwd+bwd at
        # N=200, P=6554; 298 ms vs 558 ms on a full 256^2 grid.
        background, per_shape = self._split_background()

        def draw(image, shape):
            one = jax.tree.map(lambda x: x[None], shape)
            alpha = one.alphas(points, pixel_size=pixel_size)[0][:, None]
            return image + alpha * (one.colours[0] - image), None

        start = jnp.broadcast_to(background, (points.shape[0], self.num_channels))
        image, _ = jax.lax.scan(draw, start, per_shape)
        return image

    # -- helpers shared by every shape type -----------------------------------------

    def _geometry_fields(self) -> dict[str, Any]:
        shared = {"raw_colours", "raw_opacities", "raw_background", "softness"}
        return {
            name: getattr(self, name)
            for name in self.__dataclass_fields__  # pyright: ignore[reportAttributeAccessIssue]
            if name not in shared and eqx.is_array(getattr(self, name))
        }

    def _split_background(self):
        """(background colour, this set with the background removed) for per-shape maps."""
        without = eqx.tree_at(lambda m: m.raw_background, self, None)
        return self.background, without

    def take(self, indices: Array) -> AbstractShapes:
        """The sub-set of shapes at `indices` (in that order), same background."""
        background, per_shape = self._split_background()
        taken = jax.tree.map(lambda x: x[indices], per_shape)
        return eqx.tree_at(
            lambda m: m.raw_background,
            taken,
            self.raw_background,
            is_leaf=lambda x: x is None,
        )

    @classmethod
    def init(
        cls,
        n: int,
        *,
        key: PRNGKeyArray,
        target: Float[Array, "H W C"] | None = None,
        aspect: float = 1.0,
        size_range: tuple[float, float] = (0.03, 0.12),
        opacity: float = 0.6,
        softness: float = 1.0,
        channels: int = 3,
    ):
        """`n` shapes at random positions with random sizes.

        **Arguments:**

        - `n`: the number of shapes (>= 1).
        - `key`: a PRNG key (`jax.random.key(0)`); the same key gives the same set.
        - `target`: optional `(H, W, C)` image in `[0, 1]`. When given, the frame's
          aspect ratio and channel count come from it, each shape starts with the colour
          of the target's pixel under its centre and the background with the target's
          mean colour.
        - `aspect`: the frame's width over height when no target is given.
        - `size_range`: shape sizes (e.g. radii) are drawn log-uniformly from this
          range, in units of the image height.
        - `opacity`: the initial opacity of every shape, in (0, 1).
        - `softness`: the soft-edge width in pixels of the grid being rendered.
        - `channels`: colour channels when no target is given.

        **Returns:**

        A shape set of type `cls`.

        ```python
        model = dp.Circles.init(200, key=jax.random.key(0), target=target)
        ```
        """
        n = check_positive_int(n, "n")
        key = check_key(key)
        low, high = (float(v) for v in size_range)
        if not 0 < low <= high:
            raise ValueError(f"`size_range` must be (low, high) with 0 < low <= high; got {size_range}.")
        if not 0 < opacity < 1:
            raise ValueError(f"`opacity` must be in (0, 1); got {opacity}.")
        if target is not None:
            from ._image import check_image

            target = check_image(target, "target")
            height, width, channels = target.shape
            aspect = width / height
        k_pos, k_size, k_geom, k_colour = jax.random.split(key, 4)
        centres = jax.random.uniform(k_pos, (n, 2)) * jnp.array([aspect, 1.0])
        sizes = jnp.exp(jax.random.uniform(k_size, (n,), minval=np.log(low), maxval=np.log(high)))
        if target is None:
            colours = jax.random.uniform(k_colour, (n, channels), minval=0.2, maxval=0.8)
            background = jnp.full((channels,), 0.5)
        else:
            rows = jnp.clip((centres[:, 1] * height).astype(jnp.int32), 0, height - 1)
            cols = jnp.clip((centres[:, 0] * height).astype(jnp.int32), 0, width - 1)
            colours = target[rows, cols]
            background = jnp.mean(target, axis=(0, 1))
        geometry = cls.random_geometry(centres, sizes, key=k_geom)
        return cls(
            raw_colours=logit(colours),
            raw_opacities=jnp.full((n,), logit(opacity)),
            raw_background=logit(background),
            softness=float(softness),
            **geometry,
        )


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
    background = jnp.broadcast_to(
        check_float_array(background, "background"), (channels,)
    )
    if not is_traced(colours):
        for name, value in [("colours", colours), ("opacities", opacities), ("background", background)]:
            check_values(value, name, lower=0.0, upper=1.0)
    return logit(colours), logit(opacities), logit(background)
