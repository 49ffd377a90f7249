"""Losses for images: SSIM, and an edge-weighted error map."""

from __future__ import annotations

from typing import Any

import dm_pix
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._blur import blur
from ._image import check_image
from ._loss_inputs import check_pair
from ._losses import AbstractLoss
from ._validate import (
    FLOAT32_MAX,
    check_not_traced,
    check_positive_int,
    check_scalar,
    describe,
    is_traced,
    runtime_check,
)

# The least `max_value` SSIM computes with, as a share of the largest pixel magnitude.
_MIN_RELATIVE_MAX = 1e-6
_PEAK = " It is the largest pixel value (1 for images in [0, 1]), and must fit in float32."


_SSIM_HINTS = {
    2: "Sampled pixels (P, C), which minibatching and `paint` give a loss, cannot be "
    "compared: they need a pointwise loss; a grey image needs its channel axis, "
    "`image[..., None]`.",
    4: "For a batch of images, `jax.vmap` the loss over its first axis.",
}


class SSIM(AbstractLoss):
    """Structural dissimilarity: `1 - SSIM(pred, target)`, with dm-pix's SSIM.

    SSIM compares local means, contrasts and structure in Gaussian windows; `1 - SSIM`
    is 0 for identical images. It needs whole images `(H, W, C)` (at least
    `filter_size` pixels a side), so fit with `batch=None`; mix it with a pointwise
    loss, e.g. `dp.L2() + 0.1 * dp.SSIM()`. Its settings are arrays (a sweep over them
    compiles one step), so, as any loss holding arrays, it is not hashable: jit a
    function of it with `eqx.filter_jit`, or close over it.

    **Arguments:**

    - `max_value`: the largest pixel value (1 for images in `[0, 1]`), up to float32's
      largest, 3.4e38. SSIM is computed on the images scaled to it, so any scale stays
      finite; pixels over a million times `max_value` raise it to a millionth of theirs.
    - `filter_size`, `filter_sigma`: the Gaussian window.

    ```python
    loss = dp.L2() + 0.1 * dp.SSIM()
    result = dp.fit(model, target, loss=loss, steps=500)
    ```
    """

    # Arrays, so that fits with other values reuse the compiled step (as a Python float
    # each compiled one); `filter_size` sets the window's shape and stays a number.
    max_value: Float[Array, ""]
    filter_size: int
    filter_sigma: Float[Array, ""]

    def __init__(self, max_value: Any = 1.0, filter_size: int = 11, filter_sigma: Any = 1.5):
        max_value = check_scalar(max_value, "max_value", lower=0.0, upper=FLOAT32_MAX, hint=_PEAK)
        self.filter_size = check_positive_int(filter_size, "filter_size")
        filter_sigma = check_scalar(filter_sigma, "filter_sigma", lower=0.0)
        self.max_value, self.filter_sigma = _setting(max_value), _setting(filter_sigma)

    def _checked(self) -> SSIM:
        # Inside `fit`'s steps (trusted, checks dropped) a traced `max_value=0` ran on
        # silently; concrete settings were checked when the loss was made.
        if not (is_traced(self.max_value) or is_traced(self.filter_sigma)):
            return self
        settings = self._settings()
        return eqx.tree_at(lambda s: (s.max_value, s.filter_sigma), self, settings)

    def _settings(self) -> tuple[Any, Any]:
        max_value = check_scalar(
            self.max_value, "max_value", lower=0.0, upper=FLOAT32_MAX, hint=_PEAK
        )
        return max_value, check_scalar(self.filter_sigma, "filter_sigma", lower=0.0)

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> Float[Array, ""]:
        pred, target = check_pair(pred, target, "`SSIM`")
        # Traced settings are checked here, where the check's result is used (in
        # `__check_init__` it was dropped, and `max_value=0` under jit gave garbage).
        max_value, filter_sigma = self._settings()
        if pred.ndim != 3:
            raise ValueError(f"`SSIM` compares whole images (H, W, C); got {describe(pred)}. "
                             + _SSIM_HINTS.get(pred.ndim, _SSIM_HINTS[2]))  # fmt: skip
        side = min(pred.shape[:2])
        if side < self.filter_size:  # empty images (no channels too): `check_pair`
            raise ValueError(
                f"`SSIM` needs images of at least `filter_size` = {self.filter_size} pixels "
                f"a side; got {describe(pred)}. Pass a smaller window, e.g. "
                f"`dp.SSIM(filter_size={side - 1 + side % 2})`."
            )
        # SSIM is unchanged when the images and `max_value` are scaled alike: computed
        # at `max_value` in [1, 2) its constants `(0.03 max_value) ** 2` and the products
        # of means cannot overflow (`max_value=1e30` gave NaN, as did pixels of 1e20).
        # Pixels over a million times `max_value` (which would) raise it to a millionth
        # of the largest. A power of 2 scales exactly (XLA divides by a multiplication
        # with the reciprocal, and 1 / 3e38 is flushed to 0).
        largest = jnp.maximum(jnp.max(jnp.abs(pred)), jnp.max(jnp.abs(target)))
        peak = jnp.maximum(max_value, _MIN_RELATIVE_MAX * largest)
        exponent = jnp.frexp(jax.lax.stop_gradient(peak))[1] - 1
        scaled_peak: Any = jnp.ldexp(peak, -exponent)  # an array (dm-pix says float)
        ssim: Any = dm_pix.ssim(  # an array (dm-pix says float or NumPy too)
            jnp.ldexp(pred, -exponent),
            jnp.ldexp(target, -exponent),
            max_val=scaled_peak,
            filter_size=self.filter_size,
            filter_sigma=filter_sigma,
        )
        # In the images' precision: dm-pix widens float32 to float64 under x64.
        return (1.0 - ssim).astype(jnp.promote_types(pred.dtype, jnp.float32))


