"""`paint`'s rounds: seed shapes where the error is largest, then fit, through fit's driver."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from .._blur import blur
from .._fit._canon import stable_across_runs
from .._fit._driver import Driver
from .._fit._loop import LoopState, Problem, run_steps, sample_count
from .._fit._result import FitResult
from ._kept import gather, keep_active, kept_order, with_colours
from ._later import current_later, run_in_background
from ._placement import Seeding, add, ranking, remove
from ._schedule import Budget, Round
from ._solve import SOLVE_COMPILE_SECONDS, solve_colours, solve_stride

_GROUPS = {"position": "position", "colour": "colour", "opacity": "colour", "depth": "colour"}


def _labels(model: Any) -> Any:
    """The optimizer group of every parameter leaf, from its declared role's kind:
    "position", "colour" (colours, opacities, depths) or "geometry" (the rest)."""
    roles = model.parameter_roles()
    names = [name for name in roles if eqx.is_array(getattr(model, name))]
    groups = [_GROUPS.get(roles[name].kind, "geometry") for name in names]
    return eqx.tree_at(lambda m: [getattr(m, k) for k in names], model, groups)


@functools.lru_cache(maxsize=64)
def paint_optimizer(lr: float, lr_geometry: float, lr_colour: float):
    """One optimizer object per set of rates, so repeated `paint` calls reuse compilations
    (and, computing the same in every call, its trace: `stable_across_runs`)."""
    rates = {"position": lr, "geometry": lr_geometry, "colour": lr_colour}
    transforms: dict[Any, Any] = {name: optax.adam(rate) for name, rate in rates.items()}
    return stable_across_runs(optax.multi_transform(transforms, _labels))


@functools.lru_cache(maxsize=64)
def _init_program(optimizer, batched: bool):
    """`optimizer.init` compiled (`vmap`ped for batched restarts): eagerly, 3 ms a round."""
    return jax.jit(jax.vmap(optimizer.init) if batched else optimizer.init)


def image_error(model: Any, target: Array) -> Array:
    """The mean squared error of `model`'s whole picture: what restarts are ranked by."""
    return jnp.mean((model.render_image(target.shape[:2]) - target) ** 2)


class ShapeRender(eqx.Module):
    """The step loop's render: soft edges `edge_scale` times wider, a chosen renderer
    (on sampled pixels: `paint` never fits on the full grid)."""

    edge_scale: Array
    method: str = eqx.field(static=True)

    def __call__(self, model, points, pixel_size):
        return model.render(points, pixel_size=self.edge_scale * pixel_size, method=self.method)


def _steps(state, static, problem: Problem, lr_scale, first, count, size: int):
    """`count` steps of fit's step loop (`lr_scale` each step's learning-rate scale),
    for every restart (`problem.key` holds one key per restart, or one key).

    Every dispatch runs one compiled program of `size` steps; those past `count` are
    masked, so a round's last, shorter dispatch compiles no new program. Shapes not
    placed yet are invisible and off the canvas: their gradients are exactly zero and
    Adam leaves them where they are. Losses come back `(size,)`, or `(size, restarts)`.
    """

    def one(state, key):
        # Not `eqx.tree_at`: it rebuilds the optimizer (a NamedTuple, so a pytree), and a
        # new optimizer object each dispatch missed `run_steps`' cache of equal ones
        # (re-tracing its update to fingerprint it: about 8 ms a dispatch).
        keyed = dataclasses.replace(problem, key=key)
        return run_steps(state, static, keyed, first, first + count, size, None, lr_scale)

    if problem.key.ndim == 0:  # a single run: no restart axis
        return one(state, problem.key)
    state, values = jax.vmap(one)(state, problem.key)
    return state, values.T


@eqx.filter_jit
def _restart_errors(models, target: Array) -> Array:
    """`image_error` of every restart: one program (an eager `vmap` took 0.8 s more)."""
    return jax.vmap(image_error, (0, None))(models, target)


@functools.partial(jax.jit, static_argnums=1)
def split_keys(key, restarts: int):
    """A key for the blank set and one per restart: one program (eagerly, three)."""
    keys = jax.random.split(key, restarts + 1)
    return keys[0], keys[1:]


@functools.partial(jax.jit, static_argnums=2)
def _fold_keys(keys, r, single: bool):
    """Every restart's key folded with `r` (the first alone when `single`): one program
    (eagerly, the fold and the pick compiled one each)."""
    folded = jax.vmap(jax.random.fold_in, (0, None))(keys, r)
    return folded[0] if single else folded


