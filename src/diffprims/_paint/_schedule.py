"""How `paint` spends its steps or seconds: rounds, their share, the learning-rate anneal."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

# The share of the steps or seconds for the last round when it removes the spare shapes
# (`paint(extra=...)`) and fits the `n` kept: 0.25 to 0.4 measured alike (within 0.02 dB).
FINAL_SHARE = 0.25

# With a `seconds` budget, the cycles kept are those whose rounds the time left can give
# this many dispatches each (counting the last removal round): at 2 s for 200 circles on
# 256^2, all 13 rounds shared about 10 dispatches, and dropping the cycles gave +0.9 dB
# on six photos; from 5 s on, the cycles cost nothing.
CYCLE_DISPATCHES = 2

# With a `seconds` budget, a dispatch renders at most this many pixel samples times
# shapes: the default 50 steps at 256 x 256 (4096 samples a step at stride 4) of 200
# shapes and their 30 % spares. At 1536 x 1024 50 steps took 9 s, all of a round's share
# of `seconds=10` before the budget was checked; 50 steps of 1000 triangles took 3 s.
DISPATCH_SAMPLES = 50 * 4096
DISPATCH_SHAPES = 260


@dataclasses.dataclass(frozen=True)
class Round:
    """One progressive round: how many shapes it adds and how it sees the target."""

    index: int
    count: int  # shapes added this round
    total: int  # shapes on the canvas after it
    blur: float  # target blur in pixels
    edge_scale: float  # soft edges this many times the model's own
    size: float  # new shapes' size (frame units)
    removed: int = 0  # shapes removed at its start (the least useful)
    cycle: bool = False  # adds a cycle's spare shapes (after the first removal)

    @property
    def blurred(self) -> bool:
        """Whether the round fits a blurred target (its loss is against that)."""
        return self.blur > 0.05


def with_removal(plan: list[Round], keep: int, cycles: int = 0) -> list[Round]:
    """`plan`, then a round that removes the least useful shapes down to `keep` and fits
    the rest on the sharp target (when the plan places more than `keep`); then `cycles`
    times: a round that adds as many spare shapes again, and one that removes them."""
    last = plan[-1]
    spare = last.total - keep
    if spare <= 0:
        return plan
    sharp = dict(blur=0.0, edge_scale=1.0)
    plan = [*plan, dataclasses.replace(last, count=0, total=keep, removed=spare, **sharp)]
    for _ in range(cycles):
        plan.append(
            dataclasses.replace(last, count=spare, total=keep + spare, cycle=True, **sharp)
        )
        plan.append(dataclasses.replace(last, count=0, total=keep, removed=spare, **sharp))
    return [dataclasses.replace(r, index=i) for i, r in enumerate(plan)]


def affordable_cycles(plan: list[Round], at: int, dispatches: float | None,
                      overhead: float = 0.0) -> list[Round]:  # fmt: skip
    """`plan` with only the cycles after round `at` (the first removal) that `dispatches`
    left can feed with `CYCLE_DISPATCHES` each of their rounds (all without an estimate),
    when a round's seeding or removal costs `overhead` dispatches besides (with 1000
    shapes, as much as its steps).
    """
    if dispatches is None:
        return plan
    cycles = sum(r.cycle for r in plan[at:])
    rounds = dispatches / (CYCLE_DISPATCHES + overhead)
    keep = min(cycles, max(0, int((rounds - 1) // 2)))
    return plan[: at + 1 + 2 * keep]


def plan_rounds(n: int, rounds: int, *, coarse: float, grow: float, aspect: float) -> list[Round]:
    """`rounds` rounds adding `n` shapes in (nearly) equal counts, coarse to fine.

    Equal counts give at most two distinct sizes, so at most two compilations of the
    adder. Early rounds see a target blurred by `coarse` pixels with edges `coarse`
    times wider; by the last round, the sharp target and the model's own softness (a
    single round is the last: it fits the sharp target).
    """
    counts = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
    plan, total = [], 0
    for r, count in enumerate(counts):
        fraction = r / (rounds - 1) if rounds > 1 else 1.0
        total += count
        plan.append(
            Round(
                index=r,
                count=count,
                total=total,
                blur=coarse * (1.0 - fraction),
                edge_scale=1.0 + (coarse - 1.0) * (1.0 - fraction) if coarse > 1 else 1.0,
                size=grow * float(np.sqrt(aspect / (np.pi * total))),
            )
        )
    return plan


# Seconds a step of each compiled step loop, as last measured (`Budget.pace_from`): a
# warm `paint` sizes its first dispatch by it rather than running a whole one blind
# (5000 shapes on 64^2: one dispatch of 32 steps took 1.35 s of a 0.5 s budget).
_PACES: dict[Any, float] = {}


class Budget:
    """Steps or seconds for each round, in proportion to the shapes it fits (a round
    that removes the spare shapes gets `final` of the whole).

    With `seconds`, a round ends when the next dispatch would likely overrun its share
    of what is left (a share of the budget is kept for the final colour solve).
    """

    def __init__(self, plan: list[Round], n: int, *, steps: int | None, seconds: float | None,
                 reserve: float, start: float, final: float = FINAL_SHARE):  # fmt: skip
        self.n, self.final = n, final
        self.replan(plan)
        self.steps, self.seconds, self.reserve, self.start = steps, seconds, reserve, start
        self.done = 0
        self.dispatch: float | None = None  # seconds a step, in the last dispatch
        self.dispatches = 0  # dispatches measured so far
        self.length = self.size = 1  # steps of the last dispatch; steps a full dispatch
        self.stepping, self.begun = 0.0, 0  # seconds in dispatches; rounds begun
        self.pace_key: Any = None

    def pace_from(self, key: Any) -> None:
        """Measure a step's time as that of the compiled step loop `key` (hashable), and
        start from its last measure in this process, if any (the loop is compiled)."""
        self.pace_key = key
        known = _PACES.get(key)
        if known is not None and not self.dispatches:
            self.dispatch, self.dispatches = known, 1

    def replan(self, plan: list[Round]) -> None:
        """Shares for `plan` (with `seconds`, a round's time is its share of the shares
        left, so a shortened plan gives the rounds it keeps what the others would have had).
        """
        weights = np.array([r.count for r in plan], float) + self.n / len(plan)
        if plan[-1].removed and len(plan) > 1:  # the removal round gets `final` of it all
            weights[-1] = self.final / (1 - self.final) * weights[:-1].sum()
        self.share = weights / weights.sum()

    def seconds_left(self) -> float | None:
        """With `seconds`, the time left until the rounds end (None with `steps`)."""
        if self.seconds is None:
            return None
        return self.seconds - self.reserve - (time.perf_counter() - self.start)

    def dispatches_left(self) -> float | None:
        """With `seconds`, how many more dispatches of the last measured length fit in
        the time left (None before one is measured, or with `steps`)."""
        left = self.seconds_left()
        if left is None or not self.dispatch:
            return None
        return max(left, 0.0) / (self.dispatch * self.size)

    def round_overhead(self) -> float:
        """A round's time outside its dispatches so far (seeding, removal), in dispatches
        of the last measured length (0 before one is measured)."""
        if not self.dispatch or not self.begun:
            return 0.0
        elapsed = time.perf_counter() - self.start
        return max(0.0, elapsed - self.stepping) / self.begun / (self.dispatch * self.size)

    def begin(self, r: int) -> None:
        """Start round `r`."""
        self.round, self.taken, self.begun = r, 0, self.begun + 1
        self.round_start = self.chunk_start = time.perf_counter()
        self.round_steps = self.round_end = None
        if self.seconds is None:
            assert self.steps is not None
            cumulative = float(np.sum(self.share[: r + 1]))
            self.round_steps = max(1, round(self.steps * cumulative)) - self.done
        else:
            left = self.seconds - self.reserve - (time.perf_counter() - self.start)
            self.round_end = self.round_start + left * self.share[r] / self.share[r:].sum()

    def dispatch_size(self, most: int, samples: int, shapes: int = DISPATCH_SHAPES) -> int:
        """Steps per compiled dispatch: `most`, or fewer when no round needs that many
        (one size for the whole paint, so the step loop compiles once). With `seconds`,
        at most `DISPATCH_SAMPLES` pixel samples of `DISPATCH_SHAPES` shapes in all
        (`samples` a step, `shapes` on the canvas at most), so that a dispatch on a
        large image or of many shapes is not a large part of the budget."""
        if self.steps is None:
            work = DISPATCH_SAMPLES * DISPATCH_SHAPES // max(shapes, DISPATCH_SHAPES)
            self.size = max(1, min(most, work // samples))
            return self.size
        ends = [max(1, round(self.steps * float(c))) for c in np.cumsum(self.share)]
        # Rounded up to a power of two, as `fit` does: the length is static, and `steps=40`
        # then `48` compiled the step loop again (1.5 s); the steps past a round's end
        # are skipped (a `lax.cond`), so the rounding costs nothing.
        longest = int(max(np.diff([0, *ends])))
        return max(1, min(most, 1 << max(longest - 1, 0).bit_length()))

    def progress(self) -> float:
        """How far through this round we are, in [0, 1]."""
        if self.round_end is not None:
            elapsed = time.perf_counter() - self.round_start
            fraction = elapsed / max(self.round_end - self.round_start, 1e-9)
        else:
            fraction = self.taken / max(self.round_steps or 1, 1)
        return min(max(fraction, 0.0), 1.0)

    def step_progress(self) -> float:
        """How much of this round a step takes, as `progress` counts it (with `seconds`,
        0 until a step's time is measured)."""
        if self.round_end is not None:
            return (self.dispatch or 0.0) / max(self.round_end - self.round_start, 1e-9)
        return 1.0 / max(self.round_steps or 1, 1)

    def next_length(self, most: int) -> int:
        """Steps for the next dispatch (0: the round is over).

        With `seconds`, a dispatch runs as many steps as the round's share still holds
        at the last measured time a step (the first dispatch of the paint includes
        compilation and does not count), at most `most`: each round ends within about
        half a step of its share (a whole dispatch of 1000 triangles overran a 5 s budget
        by 4 s); a round whose share is already spent (compilation ate it) only seeds
        its shapes.
        """
        if self.round_steps is not None:
            return max(0, min(most, self.round_steps - self.taken))
        now = time.perf_counter()
        assert self.round_end is not None
        if self.taken:
            self.stepping += now - self.chunk_start
            # The first dispatch of the paint includes compilation: not an estimate.
            pace = (now - self.chunk_start) / self.length  # a step's time
            if self.dispatches:
                self.dispatch = pace
                if self.pace_key is not None:
                    _PACES[self.pace_key] = pace
            elif self.pace_key is not None:  # compiling too, maybe: an upper bound, kept
                _PACES.setdefault(self.pace_key, pace)  # until a dispatch is measured
            self.dispatches += 1
        self.chunk_start = now
        if not self.dispatches:
            self.length = most
        elif self.dispatch is None:
            self.length = most if now < self.round_end else 0
        else:
            steps = round((self.round_end - now) / self.dispatch)
            first = not self.taken and not self.done  # the paint's first: at least a step
            self.length = min(most, max(1 if first else 0, steps))
        return self.length

    def spent(self) -> bool:
        """Whether a `seconds` budget (less the time kept for the solve) is used up."""
        if self.seconds is None:
            return False
        return time.perf_counter() - self.start >= self.seconds - self.reserve

    def took(self, steps: int) -> None:
        self.taken += steps

    def end(self) -> None:
        self.done += self.taken