def _setting(value: Any) -> Array:
    """A checked number as a float32 array (a traced one as it is)."""
    return value if is_traced(value) else jnp.asarray(value, jnp.float32)


def edge_weights(
    target: Float[ArrayLike, "H W C"], *, strength: float = 4.0, sigma: float = 1.0
) -> Float[Array, "H W 1"]:
    """A per-pixel weight map that stresses edges, for [`diffprims.Weighted`][].

    The weight is `1 + strength * g / mean(g)` normalised to mean 1, where `g` is the
    gradient magnitude (central differences, summed over channels) of the target
    blurred by `sigma` pixels: errors on outlines and texture count more than errors
    in flat regions, a cheap perceptual prior.

    **Arguments:**

    - `target`: `(H, W, C)` image, float in `[0, 1]`.
    - `strength`: how much more an edge counts than a flat region (>= 0).
    - `sigma`: blur in pixels before taking gradients (>= 0).

    **Returns:**

    An `(H, W, 1)` weight map with mean 1.

    ```python
    loss = dp.Weighted(dp.L2(), dp.edge_weights(target))
    ```
    """
    target = check_image(target, "target")
    # `strength` may be traced (a sweep under `jax.vmap`); `sigma` sets a blur kernel's
    # size, so it must be a concrete number.
    strength = check_scalar(strength, "strength", upper=1e30)
    if is_traced(strength):  # checked when it runs (a negative one gave negative weights)
        strength = runtime_check(strength, strength < 0, "`strength` must be >= 0.")
    elif strength < 0:
        raise ValueError(f"`strength` must be >= 0; got {float(strength)!r}.")
    check_not_traced(sigma, "sigma", "number", "the blur's kernel size")
    sigma = float(check_scalar(sigma, "sigma"))
    if sigma < 0:
        raise ValueError(f"`sigma` must be >= 0 (pixels of blur); got {sigma!r}.")
    if sigma > 0:
        target = blur(target, sigma)
    zeros = jnp.zeros_like(target)
    gy = jnp.asarray(jnp.gradient(target, axis=0)) if target.shape[0] > 1 else zeros
    gx = jnp.asarray(jnp.gradient(target, axis=1)) if target.shape[1] > 1 else zeros
    magnitude = jnp.sqrt(jnp.sum(gx**2 + gy**2, -1, keepdims=True) + 1e-12)
    # A floor on the mean keeps a flat image (gradients of rounding noise) at weight 1.
    weights = 1.0 + strength * magnitude / jnp.maximum(jnp.mean(magnitude), 1e-3)
    return weights / jnp.mean(weights)
