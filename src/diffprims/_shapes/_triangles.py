"""Soft triangles."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractShapes
from ._geometry import soft_edge
from ._roles import POSITION, parameter
from ._svg_edges import outline_offsets, svg_polygon, svg_soft_edge

# How far (in edge widths) the box of `coverage` sits outside the triangle: enough to
# never tie an edge's line, and small enough that the tail is still below 1e-6 at
# CUTOFF edge widths past `bounds()` (sigmoid(-13.99) = 8.4e-7).
_BOX_MARGIN = 0.01


class Triangles(AbstractShapes):
    """`N` soft triangles given by their three vertices (either winding).

    Stored as `raw_vertices` `(N, 3, 2)` (`dp.roles.POSITION`: the vertices in the
    diffprims frame, divided by 0.2).
    The signed distance is the largest of the distances to the three edge lines (exact
    inside and along the edges, a little short of the true distance past a corner) and,
    outside the triangle's box, the distance to the box: soft tails end at the bounds,
    so the tiled renderer culls triangles as it culls every other shape.
    Colour, opacity, soft edges and compositing come from [`diffprims.AbstractShapes`][].

    ```python
    model = dp.Triangles.init(200, key=jax.random.key(0), target=target)
    ```
    """

    raw_vertices: Float[Array, "N 3 2"] = parameter(POSITION)

    @property
    def vertices(self) -> Float[Array, "N 3 2"]:
        """Vertices `(x, y)` in the diffprims frame, `(N, 3, 2)`."""
        return POSITION.value(self.raw_vertices)

    def coverage(
        self, points: Float[Array, "P 2"], edge_width: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        v = self.vertices
        sign, units, levels = _edge_lines(self.raw_vertices)
        # Each edge line's signed distance `s (u . p - u . v)`, one (N, P) plane at a time:
        # through an (N, 3, P, 2) array of offsets, a step's gradient took 17 times a
        # circle's (63 ms against 3.6 at 260 shapes and 4096 points). The winding's sign
        # `s` multiplies each whole line, so a program that computes it twice (XLA fuses
        # freely) cannot pair one sign's normal with the other's level.
        x, y = points[None, :, 0], points[None, :, 1]  # (1, P)

        def line(i: int) -> Array:
            return sign * (
                units[:, i, 0, None] * x + units[:, i, 1, None] * y - levels[:, i, None]
            )

        distances = jnp.maximum(jnp.maximum(line(0), line(1)), line(2))
        # Past a sharp corner the edge-line distance grows slowly. Outside the triangle's
        # box, the box's own signed distance (per axis, as culling measures) takes over,
        # so the soft tail ends CUTOFF edge widths past `bounds()`, as every shape's does.
        # The box sits `_BOX_MARGIN` edge widths outside the triangle: along a horizontal
        # or vertical edge it would equal that edge's line exactly, and a maximum of two
        # equal terms takes half the gradient of each (the box's is wrong there). Inside
        # the box it is smaller than the triangle's distance: nothing changes there.
        low, high = v.min(axis=1), v.max(axis=1)  # (N, 2)
        box_x = jnp.maximum(low[:, 0, None] - x, x - high[:, 0, None])
        box_y = jnp.maximum(low[:, 1, None] - y, y - high[:, 1, None])
        box = jnp.maximum(box_x, box_y) - _BOX_MARGIN * edge_width
        return soft_edge(jnp.maximum(distances, box), edge_width)

    def bounds(self) -> Float[Array, "N 4"]:
        v = self.vertices
        return jnp.concatenate([v.min(axis=1), v.max(axis=1)], axis=-1)

    def svg_geometry(self, edge_width: float) -> list[str]:
        vertices = np.asarray(self.vertices, np.float64)
        if edge_width <= 0:
            return [svg_polygon(tri) for tri in vertices]
        softness = float(self.softness)
        # The seven lines that bound each triangle's outlines: its edges (as `coverage`
        # measures them) and its box's sides, `normal . p <= level`.
        sign, units, levels = (np.asarray(x, np.float64) for x in _edge_lines(self.raw_vertices))
        normals, levels = sign[..., None] * units, sign * levels
        axes = np.array([[-1.0, 0.0], [0.0, -1.0], [1.0, 0.0], [0.0, 1.0]])
        normals = np.concatenate([normals, np.broadcast_to(axes, (len(vertices), 4, 2))], 1)
        box = np.concatenate([-vertices.min(1), vertices.max(1)], 1) + _BOX_MARGIN * edge_width
        levels = np.concatenate([levels, box], 1)
        # Every outline of every triangle at once (one by one, 1000 took 1.7 s).
        offsets = outline_offsets(edge_width, softness)
        grown = {t: _grown(normals, levels + t) for t in offsets}
        return [
            svg_soft_edge(lambda t, i=i: grown[t][i], edge_width, softness)
            for i in range(len(vertices))
        ]

    @classmethod
    def random_geometry(
        cls, centres: Float[Array, "N 2"], sizes: Float[Array, " N"], *, key: PRNGKeyArray
    ) -> dict[str, Array]:
        """Near-equilateral triangles of the area of discs of radius `sizes`, turned at
        random and each corner jittered, drawn with `key`."""
        k_angle, k_jitter = jax.random.split(key)
        angles = jax.random.uniform(k_angle, sizes.shape, jnp.float32, maxval=2 * jnp.pi)[:, None]
        angles = angles + jnp.array([0.0, 2.0, 4.0]) * jnp.pi / 3
        angles = angles + jax.random.uniform(
            k_jitter, angles.shape, jnp.float32, minval=-0.4, maxval=0.4
        )
        unit = jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
        # Equal area to a disc of radius `size`: an equilateral triangle of circumradius 1.56 r.
        return {"raw_vertices": centres[:, None, :] + 1.56 * sizes[:, None, None] * unit}

    @classmethod
    def from_values(
        cls,
        vertices: Any,
        colours: Any,
        opacities: Any,
        *,
        background: Any = 1.0,
        softness: float = 1.0,
        **options: Any,
    ) -> Triangles:
        """Triangles with the given (constrained) values.

        **Arguments:**

        - `vertices`: `(N, 3, 2)` vertices `(x, y)` in the diffprims frame.
        - `colours`, `opacities`, `background`, `softness` and the keyword `options`
          (`compositing`, `learn_background`): as for [`diffprims.Circles.from_values`][].

        **Returns:**

        A `Triangles` whose properties give back these values.

        ```python
        tri = [[[0.2, 0.8], [0.8, 0.8], [0.5, 0.2]]]
        model = dp.Triangles.from_values(tri, [[1.0, 0.0, 0.0]], [1.0])   # float colours
        ```
        """
        return cls.from_geometry(
            {
                "raw_vertices": ("vertices", vertices, (3, 2)),
            },
            colours,
            opacities,
            background=background,
            softness=softness,
            **options,
        )


def _edge_lines(raw_vertices: Array) -> tuple[Array, Array, Array]:
    """The edge lines of triangles stored as `raw_vertices` `(N, 3, 2)`: the winding's
    sign `(N, 1)`, unit normals `(N, 3, 2)` (outward for an anticlockwise one) and levels
    `(N, 3)`; the signed distance to line k is `sign * (units[:, k] . p - levels[:, k])`.
    """
    v = POSITION.value(raw_vertices)
    # Edges differenced before scaling: XLA may fuse `scale * raw` into the subtraction
    # (a fused multiply-add) and leave a rounding residue in an edge between two equal
    # coordinates, which gave a flat triangle a random winding.
    edges = POSITION.value(jnp.roll(raw_vertices, -1, axis=1) - raw_vertices)  # (N, 3, 2)
    lengths = jnp.sqrt(jnp.sum(edges * edges, -1) + 1e-12)
    area2 = edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]
    # A degenerate (flat) triangle draws as a soft line half covered along its segment,
    # the limit of a thinning sliver, with either sign.
    sign = jnp.where(area2 >= 0, 1.0, -1.0)[:, None]
    units = jnp.stack([edges[..., 1], -edges[..., 0]], -1) / lengths[..., None]
    return sign, units, jnp.sum(units * v, -1)


def _grown(normals: np.ndarray, levels: np.ndarray) -> list[str | None]:
    """For each triangle, the polygon where `normals . p <= levels` for its seven lines
    `(N, 7, 2)`, `(N, 7)` (the edge lines and box sides moved out by an offset: the
    points of `coverage`'s distance at most that offset, with sharp corners as the
    distance to the edge lines has), or None if empty.

    The polygon's corners are where two of the seven lines cross inside all seven.
    """
    i, j = np.triu_indices(7, 1)
    a, b = normals[:, i], normals[:, j]  # (N, 21, 2)
    det = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    crossing = np.abs(det) > 1e-12
    li, lj = levels[:, i], levels[:, j]
    corners = np.stack([li * b[..., 1] - lj * a[..., 1], a[..., 0] * lj - b[..., 0] * li], -1)
    corners = corners / np.where(crossing, det, 1.0)[..., None]
    slack = np.einsum("nkd,ncd->nck", normals, corners) - levels[:, None, :]  # (N, 21, 7)
    inside = crossing & np.all(slack <= 1e-9, -1)
    out: list[str | None] = []
    for points, keep in zip(corners, inside, strict=True):
        points = points[keep]
        if len(points) < 3:
            out.append(None)
            continue
        around = points - points.mean(0)
        out.append(svg_polygon(points[np.argsort(np.arctan2(around[:, 1], around[:, 0]))]))
    return out
