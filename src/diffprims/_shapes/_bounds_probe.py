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

from .._validate import trusted
from ._build import placed
from ._protocol import bounds, coverage

#: Probe shapes across the frame, from a few pixels to half the frame; their edge width
#: (frame units) is a pixel of a 256-pixel image.
_CENTRES = np.array([[0.5, 0.5], [0.1, 0.2], [0.9, 0.7], [0.3, 0.8]], np.float32)
_SIZES = np.array([0.3, 0.05, 0.15, 0.02], np.float32)
_EDGE = 1.0 / 256
#: The grid the coverage is probed on: wider than the frame, a point every 2/3 pixel.
_GRID = np.linspace(-0.5, 1.5, 384, dtype=np.float32)
#: Coverage above this outside a grown box is a box too small (the contract is 1e-6;
#: the margin leaves room for float rounding in a user's distance).
_LEAK = 1e-3


@functools.partial(jax.jit, static_argnums=(0, 1))
@trusted  # probe shapes only; the values are checked by the caller
def _probe(cls: type, margin: float) -> tuple[Any, ...]:
    colours, background = jnp.full((len(_SIZES), 3), 0.5), jnp.ones((3,))
    shapes = placed(cls, jnp.asarray(_CENTRES), jnp.asarray(_SIZES), colours, background,
                    key=jax.random.key(0), opacity=1.0, softness=1.0)  # fmt: skip
    x, y = jnp.meshgrid(jnp.asarray(_GRID), jnp.asarray(_GRID))
    points = jnp.stack([x.ravel(), y.ravel()], axis=-1)
    boxes = bounds(shapes)
    grown = boxes + margin * jnp.asarray([-1.0, -1.0, 1.0, 1.0])
    inside = (
        (points[None, :, 0] >= grown[:, None, 0])
        & (points[None, :, 1] >= grown[:, None, 1])
        & (points[None, :, 0] <= grown[:, None, 2])
        & (points[None, :, 1] <= grown[:, None, 3])
    )
    cover = coverage(shapes, points, _EDGE)
    leak = jnp.where(inside, 0.0, cover)
    low, high = jnp.argmin(cover), jnp.argmax(cover)
    extremes = (cover.ravel()[low], points[low % len(points)], cover.ravel()[high],
                points[high % len(points)])  # fmt: skip
    return boxes, jnp.max(leak, axis=1), points[jnp.argmax(leak, axis=1)], extremes


@functools.cache
def check_user_type(cls: type, cutoff: float, tiled: bool) -> None:
    """A `ValueError` if a shape type from outside the library gives coverage outside
    `[0, 1]` or (`tiled`) declares tight bounds that cut its probe shapes off; once per
    type and path."""
    ours = cls.__module__.split(".")[0] == "diffprims"
    if ours or not hasattr(cls, "raw_geometry"):
        return
    try:  # compiled, it runs on concrete values even inside a user's `jit` or `grad`
        probed = jax.device_get(_probe.lower(cls, cutoff * _EDGE).compile()())
    except (TypeError, ValueError):  # a method's own error: the render names it, with its N
        return
    boxes, leaks, where, (low, at_low, high, at_high) = probed
    if low < -_LEAK or high > 1 + _LEAK:
        value, (px, py) = (low, at_low) if low < -_LEAK else (high, at_high)
        raise ValueError(
            f"{cls.__name__}.coverage(points, edge_width) must return values in [0, 1] (how "
            f"much of each point a shape covers); a probe shape gives {value:.3g} at "
            f"({px:.3g}, {py:.3g}). Pass a signed distance through "
            "`dp.soft_edge(distance, edge_width)` (a sigmoid, in [0, 1]) rather than "
            'returning the distance itself. See "Write your own shape" in the docs.'
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
        f"({px:.3g}, {py:.3g}), outside its box ({box}) (x_min, y_min, x_max, y_max). "
        "Return boxes that hold the whole shape (with a soft edge, keep the default "
        "`edge_margin = 14.0`), or set the class variable `tight_bounds = False` "
        '(method="auto" then renders it with the scan). See '
        '"Write your own shape" in the docs.'
    )
