"""Degenerate input keeps values and gradients finite; a diverging fit stops cleanly.

Every exported shape type and loss is swept (found by introspection, so new ones are
covered without touching this file). Gradients of the sum of every loss are checked: a
sum is finite only if every term is, so one gradient covers all losses at once.
"""

from __future__ import annotations

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

from .helpers import shape_types

KEY = jax.random.key(0)
SIZE = 8  # image side; losses with a window (SSIM) get a 3-pixel one

SHAPE_TYPES = shape_types()
MODES = ("over", "additive", "depth")


def every_loss(size: int) -> list[dp.AbstractLoss]:
    """One instance of every exported loss that works on `size` x `size` images."""
    losses: list[dp.AbstractLoss] = []
    for name in sorted(dir(dp)):
        cls = getattr(dp, name)
        if not (
            isinstance(cls, type)
            and issubclass(cls, dp.AbstractLoss)
            and not inspect.isabstract(cls)
        ):
            continue
        if cls is dp.Weighted:
            losses.append(
                dp.Weighted(dp.L2(), jnp.linspace(0.0, 2.0, size * size).reshape(size, size))
            )
        elif cls is dp.Scaled:
            losses.append(dp.Scaled(0.5, dp.L1()))
        elif cls is dp.Sum:
            continue  # every loss below is summed anyway
        elif cls is dp.Loss:
            losses.append(dp.Loss(lambda pred, target: jnp.mean(jnp.abs(pred - target) ** 1.5)))
        else:
            params = inspect.signature(cls).parameters
            kwargs = {"filter_size": 3} if "filter_size" in params else {}
            try:
                losses.append(cls(**kwargs))
            except TypeError:  # needs arguments we do not know; say so loudly
                raise AssertionError(f"test_degenerate does not know how to build {cls}") from None
    return losses


def loss_sum(size: int) -> dp.AbstractLoss:
    return sum(every_loss(size), dp.L2())


def test_every_loss_is_swept():
    names = {type(loss).__name__ for loss in every_loss(SIZE)}
    assert {"L2", "L1", "NonNegative", "KeepZeros", "Weighted", "Scaled"} <= names


def all_finite(tree) -> bool:
    return all(
        bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))
    )


@eqx.filter_jit
def _value_and_grad(model, target, loss):
    def objective(model):
        return loss(model.render_image(target.shape[:2]), target)

    return eqx.filter_value_and_grad(objective)(model)


def check_finite_grads(model, target, loss=None):
    # Every loss is checked through the renderer in `test_degenerate_geometry`; the other
    # sweeps use a cheap pair (each loss's own degenerate inputs are tested further down).
    loss = dp.L2() + dp.L1() if loss is None else loss
    value, grads = _value_and_grad(model, target, loss)
    assert bool(jnp.isfinite(value)), value
    assert all_finite(grads), grads
    image = model.render_image(target.shape[:2])
    assert bool(jnp.all(jnp.isfinite(image)))


# -- building degenerate shape sets of any type ------------------------------------------


def _geometry_names(cls) -> list[str]:
    names = list(inspect.signature(cls.from_values).parameters)
    return names[: names.index("colours")]


