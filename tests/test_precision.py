"""Models and losses in other precisions: half-precision parameters, and float64 mode.

Models cast to bfloat16/float16 (a mixed-precision policy) render and fit in float32, as
half-precision targets do; under `jax_enable_x64` (run in a subprocess) float32 losses
stay float32 and float64 hyperparameters do not promote float32 parameters.
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp

KEY = jax.random.key(0)
TARGET = jax.random.uniform(jax.random.key(1), (12, 12, 3))


def _cast(model, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, model)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("n", [3, 9])
def test_half_precision_shape_sets_render_in_float32(dtype, n):
    model = dp.Circles.init(n, key=KEY, target=TARGET)
    half = _cast(model, dtype)
    image = half.render_image((12, 12))
    assert image.dtype == jnp.float32
    np.testing.assert_allclose(image, _cast(half, jnp.float32).render_image((12, 12)))
    values = half.render(jnp.full((5, 2), 0.5, dtype), pixel_size=0.1)
    assert values.dtype == jnp.float32


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_models_fit_in_float32(dtype):
    circles = dp.Circles.init(3, key=KEY, target=TARGET)
    layers = dp.Layers([circles, dp.Rectangles.init(2, key=KEY, target=TARGET)])
    kernel = dp.kernels.disk(5)
    bank = dp.SeparableFilters.from_svd(kernel, rank=2)
    for model, target in ((circles, TARGET), (layers, TARGET), (bank, kernel[..., None])):
        expected = dp.fit(_cast(_cast(model, dtype), jnp.float32), target, steps=3)
        result = dp.fit(_cast(model, dtype), target, steps=3)
        params = jax.tree.leaves(eqx.filter(result.model, eqx.is_inexact_array))
        assert all(x.dtype == jnp.float32 for x in params)
        np.testing.assert_array_equal(result.losses, expected.losses)


_X64_SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax
    import diffprims as dp

    out = {}
    pred = jnp.linspace(0.0, 1.0, 48, dtype=jnp.float32).reshape(4, 4, 3)
    target = pred[::-1]
    weights = jnp.ones((4, 4), jnp.float32)
    for name, loss in {
        "sum": dp.L2() + dp.L1(),
        "scaled sum": dp.L2() + 2.0 * dp.L1(),
        "weighted": dp.Weighted(dp.L2(), weights) + dp.NonNegative(),
    }.items():
        out[f"{name} float32"] = str(loss(pred, target).dtype)
        out[f"{name} float64"] = str(loss(pred.astype(jnp.float64), target).dtype)

    image = jnp.linspace(0.0, 1.0, 8 * 8 * 3, dtype=jnp.float32).reshape(8, 8, 3)
    model = dp.Circles.init(3, key=jax.random.key(0), target=image)
    rates = jnp.array([1e-2, 2e-2])  # float64 under x64
    for name, make in {
        "adam": optax.adam,
        "inject": lambda lr: optax.inject_hyperparams(optax.adam)(learning_rate=lr),
    }.items():
        result = jax.vmap(lambda lr: dp.fit(model, image, optimizer=make(lr), steps=2))(rates)
        out[f"vmap {name}"] = str(result.model.raw_centres.dtype)
    out["draws"] = _draws(dp, image)
    print(json.dumps(out))
    """
)


def _draws(dp, image):
    """What a key draws: every shape type's `init`, and a minibatched fit's pixels."""
    import jax.numpy as jnp

    key = jax.random.key(0)
    shapes = [dp.Circles, dp.Ellipses, dp.Gaussians, dp.Rectangles, dp.Triangles]
    out = {c.__name__: jax.tree.leaves(c.init(4, key=key, target=image)) for c in shapes}
    model = dp.Circles.init(4, key=key, target=image)
    for sampling in ("uniform", "stratified"):
        fitted = dp.fit(model, image, steps=3, batch=0.5, sampling=sampling, key=key)
        out[sampling] = fitted.losses
    return {k: [float(jnp.sum(jnp.abs(x))) for x in jax.tree.leaves(v)] for k, v in out.items()}


