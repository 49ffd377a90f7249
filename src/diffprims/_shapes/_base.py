"""The shape-set base: declared parameters, checks, constrained views, rendering.

A concrete shape type supplies only its geometry (see `AbstractShapes`); everything else
lives here once, or in the modules it delegates to: `_compositing` (the arithmetic of
each mode), `_render`/`_tiled` (the algorithms), `_build` (construction).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray
from typing_extensions import Self

from .._model import AbstractModel, check_unbatched
from .._validate import check_grid_shape, check_points
from . import _build, _protocol, _random, _render, _specs
from ._arguments import check_indices, check_pixel_size
from ._culling import CUTOFF
from ._roles import COLOUR, DEPTH, OPACITY, Role, declared_roles, parameter, role_metadata


class AbstractShapes(AbstractModel):
    """A set of `N` soft shapes composited back to front over a background colour.

    All shape types share this machinery: colour `(N, C)`, opacity `(N,)`, a background
    colour `(C,)`, a soft edge whose width is `softness` pixels of the grid being
    rendered, and compositing (`compositing=`):

    - `"over"` (default): a fixed depth order, shape 0 at the back, shape `N - 1` in
      front, equal to the naive loop

        ```python
        image = background
        for i in range(N):
            a = opacities[i] * coverage[i]
            image = (1 - a) * image + a * colours[i]
        ```

    - `"additive"`: `background + sum_i a_i colours[i]` (order free; over 1 if it sums so);
    - `"depth"`: a soft z-buffer (`raw_depths`, larger nearer), not "over": colours mixed by
      `a_i exp(depth_i)`, so a front shape hides as if opaque and its soft edge spreads.

    Build sets with `init` or a type's `from_values`; the constructor takes the stored `raw_*`
    fields, `softness`, `compositing` and `learn_background` (as for `init`). A new shape type
    subclasses this, declares its geometry as array fields with a leading axis `N` and a
    [`diffprims.Role`][] each (`dp.parameter(dp.roles.POSITION)`), and implements `coverage`,
    `bounds`, `random_geometry` and `svg_geometry`; see "Write your own shape" in the docs.
    """

    #: Whether coverage is < 1e-6 outside `bounds` grown by `edge_margin` edge widths (culling
    #: changes nothing); if False, "auto" renders with the scan and "tiled" is refused.
    tight_bounds: ClassVar[bool] = True
    #: Edge widths (`softness` px) culling grows `bounds` by: 14 for a `soft_edge` (< 1e-6
    #: there); 0 where coverage ignores the edge width and `bounds` hold it (`Gaussians`).
    edge_margin: ClassVar[float] = CUTOFF

    # `eqx.field` itself (not `parameter`) so type checkers see fields without defaults.
    raw_colours: Float[Array, "N C"] = eqx.field(metadata=role_metadata(COLOUR))
    raw_opacities: Float[Array, " N"] = eqx.field(metadata=role_metadata(OPACITY))
    raw_background: Float[Array, " C"] = eqx.field(metadata=role_metadata(COLOUR, per_shape=False))
    softness: float = eqx.field(static=True)
    compositing: str = eqx.field(static=True, default="over", kw_only=True)
    learn_background: bool = eqx.field(static=True, default=True, kw_only=True)
    raw_depths: Float[Array, " N"] | None = parameter(DEPTH, default=None, kw_only=True)

    def __check_init__(self):
        _build.check_set(self)

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

        An `(N, P)` float array (an int or bool one is refused: it has no gradient),
        vectorised over shapes and differentiable in every geometry parameter.
        """

    @abc.abstractmethod
    def bounds(self) -> Float[Array, "N 4"]:
        """Axis-aligned boxes `(x_min, y_min, x_max, y_max)` holding each shape, `(N, 4)`.

        Outside its box grown by `edge_margin` edge widths (`softness` pixels each) a
        shape's coverage must be below 1e-6: the tiled renderer skips pixels a shape does
        not touch. If your boxes are looser than that (or only approximate), set the class
        variable `tight_bounds = False` and `method="auto"` will use the scan.
        """

    @classmethod
    @abc.abstractmethod
    def random_geometry(
        cls, centres: Float[Array, "N 2"], sizes: Float[Array, " N"], *, key: PRNGKeyArray
    ) -> dict[str, Array]:
        """Geometry for `N` shapes at `centres` `(N, 2)` of about `sizes` `(N,)`.

        A `@classmethod` (used by `init`, `paint`); other random choices (angles, aspects)
        from `key`. Returns a dict: field name -> *value* (frame units, sizes > 0, radians),
        axis `N` first (`per_shape=False`: its declared shape), stored by its [`diffprims.Role`][].
        """

    @abc.abstractmethod
    def svg_geometry(self, edge_width: float) -> list[str]:
        """The shapes as SVG markup, for [`diffprims.to_svg`][].

        **Arguments:**

        - `edge_width`: the soft-edge width `w` in frame units (the model's coverage is
          `sigmoid(-d / w)` at signed distance `d`), or `0.0` for hard edges.

        **Returns:**

        `N` strings (back to front), each one shape in frame units (`y` 0→1 downwards, `x`
        0→W/H) with no colour or opacity: `to_svg` wraps each in a group setting `fill`
        and `color` (use `currentColor` for strokes and gradient stops) and `opacity`.
        For a soft edge (`edge_width > 0`), draw the shape grown by a range of distances
        with [`diffprims.svg_soft_edge`][] (as triangles, rectangles and ellipses do), or
        add `filter="url(#soft-edge)"`, a blur `to_svg` defines (close for shapes many
        `w` across; it rounds corners), to an element with no `transform` (or to a `<g>`
        around one). Called on concrete arrays, outside `jit`. A type with no SVG form
        raises `NotImplementedError`, and `to_svg` a `TypeError` naming it.

        ```python
        def svg_geometry(self, edge_width):
            def disc(x, y, r, t):  # grown by `t`
                return None if r + t <= 0 else f'<circle cx="{x}" cy="{y}" r="{r + t}"/>'
            discs = [functools.partial(disc, x, y, r) for (x, y), r in
                     zip(np.asarray(self.centres).tolist(), np.asarray(self.radii).tolist())]
            return [dp.svg_soft_edge(d, edge_width, self.softness) if edge_width else d(0.0)
                    for d in discs]
        ```
        """

    # -- declared parameters and constrained views -----------------------------------

    @classmethod
    def parameter_roles(cls) -> dict[str, Role]:
        """The [`diffprims.Role`][] of every array field, by field name.

        Fields declared without [`diffprims.parameter`][] count as `dp.roles.GEOMETRY`
        (stored as they are). `paint` picks learning rates from this, never from names."""
        return declared_roles(cls)

    def trainable(self, *kinds: str) -> Any:
        """A filter spec for `fit(..., trainable=...)`: train only some parts of the set.

        **Arguments:**

        - `kinds`: role kinds (`"position"`, `"size"`, `"angle"`, `"geometry"`,
          `"colour"`, `"opacity"`, `"depth"`) or groups: `"geometry"` (positions, sizes,
          angles and other geometry) and `"appearance"` (colours, background, opacities);
          none for every parameter. A background fixed by `learn_background=False` never
          trains.

        **Returns:**

        A pytree of bools shaped like this set.

        ```python
        spec = model.trainable("geometry")            # colours stay exactly as they are
        result = dp.fit(model, target, trainable=spec, steps=500)
        ```
        """
        return _specs.trainable_spec(self, kinds)

    def _fixed_parameters(self) -> Any:  # `learn_background=False`: weight decay too
        return None if self.learn_background else _specs.fields_spec(self, ["raw_background"])

    @property
    def num_shapes(self) -> int:
        """The number of shapes `N`."""
        return _build.num_shapes(self)

    @property
    def num_channels(self) -> int:
        """The number of colour channels `C` (3 for RGB)."""
        return self.raw_colours.shape[-1]

    @property
    def colours(self) -> Float[Array, "N C"]:
        """Colours in `[0, 1]`, `(N, C)`."""
        return COLOUR.value(self.raw_colours)

    @property
    def opacities(self) -> Float[Array, " N"]:
        """Opacities in `[0, 1]`, `(N,)`."""
        return OPACITY.value(self.raw_opacities)

    @property
    def background(self) -> Float[Array, " C"]:
        """Background colour in `[0, 1]`, `(C,)`; fixed (no gradient) unless `learn_background`."""
        background = COLOUR.value(self.raw_background)
        return background if self.learn_background else jax.lax.stop_gradient(background)

    @property
    def depths(self) -> Float[Array, " N"]:
        """Depth of each shape, `(N,)`, larger nearer the viewer: the learnable `raw_depths`
        under `compositing="depth"`, else the fixed order `0, 1, ..., N - 1` of "over"
        (additive compositing ignores it)."""
        order = jnp.arange(self.num_shapes, dtype=jnp.result_type(self.raw_colours, "f4"))
        return order if self.raw_depths is None else self.raw_depths  # None: a fixed order

    # -- rendering ------------------------------------------------------------------

    def alphas(
        self, points: Float[Array, "P 2"], *, pixel_size: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        """Opacity times coverage of every shape at each of `points` `(P, 2)`, `(N, P)`:
        soft edges `softness * pixel_size` wide (`pixel_size`: a pixel, frame units)."""
        edge_width = self.softness * pixel_size
        return self.opacities[:, None] * _protocol.coverage(self, points, edge_width)

    def render(
        self, points: Float[Array, "P 2"], *, pixel_size: float | Float[Array, ""], method="auto"
    ) -> Float[Array, "P C"]:
        """Composite the shapes at `points`; see [`diffprims.AbstractModel.render`][].

        `method` picks the algorithm; every one gives the naive loop's values and
        gradients (up to float rounding and edge tails below 1e-6):

        - `"scan"`: a fused `lax.scan` over shapes, every shape at every point.
        - `"tiled"`: neighbouring points share a list of the shapes whose bounds (grown
          by `edge_margin` edge widths) reach them, and draw only those; the backward pass
          recomputes instead of storing. Many times faster once shapes are small next to
          the frame (15-50x at 256^2 with 200 circles on CPU); first-order reverse mode
          only (`"scan"` for `jax.jvp`/`jacfwd`/`linearize`, `jax.grad` of `jax.grad`); not
          for `compositing="depth"`, nor for a type that sets `tight_bounds = False`.
        - `"auto"` (default): `"tiled"` from 8 shapes and 1024 points on, unless the
          compositing is `"depth"`, the type sets `tight_bounds = False`, or the call is
          differentiated in forward mode or twice (where it can be seen); else `"scan"`.
        """
        # In the parameters' dtype, at least float32: float64 points on a float32 set (or
        # the reverse, under jax_enable_x64) would otherwise change the scan carry's dtype.
        check_unbatched(self, "render")
        points = check_points(points).astype(jnp.promote_types(self.raw_colours.dtype, "f4"))
        points, pixel_size = check_pixel_size(points, pixel_size)
        method = _render.check_method(method, self.compositing, type(self))
        return _render.render_points_eager(self, points, pixel_size, method)

    def render_image(
        self, shape: tuple[int, ...], *, method: str = "auto", softness: Any = None
    ) -> Float[Array, "H W C"]:
        """Render on the full pixel grid of `shape = (H, W)`; see
        [`diffprims.AbstractModel.render_image`][]. `method` is as for `render`; the tiled
        path draws tiles of `8 x 8` pixels or more. `softness`, if given, is this render's
        edge width in pixels instead of the set's own (a static field: a set with another
        compiles anew); any value, traced too, is one compiled render: anneal it freely.

        ```python
        image = model.render_image((256, 256))                 # the fastest path
        image = model.render_image((256, 256), method="scan")  # the reference loop
        image = model.render_image((256, 256), softness=jnp.asarray(3.0))  # wider edges
        ```
        """
        check_unbatched(self, "render_image")
        shape = check_grid_shape(shape)
        method = _render.check_method(method, self.compositing, type(self))
        pixel_size = _render.grid_pixel_size(self, shape, softness)
        return _render.render_grid_eager(self, shape, method, pixel_size)

    # -- sub-sets and construction -------------------------------------------------

    def _fit_method(self, method: Any) -> str | None:
        return _render.fit_method(method, self)

    def partition_shapes(self) -> tuple[AbstractShapes, AbstractShapes]:
        """`(per_shape, rest)`, as `equinox.partition` splits a module.

        `per_shape` holds the fields with one row per shape (leading axis `N`, as
        declared by [`diffprims.parameter`][]) and `None` elsewhere; `rest` the others
        (the background). `equinox.combine(per_shape, rest)` gives the set back.
        Renderers scan over, or gather from, `per_shape`.
        """
        return eqx.partition(self, _specs.per_shape_spec(self))

    def take(self, indices: Int[ArrayLike, " K"]) -> Self:
        """The sub-set of shapes at `indices` (in that order), same background."""
        return _build.take(self, check_indices(indices, self.num_shapes))

    @classmethod
    def init(
        cls,
        n: int,
        *,
        key: PRNGKeyArray,
        target: Float[ArrayLike, "H W C"] | None = None,
        aspect: float = 1.0,
        size_range: tuple[float, float] | None = None,
        opacity: float = 0.6,
        softness: float = 1.0,
        channels: int = 3,
        compositing: str = "over",
        learn_background: bool = True,
    ) -> Self:
        """`n` shapes at random positions with random sizes.

        **Arguments:**

        - `n`: the number of shapes (>= 1).
        - `key`: a PRNG key (`jax.random.key(0)`); the same key gives the same set.
        - `target`: optional `(H, W, C)` image in `[0, 1]`. When given, the frame's
          aspect ratio and channel count come from it, each shape starts with the colour
          of the target's pixel under its centre and the background with the target's
          mean colour ("additive": both scaled down, so the sum starts as bright).
        - `aspect`: the frame's width over height when no target is given.
        - `size_range`: shape sizes (e.g. radii) are drawn log-uniformly from this
          range, in units of the image height. Default: `(0.03, 0.12)` times
          `min(1, sqrt(200 * aspect / n))`: any number of shapes covers the frame ~3x.
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
        return _random.random_set(
            cls, n, key=key, target=target, aspect=aspect, size_range=size_range,
            opacity=opacity, softness=softness, channels=channels, compositing=compositing,
            learn_background=learn_background,
        )  # fmt: skip

    @classmethod
    def raw_geometry(
        cls, centres: Float[Array, "N 2"], sizes: Float[Array, " N"], *, key: PRNGKeyArray
    ) -> dict[str, Array]:
        """`random_geometry` converted to stored parameters by the declared roles."""
        roles = cls.parameter_roles()
        values = _protocol.random_geometry(cls, centres, sizes, key)
        return {name: roles[name].raw(value) for name, value in values.items()}

    @classmethod
    def from_geometry(
        cls,
        geometry: dict[str, tuple[Any, ...]],
        colours: Any,
        opacities: Any,
        *,
        background: Any = 1.0,
        softness: float = 1.0,
        **options: Any,
    ) -> Self:
        """Build a set from given (constrained) values; the body of a `from_values`.

        **Arguments:**

        - `geometry`: field name -> `(argument name, value, trailing shape)`, e.g.
          `{"raw_centres": ("centres", centres, (2,))}`. Each value is a finite float
          array of shape `(N, *trailing)` (a `per_shape=False` field: of shape
          `trailing`); > 0 for a `"log"` role (>= 0 with a fourth element `True`), in
          `[0, 1]` for a `"logit"` role; stored through the field's declared role. The
          argument name is used in error messages.
        - `colours`, `opacities`, `background`, `softness`, `options`: as for
          [`diffprims.Circles.from_values`][].
        """
        args = (geometry, colours, opacities, background, softness, options)
        return _build.from_geometry(cls, *args)

    def with_compositing(self, mode: str, *, learn_background: bool | None = None) -> Self:
        """This set with another compositing mode (and optionally background learning).

        Switching to "depth" gives every shape a learnable depth that starts in the
        current order; from "depth" to "over" re-sorts the shapes back to front by their
        learned depth (the order a depth fit found, not its picture: see `compositing`).

        **Arguments:**

        - `mode`: "over", "additive" or "depth".
        - `learn_background`: if given, whether `fit` may change the background.

        **Returns:**

        A shape set of the same type.

        ```python
        model = dp.Circles.init(2, key=jax.random.key(0)).with_compositing("depth")
        ```
        """
        return _build.with_compositing(self, mode, learn_background)
