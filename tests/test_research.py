"""Research use: fit under JAX transformations, frozen parameters, layers, filtered scenes,
plain functions as losses."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp


@pytest.fixture(scope="module")
def photo():
    return dp.load_image(dp.demo_image_path(), size=16)


# -- fit under jax.grad / jax.vmap over optimizer settings ------------------------------


def test_grad_through_fit_wrt_learning_rate_matches_finite_differences(photo):
    """No `jax.jit` around it: `fit` notices it is traced from its own losses."""
    model = dp.Circles.init(6, key=jax.random.key(0), target=photo)

    def final_loss(lr):
        return dp.fit(model, photo, optimizer=optax.adam(lr), steps=8).losses[-1]

    grad = float(jax.grad(final_loss)(1e-2))
    h = 1e-3
    fd = float((final_loss(1e-2 + h) - final_loss(1e-2 - h)) / (2 * h))
    assert abs(grad - fd) <= 0.05 * abs(fd), (grad, fd)
    swept = jax.vmap(final_loss)(jnp.array([5e-3, 1e-2, 2e-2]))
    assert swept.shape == (3,) and np.all(np.isfinite(swept))
    np.testing.assert_allclose(swept[1], final_loss(1e-2), rtol=1e-4)


def test_differentiating_a_fit_with_a_shape_off_the_canvas_is_finite(photo):
    """A parameter with an exactly zero gradient (a shape off the canvas): Adam's
    `sqrt(nu)` has an infinite derivative at 0, so the hypergradient was NaN with the
    default optimizer; with `eps_root` it is finite and matches finite differences."""
    model = dp.Circles.init(5, key=jax.random.key(0), target=photo)
    far = eqx.tree_at(lambda m: m.raw_centres, model, model.raw_centres.at[0].set(50.0))

    def final_loss(scale, optimizer=None):
        scaled = eqx.tree_at(lambda m: m.raw_radii, far, far.raw_radii * scale)
        return dp.fit(scaled, photo, optimizer=optimizer, steps=3).losses[-1]

    forward = float(jax.jacfwd(final_loss)(1.0))
    reverse = float(jax.grad(final_loss)(1.0))
    h = 1e-2
    fd = float((final_loss(1.0 + h) - final_loss(1.0 - h)) / (2 * h))
    assert np.isfinite(forward) and abs(forward - fd) <= 0.05 * abs(fd), (forward, fd)
    np.testing.assert_allclose(reverse, forward, rtol=1e-3)
    # The plain `optax.adam` still gives NaN: the docs' reason for `eps_root`.
    assert np.isnan(float(jax.grad(lambda s: final_loss(s, optax.adam(1e-2)))(1.0)))


def test_jacfwd_through_fit_with_the_scan_renderer(photo):
    model = dp.Circles.init(3, key=jax.random.key(0), target=photo)

    def final_loss(lr):
        return dp.fit(model, photo, optimizer=optax.sgd(lr), steps=3).losses[-1]

    forward = jax.jacfwd(final_loss)(0.1)
    np.testing.assert_allclose(forward, jax.grad(final_loss)(0.1), rtol=1e-3)


def test_fit_differentiated_where_auto_would_tile():
    """10 shapes on 32 x 32: "auto" tiles, whose backward pass is first-order only; a
    differentiated fit renders with the scan instead (eager, or retraced under jit)."""
    photo = dp.load_image(dp.demo_image_path(), size=32)
    model = dp.Circles.init(10, key=jax.random.key(0), target=photo)

    def final_loss(lr, method=None):
        return dp.fit(model, photo, optimizer=optax.adam(lr), steps=3, method=method).losses[-1]

    reverse = jax.grad(final_loss)(1e-2)
    np.testing.assert_allclose(jax.jacfwd(final_loss)(1e-2), reverse, rtol=1e-3)
    np.testing.assert_allclose(jax.jit(jax.jacfwd(final_loss))(1e-2), reverse, rtol=1e-3)
    scan = jax.jit(jax.grad(lambda lr: final_loss(lr, "scan")))(1e-2)
    np.testing.assert_allclose(scan, reverse, rtol=1e-3)
    # Not differentiated: the tiled renderer, the same losses.
    np.testing.assert_allclose(final_loss(1e-2), final_loss(1e-2, "scan"), rtol=1e-5)

    def total(scale):
        scaled = dp.Circles.from_values(model.centres, scale * model.radii, model.colours,
                                        model.opacities)  # fmt: skip
        return scaled.render_image((32, 32)).sum()

    np.testing.assert_allclose(jax.jacfwd(total)(1.0), jax.grad(total)(1.0), rtol=1e-4)


def test_hessian_of_a_render_where_auto_would_tile():
    """`jax.hessian` is `jacfwd` around `jacrev`: the innermost trace is reverse mode, the
    forward mode one around it, and "auto" must see it to leave the tiled renderer
    (reverse mode only): it failed with "can't apply forward-mode autodiff (jvp) to a
    custom_vjp function"."""
    model = dp.Circles.init(10, key=jax.random.key(0))

    def energy(centres, method="auto"):
        moved = dp.Circles.from_values(centres, model.radii, model.colours, model.opacities)
        return jnp.sum(moved.render_image((32, 32), method=method) ** 2)

    expected = jax.hessian(lambda c: energy(c, "scan"))(model.centres)
    np.testing.assert_allclose(jax.hessian(energy)(model.centres), expected, rtol=1e-4, atol=1e-4)
    jitted = jax.jit(jax.hessian(energy))(model.centres)
    np.testing.assert_allclose(jitted, expected, rtol=1e-4, atol=1e-4)
    hvp = jax.jvp(jax.grad(energy), (model.centres,), (jnp.ones_like(model.centres),))[1]
    np.testing.assert_allclose(hvp, expected.reshape(20, 20).sum(1).reshape(10, 2), rtol=1e-4,
                               atol=1e-3)  # fmt: skip