def test_float64_mode_keeps_float32_losses_and_parameters():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, "-c", inspect.getsource(_draws) + _X64_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for name in ("sum", "scaled sum", "weighted"):
        assert out[f"{name} float32"] == "float32", out
        assert out[f"{name} float64"] == "float64", out
    assert out["vmap adam"] == out["vmap inject"] == "float32", out
    # a key draws the same shapes and pixels whether x64 is on or not
    image = jnp.linspace(0.0, 1.0, 8 * 8 * 3, dtype=jnp.float32).reshape(8, 8, 3)
    for name, values in _draws(dp, image).items():
        np.testing.assert_allclose(out["draws"][name], values, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("method", ["scan", "tiled"])
def test_float32_and_float64_parameters_render_together_under_x64(method):
    # A float64 leaf beside float32 ones (a NumPy array put into a model) broke the
    # renderers' loops: "carry input and carry output must have equal types".
    with jax.enable_x64(True):
        single = dp.Circles.from_values([[0.5, 0.5]], [0.2], [[1.0, 0.0, 0.0]], [1.0])
        model = eqx.tree_at(lambda m: m.raw_centres, single, np.asarray(single.raw_centres, float))
        image = model.render_image((8, 8), method=method)
        points = model.render(jnp.full((3, 2), 0.5), pixel_size=0.1, method=method)
        assert image.dtype == points.dtype == jnp.float64
        np.testing.assert_allclose(image, single.render_image((8, 8), method=method), atol=1e-6)


@pytest.mark.parametrize("method", ["scan", "tiled"])
def test_a_float64_set_renders_its_grid_in_float64(method):
    # The scan's grid points were float32 (`render` casts them): the image was 8e-9 off
    # `render`'s, and float64 finite differences through it fell apart below 1e-4.
    with jax.enable_x64(True):
        image = jnp.linspace(0.0, 1.0, 16 * 16 * 3, dtype=jnp.float64).reshape(16, 16, 3)
        model = _cast(dp.Circles.init(12, key=jax.random.key(0), target=image), jnp.float64)
        points = dp.pixel_centres((16, 16)).reshape(-1, 2)
        grid = model.render_image((16, 16), method=method).reshape(-1, 3)
        np.testing.assert_array_equal(grid, model.render(points, pixel_size=1 / 16, method="scan"))


def test_ssim_of_float32_images_is_float32_under_x64():
    # dm-pix widened it to float64, and with it any sum holding it.
    with jax.enable_x64(True):
        image = jnp.linspace(0.0, 1.0, 16 * 16 * 3, dtype=jnp.float32).reshape(16, 16, 3)
        assert dp.SSIM()(image, image * 0.5).dtype == jnp.float32
        assert (dp.L2() + 0.1 * dp.SSIM())(image, image * 0.5).dtype == jnp.float32
        assert dp.SSIM()(image.astype(jnp.float64), image).dtype == jnp.float64


def test_a_float64_fit_gives_its_optimizer_the_float64_loss():
    # The optimizer's update was traced with a float32 `value`, and a float64 fit's loss
    # reached it rounded (`reduce_on_plateau` saw plateaus float64 did not have).
    def update(updates, state, params=None, *, value, **extra):
        below_float32 = value - value.astype(jnp.float32).astype(value.dtype)
        return jax.tree.map(lambda g: jnp.zeros_like(g) + 1e6 * below_float32, updates), state

    optimizer = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
    with jax.enable_x64(True):
        image = jnp.linspace(0.0, 1.0, 8 * 8 * 3, dtype=jnp.float64).reshape(8, 8, 3)
        model = _cast(dp.Circles.init(3, key=jax.random.key(0), target=image), jnp.float64)
        result = dp.fit(model, image, optimizer=optimizer, steps=2)
        assert result.losses.dtype == jnp.float64
        assert float(jnp.abs(result.model.raw_radii - model.raw_radii).max()) > 0


def test_a_float64_loss_weight_stays_float64_under_x64():
    # It was cut to float32 eagerly but not when traced: eager and jitted float64 fits
    # differed by 3e-10 a step, and finite differences of a weight disagreed with grad.
    script = (
        "import jax; jax.config.update('jax_enable_x64', True)\n"
        "import jax.numpy as jnp, diffprims as dp\n"
        "loss = dp.L2() + jnp.float64(0.1) * dp.L1()\n"
        "p = jnp.full((4, 4, 3), 0.3, jnp.float64); t = jnp.zeros((4, 4, 3), jnp.float64)\n"
        "assert loss.terms[1].weight.dtype == jnp.float64\n"
        "assert float(loss(p, t)) == float(jnp.mean(p**2) + 0.1 * jnp.mean(jnp.abs(p)))\n"
        "assert (2.0 * dp.L1()).weight.dtype == jnp.float32  # a number keeps float32 losses\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
