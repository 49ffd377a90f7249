"""dp.paint's over-complete painting: extra shapes, then the least useful removed."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffprims as dp
from diffprims._paint._placement import ranking, remove, usefulness
from diffprims._paint._schedule import (
    CYCLE_DISPATCHES,
    FINAL_SHARE,
    Budget,
    affordable_cycles,
    plan_rounds,
    with_removal,
)
from diffprims._paint._solve import solve_colours as _solve_colours, solve_seconds

from .helpers import tree_allclose


def _target(key, size=16):
    """A small picture: three overlapping discs on a grey background."""
    model = dp.Circles.init(3, key=key, size_range=(0.15, 0.3), opacity=0.9)
    return model.render_image((size, size))


def test_remove_takes_out_the_least_useful_active_shapes(getkey):
    target = jax.random.uniform(getkey(), (12, 12, 3))
    weights = jnp.ones((12, 12))
    model = dp.Circles.init(6, key=getkey(), size_range=(0.1, 0.3), opacity=0.8)
    active = jnp.array([True, True, True, True, True, False])
    useful = usefulness(model, target, weights, 1)
    expected = set(np.argsort(np.where(active, useful, np.inf))[:2].tolist())
    ranked = ranking(model, target, weights, active, 1)
    np.testing.assert_allclose(ranked, np.where(active, useful, np.inf), rtol=1e-5)
    removed, now = remove(model, active, ranked, 2)
    # The shapes kept come first, in their depth order; the removed ones are invisible.
    np.testing.assert_array_equal(now, [True] * 3 + [False] * 3)
    kept = jnp.array(sorted(set(np.nonzero(np.asarray(active))[0].tolist()) - expected))
    # (Shape 5 was never active: it stays where it is, last, and visible.)
    np.testing.assert_allclose(
        removed.render_image((12, 12)),
        model.take(jnp.append(kept, 5)).render_image((12, 12)),
        atol=1e-5,
    )
    np.testing.assert_allclose(removed.take(jnp.arange(3)).centres, model.take(kept).centres)
    # Every restart removes its own least useful shapes.
    both = jax.vmap(lambda _: model)(jnp.arange(2))
    actives = jnp.stack([active, active])
    again, per_restart = remove(both, actives, ranking(both, target, weights, actives, 1), 2)
    np.testing.assert_array_equal(per_restart[1], now)
    np.testing.assert_allclose(again.raw_centres[1], removed.raw_centres)


def test_the_removal_round_comes_last_with_its_share():
    plan = plan_rounds(13, 4, coarse=3.0, grow=0.6, aspect=1.0)
    assert with_removal(plan, 13) == plan and with_removal(plan, 20) == plan
    extended = with_removal(plan, 10)
    assert extended[:-1] == plan and len(extended) == 5
    last = extended[-1]
    assert (last.count, last.removed, last.total, last.blur, last.edge_scale) == (0, 3, 10, 0, 1)
    budget = Budget(extended, 10, steps=100, seconds=None, reserve=0.0, start=time.time())
    np.testing.assert_allclose(budget.share[-1], FINAL_SHARE)
    np.testing.assert_allclose(budget.share[:-1].sum(), 1 - FINAL_SHARE)
    final = Budget(extended, 10, steps=100, seconds=None, reserve=0.0, start=0.0, final=0.4)
    np.testing.assert_allclose(final.share[-1], 0.4)
    cycled = with_removal(plan, 10, cycles=2)
    assert cycled[:5] == extended and [r.index for r in cycled] == list(range(9))
    assert [(r.count, r.removed, r.total) for r in cycled[5:]] == [(3, 0, 13), (0, 3, 10)] * 2
    assert [r.cycle for r in cycled] == [False] * 5 + [True, False] * 2
    plain = Budget(plan, 13, steps=100, seconds=None, reserve=0.0, start=0.0, final=0.4)
    # No removal round: shares in proportion to the shapes each round fits.
    np.testing.assert_allclose(plain.share, [4 / 13 * 0.5 + 0.125] + [3 / 13 * 0.5 + 0.125] * 3)


@pytest.mark.parametrize(
    "dispatches, kept", [(None, 2), (0, 0), (5, 0), (6, 1), (9, 1), (10, 2), (99, 2)]
)
def test_a_short_budget_keeps_only_the_cycles_it_can_feed(dispatches, kept):
    """At the first removal, the cycles kept are those whose rounds (and the removal)
    the dispatches left can give `CYCLE_DISPATCHES` each; the removal round is then
    the last and takes the time left."""
    plan = with_removal(plan_rounds(13, 4, coarse=3.0, grow=0.6, aspect=1.0), 10, cycles=2)
    assert CYCLE_DISPATCHES == 2  # the cases above count in twos
    trimmed = affordable_cycles(plan, 4, None if dispatches is None else float(dispatches))
    assert trimmed == plan[: 5 + 2 * kept] and trimmed[-1].removed
    budget = Budget(plan, 10, steps=None, seconds=10.0, reserve=0.0, start=time.perf_counter())
    budget.replan(trimmed)
    np.testing.assert_allclose(budget.share[-1], FINAL_SHARE)
    assert len(budget.share) == len(trimmed)
    # With `seconds`, nothing to go on before a dispatch is measured.
    assert budget.dispatches_left() is None
    budget.dispatch = 0.5
    assert 19 < budget.dispatches_left() <= 20


@pytest.mark.parametrize("overhead, kept", [(0.0, 2), (1.0, 1), (2.5, 0)])
def test_costly_rounds_keep_fewer_cycles(overhead, kept):
    """A round that costs `overhead` dispatches besides its steps (seeding or removing
    1000 shapes) counts: 10 dispatches feed 2 cycles of cheap rounds, 1 of rounds
    costing a dispatch more, none of rounds costing 2.5 more."""
    plan = with_removal(plan_rounds(13, 4, coarse=3.0, grow=0.6, aspect=1.0), 10, cycles=2)
    assert affordable_cycles(plan, 4, 10.0, overhead) == plan[: 5 + 2 * kept]
    budget = Budget(plan, 10, steps=None, seconds=10.0, reserve=0.0, start=time.perf_counter() - 3)
    assert budget.round_overhead() == 0.0  # nothing measured yet
    budget.dispatch, budget.stepping, budget.begun = 0.5, 1.0, 2
    assert 2.0 <= budget.round_overhead() < 2.1  # (3 s - 1 s in dispatches) / 2 rounds / 0.5 s


@pytest.mark.parametrize("dispatches, rounds_run", [(1.0, 3), (7.0, 5), (99.0, 9)])
def test_paint_runs_the_cycles_its_time_left_can_feed(dispatches, rounds_run, getkey, monkeypatch):
    """`paint(seconds=...)` asks at its first removal how many dispatches are left and
    runs only the cycles they feed: the removal is then its last round, and it returns
    `n` shapes."""
    monkeypatch.setattr(Budget, "dispatches_left", lambda self: dispatches)
    monkeypatch.setattr(Budget, "round_overhead", lambda self: 0.0)
    target = _target(getkey())
    result = dp.paint(target, 6, key=getkey(), seconds=2.0, rounds=2, cycles=3)
    assert result.model.num_shapes == 6
    assert len(result.snapshots) == rounds_run  # 2 rounds, the removal, 2 per cycle


def test_the_time_kept_for_the_solve_grows_with_its_work():
    # Measured on a 2-core CPU, compilation included: 0.72 s at n = 200 and 1.57 s at
    # n = 1000 on 256 x 256; the estimate covers both and stays near a second at n = 200
    # (it was a tenth of the budget, 2.8 s at 28 s).
    small = solve_seconds(200, 256 * 256)
    assert 0.72 < small < 1.2 and 1.57 < solve_seconds(1000, 256 * 256) < 4.0
    assert solve_seconds(200, 512 * 512) > small and solve_seconds(200, 256 * 256, 2) > small


@pytest.mark.parametrize("restarts, cycles", [(1, 0), (2, 0), (1, 2)])
def test_paint_with_extra_shapes_returns_n(restarts, cycles, getkey):
    target, key = _target(getkey(), 20), getkey()
    result = dp.paint(
        target, 6, key=key, steps=60, rounds=2, extra=0.5, restarts=restarts, cycles=cycles
    )
    assert result.model.num_shapes == 6
    assert all(m.num_shapes == 6 for m in result.snapshots)
    # Two rounds that add, one that removes, and two rounds per cycle.
    assert len(result.snapshots) == 3 + 2 * cycles
    assert tree_allclose(result.snapshots[-1], result.model)
    assert np.all(result.model.opacities > 1e-3)  # every shape kept is a painted one
    flat = float(dp.psnr(jnp.broadcast_to(target.mean((0, 1)), target.shape), target))
    assert float(dp.psnr(result.model.render_image((20, 20)), target)) > flat + 3.0


def test_no_extra_shapes_is_the_plain_paint(getkey):
    target, key = _target(getkey()), getkey()
    plain = dp.paint(target, 5, key=key, steps=30, rounds=2, extra=0.0)  # cycles: no spares
    assert len(plain.snapshots) == 2
    # Depth compositing has no usefulness ranking: it paints exactly n.
    depth = dp.paint(target, 5, key=key, steps=30, rounds=2, extra=0.5, compositing="depth")
    assert depth.model.num_shapes == 5 and len(depth.snapshots) == 2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(extra=-0.1), ValueError, "extra"),
        (dict(extra=float("nan")), ValueError, "extra"),
        (dict(cycles=-1), ValueError, "cycles"),
        (dict(cycles=1.5), TypeError, "cycles"),
    ],
)
def test_extra_and_cycles_must_be_non_negative(kwargs, error, match, getkey):
    with pytest.raises(error, match=match):
        dp.paint(np.zeros((8, 8, 3), np.float32), 3, key=getkey(), steps=2, **kwargs)


def test_the_colour_solve_on_the_kept_shapes_equals_the_solve_with_the_hidden_spares(getkey):
    """paint solves the colours of its kept shapes alone (hidden spares are zero rows of
    the matrix, 1.7x its products at 1300 slots for 1000): the same colours."""
    from diffprims._paint._kept import gather, with_colours
    from diffprims._paint._placement import _hide

    target = jax.random.uniform(getkey(), (20, 20, 3))
    model = dp.Circles.init(10, key=getkey(), size_range=(0.1, 0.3), opacity=0.8)
    model = _hide(model, jnp.array([2, 5, 7]))  # spares removed: invisible, off the canvas
    kept = np.array([0, 1, 3, 4, 6, 8, 9])
    whole, _ = _solve_colours(model, target, None, error=False)
    alone, _ = _solve_colours(gather(model, kept), target, None, error=False)
    merged = with_colours(model, alone, kept)
    np.testing.assert_allclose(merged.colours[kept], whole.colours[kept], atol=2e-3)
    np.testing.assert_allclose(merged.background, whole.background, atol=1e-4)
    np.testing.assert_array_equal(merged.raw_colours[2], model.raw_colours[2])
    np.testing.assert_allclose(
        merged.render_image((20, 20)), whole.render_image((20, 20)), atol=1e-3
    )


def test_a_warm_paint_sizes_its_first_dispatch_by_the_last_measured_pace():
    # The first dispatch of every paint ran whole, compiling or not: 5000 shapes on 64^2
    # took 1.5 s for `seconds=0.5` warm (32 steps of 42 ms).
    from diffprims._paint import _schedule

    plan = plan_rounds(10, 2, coarse=3.0, grow=0.6, aspect=1.0)
    key = ("a compiled step loop", object())

    def first_length():
        budget = Budget(plan, 10, steps=None, seconds=0.5, reserve=0.0, start=time.perf_counter())
        budget.begin(0)
        budget.pace_from(key)
        length = budget.next_length(32)
        time.sleep(0.01 * length)  # the dispatch
        budget.took(length)
        budget.next_length(32)  # measures it
        return length

    assert first_length() == 32  # nothing known: a whole dispatch (it may compile)
    assert 0.01 <= _schedule._PACES[key] < 0.03  # kept (an upper bound while cold)
    _schedule._PACES[key] = 0.05
    assert 1 <= first_length() <= 8  # its share of 0.5 s at 50 ms a step
    assert 0.01 <= _schedule._PACES[key] < 0.03  # measured again
    _schedule._PACES[key] = 10.0
    assert first_length() == 1  # the paint's first dispatch runs at least one step
