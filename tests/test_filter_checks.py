"""Checks at the public boundary of `dp.SeparableFilters` and `dp.Filtered`: batches of
banks, targets of the wrong size, loss and optimizer settings, half-precision inputs and
channels-first images."""

import equinox as eqx
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
    with pytest.raises(ValueError, match="2 (dimensions|axes)"):
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


# --- recommended_loss and recommended_optimizer -------------------------------------------

LOSS, OPTIMIZER = dp.SeparableFilters.recommended_loss, dp.SeparableFilters.recommended_optimizer


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(non_negative=-100.0), r"`non_negative` must be a finite number >= 0; got -100"),
        (dict(keep_zeros=-0.5), r"`keep_zeros` must be a finite number >= 0"),
        (dict(non_negative=float("inf")), "`non_negative` must be a finite number"),
        (dict(keep_zeros=float("nan")), "`keep_zeros` must be a finite number"),
        (dict(peak=float("inf")), r"`peak` must be a finite number > 0"),
        (dict(peak=0.0), r"`peak` must be a finite number > 0"),
        (dict(peak=-1.0), r"`peak` must be a finite number > 0"),
    ],
)
def test_recommended_loss_refuses_bad_weights_and_peaks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LOSS(**kwargs)
    if "peak" in kwargs:
        with pytest.raises(ValueError, match=match):
            OPTIMIZER(**kwargs)


@pytest.mark.parametrize("bad", ["1", None, True, jnp.ones(2), 1j])
def test_recommended_settings_refuse_non_numbers(bad):
    for name in ("non_negative", "keep_zeros", "peak"):
        with pytest.raises(TypeError, match=f"`{name}`"):
            LOSS(**{name: bad})
    with pytest.raises(TypeError, match="`peak`"):
        OPTIMIZER(peak=bad)


def test_recommended_settings_take_any_real_scalar():
    target = dp.kernels.disk(9, normalize=True)
    reference = LOSS(non_negative=2.0, keep_zeros=0.5, peak=float(target.max()))
    pred, want = bank_of(target).render_image(target.shape), target[..., None]
    for peak in (target.max(), np.float32(target.max()), np.asarray(target.max())):
        loss = LOSS(non_negative=np.float32(2.0), keep_zeros=jnp.asarray(0.5), peak=peak)
        np.testing.assert_allclose(loss(pred, want), reference(pred, want), rtol=1e-6)
        OPTIMIZER(peak=peak, learning_rate=np.float32(1e-2))
    assert np.isfinite(float(LOSS(non_negative=0, keep_zeros=0)(pred, want)))


def test_recommended_loss_weights_may_be_traced_and_are_checked():
    target = dp.kernels.disk(9)[..., None]
    pred = bank_of(target[..., 0]).render_image((9, 9))
    values = jax.vmap(lambda w: LOSS(non_negative=w)(pred, target))(jnp.array([0.0, 3.0]))
    assert values.shape == (2,) and float(values[1]) > float(values[0])
    with pytest.raises(Exception, match="`non_negative` must be a finite number >= 0"):
        jax.jit(lambda w: LOSS(non_negative=w)(pred, target))(-1.0)
    with pytest.raises(TypeError, match="`peak` must be a concrete number"):
        jax.jit(lambda p: LOSS(peak=p))(1.0)


