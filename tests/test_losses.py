"""Losses: exact formulas, the algebra of `+` and `*`, per-pixel weights."""

import itertools
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp
from diffprims._loss_checks import restrict_to_pixels

from .helpers import pointwise_losses

FORMULAS = {
    "L2": lambda p, t: np.mean((p - t) ** 2),
    "L1": lambda p, t: np.mean(np.abs(p - t)),
    "NonNegative": lambda p, t: np.mean(np.maximum(-p, 0.0)),
    "KeepZeros": lambda p, t: np.mean((t == 0) * np.abs(p)),
}


def _pair(key, shape=(6, 5, 3)):
    k1, k2 = jax.random.split(key)
    pred = jax.random.normal(k1, shape)
    target = jnp.where(jax.random.uniform(k2, shape) < 0.3, 0.0, jax.random.uniform(k2, shape))
    return pred, target


@pytest.mark.parametrize("loss", pointwise_losses(), ids=lambda loss: type(loss).__name__)
def test_formula(loss, getkey):
    pred, target = _pair(getkey())
    expected = FORMULAS[type(loss).__name__](np.asarray(pred), np.asarray(target))
    np.testing.assert_allclose(loss(pred, target), expected, rtol=1e-6)
    assert loss(pred, target).shape == ()


def _all_losses(key):
    weights = jax.random.uniform(key, (6, 5))
    return pointwise_losses() + [
        dp.Weighted(dp.L2(), weights),
        dp.L1() + 2.0 * dp.NonNegative(),
        lambda p, t: jnp.max(jnp.abs(p - t)),  # a user-written loss
    ]


@pytest.mark.parametrize("i, j", list(itertools.product(range(7), repeat=2)))
def test_algebra_is_linear(i, j, getkey):
    losses = _all_losses(getkey())
    a, b = losses[i], losses[j]
    pred, target = _pair(getkey())
    left = a if isinstance(a, dp.AbstractLoss) else dp.L2() * 0.0 + a
    combined = left + 2.0 * (b if isinstance(b, dp.AbstractLoss) else dp.L2() * 0.0 + b)
    expected = a(pred, target) + 2.0 * b(pred, target)
    np.testing.assert_allclose(combined(pred, target), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(combined, dp.AbstractLoss)


def test_more_algebra(getkey):
    pred, target = _pair(getkey())
    l2, l1 = dp.L2()(pred, target), dp.L1()(pred, target)
    np.testing.assert_allclose((dp.L2() - dp.L1())(pred, target), l2 - l1, rtol=1e-6)
    np.testing.assert_allclose((dp.L2() / 4)(pred, target), l2 / 4, rtol=1e-6)
    np.testing.assert_allclose(sum([dp.L2(), dp.L1()])(pred, target), l2 + l1, rtol=1e-6)
    np.testing.assert_allclose((dp.L2() * 3.0)(pred, target), 3 * l2, rtol=1e-6)
    total = dp.L2() + 10.0 * dp.NonNegative() + 5.0 * dp.KeepZeros()
    assert isinstance(total, dp.Sum) and len(total.terms) == 3  # sums stay flat


def test_user_function_joins_a_sum(getkey):
    pred, target = _pair(getkey())

    def peak(p, t):
        return jnp.max(jnp.abs(p - t))

    total = dp.L2() + peak
    np.testing.assert_allclose(total(pred, target), dp.L2()(pred, target) + peak(pred, target))
    total = peak + dp.L2()
    np.testing.assert_allclose(total(pred, target), dp.L2()(pred, target) + peak(pred, target))


def test_weighted(getkey):
    pred, target = _pair(getkey())
    ones = dp.Weighted(dp.L2(), jnp.ones((6, 5)))
    np.testing.assert_allclose(ones(pred, target), dp.L2()(pred, target), rtol=1e-6)
    weights = jax.random.uniform(getkey(), (6, 5))
    expected = np.mean(
        np.asarray(weights)[..., None] * (np.asarray(pred) - np.asarray(target)) ** 2
    )
    np.testing.assert_allclose(dp.Weighted(dp.L2(), weights)(pred, target), expected, rtol=1e-5)


def test_weights_follow_sampled_pixels(getkey):
    pred, target = _pair(getkey())
    weights = jax.random.uniform(getkey(), (6, 5, 1))
    loss = dp.L1() + 3.0 * dp.Weighted(dp.L2(), weights)
    indices = jnp.array([0, 7, 29, 7])
    flat = lambda x: x.reshape(-1, x.shape[-1])[indices]  # noqa: E731
    sampled = restrict_to_pixels(loss, indices)
    expected = dp.L1()(flat(pred), flat(target)) + 3.0 * jnp.mean(
        flat(weights) * (flat(pred) - flat(target)) ** 2
    )
    np.testing.assert_allclose(sampled(flat(pred), flat(target)), expected, rtol=1e-6)


def test_losses_jit_and_grad(getkey):
    pred, target = _pair(getkey())
    loss = dp.L2() + 10.0 * dp.NonNegative() + 5.0 * dp.KeepZeros()
    value = jax.jit(lambda p, t: loss(p, t))(pred, target)
    np.testing.assert_allclose(value, loss(pred, target), rtol=1e-6)
    grads = jax.grad(loss)(pred, target)
    assert bool(jnp.all(jnp.isfinite(grads)))


def test_all_zero_target_is_stable():
    zeros = jnp.zeros((4, 4, 1))
    loss = dp.L2() + dp.L1() + dp.NonNegative() + dp.KeepZeros()
    grads = jax.grad(loss)(zeros, zeros)
    assert float(loss(zeros, zeros)) == 0.0 and bool(jnp.all(jnp.isfinite(grads)))


def test_bad_compositions():
    with pytest.raises(TypeError, match="pointwise"):
        dp.Weighted(dp.L2() + dp.L1(), jnp.ones((2, 2)))  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="scaled by a number"):
        dp.L2() * dp.L1()
    with pytest.raises(TypeError, match=r"dp\.L2\(\)"):
        dp.L2() + dp.L2  # the class, not an instance
    with pytest.raises(TypeError, match=r"^the right-hand side of `\+` .* `dp\.L1\(\)` \(an in"):
        dp.L2() + dp.L1  # the class it was given, named (it said `dp.L2()` whatever it got)
    with pytest.raises(ValueError, match="weights"):
        dp.Weighted(dp.L2(), -jnp.ones((2, 2)))


