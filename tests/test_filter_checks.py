"""Checks at the public boundary of `dp.SeparableFilters` and `dp.Filtered`: batches of
banks, targets of the wrong size, loss and optimizer settings, half-precision inputs and
channels-first images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffprims as dp

SCENE = jnp.linspace(0.0, 1.0, 16 * 16 * 3).reshape(16, 16, 3)


def bank_of(kernel, rank=2):
    return dp.SeparableFilters.from_svd(kernel, rank)


def batch_of_banks():
    kernels = jnp.stack([dp.kernels.disk(9), 0.5 * dp.kernels.disk(9)])
    return jax.vmap(lambda k: bank_of(k))(kernels)


# --- a batch of banks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [batch_of_banks, lambda: jax.tree.map(lambda a: jnp.stack([a, a]), bank_of(SCENE[..., 0]))],
)
@pytest.mark.parametrize(
    "action, call",
    [
        ("apply", lambda b: b.apply(SCENE)),
        ("kernel", lambda b: b.kernel()),
        ("normalized", lambda b: b.normalized()),
        ("shape", lambda b: b.shape),
        ("rank", lambda b: b.rank),
        ("render_image", lambda b: b.render_image((9, 9))),
        ("render", lambda b: b.render(jnp.full((3, 2), 0.5), pixel_size=0.1)),
    ],
)
def test_a_batch_of_banks_is_refused_with_what_to_do(make, action, call):
    banks = make()
    with pytest.raises(ValueError, match=rf"`{action}` takes one bank; got a batch of 2 banks"):
        call(banks)


def test_a_batch_of_banks_says_how_to_map_and_works_under_vmap():
    banks = batch_of_banks()
    with pytest.raises(ValueError, match=r"jax\.vmap\(lambda b: b\.apply\(image\)\)\(banks\)"):
        banks.apply(SCENE)
    blurred = jax.vmap(lambda b: b.apply(SCENE))(banks)
    assert blurred.shape == (2, *SCENE.shape)
    np.testing.assert_allclose(blurred[1], 0.5 * blurred[0], rtol=1e-4, atol=1e-6)
    assert jax.vmap(lambda b: b.kernel())(banks).shape == (2, 9, 9)


def test_fit_refuses_a_batch_of_banks_and_fits_one_under_vmap():
    banks, target = batch_of_banks(), dp.kernels.disk(9)[..., None]
    with pytest.raises(ValueError, match="batch of 2 models"):
        dp.fit(banks, target, steps=2)
    fitted = jax.vmap(lambda b: dp.fit(b, target, steps=2).model.kernel())(banks)
    assert fitted.shape == (2, 9, 9) and np.all(np.isfinite(fitted))


def test_the_constructor_checks_shapes_and_points_a_batch_to_vmap():
    with pytest.raises(ValueError, match="2 dimensions"):
        dp.SeparableFilters(jnp.ones(5), jnp.ones(5))
    with pytest.raises(ValueError, match=r"batch of 2 banks.*jax\.vmap\(dp\.SeparableFilters\)"):
        dp.SeparableFilters(jnp.ones((2, 3, 5)), jnp.ones((2, 3, 5)))
    banks = jax.vmap(dp.SeparableFilters)(jnp.ones((2, 3, 5)), jnp.ones((2, 3, 5)))
    assert jax.vmap(lambda b: b.kernel())(banks).shape == (2, 5, 5)


def test_filtered_refuses_a_batch_of_banks_and_a_batch_of_itself():
    banks = batch_of_banks()
    with pytest.raises(ValueError, match=r"`Filtered` takes one bank.*jax\.vmap"):
        dp.Filtered(banks, SCENE)
    models = jax.vmap(lambda b: dp.Filtered(b, SCENE))(banks)
    assert jax.vmap(lambda m: m.filtered())(models).shape == (2, *SCENE.shape)
    for call in (lambda m: m.filtered(), lambda m: m.render_image((16, 16))):
        with pytest.raises(ValueError, match="batch of 2 models"):
            call(models)
    with pytest.raises(ValueError, match="batch of 2 models"):
        dp.fit(models, SCENE, steps=2)


# --- a target of another size -----------------------------------------------------------


@pytest.mark.parametrize("batch", [None, 0.5])
def test_fit_refuses_a_kernel_target_of_another_size(batch):
    bank = bank_of(dp.kernels.disk(9))
    key = None if batch is None else jax.random.key(0)
    with pytest.raises(ValueError, match=r"bank's size \(Kh, Kw\) = \(9, 9\).*\(11, 11, 1\)"):
        dp.fit(bank, dp.kernels.disk(11)[..., None], steps=2, batch=batch, key=key)
    # Its own size fits; rendering at another size still samples the kernel.
    assert dp.fit(bank, dp.kernels.disk(9)[..., None], steps=2).model.shape == (9, 9)
    assert bank.render_image((18, 18)).shape == (18, 18, 1)


@pytest.mark.parametrize("batch", [None, 0.5])
def test_fit_refuses_a_filtered_target_of_another_size(batch):
    model = dp.Filtered(bank_of(dp.kernels.disk(5)), SCENE)
    key = None if batch is None else jax.random.key(0)
    with pytest.raises(ValueError, match=r"scene's size \(H, W\) = \(16, 16\).*\(12, 12, 3\)"):
        dp.fit(model, SCENE[:12, :12], steps=2, batch=batch, key=key)
