"""`paint` and `fit` on inputs the tuning photos never had: odd sizes, few shapes, one round."""

import jax
import jax.numpy as jnp
import numpy as np

import diffprims as dp


def _noise(key, shape=(16, 16, 3)):
    """Uniform noise: blurring it changes it by almost all of its variance (1/12)."""
    return jax.random.uniform(key, shape)


def test_a_single_round_fits_the_sharp_target(getkey):
    """One round is the first and the last: it fits the target itself, not the blurred
    first-round target (n=1 paints a single round; so does rounds=1 without spares)."""
    target = _noise(getkey())
    for n, knobs in ((1, {}), (4, {"rounds": 1, "extra": 0.0})):
        result = dp.paint(target, n, key=getkey(), steps=10, solve_colours=False, **knobs)
        error = float(jnp.mean((result.model.render_image((16, 16)) - target) ** 2))
        # Against the 3-pixel blur of noise the loss was ~0.002, a tenth of this error.
        assert float(np.mean(result.losses[-3:])) > 0.5 * error
