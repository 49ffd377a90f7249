"""Checks of `fit`'s arguments at the public boundary, done once before any dispatch."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax

from .._finite import non_finite_flag
from .._image import check_image
from .._losses import (
    L2,
    AbstractLoss,
    as_loss,
)
from .._model import AbstractModel, check_unbatched, fixed_parameters
from .._validate import (
    check_key,
    check_not_traced,
    check_positive_int,
    check_values,
    describe,
    runtime_check,
    upcast_floats,
)
from ._loop import sample_count

# One object, so fits with the default optimizer reuse one compilation. `eps_root` keeps
# the fit differentiable: Adam's `sqrt(nu)` has an infinite derivative at `nu = 0`, so a
# parameter whose gradient is exactly zero (a shape off the canvas, or hidden) made
# `jax.grad`/`jax.jacfwd` of the fit NaN; `sqrt(nu + 1e-16)` moves steps by < 1e-8.
DEFAULT_OPTIMIZER = optax.adam(1e-2, eps_root=1e-16)


def check_model(model: Any) -> AbstractModel:
    if not isinstance(model, AbstractModel):
        raise TypeError(
            "`model` must be a diffprims model (an `AbstractModel` such as `dp.Circles`); "
            f"got {describe(model)}."
        )
    check_unbatched(model, "fit")
    _check_render_signature(model)
    channels = model.num_channels
    if not isinstance(channels, int | np.integer) or isinstance(channels, bool):
        # Read inside the compiled step, an array here is traced and cannot size a shape.
        raise TypeError(
            f"`{type(model).__name__}.num_channels` must be a Python int, the number of "
            f"colour channels (a static size); got {describe(channels)}. Return an int, "
            "e.g. `self.colours.shape[-1]` or `int(...)` of a concrete value."
        )
    return upcast_floats(model)  # half-precision parameters fit in float32


def _check_render_signature(model: AbstractModel) -> None:
    """A `TypeError` if `fit` cannot call `model.render(points, pixel_size=...)` (a
    `render(self, points)` failed inside the compiled step with Python's own message)."""
    try:
        signature = inspect.signature(model.render)
    except (TypeError, ValueError):  # no signature to read: not asked
        return
    try:
        signature.bind(None, pixel_size=1.0)
    except TypeError as error:
        raise TypeError(
            f"`{type(model).__name__}.render` must be `def render(self, points, *, "
            f"pixel_size)`: `fit` calls it so; its signature is render{signature} "
            f"({error})."
        ) from None


def check_target(target: Any, model: AbstractModel) -> Any:
    """The target as an `(H, W, C)` float array in the model's value range."""
    low, high = model.value_range
    target = check_image(target, "target", channels=model.num_channels, check_range=False)
    model._check_fit_target(tuple(target.shape))  # pyright: ignore[reportPrivateUsage]
    return check_values(target, "target", lower=low, upper=high)


def check_optimizer(optimizer: Any) -> optax.GradientTransformation:
    if optimizer is None:
        return DEFAULT_OPTIMIZER
    if isinstance(optimizer, optax.MultiSteps):  # a wrapper, not a transformation
        return optimizer.gradient_transformation()
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "`optimizer` must be an optax transformation such as `optax.adam(1e-2)`; "
            f"got {describe(optimizer)}."
        )
    return optimizer


def check_loss(loss: Any) -> AbstractLoss:
    return as_loss(L2() if loss is None else loss)


def check_finite_model(model: Any, params: Any) -> Any:
    """`params` (the trainable part of `model`), with every float leaf of `model` checked
    finite, frozen ones too (a NaN there was a "divergence" at step 0, or under `jit` no
    error): concrete leaves now, traced ones with `eqx.error_if` on `params` (under
    `jit` a NaN model raises when the fit runs, instead of fitting NaN)."""
    fix = "Build it with finite values, or take `error.result.model` from a diverged fit."
    requirement = "`model` must have finite parameters"
    bad = non_finite_flag(model, requirement, fix)
    return (
        params if bad is None else runtime_check(params, bad, f"{requirement}; got NaN/inf. {fix}")
    )