def test_second_derivative_of_a_render_where_auto_would_tile():
    """`jax.grad` of `jax.grad`: the tiled renderer's backward pass loops a number of
    times known at run time, which reverse mode cannot differentiate (JAX's "Reverse-mode
    differentiation does not work for lax.while_loop"); "auto" takes the scan, also with
    a `jax.jit` between the two, and an explicit "tiled" is refused clearly."""
    model = dp.Circles.init(10, key=jax.random.key(0))

    def total(grow, method="auto"):
        grown = eqx.tree_at(lambda m: m.raw_radii, model, model.raw_radii + grow)
        return jnp.sum(grown.render_image((32, 32), method=method) ** 2)

    expected = jax.grad(jax.grad(lambda g: total(g, "scan")))(0.0)
    np.testing.assert_allclose(jax.grad(jax.grad(total))(0.0), expected, rtol=1e-4)
    np.testing.assert_allclose(jax.grad(jax.jit(jax.grad(total)))(0.0), expected, rtol=1e-4)
    with pytest.raises(ValueError, match='method="scan"'):
        jax.grad(jax.grad(lambda g: total(g, "tiled")))(0.0)
    # First order keeps the tiled renderer's gradient, the same as the scan's.
    np.testing.assert_allclose(jax.grad(total)(0.0), jax.grad(lambda g: total(g, "scan"))(0.0),
                               rtol=1e-4)  # fmt: skip


def test_fit_method_is_checked(photo):
    model = dp.Circles.init(3, key=jax.random.key(0), target=photo)
    with pytest.raises(ValueError, match="must be one of"):
        dp.fit(model, photo, steps=1, method="fast")
    kernel = dp.kernels.disk(5)
    with pytest.raises(TypeError, match="renders one way"):
        dp.fit(dp.SeparableFilters.from_svd(kernel, 1), kernel[..., None], steps=1, method="scan")
    # A user's model around a shape set: the advice is to pick the renderer inside.
    with pytest.raises(TypeError, match=r"inner\.render\(points, .*method='scan'\)"):
        dp.fit(_Gain(model, jnp.ones(())), photo, steps=1, method="scan")


# -- trainable= ----------------------------------------------------------------------------


def test_frozen_colours_stay_bit_identical_and_get_no_weight_decay(photo):
    model = dp.Circles.init(10, key=jax.random.key(0), target=photo)
    spec = model.trainable("geometry")
    result = dp.fit(
        model, photo, steps=60, trainable=spec, optimizer=optax.adamw(1e-2, weight_decay=0.5)
    )
    fitted = result.model
    np.testing.assert_array_equal(fitted.raw_colours, model.raw_colours)
    np.testing.assert_array_equal(fitted.raw_opacities, model.raw_opacities)
    np.testing.assert_array_equal(fitted.raw_background, model.raw_background)
    assert not np.allclose(fitted.centres, model.centres)
    assert float(result.losses[-1]) < float(result.losses[0])


