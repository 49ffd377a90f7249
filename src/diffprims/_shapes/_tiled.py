"""The tiled renderer: shapes culled per group of neighbouring points.

Points are grouped (a `tile x tile` block of pixels for `render_image`; `group` points
along a snake path for `render`). Each group lists the shapes that reach it (`_culling`).
Groups are sorted by list length and run a chunk at a time. A chunk draws layer after
layer, each group its own `k`-th listed shape, for as many layers as its fullest group
lists: a loop whose length is known only at run time, so one compiled body serves every
list length and the program does not grow with the number of shapes (a ladder of
fixed-capacity branches did, and its compile time dominated a first `fit`). Under `vmap`
(on an accelerator; a CPU runs the members one by one) a chunk runs as long as its
longest member needs (`_culling._batch_max`), so the loops stay loops of one length. A
chunk starts from the set's background, or from the picture below it (`Layers` draws
each layer over the layers under it; the backward pass returns that picture's cotangent).

A custom VJP recomputes each chunk: a forward sweep stores the picture behind every
layer, then a sweep from the front applies each layer's step VJP and scatters the drawn
shapes' gradients into their rows. The stored pictures are bounded (`CHUNK_PAIRS`): a
chunk listing more layers runs its backward in blocks from the front, each block first
redrawing the layers behind it.

It uses nothing but the shape-set interface (`alphas`, `bounds`, `partition_shapes`,
`colours`, `background`, `compositing`), so a new shape type gets it for free.
"""

from __future__ import annotations

import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.custom_batching import sequential_vmap
from jaxtyping import Array, Float

from ._compositing import group_step
from ._culling import Lists, group_order, grown_bounds

#: (layer, point) pictures a chunk's backward sweep may store at once.
CHUNK_PAIRS = 1 << 20