# --- half precision -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_filters_are_computed_in_float32(dtype):
    kernel = dp.kernels.disk(9)
    bank = bank_of(kernel.astype(dtype))
    assert bank.vertical.dtype == jnp.float32
    np.testing.assert_allclose(bank.kernel(), bank_of(kernel).kernel(), atol=2e-2)
    assert dp.SeparableFilters(bank.vertical.astype(dtype), bank.horizontal).vertical.dtype == (
        jnp.float32
    )
    blurred = bank.apply(SCENE.astype(dtype), border="reflect")
    assert blurred.dtype == jnp.float32
    np.testing.assert_allclose(blurred, bank.apply(SCENE, border="reflect"), rtol=1e-2)
    assert dp.Filtered(bank, SCENE.astype(dtype)).image.dtype == jnp.float32
    peak = kernel.astype(dtype).max()
    result = dp.fit(
        bank,
        kernel.astype(dtype)[..., None],
        loss=LOSS(non_negative=jnp.asarray(1.0, dtype), peak=peak),
        optimizer=OPTIMIZER(peak=peak, learning_rate=jnp.asarray(1e-2, dtype)),
        steps=3,
    )
    assert result.model.vertical.dtype == jnp.float32 and np.all(np.isfinite(result.losses))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_images_and_losses_are_accepted(dtype, tmp_path):
    target = dp.load_image(dp.demo_image_path(), size=16)
    half = target.astype(dtype)
    loss = dp.L2()(half, target)
    assert loss.dtype == jnp.float32 and float(loss) < 1e-4
    assert float(dp.psnr(half, target)) > 40
    assert float(dp.Weighted(dp.L2(), jnp.ones((16, 16), dtype))(target, target)) == 0.0
    model = dp.Circles.init(4, key=jax.random.key(0), target=half)
    assert np.all(np.isfinite(dp.fit(model, half, steps=2).losses))
    dp.save_image(tmp_path / "half.png", half)
    assert dp.kernels.gaussian(9, sigma=jnp.asarray(2.0, dtype)).dtype == jnp.float32


# --- the image to filter ------------------------------------------------------------------


@pytest.mark.parametrize(
    "filter_",
    [
        lambda x: bank_of(dp.kernels.disk(5)).apply(x),
        lambda x: dp.Filtered(bank_of(dp.kernels.disk(5)), x),
    ],
)
def test_a_channels_first_image_is_refused_with_the_fix(filter_):
    for channels in (1, 3, 4):
        with pytest.raises(ValueError, match=r"channels-first.*jnp\.moveaxis\(image, 0, -1\)"):
            filter_(jnp.ones((channels, 16, 16)))
    with pytest.raises(ValueError, match=r"a batch of images.*jax\.vmap"):
        filter_(jnp.ones((2, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"x\[\.\.\., None\]"):
        filter_(jnp.ones((16, 16)))
    with pytest.raises(TypeError, match="float"):
        filter_(jnp.ones((16, 16, 3), jnp.uint8))
    filter_(jnp.full((16, 16, 3), -2.0))  # any range: scenes may be HDR or negative


def test_a_short_image_of_many_channels_is_filtered_as_the_refusal_says():
    # (3, 8, 8) is a channels-first RGB image or 3 rows of 8 channels: refused, and the
    # refusal told only to move the axis, which filters other data (found by a review).
    bank, image = bank_of(dp.kernels.disk(5)), jax.random.uniform(jax.random.key(0), (3, 8, 8))
    with pytest.raises(
        ValueError, match=r"3 pixels tall with 8 channels.*over axis 2 of `image\[\.\.\., None\]`"
    ):
        bank.apply(image)
    # As the message says (its first wording, "the last axis", ran into the refusal again).
    each = jax.vmap(bank.apply, in_axes=2, out_axes=2)(image[..., None])[..., 0]
    alone = jnp.stack([bank.apply(image[..., c : c + 1])[..., 0] for c in range(8)], axis=-1)
    np.testing.assert_allclose(each, alone, atol=1e-6)


# --- what the docstrings claim --------------------------------------------------------------


def test_an_exact_start_behaves_as_recommended_optimizer_says():
    def fitted(target, rank, loss=None, **weights):
        start = bank_of(target, rank)
        loss = LOSS(**weights) if loss is None else loss
        result = dp.fit(start, target[..., None], loss=loss, optimizer=OPTIMIZER(), steps=500)
        kernel = result.model.kernel()
        error = float(jnp.linalg.norm(kernel - target) / jnp.linalg.norm(target))
        return float(result.losses.max()), float(result.losses[-1]), error

    # No zeros in the target: pushed away first, back to float32 rounding at the end.
    peak, final, _ = fitted(dp.kernels.gaussian(15, sigma=3.0), 1)
    assert 1e-6 < peak < 1e-3 and final < 1e-12
    disk = dp.kernels.disk(9)
    peak, final, _ = fitted(disk, 9, non_negative=0.0)
    assert 1e-6 < peak < 1e-3 and final < 1e-12
    # Zeros in the target: the plain NonNegative hinge kicks them at every step (3e-3 to
    # 4e-3 after 500 steps); the recommended loss's smoothed hinge lets it come back
    # closer (6e-4 to 1.7e-3: the last digits of Adam's path differ between machines).
    _, _, plain = fitted(disk, 9, loss=dp.L2() + 4.0 * dp.NonNegative())
    assert 2e-3 < plain < 8e-3
    _, _, error = fitted(disk, 9)
    assert 1e-4 < error < min(plain, 3e-3)


def test_docstring_examples_blur_with_a_reflected_border():
    bank, filtered = dp.SeparableFilters.__doc__, dp.Filtered.__doc__
    assert bank is not None and filtered is not None
    assert '.apply(image, border="reflect")' in bank
    assert "blur_exactly" not in filtered and "kernel = dp.kernels" in filtered


# --- borders, non-finite pixels and kernels that sum to 0 ----------------------------------


@pytest.mark.parametrize("border", [["zero"], None, 0])
def test_a_border_that_is_not_a_string_is_refused_with_the_choices(border):
    bank = bank_of(dp.kernels.disk(5))
    with pytest.raises(TypeError, match=r"`border` must be a string, one of \['edge'"):
        bank.apply(SCENE, border=border)
    with pytest.raises(TypeError, match=r"`border` must be a string"):
        dp.Filtered(bank, SCENE, border=border)


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf, -jnp.inf])
def test_non_finite_pixels_are_refused_not_spread_over_a_tile(bad):
    # One NaN pixel blanked a 32 x 32 tile of a 5 x 5 blur (a direct convolution: 25 px).
    bank = bank_of(dp.kernels.disk(5, normalize=True), rank=3)
    image = jnp.zeros((40, 40, 1)).at[20, 20, 0].set(bad)
    with pytest.raises(
        ValueError, match=r"`image` must be finite; got 1 NaN/inf value.*nan_to_num"
    ):
        bank.apply(image)
    with pytest.raises(ValueError, match=r"`image` must be finite"):
        dp.Filtered(bank, image)
    # Any finite range is still filtered (HDR, negative).
    hdr = jnp.zeros((40, 40, 1)).at[20, 20, 0].set(-1e6)
    assert np.all(np.isfinite(bank.apply(hdr)))