SHAPE_TYPES = [dp.Circles, dp.Ellipses, dp.Rectangles, dp.Triangles, dp.Gaussians]


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("trainable", [None, "appearance"])
def test_a_fixed_background_stays_fixed_under_weight_decay(photo, cls, trainable):
    model = cls.init(6, key=jax.random.key(0), target=photo, learn_background=False)
    spec = None if trainable is None else model.trainable(trainable, "geometry")
    decay = optax.adamw(1e-2, weight_decay=0.5)
    fitted = dp.fit(model, photo, steps=20, trainable=spec, optimizer=decay).model
    np.testing.assert_array_equal(fitted.raw_background, model.raw_background)
    assert not np.array_equal(fitted.raw_colours, model.raw_colours)
    if trainable is not None:
        return
    # In layers too: the fixed layer's background stays, a learning bottom one's moves,
    # and an upper layer's (never drawn) stays (weight decay moved it).
    learning = dp.Circles.init(4, key=jax.random.key(1), target=photo)
    layers = dp.fit(dp.Layers([model, learning]), photo, steps=20, optimizer=decay).model
    np.testing.assert_array_equal(layers.layers[0].raw_background, model.raw_background)
    np.testing.assert_array_equal(layers.layers[1].raw_background, learning.raw_background)
    layers = dp.fit(dp.Layers([learning, model]), photo, steps=20, optimizer=decay).model
    assert not np.array_equal(layers.layers[0].raw_background, learning.raw_background)
    np.testing.assert_array_equal(layers.layers[1].raw_background, model.raw_background)
    learning_top = dp.Circles.init(3, key=jax.random.key(2), target=photo)
    layers = dp.Layers([learning, learning_top])
    fitted = dp.fit(
        layers, photo, steps=20, optimizer=decay, trainable=layers.trainable("appearance")
    )
    np.testing.assert_array_equal(
        fitted.model.layers[1].raw_background, learning_top.raw_background
    )


def test_a_model_with_nothing_to_train_is_named(photo):
    # A model whose only array is an integer one failed deep in the step loop ("Need
    # at least one array to stack"); `trainable=False` already said what was wrong.
    class Level(dp.AbstractModel):
        level: jax.Array

        @property
        def num_channels(self):
            return 3

        def render(self, points, *, pixel_size):
            return jnp.zeros((points.shape[0], 3)) + self.level / 10

    for run in (lambda m: dp.fit(m, photo, steps=2), jax.jit(lambda m: dp.fit(m, photo, steps=2))):
        with pytest.raises(ValueError, match="no floating-point parameter to train"):
            run(Level(jnp.ones(3, jnp.int32)))


def test_a_user_render_of_the_wrong_layout_is_named(photo):
    # `render` returning `(C, P)`: `render_image` reshaped it into a scrambled picture
    # and a full-image fit trained on it; a minibatched fit said only that `pred` and
    # `target` differ in shape.
    class Ramp(dp.AbstractModel):
        w: jax.Array

        @property
        def num_channels(self):
            return 3

        def render(self, points, *, pixel_size):
            return (points @ self.w).T

    model = Ramp(jnp.eye(2, 3))
    for run in (
        lambda: model.render_image((4, 4)),
        lambda: jax.jit(lambda m: m.render_image((4, 4)))(model),
        lambda: dp.fit(model, photo, steps=2),
        lambda: dp.fit(model, photo, steps=2, batch=0.5, key=jax.random.key(0)),
    ):
        with pytest.raises(
            ValueError, match=r"Ramp.render` must return an array of shape `\(P, C\)`"
        ):
            run()


def test_trainable_as_a_function_and_bad_specs(photo):
    model = dp.Circles.init(4, key=jax.random.key(0), target=photo)
    fitted = dp.fit(model, photo, steps=5, trainable=lambda leaf: leaf.ndim == 1).model
    np.testing.assert_array_equal(fitted.raw_centres, model.raw_centres)  # (N, 2): frozen
    assert not np.array_equal(fitted.raw_radii, model.raw_radii)
    with pytest.raises(ValueError, match="trainable"):
        dp.fit(model, photo, steps=2, trainable=(True, False))
    with pytest.raises(ValueError, match="selects no parameter"):
        dp.fit(model, photo, steps=2, trainable=False)
    # No kinds: every parameter, as `Layers.trainable()` (it selected none).
    everything = dp.fit(model, photo, steps=5, trainable=model.trainable()).model
    assert not np.array_equal(everything.raw_centres, model.raw_centres)
    assert not np.array_equal(everything.raw_colours, model.raw_colours)
    # A function's own error is named as its own (it was called a structure mismatch).
    with pytest.raises(ValueError, match="a function `leaf -> bool`, raised AttributeError"):
        dp.fit(model, photo, steps=2, trainable=lambda leaf: leaf.foo)
    with pytest.raises(ValueError, match="role kinds"):
        model.trainable("colours")


