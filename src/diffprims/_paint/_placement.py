"""Where new shapes go: error maps, how useful each shape is, seeding and re-seeding.

Every function here reads a shape set through its public interface and its declared
parameter roles, so it serves any shape type.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .._fit._loop import pixel_points
from .._model import pixel_centres
from .._shapes import layer_weights
from .._shapes._compositing import depth_spacing, initial_depths, over_step
from .._shapes._removal import removal_costs_tiled
from .._shapes._render import IMAGE_CHUNK, image_tile, resolved_method
from .._shapes._roles import COLOUR, OPACITY, is_per_shape
from .._validate import trusted


def grid_step(height: int, width: int, per: int) -> int:
    """Pixels a side of the blocks of a grid of about `per` blocks a side (128: where
    `paint` scores new shapes and ranks those it has), from the pixel count: the shorter
    side made 120 x 360 (fewer pixels than 256^2) score every pixel, 2.6x the seeding's
    time of 256^2, and 127^2 3x 128^2's."""
    return max(1, min(round((height * width) ** 0.5 / per), height, width))


def downsample(image: Array, level: int) -> Array:
    """Block means of `level x level` pixels of an `(H, W, ...)` array."""
    height, width = image.shape[:2]
    h, w = height // level, width // level
    blocks = image[: h * level, : w * level].reshape(h, level, w, level, *image.shape[2:])
    return blocks.mean((1, 3))


def usefulness(model, target: Array, weights: Array, level: int, method: str = "scan") -> Array:
    """How much the weighted squared error would grow if each shape were removed, `(N,)`.

    On a `level`-times coarser grid. With "over" compositing, removing shape `i` changes
    the picture by `w_i (c_i - U_i)`, with `w_i` its visible weight and `U_i` the picture
    of everything behind it. With `method` "scan", one scan over the shapes (back to
    front) carries `U` at every pixel; where `method` resolves to tiles ("auto" from 8
    shapes and 1024 pixels), each tile visits only the shapes that reach it (1300 circles
    on a 128^2 grid: 0.8 s dense). "additive" drops `w_i c_i`. For "depth" (no fixed
    order) every shape counts as useful.
    """
    if model.compositing == "depth":
        return jnp.full((model.num_shapes,), jnp.inf)
    small = downsample(target, level)
    h, w, channels = small.shape
    if resolved_method(model, h * w, method) == "tiled":
        tile = image_tile((h, w), model.num_shapes)
        return removal_costs_tiled(model, small, downsample(weights, level), tile, IMAGE_CHUNK)
    pixel_weights = downsample(weights, level).reshape(-1, 1)
    alphas = model.alphas(pixel_centres((h, w)).reshape(-1, 2), pixel_size=1.0 / h)  # (N, P)
    layers = layer_weights(model.compositing, alphas)
    colours = model.colours
    pred = layers.T @ jnp.concatenate([colours, model.background[None]], 0)
    residual = small.reshape(-1, channels) - pred
    visible = layers[:-1]  # (N, P)
    if model.compositing == "additive":
        change = visible[:, :, None] * colours[:, None, :]
        return jnp.sum(pixel_weights * (2 * residual * change + change**2), (1, 2))

    def step(behind, shape):
        alpha, seen, colour = shape
        change = seen[:, None] * (colour - behind)
        grow = jnp.sum(pixel_weights * (2 * residual * change + change**2))
        return over_step(behind, alpha, colour), grow

    start = jnp.broadcast_to(model.background, pred.shape)
    return jax.lax.scan(step, start, (alphas, visible, colours))[1]


class Seeding(eqx.Module):
    """How one round seeds shapes: `count` new ones from slot `start` (of at most
    `most`, static), `prune` re-seeded, each about `size` (the best of `SIZES` times it)
    with `opacity`; scored on a `fine`-times coarser grid than the target's."""

    start: Array
    count: Array
    size: Array
    opacity: Array
    prune: Array | None
    most: int = eqx.field(static=True)
    fine: int = eqx.field(static=True)
    method: str = eqx.field(static=True)