def test_normalized_refuses_a_kernel_that_sums_to_zero_up_to_rounding():
    # The SVD of a Laplacian sums to ~3e-8, not 0: dividing by it made vectors ~1e7.
    laplacian = jnp.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    bank = bank_of(laplacian, rank=3)
    with pytest.raises(ValueError, match=r"sums to 0 \(up to float32 rounding.*sum \|k\| 8"):
        bank.normalized()
    with pytest.raises(Exception, match="sums to 0"):
        eqx.filter_jit(lambda b: b.normalized().kernel())(bank)
    sharpen = laplacian * -1.0 + jnp.zeros((3, 3)).at[1, 1].set(1.0)  # sums to 1
    np.testing.assert_allclose(
        bank_of(sharpen, rank=3).normalized().kernel().sum(), 1.0, rtol=1e-5
    )


def test_a_negative_peak_is_refused_with_the_magnitude_to_pass():
    # A kernel whose largest lobe is negative (a Laplacian of Gaussian, a negated blur):
    # the hint said `peak=target.max()`, which is the value just refused.
    target = -dp.kernels.gaussian(9)
    with pytest.raises(ValueError, match=r"peak=jnp\.abs\(target\)\.max\(\)"):
        LOSS(peak=float(target.max()))
    peak = float(jnp.abs(target).max())
    bank = bank_of(target, rank=1)
    fitted = dp.fit(
        bank,
        target[..., None],
        loss=LOSS(non_negative=0.0, peak=peak),
        optimizer=OPTIMIZER(peak=peak),
        steps=20,
    ).model
    assert float(jnp.linalg.norm(fitted.kernel() - target) / jnp.linalg.norm(target)) < 1e-2