def _check_batch(batch: Any, num_pixels: int) -> int | None:
    """The number of pixels sampled per step, or None for the full grid."""
    if batch is None:
        return None
    check_not_traced(batch, "batch", "number", "how many pixels each step draws")
    if isinstance(batch, jax.Array | np.ndarray) and batch.ndim == 0:  # `jnp.minimum(...)`
        batch = batch.item()
    if isinstance(batch, bool | np.bool_) or not isinstance(
        batch, int | float | np.integer | np.floating
    ):
        raise TypeError(
            f"`batch` must be a fraction in (0, 1], a pixel count, or None; got {describe(batch)}."
        )
    batch = float(batch) if isinstance(batch, float | np.floating) else int(batch)
    if isinstance(batch, float):
        if not 0.0 < batch <= 1.0:
            raise ValueError(
                f"`batch` as a fraction of the pixels must be in (0, 1]; got {batch}. "
                "Pass an int for a pixel count, or None for the full image."
            )
        count = max(1, round(batch * num_pixels))
    else:
        if not 1 <= batch <= num_pixels:
            raise ValueError(
                f"`batch` as a pixel count must be in [1, {num_pixels}] for this target; "
                f"got {batch}."
            )
        count = batch
    return None if count == num_pixels else count


def sampler_for(batch: Any, sampling: Any, shape: tuple[int, ...]) -> tuple[Any, int | None]:
    """`(sampler, pixels per step)` for an `(H, W, ...)` target; `(None, None)` for the
    full grid."""
    height, width = shape[:2]
    batch = _check_batch(batch, height * width)
    if sampling not in ("uniform", "stratified"):
        raise ValueError(
            f'`sampling` must be "uniform" or "stratified"; got {describe(sampling)}.'
        )
    if batch is None:
        return None, None
    if sampling == "uniform":
        return ("uniform", batch), batch
    down, across = block_shape(height * width / batch)
    sampler = ("stratified", down if down == across else (down, across))
    return sampler, sample_count(sampler, height, width)


def block_shape(area: float) -> tuple[int, int]:
    """`(rows, cols)` of the stratified sampler's blocks: whole pixels whose product is
    nearest `area` (in ratio), as square as that allows. Square blocks alone (a side of
    `round(sqrt(area))`) drew every pixel for `batch=0.45` and 0.6 (2.2 and 1.7 times
    the pixels asked for), a quarter of them for 0.3; oblong ones draw a half, a third.
    """
    side = float(np.sqrt(max(area, 1.0)))
    shapes = {(down, max(1, round(area / down))) for down in (max(1, int(side)), int(side) + 1)}
    return min(shapes, key=lambda s: (abs(np.log(s[0] * s[1] / area)), abs(s[0] - s[1])))


def check_fit_key(key: Any, batch: int | None, resume: Any = None) -> Any:
    """`key`, or a stand-in for `key=None`: refused for a batched fit, unless it resumes
    (it takes the checkpoint's key; `_resume` checks again when nothing is resumed)."""
    if key is None:
        if batch is not None and resume in (None, False):
            raise ValueError(
                f"`key` is required when `batch` is given; got `key=None` with `batch={batch}`. "
                "Pass `key=jax.random.key(0)`."
            )
        return jax.random.key(0)
    return check_key(key)


def minibatch_advice(batch: int | None) -> Callable[[str], str]:
    """`fit`'s word for a loss that works on whole images only (`check_loss_on`, which
    asks for it only with a `batch`)."""

    def advice(error: str) -> str:
        if "pointwise loss" in error:  # the loss says why already (SSIM)
            return f"{error.rstrip('.')}. Fit with `batch=None` (a step sampled {batch} pixels)."
        return (
            f"{error.rstrip('.')}. The loss works on whole images but not on the (P, C) "
            f"values a minibatch samples ({batch} pixels a step): fit with `batch=None`, "
            "or, where it holds an (H, W) map, give the map as `dp.Weighted(loss, map)` "
            "(`fit` samples it at the drawn pixels)."
        )

    return advice


