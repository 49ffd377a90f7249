"""The tiled renderer: shapes culled per group of neighbouring points.

Points are grouped (an `8 x 8` tile of pixels for `render_image`; 8 neighbouring points
along a snake path for `render`). Each group lists the shapes whose bounds, grown by
`CUTOFF` edge widths, overlap its box, in depth order. Groups are sorted by list length
and run a chunk at a time; each chunk uses the smallest list capacity of a static ladder
(0, 8, 16, 32, ..., N) that holds its fullest group, chosen at run time with
`lax.switch` (the last rung is N, so nothing overflows). Under `vmap` all members take
the largest rung any member needs (`_batch_max`), so the switch stays a switch. A custom
VJP recomputes each chunk in the backward pass (memory stays bounded by `CHUNK_PAIRS`)
and differentiates "over" by hand (`_compositing.over_vjp`).

It uses nothing but the shape-set interface (`alphas`, `bounds`, `take`, `colours`,
`depths`, `background`), so a new shape type gets it for free.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Float, Int

from ._compositing import composite, over_layers, over_vjp

#: Bounds are grown by this many edge widths: a soft edge's coverage there is
#: sigmoid(-CUTOFF) < 1e-6, the most a culled shape could have added to a pixel.
CUTOFF = 14.0
#: Pairs (shape, point) evaluated per chunk of groups: bounds peak memory.
CHUNK_PAIRS = 1 << 20


# -- culling ----------------------------------------------------------------------------


def capacity_ladder(n: int) -> tuple[int, ...]:
    """Static list lengths a chunk can use: 0, 8, 16, 32, 64, ... then `n`.

    Each rung is a branch compiled once; doubling keeps them few. The last rung `n`
    holds every shape, so no group ever overflows.
    """
    rungs = [0, 8]
    while rungs[-1] < n:
        rungs.append(rungs[-1] * 2)
    return (*[k for k in rungs if k < n], n)


def grown_bounds(model, pixel_size) -> Float[Array, "N 4"]:
    """Shape boxes grown by `CUTOFF` edge widths, without gradient."""
    margin = CUTOFF * model.softness * pixel_size
    bounds = jax.lax.stop_gradient(model.bounds())
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


@custom_vmap
def _batch_max(x):
    return x


@_batch_max.def_vmap
def _batch_max_vmap(axis_size, in_batched, x):
    # Under vmap every member takes the largest capacity any member needs, so the
    # `lax.switch` index stays unbatched: a batched index would run every branch.
    del axis_size, in_batched
    return jnp.max(x, axis=0), False


class _Plan(eqx.Module):
    """Which groups run together and at which capacity (no gradient)."""

    order: Int[Array, "J B"]  # groups of each chunk, fullest first (G pads)
    rungs: Int[Array, " J"]  # ladder index per chunk


def _plan(boxes, bounds, ladder, chunk) -> _Plan:
    groups = boxes.shape[0]
    counts = jnp.sum(overlaps(boxes, bounds), axis=1, dtype=jnp.int32)
    order = jnp.argsort(-counts, stable=True).astype(jnp.int32)
    num_chunks = -(-groups // chunk)
    order = jnp.pad(order, (0, num_chunks * chunk - groups), constant_values=groups)
    order = order.reshape(num_chunks, chunk)
    # Sorted fullest first, so a chunk's first group is its fullest.
    most = _batch_max(counts[order[:, 0]])
    rungs = jnp.sum(most[:, None] > jnp.asarray(ladder[:-1], jnp.int32), axis=1)
    return _Plan(order, rungs.astype(jnp.int32))


def _lists(boxes, bounds, capacity):
    """The first `capacity` shapes (depth order) overlapping each box; `N` pads."""
    ranks = jnp.cumsum(overlaps(boxes, bounds), axis=1, dtype=jnp.int32)
    wanted = jnp.arange(1, capacity + 1, dtype=jnp.int32)
    return jax.vmap(lambda r: jnp.searchsorted(r, wanted, side="left"))(ranks)


# -- the tiled path ---------------------------------------------------------------------


def _layers(model, points, lists, pixel_size):
    """Alphas `(G, K, S)`, colours `(G, K, C)`, depths `(G, K)` of each group's shapes."""
    n = model.num_shapes
    per_shape, rest = model.partition_shapes()

    def one(pts, idx):
        # Our lists hold valid indices by design (N pads): gather without `take`'s check.
        sub = eqx.combine(jax.tree.map(lambda x: x[jnp.minimum(idx, n - 1)], per_shape), rest)
        valid = (idx < n).astype(pts.dtype)[:, None]
        return sub.alphas(pts, pixel_size=pixel_size) * valid, sub.colours, sub.depths

    return jax.vmap(one)(points, lists)


