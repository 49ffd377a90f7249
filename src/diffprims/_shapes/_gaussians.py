"""2D Gaussians: anisotropic blobs, as in Gaussian image fitting."""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractShapes
from ._geometry import box, oriented_extents, rotated_ellipse_extent, to_local
from ._roles import ANGLE, POSITION, SIZE, parameter

# The SVG's gradients end at 3.5 standard deviations (coverage 2e-3 there).
_CUTOFF = 3.5
# Bounds reach this many scales, where the coverage exp(-r^2 / 2) is below 1e-6, as
# renderers that cull by bounds assume (at 3.5 it was 2e-3: the tiled renderer dropped it).
_REACH = 5.3


class Gaussians(AbstractShapes):
    """`N` rotated 2D Gaussians: centre, two standard deviations and an angle each.

    Coverage is `exp(-|q|^2 / 2)` with `q` the point in the Gaussian's frame divided by
    its standard deviations: 1 at the centre, smooth everywhere, so `softness` plays no
    part. Stored through their roles: `raw_centres` `(N, 2)` (`POSITION`), `raw_scales`
    `(N, 2)` (log standard deviations, `SIZE`), `raw_angles` `(N,)`. Pair with
    `compositing="additive"` for Gaussian image fitting, or keep "over" to paint with soft blobs.

    ```python
    model = dp.Gaussians.init(500, key=jax.random.key(0), target=target,
                              compositing="additive")
    ```
    """

    #: Coverage ignores the edge width and the bounds hold it to below 1e-6: culling adds
    #: no margin (14 edge widths made a Gaussian of 2 pixels' box 5 times as large).
    edge_margin: ClassVar[float] = 0.0

    raw_centres: Float[Array, "N 2"] = parameter(POSITION)
    raw_scales: Float[Array, "N 2"] = parameter(SIZE)
    raw_angles: Float[Array, " N"] = parameter(ANGLE)

    @property
    def centres(self) -> Float[Array, "N 2"]:
        """Centres `(x, y)` in the diffprims frame, `(N, 2)`."""
        return POSITION.value(self.raw_centres)

    @property
    def scales(self) -> Float[Array, "N 2"]:
        """Standard deviations (> 0) along the Gaussian's own axes, `(N, 2)`."""
        return SIZE.value(self.raw_scales)

    @property
    def angles(self) -> Float[Array, " N"]:
        """Rotation angles in radians, `(N,)`."""
        return ANGLE.value(self.raw_angles)

    def coverage(
        self, points: Float[Array, "P 2"], edge_width: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        del edge_width
        # Scales clamped far below a pixel: at 1e-20, q * q overflowed float32 and the
        # gradient came out NaN (the coverage is 0 at any point off the centre anyway).
        scales = jnp.maximum(self.scales, 1e-7)
        q = to_local(points, self.centres, self.angles) / scales[:, None, :]
        return jnp.exp(-0.5 * jnp.sum(q * q, axis=-1))

    def bounds(self) -> Float[Array, "N 4"]:
        return box(self.centres, _REACH * rotated_ellipse_extent(self.scales, self.angles))

    def svg_geometry(self, edge_width: float) -> list[str]:
        del edge_width  # a Gaussian has no edge
        # A radial gradient through the unit circle, mapped onto the Gaussian's axes.
        offsets = np.linspace(0.0, 1.0, 15)
        stops = "".join(
            f'<stop offset="{t:.4f}" stop-color="currentColor" '
            f'stop-opacity="{np.exp(-0.5 * (t * _CUTOFF) ** 2):.4f}"/>'
            for t in offsets
        )
        elements = []
        for index, ((x, y), (a, b), t) in enumerate(
            zip(
                np.asarray(self.centres),
                np.asarray(self.scales),
                np.asarray(self.angles),
                strict=True,
            )
        ):
            # userSpaceOnUse means the user space of the ellipse that references the
            # gradient, which its own `transform` has already placed and turned: the
            # gradient only scales the unit circle onto the Gaussian's axes.
            place = f"translate({x:.6g} {y:.6g}) rotate({np.degrees(t):.6g})"
            elements.append(
                f'<radialGradient id="gaussian{index}" gradientUnits="userSpaceOnUse" cx="0" '
                f'cy="0" r="1" gradientTransform="scale({_CUTOFF * a:.6g} '
                f'{_CUTOFF * b:.6g})">{stops}</radialGradient>'
                f'<ellipse rx="{_CUTOFF * a:.6g}" ry="{_CUTOFF * b:.6g}" transform="{place}" '
                f'fill="url(#gaussian{index})"/>'
            )
        return elements

    @classmethod
    def random_geometry(
        cls, centres: Float[Array, "N 2"], sizes: Float[Array, " N"], *, key: PRNGKeyArray
    ) -> dict[str, Array]:
        """Gaussians of scales about 0.7 `sizes`: aspect ratios within e^+-0.6 and angles
        uniform, drawn with `key`."""
        scales, angles = oriented_extents(sizes, key, spread=0.3, scale=0.7)
        return {
            "raw_centres": centres,
            "raw_scales": scales,
            "raw_angles": angles,
        }

    @classmethod
    def from_values(
        cls,
        centres: Any,
        scales: Any,
        angles: Any,
        colours: Any,
        opacities: Any,
        *,
        background: Any = 1.0,
        softness: float = 1.0,
        **options: Any,
    ) -> Gaussians:
        """Gaussians with the given (constrained) values.

        **Arguments:**

        - `centres`: `(N, 2)` centres `(x, y)` in the diffprims frame.
        - `scales`: `(N, 2)` standard deviations > 0 (image-height units).
        - `angles`: `(N,)` rotations in radians.
        - `colours`, `opacities`, `background`, `softness` and the keyword `options`
          (`compositing`, `learn_background`): as for [`diffprims.Circles.from_values`][].

        **Returns:**

        A `Gaussians` whose properties give back these values.

        ```python
        green = [[0.0, 1.0, 0.0]]                # colours are floats in [0, 1]
        model = dp.Gaussians.from_values([[0.5, 0.5]], [[0.2, 0.05]], [0.3], green, [1.0])
        ```
        """
        return cls.from_geometry(
            {
                "raw_centres": ("centres", centres, (2,)),
                "raw_scales": ("scales", scales, (2,)),
                "raw_angles": ("angles", angles, ()),
            },
            colours,
            opacities,
            background=background,
            softness=softness,
            **options,
        )
