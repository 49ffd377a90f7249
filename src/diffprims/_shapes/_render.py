"""Rendering shape sets: the naive scan, and the choice between it and the tiled path.

Both paths composite the same shapes in the same order with the same arithmetic as the
naive back-to-front loop (`_compositing`), so they agree up to float rounding and the
soft-edge tails culling drops (below `sigmoid(-CUTOFF)` < 1e-6 per shape).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._derivatives import differentiating, differentiation_order
from .._errors import memory_for
from .._model import pixel_centres
from .._validate import check_scalar, inside_trace, is_traced, runtime_check, upcast_floats
from . import _compositing
from ._arguments import check_finite_model, checked_render
from ._bounds_probe import check_user_type
from ._tiled import render_image_tiled, render_points_tiled

#: Rendering paths a user can ask for; "auto" picks one per call (see `render_points`).
METHODS = ("auto", "scan", "tiled")
#: "auto" uses the tiled path from this many shapes and points on.
AUTO_MIN_SHAPES = 8
AUTO_MIN_POINTS = 1024
#: Tiled `render`: neighbouring points per culling group, and groups per chunk. Fewer,
#: larger groups (each culls against a box of 32 points) spend less on list bookkeeping
#: than they lose to shapes that cover only part of the box; 1024 points a chunk keeps
#: a chunk's pictures in cache (2048 took twice as long). On a 2-core CPU, a step's
#: forward and backward against 8 x 64: 1.15 to 1.6 times faster from 50 to 1000
#: circles and 1024 to 16384 points, stratified or uniform (260 circles, 4096 points:
#: 4.7 -> 3.5 ms); `paint`'s 1800 steps 9.2 -> 6.9 s.
POINT_GROUP = 32
POINT_CHUNK = 32
#: Tiled `render_image`: tiles per chunk.
IMAGE_CHUNK = 16


#: (shape, point) pairs past which the scan's gradient keeps one picture per block of
#: shapes, not per shape (64 MB of float32 RGB pictures).
REMAT_PAIRS = 1 << 22


def render_scan(
    model, points: Float[Array, "P 2"], pixel_size, below: Array | None = None
) -> Float[Array, "P C"]:
    """The naive loop: a fused `lax.scan` over every shape, in index order, over the
    set's background or, given, the picture `below` `(P, C)` (stacked layers).

    A fused scan measured faster than the closed-form transmittance product on CPU (it
    never materialises `N x P` arrays), and it is the reference every path must equal.
    Its gradient stores the picture behind every shape, or past `REMAT_PAIRS` (shape,
    point) pairs only the picture behind every block of about `sqrt(N)` shapes, each
    block redrawn in the backward pass (stored per shape, 1000 circles at 512^2 planned
    9 GB of temporaries, "depth" 12 GB; by block 0.4 GB).
    """
    per_shape, rest = model.partition_shapes()
    mode = model.compositing
    background = model.background if below is None else below

    def draw(state, shape):
        one = eqx.combine(jax.tree.map(lambda x: x[None], shape), rest)
        alpha = one.alphas(points, pixel_size=pixel_size)[0]
        return _compositing.step(mode, state, alpha, one.colours[0], one.depths[0]), None

    def scan(state, shapes):
        return jax.lax.scan(draw, state, shapes)[0]

    state = _compositing.start(mode, background, points.shape[0])
    n = model.num_shapes
    whole = 0  # shapes drawn in checkpointed blocks
    if n * points.shape[0] > REMAT_PAIRS and n >= 4:
        block = math.isqrt(n)
        whole = n - n % block
        blocks = jax.tree.map(lambda x: x[:whole].reshape(-1, block, *x.shape[1:]), per_shape)
        step = jax.checkpoint(scan)  # a block's pictures are redrawn, not stored
        state = jax.lax.scan(lambda s, b: (step(s, b), None), state, blocks)[0]
    state = scan(state, jax.tree.map(lambda x: x[whole:], per_shape))
    return _compositing.finish(mode, state, background)


# -- path choice ------------------------------------------------------------------------


def check_method(method: Any, compositing: str, kind: type | None = None) -> str:
    """`method` validated against a set's `compositing` and its type `kind` (whose
    `tight_bounds` the tiled renderer needs): one of `METHODS`."""
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {METHODS}; got {method!r}. Leave it at 'auto' to let "
            "diffprims pick the fastest path (the scan's values up to edge tails under 1e-6)."
        )
    if method == "tiled" and compositing == "depth":
        raise ValueError(
            'method="tiled" cannot render compositing="depth": its soft depth weights let '
            "a far-away shape's faint edge outweigh the shapes under a pixel, so culling "
            'would change the image. Use method="scan" (or "auto").'
        )
    if method == "tiled" and kind is not None and not kind.tight_bounds:
        raise ValueError(
            f'method="tiled" draws each shape only inside its `bounds()`; got the type '
            f"{kind.__name__}, which sets `tight_bounds = False` (its boxes may not hold its "
            'shapes). Use method="scan" (or "auto"), or set `tight_bounds = True` if its '
            "boxes, grown by `edge_margin` edge widths, do hold them."
        )
    return method


def fit_method(method: Any, model) -> str | None:
    """`fit`'s renderer for a shape set: `method` checked; unset or "auto", "scan" when
    the fit itself is being differentiated (second order, or forward over reverse: the
    tiled renderer's hand-written backward pass is first-order only), else the default
    (None: "auto" and unset share one compiled step)."""
    if method is None or (isinstance(method, str) and method == "auto"):
        return "scan" if differentiating() else None
    return check_method(method, model.compositing, type(model))


def _first_order_only() -> bool:
    """Whether the tiled path's gradient, reverse mode and first order only (a custom
    VJP whose backward pass loops a number of times known at run time), cannot serve:
    forward mode anywhere around (`jax.jacfwd`, `jax.jvp`, `jax.hessian`) or a second
    reverse-mode derivative (`jax.grad(jax.grad(f))`), where it can be seen."""
    return differentiating(forward=True) or differentiation_order() > 1


def _use_tiles(model, num_points: int, method: str) -> bool:
    if method == "tiled" and _first_order_only():
        raise ValueError(
            'method="tiled" has a first-order reverse-mode gradient only (a custom VJP); '
            "got a forward-mode derivative (`jax.jacfwd`, `jax.jvp`, `jax.hessian`) or a "
            'second derivative (`jax.grad` of `jax.grad`). Use method="scan", or "auto", '
            "which takes the scan there."
        )
    if method != "auto":
        tiles = method == "tiled"
    else:
        # Culling pays once there are enough shapes and points to skip; "depth" is not
        # culling-safe (see check_method). Under derivatives the tiled path cannot take
        # (called eagerly or traced inside them), "auto" takes the scan.
        tiles = (
            not _first_order_only()
            and model.compositing != "depth"
            and model.tight_bounds
            and model.num_shapes >= AUTO_MIN_SHAPES
            and num_points >= AUTO_MIN_POINTS
        )
    # A user type's coverage must be in [0, 1], and its boxes must not cut its shapes
    # off where tiles trust them (probed once per type).
    check_user_type(type(model), _edge_margin(type(model)), tiles)
    return tiles


def _edge_margin(cls: type) -> float:
    """`cls.edge_margin`, checked: a number of edge widths >= 0."""
    margin = cls.edge_margin
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not margin >= 0:
        raise ValueError(
            f"{cls.__name__}.edge_margin must be a number of edge widths >= 0 by which the "
            f"tiled renderer grows each box (14.0, the default, for a soft edge); got "
            f"{margin!r}."
        )
    return float(margin)


def render_points(model, points, pixel_size, method: str = "auto", below=None):
    """`AbstractShapes.render`: the scan or the tiled path at arbitrary points, over the
    set's background or the picture `below` `(P, C)`."""
    if _use_tiles(model, points.shape[0], method):
        return render_points_tiled(model, points, pixel_size, POINT_GROUP, POINT_CHUNK, below)
    return render_scan(model, points, pixel_size, below)