def block_size(points_per_chunk: int, num_shapes: int) -> int:
    """Layers a chunk's backward sweep stores at once: every layer where that fits in
    `CHUNK_PAIRS` pictures of a point, else as many as fit (at least 8)."""
    return max(1, min(num_shapes, max(8, CHUNK_PAIRS // max(points_per_chunk, 1))))


# -- one layer of a chunk ---------------------------------------------------------------


def rows_at(per_shape, index, n):
    # `index` may be `n` (nothing drawn): read a valid row, the alpha is zeroed.
    return jax.tree.map(lambda x: x[jnp.minimum(index, n - 1)], per_shape)


def layer_at(rows, rest, points, index, pixel_size, n):
    """Alphas `(G, S)` and colours `(G, C)` of each group's shape in `rows`."""

    def one(row, pts, i):
        shape = eqx.combine(jax.tree.map(lambda x: x[None], row), rest)
        alpha = shape.alphas(pts, pixel_size=pixel_size)[0]
        return alpha * (i < n).astype(alpha.dtype), shape.colours[0]

    return jax.vmap(one)(rows, points, index)


def start_picture(model, points, below):
    """The picture behind the first shape: the set's background, or `below` `(G, S, C)`
    (the layers under this set, drawn by `Layers`)."""
    if below is not None:
        return below
    background = model.background
    return jnp.broadcast_to(background, (*points.shape[:2], background.shape[-1]))


def _draw_chunk(model, points, boxes, bounds, pixel_size, below):
    """Composite each group's listed shapes at its points: `(G, S, C)`."""
    n, mode = model.num_shapes, model.compositing
    per_shape, rest = model.partition_shapes()
    lists = Lists.of(boxes, bounds)

    def draw(k, image):
        index = lists.kth(k)
        alpha, colour = layer_at(rows_at(per_shape, index, n), rest, points, index, pixel_size, n)
        return group_step(mode, image, alpha, colour)

    return jax.lax.fori_loop(0, lists.longest, draw, start_picture(model, points, below))


class _Split(eqx.Module):
    """The differentiable and static halves of per-shape fields and the rest."""

    shapes: tuple
    rest: tuple

    @staticmethod
    def of(model, pixel_size) -> _Split:
        per_shape, rest = model.partition_shapes()
        return _Split(
            eqx.partition(per_shape, eqx.is_inexact_array),
            eqx.partition((rest, pixel_size), eqx.is_inexact_array),
        )

    def layer(self, shape_rows, rest_diff, points, index, n):
        rest, pixel_size = eqx.combine(rest_diff, self.rest[1])
        rows = eqx.combine(shape_rows, rows_at(self.shapes[1], index, n))
        return layer_at(rows, rest, points, index, pixel_size, n)


def _undraw_chunk(split: _Split, model, points, boxes, bounds, grad, block: int, below):
    """Gradients of one chunk: per-shape rows (scattered), the rest, the points, and
    the cotangent of the picture behind the first shape `(G, S, C)`."""
    n, mode = model.num_shapes, model.compositing
    lists = Lists.of(boxes, bounds)
    shape_diff, rest_diff = split.shapes[0], split.rest[0]
    start, count = start_picture(model, points, below), lists.longest

    def draw(k, image):
        index = lists.kth(k)
        alpha, colour = split.layer(rows_at(shape_diff, index, n), rest_diff, points, index, n)
        return group_step(mode, image, alpha, colour)

    def undraw(k, behind, picture, carry):
        grad, d_shapes, d_rest, d_points = carry
        index = lists.kth(k)
        layer = partial(split.layer, index=index, n=n)
        (alpha, colour), layer_vjp = jax.vjp(
            layer, rows_at(shape_diff, index, n), rest_diff, points
        )
        _, step_vjp = jax.vjp(lambda *a: group_step(mode, *a), behind, alpha, colour)
        grad, d_alpha, d_colour = step_vjp(grad)
        d_rows, d_r, d_p = layer_vjp((d_alpha, d_colour))
        d_shapes = jax.tree.map(lambda t, d: t.at[index].add(d, mode="drop"), d_shapes, d_rows)
        return grad, d_shapes, _add(d_rest, d_r), d_points + d_p

    zeros = (jax.tree.map(jnp.zeros_like, shape_diff), jax.tree.map(jnp.zeros_like, rest_diff))
    carry = (grad, *zeros, jnp.zeros_like(points))
    return sweep_from_front(draw, undraw, count, block, start, carry)


def sweep_from_front(draw, visit, count, block: int, start, carry):
    """`carry` through `visit(k, behind, picture, carry)` for layers `k = count - 1, ...,
    0` (front to back), `behind` the picture under layer `k` and `picture` all `count`
    layers' (`draw(k, image)` draws layer `k` over `image`, from `start`). The pictures
    are stored `block` layers at a time: blocks from the front, each drawing the layers
    behind it again (one block unless the lists are long). One loop draws and stores, so
    the shapes' coverage is compiled twice (here and in `visit`), not three times."""

    def store(k, stored):
        image, behind, first = stored
        # Layers behind the block are drawn only; from `first` on, their pictures kept.
        slot = jnp.clip(k - first, 0, block - 1)
        kept = jnp.where(k >= first, image, jax.lax.dynamic_index_in_dim(behind, slot, 0, False))
        return draw(k, image), jax.lax.dynamic_update_index_in_dim(behind, kept, slot, 0), first

    def one_block(i, state):
        carry, picture = state
        first = (-(-count // block) - 1 - i) * block
        last = jnp.minimum(count, first + block)
        behind = jnp.zeros((block, *start.shape), start.dtype)
        image, behind, _ = jax.lax.fori_loop(0, last, store, (start, behind, first))
        picture = jnp.where(i == 0, image, picture)  # the front block draws every layer
        back = lambda j, c: visit(last - 1 - j, behind[last - 1 - j - first], picture, c)  # noqa: E731
        return jax.lax.fori_loop(0, last - first, back, carry), picture

    return jax.lax.fori_loop(0, -(-count // block), one_block, (carry, start))[0]


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


# -- the tiled path ---------------------------------------------------------------------


def gather_groups(x, order):
    """Rows `order` of `x` (the index `len(x)` gives a copy of the last row)."""
    return x[jnp.minimum(order, x.shape[0] - 1)]


def on_cpu_one_by_one(fn):
    """`fn`, run member by member under `jax.vmap` on a CPU (batched, a chunk's gathers
    and loops ran 3-6x slower than a loop: 16 x 200 circles at 128^2, forward 142 -> 39
    ms, gradient 666 -> 143 ms). Used in the custom VJP's passes, never differentiated."""
    return sequential_vmap(fn) if jax.default_backend() == "cpu" else fn


@eqx.filter_custom_vjp
def render_groups(args, boxes, chunk):
    """Tiled render of grouped points `(G, S, 2)` to `(G, S, C)`: `args = (model, points,
    pixel_size, below)`; `boxes` `(G, 4)` hold each group's points, each group compositing
    only the shapes whose grown bounds overlap its box (groups sorted fullest first, run
    `chunk` at a time, each chunk for as many layers as its fullest group lists) over the
    set's background, or over `below` `(G, S, C)` unless it is None."""
    return on_cpu_one_by_one(lambda a, b: _draw_groups(a, b, chunk))(args, boxes)


def _draw_groups(args, boxes, chunk):
    model, points, pixel_size, below = args
    bounds = grown_bounds(model, pixel_size)

    def step(order):
        pts, box = gather_groups(points, order), gather_groups(boxes, order)
        under = None if below is None else gather_groups(below, order)
        return _draw_chunk(model, pts, box, bounds, pixel_size, under)

    orders = group_order(boxes, bounds, chunk)
    out = jax.lax.map(step, orders)
    out = out.reshape(-1, *out.shape[2:])
    # Scatter back to group order; padding slots (index G) are dropped.
    scattered = jnp.zeros((points.shape[0], *out.shape[1:]), out.dtype)
    return scattered.at[orders.reshape(-1)].set(out, mode="drop")


@render_groups.def_fwd
def _render_groups_fwd(perturbed, args, boxes, chunk):
    del perturbed
    return render_groups(args, boxes, chunk), None


@render_groups.def_bwd
def _render_groups_bwd(residuals, grad, perturbed, args, boxes, chunk):
    del residuals, perturbed
    return on_cpu_one_by_one(lambda g, a, b: _undraw_groups(g, a, b, chunk))(grad, args, boxes)


def _undraw_groups(grad, args, boxes, chunk):
    model, points, pixel_size, below = args
    bounds = grown_bounds(model, pixel_size)
    split = _Split.of(model, pixel_size)
    block = block_size(chunk * points.shape[1], model.num_shapes)

    def step(totals, order):
        pts, box = gather_groups(points, order), gather_groups(boxes, order)
        under = None if below is None else gather_groups(below, order)
        ct = jnp.where((order < points.shape[0])[:, None, None], gather_groups(grad, order), 0)
        d_start, d_shapes, d_rest, d_points = _undraw_chunk(
            split, model, pts, box, bounds, ct, block, under
        )
        if below is None:  # the background: summed here, not kept per point
            return _add(totals, (d_shapes, d_rest, jnp.sum(d_start, axis=(0, 1)))), (d_points,)
        return _add(totals, (d_shapes, d_rest, None)), (d_points, d_start)

    shape_diff, rest_diff = split.shapes[0], split.rest[0]
    background = model.background if below is None else None
    zeros = jax.tree.map(jnp.zeros_like, (shape_diff, rest_diff, background))
    orders = group_order(boxes, bounds, chunk)
    (d_shapes, d_rest, d_background), per_point = jax.lax.scan(step, zeros, orders)
    d_points, *d_start = (
        jnp.zeros_like(x).at[orders.reshape(-1)].add(d.reshape(-1, *x.shape[1:]), mode="drop")
        for x, d in zip((points, grad), per_point)
    )
    d_below = None
    if below is None:  # the background reaches the picture through every first image
        d_shapes_bg, d_rest_bg = _background_vjp(split, d_background)
        d_rest = _add(d_rest, d_rest_bg)
        d_shapes = _add(d_shapes, d_shapes_bg)
    else:
        d_below = d_start[0].astype(below.dtype)
    d_model = eqx.combine(d_shapes, d_rest[0])
    return d_model, d_points, d_rest[1], d_below


def _background_vjp(split: _Split, d_background):
    def background(shape_diff, rest_diff):
        per_shape = eqx.combine(shape_diff, split.shapes[1])
        rest = eqx.combine(rest_diff, split.rest[1])[0]
        return eqx.combine(per_shape, rest).background

    _, vjp = jax.vjp(background, split.shapes[0], split.rest[0])
    return vjp(d_background)


def tile_points(shape: tuple[int, int], tile: int) -> tuple[Array, Array]:
    """Pixel centres of an `(H, W)` grid grouped by `tile x tile` tiles, and tile boxes.

    Returns `(G, tile*tile, 2)` points (the grid padded up to whole tiles) and `(G, 4)`
    boxes holding each tile's pixel centres, in float32. Computed with `jnp` so that a
    compiled render makes them when it runs: made with NumPy they were constants in the
    program, 96 MB of them at 4000 x 3000 (a 21 MB entry in the command line's
    compilation cache) and 400 MB at 8192 x 6144.
    """
    height, width = shape
    rows, cols = -(-height // tile), -(-width // tile)
    ii = jnp.arange(rows * tile, dtype=jnp.float32)
    jj = jnp.arange(cols * tile, dtype=jnp.float32)
    ys = ((ii + 0.5) / height).reshape(rows, 1, tile, 1)
    xs = ((jj + 0.5) / height).reshape(1, cols, 1, tile)
    grid = jnp.stack(jnp.broadcast_arrays(xs, ys), axis=-1)  # (rows, cols, tile, tile, 2)
    points = grid.reshape(rows * cols, tile * tile, 2)
    boxes = jnp.concatenate([points.min(axis=1), points.max(axis=1)], axis=-1)
    return points, boxes


def to_tiles(image: Array, tile: int) -> Array:
    """An `(H, W, ...)` array in the layout of `tile_points`: `(G, tile * tile, ...)`,
    padded with zeros to whole tiles."""
    height, width = image.shape[:2]
    rows, cols = -(-height // tile), -(-width // tile)
    pad = [(0, rows * tile - height), (0, cols * tile - width)] + [(0, 0)] * (image.ndim - 2)
    tiles = jnp.pad(image, pad).reshape(rows, tile, cols, tile, *image.shape[2:])
    return jnp.swapaxes(tiles, 1, 2).reshape(rows * cols, tile * tile, *image.shape[2:])


def render_image_tiled(
    model, shape: tuple[int, int], tile: int, chunk: int, pixel_size, below=None
) -> Float[Array, "H W C"]:
    """`render_image` by tiles of `tile x tile` pixels, each drawing only its shapes
    (edges scaled by `pixel_size`: `1 / H` for the grid's own pixel), over the set's
    background or the picture `below` `(H, W, C)`."""
    height, width = shape
    points, boxes = tile_points(shape, tile)
    dtype = model.raw_colours.dtype
    rows, cols = -(-height // tile), -(-width // tile)
    below = None if below is None else to_tiles(below, tile)
    args = (model, points.astype(dtype), pixel_size, below)
    out = render_groups(args, boxes.astype(dtype), min(chunk, points.shape[0]))
    out = out.reshape(rows, cols, tile, tile, -1).transpose(0, 2, 1, 3, 4)
    return out.reshape(rows * tile, cols * tile, -1)[:height, :width]


def render_points_tiled(
    model, points: Float[Array, "P 2"], pixel_size, group: int, chunk: int, below=None
) -> Float[Array, "P C"]:
    """`render` at arbitrary points, `group` neighbouring points sharing one culling list,
    over the set's background or the picture `below` `(P, C)`.

    Points are ordered along a snake path through a grid of cells over their bounding
    box (so consecutive points are close), cut into groups of `group`, and each group
    culls shapes against the box of its own points; `chunk` groups run at a time (all
    of them when there are fewer).
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
    if below is not None:
        below = below[order].reshape(groups, group, -1)
    out = render_groups((model, grouped, pixel_size, below), boxes, min(chunk, groups))
    out = out.reshape(groups * group, -1)
    return jnp.zeros((num, out.shape[-1]), out.dtype).at[order[:num]].set(out[:num])