def _degenerate(cls, how: str, n: int = 3):
    """A set of `cls` whose shapes are degenerate in the way `how` names."""
    model = cls.init(n, key=KEY)
    values = {name: np.array(getattr(model, name)) for name in _geometry_names(cls)}
    colours = np.array(model.colours)
    opacities = np.array(model.opacities)
    for name, value in values.items():
        if how == "zero-size" and name in ("radii", "half_sizes", "scales"):
            values[name] = np.zeros_like(value)
        elif how == "zero-size" and name == "vertices":
            values[name] = np.broadcast_to(value.mean(axis=1, keepdims=True), value.shape).copy()
        elif how == "vanishing-size" and name in ("radii", "half_sizes", "scales"):
            values[name] = np.full_like(value, 1e-30)  # a stored log far below a pixel
        elif how == "vanishing-size" and name == "vertices":
            middle = value.mean(axis=1, keepdims=True)
            values[name] = (middle + 1e-30 * (value - middle)).astype(value.dtype)
        elif how == "far-outside" and name in ("centres", "vertices"):
            values[name] = value + 1e3
        elif how == "far-outside-negative" and name in ("centres", "vertices"):
            values[name] = value - 1e3
        elif how == "at-pixel-centre" and name == "centres":
            values[name] = np.full_like(value, 0.5 / SIZE)  # exactly pixel (0, 0)'s centre
        elif how == "at-pixel-centre" and name == "vertices":
            values[name][:, 0] = 0.5 / SIZE
        elif how == "coincident" and name in ("centres", "vertices"):
            values[name] = np.broadcast_to(value[:1], value.shape).copy()
    if how == "opacity-0-1":
        opacities = np.array([0.0, 1.0, 1.0][:n] + [0.0] * max(0, n - 3), np.float32)
        colours[0] = 0.0
        colours[-1] = 1.0
    try:
        return cls.from_values(*values.values(), colours, opacities)
    except ValueError:
        # A type that refuses exactly-zero sizes: the smallest it takes must be fine.
        if how != "zero-size":
            raise
        tiny = {k: np.where(v == 0, 1e-12, v) for k, v in values.items()}
        return cls.from_values(*tiny.values(), colours, opacities)


CASES = [
    "zero-size",
    "vanishing-size",
    "far-outside",
    "far-outside-negative",
    "at-pixel-centre",
    "coincident",
    "opacity-0-1",
]
TARGET = jax.random.uniform(jax.random.key(1), (SIZE, SIZE, 3))


@pytest.mark.parametrize("how", CASES)
@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=lambda cls: cls.__name__)
def test_degenerate_geometry(cls, how):
    check_finite_grads(_degenerate(cls, how), TARGET, loss_sum(SIZE))


@pytest.mark.parametrize("mode", [mode for mode in MODES if mode != "over"])  # "over": above
@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=lambda cls: cls.__name__)
def test_degenerate_every_compositing_mode(cls, mode):
    for how in ("zero-size", "opacity-0-1"):
        check_finite_grads(_degenerate(cls, how).with_compositing(mode), TARGET)


@pytest.mark.parametrize("softness", [1e-6, 1e6])
@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=lambda cls: cls.__name__)
def test_extreme_softness(cls, softness):
    check_finite_grads(cls.init(3, key=KEY, softness=softness), TARGET)


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=lambda cls: cls.__name__)
def test_samples_exactly_at_shape_points(cls):
    # render() at points that coincide with the geometry (centres, vertices) themselves.
    model = cls.init(3, key=KEY)
    points = jnp.concatenate(
        [jnp.asarray(getattr(model, name)).reshape(-1, 2) for name in _geometry_names(cls)
         if name in ("centres", "vertices")]
    )  # fmt: skip
    assert points.shape[0] > 0

    def objective(model):
        return jnp.sum(model.render(points, pixel_size=1.0 / SIZE))

    grads = jax.grad(objective)(model)
    assert all_finite(grads)


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=lambda cls: cls.__name__)
def test_one_shape_one_pixel_flat_target(cls):
    one = cls.init(1, key=KEY)
    pixel = jnp.full((1, 1, 3), 0.5)
    # Window losses (SSIM) rightly refuse a 1x1 image; every other loss must cope.
    pointwise = [loss for loss in every_loss(1) if not hasattr(loss, "filter_size")]
    check_finite_grads(one, pixel, loss=sum(pointwise, dp.L2()))
    flat = jnp.full((SIZE, SIZE, 3), 0.25)
    check_finite_grads(one, flat)
    result = dp.fit(one, pixel, steps=3)
    assert all_finite(result.model) and bool(jnp.all(jnp.isfinite(result.losses)))


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=lambda cls: cls.__name__)
def test_all_zero_and_all_one_targets(cls):
    model = cls.init(3, key=KEY)
    for value in (0.0, 1.0):
        check_finite_grads(model, jnp.full((SIZE, SIZE, 3), value), loss_sum(SIZE))


# -- losses alone: prediction-level degenerate cases ------------------------------------


