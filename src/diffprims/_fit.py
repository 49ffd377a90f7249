"""`fit()`: drive any model of the protocol toward a target with optax."""

from __future__ import annotations

import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._image import check_image
from ._losses import L2, as_loss, check_loss_output, restrict_to_pixels
from ._model import AbstractModel
from ._validate import check_key, check_positive_int, describe, is_traced


class FitResult(eqx.Module):
    """What [`diffprims.fit`][] returns.

    **Attributes:**

    - `model`: the fitted model (same type as the one passed in).
    - `losses`: `(steps,)` loss at every step (each evaluated before that step's update;
      on the sampled pixels when minibatching).
    - `seconds`: wall time of the whole fit, compilation included (NaN under `vmap`/`jit`,
      where it cannot be measured).
    """

    model: AbstractModel
    losses: Float[Array, " steps"]
    seconds: float | Float[Array, ""]


def _pixel_points(indices: Array, height: int, width: int) -> Array:
    rows, cols = indices // width, indices % width
    return jnp.stack([(cols + 0.5) / height, (rows + 0.5) / height], axis=-1)


def _prediction(model: AbstractModel, target: Array, loss: Any, batch: int | None, key):
    """(prediction, target, loss) on the full grid, or on `batch` random pixels."""
    height, width, channels = target.shape
    if batch is None:
        return model.render_image((height, width)), target, loss
    # Sampling with replacement: O(batch) per step, where a permutation is O(H W log HW).
    indices = jax.random.randint(key, (batch,), 0, height * width)
    points = _pixel_points(indices, height, width)
    pred = model.render(points, pixel_size=1.0 / height)
    return pred, target.reshape(-1, channels)[indices], restrict_to_pixels(loss, indices)


@eqx.filter_jit
def _run_steps(params, static, opt_state, target, loss, optimizer, key, first, total, batch, length):
    def objective(params, step_key):
        model = eqx.combine(params, static)
        pred, goal, step_loss = _prediction(model, target, loss, batch, step_key)
        return step_loss(pred, goal)

    def step(carry, index):
        params, opt_state = carry
        value, grads = jax.value_and_grad(objective)(params, jax.random.fold_in(key, index))
        updates, new_state = optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        # Steps past `total` (the padding of the last dispatch) leave everything as is.
        keep = index < total
        carry = jax.tree.map(
            lambda new, old: jnp.where(keep, new, old), (new_params, new_state), (params, opt_state)
        )
        return carry, value

    (params, opt_state), values = jax.lax.scan(step, (params, opt_state), first + jnp.arange(length))
    return params, opt_state, values


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
                f"`batch` as a pixel count must be in [1, {num_pixels}] for this target; got {batch}."
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
    steps_per_dispatch: int = 100,
    progress: bool = False,
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
      fraction of the pixels, sampled uniformly (with replacement) every step; an int
      for that many pixels.
    - `steps_per_dispatch`: steps run per compiled call (also how often the progress
      bar updates).
    - `progress`: show a progress bar with the current loss.

    **Returns:**

    A [`diffprims.FitResult`][] with the fitted `model`, the `losses` and `seconds`.

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
            f"`model` must be a diffprims model (an `AbstractModel` such as `dp.Circles`); got {describe(model)}."
        )
    low, high = model.value_range
    target = check_image(target, "target", channels=model.num_channels, check_range=False)
    from ._validate import check_values

    target = check_values(target, "target", lower=low, upper=high)
    steps = check_positive_int(steps, "steps")
    steps_per_dispatch = check_positive_int(steps_per_dispatch, "steps_per_dispatch")
    if optimizer is None:
        optimizer = optax.adam(1e-2)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"`optimizer` must be an optax transformation such as `optax.adam(1e-2)`; got {describe(optimizer)}."
        )
    loss = as_loss(L2() if loss is None else loss)
    height, width, channels = target.shape
    batch = _check_batch(batch, height * width)
    if key is None:
        if batch is not None:
            raise ValueError("`key` is required when `batch` is given: pass `key=jax.random.key(0)`.")
        key = jax.random.key(0)
    key = check_key(key)
    pred_shape = (height, width, channels) if batch is None else (batch, channels)
    check_loss_output(loss, jax.ShapeDtypeStruct(pred_shape, target.dtype), jax.ShapeDtypeStruct(pred_shape, target.dtype))

    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    length = min(steps, steps_per_dispatch)
    traced = is_traced(target) or any(is_traced(x) for x in jax.tree.leaves((params, key)))
    bar = None
    if progress and not traced:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, unit="step", dynamic_ncols=True)
    chunks = []
    try:
        for first in range(0, steps, length):
            params, opt_state, values = _run_steps(
                params, static, opt_state, target, loss, optimizer, key,
                jnp.asarray(first), jnp.asarray(steps), batch, length,
            )  # fmt: skip
            chunks.append(values)
            if bar is not None:
                bar.update(min(length, steps - first))
                bar.set_postfix(loss=f"{float(values[min(length, steps - first) - 1]):.5g}")
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
    return FitResult(model=fitted, losses=losses, seconds=seconds)