@pytest.mark.parametrize(
    "weights, shape",
    [
        ((3, 3), (3, 3)),  # an (H, W) map for (P, C) values
        ((3, 4), (4, 1)),  # P matches H by chance
        ((6, 5, 3), (6, 5, 1)),  # more weight channels than colour channels
        ((6, 5, 2), (6, 5, 3)),  # channels neither 1 nor C
        ((6, 4), (6, 5, 3)),  # another grid
    ],
)
@pytest.mark.parametrize("jit", [False, True])
def test_weighted_refuses_mismatched_shapes(weights, shape, jit):
    loss = dp.Weighted(dp.L2(), jnp.ones(weights))
    call = jax.jit(lambda p, t: loss(p, t)) if jit else loss
    with pytest.raises(ValueError, match="one weight per pixel"):
        call(jnp.ones(shape), jnp.zeros(shape))


def test_nested_weighted_is_sampled_whole(getkey):
    pred, target = _pair(getkey())
    outer, inner = jax.random.uniform(getkey(), (6, 5)), jax.random.uniform(getkey(), (6, 5))
    loss = dp.Weighted(dp.Weighted(dp.L2(), inner), outer)
    indices = jnp.array([0, 7, 12, 29])
    flat = lambda x: x.reshape(-1, x.shape[-1])[indices]  # noqa: E731
    got = restrict_to_pixels(loss, indices)(flat(pred), flat(target))
    expected = jnp.mean(flat(outer[..., None] * inner[..., None] * (pred - target) ** 2))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("loss", [dp.L1(), dp.KeepZeros()], ids=["L1", "KeepZeros"])
def test_exact_match_is_a_stationary_point(loss):
    # JAX's |x| has gradient 1 at 0; the losses' minimum must not push away from itself.
    zeros = jnp.zeros((2, 2, 1))
    assert bool(jnp.all(jax.grad(loss)(zeros, zeros) == 0))