@pytest.mark.parametrize("loss", every_loss(SIZE), ids=lambda loss: type(loss).__name__)
@pytest.mark.parametrize(
    "pred, target",
    [
        (jnp.zeros((SIZE, SIZE, 3)), jnp.zeros((SIZE, SIZE, 3))),  # all-zero, exact match
        (jnp.full((SIZE, SIZE, 3), 0.3), jnp.zeros((SIZE, SIZE, 3))),  # all-zero target
        (jnp.full((SIZE, SIZE, 3), 0.3), jnp.full((SIZE, SIZE, 3), 0.3)),  # flat, equal
        (jnp.ones((SIZE, SIZE, 3)), jnp.full((SIZE, SIZE, 3), 0.7)),  # flat, different
        (jnp.full((SIZE, SIZE, 3), -1e-3), jnp.zeros((SIZE, SIZE, 3))),  # just negative
    ],
    ids=["zeros-equal", "zero-target", "flat-equal", "flat", "slightly-negative"],
)
def test_loss_finite_value_and_grad(loss, pred, target):
    value, grad = jax.value_and_grad(loss)(pred, target)
    assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad)))
    # and the same under jit
    value, grad = jax.jit(jax.value_and_grad(loss))(pred, target)
    assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.parametrize("loss", every_loss(SIZE), ids=lambda loss: type(loss).__name__)
def test_loss_is_zero_or_finite_on_all_zero_images(loss):
    zeros = jnp.zeros((SIZE, SIZE, 3))
    value = loss(zeros, zeros)
    assert bool(jnp.isfinite(value))
    assert float(value) == pytest.approx(0.0, abs=1e-6)


# -- a fit that diverges stops with a clear error and keeps the last finite model -------


def _poisoned(at: int) -> optax.GradientTransformation:
    """Adam whose updates turn NaN from optimizer step `at` on."""

    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, count, params=None):
        del params
        bad = count >= at
        return jax.tree.map(lambda u: jnp.where(bad, jnp.nan, u), updates), count + 1

    return optax.chain(optax.adam(1e-2), optax.GradientTransformation(init, update))


def test_fit_divergence_stops_with_last_finite_model():
    model = dp.Circles.init(4, key=KEY, target=TARGET)
    with pytest.raises(dp.FitDivergedError) as info:
        dp.fit(model, TARGET, optimizer=_poisoned(7), steps=20, steps_per_dispatch=5)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.step == 7 and "step 7" in str(error)
    assert error.result.losses.shape == (7,)
    assert bool(jnp.all(jnp.isfinite(error.result.losses)))
    assert all_finite(error.result.model)
    # The kept model is exactly the one 7 clean steps give.
    clean = dp.fit(model, TARGET, optimizer=_poisoned(10**9), steps=7, steps_per_dispatch=5)
    for a, b in zip(jax.tree.leaves(clean.model), jax.tree.leaves(error.result.model)):
        np.testing.assert_array_equal(a, b)


def test_fit_divergence_from_a_nan_loss():
    # The loss itself turns NaN once the prediction gets close enough to the target.
    model = dp.Circles.init(4, key=KEY, target=TARGET)
    start = float(dp.L2()(model.render_image(TARGET.shape[:2]), TARGET))

    def fragile(pred, target):
        mse = jnp.mean((pred - target) ** 2)
        return jnp.sqrt(mse - 0.999 * start) + mse  # NaN once mse < 0.999 * start

    with pytest.raises(dp.FitDivergedError) as info:
        dp.fit(model, TARGET, loss=fragile, optimizer=optax.adam(0.05), steps=200)
    assert 0 < info.value.step < 200
    assert all_finite(info.value.result.model)


