"""Soft circles: the first shape type."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractShapes
from ._geometry import safe_norm, soft_edge
from ._roles import POSITION, SIZE, parameter

_SVG_EDGE_STEPS = np.array(
    [-6, -5, -4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6]
)


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


class Circles(AbstractShapes):
    """`N` soft circles: centre, radius, colour and opacity each, over a background.

    Parameters are stored through their declared [`diffprims.Role`][]s: `raw_centres`
    are positions (`dp.roles.POSITION`: the centres in the diffprims frame, `y` in
    `[0, 1]` top to bottom, `x` in `[0, W/H]`, divided by 0.2), `raw_radii` are
    log-radii (`dp.roles.SIZE`). Build one with [`diffprims.Circles.init`][] (random) or
    [`diffprims.Circles.from_values`][] (given values). Colour, opacity, soft edges and
    compositing are those of [`diffprims.AbstractShapes`][].

    ```python
    model = dp.Circles.init(200, key=jax.random.key(0), target=target)
    image = model.render_image((256, 256))   # (256, 256, 3)
    ```
    """

    raw_centres: Float[Array, "N 2"] = parameter(POSITION)
    raw_radii: Float[Array, " N"] = parameter(SIZE)

    @property
    def centres(self) -> Float[Array, "N 2"]:
        """Centres `(x, y)` in the diffprims frame, `(N, 2)`."""
        return POSITION.value(self.raw_centres)

    @property
    def radii(self) -> Float[Array, " N"]:
        """Radii (> 0) in units of the image height, `(N,)`."""
        return SIZE.value(self.raw_radii)

    def coverage(
        self, points: Float[Array, "P 2"], edge_width: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        distance = safe_norm(points[None, :, :] - self.centres[:, None, :])
        return soft_edge(distance - self.radii[:, None], edge_width)

    def bounds(self) -> Float[Array, "N 4"]:
        radii = self.radii[:, None]
        return jnp.concatenate([self.centres - radii, self.centres + radii], axis=-1)

    def svg_geometry(self, edge_width: float) -> list[str]:
        centres, radii = np.asarray(self.centres), np.asarray(self.radii)
        if edge_width <= 0:
            return [
                f'<circle cx="{x:.6g}" cy="{y:.6g}" r="{r:.6g}"/>'
                for (x, y), r in zip(centres, radii, strict=True)
            ]
        # The soft edge exactly: a radial gradient whose stops sample the sigmoid of the
        # distance to the centre (linear between stops: within 0.01 of the model).
        elements = []
        for index, ((x, y), r) in enumerate(zip(centres, radii, strict=True)):
            outer = r + _SVG_EDGE_STEPS[-1] * edge_width
            distances = np.maximum(r + _SVG_EDGE_STEPS * edge_width, 0.0)
            first = max(int(np.searchsorted(distances, 0.0, side="right")) - 1, 0)
            stops = "".join(
                f'<stop offset="{d / outer:.4f}" '
                f'stop-opacity="{_sigmoid((r - d) / edge_width):.4f}"/>'
                for d in distances[first:]
            )
            elements.append(
                f'<radialGradient id="circle{index}" gradientUnits="userSpaceOnUse" '
                f'cx="{x:.6g}" cy="{y:.6g}" r="{outer:.6g}">{stops}</radialGradient>'
                f'<circle cx="{x:.6g}" cy="{y:.6g}" r="{outer:.6g}" fill="url(#circle{index})"/>'
            )
        return elements

    @classmethod
    def random_geometry(
        cls, centres: Float[Array, "N 2"], sizes: Float[Array, " N"], *, key: PRNGKeyArray
    ) -> dict[str, Array]:
        """Circles of radius `sizes` at `centres` (nothing random: `key` is unused)."""
        del key
        return {"raw_centres": centres, "raw_radii": sizes}

    @classmethod
    def from_values(
        cls,
        centres: Any,
        radii: Any,
        colours: Any,
        opacities: Any,
        *,
        background: Any = 1.0,
        softness: float = 1.0,
        **options: Any,
    ) -> Circles:
        """Circles with the given (constrained) values.

        **Arguments:**

        - `centres`: `(N, 2)` centres `(x, y)` in the diffprims frame.
        - `radii`: `(N,)` radii >= 0 in units of the image height (0 is stored as 1e-30:
          a soft dot half covered at the centre, the limit of a shrinking soft disc;
          an opacity of 0 hides a shape).
        - `colours`: `(N, C)` colours in `[0, 1]`.
        - `opacities`: `(N,)` opacities in `[0, 1]`.
        - `background`: background colour in `[0, 1]`, `(C,)` or a scalar grey.
        - `softness`: soft-edge width in pixels of the grid being rendered.
        - `options`: `compositing` ("over", "additive" or "depth"), `learn_background`
          and, for "depth", `depths`; see [`diffprims.AbstractShapes`][].

        **Returns:**

        A `Circles` whose properties give back these values (up to float rounding;
        colours and opacities of exactly 0 or 1 come back within 1e-6).
        """
        return cls.from_geometry(
            {
                "raw_centres": ("centres", centres, (2,)),
                "raw_radii": ("radii", radii, (), True),  # radius 0: stored as 1e-30
            },
            colours,
            opacities,
            background=background,
            softness=softness,
            **options,
        )