def render_grid(
    model, shape: tuple[int, int], method: str = "auto", pixel_size: Any = None, below=None
):
    """`AbstractShapes.render_image`: the scan or the tiled path on a pixel grid (edges
    scaled by `pixel_size`, a pixel's `1 / H` by default), over the set's background or
    the picture `below` `(H, W, C)`."""
    height, width = shape
    pixel_size = 1.0 / height if pixel_size is None else pixel_size
    if _use_tiles(model, height * width, method):
        tile = image_tile(shape, model.num_shapes)
        return render_image_tiled(model, shape, tile, IMAGE_CHUNK, pixel_size, below)
    # In the parameters' precision, as `render` casts them: float32 points set the scan
    # carry's dtype, and a float64 set's render (and finite differences) lost precision.
    dtype = jnp.promote_types(model.raw_colours.dtype, "f4")
    points = pixel_centres(shape).reshape(-1, 2).astype(dtype)
    if below is not None:
        below = below.reshape(height * width, -1)
    return render_scan(model, points, pixel_size, below).reshape(height, width, -1)


# -- eager calls ------------------------------------------------------------------------
# Called outside a `jit`, `render`/`render_image` run one compiled program, cached by
# equinox on the model's structure and the shapes (the same call eagerly op by op costs
# ~200x more), also under an eager `jax.grad`/`jax.vmap`. Inside a `jit` they trace inline.