def test_a_divergence_at_the_first_step_points_at_the_model_not_the_learning_rate():
    # A NaN gradient at the starting model (a user shape's coverage at a point on its
    # centre did this in `paint`) was blamed on the learning rate.
    model = dp.Circles.init(4, key=KEY, target=TARGET)

    def nan_gradient(pred, target):  # finite (the L2 loss), its gradient NaN: sqrt'(0)
        return jnp.mean(jnp.sqrt(pred - pred)) + jnp.mean((pred - target) ** 2)

    with pytest.raises(dp.FitDivergedError, match="starting model") as info:
        dp.fit(model, TARGET, loss=nan_gradient, steps=5)
    assert info.value.step == 0 and "Lower the learning rate" not in str(info.value)
    with pytest.raises(dp.FitDivergedError, match="learning rate") as later:
        dp.fit(model, TARGET, optimizer=_poisoned(3), steps=8, steps_per_dispatch=4)
    assert later.value.step == 3


def test_fit_divergence_under_jit_freezes_model():
    model = dp.Circles.init(4, key=KEY, target=TARGET)
    fit = eqx.filter_jit(
        lambda t: dp.fit(model, t, optimizer=_poisoned(7), steps=20, steps_per_dispatch=5)
    )
    result = fit(TARGET)
    losses = np.asarray(result.losses)
    assert np.all(np.isfinite(losses[:7])) and np.all(np.isnan(losses[7:]))
    assert all_finite(result.model)


# -- float64 mode ------------------------------------------------------------------------

_X64_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import tests.test_degenerate as t
    import diffprims as dp

    out = {}
    target = jnp.asarray(t.TARGET, jnp.float64)
    points = np.random.default_rng(0).uniform(size=(7, 2))  # float64
    for cls in t.SHAPE_TYPES:
        name = cls.__name__
        model = t._degenerate(cls, "zero-size")
        value, grads = t._value_and_grad(model, target, dp.L2() + dp.L1())
        out[f"{name}-zero-size"] = bool(jnp.isfinite(value)) and t.all_finite(grads)
        model64 = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x,
                               t._degenerate(cls, "at-pixel-centre"))
        value, grads = t._value_and_grad(model64, target, dp.L2())
        out[f"{name}-float64-params"] = (
            bool(jnp.isfinite(value)) and t.all_finite(grads) and value.dtype == jnp.float64
        )
        out[f"{name}-float64-points"] = t.all_finite(model.render(points, pixel_size=0.1))
        result = dp.fit(cls.init(2, key=t.KEY), target, steps=2)
        out[f"{name}-fit"] = t.all_finite(result.model) and bool(
            jnp.all(jnp.isfinite(result.losses))
        )
    import warnings
    with warnings.catch_warnings(record=True) as caught:  # JAX: an error in releases to come
        warnings.simplefilter("always")
        dp.paint(target, 3, key=t.KEY, steps=4)
    out["paint-no-unsafe-casts"] = not [w for w in caught if "cast" in str(w.message)]
    print(json.dumps(out))
    """
)


def test_float64_mode():
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    # The tests are a package (they share tests/helpers.py): import them from its parent.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run(
        [sys.executable, "-c", _X64_SCRIPT, here],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(results) == 4 * len(SHAPE_TYPES) + 1
    assert all(results.values()), {k: v for k, v in results.items() if not v}


def test_values_at_the_ends_of_their_range_still_get_gradients():
    # A network that outputs opacities of exactly 1 (or clipped colours, a radius of 0)
    # got exactly zero gradients from `from_values`: the clip to finite parameters.
    centres = jnp.array([[0.5, 0.5], [0.2, 0.3]])

    def mean_pixel(colours, opacities, background, radii):
        model = dp.Circles.from_values(
            centres=centres, radii=radii, colours=colours, opacities=opacities,
            background=background,
        )  # fmt: skip
        return model.render_image((16, 16)).mean()

    def grads(end, inside, radius):
        colours = jnp.array([[end, inside, inside], [inside, end, end]])
        args = (
            colours,
            jnp.full((2,), end),
            jnp.array([end, inside, end]),
            jnp.array([radius, 0.2]),
        )
        return jax.grad(mean_pixel, argnums=(0, 1, 2, 3))(*args)

    at_the_ends = grads(1.0, 0.0, 0.0)
    just_inside = grads(1.0 - 1e-3, 1e-3, 1e-4)
    for end, inside in zip(at_the_ends, just_inside):
        assert np.all(np.abs(end) > 0)
        np.testing.assert_allclose(end, inside, rtol=0.1)