# A new shape's size is the best of these multiples of the round's size. Chosen by
# score on the fine grid rather than fixed, small shapes go to small details (stars,
# highlights) that a fixed size on the coarse grid blurred away (+0.3 dB mean at 1800
# steps on six photos, +0.66 on hubble_deep_field's stars); sizes up to 4x were worse
# (large shapes win the greedy score early and block later ones).
SIZES = (0.125, 0.25, 0.5, 1.0, 2.0)


def _box_sums(values: Array, half: Array) -> Array:
    """Sums of `(H, W, K)` values over the `(2 half + 1)`-pixel square around every
    pixel (cut at the edges): a running sum along the rows, then along the columns of
    the row sums, each of the values less their mean along that line (added back after).

    The scores are small differences of such sums; in float32 a running sum of raw
    values (or a 2D summed-area table) grows to the whole line's (image's) sum and
    loses the digits of a small square's error on a good painting (a 46 dB one).
    """

    def along(values: Array, axis: int) -> Array:
        length = values.shape[axis]
        mean = jnp.mean(values, axis, keepdims=True)
        running = jnp.cumsum(values - mean, axis)
        running = jnp.pad(running, [(1, 0) if a == axis else (0, 0) for a in range(3)])
        at = jnp.arange(length)
        high, low = jnp.clip(at + half + 1, 0, length), jnp.clip(at - half, 0, length)
        count = (high - low).reshape([length if a == axis else 1 for a in range(3)])
        return jnp.take(running, high, axis) - jnp.take(running, low, axis) + mean * count

    return along(along(values, 1), 0)


def seed_scores(pred, goal, weights, radii, opacity):
    """How much the weighted squared error falls if a shape is laid over `pred` at each
    pixel, `(S, H, W)` for each of the `S` radii (pixels), and the shape's colour then,
    `(S, H, W, C)`.

    The shape is scored as a square of the disc's area, with `opacity` and the clipped
    least-squares colour for what lies under it (closed form from running sums, so every
    pixel and size at once costs a few passes over the image).
    """
    residual = goal - (1 - opacity) * pred  # what `opacity * colour` should match
    values = jnp.concatenate(
        [
            weights * jnp.sum((goal - pred) ** 2, -1, keepdims=True),
            weights * jnp.sum(residual**2, -1, keepdims=True),
            weights * residual,
            weights,
        ],
        -1,
    )

    def one(radius):
        half = jnp.maximum(jnp.round((jnp.sqrt(jnp.pi) * radius - 1) / 2), 0).astype(jnp.int32)
        box = _box_sums(values, half)
        before, squares, cross, weight = box[..., 0], box[..., 1], box[..., 2:-1], box[..., -1]
        weight = jnp.maximum(weight, 1e-12)
        colour = jnp.clip(cross / (opacity * weight[..., None]), 0.02, 0.98)
        after = squares - 2 * opacity * jnp.sum(colour * cross, -1)
        after = after + opacity**2 * jnp.sum(colour**2, -1) * weight
        return before - after, colour

    # `vmap` over the sizes rather than a Python loop: one copy of the program to compile.
    return jax.vmap(one)(radii)


