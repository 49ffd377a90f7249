"""Soft rotated rectangles."""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractShapes
from ._geometry import (
    box,
    oriented_extents,
    rotated_extent,
    rotated_svg,
    safe_norm,
    soft_edge,
    to_local,
)
from ._roles import ANGLE, POSITION, SIZE, parameter


class Rectangles(AbstractShapes):
    """`N` soft rotated rectangles: centre, half-width, half-height and an angle each.

    Stored through their roles: `raw_centres` `(N, 2)` (`POSITION`), `raw_half_sizes`
    `(N, 2)` (`SIZE`: log half-width and half-height along the rectangle's own axes),
    `raw_angles` `(N,)` in radians. Colour, opacity, soft edges and compositing come from
    [`diffprims.AbstractShapes`][].

    ```python
    model = dp.Rectangles.init(200, key=jax.random.key(0), target=target)
    ```
    """

    raw_centres: Float[Array, "N 2"] = parameter(POSITION)
    raw_half_sizes: Float[Array, "N 2"] = parameter(SIZE)
    raw_angles: Float[Array, " N"] = parameter(ANGLE)

    @property
    def centres(self) -> Float[Array, "N 2"]:
        """Centres `(x, y)` in the diffprims frame, `(N, 2)`."""
        return POSITION.value(self.raw_centres)

    @property
    def half_sizes(self) -> Float[Array, "N 2"]:
        """Half-width and half-height (> 0) in units of the image height, `(N, 2)`."""
        return SIZE.value(self.raw_half_sizes)

    @property
    def angles(self) -> Float[Array, " N"]:
        """Rotation angles in radians, `(N,)`."""
        return ANGLE.value(self.raw_angles)

    def coverage(
        self, points: Float[Array, "P 2"], edge_width: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        local = to_local(points, self.centres, self.angles)
        q = jnp.abs(local) - self.half_sizes[:, None, :]
        outside = safe_norm(jnp.maximum(q, 0.0))
        inside = jnp.minimum(jnp.max(q, axis=-1), 0.0)
        return soft_edge(outside + inside, edge_width)

    def bounds(self) -> Float[Array, "N 4"]:
        return box(self.centres, rotated_extent(self.half_sizes, self.angles))

    def svg_geometry(self, edge_width: float) -> list[str]:
        def outline(x: float, y: float, w: float, h: float, offset: float) -> str | None:
            # The points within `offset` of the rectangle: corners rounded when grown.
            w, h = w + offset, h + offset
            if w <= 0 or h <= 0:
                return None
            return (
                f'<rect x="{x - w:.6g}" y="{y - h:.6g}" width="{2 * w:.6g}" '
                f'height="{2 * h:.6g}" rx="{max(offset, 0.0):.6g}"/>'
            )

        softness = float(self.softness)
        return [
            rotated_svg(
                functools.partial(outline, x, y, w, h), np.degrees(t), x, y, edge_width, softness
            )  # fmt: skip
            for (x, y), (w, h), t in zip(
                np.asarray(self.centres, np.float64),
                np.asarray(self.half_sizes, np.float64),
                np.asarray(self.angles, np.float64),
                strict=True,
            )
        ]

    @classmethod
    def random_geometry(
        cls, centres: Float[Array, "N 2"], sizes: Float[Array, " N"], *, key: PRNGKeyArray
    ) -> dict[str, Array]:
        """Rectangles of half-sizes about 0.9 `sizes`: aspect ratios within e^+-1 and angles
        uniform, drawn with `key`."""
        half, angles = oriented_extents(sizes, key, spread=0.5, scale=0.9)
        return {
            "raw_centres": centres,
            "raw_half_sizes": half,
            "raw_angles": angles,
        }

    @classmethod
    def from_values(
        cls,
        centres: Any,
        half_sizes: Any,
        angles: Any,
        colours: Any,
        opacities: Any,
        *,
        background: Any = 1.0,
        softness: float = 1.0,
        **options: Any,
    ) -> Rectangles:
        """Rectangles with the given (constrained) values.

        **Arguments:**

        - `centres`: `(N, 2)` centres `(x, y)` in the diffprims frame.
        - `half_sizes`: `(N, 2)` half-width and half-height > 0 (image-height units).
        - `angles`: `(N,)` rotations in radians.
        - `colours`, `opacities`, `background`, `softness` and the keyword `options`
          (`compositing`, `learn_background`): as for [`diffprims.Circles.from_values`][].

        **Returns:**

        A `Rectangles` whose properties give back these values.

        ```python
        blue = [[0.0, 0.0, 1.0]]                 # colours are floats in [0, 1]
        model = dp.Rectangles.from_values([[0.5, 0.5]], [[0.3, 0.1]], [0.0], blue, [1.0])
        ```
        """
        return cls.from_geometry(
            {
                "raw_centres": ("centres", centres, (2,)),
                "raw_half_sizes": ("half_sizes", half_sizes, (2,)),
                "raw_angles": ("angles", angles, ()),
            },
            colours,
            opacities,
            background=background,
            softness=softness,
            **options,
        )
