"""The final colour solve (least squares kept in [0, 1]), and the per-pixel weights a loss
puts on squared error."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._losses import L2, AbstractLoss, Scaled, Sum, Weighted
from .._model import pixel_centres
from .._shapes import layer_weights
from .._shapes._roles import COLOUR
from .._validate import trusted


def squared_error_weights(loss: AbstractLoss, shape: tuple[int, int]) -> Array | None:
    """Per-pixel weights `(H, W)` when `loss` is a weighted sum of squared errors, else None.

    `L2()` gives ones, `Weighted(L2(), w)` gives `w` (averaged over channels), scaled and
    summed losses combine. The placement of new shapes, pruning and the colour solve use
    these weights, so that they minimise the loss the fit minimises.
    """
    if isinstance(loss, L2):
        return jax.device_put(np.ones(shape, np.float32))  # `jnp.ones` compiled a program
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


# Working memory of the solve's pixel chunks (the (n+1, chunk) layer weights and the
# alphas behind them); the (n+1)^2 normal equations come on top.
CHUNK_BYTES = 2**27
# The largest normal-equation matrix paint will ask for (`check_solve_memory`).
MAX_GRAM_BYTES = 2**32


def check_solve_memory(n: int, restarts: int, extra: float = 0.0) -> None:
    """Refuse, before anything is allocated, a colour solve whose matrix is too large
    (`n` shapes asked for, painted with `round(extra * n)` spare ones)."""
    slots = n + round(extra * n)
    need = 3 * 4 * (slots + 1) ** 2 * restarts  # the matrix, its factorisation, a copy
    if need > MAX_GRAM_BYTES:
        most = int((MAX_GRAM_BYTES / (12 * restarts)) ** 0.5) - 1
        spares = f" and {slots - n} spare ones (`extra={extra:g}`)" if slots > n else ""
        raise ValueError(
            f"`paint`'s final colour solve for n={n} shapes{spares} ({restarts} restart(s)) "
            f"needs about {need / 2**30:.1f} GiB for its ({slots + 1})^2 normal equations; "
            f"expected at most {MAX_GRAM_BYTES / 2**30:.0f} GiB (n <= "
            f"{int(most / (1 + extra))}{' with these spares' if spares else ''}). Pass "
            "`solve_colours=False`, fewer shapes, fewer restarts"
            f"{', or extra=0' if spares else ''}."
        )


# About what the solve's compile takes on a 2-core CPU (0.35 s to 0.85 s at 100 to 200
# shapes, a loaded machine): with less than this left of a `seconds` budget it is not
# compiled ahead, and `paint` skips the solve rather than wait for it.
SOLVE_COMPILE_SECONDS = 1.0


#: The most of a `seconds` budget the solve may take (by `solve_seconds`'s estimate):
#: its reserve, and the share its stride is chosen to fit. The stride once fitted half
#: of the budget while a tenth was kept: 1000 circles with `seconds=10` took 13.9 s
#: under load, the solve 4.1 s of it.
SOLVE_SHARE = 0.15


#: The fewest pixels per solved colour a solve on a pixel grid coarser than the image
#: (`stride > 1`) takes; on fewer it fits the pixels it sees and not the others: 5000
#: circles at 512^2 with `seconds=30` solved on 7500 pixels, and their painting fell
#: from 23.8 to 19.8 dB. With too few, `paint` keeps the fitted colours.
MIN_PIXELS_PER_COLOUR = 16
#: Without a `seconds` budget, the longest solve `solve_seconds` allows (the pixel
#: grid coarsened to fit): 5000 circles at 512^2 solved on every pixel for minutes.
UNBUDGETED_SOLVE_SECONDS = 10.0


def solve_reserve(seconds: float | None, n: int, pixels: int, restarts: int = 1) -> float:
    """Seconds of a `seconds` budget kept for the final solve: its estimated time, at
    most `SOLVE_SHARE` of the budget (0 without a budget, or without a solve)."""
    if seconds is None or solve_stride(pixels, n, seconds, restarts) is None:
        return 0.0
    return min(SOLVE_SHARE * seconds, solve_seconds(n, pixels, restarts, seconds))


def solve_seconds(n: int, pixels: int, restarts: int = 1, seconds: float | None = None) -> float:
    """A generous estimate of the colour solve's wall time on a CPU, compilation included
    (0 where there is none: `solve_stride`): `paint` keeps this much of a `seconds`
    budget for it. The solve evaluates every shape at each of the pixels it solves on
    and accumulates `pixels * (n + 1)^2` products, then solves `n + 1` equations;
    measured on a 2-core CPU at 256 x 256: 0.72 s cold (0.38 s warm) at n = 200, 1.57 s
    (1.17 s) at n = 1000; at 1536 x 1024 and n = 200, on every pixel, 18 s warm (on a
    loaded machine; 0.9 s at 256 x 256 there)."""
    stride = solve_stride(pixels, n, seconds, restarts)
    if stride is None:
        return 0.0
    solved = pixels / stride**2
    return 0.8 + (_equation_seconds(n) + _pixel_seconds(n, stride > 1) * solved) * restarts


def _pixel_seconds(n: int, checked: bool = False) -> float:
    """The solve's estimated (generous) time per pixel it solves on, with `n` circles:
    every shape drawn there, and `(n + 1)^2` products; with `checked` (a coarser grid),
    every shape drawn on a second pixel too (the held-out check)."""
    return (2 if checked else 1) * 2e-8 * (n + 1) + 2e-11 * (n + 1) ** 2


def _equation_seconds(n: int) -> float:
    """The estimated (generous) time of solving the `n + 1` equations, bounds included
    (`_bounded_solve`; 3.1 s at n = 5000 on a loaded 2-core CPU, 0.07 s at 1000)."""
    return 5e-11 * (n + 1) ** 3


# The solve takes one pixel of every `stride x stride` block of larger images, so that
# it solves on at most about this many pixels (its time grows with them: 18 s warm at
# 1536 x 1024 with 200 shapes on every pixel).
MAX_SOLVE_PIXELS = 512 * 512


def solve_stride(
    pixels: int, n: int = 0, seconds: float | None = None, restarts: int = 1
) -> int | None:
    """The solve's pixel stride for an image of `pixels` pixels and `n` shapes, solved
    for `restarts` paintings: 1 up to 512 x 512, coarser where the solve on every pixel
    would take more than `SOLVE_SHARE` of a `seconds` budget (by `solve_seconds`'s
    estimate, less compilation; at 256 x 256 with 100 circles, `seconds=0.2` took 1.25 s
    warm, 0.55 s of it the solve), or `UNBUDGETED_SOLVE_SECONDS` without one. None, no
    solve, where that grid would hold fewer than `MIN_PIXELS_PER_COLOUR` pixels a shape."""
    allowed = SOLVE_SHARE * seconds if seconds is not None else UNBUDGETED_SOLVE_SECONDS
    allowed = allowed / restarts - _equation_seconds(n)  # each painting's share
    stride = 1
    for checked in (False, True):  # on a coarser grid, the check's pass counts too
        most = min(MAX_SOLVE_PIXELS, max(1.0, allowed / _pixel_seconds(n, checked)))
        stride = max(stride, math.ceil(math.sqrt(pixels / most)))
        if stride == 1:  # every pixel fits: no check to count
            break
    if stride > 1 and pixels / stride**2 < MIN_PIXELS_PER_COLOUR * (n + 1):
        return None
    return stride


#: Projected-gradient steps after the clipped solve (each a `(k, k) @ (k, C)` product).
BOUNDED_STEPS = 100
#: Solved colours stay this far inside `[0, 1]`: the ends `COLOUR.raw` stores finitely.
SOLVE_LOW = 1e-6


def _bounded_solve(gram: Array, rhs: Array, current: Array, ridge: float) -> Array:
    """The colours in `[1e-6, 1 - 1e-6]` (the ends `COLOUR` stores) minimising
    `x' G x - 2 b' x`, never worse than `current`: the better of the clipped solution of
    the normal equations (ridge-regularised towards `current`, which settles colours the
    pixels do not determine) and `current`, then projected-gradient steps (monotone at
    a step under `1 / λ_max`). Clipping alone threw the fit away where many colours come
    out negative: additive paintings ended with 4x the squared error of no solve at all.
    Regularised towards 0 and compared on the regularised error, the solve once turned a
    shape on a white page near black (72.6 -> 50.7 dB); bounds of `[1e-3, 1 - 1e-3]`
    held a black page at 60 dB."""
    low, high = SOLVE_LOW, 1.0 - SOLVE_LOW

    def objective(x):
        return jnp.sum(x * (gram @ x)) - 2 * jnp.sum(rhs * x)

    shift = ridge * jnp.trace(gram) / gram.shape[0]
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
    clipped = jnp.clip(jnp.linalg.solve(gram + shift * eye, rhs + shift * current), low, high)
    current = jnp.clip(current, low, high)
    start = jnp.where(objective(clipped) <= objective(current), clipped, current)
    # Gershgorin: the largest row sum bounds the largest eigenvalue, in O(k^2) (an
    # eigensolver is O(k^3), ten times the solve itself at thousands of shapes).
    step = 1.0 / jnp.maximum(jnp.max(jnp.sum(jnp.abs(gram), 1)), 1e-12)

    def descend(_, x):
        return jnp.clip(x - step * (gram @ x - rhs), low, high)

    return jax.lax.fori_loop(0, BOUNDED_STEPS, descend, start)


@eqx.filter_jit
@trusted
def solve_colours(model, target, pixel_weights=None, ridge: float = 1e-4, *,
                  stride: int = 1, error: bool = True):  # fmt: skip
    """Colours (and background) that minimise the squared error for fixed geometry.

    Solves the ridge-regularised normal equations of the layer weights (the picture is
    linear in the colours for "over" and "additive") on the grid of `target` (one pixel,
    the centre one, of every `stride x stride` block), each pixel's squared error
    weighted by `pixel_weights` `(H, W)` if given, within `[0, 1]` (`_bounded_solve`).
    With `stride > 1` the solved colours are kept only if they are no worse on another
    pixel of every block (the corner one) than the colours the model has: a solve on
    too few pixels fits those and not the others. Returns the new model and its
    (weighted) mean squared error on the solve's pixels (None without `error`: a second
    pass over them). The pixels are taken in chunks, so memory is the `(n+1)^2` matrix
    plus `CHUNK_BYTES`.
    """
    n, channels = model.num_shapes, target.shape[-1]
    chunk = _chunks(target, stride, n)
    parts, count = _grid(target, pixel_weights, stride, stride // 2, chunk)
    k = n + 1 if model.learn_background else n

    def layers_of(points_c):
        alphas = model.alphas(points_c, pixel_size=1.0 / target.shape[0])
        return layer_weights(model.compositing, alphas)

    def accumulate(carry, part):
        gram, rhs, cover = carry
        points_c, flat_c, weights_c, valid_c = part
        layers = layers_of(points_c)
        if model.learn_background:
            free, goal = layers, flat_c
        else:  # only the shapes' colours are free: fit what the background leaves
            free, goal = layers[:-1], flat_c - layers[-1][:, None] * model.background
        scaled = free * weights_c[None]
        cover = cover + layers[:-1] @ valid_c
        return (gram + scaled @ free.T, rhs + scaled @ goal, cover), None

    zeros = (jnp.zeros((k, k)), jnp.zeros((k, channels)), jnp.zeros((n,)))
    (gram, rhs, cover), _ = jax.lax.scan(accumulate, zeros, parts)
    before = jnp.concatenate([model.colours, model.background[None]], 0)
    solved = _bounded_solve(gram, rhs, before if model.learn_background else before[:-1], ridge)
    if not model.learn_background:
        solved = jnp.concatenate([solved, model.background[None]], 0)
    # Shapes that cover nothing keep their colour.
    used = cover > 1e-3
    solved = solved.at[:-1].set(jnp.where(used[:, None], solved[:-1], model.colours))

    def squared_errors(parts, *colours):
        """The weighted squared error of each colour table on `parts`, in one pass."""

        def add(totals, part):
            points_c, flat_c, weights_c, _ = part
            layers = layers_of(points_c).T
            return [t + jnp.sum((layers @ c - flat_c) ** 2 * weights_c[:, None])
                    for t, c in zip(totals, colours)], None  # fmt: skip

        return jax.lax.scan(add, [jnp.zeros(()) for _ in colours], parts)[0]

    if stride > 1:  # checked on pixels it was not solved on
        held_out, _ = _grid(target, pixel_weights, stride, 0, chunk)
        after, fitted = squared_errors(held_out, solved, before)
        solved = jnp.where(after > fitted, before, solved)
    # A fixed background keeps its stored value (through `COLOUR.raw` it came back a
    # rounding error away).
    background = COLOUR.raw(solved[-1]) if model.learn_background else model.raw_background
    model = eqx.tree_at(
        lambda m: (m.raw_colours, m.raw_background), model, (COLOUR.raw(solved[:-1]), background)
    )
    return model, squared_errors(parts, solved)[0] / (count * channels) if error else None


def _chunks(target: Array, stride: int, n: int) -> int:
    """Pixels per chunk of a solve on every `stride`-th pixel of `target` with `n`
    shapes: the layer weights of a chunk take about `CHUNK_BYTES`."""
    count = -(-target.shape[0] // stride) * -(-target.shape[1] // stride)
    return max(1, min(count, CHUNK_BYTES // (16 * (n + 1))))


def _grid(target: Array, pixel_weights: Array | None, stride: int, offset: int, chunk: int):
    """`(parts, count)`: the pixel centres, target values, weights and validity (1, 0
    for padding) of one pixel of every `stride x stride` block (`offset` into it), in
    chunks of `chunk` pixels (padded), and how many pixels there are."""
    height, width, channels = target.shape
    rows, cols = slice(offset, None, stride), slice(offset, None, stride)
    points = pixel_centres((height, width))[rows, cols].reshape(-1, 2)
    flat = target[rows, cols].reshape(-1, channels)
    count = points.shape[0]
    weights = jnp.ones((count,)) if pixel_weights is None else pixel_weights[rows, cols]
    valid = jnp.ones((count,))
    pad = -count % chunk
    columns = (points, flat, weights.reshape(-1).astype(jnp.float32), valid)
    # Padding weighs nothing.
    columns = [jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1)) for x in columns]
    return [x.reshape(-1, chunk, *x.shape[1:]) for x in columns], count
