"""What `fit` and `paint` return."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float

from .._model import AbstractModel


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
