"""Large photos are painted from a smaller copy: shapes do not depend on the resolution.

Everything `paint` does scales with the target's pixels: a step renders one pixel of
every `stride x stride` block, each round blurs the target, the colour solve reads it.
On a 4000 x 3000 photo a 10 s budget ran 3 steps (17 dB where the same photo at 256
pixels reached 21 dB) and overran by 2 to 3 s, all of it at a precision 200 shapes
cannot use. Like fogleman/primitive (which works at 256 pixels), `paint` fits a copy of
at most `working_pixels(n)` pixels; the shapes it returns render at any size.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .._aspect import faithful_shape
from .._loss_checks import map_weight_maps

#: The most pixels a painting of `n` shapes fits on: 512 x 512, or 1024 a shape (a
#: shape of average size then covers 32 x 32 pixels or more), whichever is more.
WORKING_PIXELS = 512 * 512
PIXELS_PER_SHAPE = 1024


def working_pixels(n: int) -> int:
    """The most pixels `paint` fits `n` shapes on."""
    return max(WORKING_PIXELS, PIXELS_PER_SHAPE * n)


def working_shape(height: int, width: int, n: int) -> tuple[int, int]:
    """The `(H, W)` `paint` fits on: the target's, or smaller with the same aspect (as
    near as whole pixels allow: the shapes are placed in the copy's frame and rendered
    in the target's, `faithful_shape`)."""
    most = working_pixels(n)
    if height * width <= most:
        return height, width
    short, long = sorted((height, width))
    side = max(1, math.floor(math.sqrt(most * short / long)))
    while side > 1 and math.prod(faithful_shape(height, width, side)) > most:
        side -= 1
    return faithful_shape(height, width, side)


@functools.partial(jax.jit, static_argnums=1)
def _shrink(image: Array, shape: tuple[int, int]) -> Array:
    # Antialiased: each pixel of the copy averages the pixels it covers (a tent filter).
    return jax.image.resize(image, (*shape, *image.shape[2:]), "linear", antialias=True)


def working_copy(target: Array, loss: Any, n: int) -> tuple[Array, Any]:
    """`target`, and `loss` with its per-pixel weight maps, at `working_shape`."""
    height, width = target.shape[:2]
    shape = working_shape(height, width, n)
    if shape == (height, width):
        return target, loss
    loss = map_weight_maps(loss, lambda weights: _shrink(weights, shape))
    return jnp.clip(_shrink(target, shape), 0.0, 1.0), loss