def test_sum_and_scaled_take_losses_only():
    with pytest.raises(TypeError, match="`terms` must be a loss"):
        dp.Sum((1, 2))
    with pytest.raises(TypeError, match="`loss` must be a loss"):
        dp.Scaled(2.0, 5)
    pred = jnp.ones((2, 2, 1))
    wrapped = dp.Sum([dp.L2(), lambda p, t: jnp.mean(p)])  # plain functions are wrapped
    assert float(wrapped(pred, pred)) == 1.0
    assert dp.L2() + 0 == dp.L2() and 0 + dp.L2() == dp.L2()


def test_edge_weights_checks_and_sweeps():
    target = jnp.full((6, 5, 3), 0.5).at[2:4].set(0.9)
    with pytest.raises(TypeError, match="`strength` must be a finite number"):
        dp.edge_weights(target, strength="1")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="`strength` must be >= 0"):
        dp.edge_weights(target, strength=-1.0)
    with pytest.raises(ValueError, match="`sigma` must be >= 0"):
        dp.edge_weights(target, sigma=-1.0)
    sweep = jax.vmap(lambda s: dp.edge_weights(target, strength=s))(jnp.array([0.0, 4.0]))
    np.testing.assert_allclose(sweep[0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(sweep[1], dp.edge_weights(target), rtol=1e-5)


@pytest.mark.parametrize("weights_shape", [(4, 5), (4, 5, 1), (4, 5, 3)])
@pytest.mark.parametrize("inner", [dp.L2(), dp.L1()], ids=lambda loss: type(loss).__name__)
def test_float64_weights_keep_the_inputs_dtype(weights_shape, inner):
    # Under jax_enable_x64, float64 weights made a float32 loss float64; the loss follows
    # the inputs, as an unweighted one does (and float64 inputs stay float64).
    with jax.enable_x64(True):
        pred = jnp.linspace(0.0, 1.0, 60, dtype=jnp.float32).reshape(4, 5, 3)
        target = pred[::-1]
        weights = jnp.linspace(0.5, 2.0, int(np.prod(weights_shape)), dtype=jnp.float64)
        loss = dp.Weighted(inner, weights.reshape(weights_shape))
        value = loss(pred, target)
        assert value.dtype == jnp.float32 == inner(pred, target).dtype
        grad = jax.grad(loss)(pred, target)
        assert grad.dtype == jnp.float32
        error = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
        error = error**2 if isinstance(inner, dp.L2) else np.abs(error)
        map_ = np.asarray(weights).reshape(weights_shape)
        expected = np.mean((map_[..., None] if map_.ndim == 2 else map_) * error)
        np.testing.assert_allclose(value, expected, rtol=1e-6)
        wide = (pred.astype(jnp.float64), target.astype(jnp.float64))
        assert loss(*wide).dtype == jnp.float64


def test_dividing_a_loss_stores_the_weight_multiplying_by_the_reciprocal_would():
    # Under jax_enable_x64, `L2() / 3` stored a float64 weight (a float32 loss came out
    # float64) where `L2() * (1 / 3)` stored float32, both printed as `0.33333334 * L2()`.
    with jax.enable_x64(True):
        pred = jnp.full((2, 2, 3), 0.25, jnp.float32)
        for divisor, reciprocal in [
            (3, 1 / 3),
            (3.0, 1 / 3),
            (np.float64(3.0), np.float64(1 / 3)),
            (np.float32(3.0), np.float32(1 / 3)),
            (jnp.asarray(3.0), jnp.asarray(1 / 3)),
        ]:
            divided, multiplied = dp.L2() / divisor, dp.L2() * reciprocal
            assert divided.weight.dtype == multiplied.weight.dtype, divisor
            np.testing.assert_allclose(divided.weight, multiplied.weight, rtol=1e-7)
            assert divided(pred, 0 * pred).dtype == multiplied(pred, 0 * pred).dtype
        assert (dp.L2() / 3)(pred, 0 * pred).dtype == jnp.float32


_P, _T = (jax.random.uniform(jax.random.key(i), (16, 16, 3)) for i in (10, 11))


@pytest.mark.parametrize(
    "call",
    [
        lambda v: dp.SSIM(max_value=v)(_P, _T),
        lambda v: dp.SSIM(filter_sigma=v)(_P, _T),
        lambda v: dp.edge_weights(_T, strength=v - 1.0),
        lambda v: dp.psnr(_P, _T, max_value=v),
    ],
    ids=["ssim max_value", "ssim filter_sigma", "edge_weights strength", "psnr max_value"],
)
def test_traced_settings_are_checked_when_run(call):
    # SSIM dropped its check's result, edge_weights skipped a traced strength, psnr had
    # none: 0 (or -1) under jit gave garbage or NaN.
    with pytest.raises(eqx.EquinoxRuntimeError):
        jax.block_until_ready(eqx.filter_jit(call)(jnp.float32(0.0)))
    assert bool(jnp.isfinite(eqx.filter_jit(call)(jnp.float32(1.5))).all())


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "1", None, True])
def test_psnr_max_value_is_checked(bad):
    with pytest.raises((ValueError, TypeError), match="max_value"):
        dp.psnr(_P, _T, max_value=bad)


