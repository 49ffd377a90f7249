"""`dp.paint`: approximate an image with `n` shapes, with our best defaults.

The recipe (each piece a knob of `paint`):

- **progressive rounds** (as in Image-GS): start with a fraction of the shapes and add
  more each round where the error of the current picture is largest;
- **pruning**: each round also moves the shapes that contribute least (whose removal
  would raise the error least) to where the error is largest;
- **error-driven initialisation**: a new shape is centred on a pixel drawn with
  probability proportional to the (blurred) squared error there, sized for the number of
  shapes on the canvas, and coloured in closed form so that it fixes that error;
- **coarse-to-fine**: early rounds fit a blurred target with wider soft edges, later
  rounds the sharp target with the model's own softness;
- **stratified pixel sampling**: each step renders one random pixel of every
  `stride x stride` block of the full-resolution target (one compilation for the whole
  run, full-resolution detail at a fraction of the cost of a full render);
- **random restarts** batched with `jax.vmap` over keys, keeping the best;
- a **wall-time budget**: `seconds=T` spends T seconds in all, compilation included;
- a final **colour solve**: for the fitted geometry, colours and background by linear
  least squares.

The gradient steps are `dp.fit`'s own step loop (`run_steps`), driven round by round.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._circles import Circles
from ._fit import FitResult, run_steps
from ._image import check_image
from ._losses import L2, AbstractLoss, Scaled, Sum, Weighted, as_loss
from ._model import pixel_centres
from ._shapes import COMPOSITING_MODES, AbstractShapes, initial_depths, raw_unit
from ._validate import check_key, check_positive_int, describe

# Parameters whose names contain these are positions (frame units): they get `lr`.
_POSITION_WORDS = ("centre", "vert", "point", "position")
_DEBUG = bool(os.environ.get("DIFFPRIMS_PAINT_DEBUG"))
_SHARED = ("raw_colours", "raw_opacities", "raw_background", "raw_depths")


def _blur_matrix(size: int, sigma: Array) -> Array:
    """`(size, size)` Gaussian blur along one axis, rows renormalised at the borders."""
    offsets = jnp.arange(size, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / sigma) ** 2)
    return weights / jnp.sum(weights, 1, keepdims=True)


@jax.jit
def blur(image: Float[Array, "H W C"], sigma: float | Array) -> Float[Array, "H W C"]:
    """Gaussian blur of an `(H, W, C)` image with standard deviation `sigma` pixels.

    Separable (two matrix products), renormalised at the borders; `sigma` may be traced.
    A `sigma` near 0 returns the image unchanged.
    """
    sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)
    height, width, _ = image.shape
    rows, cols = _blur_matrix(height, sigma), _blur_matrix(width, sigma)
    return jnp.einsum("ij,jkc,lk->ilc", rows, image, cols)


def _labels(model: AbstractShapes) -> AbstractShapes:
    """The optimizer group of every parameter leaf: "position", "geometry" or "colour"."""

    def label(name):
        if name in _SHARED:
            return "colour"
        return "position" if any(w in name for w in _POSITION_WORDS) else "geometry"

    fields = {
        name: label(name)
        for name in model.__dataclass_fields__  # pyright: ignore[reportAttributeAccessIssue]
        if eqx.is_array(getattr(model, name))
    }
    return eqx.tree_at(lambda m: [getattr(m, k) for k in fields], model, list(fields.values()))


@functools.lru_cache(maxsize=64)
def _optimizer(lr: float, lr_geometry: float, lr_colour: float):
    """One optimizer object per set of rates, so repeated `paint` calls reuse compilations."""
    return optax.multi_transform(
        {
            "position": optax.adam(lr),
            "geometry": optax.adam(lr_geometry),
            "colour": optax.adam(lr_colour),
        },
        _labels,
    )


def _steps(params, static, opt_state, optimizer, goal, loss, keys, edge_scale, lr_scale, first,
           length, stride, method):  # fmt: skip
    """`length` steps of `fit`'s step loop on stratified samples, for every restart.

    Shapes not placed yet are invisible and off the canvas, so their gradients are exactly
    zero and Adam leaves them where they are.
    """

    def one(params, opt_state, key):
        params, opt_state, _, values, _ = run_steps(
            params, static, opt_state, jnp.asarray(True), goal, loss, optimizer, key, first,
            first + length, ("stratified", stride), length, pixel_scale=edge_scale,
            method=method, update_scale=lr_scale,
        )  # fmt: skip
        return params, opt_state, values

    if keys.ndim == 0:  # a single run: no restart axis
        return one(params, opt_state, keys)
    return jax.vmap(one)(params, opt_state, keys)


def squared_error_weights(loss: AbstractLoss, shape: tuple[int, int]) -> Array | None:
    """Per-pixel weights `(H, W)` when `loss` is a weighted sum of squared errors, else None.

    `L2()` gives ones, `Weighted(L2(), w)` gives `w` (averaged over channels), scaled and
    summed losses combine. The placement of new shapes, pruning and the colour solve use
    these weights, so that they minimise the loss the fit minimises.
    """
    if isinstance(loss, L2):
        return jnp.ones(shape, jnp.float32)
    if isinstance(loss, Weighted) and isinstance(loss.loss, L2):
        return jnp.broadcast_to(jnp.mean(loss.weights, -1), shape)
    if isinstance(loss, Scaled):
        inner = squared_error_weights(loss.loss, shape)
        return None if inner is None else loss.weight * inner
    if isinstance(loss, Sum):
        total = jnp.zeros(shape, jnp.float32)
        for term in loss.terms:
            part = squared_error_weights(term, shape)
            if part is None:
                return None
            total = total + part
        return total
    return None


def _downsample(image: Array, level: int) -> Array:
    """Block means of `level x level` pixels of an `(H, W, ...)` array."""
    height, width = image.shape[:2]
    h, w = height // level, width // level
    blocks = image[: h * level, : w * level].reshape(h, level, w, level, *image.shape[2:])
    return blocks.mean((1, 3))


@eqx.filter_jit
def _error_map(model, target, weights, level: int, method: str = "auto"):
    """Weighted squared error of `model` per pixel of a `level`-times coarser grid.

    Returns the error map, the model's picture and the target on that grid.
    """
    small = _downsample(target, level)
    pred = model.render_image(small.shape[:2], method=method)
    return jnp.sum((pred - small) ** 2, -1) * _downsample(weights, level), pred, small


def _usefulness(model: AbstractShapes, target: Array, weights: Array, level: int) -> Array:
    """How much the weighted squared error would grow if each shape were removed, `(N,)`.

    On a `level`-times coarser grid. With "over" compositing, removing shape `i` changes
    the picture by `w_i (c_i - U_i)`, with `w_i` its visible weight and `U_i` the picture
    of everything behind it; one scan over the shapes (back to front) carries `U`.
    "additive" drops `w_i c_i`. For "depth" (no fixed order) every shape counts as useful.
    """
    if model.compositing == "depth":
        return jnp.full((model.num_shapes,), jnp.inf)
    small, pixel_weights = _downsample(target, level), _downsample(weights, level).reshape(-1, 1)
    h, w, channels = small.shape
    alphas = model.alphas(pixel_centres((h, w)).reshape(-1, 2), pixel_size=1.0 / h)  # (N, P)
    layers = _layer_weights(alphas, model.compositing)
    colours = model.colours
    pred = layers.T @ jnp.concatenate([colours, model.background[None]], 0)
    residual = small.reshape(-1, channels) - pred
    visible = layers[:-1]  # (N, P)
    if model.compositing == "additive":
        change = visible[:, :, None] * colours[:, None, :]
        return jnp.sum(pixel_weights * (2 * residual * change + change**2), (1, 2))
    behind_start = jnp.broadcast_to(model.background, pred.shape)

    def step(behind, shape):
        alpha, seen, colour = shape
        change = seen[:, None] * (colour - behind)
        grow = jnp.sum(pixel_weights * (2 * residual * change + change**2))
        return alpha[:, None] * colour + (1 - alpha[:, None]) * behind, grow

    _, grows = jax.lax.scan(step, behind_start, (alphas, visible, colours))
    return grows


@eqx.filter_jit
def _add(
    models, target, weights, active, start, count, most, size, opacity, keys, level, method, prune
):
    """`_add_shapes` for every restart (leading axis); `most` and `level` are static."""

    def one(model, active, key):
        return _add_shapes(
            model, target, weights, active, start, count, most, size, opacity, key, level,
            method, prune,
        )  # fmt: skip

    if keys.ndim == 0:
        return one(models, active, keys)
    return jax.vmap(one)(models, active, keys)


def _add_shapes(
    model, target, weights, active, start, count, most, size, opacity, key, level, method, prune
):
    """Activate shapes `start, ..., start + count - 1` where the (weighted) error is largest.

    Up to `most` active shapes that no longer show (opacity near 0, smaller than a pixel,
    or off the canvas), and the `prune` active shapes whose removal would cost least, are
    re-seeded the same way. `count <= most` and `prune` may be traced; `most` (static)
    fixes the shapes of the computation.
    """
    error, pred, small = _error_map(model, target, weights, level, method)
    h, w = error.shape
    smooth = blur(error[..., None], 1.0)[..., 0]
    k_pick, k_jitter, k_geom = jax.random.split(key, 3)
    logits = jnp.log(smooth.reshape(-1) + 1e-12)
    # Gumbel top-k: `count` distinct pixels drawn proportionally to the error.
    gumbel = jax.random.gumbel(k_pick, logits.shape)
    total = 2 * most
    picks = jnp.argsort(-(logits + gumbel))[: min(total, h * w)]
    picks = jnp.resize(picks, (total,))
    rows, cols = picks // w, picks % w
    jitter = jax.random.uniform(k_jitter, (total, 2))
    centres = jnp.stack([(cols + jitter[:, 0]) / h, (rows + jitter[:, 1]) / h], -1)
    sigma = jnp.maximum(size * h / 2.0, 0.5)
    local_goal, local_pred = blur(small, sigma)[rows, cols], blur(pred, sigma)[rows, cols]
    colours = jnp.clip((local_goal - (1 - opacity) * local_pred) / opacity, 0.02, 0.98)
    sizes = jnp.full((total,), size)
    geometry = type(model).random_geometry(centres, sizes, key=k_geom)
    n = model.num_shapes
    # Slots past `count` point out of range (n) and are dropped by the scatter.
    slots = jnp.where(jnp.arange(most) < count, start + jnp.arange(most), n)
    box = model.bounds()
    pixel = 1.0 / target.shape[0]
    aspect = target.shape[1] / target.shape[0]
    dead = active & (
        (model.opacities < 0.02)
        | (jnp.max(box[:, 2:] - box[:, :2], -1) < 1.5 * pixel)
        | (box[:, 2] < 0) | (box[:, 3] < 0) | (box[:, 0] > aspect) | (box[:, 1] > 1)
    )  # fmt: skip
    if prune is not None:
        useful = _usefulness(model, target, weights, max(1, level // 2))
        useful = jnp.where(active, useful, jnp.inf)
        ranks = jnp.zeros((n,), jnp.int32).at[jnp.argsort(useful)].set(jnp.arange(n))
        dead = dead | ((ranks < prune) & jnp.isfinite(useful))
    slots = jnp.concatenate([slots, jnp.nonzero(dead, size=most, fill_value=n)[0]])
    values = dict(geometry)
    values["raw_colours"] = raw_unit(colours)
    values["raw_opacities"] = jnp.full((total,), raw_unit(opacity))
    if model.raw_depths is not None:
        top = jnp.max(jnp.where(active, model.raw_depths, -jnp.inf), initial=0.0)
        values["raw_depths"] = top + 0.5 + 0.5 * jnp.arange(total, dtype=jnp.float32)
    new = {
        name: getattr(model, name).at[slots].set(value.astype(jnp.float32), mode="drop")
        for name, value in values.items()
    }
    names = list(new)
    model = eqx.tree_at(lambda m: [getattr(m, k) for k in names], model, [new[k] for k in names])
    return model, active.at[slots].set(True, mode="drop")


def _layer_weights(alphas: Array, compositing: str) -> Array:
    """Visible weight of every shape and of the background at every point, `(N + 1, P)`.

    From the shapes' `alphas` `(N, P)`. With "over" or "additive" compositing the
    picture is linear in the colours: `image = weights.T @ [colours; background]`.
    """
    if compositing == "over":
        keep = 1.0 - alphas
        behind = jnp.flip(jnp.cumprod(jnp.flip(keep, 0), 0), 0)
        in_front = jnp.concatenate([behind[1:], jnp.ones_like(keep[:1])], 0)
        return jnp.concatenate([alphas * in_front, behind[:1]], 0)
    return jnp.concatenate([alphas, jnp.ones_like(alphas[:1])], 0)


@eqx.filter_jit
def _solve_colours(model, target, pixel_weights=None, ridge: float = 1e-4):
    """Colours (and background) that minimise the squared error for fixed geometry.

    Solves the ridge-regularised normal equations of `_layer_weights` on the full grid of
    `target` (each pixel's squared error weighted by `pixel_weights` `(H, W)` if given),
    clips to `[0, 1]`, and returns the new model and its (weighted) mean squared error.
    """
    height, width, channels = target.shape
    points = pixel_centres((height, width)).reshape(-1, 2)
    layers = _layer_weights(model.alphas(points, pixel_size=1.0 / height), model.compositing)
    flat = target.reshape(-1, channels)
    if model.learn_background:
        free, goal = layers, flat
    else:  # only the shapes' colours are free: fit what the background leaves
        free, goal = layers[:-1], flat - layers[-1][:, None] * model.background
    scaled = free if pixel_weights is None else free * pixel_weights.reshape(1, -1)
    gram = scaled @ free.T
    gram = gram + ridge * (jnp.trace(gram) / gram.shape[0]) * jnp.eye(gram.shape[0])
    solved = jnp.clip(jnp.linalg.solve(gram, scaled @ goal), 1e-3, 1 - 1e-3)
    if not model.learn_background:
        solved = jnp.concatenate([solved, model.background[None]], 0)
    # Shapes that cover nothing keep their colour.
    used = jnp.sum(layers[:-1], 1) > 1e-3
    solved = solved.at[:-1].set(jnp.where(used[:, None], solved[:-1], model.colours))
    squared = (layers.T @ solved - flat) ** 2
    if pixel_weights is not None:
        squared = squared * pixel_weights.reshape(-1, 1)
    error = jnp.mean(squared)
    model = eqx.tree_at(
        lambda m: (m.raw_colours, m.raw_background),
        model,
        (raw_unit(solved[:-1]), jnp.asarray(raw_unit(solved[-1]), jnp.float32)),
    )
    return model, error


def _blank(cls, n: int, target: Array, *, key, softness, compositing, learn_background):
    """`n` invisible shapes (opacity ~0) over the target's mean colour."""
    height, width, channels = target.shape
    # Off the canvas, so renderers that cull by bounds skip shapes not yet placed.
    centres = jnp.full((n, 2), -10.0)
    geometry = cls.random_geometry(centres, jnp.full((n,), 0.05), key=key)
    background = jnp.mean(target, (0, 1))
    if compositing == "additive":
        background = jnp.min(target, (0, 1))
    return cls(
        raw_colours=jnp.zeros((n, channels), jnp.float32),
        raw_opacities=jnp.full((n,), -30.0, jnp.float32),
        raw_background=jnp.asarray(raw_unit(background), jnp.float32),
        softness=float(softness),
        compositing=compositing,
        learn_background=learn_background,
        raw_depths=initial_depths(n) if compositing == "depth" else None,
        # Strong float32 leaves, so later rounds (after optimizer updates) reuse the
        # compiled steps instead of recompiling for weak types.
        **{k: jnp.asarray(v, jnp.float32) for k, v in geometry.items()},
    )


def _schedule(n: int, rounds: int) -> list[int]:
    """How many shapes each round adds: fewer early, so each round fixes what is left."""
    # Equal counts (at most two distinct sizes, so at most two compilations of the adder).
    return [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]


def paint(
    target: Float[Array, "H W C"],
    n: int,
    *,
    key: PRNGKeyArray,
    shape: type[AbstractShapes] = Circles,
    seconds: float | None = None,
    steps: int | None = None,
    rounds: int = 8,
    restarts: int = 1,
    loss: Any = None,
    stride: int = 4,
    coarse: float = 3.0,
    softness: float = 0.5,
    opacity: float = 0.7,
    grow: float = 0.6,
    prune: float = 0.1,
    compositing: str = "over",
    learn_background: bool = True,
    lr: float = 1e-2,
    lr_geometry: float = 1e-2,
    lr_colour: float = 1e-2,
    anneal: float = 0.9,
    solve_colours: bool = True,
    method: str | None = None,
    steps_per_dispatch: int = 50,
) -> FitResult:
    """Approximate `target` with `n` shapes: initialisation and fit with our best defaults.

    Shapes are added in `rounds` (each round puts new shapes where the picture is most
    wrong, coloured in closed form, then fits every shape so far by gradient descent on
    stratified pixel samples of the full-resolution target); the first rounds see a
    blurred target with wider edges (coarse to fine); `restarts` independent runs are
    batched with `jax.vmap` and the best is kept. Either `steps` or `seconds` sets how
    long it runs.

    **Arguments:**

    - `target`: `(H, W, C)` image, float in `[0, 1]`.
    - `n`: the number of shapes.
    - `key`: PRNG key; the same key (and the same `steps`) gives the same painting.
    - `shape`: any [`diffprims.AbstractShapes`][] subclass (`dp.Circles`,
      `dp.Ellipses`, `dp.Triangles`, `dp.Rectangles`, `dp.Gaussians`, your own).
    - `seconds`: wall-time budget in seconds, compilation included; rounds share it in
      proportion to their step share. Overrides `steps`.
    - `steps`: total optimizer steps when no `seconds` is given (default 1500).
    - `rounds`: the number of progressive rounds (1 places all shapes at once).
    - `restarts`: independent runs batched with `jax.vmap`; the one with the lowest
      loss on the full image is returned.
    - `loss`: a loss `(pred, target) -> scalar` on sampled pixels (default
      [`diffprims.L2`][]); per-pixel maps ([`diffprims.Weighted`][]) are sampled along.
      With `dp.Weighted(dp.L2(), weights)` new shapes also go where the *weighted* error
      is largest (give a face weight 8 and it gets more shapes).
    - `stride`: each step renders one random pixel per `stride x stride` block.
    - `coarse`: blur (in pixels) of the target and edge widening in the first round,
      decaying to 0 and 1 by the last round.
    - `softness`, `compositing`, `learn_background`: of the shape set (see
      [`diffprims.AbstractShapes`][]).
    - `opacity`: the opacity new shapes start with.
    - `grow`: new shapes start this many times the size at which the shapes placed so
      far would tile the frame (so each round's shapes are smaller than the last's).
    - `prune`: each round also re-seeds this fraction of the shapes already placed: those
      whose removal would raise the squared error least (shapes hidden by others, or
      painting what their neighbours already paint) move to where the error is largest.
    - `lr`, `lr_geometry`, `lr_colour`: Adam learning rates for positions (frame
      units), other geometry (log sizes, angles) and colours/opacities/depths (logits).
    - `solve_colours`: finish by solving for the colours and background that minimise
      the squared error on the full image for the fitted geometry (a linear least-squares
      problem for "over" and "additive" compositing; weighted by the loss's per-pixel
      weights for `dp.Weighted(dp.L2(), weights)`; skipped for losses that are not
      squared errors).
    - `method`: the renderer for the sampled pixels, as in
      [`diffprims.AbstractShapes.render`][]. By default "scan" up to 120 shapes (it
      compiles in a few seconds) and "auto" (tiled, culled: much faster steps but a
      longer compilation) above.
    - `anneal`: over the last round the learning rates fall linearly to `1 - anneal`
      times their value.
    - `steps_per_dispatch`: steps per compiled call (the budget is checked between).

    **Returns:**

    A [`diffprims.FitResult`][]: the fitted shapes, the loss at every step (of the kept
    restart), the wall time, and a snapshot after every round (for
    [`diffprims.save_gif`][]: the painting as it grows).

    ```python
    result = dp.paint(target, 200, key=jax.random.key(0), seconds=20)
    image = result.model.render_image(target.shape[:2])
    ```
    """
    start_time = time.perf_counter()
    if not (isinstance(shape, type) and issubclass(shape, AbstractShapes)):
        raise TypeError(
            "`shape` must be a shape class such as `dp.Circles` (the class, not an "
            f"instance); got {describe(shape)}."
        )
    target = check_image(target, "target")
    n = check_positive_int(n, "n")
    key = check_key(key)
    rounds = check_positive_int(rounds, "rounds")
    restarts = check_positive_int(restarts, "restarts")
    stride = check_positive_int(stride, "stride")
    steps_per_dispatch = check_positive_int(steps_per_dispatch, "steps_per_dispatch")
    if compositing not in COMPOSITING_MODES:
        raise ValueError(f"`compositing` must be one of {COMPOSITING_MODES}; got {compositing!r}.")
    if seconds is not None and not (isinstance(seconds, int | float) and seconds > 0):
        raise ValueError(f"`seconds` must be a number > 0; got {describe(seconds)}.")
    if seconds is None:
        steps = 1500 if steps is None else check_positive_int(steps, "steps")
    if not 0 < opacity < 1:
        raise ValueError(f"`opacity` must be in (0, 1); got {opacity}.")
    if not 0 <= prune < 1:
        raise ValueError(f"`prune` must be a fraction in [0, 1); got {prune}.")
    if not coarse >= 0:
        raise ValueError(f"`coarse` must be >= 0 (pixels of blur); got {coarse}.")
    rounds = min(rounds, n)
    if method is None:
        method = "scan" if n <= 120 else "auto"
    loss = as_loss(L2() if loss is None else loss)
    height, width, channels = target.shape
    stride = min(stride, height, width)
    level = max(1, min(height, width) // 64)  # error maps on a ~64-pixel grid
    # The placement, pruning and colour solve minimise the same weighted squared error as
    # the fit when the loss is one; for other losses, plain squared error (and no solve).
    pixel_weights = squared_error_weights(loss, (height, width))
    solving = solve_colours and compositing != "depth" and pixel_weights is not None
    if pixel_weights is None:
        pixel_weights = jnp.ones((height, width), jnp.float32)

    keys = jax.random.split(key, restarts + 1)
    k_blank, run_keys = keys[0], keys[1:]
    blank = _blank(
        shape, n, target, key=k_blank, softness=softness, compositing=compositing,
        learn_background=learn_background,
    )  # fmt: skip
    if restarts == 1:
        run_keys = run_keys[0]
        models, active = blank, jnp.zeros((n,), bool)
    else:
        models = jax.vmap(lambda _: blank)(run_keys)
        active = jnp.zeros((restarts, n), bool)
    fold = jax.random.fold_in if restarts == 1 else jax.vmap(jax.random.fold_in, (0, None))
    counts = _schedule(n, rounds)
    step_weights = np.array(counts, float) + n / rounds  # later rounds fit more shapes
    step_share = step_weights / step_weights.sum()
    optimizer = _optimizer(float(lr), float(lr_geometry), float(lr_colour))
    losses = []
    rounds_done = []  # (steps so far, models) after every round: the snapshots
    done = 0
    for r, count in enumerate(counts):
        fraction = r / max(rounds - 1, 1)
        blur_sigma = coarse * (1.0 - fraction)
        # Pixel-size multiplier: edges `coarse` times wider in the first round, the
        # model's own softness by the last.
        edge_scale = 1.0 + (coarse - 1.0) * (1.0 - fraction) if coarse > 1 else 1.0
        goal = blur(target, blur_sigma) if blur_sigma > 0.05 else target
        total = sum(counts[: r + 1])
        size = grow * np.sqrt((width / height) / (np.pi * total))
        round_keys = fold(run_keys, r)
        models, active = _add(
            models, goal, pixel_weights, active, jnp.int32(total - count), jnp.int32(count),
            max(counts), jnp.asarray(size, jnp.float32),
            jnp.asarray(opacity, jnp.float32), round_keys, level, method,
            jnp.int32(min(round(prune * (total - count)), max(counts))) if prune else None,
        )  # fmt: skip
        if _DEBUG:
            jax.block_until_ready(models)
            print(f"round {r}: added, t={time.perf_counter() - start_time:.2f}s")
        params, static = eqx.partition(models, eqx.is_inexact_array)
        opt_state = (optimizer.init if restarts == 1 else jax.vmap(optimizer.init))(params)
        round_end = None
        if seconds is not None:
            elapsed = time.perf_counter() - start_time
            # Keep a share of the budget for the final colour solve.
            reserve = min(0.1 * seconds, 3.0) if solving else 0.0
            left = seconds - reserve - elapsed
            round_end = time.perf_counter() + left * step_share[r] / step_share[r:].sum()
            budget_steps = None
        else:
            assert steps is not None
            budget_steps = max(1, round(steps * float(np.sum(step_share[: r + 1])))) - done
        taken = 0
        chunk_start = round_start = time.perf_counter()
        while True:
            length = steps_per_dispatch
            # The last round anneals the learning rate linearly down to `1 - anneal`.
            if round_end is not None:
                progress = (time.perf_counter() - round_start) / max(round_end - round_start, 1e-9)
            else:
                assert budget_steps is not None
                progress = taken / max(budget_steps, 1)
            last = r == len(counts) - 1
            lr_scale = 1.0 - anneal * min(max(progress, 0.0), 1.0) if last else 1.0
            if budget_steps is not None:
                length = min(length, budget_steps - taken)
                if length <= 0:
                    break
            step_keys = fold(run_keys, 1000 + r)
            params, opt_state, values = _steps(
                params, static, opt_state, optimizer, goal, loss, step_keys,
                jnp.asarray(edge_scale, jnp.float32), jnp.float32(lr_scale), jnp.int32(taken),
                length, stride, method,
            )  # fmt: skip
            losses.append(values)
            taken += length
            if _DEBUG:
                jax.block_until_ready(values)
                print(f"  chunk done t={time.perf_counter() - start_time:.2f}s")
            if round_end is not None:
                jax.block_until_ready(values)
                now = time.perf_counter()
                # The last chunk's duration (the first one includes compilation).
                chunk, chunk_start = now - chunk_start, now
                if now + 0.5 * chunk > round_end and (taken > length or now > round_end):
                    break
        done += taken
        models = eqx.combine(params, static)
        rounds_done.append((done, models))
        if _DEBUG:
            print(f"round {r}: {taken} steps, t={time.perf_counter() - start_time:.2f}s")

    if solving:
        solve = _solve_colours if restarts == 1 else jax.vmap(_solve_colours, (0, None, None))
        models, _ = solve(models, target, pixel_weights)
    rounds_done[-1] = (done, models)  # the last snapshot is the returned model
    if restarts == 1:
        history = jnp.concatenate(losses, 0)
        snapshots = tuple(m for _, m in rounds_done)
    else:
        finals = jax.vmap(lambda m: jnp.mean((m.render_image((height, width)) - target) ** 2))(
            models
        )
        best = int(jnp.argmin(finals))
        history = jnp.concatenate([v[best] for v in losses], 0)
        snapshots = tuple(jax.tree.map(lambda x: x[best], m) for _, m in rounds_done)
    jax.block_until_ready((snapshots, history))
    return FitResult(
        model=snapshots[-1],
        losses=history,
        seconds=time.perf_counter() - start_time,
        snapshots=snapshots,
        snapshot_steps=tuple(at for at, _ in rounds_done),
    )
