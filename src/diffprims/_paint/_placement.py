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

from .._image import blur
from .._model import pixel_centres
from .._shapes import layer_weights
from .._shapes._build import initial_depths
from .._shapes._compositing import over_step
from .._shapes._roles import COLOUR, OPACITY


def downsample(image: Array, level: int) -> Array:
    """Block means of `level x level` pixels of an `(H, W, ...)` array."""
    height, width = image.shape[:2]
    h, w = height // level, width // level
    blocks = image[: h * level, : w * level].reshape(h, level, w, level, *image.shape[2:])
    return blocks.mean((1, 3))


def error_map(model, target, weights, level: int, method: str = "auto"):
    """Weighted squared error of `model` per pixel of a `level`-times coarser grid.

    Returns the error map, the model's picture and the target on that grid.
    """
    small = downsample(target, level)
    pred = model.render_image(small.shape[:2], method=method)
    return jnp.sum((pred - small) ** 2, -1) * downsample(weights, level), pred, small


def usefulness(model, target: Array, weights: Array, level: int) -> Array:
    """How much the weighted squared error would grow if each shape were removed, `(N,)`.

    On a `level`-times coarser grid. With "over" compositing, removing shape `i` changes
    the picture by `w_i (c_i - U_i)`, with `w_i` its visible weight and `U_i` the picture
    of everything behind it; one scan over the shapes (back to front) carries `U`.
    "additive" drops `w_i c_i`. For "depth" (no fixed order) every shape counts as useful.
    """
    if model.compositing == "depth":
        return jnp.full((model.num_shapes,), jnp.inf)
    small = downsample(target, level)
    pixel_weights = downsample(weights, level).reshape(-1, 1)
    h, w, channels = small.shape
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
    `most`, static), `prune` re-seeded, each of `size` and `opacity`."""

    start: Array
    count: Array
    size: Array
    opacity: Array
    prune: Array | None
    most: int = eqx.field(static=True)
    level: int = eqx.field(static=True)
    method: str = eqx.field(static=True)


def _seeds(model, target, weights, seeding: Seeding, key):
    """`2 * most` candidate shapes at pixels drawn in proportion to the (blurred) error,
    coloured in closed form so each fixes the error under it."""
    # paint's renderer, by default tiles: at N = 260 on the 64-pixel grid 0.8 ms a round
    # against the scan's 15 (+0.19 dB mean at 3 s on five photos; the first paint
    # compiles ~0.2 s longer).
    error, pred, small = error_map(model, target, weights, seeding.level, seeding.method)
    h, w = error.shape
    smooth = blur(error[..., None], 1.0)[..., 0]
    k_pick, k_jitter, k_geom = jax.random.split(key, 3)
    logits = jnp.log(smooth.reshape(-1) + 1e-12)
    # Gumbel top-k: distinct pixels drawn proportionally to the error.
    total = 2 * seeding.most
    picks = jnp.argsort(-(logits + jax.random.gumbel(k_pick, logits.shape)))
    picks = jnp.resize(picks[: min(total, h * w)], (total,))
    rows, cols = picks // w, picks % w
    jitter = jax.random.uniform(k_jitter, (total, 2))
    centres = jnp.stack([(cols + jitter[:, 0]) / h, (rows + jitter[:, 1]) / h], -1)
    sigma = jnp.maximum(seeding.size * h / 2.0, 0.5)
    local_goal, local_pred = blur(small, sigma)[rows, cols], blur(pred, sigma)[rows, cols]
    opacity = seeding.opacity
    colours = jnp.clip((local_goal - (1 - opacity) * local_pred) / opacity, 0.02, 0.98)
    values = type(model).raw_geometry(centres, jnp.full((total,), seeding.size), key=k_geom)
    values["raw_colours"] = COLOUR.raw(colours)
    values["raw_opacities"] = jnp.full((total,), OPACITY.raw(opacity))
    return values


def _dead(model, target, weights, active, seeding: Seeding) -> Array:
    """Active shapes to re-seed: invisible, smaller than a pixel, off the canvas, or
    among the `prune` least useful."""
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
        # On the error map's grid, not the finer one `remove` ranks on: this runs every
        # round, and the finer grid took 0.1 s a round at N = 260, a third of a 3 s
        # budget (this grid: +1.0 dB mean at 3 s on five photos, alike at 14 s).
        useful = usefulness(model, target, weights, seeding.level)
        useful = jnp.where(active, useful, jnp.inf)
        order = jnp.arange(n, dtype=jnp.int32)  # int32 under jax_enable_x64 too
        ranks = jnp.zeros((n,), jnp.int32).at[jnp.argsort(useful)].set(order)
        dead = dead | ((ranks < seeding.prune) & jnp.isfinite(useful))
    return dead


def add_shapes(model, target, weights, active, seeding: Seeding, key) -> tuple[Any, Array]:
    """Activate shapes `start, ..., start + count - 1` where the (weighted) error is
    largest, and re-seed up to `most` dead active shapes the same way."""
    values = _seeds(model, target, weights, seeding, key)
    n, most = model.num_shapes, seeding.most
    # Slots past `count` point out of range (n) and are dropped by the scatter.
    slots = jnp.where(jnp.arange(most) < seeding.count, seeding.start + jnp.arange(most), n)
    dead = _dead(model, target, weights, active, seeding)
    slots = jnp.concatenate([slots, jnp.nonzero(dead, size=most, fill_value=n)[0]])
    if model.raw_depths is not None:
        top = jnp.max(jnp.where(active, model.raw_depths, -jnp.inf), initial=0.0)
        values["raw_depths"] = top + 0.5 + 0.5 * jnp.arange(2 * most, dtype=jnp.float32)
    names = list(values)
    new = [
        getattr(model, k).at[slots].set(values[k].astype(jnp.float32), mode="drop") for k in names
    ]
    model = eqx.tree_at(lambda m: [getattr(m, k) for k in names], model, new)
    return model, active.at[slots].set(True, mode="drop")


def _hidden(cls, count: int, key) -> dict[str, Array]:
    """Raw geometry and opacities of `count` shapes not placed yet: invisible (opacity
    ~0) and off the canvas, so renderers that cull by bounds skip them."""
    values = cls.raw_geometry(jnp.full((count, 2), -10.0), jnp.full((count,), 0.05), key=key)
    return {**values, "raw_opacities": jnp.full((count,), -30.0)}


def _hide(model, slots: Array):
    """Shapes at `slots` made invisible and moved off the canvas (as `blank` makes them)."""
    values = _hidden(type(model), slots.shape[0], jax.random.key(0))
    names = list(values)
    new = [getattr(model, k).at[slots].set(values[k].astype(jnp.float32)) for k in names]
    return eqx.tree_at(lambda m: [getattr(m, k) for k in names], model, new)


@eqx.filter_jit
def remove(models, target, weights, active, count: int, level: int):
    """Remove (hide and deactivate) the `count` least useful active shapes of every
    restart: those whose removal raises the weighted squared error least."""

    def one(model, active):
        useful = jnp.where(active, usefulness(model, target, weights, level), jnp.inf)
        slots = jnp.argsort(useful)[:count]
        model, active = _hide(model, slots), active.at[slots].set(False)
        # The shapes kept first, in their depth order: later rounds add after them.
        order = jnp.argsort(~active, stable=True)
        return model.take(order), active[order]

    return one(models, active) if active.ndim == 1 else jax.vmap(one)(models, active)


@eqx.filter_jit
def add(models, target, weights, active, seeding: Seeding, keys):
    """`add_shapes` for every restart (a leading axis on `models`, `active`, `keys`)."""
    if keys.ndim == 0:
        return add_shapes(models, target, weights, active, seeding, keys)
    return jax.vmap(lambda m, a, k: add_shapes(m, target, weights, a, seeding, k))(
        models, active, keys
    )


def blank(cls, n: int, target: Array, *, key, softness, compositing, learn_background):
    """`n` invisible shapes (opacity ~0) over the target's mean colour."""
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