def test_psnr_keeps_float64():
    with jax.enable_x64(True):
        target = jnp.linspace(0.0, 1.0, 12, dtype=jnp.float64).reshape(2, 2, 3)
        np.testing.assert_allclose(float(dp.psnr(target + 1e-9, target)), 180.0, atol=1e-6)


def test_operators_agree_whatever_the_number_type():
    # NumPy's `array * loss` made an object array of losses; NumPy and JAX zeros were
    # refused on the right of `+`, and `loss - 0` raised where `loss + 0` worked.
    loss = dp.L2()
    with pytest.raises(ValueError, match="must be a scalar"):
        _ = np.array([1.0, 2.0]) * loss
    for zero in (0, 0.0, np.float32(0), jnp.zeros(())):
        assert loss + zero is loss and zero + loss is loss and loss - zero is loss
    assert float((np.float32(2) * loss).weight) == 2.0  # pyright: ignore[reportAttributeAccessIssue]


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda: dp.L2() * 1e39, "must fit in float32"),
        (lambda: dp.L2() / 1e-300, "must fit in float32"),  # was "non-zero; got 0.0"
        (lambda: 1e-46 * dp.L2(), "which float32 rounds to 0"),  # became 0 * L2()
        (lambda: dp.L2() / 0, "must be non-zero"),
        (lambda: dp.Sum([]), "at least one loss"),  # a loss always 0 was accepted
    ],
)
def test_weights_beyond_float32_and_empty_sums_are_named(make, said):
    with pytest.raises(ValueError, match=said):
        make()


class _ChannelSummed(dp.AbstractPointwiseLoss):
    """A pointwise loss that reduces over channels (its mean would be C times too large)."""

    def pointwise(self, pred, target):
        return jnp.sum((pred - target) ** 2, axis=-1)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "wrap",
    [lambda loss: loss, lambda loss: dp.Weighted(loss, jnp.ones((4, 4)))],
    ids=["alone", "weighted"],
)
def test_pointwise_of_the_wrong_shape_is_named(wrap, jit):
    loss = wrap(_ChannelSummed())
    call = eqx.filter_jit(loss) if jit else loss
    with pytest.raises(ValueError, match=r"_ChannelSummed.pointwise` must return one error per"):
        call(jnp.zeros((4, 4, 3)), jnp.ones((4, 4, 3)))


@pytest.mark.parametrize(
    "shape, said",
    [
        ((8, 100, 3), r"filter_size=7\)"),  # a whole image, already batch=None
        ((3, 3, 1), r"filter_size=3\)"),
        ((16, 16, 0), "at least one channel"),
        ((100, 3), r"Sampled pixels \(P, C\)"),
        ((16, 16), r"image\[\.\.\., None\]"),
        ((1, 16, 16, 3), "jax.vmap"),
    ],
)
def test_ssim_on_too_small_images_names_the_window_to_pass(shape, said):
    with pytest.raises(ValueError, match=said):
        dp.SSIM()(jnp.zeros(shape), jnp.zeros(shape))
    if len(shape) == 3 and shape[2]:  # the window it names works
        size = int(said.split("=")[1].split("\\")[0])
        assert jnp.isfinite(dp.SSIM(filter_size=size)(jnp.zeros(shape), jnp.ones(shape)))


