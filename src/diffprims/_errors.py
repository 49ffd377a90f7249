"""Exceptions: `fit` cannot finish (each carries what it did finish), a file cannot be read."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any


class FitDivergedError(ValueError):
    """A fit whose loss or parameters became NaN/inf; raised by [`diffprims.fit`][].

    The fit stops at the first step whose loss or updated parameters are not finite, so no
    NaN ever reaches the returned model. Nothing is lost:

    **Attributes:**

    - `step`: the step that diverged (0-based).
    - `result`: a [`diffprims.FitResult`][] with the last model whose loss was finite
      (the one after `step` updates, or `step - 1` where the loss at that one was not
      finite: a parameter the last update took out of a model's domain) and the `step`
      finite losses before it.

    ```python
    try:
        result = dp.fit(model, target, optimizer=optax.sgd(1e8), steps=500)
    except dp.FitDivergedError as error:
        result = error.result            # the last finite model
    ```

    Under `jax.jit`/`jax.vmap` a fit cannot raise on values; there the model freezes at
    its last finite state, `losses` is NaN from the diverged step on and
    `FitResult.diverged` is True.
    """

    def __init__(self, message: str, *, step: int, result: Any):
        super().__init__(message)
        self.step = step
        self.result = result


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during [`diffprims.fit`][]: a `KeyboardInterrupt` that keeps the progress.

    **Attributes:**

    - `step`: how many steps had finished.
    - `result`: a [`diffprims.FitResult`][] with the model after those steps (and the
      snapshots due by then).

    When `fit` was given a `checkpoint`, that checkpoint is written before this is raised,
    so `fit(..., resume=PATH)` continues from here. Catch it as `KeyboardInterrupt`.
    """

    def __init__(self, message: str, *, step: int, result: Any):
        super().__init__(message)
        self.step = step
        self.result = result


class LoadError(ValueError):
    """A file that cannot be read: damaged, truncated, of another format, or naming types
    that [`diffprims.load`][] was not given. Raised by `dp.load` and `fit(..., resume=)`.

    A `ValueError`; its message names the file and what is wrong with it. Nothing is
    allocated beyond what the file holds and no code named by the file is run before
    the file is refused. A file that is not there raises `FileNotFoundError` instead (as
    `open` does), so "no file yet" and "a file that cannot be used" can be told apart:

    ```python
    try:
        model = dp.load("model.eqx")
    except FileNotFoundError:
        model = dp.Circles.init(100, key=jax.random.key(0))    # first run: start afresh
    except dp.LoadError as error:
        raise SystemExit(f"model.eqx is unusable, not overwriting it: {error}")
    ```
    """


class CheckpointError(LoadError):
    """A checkpoint that cannot be used: corrupt, truncated, or written by a different fit.

    A [`diffprims.LoadError`][] (so a `ValueError`).
    """


class OutOfMemoryError(MemoryError, ValueError):
    """A compiled call the device cannot hold (XLA's `RESOURCE_EXHAUSTED`), said in
    terms of what was asked; a `ValueError` too, as the size asked for is the input."""


@contextlib.contextmanager
def memory_for(what: str, hint: str) -> Iterator[None]:
    """Turn the device running out of memory inside the block into an `OutOfMemoryError`
    that says `what` needed it (how much, where XLA says) and `hint`: how to ask for
    less. Every other error passes as it is."""
    try:
        yield
    except Exception as error:  # jax.errors.JaxRuntimeError, whose module has moved
        text = str(error)
        if "RESOURCE_EXHAUSTED" not in text:
            raise
        needed = re.search(r"allocating (\d+) bytes", text)
        size = f" ({int(needed[1]) / 2**30:.3g} GiB in one piece)" if needed else ""
        raise OutOfMemoryError(
            f"{what} needs more memory than this device has{size}. {hint}"
        ) from None
