"""Rings: a new shape type for diffprims in one short file."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

import diffprims as dp


class Rings(dp.AbstractShapes):
    """`N` soft rings (annuli): a centre, a radius and a line width each."""

    # Geometry, leading axis N, each field declared with its role: what it means and the
    # scale it is stored at (positions /0.2, sizes as logs), so every optimizer step moves
    # it as usefully as ours. Colour, opacity, background, softness and compositing are
    # inherited from `AbstractShapes`.
    raw_centres: Float[Array, "N 2"] = dp.parameter(dp.roles.POSITION)
    raw_radii: Float[Array, " N"] = dp.parameter(dp.roles.SIZE)  # the middle line's radius
    raw_widths: Float[Array, " N"] = dp.parameter(dp.roles.SIZE)  # the line width

    @property
    def centres(self):
        return dp.roles.POSITION.value(self.raw_centres)  # (x, y): y in [0, 1], x in [0, W/H]

    @property
    def radii(self):
        return dp.roles.SIZE.value(self.raw_radii)

    @property
    def widths(self):
        return dp.roles.SIZE.value(self.raw_widths)

    def coverage(self, points, edge_width):
        # Signed distance to the ring (negative inside the line), through the soft edge.
        offsets = points[None, :, :] - self.centres[:, None, :]
        distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1) + 1e-20)  # finite gradient at 0
        signed = jnp.abs(distance - self.radii[:, None]) - self.widths[:, None] / 2
        return dp.soft_edge(signed, edge_width)

    def bounds(self):
        reach = (self.radii + self.widths / 2)[:, None]
        return jnp.concatenate([self.centres - reach, self.centres + reach], axis=-1)

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        # Values, not stored parameters: the declared roles convert them.
        widths = sizes * jax.random.uniform(key, sizes.shape, minval=0.2, maxval=0.6)
        return {"raw_centres": centres, "raw_radii": sizes, "raw_widths": widths}

    def svg_geometry(self, edge_width):
        # A ring is a stroked circle. Grown by `offset` (the points that far from it), it
        # is a line `2 * offset` wider: `dp.svg_soft_edge` stacks such lines, each faint,
        # into the soft edge the model draws.
        def ring(x, y, r, w, offset):
            if w + 2 * offset <= 0:
                return None
            return (
                f'<circle cx="{x:.6g}" cy="{y:.6g}" r="{r:.6g}" fill="none" '
                f'stroke="currentColor" stroke-width="{w + 2 * offset:.6g}"/>'
            )

        rings = [
            functools.partial(ring, x, y, r, w)
            for (x, y), r, w in zip(
                np.asarray(self.centres), np.asarray(self.radii), np.asarray(self.widths)
            )
        ]
        if edge_width == 0:
            return [ring(0.0) for ring in rings]
        return [dp.svg_soft_edge(ring, edge_width, self.softness) for ring in rings]