# The colour solves compiled in this process (`_solve_program`): compiled again, from
# JAX's caches, however little of a budget is left.
_SOLVES: set[tuple] = set()
# One batched (`vmap`ped) solve at a time: two threads painting with batched restarts
# both waited forever on theirs (jax 0.10.2, CPU).
_BATCHED_SOLVE = threading.Lock()


def _solve_program(solver: functools.partial, args: tuple) -> tuple:
    """What identifies a compiled colour solve: its arguments' structure and shapes."""
    leaves, structure = jax.tree.flatten(args)
    shapes = tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)
    return structure, shapes, tuple(sorted(solver.keywords.items()))


def _on_result_like(task, painting: Painting) -> object:
    """`task` on a set like `painting`'s result (its `keep` shapes so far)."""
    models, keep = painting.models(painting.state), painting.knobs["keep"]
    if keep < painting.active.shape[-1]:
        models = keep_active(models, painting.active, keep)
    return task(models)


class Painting:
    """The state of one `paint` call between rounds (host side)."""

    def __init__(self, models, target, weights, keys, loss, optimizer, **knobs: Any):
        self.restarts = len(keys)
        self.keys = keys  # one per restart
        n = models.num_shapes
        # By NumPy: eager `jnp.zeros` compiled a program each on a cold start (10-40 ms).
        if self.restarts == 1:
            self.active = jax.device_put(np.zeros((n,), bool))
        else:
            models = jax.vmap(lambda _: models)(keys)
            self.active = jax.device_put(np.zeros((self.restarts, n), bool))
        self._unranked = jax.device_put(np.zeros(self.active.shape, np.float32))
        params, self.static = eqx.partition(models, eqx.is_inexact_array)
        self.state = LoopState(params, None, jax.device_put(np.asarray(True)))
        self.target, self.weights, self.loss, self.optimizer = target, weights, loss, optimizer
        self.knobs = knobs  # stride, fine, method, prune, opacity, anneal, most, keep
        self.rounds_done: list[tuple[int, Any]] = []  # (steps so far, models)
        self.warm_stop = threading.Event()  # set when the painting ends: `warm_up` stops
        self.solve_ready = threading.Event()  # the solve compiled ahead (or not its job)
        self.needed_done = threading.Event()  # set when `warm_up` is past the rounds' own

    def _fold(self, keys, r: int):
        return _fold_keys(keys, np.int32(r), self.restarts == 1)

    def models(self, state: LoopState):
        return eqx.combine(state.params, self.static)

    def _seed(self, driver: Driver, round_: Round, goal: Array) -> None:
        """Add this round's shapes and restart the optimizer."""
        knobs, added = self.knobs, round_.total - round_.count
        prune = min(round(knobs["prune"] * added), knobs["most"]) if knobs["prune"] else None
        seeding = Seeding(
            start=jnp.int32(added), count=jnp.int32(round_.count),
            size=jnp.asarray(round_.size, jnp.float32),
            opacity=jnp.asarray(knobs["opacity"], jnp.float32),
            prune=None if prune is None else jnp.int32(prune),
            most=knobs["most"], fine=knobs["fine"], method=knobs["method"],
        )  # fmt: skip
        models = self.models(driver.state)
        # Nothing to re-seed (the first round): no ranking, on a cold call's critical path.
        useful = self._ranking(models, goal) if prune else self._unranked
        models, self.active = add(
            models, goal, self.weights, self.active, seeding,
            self._fold(self.keys, 2 * round_.index), useful,
        )  # fmt: skip
        self._restart(driver, models)

    def _ranking(self, models, goal: Array) -> Array:
        """How much each shape's removal would raise the weighted error of `goal`."""
        knobs = self.knobs
        return ranking(models, goal, self.weights, self.active, knobs["fine"], knobs["method"])

    def _remove(self, driver: Driver, round_: Round) -> None:
        """Remove the round's count of least useful shapes; restart the optimizer."""
        models = self.models(driver.state)
        useful = self._ranking(models, self.target)
        models, self.active = remove(models, self.active, useful, round_.removed)
        self._restart(driver, models)

    def _restart(self, driver: Driver, models) -> None:
        params, self.static = eqx.partition(models, eqx.is_inexact_array)
        driver.state = self._fresh_state(params)

    def _fresh_state(self, params) -> LoopState:
        """The step loop's state at `params`, the optimizer (re)started, every restart ok."""
        init = _init_program(self.optimizer, self.restarts > 1)
        ok = jax.device_put(np.ones((self.restarts,), bool) if self.restarts > 1 else np.True_)
        return LoopState(params, init(params), ok, previous=params)

    def _problem(self, round_: Round) -> Problem:
        """What the round's steps fit: its (blurred) goal, edges and per-step keys."""
        goal = blur(self.target, round_.blur) if round_.blurred else self.target
        # Seeding folds in even numbers, steps odd ones: the streams never meet.
        keys = self._fold(self.keys, 2 * round_.index + 1)
        render = ShapeRender(jnp.asarray(round_.edge_scale, jnp.float32), self.knobs["method"])
        sampler = ("stratified", self.knobs["stride"])
        return Problem(goal, self.loss, self.optimizer, keys, sampler, render)

    def _dispatch_size(self, budget: Budget, most: int) -> int:
        samples = sample_count(("stratified", self.knobs["stride"]), *self.target.shape[:2])
        return budget.dispatch_size(most, samples, self.active.shape[-1])

    def run_round(self, driver: Driver, round_: Round, budget: Budget, most: int, *,
                  rounds: int, last: bool) -> None:  # fmt: skip
        """Seed the round's shapes, then fit every shape so far for the round's budget."""
        problem = self._problem(round_)
        with driver.busy():  # a Ctrl-C meanwhile stops the paint after it
            if round_.removed:
                self._remove(driver, round_)
            else:
                self._seed(driver, round_, problem.target)
        budget.begin(round_.index)
        driver.describe(round=f"{round_.index + 1}/{rounds}{' blurred' * round_.blurred}")
        size = self._dispatch_size(budget, most)
        # What compiles the step loop: its last measured pace, for a warm first dispatch.
        budget.pace_from((jax.tree.structure(self.static), self.active.shape,
                          self.target.shape, size, *sorted(self.knobs.items())))  # fmt: skip
        while (length := budget.next_length(size)) > 0:
            # The last round anneals the learning rates linearly to `1 - anneal`, each step.
            progress = np.clip(budget.progress() + budget.step_progress() * np.arange(size), 0, 1)
            scales = (1.0 - self.knobs["anneal"] * last * progress).astype(np.float32)
            driver.dispatch(
                _steps, self.static, problem, jax.device_put(scales), jnp.int32(budget.taken),
                jnp.int32(length), size, steps=length,
            )  # fmt: skip
            budget.took(length)
        budget.end()
        self.rounds_done.append((budget.done, self.models(driver.state)))

    def _solver(self, seconds: float | None):
        """The colour solve, on fewer pixels for large images or a short `seconds`; None
        where those would be too few (`solve_stride`)."""
        height, width = self.target.shape[:2]
        stride = solve_stride(height * width, self.solved_count(), seconds, self.restarts)
        if stride is None:
            return None
        return functools.partial(solve_colours, stride=stride, error=False)

    def solved_count(self) -> int:
        """How many shapes the solve solves for: the `keep` kept (one restart), else all."""
        return self.knobs["keep"] if self.restarts == 1 else self.active.shape[-1]

    def _kept(self) -> np.ndarray | None:
        """The kept shapes' indices when the solve can take them alone: one restart, its
        spare shapes removed (hidden shapes are zero rows of the solve's matrix: with
        1300 slots for 1000 kept, 1.7x its products and 2.2x its factorisation)."""
        active, keep = np.asarray(self.active), self.knobs["keep"]
        return None if self.restarts > 1 or active.sum() != keep else kept_order(active, keep)

    def solve(self, driver: Driver, seconds: float | None = None) -> None:
        """Colours and background by least squares for the fitted geometry (on fewer
        pixels for large images or a short `seconds` budget: `solve_stride`)."""
        solver = self._solver(seconds)
        if solver is None:
            return
        solve = solver if self.restarts == 1 else jax.vmap(solver, (0, None, None))
        fitted, kept = self.models(driver.state), self._kept()
        args = (fitted if kept is None else gather(fitted, kept), self.target, self.weights)
        with _BATCHED_SOLVE if self.restarts > 1 else contextlib.nullcontext():
            solved, _ = solve(*args)
        models = solved if kept is None else with_colours(fitted, solved, kept)
        if self.restarts == 1:  # compiled now (here or ahead): a later budget may use it
            _SOLVES.add(_solve_program(solver, args))
        driver.state = eqx.tree_at(
            lambda s: s.params, driver.state, eqx.filter(models, eqx.is_inexact_array)
        )
        self.rounds_done[-1] = (self.rounds_done[-1][0], models)

    def warm_up(self, plan: list[Round], budget: Budget, most: int,
                solve: float | None | bool) -> threading.Thread:  # fmt: skip
        """Compile the programs the rounds will need after the seeding (the step loop, the
        shapes' ranking, the removal, the colour solve with `solve`'s seconds unless
        False) in a thread, while this one compiles the seeding; returns the (started)
        thread.

        XLA compiles without the GIL, so on a CPU of two cores or more these compile
        beside the seeding and the first steps (a cold `paint(seconds=3)` ran 5.8 s, its
        budget spent before its first step: 4.4 s of compiling, one program after the
        other). Compiled programs are cached by their inputs' shapes, so the rounds find
        them there. The solve is compiled only if compiled in this process before, or
        while a `seconds` budget has a second left for it (else `paint` skips it rather
        than wait). Last, the caller's own programs (`compile_later`: the command line's
        renders of the result), however the painting ended.
        """
        models = self.models(self.state)
        params = eqx.filter(models, eqx.is_inexact_array)
        removal = next((r for r in plan if r.removed), None)
        single = self.restarts == 1  # the batched solve is `vmap`ped: not compiled ahead
        args = (models, self.target, self.weights)

        def steps() -> None:
            # Every step masked (past `total`): compiles the loop, runs no step.
            start, fresh = jnp.int32(0), self._fresh_state(params)
            problem, size = self._problem(plan[0]), self._dispatch_size(budget, most)
            ones = jax.device_put(np.ones(size, np.float32))  # (`jnp.ones` compiles)
            _steps(fresh, self.static, problem, ones, start, start, size)

        def ranking_shapes() -> None:
            knobs = self.knobs
            ranking.lower(*args, self.active, knobs["fine"], knobs["method"]).compile()

        def removing(removed: int) -> None:
            # An array (`filter_jit` takes a ShapeDtypeStruct as a constant: it failed).
            remove.lower(models, self.active, self._unranked, removed).compile()

        def solving() -> None:
            solver = self._solver(solve)
            if solver is None:
                self.solve_ready.set()
                return
            # On the kept shapes, as `solve` takes them (with one restart).
            kept = gather(models, np.arange(self.solved_count()))
            args = (kept, self.target, self.weights)
            program = _solve_program(solver, args)
            left = budget.seconds_left()
            # Compiled already, or a second left to compile it (else `paint` skips it).
            if program in _SOLVES or left is None or left >= SOLVE_COMPILE_SECONDS:
                try:
                    solver.func.lower(*args, **solver.keywords).compile()
                    _SOLVES.add(program)
                finally:  # compiled, or failed: `solve` compiles it again to report why
                    self.solve_ready.set()

        needed = [steps]
        if removal is not None or self.knobs["prune"]:
            needed.append(ranking_shapes)  # re-seeding from the second round on
        if removal is not None:
            needed.append(functools.partial(removing, removal.removed))
        if solve is False or not single:
            self.solve_ready.set()  # not compiled ahead: `solve` compiles it
        later = current_later() if single else None

        def compile_all() -> None:
            # What the rounds need, then (unless the painting ended: `warm_stop`) the
            # solve, then the caller's programs (`compile_later`) however it ended.
            try:
                for task in needed:
                    if self.warm_stop.is_set():
                        break
                    with contextlib.suppress(Exception):  # left for its call to report
                        task()
            finally:
                self.needed_done.set()
            if not self.solve_ready.is_set() and not self.warm_stop.is_set():
                with contextlib.suppress(Exception):
                    solving()
            for task in later.tasks if later else ():
                with contextlib.suppress(Exception):
                    _on_result_like(task, self)

        thread = run_in_background(compile_all)
        if later:
            later.threads.append(thread)
        return thread

    def result(self, state: LoopState, losses: Array, done: int) -> FitResult:
        """The painting after `done` steps: the best restart, a snapshot per round."""
        done_rounds = list(self.rounds_done)
        if not done_rounds or done_rounds[-1][0] < done:
            done_rounds.append((done, self.models(state)))
        models = done_rounds[-1][1]
        snapshots = [m for _, m in done_rounds]
        diverged = ~state.ok  # per restart: its steps stopped at a non-finite loss
        if self.restarts > 1:
            errors = _restart_errors(models, self.target)
            best = int(jnp.argmin(errors))
            snapshots = [jax.tree.map(lambda x: x[best], m) for m in snapshots]
            losses = losses[:, best] if losses.ndim == 2 else losses
            diverged = diverged[best]
        if self.knobs["keep"] < self.active.shape[-1]:
            active = self.active if self.restarts == 1 else self.active[best]
            snapshots = [keep_active(m, active, self.knobs["keep"]) for m in snapshots]
        return FitResult(
            model=snapshots[-1],
            losses=losses,
            seconds=float("nan"),
            snapshots=tuple(snapshots),
            snapshot_steps=tuple(at for at, _ in done_rounds),
            diverged=bool(diverged),
        )
