"""Checks of a filter bank's arguments at the public boundary."""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Array

from .._image import check_image
from .._model import batch_shape
from .._validate import (
    check_float_array,
    check_not_traced,
    check_scalar,
    check_values,
    describe,
    is_traced,
    runtime_check,
)

# The border modes of `apply` and `Filtered`, as `jnp.pad` modes.
BORDERS = {"zero": "constant"} | {mode: mode for mode in ("edge", "reflect", "symmetric", "wrap")}


def check_kernel(kernel: Any, name: str = "kernel") -> Array:
    kernel = check_float_array(
        kernel, name, hint=" A kernel is a 2D (Kh, Kw) array such as `dp.kernels.disk(50)`."
    )
    if kernel.ndim != 2 or 0 in kernel.shape:
        extra = " Drop the channel axis with `kernel[..., 0]`." if kernel.ndim == 3 else ""
        raise ValueError(
            f"`{name}` must be a non-empty 2D (Kh, Kw) array; got {describe(kernel)}.{extra}"
        )
    return check_values(kernel, name)


def check_scene(image: Any, name: str, batched: str) -> Array:
    """An `(H, W, C)` float image in any range (a scene to filter), as `check_image`
    checks images (a likely channels-first `(C, H, W)` array is refused); `batched` says
    how to filter a batch of images instead."""
    image = check_float_array(image, name)
    if image.ndim == 4:
        raise ValueError(
            f"`{name}` must be one (H, W, C) image; got {describe(image)}, a batch of "
            f"images. Filter a batch with {batched}."
        )
    image = check_image(image, name, check_range=False)
    if is_traced(image):  # not checked under `jit` (see `SeparableFilters.apply`)
        return image
    # A concrete array is checked with NumPy, even inside a trace (a closed-over image):
    # there a JAX op on it would give a tracer, which `bool` cannot read.
    finite = np.isfinite(np.asarray(image))
    if not finite.all():
        # Each pass is a product of dense tiles, where a non-finite pixel times the zeros
        # around the kernel's band is NaN: it would blank a whole tile, not its footprint.
        count = int(np.sum(~finite))
        raise ValueError(
            f"`{name}` must be finite; got {count} NaN/inf value(s) in {describe(image)}. "
            "The passes multiply dense tiles (the kernel's size rounded up to 32 pixels a "
            "side), so each would turn a whole tile to NaN, not only the kernel's "
            f"footprint. Replace them first, e.g. `jnp.nan_to_num({name}, posinf=1.0)`."
        )
    return image


def check_border(border: Any) -> str:
    """`border` as one of the names of `BORDERS`, or a clear error."""
    if not isinstance(border, str):
        raise TypeError(
            f"`border` must be a string, one of {sorted(BORDERS)}; got {describe(border)}."
        )
    if border not in BORDERS:
        raise ValueError(f"`border` must be one of {sorted(BORDERS)}; got {border!r}.")
    return border


def check_peak(peak: Any) -> float:
    """`peak` as a float: a concrete real number (Python, NumPy or 0-d array) > 0, finite."""
    hint = (
        " Pass the target kernel's scale, its largest magnitude: "
        "`peak=jnp.abs(target).max()` (a blur's peak; `target.max()` is <= 0 or too small "
        "for a kernel whose largest lobe is negative, such as a Laplacian of Gaussian)."
    )
    check_not_traced(peak, "peak", "number", "the optimizer's step size and eps")
    return float(check_scalar(peak, "peak", lower=0.0, hint=hint))


def check_weight(weight: Any, name: str) -> Any:
    """A loss weight: a real number >= 0, finite; traced ones are checked at run time."""
    hint = " A weight is >= 0 (0 turns the term off); see `dp.SeparableFilters`."
    weight = check_scalar(weight, name, hint=hint)
    message = f"`{name}` must be a finite number >= 0"
    if is_traced(weight):
        return runtime_check(weight, weight < 0, f"{message}.{hint}")
    if float(weight) < 0:
        raise ValueError(
            f"{message}; got {float(weight)!r}. A negative weight rewards the "
            f"penalised values and makes the loss unbounded below.{hint}"
        )
    return weight


def check_one_bank(bank: Any, action: str, call: str | None = None) -> None:
    """A `ValueError` when `bank` holds a batch of banks (arrays with extra leading axes,
    as `jax.vmap` over `from_svd` makes), which `action` would misread deep inside JAX."""
    batch = batch_shape(bank)
    if not batch:
        return
    size = " x ".join(map(str, batch))
    way = (
        f"Map over the batch, `jax.vmap(lambda b: {call})(banks)` (one `jax.vmap` per "
        "batch axis), or take"
        if call is not None
        else "Take"
    )
    raise ValueError(
        f"`{action}` takes one bank; got a batch of {size} banks (`vertical` "
        f"{tuple(bank.vertical.shape)} and `horizontal` {tuple(bank.horizontal.shape)} have "
        f"leading axes {batch}). {way} one bank with `jax.tree.map(lambda x: x[0], banks)`."
    )
