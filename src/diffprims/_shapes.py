"""The shape-set base: colour, opacity, soft edges, background and "over" compositing.

A concrete shape type supplies only its geometry (see `AbstractShapes`); everything else
lives here once.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import _render
from ._model import AbstractModel
from ._validate import (
    check_float_array,
    check_grid_shape,
    check_indices,
    check_key,
    check_pixel_size,
    check_points,
    check_positive_int,
    check_scalar,
    check_values,
    describe,
    is_traced,
)

# Constrained values are clipped this far inside (0, 1) before the inverse sigmoid, so a
# colour or opacity of exactly 0 or 1 gets a finite parameter.
_EPS = 1e-6

#: The compositing modes of a shape set; see `AbstractShapes`.
COMPOSITING_MODES = ("over", "additive", "depth")


def initial_depths(n: int) -> Array:
    """Learnable depths that start in index order, 0.5 apart (a gentle soft order)."""
    return 0.5 * jnp.arange(n, dtype=jnp.float32)


# Parameters are stored in units where one optimizer step of a given size moves every
# kind about equally usefully (Adam moves each parameter by about its learning rate):
# positions move a fifth of the step in frame units, log-sizes the step itself, colour
# and opacity logits three times it. Measured with `optax.adam(1e-2)`, 200 circles,
# 1000 steps at batch 0.1 on 256^2 photos: +1.0 dB (astronaut) and +0.8 dB (camera)
# over unscaled parameters; `dp.paint`'s separately tuned per-group rates agree.
POSITION_SCALE = 0.2
UNIT_SCALE = 3.0


def position(raw: Array) -> Array:
    """A position (frame units) from its stored parameter."""
    return POSITION_SCALE * raw


def raw_position(value: Any) -> Array:
    """The stored parameter of a position (frame units); inverse of `position`."""
    return jnp.asarray(value, jnp.float32) / POSITION_SCALE


def unit(raw: Array) -> Array:
    """A value in `[0, 1]` (colour, opacity) from its stored parameter."""
    return jax.nn.sigmoid(UNIT_SCALE * raw)


def raw_unit(p: Any) -> Array:
    """The stored parameter of a value in `[0, 1]`; inverse of `unit`, clipped so 0 and 1
    map to finite values."""
    p = jnp.clip(jnp.asarray(p, jnp.float32), _EPS, 1.0 - _EPS)
    return (jnp.log(p) - jnp.log1p(-p)) / UNIT_SCALE


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

    #: Whether each shape's coverage is below 1e-6 outside its `bounds` grown by 14 edge
    #: widths, so the tiled renderer's culling changes nothing; `method="auto"` uses the
    #: scan for shape types that set this to False.
    tight_bounds: ClassVar[bool] = True

    raw_colours: Float[Array, "N C"]
    raw_opacities: Float[Array, " N"]
    raw_background: Float[Array, " C"]
    softness: float = eqx.field(static=True)
    compositing: str = eqx.field(static=True, default="over", kw_only=True)
    learn_background: bool = eqx.field(static=True, default=True, kw_only=True)
    raw_depths: Float[Array, " N"] | None = eqx.field(default=None, kw_only=True)

    def __check_init__(self):
        for name in self.__dataclass_fields__:  # pyright: ignore[reportAttributeAccessIssue]
            leaf = getattr(self, name)
            if eqx.is_array(leaf) and not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(
                    f"`{name}` must be a float array (parameters are trained by `fit`); got "
                    f"{describe(leaf)}. Build shape sets with `init` or `from_values`."
                )
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
        if self.compositing not in COMPOSITING_MODES:
            raise ValueError(
                f"`compositing` must be one of {COMPOSITING_MODES}; got {self.compositing!r}."
            )
        if self.compositing == "depth":
            if self.raw_depths is None or jnp.shape(self.raw_depths) != (n,):
                raise ValueError(
                    f'compositing="depth" needs `raw_depths` of shape ({n},); got '
                    f"{None if self.raw_depths is None else jnp.shape(self.raw_depths)}. "
                    'Build the set with `init(..., compositing="depth")` or convert one with '
                    '`shapes.with_compositing("depth")`.'
                )
        elif self.raw_depths is not None:
            raise ValueError(
                f'`raw_depths` is only used with compositing="depth"; got it with '
                f"{self.compositing!r}. Use `shapes.with_compositing(...)` to switch modes."
            )

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

    @abc.abstractmethod
    def svg_geometry(self, edge_width: float) -> list[str]:
        """The shapes as SVG markup, for [`diffprims.to_svg`][].

        **Arguments:**

        - `edge_width`: the soft-edge width `w` in frame units (the model's coverage is
          `sigmoid(-d / w)` at signed distance `d`), or `0.0` for hard edges.

        **Returns:**

        `N` strings (back to front), each the SVG markup of one shape in frame units
        (`y` 0→1 top to bottom, `x` 0→W/H), with no colour or opacity: `to_svg` wraps
        each in a group that sets `fill` and `color` to the shape's colour (use
        `currentColor` for strokes and gradient stops) and its opacity. For a soft
        edge, add `filter="url(#soft-edge)"` to the element when `edge_width > 0`: a
        Gaussian blur with standard deviation `1.6 * edge_width` that `to_svg` defines
        (close to the sigmoid for shapes much larger than `w`), or draw the edge
        exactly, as `Circles` does with a radial gradient. Called on concrete arrays,
        outside `jit`.

        ```python
        def svg_geometry(self, edge_width):
            soft = ' filter="url(#soft-edge)"' if edge_width > 0 else ""
            return [f'<circle cx="{x:.6g}" cy="{y:.6g}" r="{r:.6g}"{soft}/>'
                    for (x, y), r in zip(np.asarray(self.centres), np.asarray(self.radii))]
        ```
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
        return unit(self.raw_colours)

    @property
    def opacities(self) -> Float[Array, " N"]:
        """Opacities in `[0, 1]`, `(N,)`."""
        return unit(self.raw_opacities)

    @property
    def background(self) -> Float[Array, " C"]:
        """Background colour in `[0, 1]`, `(C,)`; fixed (no gradient) unless `learn_background`."""
        background = unit(self.raw_background)
        return background if self.learn_background else jax.lax.stop_gradient(background)

    @property
    def depths(self) -> Float[Array, " N"]:
        """Depth of each shape, `(N,)`: larger is nearer the viewer.

        The learnable `raw_depths` under `compositing="depth"`; otherwise the fixed order
        `0, 1, ..., N - 1` of "over" (additive compositing ignores it).
        """
        if self.raw_depths is None:
            return jnp.arange(self.num_shapes, dtype=jnp.float32)
        return self.raw_depths

    # -- compositing ------------------------------------------------------------------
    # Every renderer (the naive scan below, tiled or culled paths) composites through
    # these three methods, one shape at a time in index order, so each mode is honoured
    # everywhere. "additive" and "depth" are order independent (culling-safe); "over"
    # needs shapes visited back to front (index order).

    def composite_start(self, num_points: int) -> Any:
        """The compositing state of `num_points` points before any shape is drawn."""
        colour = jnp.broadcast_to(self.background, (num_points, self.num_channels))
        if self.compositing == "depth":
            zeros = jnp.zeros((num_points,), colour.dtype)
            # (mix numerator, mix denominator, running max log-weight, transmittance)
            return (jnp.zeros_like(colour), zeros, zeros - 1e30, zeros + 1.0)
        return colour

    def composite_step(
        self, state: Any, alpha: Float[Array, " P"], colour: Float[Array, " C"], depth: Any
    ) -> Any:
        """Draw one shape (its `alpha` = opacity x coverage at each point) onto `state`."""
        if self.compositing == "over":
            return state + alpha[:, None] * (colour - state)
        if self.compositing == "additive":
            return state + alpha[:, None] * colour
        numerator, denominator, running, transmittance = state
        log_weight = jnp.log(alpha + 1e-30) + depth
        new = jax.lax.stop_gradient(jnp.maximum(running, log_weight))
        rescale, weight = jnp.exp(running - new), jnp.exp(log_weight - new)
        return (
            numerator * rescale[:, None] + weight[:, None] * colour,
            denominator * rescale + weight,
            new,
            transmittance * (1.0 - alpha),
        )

    def composite_stack(
        self,
        alphas: Float[Array, "K P"],
        colours: Float[Array, "K C"],
        depths: Float[Array, " K"],
    ) -> Float[Array, "P C"]:
        """Closed form of start/step/finish for `K` shapes at once (back to front).

        For renderers that gather a short list of shapes per tile: equal to drawing the
        `K` shapes one by one with `composite_step`. Padding entries need `alpha = 0`.
        """
        if self.compositing == "additive":
            return self.background + alphas.T @ colours
        keep = 1.0 - alphas
        if self.compositing == "over":
            # Transmittance through everything in front of each shape.
            behind = jnp.flip(jnp.cumprod(jnp.flip(keep, 0), 0), 0)
            in_front = jnp.concatenate([behind[1:], jnp.ones_like(keep[:1])], 0)
            return (alphas * in_front).T @ colours + behind[0][:, None] * self.background
        log_weights = jnp.log(alphas + 1e-30) + depths[:, None]
        weights = jnp.exp(log_weights - jax.lax.stop_gradient(jnp.max(log_weights, 0)))
        mix = (weights.T @ colours) / jnp.maximum(jnp.sum(weights, 0), 1e-30)[:, None]
        transmittance = jnp.prod(keep, 0)[:, None]
        return (1.0 - transmittance) * mix + transmittance * self.background

    def composite_finish(self, state: Any) -> Float[Array, "P C"]:
        """The composited `(P, C)` values from the final state."""
        if self.compositing != "depth":
            return state
        numerator, denominator, _, transmittance = state
        mix = numerator / jnp.maximum(denominator, 1e-30)[:, None]
        return (1.0 - transmittance)[:, None] * mix + transmittance[:, None] * self.background

    # -- rendering ------------------------------------------------------------------

    def alphas(
        self, points: Float[Array, "P 2"], *, pixel_size: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        """Opacity times coverage of every shape at every point, `(N, P)`."""
        edge_width = self.softness * pixel_size
        return self.opacities[:, None] * self.coverage(points, edge_width)

    def render(
        self,
        points: Float[Array, "P 2"],
        *,
        pixel_size: float | Float[Array, ""],
        method: str = "auto",
    ) -> Float[Array, "P C"]:
        """Composite the shapes at `points`; see [`diffprims.AbstractModel.render`][].

        `method` picks the algorithm; every one gives the naive loop's values and
        gradients (up to float rounding and edge tails below 1e-6):

        - `"scan"`: a fused `lax.scan` over shapes, every shape at every point.
        - `"tiled"`: neighbouring points share a list of the shapes whose bounds (grown
          by 14 edge widths) reach them, and draw only those; the backward pass
          recomputes instead of storing. Many times faster once shapes are small next to
          the frame (15-50x at 256^2 with 200 circles on CPU); reverse-mode only (use
          `"scan"` for `jax.jvp`/`jacfwd`); not available for `compositing="depth"`.
        - `"auto"` (default): `"tiled"` from 8 shapes and 1024 points on, unless the
          compositing is `"depth"` or the shape type sets `tight_bounds = False`; else
          `"scan"`.
        """
        # In the parameters' dtype: float64 points on a float32 set (or the reverse, under
        # jax_enable_x64) would otherwise change the compositing carry's dtype mid-scan.
        points = check_points(points).astype(self.raw_colours.dtype)
        points, pixel_size = check_pixel_size(points, pixel_size)
        method = _render.check_method(method, self)
        return _render.render_points(self, points, pixel_size, method)

    def render_image(
        self, shape: tuple[int, int], *, method: str = "auto"
    ) -> Float[Array, "H W C"]:
        """Render on the full pixel grid of `shape = (H, W)`; see
        [`diffprims.AbstractModel.render_image`][].

        `method` is as for `render`; the tiled path draws `8 x 8`-pixel tiles.

        ```python
        image = model.render_image((256, 256))                 # fastest exact path
        image = model.render_image((256, 256), method="scan")  # the reference loop
        ```
        """
        shape = check_grid_shape(shape)
        method = _render.check_method(method, self)
        return _render.render_grid(self, shape, method)

    # -- helpers shared by every shape type -----------------------------------------

    def _geometry_fields(self) -> dict[str, Any]:
        shared = {"raw_colours", "raw_opacities", "raw_background", "softness", "raw_depths"}
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
        indices = check_indices(indices, self.num_shapes)
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
        compositing: str = "over",
        learn_background: bool = True,
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
        - `compositing`: "over" (back to front in index order), "additive" or "depth"
          (learnable depth order); see [`diffprims.AbstractShapes`][].
        - `learn_background`: whether `fit` may change the background colour.

        **Returns:**

        A shape set of type `cls`.

        ```python
        model = dp.Circles.init(200, key=jax.random.key(0), target=target)
        ```
        """
        n = check_positive_int(n, "n")
        key = check_key(key)
        try:
            low, high = (float(v) for v in size_range)
        except (TypeError, ValueError):
            raise TypeError(
                f"`size_range` must be a pair (low, high) of numbers; got {size_range!r}."
            ) from None
        if not 0 < low <= high < np.inf:
            raise ValueError(
                f"`size_range` must be (low, high) with 0 < low <= high; got {size_range}."
            )
        opacity = check_scalar(opacity, "opacity", lower=0.0, upper=1.0)
        aspect = check_scalar(aspect, "aspect", lower=0.0, hint=" It is the frame's W / H.")
        channels = check_positive_int(channels, "channels")
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
        # One dtype for every parameter (random draws are float64 under jax_enable_x64).
        geometry = {name: jnp.asarray(value, jnp.float32) for name, value in geometry.items()}
        return cls(
            raw_colours=raw_unit(colours),
            raw_opacities=jnp.full((n,), raw_unit(opacity)),
            raw_background=raw_unit(background),
            softness=float(softness),
            compositing=compositing,
            learn_background=bool(learn_background),
            raw_depths=initial_depths(n) if compositing == "depth" else None,
            **geometry,
        )

    @classmethod
    def from_parameters(
        cls,
        colours: Any,
        opacities: Any,
        background: Any,
        softness: float,
        options: dict[str, Any],
        **raw_geometry: Array,
    ):
        """Build a set from constrained colour values and unconstrained geometry.

        For `from_values` of a shape type: checks and converts `colours`, `opacities`
        and `background`, and applies the keyword `options` (`compositing`,
        `learn_background`, and `depths` for `compositing="depth"`).
        """
        unknown = set(options) - {"compositing", "learn_background", "depths"}
        if unknown:
            raise TypeError(
                f"Unexpected keyword argument(s) {sorted(unknown)}; expected `compositing`, "
                "`learn_background` or `depths`."
            )
        n = jnp.shape(next(iter(raw_geometry.values())))[0]
        raw_colours, raw_opacities, raw_background = shared_values(
            colours, opacities, background, n
        )
        compositing = options.get("compositing", "over")
        depths = options.get("depths")
        if depths is not None:
            depths = check_float_array(depths, "depths", ndim=1)
        elif compositing == "depth":
            depths = initial_depths(n)
        return cls(
            raw_colours=raw_colours,
            raw_opacities=raw_opacities,
            raw_background=raw_background,
            softness=float(softness),
            compositing=compositing,
            learn_background=bool(options.get("learn_background", True)),
            raw_depths=depths,
            **{k: jnp.asarray(v, jnp.float32) for k, v in raw_geometry.items()},
        )

    def with_compositing(self, mode: str, *, learn_background: bool | None = None):
        """This set with another compositing mode (and optionally background learning).

        Switching to "depth" gives every shape a learnable depth that starts in the
        current order; switching from "depth" to "over" re-sorts the shapes back to
        front by their learned depth, so a depth fit hands over to an "over" fit.

        **Arguments:**

        - `mode`: "over", "additive" or "depth".
        - `learn_background`: if given, whether `fit` may change the background.

        **Returns:**

        A shape set of the same type.

        ```python
        model = dp.Circles.init(2, key=jax.random.key(0)).with_compositing("depth")
        ```
        """
        if mode not in COMPOSITING_MODES:
            raise ValueError(f"`mode` must be one of {COMPOSITING_MODES}; got {mode!r}.")
        shapes = self
        if self.compositing == "depth" and mode == "over":
            shapes = self.take(jnp.argsort(self.depths))
        depths = None
        if mode == "depth":
            depths = (
                shapes.raw_depths
                if shapes.raw_depths is not None
                else initial_depths(shapes.num_shapes)
            )
        learn = self.learn_background if learn_background is None else bool(learn_background)
        return dataclasses.replace(
            shapes, compositing=mode, learn_background=learn, raw_depths=depths
        )


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
            raise ValueError(f"`{name}` must have shape ({expected}); got {value.shape}.")
        n = value.shape[0]
        if n < 1:
            raise ValueError(f"`{name}` must hold at least one shape; got shape {value.shape}.")
        value = check_values(value, name)
        if lower is not None:
            if is_traced(value):
                message = f"`{name}` must be > {lower}."
                value = eqx.error_if(value, jnp.any(value <= lower), message)
            elif np.any(np.asarray(value) <= lower):
                raise ValueError(
                    f"`{name}` must be > {lower}; got a minimum of {float(value.min()):.4g}."
                )
        out[name] = jnp.asarray(value, jnp.float32)
    return out


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
    return raw_unit(colours), raw_unit(opacities), raw_unit(background)