def test_ssim_in_a_minibatched_fit_is_told_once_what_to_do():
    # SSIM says why sampled pixels cannot be compared; `fit` added the same in its own
    # words, and a `dp.Weighted` that cannot hold SSIM (not a pointwise loss).
    model = dp.Circles.init(3, key=jax.random.key(0))
    with pytest.raises(ValueError) as error:
        dp.fit(model, jnp.full((16, 16, 3), 0.5), loss=dp.SSIM(), batch=0.5, steps=1,
               key=jax.random.key(1))  # fmt: skip
    said = str(error.value)
    assert "pointwise loss" in said and "batch=None" in said
    assert "Weighted" not in said and "whole images but not" not in said


class _RolledL2(dp.AbstractPointwiseLoss):
    # "pointwise" by its type, yet each error is a neighbour's (wrong on samples)
    def pointwise(self, pred, target):
        return jnp.square(jnp.roll(pred, 1, axis=0) - target)


class _Huber(dp.AbstractPointwiseLoss):
    def pointwise(self, pred, target):
        return optax.huber_loss(pred, target, delta=0.1)


def _vertical_edges(pred, target):
    return jnp.mean(jnp.square(jnp.diff(pred, axis=0) - jnp.diff(target, axis=0)))


def _by_position(pred, target):  # a vignette: weights from the index along the first axis
    ramp = jnp.linspace(0.0, 1.0, pred.shape[0])[:, None]
    return jnp.mean(ramp * jnp.square(pred - target))


def _luma(pred, target):
    return jnp.mean(((pred - target) @ jnp.array([0.299, 0.587, 0.114])) ** 2)


def _worst_channel(pred, target):
    return jnp.mean(jnp.max(jnp.abs(pred - target), axis=-1))


@pytest.mark.parametrize(
    "loss",
    [
        dp.Loss(_vertical_edges),
        dp.L2() + 0.5 * dp.Loss(_by_position),
        dp.Weighted(_RolledL2(), jnp.ones((16, 16))),
        dp.Loss(lambda p, q: jnp.mean(jnp.square(jnp.cumsum(p - q, axis=0)))),
    ],
)
@pytest.mark.parametrize("jitted", [False, True])
def test_a_loss_that_compares_samples_with_each_other_is_refused_on_samples(loss, jitted):
    # It runs on (P, C) values without an error, and would fit noise: refused up front by
    # a minibatched fit and by paint, eagerly and under jit; on whole images it fits.
    target = jnp.full((16, 16, 3), 0.5).at[4:9, 3:12].set(0.9)
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)

    def minibatched(t):
        return dp.fit(model, t, loss=loss, batch=0.5, steps=2, key=jax.random.key(1)).losses

    run = jax.jit(minibatched) if jitted else minibatched
    with pytest.raises(ValueError, match="another order") as error:
        run(target)
    assert "batch=None" in str(error.value)
    with pytest.raises(ValueError, match="another order.*neighbouring pixels"):
        dp.paint(target, 3, loss=loss, steps=2, key=jax.random.key(0))
    assert jnp.all(jnp.isfinite(dp.fit(model, target, loss=loss, steps=2).losses))


@pytest.mark.parametrize(
    "loss",
    [
        dp.Loss(_luma),
        dp.L2() + 3.0 * dp.Loss(_worst_channel),
        dp.Weighted(_Huber(), jnp.linspace(0.0, 1.0, 256).reshape(16, 16)),
        dp.Loss(lambda p, q: jnp.sum(jnp.abs(p - q)) / p.size),
        dp.Loss(lambda p, q: jnp.median(jnp.abs(p - q))),
    ],
)
def test_a_loss_over_pixels_in_any_order_fits_on_samples(loss):
    target = jnp.full((16, 16, 3), 0.5).at[4:9, 3:12].set(0.9)
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)
    result = dp.fit(model, target, loss=loss, batch=0.5, steps=3, key=jax.random.key(1))
    assert jnp.all(jnp.isfinite(result.losses))
    assert jnp.isfinite(dp.paint(target, 3, loss=loss, steps=3, key=jax.random.key(0)).losses[-1])


