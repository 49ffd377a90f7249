"""`dp.paint`: approximate an image with `n` shapes, with our best defaults.

The recipe (each piece a knob of `paint`):

- **progressive rounds** (as in Image-GS): start with a fraction of the shapes and add
  more each round where the error of the current picture is largest;
- **pruning**: each round also moves the shapes that contribute least (whose removal
  would raise the error least) to where the error is largest;
- **over-complete painting**: the rounds place 30 % more shapes than asked for; a last
  round removes the least useful ones down to `n` and fits the rest (a quarter of the
  budget). Fitting with spare shapes escapes local minima that `n` shapes get stuck
  in (+0.5 dB mean on the tuning photos at N = 200 in equal time); `cycles` more times,
  spare shapes are added where the error is largest and the least useful removed;
- **scored seeding**: every pixel of a grid of 128 to 255 pixels a side and five sizes
  (1/8 to 2 times the size at which the shapes on the canvas would tile it) are scored at
  once by how much a shape there, coloured in closed form, would lower the error (as
  primitive scores its candidates, but all of them); new shapes go to the best, each
  at least its radius from those before it;
- **coarse-to-fine**: early rounds fit a blurred target with wider soft edges, later
  rounds the sharp target with the model's own softness;
- **stratified pixel sampling**: each step renders one random pixel of every
  `stride x stride` block of the target, each pixel of a block once in `stride^2` steps
  (one compilation for the whole run, every pixel's detail at a fraction of the cost of
  a full render); a target larger than 512 x 512 pixels is fitted from a smaller copy
  (`_working`);
- **random restarts**, each in its own thread on a CPU (batched with `jax.vmap` on an
  accelerator), keeping the best;
- a **wall-time budget**: `seconds=T` spends T seconds in all, compilation included;
- a final **colour solve**: for the fitted geometry, colours and background by linear
  least squares.

The gradient steps are `dp.fit`'s own step loop (`run_steps`), and the rounds run through
fit's driver, so `paint` gets its progress bar, Ctrl-C and divergence handling.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray
from typing_extensions import TypeVar

from .._errors import memory_for
from .._fit._driver import Driver
from .._fit._loop import sample_count
from .._fit._result import FitResult
from .._loss_checks import check_loss_on
from .._losses import L2, AbstractLoss, as_loss
from .._shapes import AbstractShapes, Circles
from ._placement import blank, grid_step
from ._rounds import Painting, paint_optimizer, split_keys
from ._schedule import Budget, affordable_cycles, plan_rounds, with_removal
from ._settings import Settings, check_settings
from ._solve import check_solve_memory, solve_reserve, squared_error_weights
from ._threads import best_of_threads
from ._working import working_copy

S = TypeVar("S", bound=AbstractShapes, default=Circles)  # `shape`'s type, Circles by default


def paint(
    target: Float[ArrayLike, "H W C"],
    n: int,
    *,
    key: PRNGKeyArray,
    shape: type[S] = Circles,
    seconds: float | None = None,
    steps: int | None = None,
    rounds: int = 8,
    restarts: int = 1,
    threads: bool | None = None,
    loss: Any = None,
    stride: int = 4,
    coarse: float = 3.0,
    softness: float = 0.5,
    opacity: float = 0.7,
    grow: float = 0.6,
    prune: float = 0.1,
    compositing: str = "over",
    learn_background: bool = True,
    lr: float = 1e-2,
    lr_geometry: float = 1e-2,
    lr_colour: float = 1e-2,
    anneal: float = 0.9,
    solve_colours: bool = True,
    extra: float = 0.3,
    cycles: int = 2,
    method: str | None = None,
    steps_per_dispatch: int = 50,
    progress: bool | str = False,
) -> FitResult[S]:
    """Approximate `target` with `n` shapes: initialisation and fit with our best defaults.

    Shapes are added in `rounds` (each round puts new shapes where the picture is most
    wrong, coloured in closed form, then fits every shape so far by gradient descent on
    stratified pixel samples of the target); the first rounds see a
    blurred target with wider edges (coarse to fine); of `restarts` independent runs
    (concurrent threads on a CPU) the best is kept. Either `steps` or `seconds` sets how
    long it runs.

    **Arguments:**

    - `target`: `(H, W, C)` image, float in `[0, 1]`. A target of more than 512 x 512
      pixels (or 1024 a shape) is painted from a copy of that many, antialiased: the
      shapes do not depend on the resolution (render them at the target's size).
    - `n`: the number of shapes.
    - `key`: PRNG key; the same key (and the same `steps`) gives the same painting.
    - `shape`: any [`diffprims.AbstractShapes`][] subclass (`dp.Circles`,
      `dp.Ellipses`, `dp.Triangles`, `dp.Rectangles`, `dp.Gaussians`, your own).
    - `seconds`: wall-time budget in seconds, compilation included; rounds share it in
      proportion to their step share. Overrides `steps`. The first call in a process (or
      of another `n`, image size or shape type) compiles for 4 to 8 s on a 2-core CPU
      at 200 shapes (10 to 15 s at 1000 triangles), which a short budget cannot hold;
      later calls keep to it, but for the rounds' placing of shapes, which runs
      whatever is left (about 0.05 s a round at 1000 shapes on 256^2).
    - `steps`: total optimizer steps when no `seconds` is given (default 1500).
    - `rounds`: the number of progressive rounds (1 places all shapes at once).
    - `restarts`: independent runs (see `threads`), at most 64; the one with the lowest
      squared error on the full image is returned.
    - `threads`: run each restart in its own thread rather than batched with
      `jax.vmap` (None: threads on a CPU, where one painting keeps one core busy, so
      restarts up to the number of cores take about the time of one, each with the
      whole `seconds`; `vmap` on an accelerator). Threaded restarts show the first's
      progress bar.
    - `loss`: a loss `(pred, target) -> scalar` on sampled pixels (default
      [`diffprims.L2`][]); per-pixel maps ([`diffprims.Weighted`][]) are sampled along.
      With `dp.Weighted(dp.L2(), weights)` new shapes also go where the *weighted* error
      is largest (give a face weight 8 and it gets more shapes).
    - `stride`: each step renders one random pixel per `stride x stride` block.
    - `coarse`: blur (in pixels) of the target and edge widening in the first round,
      decaying to 0 and 1 by the last round.
    - `softness`, `compositing`, `learn_background`: of the shape set (see
      [`diffprims.AbstractShapes`][]).
    - `opacity`: the opacity new shapes start with.
    - `grow`: new shapes start this many times the size at which the shapes placed so
      far would tile the frame (so each round's shapes are smaller than the last's).
    - `prune`: each round also re-seeds this fraction of the shapes already placed: those
      whose removal would raise the squared error least (shapes hidden by others, or
      painting what their neighbours already paint) move to where the error is largest.
    - `extra`: paint `round(extra * n)` more shapes than `n`, then remove the least
      useful (as `prune` ranks them) down to `n` in a last round that fits the rest for
      a quarter of the budget; 0 paints exactly `n` throughout. Not used with "depth"
      compositing (it has no fixed order to rank shapes in).
    - `cycles`: after that removal, this many times: add as many spare shapes again
      where the error is largest, fit all, and remove the least useful down to `n`
      (each try of new shapes keeps only those that earn their place). With `seconds`,
      only the cycles that the time left at the first removal can feed (two dispatches
      of steps a round, as measured so far) are run; a short budget runs none.
    - `lr`, `lr_geometry`, `lr_colour`: Adam learning rates for the parameters whose
      declared [`diffprims.Role`][] is a position, other geometry (sizes, angles, ...)
      and colours/opacities/depths.
    - `solve_colours`: finish by solving for the colours and background that minimise
      the squared error on the whole image for the fitted geometry, kept in `[0, 1]`
      (the picture is linear in the colours for "over" and "additive": the better of
      the clipped least-squares solution and the current colours, then projected
      gradient steps; weighted by the loss's per-pixel weights for
      `dp.Weighted(dp.L2(), weights)`; skipped for losses that are not squared errors).
      On every pixel up to 512 x 512; on one pixel a block where that takes longer than
      a share of `seconds` (or 10 s), kept only if no worse on another pixel a block,
      and skipped under 16 pixels a shape (thousands of shapes on a short budget). With
      `seconds` and one restart, skipped when not compiled by the end of the rounds.
    - `method`: the renderer for the sampled pixels and for the error maps that place
      new shapes, as in [`diffprims.AbstractShapes.render`][]. By default "auto" (the tiled,
      culled renderer from 8 shapes and 1024 pixels on: it compiles as fast as "scan" and
      steps 4x faster at 100 shapes).
    - `anneal`: over the last round the learning rates fall linearly to `1 - anneal`
      times their value.
    - `steps_per_dispatch`: steps per compiled call (the budget is checked between).
    - `progress`: show a progress bar (steps, round, loss and PSNR on the sampled
      pixels); a string shows it labelled.

    **Raises:**

    [`diffprims.FitInterrupted`][] on Ctrl-C (`error.result` holds the painting so far)
    and [`diffprims.FitDivergedError`][] when a step's loss is not finite.

    **Returns:**

    A [`diffprims.FitResult`][]: the fitted shapes, the loss at every step (of the kept
    restart), the wall time, and a snapshot after every round (for
    [`diffprims.save_gif`][]: the painting as it grows).

    ```python
    result = dp.paint(target, 200, key=jax.random.key(0), seconds=20)
    image = result.model.render_image(target.shape[:2])
    ```
    """
    start_time = time.perf_counter()
    target, n, key, settings = check_settings(target, n, key, Settings.of(locals()))
    loss = as_loss(L2() if loss is None else loss)
    # The placement, pruning and colour solve minimise the fit's weighted squared error.
    _check_loss(loss, target, settings.stride)
    target, loss = working_copy(target, loss, n)  # a large photo: a smaller copy
    settings = dataclasses.replace(settings, loss=loss)
    k_blank, run_keys = split_keys(key, settings.restarts)
    height, width = target.shape[:2]
    with memory_for(f"Painting {n} shapes on {height} x {width} pixels", _MEMORY_HINT):
        return _paint_runs(target, n, k_blank, run_keys, settings, start_time, progress)


_MEMORY_HINT = "Paint fewer shapes, fewer `restarts` at once, or a smaller image."


def _paint_runs(target, n, k_blank, run_keys, settings, start_time, progress) -> FitResult:
    restarts, threads = settings.restarts, settings.threads
    if restarts > 1 and (jax.default_backend() == "cpu" if threads is None else threads):
        return best_of_threads(
            lambda run_key, stop, bar: _paint_once(
                target, n, k_blank, run_key[None], settings, start_time=start_time,
                progress=bar, stop=stop, running=restarts,
            ),
            list(run_keys), target, progress=progress, start_time=start_time,
        )  # fmt: skip
    return _paint_once(target, n, k_blank, run_keys, settings, start_time=start_time,
                       progress=progress)  # fmt: skip


def _paint_once(target, n, k_blank, run_keys, settings: Settings, *, start_time, progress,
                stop=None, running=1) -> FitResult:  # fmt: skip
    """One painting of `target`, its restarts (`run_keys`, one each) batched with `vmap`
    (`running`: how many paint at once in all, for the memory check)."""
    s, loss, seconds, steps = settings, settings.loss, settings.seconds, settings.steps
    restarts = len(run_keys)
    height, width, _ = target.shape
    pixel_weights = squared_error_weights(loss, (height, width))
    solving = s.solve_colours and s.compositing != "depth" and pixel_weights is not None
    if pixel_weights is None:  # not a squared error: plain squared error places shapes
        pixel_weights = squared_error_weights(L2(), (height, width))
    # Over-complete: paint `slots` shapes, then remove the least useful down to `n`.
    slots = n + round(s.extra * n) if s.compositing != "depth" else n
    if solving:
        check_solve_memory(n, max(restarts, running), (slots - n) / n)
    plan = plan_rounds(
        slots, min(s.rounds, n), coarse=s.coarse, grow=s.grow, aspect=width / height
    )
    plan = with_removal(plan, n, s.cycles)
    models = blank(
        s.shape, slots, target, key=k_blank, softness=s.softness, compositing=s.compositing,
        learn_background=s.learn_background,
    )  # fmt: skip
    painting = Painting(
        models, target, pixel_weights, run_keys, loss,
        paint_optimizer(float(s.lr), float(s.lr_geometry), float(s.lr_colour)),
        stride=min(s.stride, height, width), method=s.method or "auto", prune=s.prune,
        fine=grid_step(height, width, 128),
        opacity=s.opacity, anneal=s.anneal, most=max(r.count for r in plan), keep=n,
    )  # fmt: skip
    solved = painting.solved_count()  # batched restarts solve their spare shapes too
    reserve = solve_reserve(seconds, solved, height * width, restarts) if solving else 0.0
    budget = Budget(plan, n, steps=steps, seconds=seconds, reserve=reserve, start=start_time)
    driver = Driver(
        painting.result, painting.state, steps=steps, progress=progress,
        show_psnr=isinstance(loss, L2), stop=stop, name="Paint", start_time=start_time,
    )  # fmt: skip
    painting.warm_up(plan, budget, s.steps_per_dispatch, seconds if solving else False)
    try:
        with driver:
            _run_rounds(painting, driver, plan, budget, s.steps_per_dispatch)
            painting.warm_stop.set()  # what is not compiled ahead by now is not needed
            # With `seconds`, only if compiled by now (a cold call waited past its budget).
            if solving and (seconds is None or painting.solve_ready.is_set()):
                with driver.busy():  # a Ctrl-C after the last dispatch stops it here
                    painting.solve(driver, seconds)
        return driver.finish()
    finally:
        # Not for a solve or a caller's programs (`compile_later`) still compiling: the
        # thread is joined at the interpreter's exit, if not before.
        painting.warm_stop.set()
        painting.needed_done.wait()


def _run_rounds(painting: Painting, driver: Driver, plan: list, budget: Budget, most: int):
    """Every round of `plan`, less the cycles a `seconds` budget cannot feed."""
    first_removal = next((r.index for r in plan if r.removed), None)
    for round_ in list(plan):
        if round_.index >= len(plan) or (round_.cycle and budget.spent()):
            break  # a cycle's spare shapes with no time to fit them: skip the cycles
        if round_.index == first_removal:  # keep the cycles the time left can feed
            left, overhead = budget.dispatches_left(), budget.round_overhead()
            plan = affordable_cycles(plan, round_.index, left, overhead)
            budget.replan(plan)
        painting.run_round(driver, round_, budget, most, rounds=len(plan), last=round_ is plan[-1])


def _check_loss(loss: AbstractLoss, target: Array, stride: int) -> None:
    """The loss must take the `(P, C)` pixel samples each step gives it."""
    height, width, _ = target.shape
    count = sample_count(("stratified", min(stride, height, width)), height, width)
    check_loss_on(loss, target, count, lambda error: (
        f"`loss` must work on sampled pixels (P, C): `paint` fits on one pixel per "
        f"{stride}x{stride} block; a loss that needs whole images (SSIM, Sobel) cannot be "
        f"used. {error}"
    ))  # fmt: skip
