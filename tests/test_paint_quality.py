"""dp.paint's over-complete painting: extra shapes, then the least useful removed."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffprims as dp
from diffprims._paint._placement import remove, usefulness
from diffprims._paint._schedule import FINAL_SHARE, Budget, plan_rounds, with_removal

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
    removed, now = remove(model, target, weights, active, 2, 1)
    gone = set(np.nonzero(np.asarray(active & ~now))[0].tolist())
    assert gone == expected and int(now.sum()) == 3
    # Removed shapes are invisible: the picture is that of the shapes kept.
    kept = jnp.array(sorted(set(range(6)) - gone))
    np.testing.assert_allclose(
        removed.render_image((12, 12)), model.take(kept).render_image((12, 12)), atol=1e-5
    )
    # Every restart removes its own least useful shapes.
    both = jax.vmap(lambda _: model)(jnp.arange(2))
    _, per_restart = remove(both, target, weights, jnp.stack([active, active]), 2, 1)
    np.testing.assert_array_equal(per_restart[1], now)


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
    plain = Budget(plan, 13, steps=100, seconds=None, reserve=0.0, start=0.0, final=0.4)
    # No removal round: shares in proportion to the shapes each round fits.
    np.testing.assert_allclose(plain.share, [4 / 13 * 0.5 + 0.125] + [3 / 13 * 0.5 + 0.125] * 3)


@pytest.mark.parametrize("restarts", [1, 2])
def test_paint_with_extra_shapes_returns_n(restarts, getkey):
    target, key = _target(getkey(), 20), getkey()
    result = dp.paint(target, 6, key=key, steps=60, rounds=2, extra=0.5, restarts=restarts)
    assert result.model.num_shapes == 6
    assert all(m.num_shapes == 6 for m in result.snapshots)
    assert len(result.snapshots) == 3  # two rounds that add, one that removes
    assert tree_allclose(result.snapshots[-1], result.model)
    assert np.all(result.model.opacities > 1e-3)  # every shape kept is a painted one
    flat = float(dp.psnr(jnp.broadcast_to(target.mean((0, 1)), target.shape), target))
    assert float(dp.psnr(result.model.render_image((20, 20)), target)) > flat + 3.0


def test_no_extra_shapes_is_the_plain_paint(getkey):
    target, key = _target(getkey()), getkey()
    plain = dp.paint(target, 5, key=key, steps=30, rounds=2, extra=0.0)
    assert len(plain.snapshots) == 2
    # Depth compositing has no usefulness ranking: it paints exactly n.
    depth = dp.paint(target, 5, key=key, steps=30, rounds=2, extra=0.5, compositing="depth")
    assert depth.model.num_shapes == 5 and len(depth.snapshots) == 2


@pytest.mark.parametrize("value", [-0.1, float("nan")])
def test_extra_must_be_a_non_negative_fraction(value, getkey):
    with pytest.raises(ValueError, match="extra"):
        dp.paint(np.zeros((8, 8, 3), np.float32), 3, key=getkey(), steps=2, extra=value)
