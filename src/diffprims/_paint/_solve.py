"""The closed-form colour solve, and the per-pixel weights a loss puts on squared error."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from .._losses import L2, AbstractLoss, Scaled, Sum, Weighted
from .._model import pixel_centres
from .._shapes import layer_weights
from .._shapes._roles import COLOUR


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


@eqx.filter_jit
def solve_colours(model, target, pixel_weights=None, ridge: float = 1e-4):
    """Colours (and background) that minimise the squared error for fixed geometry.

    Solves the ridge-regularised normal equations of the layer weights (the picture is
    linear in the colours for "over" and "additive") on the full grid of `target`, each
    pixel's squared error weighted by `pixel_weights` `(H, W)` if given; clips to
    `[0, 1]`, and returns the new model and its (weighted) mean squared error.
    """
    height, width, channels = target.shape
    points = pixel_centres((height, width)).reshape(-1, 2)
    layers = layer_weights(model.compositing, model.alphas(points, pixel_size=1.0 / height))
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
    model = eqx.tree_at(
        lambda m: (m.raw_colours, m.raw_background),
        model,
        (COLOUR.raw(solved[:-1]), COLOUR.raw(solved[-1])),
    )
    return model, jnp.mean(squared)