# -- Layers --------------------------------------------------------------------------------


def _concatenated(a, b):
    return dp.Circles.from_values(
        jnp.concatenate([a.centres, b.centres]),
        jnp.concatenate([a.radii, b.radii]),
        jnp.concatenate([a.colours, b.colours]),
        jnp.concatenate([a.opacities, b.opacities]),
        background=a.background,
    )


def test_layers_render_like_one_concatenated_set(photo):
    a = dp.Circles.init(6, key=jax.random.key(1), target=photo, size_range=(0.1, 0.3))
    b = dp.Circles.init(5, key=jax.random.key(2), target=photo, size_range=(0.1, 0.3))
    layers, joint = dp.Layers([a, b]), _concatenated(a, b)
    np.testing.assert_allclose(
        layers.render_image((20, 24)), joint.render_image((20, 24), method="scan"), atol=1e-5
    )
    points = jax.random.uniform(jax.random.key(3), (50, 2))
    grad = jax.grad(lambda m: jnp.sum(m.render(points, pixel_size=0.05) ** 2))(layers)
    grad_joint = jax.grad(lambda m: jnp.sum(m.render(points, pixel_size=0.05) ** 2))(joint)
    np.testing.assert_allclose(grad[1].raw_centres, grad_joint.raw_centres[6:], atol=1e-4)


def test_layers_of_two_types_fit_save_load_and_export(photo, tmp_path):
    back = dp.Rectangles.init(4, key=jax.random.key(1), target=photo)
    front = dp.Circles.init(6, key=jax.random.key(2), target=photo)
    result = dp.fit(dp.Layers([back, front]), photo, steps=30, batch=0.5, key=jax.random.key(0))
    assert float(result.losses[-1]) < float(result.losses[0])
    loaded = dp.load(dp.save(tmp_path / "layers.eqx", result.model))
    assert isinstance(loaded, dp.Layers) and isinstance(loaded[0], dp.Rectangles)
    np.testing.assert_array_equal(
        loaded.render_image((16, 16)), result.model.render_image((16, 16))
    )
    svg = dp.to_svg(loaded, (16, 16))
    # The rectangles' soft edges are outlines (no blur filter), the circles' gradients
    # have ids of their layer's own.
    assert svg.count("<g fill=") == 10 and 'id="layer1-circle0"' in svg
    assert "<filter" not in svg and svg.count("<rect") > 4 + 1


def test_layers_refuse_bad_input(photo):
    with pytest.raises(TypeError, match="shape set"):
        dp.Layers([dp.Circles.init(2, key=jax.random.key(0)), "not a set"])
    with pytest.raises(TypeError, match="non-empty"):
        dp.Layers([])
    with pytest.raises(ValueError, match="channels"):
        dp.Layers([dp.Circles.init(2, key=jax.random.key(0), channels=1),
                   dp.Circles.init(2, key=jax.random.key(0))])  # fmt: skip

    # A batch beside one set (or batches of two sizes) broke deep inside the renderer.
    def batch(size):
        keys = jax.random.split(jax.random.key(0), size)
        return jax.vmap(lambda k: dp.Circles.init(2, key=k))(keys)

    with pytest.raises(ValueError, match=r"layers\[1\] a batch of \(3,\)"):
        dp.Layers([dp.Circles.init(2, key=jax.random.key(0)), batch(3)])
    with pytest.raises(ValueError, match=r"layers\[1\] a batch of \(2,\)"):
        dp.Layers([batch(3), batch(2)])
    assert dp.Layers([batch(3), batch(3)]).layers[0].raw_radii.shape == (3, 2)


# -- Filtered ------------------------------------------------------------------------------


