"""The run driver: the host side of a fit, shared by `fit` and `paint`.

It owns what happens between compiled dispatches: the loss history, the progress bar,
Ctrl-C (the first one stops cleanly after the running dispatch), divergence (the first
non-finite loss raises `FitDivergedError` with the last finite model), checkpoints and
the wall clock. The caller owns the loop: it calls `dispatch` as often as it likes and
tells the driver how to turn its state into a `FitResult` (`make_result`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import FitDivergedError, FitInterrupted
from .._validate import check_progress, is_traced
from ._canon import one_run
from ._result import FitResult


@contextlib.contextmanager
def ctrl_c_flag(active: bool) -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a flag that the driver checks between dispatches.

    A `KeyboardInterrupt` raised at an arbitrary point can land inside JAX's dispatch
    machinery, which may swallow it, and the fit would run on. A second Ctrl-C raises at
    once, as usual, unless a compiled dispatch is running (`flag["busy"]`): an exception
    raised inside JAX's dispatch can leave the runtime broken (a crash at exit), so then
    the fit stops as soon as the dispatch returns. Only in the main thread (where Python
    delivers signals), and never where SIGINT is ignored (a backgrounded script).
    """
    flag = {"stop": False, "busy": False}
    main = threading.current_thread() is threading.main_thread()
    if not active or not main or signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):
        yield flag
        return

    def handler(signum, frame):
        if flag["stop"] and not flag["busy"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class Driver:
    """Runs dispatches of a fit and everything around them; use as a context manager.

    **Arguments:**

    - `make_result(state, losses, done)`: the `FitResult` of the caller's state after
      `done` steps with loss history `losses` (used on Ctrl-C, divergence and at the end).
    - `state`: the caller's initial state (any pytree); `dispatch` replaces it.
    - `steps`: the planned number of steps (the bar's total), or None when unknown.
    - `progress`: show a progress bar (never under a trace); a string shows it with that
      label.
    - `traced`: whether the inputs are traced (no host-side checks, no bar, no Ctrl-C);
      a dispatch whose losses come back traced turns it on too.
    - `checkpointer`: optional `save(state, losses, done, final)` hook.
    - `start`, `losses`: the step and losses a resumed fit starts from.
    - `show_psnr`: show `-10 log10(loss)` as PSNR (an L2 loss on images in `[0, 1]`).
    - `hint`: appended to the `FitInterrupted` message (how to resume).
    - `name`: what the caller calls the run in that message ("Fit", "Paint").
    - `start_time`: when the run began (`time.perf_counter()`; default: now), for the
      result's `seconds`.
    - `stop`: another thread's Ctrl-C flag (`ctrl_c_flag`), checked with its own: a run in
      a worker thread, which Python's signals never reach, stops when it is set. Its
      "dispatched" is set once a dispatch has finished (the programs are compiled).
    """

    def __init__(self, make_result: Callable[[Any, Any, int], FitResult], state: Any, *,
                 steps: int | None, progress: bool | str = False, traced: bool = False,
                 checkpointer: Any = None, start: int = 0, losses: Any = None,
                 show_psnr: bool = False, hint: str = "", stop: dict | None = None,
                 name: str = "Fit", start_time: float | None = None):  # fmt: skip
        self.make_result, self.state, self.steps = make_result, state, steps
        self.traced, self.checkpointer, self.show_psnr = traced, checkpointer, show_psnr
        # Checked here, where `fit` and `paint` both hand it over: "no" would be true.
        progress = check_progress(progress)
        self.label = progress if isinstance(progress, str) else None
        self.progress, self.hint = bool(progress), hint
        self.name = name
        self.done = start
        self.chunks = [] if losses is None else [losses]
        self.start_time = time.perf_counter() if start_time is None else start_time
        self.bar: Any = None
        self.info: dict[str, str] = {}
        self._exit = contextlib.ExitStack()
        self._flag = {"stop": False, "busy": False}
        self._stop = stop if stop is not None else {"stop": False}

    def __enter__(self) -> Driver:
        self._flag = self._exit.enter_context(ctrl_c_flag(not self.traced))
        # The loss and optimizer traced again once in this run: the same objects may
        # compute something else than in the last (`_canon.one_run`).
        self._exit.enter_context(one_run())
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._exit.close()
        if self.bar is not None:
            with contextlib.suppress(Exception):  # a stream that closed: nothing to tidy
                self.bar.close()
        if kind is not None and issubclass(kind, KeyboardInterrupt) and not self.traced:
            if not isinstance(error, FitInterrupted):
                self._interrupted()

    @property
    def seconds(self) -> float:
        """Wall time since the driver was made."""
        return time.perf_counter() - self.start_time

    def losses(self, upto: int | None = None) -> Any:
        """The loss history so far (the first `upto` steps).

        Joined on the host once the chunks are there (as NumPy arrays): a compiled
        `jnp.concatenate` of a different number of chunks each time compiled anew at
        every call (a fit checkpointing each dispatch compiled at each, 0.3 s -> 22 s,
        and `paint` finished 0.5 to 3 s past its `seconds`).
        """
        upto = self.done if upto is None else upto
        if not self.chunks:
            return jnp.zeros((0,), jnp.float32)
        if any(is_traced(chunk) for chunk in self.chunks):
            return jnp.concatenate(self.chunks)[:upto]
        # `jax.device_put`, not `jnp.asarray`, which compiles a program for each shape.
        return jax.device_put(np.concatenate([np.asarray(c) for c in self.chunks])[:upto])

    def dispatch(self, run: Callable[..., tuple[Any, Any]], *args: Any, steps: int) -> Any:
        """`state, values = run(state, *args)`; counts `steps` of the `values` as done.

        Checks for Ctrl-C before, and for divergence after; saves a checkpoint and
        updates the progress bar. Returns the new state.
        """
        self.check_stop()
        self._flag["busy"] = True
        try:
            self.state, values = run(self.state, *args)
            first = self.done
            if is_traced(values):
                self.chunks.append(values[:steps])
                self.done += steps
                self.traced = True
                return self.state
            # The dispatch's values, cut to `steps` on the host: sliced on the device, each
            # new length compiled a program (0.03 to 0.2 s each; a paint's rounds end on
            # several). Until they arrive the whole is kept; `losses` cuts at `done`.
            self.chunks.append(values)
            self.done += steps
            host = np.asarray(values)[:steps]  # waits for the dispatch
            self.chunks[-1] = host  # the history is kept (and joined) on the host
            self._stop["dispatched"] = True
        finally:
            self._flag["busy"] = False
        # One flag per step (all restarts of a batched paint finite).
        finite = np.isfinite(host).all(axis=tuple(range(1, host.ndim)))
        if not finite.all():
            self._diverged(first + int(np.argmin(finite)))
        if self.checkpointer is not None:
            self.checkpointer.save(self.state, self.losses, self.done, self.done == self.steps)
        self._show(float(np.min(host[-1])) if steps else None, steps)
        return self.state

    def check_stop(self) -> None:
        """`KeyboardInterrupt` (a `FitInterrupted` once the driver is left) if a Ctrl-C
        came since the last dispatch: checked before each, and by callers between their
        own compiled steps (paint's removals and colour solve, after the last dispatch,
        ran on and the run ended as if never stopped)."""
        if self._flag["stop"] or self._stop["stop"]:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """A compiled call outside `dispatch` (paint's seeding, removal, colour solve): a
        second Ctrl-C meanwhile waits for it to return (as during a dispatch), then stops
        the run; the first is checked after it (`check_stop`)."""
        self.check_stop()
        self._flag["busy"] = True
        try:
            yield
        finally:
            self._flag["busy"] = False
        self.check_stop()

    def describe(self, **info: str) -> None:
        """Extra fields for the progress bar (e.g. `round="3/8"`)."""
        self.info.update(info)

    def _show(self, latest: float | None, steps: int) -> None:
        if not self.progress or self.traced:
            return
        if sys.stderr is None:  # no stderr at all (pythonw, `2>&-`): nothing to show
            self.progress = False
            return
        try:
            self._draw(latest, steps)
        except (OSError, ValueError, AttributeError):
            # stderr closed, a pipe its reader left (`2>&1 | head -1`), or a stream
            # object without what tqdm asks of it: the bar is only a view, so the fit
            # goes on without it.
            self.progress, self.bar = False, None

    def _draw(self, latest: float | None, steps: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            # Created at the steps done so far: the first dispatch includes compiling,
            # and counting its steps as one update showed rates of 10^5 steps/s. Into a
            # file or a pipe, a refresh every few seconds (one per dispatch, 150 a
            # second, made 89 kB of log in 8 s).
            interval = 0.1 if sys.stderr.isatty() else 5.0
            self.bar = tqdm(total=self.steps, initial=self.done, unit="step", desc=self.label,
                            dynamic_ncols=True, mininterval=interval)  # fmt: skip
        else:
            self.bar.update(steps)
        postfix = dict(self.info)
        if latest is not None:
            postfix["loss"] = f"{latest:.5g}"
            if self.show_psnr and latest > 0:
                postfix["psnr"] = f"{-10 * np.log10(latest):.2f} dB"
        self.bar.set_postfix(postfix, refresh=False)  # drawn by `update`, at its interval

    def _diverged(self, bad: int) -> None:
        result = self.make_result(self.state, self.losses(bad), bad)
        # A divergence with no growing loss before it is a loss or gradient that is not
        # finite at the model itself (a user shape's `coverage` at a point on its centre
        # gave NaN gradients there), which no learning rate fixes.
        cause = (
            "At the first step nothing has grown yet: the loss, its gradient or the "
            "optimizer's first update is not finite at the starting model. Check the "
            "optimizer's settings (a learning rate that is NaN or inf), `jax.grad` of the "
            "loss at that model, and a custom shape's `coverage` at degenerate inputs (a "
            "point on a shape's centre, a size near 0, a 0/0 or a sqrt of 0)."
            if bad == 0
            else "Lower the learning rate or clip the gradients "
            "(`optax.chain(optax.clip_by_global_norm(1.0), ...)`); if the loss was not "
            "growing before it, the gradient is not finite there: check a custom shape's "
            "`coverage` at degenerate inputs (a point on a shape's centre, a size near 0)."
        )
        raise FitDivergedError(
            f"The fit diverged at step {bad}: the loss or the updated parameters became "
            f"NaN/inf. `error.result` holds the last model whose loss was finite. "
            f"{cause}",
            step=bad,
            result=_with_seconds(result, self.seconds),
        )

    def _interrupted(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.save(self.state, self.losses, self.done, True)
        total = "" if self.steps is None else f" of {self.steps}"
        result = self.make_result(self.state, self.losses(), self.done)
        raise FitInterrupted(
            f"{self.name} interrupted after {self.done}{total} steps{self.hint}. `error.result` "
            "holds the model so far.",
            step=self.done,
            result=_with_seconds(result, self.seconds),
        ) from None

    def finish(self) -> FitResult:
        """The final `FitResult`, its `seconds` measured once everything is computed."""
        result = self.make_result(self.state, self.losses(), self.done)
        if self.traced:
            return _with_seconds(result, jnp.nan)
        jax.block_until_ready((result.model, result.losses))
        return _with_seconds(result, self.seconds)


def _with_seconds(result: FitResult, seconds: Any) -> FitResult:
    return dataclasses.replace(result, seconds=seconds)
