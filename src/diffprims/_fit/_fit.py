"""`fit()`: drive any model of the protocol toward a target with optax.

`fit` = argument checks (`_checks`) + the run driver (`_driver`) around the step loop
(`_loop`). It never needs to know which model it drives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._errors import memory_for
from .._loss_checks import check_loss_on, with_checked_settings
from .._losses import L2
from .._model import AbstractModel
from .._validate import check_positive_int, check_progress, inside_trace, is_traced
from . import _checks
from ._checkpoint import Checkpointer, load_checkpoint, snapshot_slots, target_fingerprint
from ._driver import Driver
from ._identity import fit_identity, start_fingerprint
from ._loop import LoopState, PointRender, Problem, run_steps
from ._result import FitResult

M = TypeVar("M", bound=AbstractModel)


def fit(
    model: M,
    target: Float[ArrayLike, "H W C"],
    *,
    loss: Any = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 1000,
    key: PRNGKeyArray | None = None,
    batch: float | int | None = None,
    sampling: str = "uniform",
    steps_per_dispatch: int = 100,
    progress: bool | str = False,
    snapshots: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike[str] | bool | None = None,
    trainable: Any = None,
    method: str | None = None,
) -> FitResult[M]:
    """Fit any model of the protocol to a target by gradient descent with optax.

    Each step renders the model (on the full pixel grid, or on `batch` randomly sampled
    pixel centres), evaluates `loss(pred, target)` and applies one optimizer update to
    every floating-point parameter of the model. The step is compiled once and run
    `steps_per_dispatch` times per call with `lax.scan`; a second fit with same-shaped
    inputs and the same loss structure does not recompile (a fresh optimizer of the same
    kind, another learning rate, key, weight or number of steps included). What does:
    another count of `snapshots` past a power of two (3 to 4, 5 to 8, ...: the slots they
    are kept in), and `steps` below `steps_per_dispatch` past a power of two (a shorter
    dispatch).

    **Arguments:**

    - `model`: any [`diffprims.AbstractModel`][] (circles, a filter bank, your own),
      with finite parameters. One model: a batch of models (`jax.vmap` over a
      constructor) is fitted under `jax.vmap`, `jax.vmap(lambda m: dp.fit(m, target))`.
      Half-precision parameters are upcast: the fit runs, and returns the model, in
      float32.
    - `target`: `(H, W, C)` float array; in `[0, 1]` for image models, `C` equal to the
      model's channel count. A kernel is a one-channel image: `kernel[..., None]`.
      Half precision (bfloat16, float16) is upcast: the fit runs in float32.
    - `loss`: a loss module or any function `(pred, target) -> scalar`; default
      [`diffprims.L2`][].
    - `optimizer`: an optax transformation; default `optax.adam(1e-2, eps_root=1e-16)`
      (`eps_root`: see below, on `jax.grad`). Each step
      passes it the step's loss and a function of the parameters giving it (optax's
      `value=`, `grad=` and `value_fn=`), so `optax.lbfgs()` and
      `optax.contrib.reduce_on_plateau` work; `optax.MultiSteps` is accepted too. A
      `GradientTransformationExtraArgs` of your own whose `update` does not take some
      of these names (no `**extra_args`) is not given them.
    - `steps`: the number of optimizer steps.
    - `key`: PRNG key for pixel sampling; required when `batch` is given. The same key
      gives the same fit.
    - `batch`: `None` for the whole image each step; a float in `(0, 1]` for that
      fraction of the pixels, sampled afresh every step; an int for that many pixels.
    - `sampling`: how `batch` pixels are drawn. `"uniform"`: independently (with
      replacement). `"stratified"`: the grid is cut into blocks of about `1 / batch`
      pixels (whole pixels a side, as square as the area allows: `batch=0.5` takes
      blocks of 1 x 2, 0.1 of 3 x 3) and each step takes one random pixel from every
      block, so each step sees the whole picture evenly (lower-variance gradients at the
      same cost; every pixel equally likely, also in blocks the image's edge cuts); over
      as many steps as a block has pixels, each of them once, in a random order.
    - `steps_per_dispatch`: steps run per compiled call (also how often the progress
      bar updates).
    - `progress`: `True` to show a progress bar with the current loss; a string shows it
      labelled (`progress="from the SVD"`: which of several fits is running).
    - `snapshots`: keep this many models at evenly spaced steps (including the start and
      the end) in `FitResult.snapshots`, for a progress animation
      ([`diffprims.save_gif`][]). Models, not images: render them at any size. At most
      `steps + 1` (one per step): a larger count is clipped to that, so no two
      snapshots are the same step (`FitResult.snapshot_steps` says which were taken).
      Each is a copy of the trained parameters in memory: at most 65536, in at most
      1 GiB (counted in powers of two: 1000 snapshots take 1024 copies).
    - `checkpoint`: a file to save the fit's state to (model, optimizer state, step, key
      and losses; written atomically, no pickle), so a long fit survives interruption.
    - `checkpoint_every`: with `checkpoint`, save once at least this many steps have
      passed since the last save (checked at the end of each dispatch, so use a multiple of
      `steps_per_dispatch`); default every dispatch. The last step is always saved, and
      so is the state reached when Ctrl-C stops the fit.
    - `resume`: a checkpoint file to continue from, or `True` to continue from
      `checkpoint` if that file exists (else start afresh). Pass the same model (the one
      the fit started from, not its result), target, loss, optimizer, batch and key as
      the fit that wrote it (`key=None` takes the checkpoint's); the result is
      bit-identical to a fit that was never interrupted, and `steps` may be raised to fit
      for longer (without `snapshots`: their steps depend on `steps`); `steps` equal to
      the checkpoint's step returns its model without a step. A corrupt checkpoint or one
      written by a different fit raises [`diffprims.CheckpointError`][]: the checkpoint
      records the starting model's parameters and settings, the loss (with its weights)
      and the optimizer by what they compute, so a fresh `optax.adam(1e-2)` resumes one
      written with another, and `optax.adam(0.5)` (or another rate given to
      `optax.inject_hyperparams`) is refused. Sets among settings compare by their
      items, whatever their order; a loss that iterates over a set of strings computes
      in another order in another process (`PYTHONHASHSEED`) and is refused there: keep
      such settings sorted in a tuple.
    - `trainable`: which parameters train, as an equinox filter spec: a pytree of bools
      matching the model (or a prefix of it), or a function `leaf -> bool`. The others
      get exactly zero updates (the optimizer never sees them, so no weight decay
      either). Shape sets build readable specs: `model.trainable("position", "size")`
      trains only positions and sizes. Default: every floating-point array (and every
      complex one, stepped along the conjugate of JAX's gradient, which descends).
    - `method`: the renderer of a shape set, as in [`diffprims.AbstractShapes.render`][]
      (default: its own, "auto"). Only for shape sets. The tiled renderer that "auto"
      picks from 8 shapes and 1024 points on has a first-order reverse-mode gradient only, so a fit
      that is itself differentiated (`jax.grad` or `jax.jacfwd` of its result) renders
      with "scan" when `method` is left unset (also inside `jax.jit(jax.grad(...))`).
      What it cannot see is a derivative of a `jax.jit`-ed function traced before
      without one (`f = jax.jit(g); f(x); jax.grad(f)(x)` reuses that trace): pass
      `method="scan"` there.

    **Returns:**

    A [`diffprims.FitResult`][] with the fitted `model`, the `losses` and `seconds`.

    **Raises:**

    - `ValueError` for a model with NaN/inf parameters; under `jax.jit` the check runs
      with the fit (`eqx.error_if`: a runtime error with the same message).
    - [`diffprims.FitDivergedError`][] (a `ValueError`) at the first step whose loss or
      updated parameters are NaN/inf; `error.result` holds the last finite model. Under
      `jax.jit`/`jax.vmap` nothing can be raised on values: the fit stops at its last
      finite model, `losses` reads NaN from the diverged step on and
      `FitResult.diverged` is True.
    - [`diffprims.FitInterrupted`][] (a `KeyboardInterrupt`) on Ctrl-C; `error.result`
      holds the model after the last finished dispatch.

    ```python
    result = dp.fit(model, target, loss=dp.L2(), optimizer=optax.adam(1e-2),
                    steps=2000, batch=0.1, key=jax.random.key(1))
    ```

    `fit` works under `jax.jit`, `jax.vmap` and `jax.grad` over any argument (targets,
    keys, loss weights, optimizer settings), e.g.
    `jax.vmap(lambda k: dp.fit(model, target, steps=100, batch=0.1, key=k).model)(keys)`
    or `jax.grad(lambda lr: dp.fit(model, target, optimizer=adam(lr)).losses[-1])` with
    `adam = functools.partial(optax.adam, eps_root=1e-16)`. Give Adam (and its kin:
    `adamw`, `rmsprop`, ...) a small `eps_root` whenever a fit is differentiated: its
    `sqrt` of the squared gradients has an infinite derivative at zero, so one parameter
    whose gradient is exactly zero (a shape off the canvas, a hidden or frozen one) makes
    the whole derivative NaN; the default optimizer has it. A sweep over learning rates
    (betas, a schedule's settings) in a Python loop compiles the step loop once: the
    float settings of an optimizer's update are inputs of the compiled step, not part
    of it (where they sit inside a nested `jax.jit` or `lax.cond` of the update, or
    with `optax.lbfgs`, each value compiles anew; `optax.inject_hyperparams` makes a
    setting an input there too).
    Not in reverse mode with an optimizer that loops a number of times known only at
    run time: `optax.lbfgs`'s line search is a `lax.while_loop`, which JAX cannot
    differentiate in reverse mode, so `jax.grad` (or `jax.vjp`) of a fit with it raises
    JAX's `ValueError` "Reverse-mode differentiation does not work for lax.while_loop"
    in the backward pass, after `fit` has returned (so `fit` cannot catch it). Forward
    mode works: `jax.jacfwd` or `jax.jvp` (one pass per input, fine for a few
    hyperparameters); or fit with a fixed-step optimizer such as `optax.adam`.
    """
    model = cast(M, _checks.check_model(model))  # the same model, checked
    target = cast(Array, _checks.check_target(target, model))
    steps = check_positive_int(steps, "steps")
    steps_per_dispatch = check_positive_int(steps_per_dispatch, "steps_per_dispatch")
    progress = check_progress(progress)
    optimizer = _checks.check_optimizer(optimizer)
    loss = with_checked_settings(_checks.check_loss(loss))  # traced settings too
    sampler, batch = _checks.sampler_for(batch, sampling, target.shape)
    key_given, key = key, _checks.check_fit_key(key, batch, resume)
    checkpoint_every = _checks.check_checkpointing(checkpoint, checkpoint_every, resume)
    check_loss_on(loss, target, batch, _checks.minibatch_advice(batch))
    snap_steps = _checks.snapshot_steps(snapshots, steps)

    params, static = _checks.partition_trainable(model, trainable)
    traced = inside_trace() or any(
        is_traced(x) for x in jax.tree.leaves((params, key, loss, target))
    )
    checkpointing = checkpoint is not None or resume not in (None, False)
    if traced and checkpointing:
        raise ValueError(
            "`checkpoint`/`resume` need concrete values; got a fit traced under jit/vmap. "
            "Call `fit` outside `jax.jit`/`jax.vmap` to checkpoint it."
        )
    params = _checks.check_finite_model(model, params)  # frozen leaves too
    snaps, marks = _snapshot_slots(params, snap_steps)
    state = LoopState(params, optimizer.init(params), jnp.asarray(True), snaps, params)
    start, saved_losses, checkpointer = 0, None, None
    if checkpointing:
        state, start, saved_losses, key, checkpointer = _resume(
            static, loss, optimizer, sampler, target, state, key, key_given, steps, batch,
            sampling, snap_steps, checkpoint, checkpoint_every, resume,
        )  # fmt: skip
    method = model._fit_method(method)  # pyright: ignore[reportPrivateUsage]
    problem = Problem(target, loss, optimizer, key, sampler, PointRender(method))  # pyright: ignore[reportArgumentType]
    hint = f"; resume with `fit(..., resume={os.fspath(checkpoint)!r})`" if checkpoint else ""

    def run(problem: Problem) -> FitResult[M]:
        driver = Driver(
            _result_maker(static, snap_steps), state, steps=steps, progress=progress,
            traced=traced, checkpointer=checkpointer, start=start, losses=saved_losses,
            show_psnr=isinstance(loss, L2), hint=hint,
        )  # fmt: skip
        length = _dispatch_length(steps, steps_per_dispatch)
        with driver:
            for first in range(start, steps, length):
                driver.dispatch(
                    run_steps, static, problem, jnp.asarray(first), jnp.asarray(steps),
                    length, marks, steps=min(length, steps - first),
                )  # fmt: skip
        return driver.finish()

    with memory_for(_memory_what(model, target), _MEMORY_HINT):  # the retry's too
        try:
            return run(problem)
        except (TypeError, ValueError) as error:
            # Tracing met the tiled renderer's first-order backward: retrace with the scan.
            if not (method is None and _tiled_only_first_order(error)):
                raise
            return run(eqx.tree_at(lambda p: p.render, problem, PointRender("scan")))


def _memory_what(model: Any, target: Any) -> str:
    size = " x ".join(map(str, target.shape[:2]))
    return f"Fitting this {type(model).__name__} to a {size} target"


_MEMORY_HINT = (
    "Fit on a sample of the pixels each step (`batch=0.1`), a smaller target, or a smaller model."
)


def _dispatch_length(steps: int, steps_per_dispatch: int) -> int:
    """Steps per compiled call: a fit shorter than `steps_per_dispatch` rounds up to a
    power of two (the steps past `steps` are skipped), so a sweep over `steps` compiles
    a handful of programs rather than one for each value."""
    return min(steps_per_dispatch, 1 << (steps - 1).bit_length())


def _tiled_only_first_order(error: Exception) -> bool:
    message = str(error)
    return "forward-mode autodiff (jvp) to a custom_vjp" in message or (
        "Reverse-mode differentiation does not work for lax.while_loop" in message
    )


#: The most memory a fit's snapshots may take.
SNAPSHOT_BYTES = 2**30


def _most_slots(copy: int) -> int:
    """The most snapshots whose slots (a power of two) of `copy` bytes each fit."""
    return 1 << max(0, (SNAPSHOT_BYTES // max(copy, 1)).bit_length() - 1)


def _snapshot_slots(params: Any, snap_steps: tuple[int, ...]) -> tuple[Any, Any]:
    """The loop's snapshot slots (copies of `params`, `snapshot_slots` of them) and the
    step each is taken at (-1: never), or None for both. Another count of snapshots in
    the same power of two reuses the compiled loop (each count compiled it anew)."""
    if not snap_steps:
        return None, None
    slots = snapshot_slots(len(snap_steps))
    copy = sum(jnp.size(p) * jnp.result_type(p).itemsize for p in jax.tree.leaves(params))
    if slots * copy > SNAPSHOT_BYTES:  # 10**9 snapshots: killed at 24 GB
        raise ValueError(
            f"`snapshots={len(snap_steps)}` keeps {slots} copies of the trained parameters "
            f"(a power of two), {slots * copy / 2**30:.3g} GiB, past the "
            f"{SNAPSHOT_BYTES // 2**30} GiB `fit` keeps for them (and every step writes "
            f"through them); ask for at most {_most_slots(copy)} snapshots, or "
            "save the fit to disk as it goes with `checkpoint=`."
        )
    snaps = jax.tree.map(lambda p: jnp.repeat(p[None], slots, axis=0), params)
    return snaps, jnp.asarray((*snap_steps, *(-1,) * (slots - len(snap_steps))), jnp.int32)


def _result_maker(static: Any, snap_steps: tuple[int, ...]):
    """How the driver turns the loop state after `done` steps into a `FitResult`."""

    def make(state: LoopState, losses: Array, done: int) -> FitResult:
        taken = [j for j, at in enumerate(snap_steps) if at <= done]
        snapshots = tuple(
            eqx.combine(jax.tree.map(lambda s: s[j], state.snaps), static) for j in taken
        )
        return FitResult(
            model=eqx.combine(state.params, static),
            losses=losses,
            seconds=float("nan"),
            snapshots=snapshots,
            snapshot_steps=tuple(snap_steps[j] for j in taken),
            diverged=~state.ok,
        )

    return make


def _resume(static, loss, optimizer, sampler, target, state, key, key_given, steps, batch,
            sampling, snap_steps, checkpoint, checkpoint_every, resume):  # fmt: skip
    """The state to start from (a checkpoint's, with `resume`) and the checkpointer."""
    start, saved_losses, checkpointer = 0, None, None
    fit_info = {  # compared in this order: `sampling` changes the batch's pixel count too
        "model": type(static).__qualname__,
        "x64": bool(jax.config.read("jax_enable_x64")),  # changes every traced print below
        "target_shape": list(target.shape),
        "target_sha256": target_fingerprint(target),
        "start_sha256": start_fingerprint(state.params),
        "sampling": sampling,
        "batch": batch,
        "snapshot_steps": list(snap_steps),
        **fit_identity(static, loss, optimizer, state.params, state.opt_state, target, sampler),
    }
    if resume is True:
        resume = checkpoint if Path(checkpoint).exists() else None  # pyright: ignore
    if resume in (None, False) and key_given is None:
        _checks.check_fit_key(None, batch)  # a fresh batched fit needs its key
    if resume not in (None, False):
        params, opt_state, saved_losses, start, key, snaps, previous = load_checkpoint(
            resume, params=state.params, opt_state=state.opt_state,  # pyright: ignore
            key=None if key_given is None else key, steps=steps, fit_info=fit_info,
            snapshots=state.snaps,
        )  # fmt: skip
        state = LoopState(params, opt_state, jnp.asarray(True), snaps, previous)
    if checkpoint is not None:
        checkpointer = Checkpointer(
            checkpoint, every=checkpoint_every, key=key, fit_info=fit_info,
            static_steps=steps, last_saved=start,
        )  # fmt: skip
    return state, start, saved_losses, key, checkpointer
