"""The public boundary at its extremes: empty inputs, huge and tiny scales.

Losses and metrics over no values raise a clear `ValueError` (eagerly and under `jit`:
shapes are static) instead of NaN; SSIM and PSNR stay finite for any `max_value` that
fits; a filter bank whose kernel or filtered image overflows float32 says so instead of
giving inf.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffprims as dp

from .test_degenerate import every_loss

SIZE = 8
# Every exported loss but `dp.Loss`, which runs the user's own function unchecked.
LOSSES = [loss for loss in every_loss(SIZE) if not isinstance(loss, dp.Loss)]
LOSSES.append(sum(LOSSES[1:], LOSSES[0]))
EMPTY = [(0, 3), (3, 0), (0, 0, 3), (4, 4, 0)]

_KEYS = jax.random.split(jax.random.key(3))
PRED, TARGET = (jax.random.uniform(key, (16, 16, 3)) for key in _KEYS)


def _name(loss):
    return type(loss).__name__


def test_every_loss_class_is_covered():
    names = {_name(loss) for loss in LOSSES}
    assert {"L2", "L1", "NonNegative", "KeepZeros", "Weighted", "Scaled", "SSIM", "Sum"} <= names


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("shape", EMPTY, ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=_name)
def test_a_loss_over_no_values_raises(loss, shape, jit):
    # Every loss returned NaN (a mean over no elements), eagerly and under `jit`.
    call = eqx.filter_jit(loss) if jit else loss
    empty = jnp.zeros(shape)
    with pytest.raises(ValueError, match=r"needs at least one value to compare; got `pred` of"):
        call(empty, empty)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("shape", EMPTY, ids=str)
def test_psnr_over_no_values_raises(shape, jit):
    psnr = jax.jit(dp.psnr) if jit else dp.psnr
    empty = jnp.zeros(shape)
    with pytest.raises(ValueError, match=r"`psnr` needs at least one value .* skip the call"):
        psnr(empty, empty + 0.5)


@jax.jit
def _ssim_and_grad(max_value, pred):
    return jax.value_and_grad(lambda x: dp.SSIM(max_value=max_value)(x, TARGET))(pred)


@pytest.mark.parametrize("max_value", [1e-30, 1e-6, 1e20, 1e30, 3e38])
def test_ssim_is_finite_for_any_max_value(max_value):
    # Its constants (0.01 max_value) ** 2 overflowed float32: NaN from max_value 1e12 up.
    value = dp.SSIM(max_value=max_value)(PRED, TARGET)
    traced, grad = _ssim_and_grad(jnp.float32(max_value), PRED)  # compiled once
    np.testing.assert_allclose(float(traced), float(value), rtol=1e-5, atol=1e-6)
    assert np.isfinite(float(value)) and bool(jnp.all(jnp.isfinite(grad)))
    if max_value >= 1e20:  # every difference is negligible beside such a peak
        assert abs(float(value)) < 1e-6


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_ssim_of_scaled_images_is_unchanged(scale):
    # SSIM(s x, s y; s L) = SSIM(x, y; L): pixels of 1e20 overflowed (NaN), and ones of
    # 1e-20 lost their variances to underflow.
    expected = float(dp.SSIM()(PRED, TARGET))
    scaled = dp.SSIM(max_value=scale)(PRED * scale, TARGET * scale)
    np.testing.assert_allclose(float(scaled), expected, rtol=1e-5)
    huge = jnp.full((16, 16, 3), 1e30)
    assert float(dp.SSIM()(huge, huge)) == 0.0  # pixels far over max_value: not NaN


def test_ssim_max_value_must_fit_in_float32():
    with pytest.raises(ValueError, match=r"`max_value` must be .* got 1e\+39. It is the largest"):
        dp.SSIM(max_value=1e39)


@pytest.mark.parametrize("setting, value", [("max_value", 0.0), ("filter_sigma", -1.0)])
def test_ssim_settings_traced_into_a_fit_are_checked(setting, value):
    # fit's steps run without checks: a traced max_value=0 fitted on silently.
    target = jnp.linspace(0.0, 1.0, 16 * 16 * 3).reshape(16, 16, 3)
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)

    @jax.jit
    def losses(v):
        ssim = dp.SSIM(filter_size=5, **{setting: v})
        return dp.fit(model, target, loss=ssim, steps=2).losses

    assert np.all(np.isfinite(losses(1.0)))
    with pytest.raises(Exception, match=f"`{setting}` must be a finite number"):
        jax.block_until_ready(losses(value))


def test_a_function_minus_a_loss_is_a_loss():
    pred, target = jnp.ones((4, 3)), jnp.zeros((4, 3))

    def mean_error(p, t):
        return jnp.mean(p - t)

    assert float((mean_error - dp.L2())(pred, target)) == pytest.approx(0.0)
    assert float((0 - dp.L2())(pred, target)) == pytest.approx(-1.0)
    with pytest.raises(TypeError, match="left-hand side of `-` must be a loss"):
        _ = "a" - dp.L2()


@pytest.mark.parametrize("max_value", [1e-30, 1e30, 1e39])
def test_psnr_is_finite_for_any_max_value(max_value):
    # max_value ** 2 overflowed (PSNR inf) or vanished (-inf) in float32.
    expected = float(dp.psnr(PRED, TARGET)) + 20.0 * np.log10(max_value)
    np.testing.assert_allclose(float(dp.psnr(PRED, TARGET, max_value=max_value)), expected)


def _bank(value, rank=1, size=3):
    return dp.SeparableFilters(jnp.full((rank, size), value), jnp.full((rank, size), value))


@pytest.mark.parametrize("value", [1e20, 1e30, -3e36])
def test_a_bank_whose_kernel_overflows_is_refused(value):
    # Finite vectors made a kernel, a rendering and a filtered image of inf.
    with pytest.raises(ValueError, match=r"must make a kernel that fits in float32 .* reach"):
        _bank(value)


def test_a_bank_at_the_limit_is_kept():
    bank = _bank(1.8e19)  # kernel 3.24e38: fits
    assert bool(jnp.all(jnp.isfinite(bank.kernel())))
    vertical = jnp.array([[1e19, 1e19], [1e19, -1e19]])  # kernel 2e38 and 0, sum bound 4e38
    horizontal = jnp.array([[1e19, 1e19], [1e19, -1e19]])
    kernel = dp.SeparableFilters(vertical, horizontal).kernel()
    np.testing.assert_allclose(kernel, [[2e38, 0.0], [0.0, 2e38]], rtol=1e-6)


def test_applying_a_bank_that_overflows_raises():
    # A kernel of 1e38 fits, but its filtered image (9 x 1e38) does not: it was inf.
    bank = _bank(1e19)
    image = jnp.ones((8, 8, 1))
    match = r"`apply` must give a filtered image that fits in float32 .* sum of \|k\| is 9e\+38"
    with pytest.raises(ValueError, match=match):
        bank.apply(image)
    with pytest.raises(ValueError, match=match):
        dp.Filtered(bank, image).render_image((8, 8))
    bright = jnp.full((8, 8, 1), 1e38)
    with pytest.raises(ValueError, match=r"pixels as large as 1e\+38 .* sum of \|k\| is 9\b"):
        _bank(1.0).apply(bright)
    np.testing.assert_allclose(_bank(1.0 / 3.0).apply(bright)[4, 4], 1e38, rtol=1e-5)  # a blur
    # Under `jit` nothing is checked (values are traced): the passes run as before.
    assert bool(jnp.isinf(eqx.filter_jit(lambda b, x: b.apply(x))(bank, image)).any())


def test_applying_a_bank_of_nan_made_without_its_constructor_raises():
    bank = eqx.tree_at(lambda b: b.vertical, _bank(1.0), jnp.full((1, 3), jnp.nan))
    with pytest.raises(ValueError, match=r"needs a bank of finite vectors; got NaN"):
        bank.apply(jnp.ones((8, 8, 1)))


@pytest.mark.parametrize("value", [1e19, 1e-20])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_normalized_keeps_kernels_at_the_edges_of_float32(value, jit):
    # A kernel of 1e38 summed to inf, one of 1e-40 to 0: both were "a kernel that sums
    # to 0" (ValueError), or NaN under `jit`.
    bank = _bank(value)
    normalized = eqx.filter_jit(lambda b: b.normalized())(bank) if jit else bank.normalized()
    np.testing.assert_allclose(normalized.kernel(), np.full((3, 3), 1.0 / 9.0), rtol=1e-5)
