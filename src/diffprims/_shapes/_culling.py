"""Culling for the tiled renderer: which shapes' grown bounds reach which group of points.

Each group of neighbouring points (a tile of pixels, or points along a snake path) keeps
the list of shapes whose bounds, grown by the type's `edge_margin` edge widths, overlap
its box, in index order; groups are run fullest list first (`group_order`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Float

from ._protocol import bounds as checked_bounds

#: Soft edges' margin, `AbstractShapes.edge_margin`'s default: a soft edge's coverage
#: this many edge widths out is sigmoid(-CUTOFF) < 1e-6, the most culling can drop.
CUTOFF = 14.0


def grown_bounds(model, pixel_size) -> Float[Array, "N 4"]:
    """Shape boxes grown by the type's `edge_margin` edge widths, without gradient."""
    margin = type(model).edge_margin * model.softness * pixel_size
    bounds = jax.lax.stop_gradient(checked_bounds(model))
    return bounds + jnp.asarray([-1.0, -1.0, 1.0, 1.0]) * jax.lax.stop_gradient(margin)


def overlaps(cells: Float[Array, "M 4"], bounds: Float[Array, "N 4"]) -> Array:
    """`(M, N)` bool: cell box overlaps shape box (both `(x0, y0, x1, y1)`).

    A shape with a NaN bound overlaps every cell: its NaN parameters then poison the
    image as they do in the naive loop, and `fit` sees the divergence.
    """
    return jnp.any(jnp.isnan(bounds), axis=1)[None, :] | (
        (bounds[None, :, 0] <= cells[:, None, 2])
        & (bounds[None, :, 2] >= cells[:, None, 0])
        & (bounds[None, :, 1] <= cells[:, None, 3])
        & (bounds[None, :, 3] >= cells[:, None, 1])
    )


def list_lengths(boxes, bounds, block: int = 64) -> Array:
    """`(G,)` how many shapes each group's box overlaps; past `2^22` (group, shape) pairs
    `block` boxes at a time: all at once held a `(G, N)` table (3.4 GB for 50k shapes on
    8-pixel tiles at 1024^2)."""
    count = lambda b: jnp.sum(overlaps(b, bounds), axis=1, dtype=jnp.int32)  # noqa: E731
    groups = boxes.shape[0]
    if groups * bounds.shape[0] <= 1 << 22:  # small: at once, without a loop
        return count(boxes)
    blocks = jnp.pad(boxes, ((0, -groups % block), (0, 0))).reshape(-1, block, 4)
    return jax.lax.map(count, blocks).reshape(-1)[:groups]


def group_order(boxes, bounds, chunk: int) -> Array:
    """`(J, chunk)` group indices, fullest list first, padded with `G` (no group)."""
    groups = boxes.shape[0]
    counts = list_lengths(boxes, bounds)
    order = jnp.argsort(-counts, stable=True).astype(jnp.int32)
    num_chunks = -(-groups // chunk)
    order = jnp.pad(order, (0, num_chunks * chunk - groups), constant_values=groups)
    return order.reshape(num_chunks, chunk)


@custom_vmap
def _batch_max(x):
    return x


@_batch_max.def_vmap
def _batch_max_vmap(axis_size, in_batched, x):
    # Under vmap every member runs as many layers as the longest member needs (its extra
    # layers draw nothing), so the loops' bounds stay unbatched: a batched bound makes
    # every step of the loop select over its whole carry, the stored pictures included.
    del axis_size, in_batched
    return jnp.max(x, axis=0), False


class Lists(eqx.Module):
    """Each group's overlapping shapes in index order: a table `(G, N)`, row `g` holding
    group `g`'s shape indices then `N` (nothing) to the end, and the longest list."""

    table: Array
    longest: Array

    @staticmethod
    def of(boxes, bounds) -> Lists:
        hits = overlaps(boxes, bounds)
        groups, n = hits.shape
        slots = jnp.cumsum(hits, axis=1, dtype=jnp.int32) - 1
        indices = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (groups, n))
        rows = jnp.arange(groups)[:, None]
        # A table lookup per layer: a binary search per group and layer cost 2x the draw.
        table = (
            jnp.full((groups, n), n, jnp.int32)
            .at[rows, jnp.where(hits, slots, n)]
            .set(indices, mode="drop")
        )
        return Lists(table, _batch_max(jnp.max(slots[:, -1]) + 1))

    def kth(self, k) -> Array:
        """`(G,)` index of each group's `k`-th listed shape (from 0); `N` past its end."""
        return jax.lax.dynamic_index_in_dim(self.table, k, axis=1, keepdims=False)
