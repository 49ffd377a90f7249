"""paint's seeding: the closed-form score of every pixel and size, and the picks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffprims._paint._placement import _pick, seed_scores


def _brute_force(pred, goal, weights, half, opacity, row, col):
    """The fall in weighted squared error when the square of half-width `half` around
    (row, col) is painted with `opacity` and the best clipped colour, by hand."""
    h, w, _ = goal.shape
    rows = slice(max(row - half, 0), min(row + half + 1, h))
    cols = slice(max(col - half, 0), min(col + half + 1, w))
    p, g, wt = pred[rows, cols], goal[rows, cols], weights[rows, cols]
    residual = g - (1 - opacity) * p
    colour = np.clip(np.sum(wt * residual, (0, 1)) / (opacity * np.sum(wt)), 0.02, 0.98)
    before = np.sum(wt * (g - p) ** 2)
    after = np.sum(wt * (g - (1 - opacity) * p - opacity * colour) ** 2)
    return before - after, colour


@pytest.mark.parametrize("opacity", [0.5, 1.0])
def test_seed_scores_match_painting_the_square(opacity, getkey):
    k1, k2, k3 = jax.random.split(getkey(), 3)
    pred = jax.random.uniform(k1, (9, 11, 3))
    goal = jax.random.uniform(k2, (9, 11, 3))
    weights = jax.random.uniform(k3, (9, 11, 1), minval=0.5, maxval=2.0)
    radii = jnp.array([0.6, 1.7, 3.0])  # squares of half-width 0, 1 and 2
    scores, colours = seed_scores(pred, goal, weights, radii, jnp.float32(opacity))
    assert scores.shape == (3, 9, 11) and colours.shape == (3, 9, 11, 3)
    for s, half in enumerate([0, 1, 2]):
        for row, col in [(0, 0), (4, 5), (8, 10), (2, 9)]:  # corners and edges cut the square
            want, colour = _brute_force(
                *map(np.asarray, (pred, goal, weights)), half, opacity, row, col
            )
            np.testing.assert_allclose(scores[s, row, col], want, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(colours[s, row, col], colour, atol=1e-5)


def test_seed_scores_are_zero_where_the_picture_is_right():
    image = jnp.full((6, 6, 3), 0.4)
    scores, colours = seed_scores(image, image, jnp.ones((6, 6, 1)), jnp.array([1.0]), 0.7)
    np.testing.assert_allclose(scores, 0.0, atol=1e-5)
    np.testing.assert_allclose(colours, 0.4, atol=1e-5)


def test_pick_takes_the_best_first_and_keeps_its_radius_clear():
    scores = jnp.zeros((10, 10)).at[2, 3].set(5.0).at[2, 4].set(4.0).at[7, 7].set(3.0)
    radii = jnp.full((100,), 1.5)
    picks = _pick(scores, radii, 3)
    rows, cols = np.divmod(np.asarray(picks), 10)
    assert (rows[0], cols[0]) == (2, 3)
    assert (rows[1], cols[1]) == (7, 7)  # (2, 4) lies within 1.5 pixels of the first
    distances = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
    assert np.all(distances[np.triu_indices(3, 1)] > 1.5)