def test_filtered_scene_trains_the_bank_only(photo):
    kernel = dp.kernels.polygon(7, 6)
    kernel = kernel / kernel.sum()
    exact = jnp.stack(
        [jax.scipy.signal.convolve2d(photo[..., c], kernel, mode="same") for c in range(3)], -1
    )
    model = dp.Filtered(dp.SeparableFilters.from_svd(kernel, 1), photo)
    np.testing.assert_allclose(model.render_image((16, 16)), model.bank.apply(photo), atol=1e-6)
    pixels = dp.pixel_centres((16, 16)).reshape(-1, 2)
    np.testing.assert_allclose(
        model.render(pixels, pixel_size=1 / 16), model.filtered().reshape(-1, 3), atol=1e-6
    )
    optimizer = dp.SeparableFilters.recommended_optimizer(peak=float(kernel.max()))
    result = dp.fit(model, exact, steps=50, optimizer=optimizer, trainable=model.trainable())
    np.testing.assert_array_equal(result.model.image, photo)
    assert float(result.losses[-1]) < float(result.losses[0])
    # Without `trainable` too, weight decay included: the scene is never the optimizer's
    # (adamw moved it by 0.025 in 5 steps).
    decayed = dp.fit(model, exact, steps=5, optimizer=optax.adamw(1e-2, weight_decay=0.5))
    np.testing.assert_array_equal(decayed.model.image, photo)
    assert not np.array_equal(decayed.model.bank.vertical, model.bank.vertical)
    with pytest.raises(ValueError, match="scene's size"):
        model.render_image((8, 8))


# -- plain functions as losses ------------------------------------------------------------


def test_a_plain_function_scales_as_a_loss(photo):
    def luma_l2(pred, target):
        return jnp.mean(((pred - target) @ jnp.array([0.299, 0.587, 0.114])) ** 2)

    loss = dp.L2() + 3.0 * dp.Loss(luma_l2)
    pred = jnp.zeros_like(photo)
    np.testing.assert_allclose(
        loss(pred, photo), dp.L2()(pred, photo) + 3.0 * luma_l2(pred, photo), rtol=1e-6
    )
    model = dp.Circles.init(4, key=jax.random.key(0), target=photo)
    assert dp.fit(model, photo, loss=loss, steps=3).losses.shape == (3,)
    with pytest.raises(TypeError, match="function"):
        dp.Loss(3.0)  # pyright: ignore[reportArgumentType]


class _WeightedLuma(eqx.Module):
    """A loss with weights of its own, as a learned or perceptual loss has."""

    weights: jax.Array

    def __call__(self, pred, target):
        return jnp.mean(((pred - target) @ self.weights) ** 2)


def test_a_module_with_weights_is_a_loss_whose_weights_get_gradients(photo):
    model = dp.Circles.init(6, key=jax.random.key(0), target=photo)

    def final_loss(weights):
        return dp.fit(model, photo, loss=_WeightedLuma(weights), steps=3).losses[-1]

    weights = jnp.array([0.3, 0.6, 0.1])
    first = final_loss(weights)  # eager first: its weights must not become static
    assert not jnp.allclose(final_loss(2 * weights), first)
    grad = jax.grad(final_loss)(weights)
    h = 1e-2
    for i in range(3):
        fd = (final_loss(weights.at[i].add(h)) - final_loss(weights.at[i].add(-h))) / (2 * h)
        assert abs(grad[i] - fd) <= 0.05 * abs(fd), (i, grad, fd)
    assert final_loss(weights) == first  # the traced fit left nothing behind


@pytest.mark.parametrize("batch", [None, 0.5])
def test_a_partial_holding_a_traced_weight_is_a_loss_under_jit_and_vmap(photo, batch):
    # `fit`'s first check of the loss compiled it with the loss as the function: JAX
    # compared two such losses with `==`, and a tracer inside them became a bool.
    model = dp.Circles.init(3, key=jax.random.key(0), target=photo)

    def huberish(pred, target, w):
        return w * jnp.mean((pred - target) ** 2) + jnp.mean(jnp.abs(pred - target))

    def final_loss(w):
        loss = jax.tree_util.Partial(huberish, w=w)
        fitted = dp.fit(model, photo, loss=loss, steps=3, batch=batch, key=jax.random.key(1))
        return fitted.losses[-1]

    weights = jnp.array([0.5, 2.0])
    swept = jax.vmap(final_loss)(weights)
    one_by_one = jnp.stack([final_loss(w) for w in weights])
    np.testing.assert_allclose(swept, one_by_one, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(final_loss)(weights[0]), one_by_one[0], rtol=1e-5)


