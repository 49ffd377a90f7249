"""Checks of a filter bank's arguments at the public boundary."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._image import check_image
from .._model import batch_shape
from .._validate import (
    check_float_array,
    check_not_traced,
    check_positive_int,
    check_scalar,
    check_values,
    describe,
    is_traced,
    runtime_check,
)

# The border modes of `apply` and `Filtered`, as `jnp.pad` modes.
BORDERS = {"zero": "constant"} | {mode: mode for mode in ("edge", "reflect", "symmetric", "wrap")}


def check_kernel(kernel: Any, name: str = "kernel") -> Array:
    if hasattr(kernel, "dtype") and np.dtype(kernel.dtype).kind in "biu":  # a mask, counts
        kernel = kernel.astype(np.float32)  # (not an image: no 255 to divide by)
    given = kernel
    kernel = check_float_array(
        kernel, name, hint=" A kernel is a 2D (Kh, Kw) array such as `dp.kernels.disk(50)`."
    )
    if kernel.ndim != 2 or 0 in kernel.shape:
        extra = " Drop the channel axis with `kernel[..., 0]`." if kernel.ndim == 3 else ""
        raise ValueError(
            f"`{name}` must be a non-empty 2D (Kh, Kw) array; got {describe(kernel)}.{extra}"
        )
    _check_not_underflowing(given, kernel, name)
    return check_values(kernel, name, hint=f" Replace them first, e.g. `jnp.nan_to_num({name})`.")


def check_rank(kernel: Array, rank: Any) -> int:
    """`rank` as an int in `[1, min(Kh, Kw)]`."""
    rank = check_positive_int(rank, "rank")
    if rank > min(kernel.shape):
        raise ValueError(
            f"`rank` must be at most min(Kh, Kw) = {min(kernel.shape)} for a kernel of "
            f"shape {tuple(kernel.shape)}; got {rank}. A higher rank adds nothing."
        )
    return rank


def _check_not_underflowing(given: Any, kernel: Array, name: str) -> None:
    """A concrete kernel whose largest magnitude is below the smallest normal number of
    the dtype it is computed in (a float64 kernel of 1e-300, float32 by default) would
    be rounded to zero, or to a few bits, without a word: refused."""
    if is_traced(kernel):  # (traced whenever `given` is)
        return
    tiny = float(np.finfo(np.dtype(kernel.dtype)).tiny)
    try:
        largest = float(np.max(np.abs(np.asarray(given, np.float64))))
    except (TypeError, ValueError):
        return
    if 0 < largest < tiny:
        raise ValueError(
            f"`{name}` must be representable in {np.dtype(kernel.dtype).name}: its largest "
            f"magnitude is {largest:.3g}, below the smallest normal number {tiny:.3g}, "
            "where it would be rounded to zero or to a few bits. Scale it first, e.g. "
            f"`{name} / np.abs({name}).max()` (a kernel at peak 1, as `dp.kernels` makes)."
        )


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
    if is_traced(image):  # not checked under `jit`, `vmap` (see `SeparableFilters.apply`)
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
    peak = float(check_scalar(peak, "peak", lower=0.0, hint=hint))
    if not PEAK_RANGE[0] <= peak <= PEAK_RANGE[1]:
        raise ValueError(
            f"`peak` must be in [{PEAK_RANGE[0]:g}, {PEAK_RANGE[1]:g}] for a fit in float32 "
            f"(its squared errors leave float32's range past that); got {peak:g}. Fit the "
            "kernel at peak 1, `target / peak`, and scale the bank back: "
            "`dp.SeparableFilters(bank.vertical * s, bank.horizontal * s)` with "
            "`s = peak ** 0.5`."
        )
    return peak


#: The kernel scales `fit` takes in float32 (measured: a disk fits alike from 1e-22 to 1e18).
PEAK_RANGE = (1e-20, 1e18)


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


def outer_sum(vertical: Array, horizontal: Array) -> Array:
    """A bank's 2D kernel, `sum_r outer(vertical[r], horizontal[r])`."""
    return jnp.einsum("ri,rj->ij", vertical, horizontal)


def check_bank_fits(vertical: Array, horizontal: Array, hint: str) -> None:
    """A `ValueError` when a concrete bank's kernel `sum_r outer(vertical[r],
    horizontal[r])` overflows its dtype: finite vectors of 1e30 made a kernel, a
    rendering and a filtered image of inf. Traced or misshapen vectors are left alone
    (the latter for `SeparableFilters.__check_init__` to name)."""
    if is_traced(vertical) or is_traced(horizontal) or not (vertical.ndim == horizontal.ndim == 2):
        return
    if vertical.shape[0] != horizontal.shape[0] or 0 in vertical.shape + horizontal.shape:
        return
    v, h = np.abs(np.asarray(vertical, np.float64)), np.abs(np.asarray(horizontal, np.float64))
    largest = float(jnp.finfo(jnp.result_type(vertical, horizontal)).max)
    # `sum_r max|v_r| max|h_r|` bounds every entry and partial sum: most banks stop here.
    if np.sum(v.max(axis=1) * h.max(axis=1)) <= largest:
        return
    if np.all(np.isfinite(np.asarray(outer_sum(vertical, horizontal)))):
        return
    reach = float(np.max(np.einsum("ri,rj->ij", v, h)))
    raise ValueError(
        "`vertical` and `horizontal` must make a kernel that fits in "
        f"{jnp.result_type(vertical, horizontal)} (entries of magnitude at most "
        f"{largest:.3g}); got vectors as large as {v.max():.3g} and {h.max():.3g}, whose "
        f"outer products reach {reach:.3g} and overflow to inf. Scale the vectors down: "
        f"the kernel scales with each (`vertical * s` scales it by s).{hint}"
    )


def check_filtered(out: Array, image: Array, vertical: Array, horizontal: Array) -> Array:
    """`out`, a bank's filtered image, or a `ValueError` when, concrete, it holds NaN or
    inf: a finite image times a finite kernel that overflows its dtype (1e30 pixels under
    a blur of 1e10) gave inf silently. Traced results are not checked."""
    if is_traced(out) or bool(jnp.all(jnp.isfinite(out))):
        return out
    v, h = np.asarray(vertical, np.float64), np.asarray(horizontal, np.float64)
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(h))):
        raise ValueError(
            "`apply` needs a bank of finite vectors; got NaN or inf in `vertical` or "
            "`horizontal` (a bank made without its constructor, e.g. with "
            "`eqx.tree_at`). Build it with `dp.SeparableFilters(vertical, horizontal)`, "
            "which checks them."
        )
    pixel = float(np.max(np.abs(np.asarray(image, np.float64))))
    mass = float(np.sum(np.abs(np.einsum("ri,rj->ij", v, h))))
    count = int(np.sum(~np.isfinite(np.asarray(out))))
    largest = float(jnp.finfo(out.dtype).max)
    raise ValueError(
        f"`apply` must give a filtered image that fits in {out.dtype} (magnitude at most "
        f"{largest:.3g}); got {count} NaN/inf value(s): pixels as large as {pixel:.3g} "
        f"under a kernel whose sum of |k| is {mass:.3g} overflow it. Filter in smaller "
        "units (`bank.apply(image / s)` is the filtered image / s), scale the bank down "
        "(`bank.normalized()` for a blur), or compute in float64 (`jax_enable_x64`)."
    )
