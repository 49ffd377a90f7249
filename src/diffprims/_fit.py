"""`fit()`: drive any model of the protocol toward a target with optax."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._checkpoint import load_checkpoint, save_checkpoint, target_fingerprint
from ._errors import FitDivergedError, FitInterrupted
from ._image import check_image
from ._losses import L2, as_loss, check_loss_output, restrict_to_pixels
from ._model import AbstractModel
from ._validate import check_key, check_positive_int, describe, inside_trace, is_traced


class FitResult(eqx.Module):
    """What [`diffprims.fit`][] returns.

    **Attributes:**

    - `model`: the fitted model (same type as the one passed in).
    - `losses`: `(steps,)` loss at every step (each evaluated before that step's update;
      on the sampled pixels when minibatching).
    - `seconds`: wall time of the whole fit, compilation included (NaN under `vmap`/`jit`,
      where it cannot be measured).
    - `snapshots`: with `fit(..., snapshots=k)`, a tuple of `k` models taken at evenly
      spaced steps (the first is the model passed in, the last the fitted one); render
      any of them at any size, or write them all with [`diffprims.save_gif`][].
      Empty otherwise.
    - `snapshot_steps`: the number of steps each snapshot had taken, e.g.
      `(0, 500, 1000)`.
    """

    model: AbstractModel
    losses: Float[Array, " steps"]
    seconds: float | Float[Array, ""]
    snapshots: tuple[AbstractModel, ...] = ()
    snapshot_steps: tuple[int, ...] = eqx.field(static=True, default=())


def _snapshot_steps(snapshots: Any, steps: int) -> tuple[int, ...]:
    """`k` step counts evenly spaced from 0 to `steps` (just `steps` when `k` is 1)."""
    if snapshots is None:
        return ()
    k = check_positive_int(snapshots, "snapshots")
    if k == 1:
        return (steps,)
    return tuple(round(j * steps / (k - 1)) for j in range(k))


def pixel_points(indices: Array, height: int, width: int) -> Array:
    rows, cols = indices // width, indices % width
    return jnp.stack([(cols + 0.5) / height, (rows + 0.5) / height], axis=-1)


def stratified_indices(key, height: int, width: int, stride: int) -> Array:
    """Flat indices of one random pixel in every `stride x stride` block of the grid."""
    rows, cols = np.arange(0, height, stride), np.arange(0, width, stride)
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    k_r, k_c = jax.random.split(key)
    r = jnp.minimum(grid_r + jax.random.randint(k_r, grid_r.shape, 0, stride), height - 1)
    c = jnp.minimum(grid_c + jax.random.randint(k_c, grid_c.shape, 0, stride), width - 1)
    return (r * width + c).reshape(-1)


def _prediction(model, target, loss, sampler, key, pixel_scale=None, method=None):
    """(prediction, target, loss) on the full grid, or on the pixels `sampler` picks.

    `sampler` is None (every pixel), `("uniform", count)` or `("stratified", stride)`.
    `pixel_scale` (traced) widens soft edges by that factor; `method` picks a shape
    set's renderer.
    """
    height, width, channels = target.shape
    if sampler is None:
        return model.render_image((height, width)), target, loss
    kind, size = sampler
    if kind == "uniform":
        # With replacement: O(batch) per step, where a permutation is O(H W log HW).
        indices = jax.random.randint(key, (size,), 0, height * width)
    else:
        indices = stratified_indices(key, height, width, size)
    points = pixel_points(indices, height, width)
    pixel_size = (1.0 if pixel_scale is None else pixel_scale) / height
    options = {} if method is None else {"method": method}
    pred = model.render(points, pixel_size=pixel_size, **options)
    return pred, target.reshape(-1, channels)[indices], restrict_to_pixels(loss, indices)


# One object, so fits with the default optimizer reuse one compilation.
_DEFAULT_OPTIMIZER = optax.adam(1e-2)


def _all_finite(tree: Any) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


@eqx.filter_jit
def run_steps(
    params, static, opt_state, ok, target, loss, optimizer, key, first, total, sampler, length,
    snaps=None, snap_steps=None, *, pixel_scale=None, method=None, update_scale=None,
):  # fmt: skip
    """`length` optimizer steps from step `first` (those at or past `total` do nothing).

    The one step loop of the library: `fit` and `paint` both run it. `update_scale`
    (traced) multiplies every update (a learning-rate schedule set from outside).
    """

    def objective(params, step_key):
        model = eqx.combine(params, static)
        pred, goal, step_loss = _prediction(
            model, target, loss, sampler, step_key, pixel_scale, method
        )
        return step_loss(pred, goal)

    def step(carry, index):
        params, opt_state, ok = carry
        value, grads = jax.value_and_grad(objective)(params, jax.random.fold_in(key, index))
        updates, new_state = optimizer.update(grads, opt_state, params)
        if update_scale is not None:
            updates = jax.tree.map(lambda u: update_scale * u, updates)
        new_params = eqx.apply_updates(params, updates)
        # The first step whose loss or new parameters are not finite stops the fit for
        # good (`ok` stays False): the carry keeps the last finite state, losses read NaN.
        ok = ok & ((index >= total) | (jnp.isfinite(value) & _all_finite(new_params)))
        # Steps past `total` (the padding of the last dispatch) leave everything as is.
        keep = (index < total) & ok
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(keep, new, old),
            (new_params, new_state),
            (params, opt_state),
        )
        return (params, opt_state, ok), jnp.where(ok, value, jnp.nan)

    def step_and_snap(carry, index):
        (params, opt_state, ok), snaps = carry
        (params, opt_state, ok), value = step((params, opt_state, ok), index)
        # Snapshot j holds the parameters after `snap_steps[j]` steps: a masked write
        # each step costs O(k x parameters), nothing next to a render.
        hit = snap_steps == index + 1
        snaps = jax.tree.map(
            lambda s, p: jnp.where(hit.reshape((-1,) + (1,) * p.ndim), p[None], s), snaps, params
        )
        return ((params, opt_state, ok), snaps), value

    carry = (params, opt_state, ok)
    indices = first + jnp.arange(length)
    if snaps is None:
        (params, opt_state, ok), values = jax.lax.scan(step, carry, indices)
    else:
        ((params, opt_state, ok), snaps), values = jax.lax.scan(
            step_and_snap, (carry, snaps), indices
        )
    return params, opt_state, ok, values, snaps


@contextlib.contextmanager
def _ctrl_c_between_dispatches(active: bool) -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a flag that the fit loop checks after each dispatch.

    A `KeyboardInterrupt` raised at an arbitrary point can land inside JAX's dispatch
    machinery, which may swallow it, and the fit would run on. A second Ctrl-C raises at
    once, as usual. Only in the main thread (where Python delivers signals).
    """
    flag = {"stop": False}
    if not active or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_finite_model(params: Any) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(
                f"`model` must have finite parameters; got NaN/inf in "
                f"`model{jax.tree_util.keystr(path)}` ({describe(leaf)}). Build it with "
                "finite values, or take `error.result.model` from a diverged fit."
            )


