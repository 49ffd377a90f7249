"""Compositing as functions of arrays: the one place each mode's arithmetic lives.

Every renderer (the scan, the tiled path and its VJP, one layer's `group_step` at a
time) and `paint` (its colour solve and pruning) composite through these functions,
given the shapes' alphas (opacity times coverage), colours and depths and a background:

- "over": back to front in index order (layer 0 at the back), the naive loop
  `image = image + alpha * (colour - image)`. Closed form: layer `k` shows with weight
  `alpha_k * T_k`, `T_k` the transmittance of the layers in front of it.
- "additive": `background + sum_k alpha_k colour_k`.
- "depth": a soft z-buffer, `softmax(log alpha + depth)` mix of the colours, over the
  background by the total transmittance (not "over": the nearest shape takes the whole
  coverage, and a near shape's soft edge outweighs a far shape that covers the point).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

#: The compositing modes of a shape set; see `AbstractShapes`.
MODES = ("over", "additive", "depth")

#: The most the initial depths of a set span: a shape weighs `alpha * exp(depth)` in the
#: "depth" mix, so a front shape's soft edge `k` pixels away (alpha ~ exp(-2k) at
#: softness 0.5) outweighed a shape covering the pixel once depths spanned far more
#: (200 shapes 0.5 apart: 100; `paint` with "depth" then ended worse than a flat colour).
DEPTH_SPAN = 8.0


def depth_spacing(n: int) -> float:
    """How far apart `n` initial depths start: 0.5, closer for more than 16 shapes."""
    return min(0.5, DEPTH_SPAN / max(n, 1))


def initial_depths(n: int, like: Any = None) -> Array:
    """Learnable depths that start in index order, `depth_spacing(n)` apart (a gentle
    soft order, spanning at most `DEPTH_SPAN`): float32, or float64 `like` a float64 set's
    colours."""
    return depth_spacing(n) * jnp.arange(n, dtype=jnp.result_type(like, jnp.float32))


def through(front: Array, alpha: Array) -> Array:
    """Transmittance `front` carried back through one layer of `alpha`: the one place
    the "over" transmittance product is written."""
    return front * (1.0 - alpha)


def transmittance(alphas: Float[Array, "K ..."]) -> tuple[Array, Array]:
    """`(behind, in_front)`, both `(K, ...)`: transmittance through layers `k..K-1` and
    through the layers in front of `k` (`k+1..K-1`).

    A sequential product from the front layer back (not `cumprod`, whose association
    depends on `K`): layers of alpha 0 appended at the back change nothing, bit for bit.
    """
    _, in_front = jax.lax.scan(
        lambda front, alpha: (through(front, alpha), front),
        jnp.ones_like(alphas[0]),
        alphas,
        reverse=True,
    )
    return through(in_front, alphas), in_front


def layer_weights(mode: str, alphas: Float[Array, "K P"]) -> Float[Array, "K+1 P"]:
    """How much each layer, and (last row) the background, shows at every point.

    For "over" and "additive" the picture is linear in the colours:
    `image = layer_weights(mode, alphas).T @ [colours; background]`.
    """
    if mode == "over":
        behind, in_front = transmittance(alphas)
        return jnp.concatenate([alphas * in_front, behind[:1]], 0)
    if mode == "additive":
        return jnp.concatenate([alphas, jnp.ones_like(alphas[:1])], 0)
    raise ValueError(f'layer weights exist for "over" and "additive"; got {mode!r}.')


def composite(
    mode: str,
    alphas: Float[Array, "K P"],
    colours: Float[Array, "K C"],
    background: Float[Array, " C"] | Float[Array, "P C"],
    depths: Float[Array, " K"] | None = None,
) -> Float[Array, "P C"]:
    """Composite `K` layers at `P` points, all at once (closed form).

    `background` is one colour `(C,)` or one per point `(P, C)` (the picture below, for
    stacked layers).
    """
    if mode != "depth":
        weights = layer_weights(mode, alphas)
        return weights[:-1].T @ colours + weights[-1][:, None] * background
    assert depths is not None
    log_weights = jnp.log(alphas + 1e-30) + depths[:, None]
    weights = jnp.exp(log_weights - jax.lax.stop_gradient(jnp.max(log_weights, 0)))
    mix = (weights.T @ colours) / jnp.maximum(jnp.sum(weights, 0), 1e-30)[:, None]
    total = transmittance(alphas)[0][0][:, None]
    return (1.0 - total) * mix + total * background


# -- one layer at a time (the scan renderer) --------------------------------------------


def start(mode: str, background: Float[Array, " C"], num_points: int) -> Any:
    """The compositing state of `num_points` points before any layer is drawn."""
    colour = jnp.broadcast_to(background, (num_points, background.shape[-1]))
    if mode == "depth":
        zeros = jnp.zeros((num_points,), colour.dtype)
        # (mix numerator, mix denominator, running max log-weight, transmittance)
        return (jnp.zeros_like(colour), zeros, zeros - 1e30, zeros + 1.0)
    return colour


def over_step(image: Array, alpha: Array, colour: Array) -> Array:
    """Draw one layer "over" `image` (`alpha` broadcast against `image`'s leading axes)."""
    return image + alpha[..., None] * (colour - image)


def step(mode: str, state: Any, alpha: Float[Array, " P"], colour: Array, depth: Any) -> Any:
    """Draw one layer (its `alpha` at each point) onto `state`, in index order."""
    if mode == "over":
        return over_step(state, alpha, colour)
    if mode == "additive":
        return state + alpha[..., None] * colour
    numerator, denominator, running, transmitted = state
    log_weight = jnp.log(alpha + 1e-30) + depth
    new = jax.lax.stop_gradient(jnp.maximum(running, log_weight))
    rescale, weight = jnp.exp(running - new), jnp.exp(log_weight - new)
    return (
        numerator * rescale[:, None] + weight[:, None] * colour,
        denominator * rescale + weight,
        new,
        through(transmitted, alpha),
    )


def group_step(mode: str, image: Array, alpha: Array, colour: Array) -> Array:
    """Draw one layer per group: `image` `(G, S, C)`, `alpha` `(G, S)`, `colour` `(G, C)`
    (each group its own shape). "over" and "additive" only: the tiled renderer's step."""
    if mode == "depth":
        raise ValueError(f'grouped layers composite "over" or "additive"; got {mode!r}.')
    return step(mode, image, alpha, colour[:, None, :], None)


def finish(mode: str, state: Any, background: Float[Array, " C"]) -> Float[Array, "P C"]:
    """The composited `(P, C)` values from the final state."""
    if mode != "depth":
        return state
    numerator, denominator, _, transmitted = state
    mix = numerator / jnp.maximum(denominator, 1e-30)[:, None]
    return (1.0 - transmitted)[:, None] * mix + transmitted[:, None] * background