def _composite(model, alphas, colours, depths):
    if model.compositing == "over":
        return over_layers(alphas, colours, model.background)[0]
    mode, background = model.compositing, model.background
    return jax.vmap(lambda a, c, d: composite(mode, a, c, background, d))(alphas, colours, depths)


def _pieces(groups: int, per_group: int) -> int:
    """Sub-chunks a branch splits `groups` into so each holds at most CHUNK_PAIRS pairs."""
    most = max(1, CHUNK_PAIRS // max(per_group, 1))
    return -(-groups // most)


def _split(x, pieces):
    pad = (-x.shape[0]) % pieces
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(pieces, -1, *x.shape[1:])


def _forward_branch(capacity, bounds, model, pixel_size):
    def run(points, boxes):
        if capacity == 0:
            background = model.background
            return jnp.broadcast_to(background, (*points.shape[:2], background.shape[-1]))
        lists = _lists(boxes, bounds, capacity)
        pieces = _pieces(points.shape[0], capacity * points.shape[1])

        def draw(xs):
            alphas, colours, depths = _layers(model, xs[0], xs[1], pixel_size)
            return _composite(model, alphas, colours, depths)

        if pieces == 1:
            return draw((points, lists))
        out = jax.lax.map(draw, (_split(points, pieces), _split(lists, pieces)))
        return out.reshape(-1, *out.shape[2:])[: points.shape[0]]

    return run


def _backward_branch(capacity, bounds, diff, static):
    over_mode = eqx.combine(diff, static)[0].compositing == "over"

    def layers(diff, points, lists):
        model, pixel_size = eqx.combine(diff, static)
        alphas, colours, depths = _layers(model, points, lists, pixel_size)
        if over_mode:
            return alphas, colours, model.background
        return _composite(model, alphas, colours, depths)

    def run(points, boxes, grad):
        if capacity == 0:
            _, vjp = jax.vjp(lambda d: eqx.combine(d, static)[0].background, diff)
            (d_diff,) = vjp(jnp.sum(grad, axis=(0, 1)))
            return d_diff, jnp.zeros_like(points)
        lists = _lists(boxes, bounds, capacity)
        pieces = _pieces(points.shape[0], capacity * points.shape[1])

        def undo(total, xs):
            pts, idx, ct = xs
            out, vjp = jax.vjp(layers, diff, pts, idx)
            d_diff, d_points, _ = vjp(over_vjp(out[0], out[1], out[2], ct) if over_mode else ct)
            return jax.tree.map(jnp.add, total, d_diff), d_points

        zeros = jax.tree.map(jnp.zeros_like, diff)
        if pieces == 1:
            return undo(zeros, (points, lists, grad))
        xs = (_split(points, pieces), _split(lists, pieces), _split(grad, pieces))
        total, d_points = jax.lax.scan(undo, zeros, xs)
        return total, d_points.reshape(-1, *d_points.shape[2:])[: points.shape[0]]

    return run


def _gather_groups(x, order):
    """Rows `order` of `x` (the index `len(x)` gives a copy of the last row)."""
    return x[jnp.minimum(order, x.shape[0] - 1)]


@eqx.filter_custom_vjp
def render_groups(args, boxes, ladder, chunk):
    """Tiled render of grouped points `(G, S, 2)` to `(G, S, C)`.

    `args = (model, points, pixel_size)`; `boxes` `(G, 4)` hold each group's points.
    Each group composites only the shapes whose grown bounds overlap its box. Groups are
    sorted fullest first and run `chunk` at a time, each chunk at the smallest capacity
    of `ladder` that holds its fullest group.
    """
    model, points, pixel_size = args
    bounds = grown_bounds(model, pixel_size)
    plan = _plan(boxes, bounds, ladder, chunk)
    branches = [_forward_branch(k, bounds, model, pixel_size) for k in ladder]

    def step(xs):
        order, rung = xs
        pts, box = _gather_groups(points, order), _gather_groups(boxes, order)
        return jax.lax.switch(rung, branches, pts, box)

    out = jax.lax.map(step, (plan.order, plan.rungs))
    out = out.reshape(-1, *out.shape[2:])
    # Scatter back to group order; padding slots (index G) are dropped.
    return (
        jnp.zeros((points.shape[0], *out.shape[1:]), out.dtype)
        .at[plan.order.reshape(-1)]
        .set(out, mode="drop")
    )


@render_groups.def_fwd
def _render_groups_fwd(perturbed, args, boxes, ladder, chunk):
    del perturbed
    return render_groups(args, boxes, ladder, chunk), None


@render_groups.def_bwd
def _render_groups_bwd(residuals, grad, perturbed, args, boxes, ladder, chunk):
    del residuals, perturbed
    model, points, pixel_size = args
    bounds = grown_bounds(model, pixel_size)
    plan = _plan(boxes, bounds, ladder, chunk)
    diff, static = eqx.partition((model, pixel_size), eqx.is_inexact_array)
    branches = [_backward_branch(k, bounds, diff, static) for k in ladder]

    def step(total, xs):
        order, rung = xs
        pts, box = _gather_groups(points, order), _gather_groups(boxes, order)
        ct = jnp.where((order < points.shape[0])[:, None, None], _gather_groups(grad, order), 0)
        d_diff, d_points = jax.lax.switch(rung, branches, pts, box, ct)
        return jax.tree.map(jnp.add, total, d_diff), d_points

    zeros = jax.tree.map(jnp.zeros_like, diff)
    d_diff, d_points = jax.lax.scan(step, zeros, (plan.order, plan.rungs))
    d_points = (
        jnp.zeros_like(points)
        .at[plan.order.reshape(-1)]
        .add(d_points.reshape(-1, *points.shape[1:]), mode="drop")
    )
    return d_diff[0], d_points, d_diff[1]


def tile_points(shape: tuple[int, int], tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of an `(H, W)` grid grouped by `tile x tile` tiles, and tile boxes.

    Returns `(G, tile*tile, 2)` points (the grid padded up to whole tiles) and `(G, 4)`
    boxes holding each tile's pixel centres.
    """
    height, width = shape
    rows, cols = -(-height // tile), -(-width // tile)
    ii = np.arange(rows * tile, dtype=np.float32)
    jj = np.arange(cols * tile, dtype=np.float32)
    ys = ((ii + 0.5) / height).reshape(rows, 1, tile, 1)
    xs = ((jj + 0.5) / height).reshape(1, cols, 1, tile)
    grid = np.stack(np.broadcast_arrays(xs, ys), axis=-1)  # (rows, cols, tile, tile, 2)
    points = grid.reshape(rows * cols, tile * tile, 2)
    boxes = np.concatenate([points.min(axis=1), points.max(axis=1)], axis=-1)
    return points, boxes


def render_image_tiled(
    model, shape: tuple[int, int], tile: int = 8, chunk: int = 32
) -> Float[Array, "H W C"]:
    """`render_image` by tiles of `tile x tile` pixels, each drawing only its shapes."""
    height, width = shape
    points, boxes = tile_points(shape, tile)
    ladder = capacity_ladder(model.num_shapes)
    dtype = model.raw_colours.dtype
    args = (model, jnp.asarray(points, dtype), 1.0 / height)
    out = render_groups(args, jnp.asarray(boxes, dtype), ladder, min(chunk, len(points)))
    rows, cols = -(-height // tile), -(-width // tile)
    out = out.reshape(rows, cols, tile, tile, -1).transpose(0, 2, 1, 3, 4)
    return out.reshape(rows * tile, cols * tile, -1)[:height, :width]


def render_points_tiled(
    model, points: Float[Array, "P 2"], pixel_size, group: int = 8, chunk: int = 64
) -> Float[Array, "P C"]:
    """`render` at arbitrary points, `group` neighbouring points sharing one culling list.

    Points are ordered along a snake path through a grid of cells over their bounding
    box (so consecutive points are close), cut into groups of `group`, and each group
    culls shapes against the box of its own points.
    """
    num = points.shape[0]
    stopped = jax.lax.stop_gradient(points)
    cells = max(1, math.isqrt(max(num // (2 * group), 1)))
    low = jnp.min(stopped, axis=0)
    size = jnp.maximum(jnp.max(stopped, axis=0) - low, 1e-6) * (1.0 + 1e-6) / cells
    cell = jnp.clip(jnp.floor((stopped - low) / size).astype(jnp.int32), 0, cells - 1)
    col = jnp.where(cell[:, 1] % 2 == 0, cell[:, 0], cells - 1 - cell[:, 0])
    order = jnp.argsort(cell[:, 1] * cells + col, stable=True)
    groups = -(-num // group)
    order = jnp.concatenate([order, jnp.broadcast_to(order[-1:], (groups * group - num,))])
    grouped = points[order].reshape(groups, group, 2)
    stopped = jax.lax.stop_gradient(grouped)
    boxes = jnp.concatenate([jnp.min(stopped, axis=1), jnp.max(stopped, axis=1)], axis=-1)
    ladder = capacity_ladder(model.num_shapes)
    out = render_groups((model, grouped, pixel_size), boxes, ladder, min(chunk, groups))
    out = out.reshape(groups * group, -1)
    return jnp.zeros((num, out.shape[-1]), out.dtype).at[order[:num]].set(out[:num])