def test_a_closed_over_image_is_checked_under_jit():
    # A concrete image closed over by a jitted function was checked with a JAX op, which
    # inside the trace gave a tracer: `bool` of it raised TracerBoolConversionError.
    bank = bank_of(dp.kernels.disk(5, normalize=True), rank=2)
    image = jnp.ones((16, 16, 3))
    blurred = eqx.filter_jit(lambda b: b.apply(image))(bank)
    np.testing.assert_allclose(blurred, bank.apply(image), rtol=1e-6, atol=1e-6)
    filtered = eqx.filter_jit(lambda b: dp.Filtered(b, image).filtered())(bank)
    np.testing.assert_allclose(filtered, blurred, rtol=1e-6, atol=1e-6)
    # Still refused when the closed-over image holds a NaN (it is concrete: checked now).
    bad = image.at[3, 4, 0].set(jnp.nan)
    with pytest.raises(ValueError, match=r"`image` must be finite; got 1 NaN/inf"):
        eqx.filter_jit(lambda b: b.apply(bad))(bank)
    # A traced image (an argument of jit) is not checked, as `apply` says.
    assert eqx.filter_jit(lambda b, x: b.apply(x))(bank, image).shape == (16, 16, 3)


@pytest.mark.parametrize("make", [dp.kernels.box, dp.kernels.disk, dp.kernels.gaussian,
                                  dp.kernels.polygon])  # fmt: skip
@pytest.mark.parametrize("size", [10**6, (9000, 9000), (1, 10**8)])
def test_a_kernel_too_large_to_build_is_refused_with_its_size(make, size):
    # box(10**6) asked XLA for 4 TB and failed deep inside with RESOURCE_EXHAUSTED.
    with pytest.raises(ValueError, match=r"`size` must give a kernel of at most .* GB\)"):
        make(size)


@pytest.mark.parametrize(
    "call",
    [
        lambda big: dp.SeparableFilters.from_svd(big, 1),
        lambda big: dp.psnr(big[..., None], big[..., None]),
    ],
)
def test_float64_values_beyond_float32_are_refused_as_such(call):
    # 1e300 turned into inf in JAX's float32 (with NumPy's overflow warning) and was
    # then refused as "NaN/inf" input, which it was not.
    with pytest.raises(ValueError, match=r"must fit in float32 .* up to 1e\+300"):
        call(np.full((4, 4), 1e300))


def test_filtered_names_swapped_arguments_and_a_model_for_a_scene():
    # Both read "`image` must be a float array; got SeparableFilters / Circles".
    bank = dp.SeparableFilters.from_svd(dp.kernels.disk(5), 1)
    scene = jnp.full((8, 8, 3), 0.5)
    with pytest.raises(TypeError, match="takes the bank first"):
        dp.Filtered(scene, bank)
    circles = dp.Circles.init(3, key=jax.random.key(0), target=scene)
    with pytest.raises(TypeError, match=r"pass `model.render_image\(\(H, W\)\)`"):
        dp.Filtered(bank, circles)
    with pytest.raises(TypeError, match="`bank` must be a `dp.SeparableFilters`"):
        dp.Filtered(circles, scene)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.bool_])
def test_a_kernel_of_integers_or_a_mask_is_taken_as_floats(dtype):
    # A list of ints was accepted and the same numbers as an int array refused (with the
    # advice to divide an image by 255); a kernel of counts or a mask is a kernel.
    kernel = np.array([[1, 0, 1], [0, 1, 0]], dtype)
    for given in (kernel, kernel.tolist()):  # a mask as a list of bools too
        bank = dp.SeparableFilters.from_svd(given, 2)
        np.testing.assert_allclose(bank.kernel(), kernel.astype(np.float32), atol=1e-6)


def test_a_ragged_kernel_is_named():
    with pytest.raises(
        ValueError, match=r"`kernel` must be an array; got a nested list whose rows"
    ):
        dp.SeparableFilters.from_svd([[1.0, 2.0], [3.0]], 1)


@pytest.mark.parametrize("kernel", [np.full((5, 5), 1e-300), np.full((5, 5), 1e-42, np.float32)])
def test_a_kernel_below_the_smallest_normal_float32_is_refused(kernel):
    # It became an all-zero bank without a word (1e-300 in float64; 1e-42 in float32).
    with pytest.raises(ValueError, match="smallest normal number") as info:
        dp.SeparableFilters.from_svd(kernel, 1)
    assert "Scale it first" in str(info.value)
    bank = dp.SeparableFilters.from_svd(np.full((5, 5), 1e-30), 1)  # small, but normal
    np.testing.assert_allclose(bank.kernel(), 1e-30, rtol=1e-5)