def _check_batch(batch: Any, num_pixels: int) -> int | None:
    """The number of pixels sampled per step, or None for the full grid."""
    if batch is None:
        return None
    if isinstance(batch, bool) or not isinstance(batch, int | float):
        raise TypeError(
            f"`batch` must be a fraction in (0, 1], a pixel count, or None; got {describe(batch)}."
        )
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


def fit(
    model: AbstractModel,
    target: Float[Array, "H W C"],
    *,
    loss: Any = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 1000,
    key: PRNGKeyArray | None = None,
    batch: float | int | None = None,
    sampling: str = "uniform",
    steps_per_dispatch: int = 100,
    progress: bool = False,
    snapshots: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike | bool | None = None,
) -> FitResult:
    """Fit any model of the protocol to a target by gradient descent with optax.

    Each step renders the model (on the full pixel grid, or on `batch` randomly sampled
    pixel centres), evaluates `loss(pred, target)` and applies one optimizer update to
    every floating-point parameter of the model. The step is compiled once and run
    `steps_per_dispatch` times per call with `lax.scan`; a second fit with same-shaped
    inputs (and the same loss structure and optimizer object) does not recompile.

    **Arguments:**

    - `model`: any [`diffprims.AbstractModel`][] (circles, a filter bank, your own).
    - `target`: `(H, W, C)` float array; in `[0, 1]` for image models, `C` equal to the
      model's channel count. A kernel is a one-channel image: `kernel[..., None]`.
    - `loss`: a loss module or any function `(pred, target) -> scalar`; default
      [`diffprims.L2`][].
    - `optimizer`: an optax transformation; default `optax.adam(1e-2)`.
    - `steps`: the number of optimizer steps.
    - `key`: PRNG key for pixel sampling; required when `batch` is given. The same key
      gives the same fit.
    - `batch`: `None` for the whole image each step; a float in `(0, 1]` for that
      fraction of the pixels, sampled afresh every step; an int for that many pixels.
    - `sampling`: how `batch` pixels are drawn. `"uniform"`: independently (with
      replacement). `"stratified"`: the grid is cut into square blocks of about
      `1 / batch` pixels and each step takes one random pixel from every block, so each
      step sees the whole picture evenly (lower-variance gradients at the same cost).
    - `steps_per_dispatch`: steps run per compiled call (also how often the progress
      bar updates).
    - `progress`: show a progress bar with the current loss.
    - `snapshots`: keep this many models at evenly spaced steps (including the start and
      the end) in `FitResult.snapshots`, for a progress animation
      ([`diffprims.save_gif`][]). Models, not images: render them at any size.
    - `checkpoint`: a file to save the fit's state to (model, optimizer state, step, key
      and losses; written atomically, no pickle), so a long fit survives interruption.
    - `checkpoint_every`: save once at least this many steps have passed since the last
      save (checked at the end of each dispatch, so use a multiple of
      `steps_per_dispatch`); default every dispatch. The last step is always saved, and
      so is the state reached when Ctrl-C stops the fit.
    - `resume`: a checkpoint file to continue from, or `True` to continue from
      `checkpoint` if that file exists (else start afresh). Pass the same model, target,
      loss, optimizer, batch and key as the fit that wrote it (`key=None` takes the
      checkpoint's); the result is bit-identical to a fit that was never interrupted, and
      `steps` may be raised to fit for longer. A corrupt checkpoint or one written by a
      different fit raises [`diffprims.CheckpointError`][].

    **Returns:**

    A [`diffprims.FitResult`][] with the fitted `model`, the `losses` and `seconds`.

    **Raises:**

    - [`diffprims.FitDivergedError`][] (a `ValueError`) at the first step whose loss or
      updated parameters are NaN/inf; `error.result` holds the last finite model.
    - [`diffprims.FitInterrupted`][] (a `KeyboardInterrupt`) on Ctrl-C; `error.result`
      holds the model after the last finished dispatch.

    ```python
    result = dp.fit(model, target, loss=dp.L2(), optimizer=optax.adam(1e-2),
                    steps=2000, batch=0.1, key=jax.random.key(1))
    ```

    `fit` works under `jax.vmap` over targets or keys, e.g.
    `jax.vmap(lambda k: dp.fit(model, target, steps=100, batch=0.1, key=k).model)(keys)`.
    """
    start_time = time.perf_counter()
    if not isinstance(model, AbstractModel):
        raise TypeError(
            "`model` must be a diffprims model (an `AbstractModel` such as `dp.Circles`); "
            f"got {describe(model)}."
        )
    low, high = model.value_range
    target = check_image(target, "target", channels=model.num_channels, check_range=False)
    from ._validate import check_values

    target = check_values(target, "target", lower=low, upper=high)
    steps = check_positive_int(steps, "steps")
    steps_per_dispatch = check_positive_int(steps_per_dispatch, "steps_per_dispatch")
    if optimizer is None:
        optimizer = _DEFAULT_OPTIMIZER
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "`optimizer` must be an optax transformation such as `optax.adam(1e-2)`; "
            f"got {describe(optimizer)}."
        )
    loss = as_loss(L2() if loss is None else loss)
    height, width, channels = target.shape
    batch = _check_batch(batch, height * width)
    if sampling not in ("uniform", "stratified"):
        raise ValueError(
            f'`sampling` must be "uniform" or "stratified"; got {describe(sampling)}.'
        )
    sampler = None
    if batch is not None and sampling == "uniform":
        sampler = ("uniform", batch)
    elif batch is not None:
        stride = max(1, round(float(np.sqrt(height * width / batch))))
        sampler = ("stratified", stride)
        batch = -(-height // stride) * -(-width // stride)  # one pixel per block
    key_given = key
    if key is None:
        if batch is not None:
            raise ValueError(
                f"`key` is required when `batch` is given; got `key=None` with `batch={batch}`. "
                "Pass `key=jax.random.key(0)`."
            )
        key = jax.random.key(0)
    key = check_key(key)
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    if resume is True and checkpoint is None:
        raise ValueError(
            "`resume=True` continues from `checkpoint`, but got `checkpoint=None`; pass "
            "`checkpoint=PATH` too, or `resume=PATH`."
        )
    for name, value in (("checkpoint", checkpoint), ("resume", resume)):
        if value is not None and not isinstance(value, str | os.PathLike | bool):
            raise TypeError(f"`{name}` must be a file path; got {describe(value)}.")
    pred_shape = (height, width, channels) if batch is None else (batch, channels)
    check_loss_output(
        # What each step calls: per-pixel maps sampled at the batch's pixels.
        loss if batch is None else restrict_to_pixels(loss, jnp.zeros((batch,), jnp.int32)),
        jax.ShapeDtypeStruct(pred_shape, target.dtype),
        jax.ShapeDtypeStruct(pred_shape, target.dtype),
    )

    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    snap_steps = _snapshot_steps(snapshots, steps)
    length = min(steps, steps_per_dispatch)
    traced = (
        inside_trace()
        or is_traced(target)
        # The loss too: `vmap` over loss weights (a Pareto sweep) traces only the loss.
        or any(is_traced(x) for x in jax.tree.leaves((params, key, loss)))
    )
    if traced and (checkpoint is not None or resume not in (None, False)):
        raise ValueError(
            "`checkpoint`/`resume` need concrete values; got a fit traced under jit/vmap. "
            "Call `fit` outside `jax.jit`/`jax.vmap` to checkpoint it."
        )
    if not traced:
        _check_finite_model(params)
    fit_info: dict[str, Any] = {
        "model": type(model).__qualname__,
        "target_shape": list(target.shape),
        "target_sha256": "" if traced else target_fingerprint(target),
        "batch": batch,
        "sampling": sampling,
        "snapshot_steps": list(snap_steps),
    }
    snaps = None
    if snap_steps:
        snaps = jax.tree.map(lambda p: jnp.repeat(p[None], len(snap_steps), axis=0), params)
    start, saved_losses = 0, jnp.zeros((0,), jnp.float32)
    if resume is True:
        assert checkpoint is not None
        resume = checkpoint if Path(checkpoint).exists() else None
    if resume not in (None, False):
        params, opt_state, saved_losses, start, key, snaps = load_checkpoint(
            resume,  # pyright: ignore[reportArgumentType]
            params=params,
            opt_state=opt_state,
            key=None if key_given is None else key,
            steps=steps,
            fit_info=fit_info,
            snapshots=snaps,
        )
    bar = None
    if progress and not traced:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, unit="step", dynamic_ncols=True)
    chunks = [saved_losses]
    ok = jnp.asarray(True)
    done = last_saved = start
    if bar is not None:
        bar.update(start)

    def save(done: int) -> None:
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                params=params,
                opt_state=opt_state,
                losses=jnp.concatenate(chunks)[:done],
                step=done,
                key=key,
                fit_info=fit_info,
                snapshots=snaps,
            )

    try:
        with _ctrl_c_between_dispatches(not traced) as ctrl_c:
            for first in range(start, steps, length):
                if ctrl_c["stop"]:
                    raise KeyboardInterrupt
                state = run_steps(
                    params, static, opt_state, ok, target, loss, optimizer, key,
                    jnp.asarray(first), jnp.asarray(steps), sampler, length,
                    snaps, None if snaps is None else jnp.asarray(snap_steps),
                )  # fmt: skip
                params, opt_state, ok, values, snaps = state
                chunks.append(values)
                done = min(first + length, steps)
                if not traced:
                    finite = np.isfinite(np.asarray(values[: done - first]))
                    if not finite.all():
                        bad = first + int(np.argmin(finite))
                        raise FitDivergedError(
                            f"The fit diverged at step {bad} of {steps}: the loss or the updated "
                            "parameters became NaN/inf. `error.result` holds the last finite "
                            f"model (after {bad} steps). Lower the learning rate or clip the "
                            "gradients (`optax.chain(optax.clip_by_global_norm(1.0), ...)`).",
                            step=bad,
                            result=FitResult(
                                model=eqx.combine(params, static),
                                losses=jnp.concatenate(chunks)[:bad],
                                seconds=time.perf_counter() - start_time,
                            ),
                        )
                if checkpoint is not None and (
                    done == steps or done - last_saved >= (checkpoint_every or 1)
                ):
                    save(done)
                    last_saved = done
                if bar is not None:
                    bar.update(done - first)
                    latest = float(values[done - first - 1])
                    postfix = {"loss": f"{latest:.5g}"}
                    if isinstance(loss, L2) and latest > 0:
                        # An L2 loss on images in [0, 1] is an MSE: show it as PSNR too.
                        postfix["psnr"] = f"{-10 * np.log10(latest):.2f} dB"
                    bar.set_postfix(postfix)
    except KeyboardInterrupt:
        if traced:
            raise
        if done > last_saved:
            save(done)
        raise FitInterrupted(
            f"Fit interrupted after {done} of {steps} steps"
            + (f"; resume with `fit(..., resume={os.fspath(checkpoint)!r})`" if checkpoint else "")
            + ". `error.result` holds the model so far.",
            step=done,
            result=FitResult(
                model=eqx.combine(params, static),
                losses=jnp.concatenate(chunks)[:done],
                seconds=time.perf_counter() - start_time,
                # The snapshots taken so far (those due by step `done`).
                snapshots=tuple(
                    eqx.combine(jax.tree.map(lambda s: s[j], snaps), static)
                    for j, at in enumerate(snap_steps)
                    if snaps is not None and at <= done
                ),
                snapshot_steps=tuple(at for at in snap_steps if at <= done),
            ),
        ) from None
    finally:
        if bar is not None:
            bar.close()
    losses = jnp.concatenate(chunks)[:steps]
    fitted = eqx.combine(params, static)
    if traced:
        seconds: Any = jnp.nan
    else:
        jax.block_until_ready((fitted, losses))
        seconds = time.perf_counter() - start_time
    frames = ()
    if snaps is not None:
        frames = tuple(
            eqx.combine(jax.tree.map(lambda s: s[j], snaps), static)
            for j in range(len(snap_steps))
        )
    return FitResult(
        model=fitted,
        losses=losses,
        seconds=seconds,
        snapshots=frames,
        snapshot_steps=snap_steps,
    )
