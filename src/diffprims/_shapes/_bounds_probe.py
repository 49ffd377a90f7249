"""A user shape type's `coverage` checked to lie in [0, 1], and its `bounds()` against its
`coverage` before tiles trust them.

The tiled renderer skips every pixel outside a shape's box grown by its type's
`edge_margin` edge widths. A box too small (a radius where a diameter was meant, x and y
swapped, min and max swapped) would cut the shape off in silence, so the first time a
shape type from outside the library renders, a few probe shapes are drawn on a grid
wider than the frame: their coverage must lie in [0, 1] and, where the tiled path takes
the type, be negligible outside the grown boxes. Types of this library are tested
instead (their first render pays nothing).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._model import is_diffprims
from .._validate import trusted
from ._build import placed
from ._protocol import _GUIDE, bounds, coverage

#: Probe shapes across the frame, from a few pixels to half the frame (five: a `bounds`
#: of shape `(4, N)` is not mistaken for `(N, 4)`), drawn with two edge widths (frame
#: units): a pixel of a 256-pixel image, and of a 32-pixel one (or 8 pixels' softness),
#: as culling grows the boxes by edge widths (a box padded by a fixed amount held its
#: shape at the first and cut 0.06 off at the second).
_CENTRES = np.array([[0.5, 0.5], [0.1, 0.2], [0.9, 0.7], [0.3, 0.8], [0.7, 0.25]], np.float32)
_SIZES = np.array([0.3, 0.05, 0.15, 0.02, 0.08], np.float32)
_EDGES = (1.0 / 256, 1.0 / 32)
#: The grid the coverage is probed on: wider than the frame, a point every 2/3 pixel,
#: in blocks of `_BLOCK` points (a type's coverage may hold several values a point: all
#: 147k points at once took 2 GB for a 64-pointed star).
_GRID = np.linspace(-0.5, 1.5, 384, dtype=np.float32)
_BLOCK = 4096
#: Coverage outside [0, 1] by more than this is a mistake (not float rounding).
_RANGE = 1e-3
#: Coverage above this outside a grown box is a box too small (the contract is 1e-6;
#: the margin leaves room for float rounding in a user's distance; 1e-3 let a Gaussian
#: cut at 4 sigma through, 6e-5 off the scan).
_LEAK = 1e-5


@functools.partial(jax.jit, static_argnums=0)
@trusted  # probe shapes only; their values are checked by `init` and `paint`
def _compiled_shapes(cls: type) -> Any:
    return _shapes(cls)


def _shapes(cls: type) -> Any:
    colours, background = jnp.full((len(_SIZES), 3), 0.5), jnp.ones((3,))
    return placed(cls, jnp.asarray(_CENTRES), jnp.asarray(_SIZES), colours, background,
                  key=jax.random.key(0), opacity=1.0, softness=1.0)  # fmt: skip


def _probe_shapes(cls: type) -> Any:
    """The probe shapes, concrete (compiled, they are so inside a user's `jit` or `grad`
    too); eagerly where the type's `random_geometry` needs values (as its `init` runs),
    inside a trace too (its inputs are constants; skipped there, the check was skipped
    for good, as it is cached); None where it cannot make them (`init` says why)."""
    try:
        return _compiled_shapes.lower(cls).compile()()
    except Exception:  # a type's own checks may refuse shapes it never makes (an assert)
        pass
    try:
        with jax.ensure_compile_time_eval():
            return trusted(_shapes)(cls)
    except Exception:
        return None


@functools.partial(jax.jit, static_argnums=1)
@trusted  # probe shapes only; the values are checked by the caller
def _probe(shapes: Any, cutoff: float) -> tuple[Any, ...]:
    x, y = jnp.meshgrid(jnp.asarray(_GRID), jnp.asarray(_GRID))
    boxes = bounds(shapes)
    # And a block of the points a grid misses: the shapes' centres (where a distance is
    # 0: `paint` seeds shapes on pixel centres) and their boxes' centres and corners.
    corners = boxes[:, jnp.array([[0, 1], [2, 1], [0, 3], [2, 3]])].reshape(-1, 2)
    special = jnp.concatenate([jnp.asarray(_CENTRES), (boxes[:, :2] + boxes[:, 2:]) / 2, corners])
    special = jnp.where(jnp.isfinite(special), special, 0.5)  # unbounded boxes (not tight)
    points = jnp.concatenate(
        [jnp.stack([x.ravel(), y.ravel()], axis=-1), jnp.resize(special, (_BLOCK, 2))]
    )

    def block(points):  # per block: each shape's worst leak, the extremes, a NaN
        covers, leaks = [], []
        for edge in _EDGES:  # the block's points once per edge width
            grown = boxes + cutoff * edge * jnp.asarray([-1.0, -1.0, 1.0, 1.0])
            inside = (
                (points[None, :, 0] >= grown[:, None, 0])
                & (points[None, :, 1] >= grown[:, None, 1])
                & (points[None, :, 0] <= grown[:, None, 2])
                & (points[None, :, 1] <= grown[:, None, 3])
            )
            covers.append(coverage(shapes, points, edge))
            leaks.append(jnp.where(inside, 0.0, covers[-1]))
        cover, leak = jnp.concatenate(covers, 1), jnp.concatenate(leaks, 1)
        points = jnp.concatenate([points] * len(_EDGES))
        at = jnp.argmin(cover, axis=1), jnp.argmax(cover, axis=1), jnp.argmax(leak, axis=1)
        values = cover.min(1), cover.max(1), leak.max(1), jnp.isnan(cover).any(1)
        where = tuple(points[i] for i in (*at, jnp.argmax(jnp.isnan(cover), axis=1)))
        return values, where  # (N,) each, (N, 2) each

    (low, high, leak, nan), where = jax.lax.map(block, points.reshape(-1, _BLOCK, 2))
    pick = jnp.argmin(low, 0), jnp.argmax(high, 0), jnp.argmax(leak, 0), jnp.argmax(nan, 0)
    take = lambda v, b: v[b, jnp.arange(v.shape[1])]  # noqa: E731  # (K, N) -> (N,) at b
    found = [take(v, b) for v, b in zip((low, high, leak, nan), pick, strict=True)]
    places = [take(w, b) for w, b in zip(where, pick, strict=True)]
    return boxes, found, places


@functools.cache
def check_user_type(cls: type, cutoff: float, tiled: bool) -> None:
    """A `ValueError` if a shape type from outside the library gives coverage outside
    `[0, 1]` (NaN too) or (`tiled`) declares tight bounds that cut its probe shapes off;
    once per type and path. An error of its `coverage` or `bounds` on the probe shapes
    is raised here, naming the method (a render draws one shape at a time, where a
    mistake with several shapes need not show)."""
    ours = is_diffprims(cls)
    if ours or not hasattr(cls, "raw_geometry"):
        return
    shapes = _probe_shapes(cls)
    # Probe shapes outside what the type can make (a geometry that is NaN at their size)
    # say nothing of its coverage.
    if shapes is None or not all(np.all(np.isfinite(x)) for x in jax.tree.leaves(shapes)):
        return
    # Compiled, it runs on concrete values even inside a user's `jit` or `grad`.
    try:
        probed = jax.device_get(_probe.lower(shapes, cutoff).compile()(shapes))
    except (TypeError, ValueError) as error:  # named by `_protocol`; say where it was met
        if type(error) not in (TypeError, ValueError):  # a class of its own: kept as it is
            raise
        raise type(error)(
            f"{error} (Met on the {len(_SIZES)} probe shapes diffprims draws on the first "
            f"render of a new shape type, to check its coverage and bounds.)"
        ) from error
    boxes, (low, high, leaks, nan), (at_low, at_high, where, at_nan) = probed
    name = f"{cls.__name__}.coverage(points, edge_width)"
    if np.any(nan):
        i = int(np.argmax(nan))
        raise ValueError(
            f"{name} must return values in [0, 1]; a probe shape at ({_CENTRES[i, 0]:g}, "
            f"{_CENTRES[i, 1]:g}) of size {_SIZES[i]:g} gives NaN at "
            f"({at_nan[i, 0]:.3g}, {at_nan[i, 1]:.3g}). Look for 0 / 0 or a square root "
            "of 0 (at the centre, on an edge): `jnp.sqrt(squared + 1e-20)` stays finite, "
            f"its gradient too.{_GUIDE}"
        )
    i, j = int(np.argmin(low)), int(np.argmax(high))
    if low[i] < -_RANGE or high[j] > 1 + _RANGE:
        value, (px, py) = (low[i], at_low[i]) if low[i] < -_RANGE else (high[j], at_high[j])
        raise ValueError(
            f"{name} must return values in [0, 1] (how much of each point a shape covers); "
            f"a probe shape gives {value:.3g} at ({px:.3g}, {py:.3g}). Pass a signed "
            "distance through `dp.soft_edge(distance, edge_width)` (a sigmoid, in [0, 1]) "
            f"rather than returning the distance itself.{_GUIDE}"
        )
    if not (tiled and cls.tight_bounds):
        return
    worst = int(np.argmax(leaks))
    if not leaks[worst] > _LEAK:
        return
    box = ", ".join(f"{v:.3g}" for v in boxes[worst])
    (cx, cy), (px, py) = _CENTRES[worst], where[worst]
    raise ValueError(
        f"{cls.__name__}.bounds() must hold each shape: the tiled renderer skips pixels "
        f"outside the box grown by {cutoff:g} edge widths (`edge_margin`), and a probe shape at "
        f"({cx:g}, {cy:g}) of size {_SIZES[worst]:g} covers {leaks[worst]:.3g} at "
        f"({px:.3g}, {py:.3g}), outside its box ({box}) (x_min, y_min, x_max, y_max), with "
        "edges 1/256 or 1/32 of the frame wide (coverage there must be under 1e-6). "
        "Return boxes that hold the whole shape (with a soft edge, keep the default "
        "`edge_margin = 14.0`), or set the class variable `tight_bounds = False` "
        '(method="auto" then renders it with the scan).'
        f"{_GUIDE}"
    )