def check_checkpointing(checkpoint: Any, checkpoint_every: Any, resume: Any) -> int | None:
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
        if checkpoint is None:  # it was ignored: no checkpoint was written
            raise ValueError(
                "`checkpoint_every` sets how often `checkpoint` is written, but got "
                "`checkpoint=None`; pass `checkpoint=PATH` too, or drop `checkpoint_every`."
            )
    if resume is True and checkpoint is None:
        raise ValueError(
            "`resume=True` continues from `checkpoint`, but got `checkpoint=None`; pass "
            "`checkpoint=PATH` too, or `resume=PATH`."
        )
    for name, value in (("checkpoint", checkpoint), ("resume", resume)):
        if value is not None and not isinstance(value, str | os.PathLike | bool):
            raise TypeError(f"`{name}` must be a file path; got {describe(value)}.")
    if isinstance(checkpoint, bool):
        raise TypeError("`checkpoint` must be a file path; got a bool. Pass `checkpoint=PATH`.")
    if checkpoint is not None:
        _check_writable(Path(checkpoint))
    return checkpoint_every


def _check_writable(path: Path) -> None:
    """Refuse a checkpoint path that cannot be written, before the fit starts."""
    if path.is_dir():
        raise ValueError(
            f"`checkpoint` must be a file path; got {os.fspath(path)!r}, which is a folder. "
            f"Pass a file in it, e.g. {os.fspath(path / 'fit.ckpt')!r}."
        )
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise ValueError(
            f"`checkpoint` must be a path that can be written; got {os.fspath(path)!r}, but "
            f"{os.fspath(folder)!r} is not a writable folder."
        )


def snapshot_steps(snapshots: Any, steps: int) -> tuple[int, ...]:
    """`k` step counts evenly spaced from 0 to `steps` (just `steps` when `k` is 1); `k`
    is clipped to `steps + 1`, one snapshot per step, so no two are the same."""
    if snapshots is None:
        return ()
    # Each is a copy of the parameters that every step writes through (10**6 ran 100x
    # slower, 10**9 was killed building the list of steps): see also `SNAPSHOT_BYTES`.
    why = "each is a copy of the parameters, kept in memory and written every step"
    k = min(check_positive_int(snapshots, "snapshots", maximum=2**16, why=why), steps + 1)
    if k == 1:
        return (steps,)
    return tuple(round(j * steps / (k - 1)) for j in range(k))


def partition_trainable(model: AbstractModel, trainable: Any) -> tuple[Any, Any]:
    """`(params, static)`: the floating-point leaves `trainable` selects, and the rest
    (the fixed parameters of the model and of models nested in it always among the rest)."""
    arrays, rest = eqx.partition(model, eqx.is_inexact_array)
    fixed = fixed_parameters(model)
    if fixed is not None:
        held, arrays = eqx.partition(arrays, fixed)
        rest = eqx.combine(held, rest)
    if trainable is None:
        if not jax.tree.leaves(arrays):
            raise ValueError(
                f"the model ({type(model).__name__}) has no floating-point parameter to "
                "train: `fit` trains its float arrays (integer and boolean arrays, and "
                "fixed parameters, stay as they are). Store what should train as float "
                "arrays."
            )
        return arrays, rest
    if isinstance(trainable, bool):
        trainable = jax.tree.map(lambda _: trainable, arrays)
    try:
        params, frozen = eqx.partition(arrays, trainable)
    except Exception as error:
        if callable(trainable):  # its own error, not a structure mismatch
            raise ValueError(
                f"`trainable`, a function `leaf -> bool`, raised {type(error).__name__}: "
                f"{error}. It is called on every floating-point array of the model."
            ) from error
        raise ValueError(  # a spec of another structure
            "`trainable` must be a pytree of bools matching the model (or a prefix of it, "
            "e.g. `model.trainable('position')` for shape sets), or a function "
            f"`leaf -> bool`; got one that does not fit the model: {error}"
        ) from None
    if not jax.tree.leaves(params):
        raise ValueError(
            "`trainable` selects no parameter of the model; nothing would train. Pass "
            "`trainable=None` to train every parameter."
        )
    return params, eqx.combine(frozen, rest)
