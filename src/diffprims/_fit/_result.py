"""What `fit` and `paint` return."""

from __future__ import annotations

from typing import Generic, TypeVar

import equinox as eqx
from jaxtyping import Array, Bool, Float

from .._model import AbstractModel

#: The type of the fitted model: `fit(model, ...)` returns a `FitResult[type(model)]`.
Model = TypeVar("Model", bound=AbstractModel, covariant=True)


class FitResult(eqx.Module, Generic[Model]):
    """What [`diffprims.fit`][] (and [`diffprims.paint`][]) returns.

    Generic in the model's type for type checkers: `dp.fit(circles, ...)` is a
    `FitResult[dp.Circles]`, so `result.model` is a `dp.Circles`.

    **Attributes:**

    - `model`: the fitted model (same type as the one passed in).
    - `losses`: `(steps,)` loss at every step (each evaluated before that step's update;
      on the sampled pixels when minibatching). A step whose update is not finite reads
      NaN, its own loss too (a fit whose first update fails has no finite loss).
    - `seconds`: wall time of the call, compilation included (of a resumed fit: since the
      resume); NaN under `vmap`/`jit`, where it cannot be measured.
    - `snapshots`: with `fit(..., snapshots=k)`, a tuple of `k` models taken at evenly
      spaced steps (the first is the model passed in, the last the fitted one); render
      any of them at any size, or write them all with [`diffprims.save_gif`][].
      Empty otherwise.
    - `snapshot_steps`: the number of steps each snapshot had taken, e.g.
      `(0, 500, 1000)`.
    - `diverged`: whether the fit stopped early because its loss or parameters became
      NaN/inf (a bool array from `fit`, a Python bool from `paint`). Eagerly `fit`
      raises [`diffprims.FitDivergedError`][] instead, so this is only ever True on
      `error.result`; under `jax.jit`/`jax.vmap` it is how a diverged fit shows (per
      member under `vmap`): the model is the last finite one and `losses` is NaN from
      the diverged step on.

    ```python
    results = jax.vmap(lambda lr: dp.fit(model, target, optimizer=optax.adam(lr)))(rates)
    good = ~results.diverged                      # (len(rates),) bools
    ```
    """

    model: Model
    losses: Float[Array, " steps"]
    seconds: float | Float[Array, ""]
    snapshots: tuple[Model, ...] = ()
    snapshot_steps: tuple[int, ...] = eqx.field(static=True, default=())
    diverged: bool | Bool[Array, ""] = False