def _pick(scores: Array, radii: Array, count: int) -> Array:
    """`count` pixels (flat indices), best score first, each at least its shape's radius
    (at least a pixel) from those picked before it; at most one in each 2 x 2 block (the
    block's best: a quarter of the candidates to compare on every pick)."""
    height, width = scores.shape
    h, w = -(-height // 2), -(-width // 2)
    padded = jnp.pad(scores, ((0, 2 * h - height), (0, 2 * w - width)), constant_values=-jnp.inf)
    blocks = padded.reshape(h, 2, w, 2).transpose(0, 2, 1, 3).reshape(h * w, 4)
    corner = jnp.argmax(blocks, -1)
    best_scores = jnp.max(blocks, -1)
    brows, bcols = jnp.divmod(jnp.arange(h * w), w)
    rows, cols = 2 * brows + corner // 2, 2 * bcols + corner % 2
    flat = jnp.minimum(rows, height - 1) * width + jnp.minimum(cols, width - 1)
    reach = jnp.maximum(radii[flat], 1.0) ** 2

    def pick(i, carry):
        scores, picks = carry
        best = jnp.argmax(scores)
        near = (rows - rows[best]) ** 2 + (cols - cols[best]) ** 2 <= reach[best]
        return jnp.where(near, -jnp.inf, scores), picks.at[i].set(flat[best].astype(jnp.int32))

    picks = jnp.zeros((count,), jnp.int32)
    return jax.lax.fori_loop(0, count, pick, (best_scores, picks))[1]


def _seeds(model, target, weights, seeding: Seeding, key):
    """`2 * most` candidate shapes where a new shape would lower the (weighted) error
    most, each of the best size and coloured in closed form to fix the error under it."""
    small = downsample(target, seeding.fine)
    height, width, _ = small.shape
    # paint's renderer, by default tiles (at N = 260 on a 64-pixel grid 0.8 ms against
    # the scan's 15).
    pred = model.render_image((height, width), method=seeding.method)
    factors = jnp.asarray(SIZES)
    radii = jnp.maximum(seeding.size * height * factors, 0.6)  # pixels of this grid
    scores, colours = seed_scores(
        pred, small, downsample(weights, seeding.fine)[..., None], radii, seeding.opacity
    )
    best = jnp.argmax(scores, 0)  # (H, W): the best size at each pixel
    total = 2 * seeding.most
    picks = _pick(jnp.max(scores, 0), radii[best].reshape(-1), total)
    rows, cols = jnp.divmod(picks, width)
    size = best[rows, cols]
    centres = pixel_points(picks, height, width)
    values = type(model).raw_geometry(centres, radii[size] / height, key=key)
    values["raw_colours"] = COLOUR.raw(colours[size, rows, cols])
    values["raw_opacities"] = jnp.full((total,), OPACITY.raw(seeding.opacity))
    return values


def _dead(model, target, active, seeding: Seeding, useful: Array) -> Array:
    """Active shapes to re-seed: invisible, smaller than a pixel, off the canvas, or
    among the `prune` least useful (`useful`: `ranking`'s, inactive shapes last)."""
    box = model.bounds()
    pixel = 1.0 / target.shape[0]
    aspect = target.shape[1] / target.shape[0]
    dead = active & (
        (model.opacities < 0.02)
        | (jnp.max(box[:, 2:] - box[:, :2], -1) < 1.5 * pixel)
        | (box[:, 2] < 0) | (box[:, 3] < 0) | (box[:, 0] > aspect) | (box[:, 1] > 1)
    )  # fmt: skip
    if seeding.prune is not None:
        n = model.num_shapes
        order = jnp.arange(n, dtype=jnp.int32)  # int32 under jax_enable_x64 too
        ranks = jnp.zeros((n,), jnp.int32).at[jnp.argsort(useful)].set(order)
        dead = dead | ((ranks < seeding.prune) & jnp.isfinite(useful))
    return dead


def add_shapes(model, target, weights, active, seeding: Seeding, key, useful) -> tuple[Any, Array]:
    """Activate shapes `start, ..., start + count - 1` where the (weighted) error is
    largest, and re-seed up to `most` dead active shapes the same way."""
    values = _seeds(model, target, weights, seeding, key)
    n, most = model.num_shapes, seeding.most
    # Slots past `count` point out of range (n) and are dropped by the scatter.
    slots = jnp.where(jnp.arange(most) < seeding.count, seeding.start + jnp.arange(most), n)
    dead = _dead(model, target, active, seeding, useful)
    slots = jnp.concatenate([slots, jnp.nonzero(dead, size=most, fill_value=n)[0]])
    if model.raw_depths is not None:
        top = jnp.max(jnp.where(active, model.raw_depths, -jnp.inf), initial=0.0)
        spacing = depth_spacing(model.num_shapes)  # in front, as closely as `init` puts them
        values["raw_depths"] = top + 0.5 + spacing * jnp.arange(2 * most, dtype=jnp.float32)
    names = _per_shape(model, values)
    new = [
        getattr(model, k).at[slots].set(values[k].astype(jnp.float32), mode="drop") for k in names
    ]
    model = eqx.tree_at(lambda m: [getattr(m, k) for k in names], model, new)
    return model, active.at[slots].set(True, mode="drop")


def _per_shape(model, values: dict[str, Array]) -> list[str]:
    """The names in `values` of `model`'s per-shape fields: those placing a shape sets
    (a field shared by all shapes, `dp.parameter(..., per_shape=False)`, keeps the value
    the set was built with)."""
    return [name for name in values if is_per_shape(type(model), name)]


def _hidden(cls, count: int, key) -> dict[str, Array]:
    """Raw geometry and opacities of `count` shapes not placed yet: invisible (opacity
    ~0) and off the canvas, so renderers that cull by bounds skip them."""
    values = cls.raw_geometry(jnp.full((count, 2), -10.0), jnp.full((count,), 0.05), key=key)
    return {**values, "raw_opacities": jnp.full((count,), -30.0)}


def _hide(model, slots: Array):
    """Shapes at `slots` made invisible and moved off the canvas (as `blank` makes them)."""
    values = _hidden(type(model), slots.shape[0], jax.random.key(0))
    names = _per_shape(model, values)
    new = [getattr(model, k).at[slots].set(values[k].astype(jnp.float32)) for k in names]
    return eqx.tree_at(lambda m: [getattr(m, k) for k in names], model, new)


@eqx.filter_jit
@trusted
def ranking(models, target, weights, active, level: int, method: str = "auto") -> Array:
    """`usefulness` of every restart's shapes in float32, inactive shapes `inf`: one
    program that re-seeding and removal share (inlined in each, by tiles it compiled
    twice, 1 s of CPU each on a cold first `paint`)."""

    def one(model, active):
        useful = usefulness(model, target, weights, level, method).astype(jnp.float32)
        return jnp.where(active, useful, jnp.inf)

    return one(models, active) if active.ndim == 1 else jax.vmap(one)(models, active)


@eqx.filter_jit
@trusted
def remove(models, active, useful, count: int):
    """Remove (hide and deactivate) the `count` least useful active shapes of every
    restart (`useful`: their `ranking`, the weighted squared error each one's removal
    would add)."""

    def one(model, active, useful):
        slots = jnp.argsort(useful)[:count]
        model, active = _hide(model, slots), active.at[slots].set(False)
        # The shapes kept first, in their depth order: later rounds add after them.
        order = jnp.argsort(~active, stable=True)
        return model.take(order), active[order]

    if active.ndim == 1:
        return one(models, active, useful)
    return jax.vmap(one)(models, active, useful)


@eqx.filter_jit
@trusted
def add(models, target, weights, active, seeding: Seeding, keys, useful):
    """`add_shapes` for every restart (a leading axis on `models`, `active`, `keys` and
    `useful`, the shapes' `ranking` for re-seeding)."""
    if keys.ndim == 0:
        return add_shapes(models, target, weights, active, seeding, keys, useful)
    return jax.vmap(lambda m, a, k, u: add_shapes(m, target, weights, a, seeding, k, u))(
        models, active, keys, useful
    )


@eqx.filter_jit
@trusted
def blank(cls, n: int, target: Array, *, key, softness, compositing, learn_background):
    """`n` invisible shapes (opacity ~0) over the target's mean colour (one compiled
    program rather than a dozen eager operations, each compiled on a cold first call)."""
    height, width, channels = target.shape
    hidden = _hidden(cls, n, key)
    background = jnp.mean(target, (0, 1))
    if compositing == "additive":
        background = jnp.min(target, (0, 1))
    return cls(
        raw_colours=jnp.zeros((n, channels), jnp.float32),
        raw_background=COLOUR.raw(background),
        softness=float(softness),
        compositing=compositing,
        learn_background=learn_background,
        raw_depths=initial_depths(n) if compositing == "depth" else None,
        # Strong float32 leaves, so later rounds (after optimizer updates) reuse the
        # compiled steps instead of recompiling for weak types.
        **{k: jnp.asarray(v, jnp.float32) for k, v in hidden.items()},
    )
