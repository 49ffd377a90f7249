"""`_blur.blur`: a separable Gaussian, renormalised at the borders, as the dense one was."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffprims._blur import blur


def dense_blur(image, sigma):
    """The implementation blur replaced (two dense H x H and W x W products), kept as the
    reference for its results and its border handling."""
    sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)

    def matrix(size):
        offsets = jnp.arange(size, dtype=jnp.float32)
        weights = jnp.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / sigma) ** 2)
        return weights / jnp.sum(weights, 1, keepdims=True)

    height, width, _ = image.shape
    return jnp.einsum("ij,jkc,lk->ilc", matrix(height), image, matrix(width))


@pytest.fixture(params=["dense", "separable"])
def path(request, monkeypatch):
    """Both ways `blur` computes: small images take the dense products, large ones
    (height + width over `DENSE_SIDES`) the separable blur; here any image either way."""
    import diffprims._blur as module

    monkeypatch.setattr(module, "DENSE_SIDES", 10**9 if request.param == "dense" else 0)
    return request.param


def picture(shape, seed=0):
    """Noise with hard steps: the truncated kernel's worst case is a step at its edge."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(size=shape).astype(np.float32)
    image[: shape[0] // 3] = 1.0
    image[:, : shape[1] // 4] = 0.0
    return jnp.asarray(image)


@pytest.mark.parametrize("sigma", [1e-4, 0.3, 0.5, 1.0, 1.37, 2.0, 3.0, 4.5, 12.0])
@pytest.mark.parametrize("shape", [(64, 96, 3), (40, 7, 1), (5, 3, 2)])
def test_blur_matches_the_dense_blur(shape, sigma, path):
    # The paint callers use 1.0, the error map's seed sizes and a coarse-to-fine blur
    # from `coarse` (3) down; the kernel is wider than the image at 12 on 5 x 3.
    image = picture(shape)
    np.testing.assert_allclose(blur(image, sigma), dense_blur(image, sigma), atol=1e-5)


def test_blur_near_zero_is_the_identity_and_keeps_a_constant(path):
    image = picture((9, 11, 3))
    np.testing.assert_allclose(blur(image, 0.0), image, atol=1e-6)
    np.testing.assert_allclose(blur(jnp.full((9, 11, 2), 0.7), 2.5), 0.7, atol=1e-6)


def test_blur_takes_a_traced_sigma():
    # Under jit/vmap/grad the kernel's size is unknown: the dense blur, as before.
    image = picture((12, 10, 3))
    sigmas = jnp.asarray([0.5, 1.0, 2.0])
    swept = jax.vmap(lambda s: blur(image, s))(sigmas)
    for s, out in zip(sigmas, swept):
        np.testing.assert_allclose(out, dense_blur(image, s), atol=1e-5)
    compiled = jax.jit(blur)(image, 1.5)
    np.testing.assert_allclose(compiled, dense_blur(image, 1.5), atol=1e-5)
    grad = jax.grad(lambda s: jnp.sum(blur(image, s) ** 2))(1.5)
    expected = jax.grad(lambda s: jnp.sum(dense_blur(image, s) ** 2))(1.5)
    np.testing.assert_allclose(grad, expected, rtol=1e-4)
    # A concrete array is a concrete sigma.
    np.testing.assert_allclose(blur(image, jnp.float32(1.5)), compiled, atol=1e-5)


def test_blur_works_under_jit_with_a_static_sigma_and_under_vmap(path):
    images = jnp.stack([picture((16, 12, 3), seed) for seed in range(2)])
    out = jax.jit(jax.vmap(lambda im: blur(im, 2.0)))(images)
    for image, blurred in zip(images, out):
        np.testing.assert_allclose(blurred, dense_blur(image, 2.0), atol=1e-5)


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_blur_costs_per_pixel_a_kernel_not_an_image_side(sigma):
    # The dense blur did H + W multiply-adds per value: 24 GFLOP at 1536 x 1024 x 3,
    # ~0.45 s a call. The separable one does a few times its kernel's width.
    shape = (1536, 1024, 3)
    spec = jax.ShapeDtypeStruct(shape, jnp.float32)
    cost = jax.jit(lambda im: blur(im, sigma)).lower(spec).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    per_value = cost["flops"] / np.prod(shape)
    assert per_value < 300, per_value  # dense: 2 (H + W) = 5120


def test_paint_coarse_to_fine_sigmas_compile_few_programs(monkeypatch):
    # paint blurs its target by coarse * (1 - r / 7) over 8 rounds: one program per
    # kernel radius, rounded up to 2^k - 1, so 3 programs for the 7 blurs, not 7.
    import diffprims._blur as module
    from diffprims._blur import _separable

    monkeypatch.setattr(module, "DENSE_SIDES", 0)  # as an image over 512 x 512 would
    _separable.clear_cache()
    image = picture((20, 24, 3))
    for r in range(7):
        blur(image, 3.0 * (1 - r / 7))
    assert _separable._cache_size() == 3


def test_small_images_compile_one_program_for_every_sigma():
    # At 256 x 256 the dense products cost 2 ms and compile once; a program per kernel
    # radius would add ~0.45 s to a first `paint` call to save ~1 ms a round.
    from diffprims._blur import _dense, _separable

    _dense.clear_cache()
    _separable.clear_cache()
    image = picture((32, 24, 3))
    for r in range(7):
        blur(image, 3.0 * (1 - r / 7))
    assert (_dense._cache_size(), _separable._cache_size()) == (1, 0)