@eqx.filter_jit
def _points_compiled(model, points, pixel_size, method):
    return render_points(model, points, pixel_size, method)


@eqx.filter_jit
def _grid_compiled(model, shape, method, pixel_size):
    return render_grid(model, shape, method, pixel_size)


def render_points_eager(model, points, pixel_size, method: str = "auto"):
    """`render_points` through the compiled cache unless inside a `jit` (half-precision
    parameters in float32)."""
    bad = check_finite_model(model)
    model = upcast_floats(model)
    if inside_trace():
        return checked_render(render_points(model, points, pixel_size, method), bad)
    # An array, so each pixel size is not a new compile (equinox keys on Python scalars).
    pixel_size = jnp.asarray(pixel_size, points.dtype)
    method = resolved_method(model, points.shape[0], method)
    with memory_for(f"Rendering {points.shape[0]} points", "Render fewer points a call."):
        return _points_compiled(model, points, pixel_size, method)


def render_grid_eager(model, shape: tuple[int, int], method: str = "auto", pixel_size=None):
    """`render_grid` through the compiled cache unless inside a `jit` (half-precision
    parameters in float32)."""
    bad = check_finite_model(model)
    model = upcast_floats(model)
    if inside_trace():
        return checked_grid(render_grid(model, shape, method, pixel_size), bad, (pixel_size,))
    method = resolved_method(model, shape[0] * shape[1], method)
    with memory_for(f"Rendering a {shape[0]} x {shape[1]} image", _SMALLER):
        return _grid_compiled(model, shape, method, pixel_size)


def checked_grid(out: Array, bad: Array | None, pixel_sizes: tuple) -> Array:
    """`out`, a traced render on a grid, with the checks of the parameters (`bad`, from
    `check_finite_model`) and of a traced `softness` riding on it: on `out`, as a type
    without soft edges (Gaussians) never uses the pixel size, and a check on that was
    dropped with it."""
    out = checked_render(out, bad)
    traced = [size for size in pixel_sizes if size is not None and is_traced(size)]
    if not traced:
        return out
    sizes = jnp.stack(traced)
    bad_size = jnp.any(~jnp.isfinite(sizes) | (sizes <= 0))
    return runtime_check(out, bad_size, f"`softness` must be a finite number > 0.{_SOFTNESS_HINT}")


_SMALLER = (
    "Render a smaller image, or the image in parts: `model.render(points)` on the pixel "
    "centres of each part (`dp.pixel_centres`)."
)


def grid_pixel_size(model, shape: tuple[int, int], softness: Any) -> Any:
    """The pixel size that draws `model`'s edges `softness` pixels wide on a grid of
    `shape` (None: its own `softness`), as an array: every value one compiled render."""
    if softness is None:
        return None
    softness = check_scalar(softness, "softness", lower=0.0, hint=_SOFTNESS_HINT)
    dtype = jnp.promote_types(model.raw_colours.dtype, "f4")
    return jnp.asarray(softness, dtype) / (model.softness * shape[0])


_SOFTNESS_HINT = " It is the soft edges' width in pixels for this render (None: the set's own)."


def resolved_method(model, num_points: int, method: str) -> str:
    """The method, "tiled" or "scan", chosen here: under an eager `jax.grad`, `jax.vmap` or
    `jax.jacfwd` the call still runs one cached program (traced inline, it compiled
    anew every call: 1.4 s a gradient at 256^2), and the derivative around it is seen
    here, where the compiled program's cached trace would not see it again."""
    return "tiled" if _use_tiles(model, num_points, method) else "scan"


def image_tile(shape: tuple[int, int], num_shapes: int) -> int:
    """Tile side for `render_image`: 8 pixels, larger when counting overlaps would cost
    more than drawing: over 2^30 tile-shape pairs, or 2^29 with fewer shapes than tiles
    (where small tiles save less drawing). A jitted gradient of 50k circles at 512^2
    took 4.2 s on 8-pixel tiles, 11.3 s on 16, at 1024^2 11.7 s and 13.5 s; 9000
    circles of 4 to 16 pixels at 2048^2 13.2 s on 8, 8.1 s on 16."""
    tiles = math.ceil(shape[0] / 8) * math.ceil(shape[1] / 8)
    limit = 1 << (29 if num_shapes < tiles else 30)
    tile = 8
    while (
        tile < 64 and math.ceil(shape[0] / tile) * math.ceil(shape[1] / tile) * num_shapes > limit
    ):
        tile *= 2
    return tile