def test_paint_refuses_a_neighbourhood_loss_up_front(photo):
    with pytest.raises(ValueError, match="sampled pixels"):
        dp.paint(photo, 3, key=jax.random.key(0), steps=2, loss=dp.SSIM())


def test_filtered_refuses_bad_input(photo):
    bank = dp.SeparableFilters.from_svd(dp.kernels.disk(5), 1)
    with pytest.raises(TypeError, match="SeparableFilters"):
        dp.Filtered("a bank", photo)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        dp.Filtered(bank, photo[..., 0])
    with pytest.raises(ValueError, match="border"):
        dp.Filtered(bank, photo, border="mirror")


def test_layers_draw_the_bottom_layers_background_and_learn_only_it():
    # Which layer's background shows could not be seen: every test stacked layers
    # with the same background.
    def layer(background, x):
        return dp.Circles.from_values(
            [[x, 0.2]], [0.05], [[0.5, 0.5, 0.5]], [1.0], background=background
        )

    layers = dp.Layers([layer(0.0, 0.2), layer(1.0, 0.8)])
    corner = layers.render_image((16, 16))[-1, -1]  # no shape covers it
    np.testing.assert_allclose(corner, 0.0, atol=1e-5)
    grads = jax.grad(lambda m: jnp.sum(m.render_image((8, 8))))(layers)
    assert float(jnp.abs(grads[0].raw_background).sum()) > 0
    assert float(jnp.abs(grads[1].raw_background).sum()) == 0


class _Gain(dp.AbstractModel):
    """A user's model around a built-in one: a learned gain on its picture."""

    inner: dp.AbstractModel
    gain: jax.Array

    @property
    def num_channels(self) -> int:
        return self.inner.num_channels

    def render(self, points, *, pixel_size):
        return self.inner.render(points, pixel_size=pixel_size) * self.gain


@pytest.mark.parametrize("nesting", [1, 2])
def test_fixed_parameters_stay_fixed_inside_a_users_model(photo, nesting):
    # Only the outermost model was asked what it fixes: weight decay moved the
    # background of a `learn_background=False` set, or a `Filtered`'s scene, inside a
    # user's model.
    target = photo[:16, :16]
    circles = dp.Circles.init(5, key=jax.random.key(0), target=target, learn_background=False)
    bank = dp.SeparableFilters.from_svd(dp.kernels.disk(5, normalize=True), rank=2)
    filtered = dp.Filtered(bank, target)
    optimizer = optax.adamw(1e-2, weight_decay=0.1)
    for inner, fixed in [(circles, lambda m: m.raw_background), (filtered, lambda m: m.image)]:
        model = inner
        for _ in range(nesting):
            model = _Gain(model, jnp.ones(()))
        fitted = dp.fit(model, target, steps=5, optimizer=optimizer).model
        for _ in range(nesting):
            fitted = fitted.inner
        np.testing.assert_array_equal(fixed(fitted), fixed(inner))
        trained = (lambda m: m.raw_colours) if inner is circles else (lambda m: m.bank.vertical)
        assert float(jnp.abs(trained(fitted) - trained(inner)).max()) > 0  # the rest trains


@pytest.mark.parametrize("wrong", ["transposed", "flat"])
def test_a_users_render_image_of_the_wrong_shape_is_named_not_the_loss(photo, wrong):
    class Picture(_Gain):
        def render_image(self, shape):
            image = self.inner.render_image(shape) * self.gain
            return jnp.swapaxes(image, 0, 1) if wrong == "transposed" else image.reshape(-1, 3)

    target = photo[:12, :8]
    model = Picture(dp.Circles.init(3, key=jax.random.key(0), target=target), jnp.ones(()))
    with pytest.raises(ValueError, match=r"`Picture.render_image\(\(H, W\)\)` must return"):
        dp.fit(model, target, steps=2)


def test_a_num_channels_that_is_an_array_is_refused_with_the_fix(photo):
    # Read inside the compiled step, an array there became a tracer: JAX's
    # TracerBoolConversionError from deep inside the step.
    class Grey(_Gain):
        @property
        def num_channels(self):
            return jnp.asarray(3)

    model = Grey(dp.Circles.init(3, key=jax.random.key(0), target=photo), jnp.ones(()))
    with pytest.raises(TypeError, match=r"`Grey.num_channels` must be a Python int"):
        dp.fit(model, photo, steps=2)