@pytest.mark.parametrize(
    "build, text",
    [
        (
            lambda: dp.L2() + 10.0 * dp.NonNegative() + 5.0 * dp.KeepZeros(),
            "L2() + 10.0 * NonNegative() + 5.0 * KeepZeros()",
        ),
        (lambda: dp.L2() - 0.5 * dp.L1(), "L2() - 0.5 * L1()"),
        (lambda: dp.L2() - dp.L1(), "L2() - L1()"),
        (lambda: -(dp.L2() + dp.L1()), "-(L2() + L1())"),
        (lambda: 2 * (3.0 * dp.L1()), "6.0 * L1()"),
        (lambda: dp.L2() - (-dp.L1()), "L2() + 1.0 * L1()"),
        (lambda: dp.L1() / 4, "0.25 * L1()"),
        (lambda: 1e-4 * dp.L1() + 0.1 * dp.L2(), "0.0001 * L1() + 0.1 * L2()"),
        # products that float32 cannot hold stay nested (they printed 0.0 and inf)
        (lambda: 1e-30 * (1e-30 * dp.L2()), "1e-30 * 1e-30 * L2()"),
        (lambda: dp.L2() - 1e20 * (1e20 * dp.L1()), "L2() - 1e+20 * 1e+20 * L1()"),
        (lambda: dp.L2() + (-0.0) * dp.L1(), "L2() + 0.0 * L1()"),
    ],
)
@pytest.mark.filterwarnings("error")  # no overflow warning from printing
def test_a_composed_loss_prints_as_the_expression_that_built_it(build, text):
    assert repr(build()) == str(build()) == text
    assert f"'loss': {text}" in repr({"loss": build()})  # inside any printed pytree


def test_a_loss_whose_weight_is_traced_or_batched_prints_as_equinox_prints_it():
    batched = jax.vmap(lambda w: dp.L2() + w * dp.L1())(jnp.arange(3.0))
    assert repr(batched) == "L2() + Scaled(weight=f32[3], loss=L1())"
    printed = []
    jax.jit(lambda w: printed.append(repr(w * dp.L1())) or w)(2.0)
    assert printed[0].startswith("Scaled(weight=") and printed[0].endswith("loss=L1())")


def test_non_negative_rests_at_exact_zeros():
    # `maximum(-pred, 0)` has half a gradient at 0: Adam pushed exact zeros off zero.
    zeros = jnp.zeros(4)
    np.testing.assert_array_equal(jax.grad(lambda p: dp.NonNegative()(p, p))(zeros), 0.0)
    np.testing.assert_allclose(jax.grad(lambda p: dp.NonNegative()(p, p))(-jnp.ones(4)), -0.25)
    loss = dp.L2() + dp.NonNegative()
    np.testing.assert_array_equal(jax.grad(lambda p: loss(p, zeros))(zeros), 0.0)


def test_smoothed_non_negative_is_a_huber_hinge():
    # Quadratic on [-d, 0), linear below, 0 at and above 0: its gradient falls to 0 at 0
    # (the plain hinge's jumps to -1), so Adam does not kick a fit resting at zeros.
    d = 0.25
    loss = dp.NonNegative(smoothing=d)
    pred = jnp.array([-2.0, -0.5, -0.25, -0.1, 0.0, 0.3])
    expected = np.where(pred < -d, -pred - d / 2, np.where(pred < 0, pred**2 / (2 * d), 0.0))
    np.testing.assert_allclose(loss(pred, pred), expected.mean(), rtol=1e-6)
    grads = jax.vmap(jax.grad(lambda p: loss.pointwise(p, p)))(pred)
    np.testing.assert_allclose(grads, [-1.0, -1.0, -1.0, -0.4, 0.0, 0.0], rtol=1e-6)
    edge = jax.vmap(jax.grad(lambda p: loss.pointwise(p, p)))(jnp.array([-d - 1e-4, -d + 1e-4]))
    np.testing.assert_allclose(edge, [-1.0, -1.0], atol=1e-3)  # continuous at -d
    assert repr(loss) == "NonNegative(smoothing=0.25)"
    assert repr(dp.NonNegative(0)) == "NonNegative()" == repr(dp.NonNegative(-0.0))
    assert repr(dp.NonNegative(3e-4 * 1e-20)) == "NonNegative(smoothing=3e-24)"
    assert hash(loss) == hash(dp.NonNegative(smoothing=0.25)) and loss != dp.NonNegative()
    np.testing.assert_allclose(jax.jit(loss)(pred, pred), loss(pred, pred))


