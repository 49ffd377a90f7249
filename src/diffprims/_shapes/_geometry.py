"""Small geometry helpers shared by the rotated shape types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._svg_edges import svg_soft_edge

#: Centres are clipped to this many frame units, far outside any frame, so that a
#: point's offset from one, divided by a clamped size and squared (an ellipse's gradient
#: divides by its radius squared), still fits float32. Unclipped, an ellipse centred at
#: 1e19 overflowed to inf and its gradients came out NaN; clipped, a shape that far away
#: gets a zero gradient for its centre. A clip per shape costs nothing beside the work
#: per point (sample points, not parameters, are taken as they come).
FAR = 1e6


def to_local(
    points: Float[Array, "P 2"], centres: Float[Array, "N 2"], angles: Float[Array, " N"]
) -> Float[Array, "N P 2"]:
    """Points in each shape's frame: translated to its centre (clipped to `[-FAR, FAR]`),
    rotated by `-angle`."""
    d = points[None, :, :] - jnp.clip(centres, -FAR, FAR)[:, None, :]
    cos, sin = jnp.cos(angles)[:, None], jnp.sin(angles)[:, None]
    return jnp.stack([cos * d[..., 0] + sin * d[..., 1], cos * d[..., 1] - sin * d[..., 0]], -1)


def rotated_extent(half_sizes: Float[Array, "N 2"], angles: Float[Array, " N"]) -> Array:
    """Half extents `(N, 2)` of the axis-aligned box around a rotated box (an ellipse's
    tight box is `rotated_ellipse_extent`)."""
    cos, sin = jnp.abs(jnp.cos(angles)), jnp.abs(jnp.sin(angles))
    hx, hy = half_sizes[:, 0], half_sizes[:, 1]
    return jnp.stack([cos * hx + sin * hy, sin * hx + cos * hy], -1)


def rotated_ellipse_extent(radii: Float[Array, "N 2"], angles: Float[Array, " N"]) -> Array:
    """Half extents `(N, 2)` of the axis-aligned box around a rotated ellipse."""
    cos2, sin2 = jnp.cos(angles) ** 2, jnp.sin(angles) ** 2
    a2, b2 = radii[:, 0] ** 2, radii[:, 1] ** 2
    return jnp.sqrt(jnp.stack([a2 * cos2 + b2 * sin2, a2 * sin2 + b2 * cos2], -1))


def oriented_extents(sizes: Array, key: Any, *, spread: float, scale: float = 1.0):
    """`(extents, angles)` for the rotated types' `random_geometry`: `(N, 2)` extents
    about `scale * sizes`, their aspect ratio within e^(+-2 spread), and angles uniform
    in [0, pi), drawn with `key`."""
    k_aspect, k_angle = jax.random.split(key)
    stretch = jnp.exp(
        jax.random.uniform(k_aspect, sizes.shape, jnp.float32, minval=-spread, maxval=spread)
    )
    extents = scale * sizes[:, None] * jnp.stack([stretch, 1.0 / stretch], -1)
    return extents, jax.random.uniform(k_angle, sizes.shape, jnp.float32, maxval=jnp.pi)


def box(centres: Array, half: Array) -> Array:
    """`(x_min, y_min, x_max, y_max)` boxes from centres and half extents."""
    return jnp.concatenate([centres - half, centres + half], axis=-1)


def soft_edge(signed_distance: Array, width: float | Array) -> Array:
    """Coverage in `[0, 1]` from a signed distance (negative inside) and an edge width.

    `sigmoid(-signed_distance / width)`: exactly 0.5 on the boundary, and the 10 %→90 %
    ramp spans about `4.4 * width`. Shapes defined by a signed distance use this to turn
    geometry into coverage. A width below 1e-30 counts as 1e-30: a subnormal one (a
    `pixel_size` of 1e-38) overflowed the quotient and made the gradient NaN.
    """
    return jax.nn.sigmoid(-signed_distance / jnp.maximum(width, 1e-30))


def safe_norm(x: Array, axis: int = -1) -> Array:
    """Euclidean norm with a finite gradient at zero (a sample exactly at a centre)."""
    return jnp.sqrt(jnp.sum(x * x, axis=axis) + 1e-20)


def rotated_svg(
    outline: Callable[[float], str | None], degrees: float, x: float, y: float,
    edge_width: float, softness: float,
) -> str:  # fmt: skip
    """A shape drawn by `outline(offset)` (an SVG element grown by `offset`, unturned),
    turned by `degrees` about `(x, y)`: hard, or with its soft edge (`svg_soft_edge`)."""
    turn = f'transform="rotate({degrees:.6g} {x:.6g} {y:.6g})"'
    if edge_width > 0:
        return f"<g {turn}>{svg_soft_edge(outline, edge_width, softness)}</g>"
    element = outline(0.0)  # None: nothing to draw (a size that underflowed to 0)
    return "" if element is None else f"{element[:-2]} {turn}/>"