@pytest.mark.parametrize(
    # 5e-39: 2 d underflows in float32 and every gradient was NaN; 1e300: a NaN loss.
    "bad",
    [
        -0.1,
        float("nan"),
        float("inf"),
        "0.1",
        None,
        True,
        np.True_,
        [0.1],
        pytest.param(10**400, id="10**400"),
        5e-39,
        1e300,
    ],
)
def test_non_negative_refuses_a_bad_smoothing(bad):
    with pytest.raises((TypeError, ValueError), match="`smoothing` must be"):
        dp.NonNegative(smoothing=bad)


def test_non_negative_smoothing_is_static():
    # A static setting (it picks the formula): a traced one is refused where it is made.
    with pytest.raises(TypeError, match="concrete number"):
        jax.jit(lambda d: dp.NonNegative(smoothing=d))(0.1)


@pytest.mark.parametrize(
    "returned", [lambda p: jnp.sum(p > 0.5), lambda p: jnp.all(p > 0), lambda p: None]
)
@pytest.mark.parametrize(
    "compose", [lambda fn: dp.L2() + 0.01 * dp.Loss(fn), lambda fn: dp.L2() + fn]
)
def test_a_term_that_is_not_a_float_scalar_is_refused_in_a_sum(returned, compose, getkey):
    # Only the total was checked: an integer term (no gradient) was added to it silently.
    target = jnp.full((8, 8, 3), 0.5)
    model = dp.Circles.init(2, key=getkey(), target=target)
    loss = compose(lambda pred, target: returned(pred))
    with pytest.raises(ValueError, match="must return a float scalar; `<lambda>` returned"):
        dp.fit(model, target, loss=loss, steps=1)


def test_scalar_settings_print_as_numbers():
    class Huber(dp.AbstractPointwiseLoss):
        delta: jax.Array = eqx.field(converter=jnp.asarray, default=0.1)

        def pointwise(self, pred, target):
            return jnp.abs(pred - target)

    assert repr(dp.SSIM()) == "SSIM(max_value=1.0, filter_size=11, filter_sigma=1.5)"
    text = str(dp.L2() + 0.5 * Huber(0.05))  # L2() + 0.5 * test_...<locals>.Huber(...)
    assert text.startswith("L2() + 0.5 * ") and text.endswith(".Huber(delta=0.05)")
    assert "f32[4,4,1]" in repr(dp.Weighted(dp.L2(), jnp.ones((4, 4))))  # not a scalar


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda m: 0.0 * dp.L2(), "its weight is 0"),
        (lambda m: dp.Weighted(dp.L2(), 0 * m), "`Weighted` map is all zeros"),
        (lambda m: 0 * dp.L1() + 3.0 * dp.Weighted(dp.L2(), 0 * m), "weight is 0; its `Weighted`"),
    ],
)
def test_a_loss_that_is_zero_everywhere_is_refused_by_fit_and_paint(make, said, getkey):
    # It ran, its loss 0 at every step, and changed nothing (an empty `Sum` is refused).
    target = jnp.full((8, 8, 3), 0.5)
    loss = make(jnp.ones((8, 8)))
    model = dp.Circles.init(2, key=getkey(), target=target)
    with pytest.raises(ValueError, match=f"is 0 whatever the prediction: .*{re.escape(said)}"):
        dp.fit(model, target, loss=loss, steps=1)
    with pytest.raises(ValueError, match="nothing would train"):
        dp.paint(target, 2, key=getkey(), steps=2, loss=loss)
    # One term that weighs something is enough; a traced weight is not looked at.
    dp.fit(model, target, loss=dp.L2() + loss, steps=1)
    losses = jax.vmap(lambda w: dp.fit(model, target, loss=w * dp.L2(), steps=1).losses)(
        jnp.array([0.0, 1.0])
    )
    assert losses.shape == (2, 1)
