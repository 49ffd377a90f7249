"""Shape sets: compositing equals the naive loop, the frame, constructors, gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import diffprims as dp

from .helpers import naive_over, random_points, shape_types


def _jitter(model, key, scale=1.0):
    """Randomise every parameter so opacities, colours and sizes all differ."""
    leaves, treedef = jax.tree.flatten(model)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        x + scale * jax.random.normal(k, x.shape, x.dtype) * (0.05 if x.ndim == 2 else 1.0)
        if eqx.is_inexact_array(x)
        else x
        for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, leaves)


@pytest.mark.parametrize("shape_type", shape_types(), ids=lambda t: t.__name__)
@pytest.mark.parametrize("n", [1, 7, 40])
def test_over_compositing_equals_naive_loop(shape_type, n, getkey):
    model = _jitter(shape_type.init(n, key=getkey(), aspect=1.5), getkey())
    points = random_points(getkey(), 300, aspect=1.5)
    pred = model.render(points, pixel_size=1 / 32)
    expected = naive_over(model, points, 1 / 32)
    np.testing.assert_allclose(pred, expected, atol=1e-5)


@pytest.mark.parametrize("shape_type", shape_types(), ids=lambda t: t.__name__)
def test_render_image_equals_render_on_pixel_centres(shape_type, getkey):
    model = shape_type.init(12, key=getkey(), aspect=20 / 12)
    image = model.render_image((12, 20))
    points = dp.pixel_centres((12, 20)).reshape(-1, 2)
    values = model.render(points, pixel_size=1 / 12).reshape(12, 20, -1)
    assert image.shape == (12, 20, 3)
    np.testing.assert_allclose(image, values, atol=1e-6)


def test_pixel_centres_frame():
    grid = dp.pixel_centres((4, 8))
    assert grid.shape == (4, 8, 2)
    # pixel (i, j) has centre ((j + 1/2) / H, (i + 1/2) / H)
    np.testing.assert_allclose(grid[1, 5], [(5 + 0.5) / 4, (1 + 0.5) / 4])
    assert float(grid[..., 0].max()) < 8 / 4 and float(grid[..., 1].max()) < 1


def test_non_square_images_keep_circles_round():
    circle = dp.Circles.from_values(
        [[1.0, 0.5]], [0.25], [[1.0, 0.0, 0.0]], [1.0], background=0.0, softness=0.5
    )
    image = np.asarray(circle.render_image((64, 128)))[..., 0]
    across = int((image[32] > 0.5).sum())
    down = int((image[:, 64] > 0.5).sum())
    assert across == down == 32  # diameter 0.5 of the height, 64 px tall


def test_edge_width_scales_with_the_grid():
    circle = dp.Circles.from_values([[0.5, 0.5]], [0.25], [[1.0, 1.0, 1.0]], [1.0], background=0.0)
    for height in (64, 512):
        # one pixel outside the edge, on the grid being rendered
        point = jnp.array([[0.5 + 0.25 + 1.0 / height, 0.5]])
        value = circle.render(point, pixel_size=1.0 / height)[0, 0]
        np.testing.assert_allclose(value, jax.nn.sigmoid(-1.0 / circle.softness), rtol=1e-4)


def test_from_values_round_trip():
    centres = jnp.array([[0.1, 0.2], [0.7, 0.9]])
    radii = jnp.array([0.05, 0.3])
    colours = jnp.array([[0.0, 0.5, 1.0], [0.2, 0.3, 0.4]])
    opacities = jnp.array([1.0, 0.25])
    model = dp.Circles.from_values(centres, radii, colours, opacities, background=[0.1, 0.2, 0.3])
    np.testing.assert_allclose(model.centres, centres, atol=1e-6)
    np.testing.assert_allclose(model.radii, radii, rtol=1e-5)
    np.testing.assert_allclose(model.colours, colours, atol=1e-5)
    np.testing.assert_allclose(model.opacities, opacities, atol=1e-5)
    np.testing.assert_allclose(model.background, [0.1, 0.2, 0.3], atol=1e-5)
    assert model.num_shapes == 2 and model.num_channels == 3


def test_init_takes_colours_from_the_target(getkey):
    target = jnp.zeros((20, 40, 3)).at[:, :20].set(jnp.array([1.0, 0.0, 0.0]))
    target = target.at[:, 20:].set(jnp.array([0.0, 0.0, 1.0]))
    model = dp.Circles.init(50, key=getkey(), target=target)
    left = np.asarray(model.centres[:, 0] < 1.0)
    expected = np.where(left[:, None], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(model.colours, expected, atol=1e-4)
    np.testing.assert_allclose(model.background, [0.5, 0.0, 0.5], atol=1e-4)
    assert float(model.centres[:, 0].max()) <= 2.0  # the frame is W / H = 2 wide


def test_init_is_deterministic():
    a = dp.Circles.init(10, key=jax.random.key(3))
    b = dp.Circles.init(10, key=jax.random.key(3))
    c = dp.Circles.init(10, key=jax.random.key(4))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not np.array_equal(a.centres, c.centres)


@pytest.mark.parametrize("shape_type", shape_types(), ids=lambda t: t.__name__)
def test_gradients_match_finite_differences(shape_type, getkey):
    with jax.enable_x64(True):
        model = _jitter(shape_type.init(4, key=getkey(), softness=3.0), getkey(), 0.5)
        model = jax.tree.map(
            lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, model
        )
        points = random_points(getkey(), 64).astype(jnp.float64)
        weights = jax.random.normal(getkey(), (64, 3), jnp.float64)
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def f(params):
            model = eqx.combine(params, static)
            return jnp.sum(weights * model.render(points, pixel_size=1 / 16))

        check_grads(f, (params,), order=1, modes=["rev"], atol=1e-4, rtol=1e-4)


def _l2_grads(model, points, target, pixel_size=1 / 32):
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(params):
        pred = eqx.combine(params, static).render(points, pixel_size=pixel_size)
        return jnp.mean((pred - target) ** 2)

    return jax.grad(loss)(params)


@pytest.mark.parametrize(
    "centres, radii, opacities",
    [
        ([[0.5, 0.5]], [0.0], [0.5]),  # radius exactly 0
        ([[0.5, 0.5]], [0.2], [0.0]),  # opacity exactly 0
        ([[0.5, 0.5]], [0.2], [1.0]),  # opacity exactly 1
        ([[0.5, 0.5], [0.5, 0.5]], [0.1, 0.3], [1.0, 1.0]),  # two opaque, same centre
    ],
)
def test_degenerate_circles_have_finite_gradients(centres, radii, opacities):
    n = len(radii)
    model = dp.Circles.from_values(centres, radii, jnp.full((n, 3), 0.5), opacities)
    points = jnp.array([[0.5, 0.5], [0.1, 0.9], [0.6, 0.5]])  # one exactly at the centre
    for target in (jnp.zeros((3, 3)), jnp.full((3, 3), 0.5)):  # flat targets
        grads = _l2_grads(model, points, target)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_take_selects_shapes_in_order(getkey):
    model = dp.Circles.init(6, key=getkey())
    sub = model.take(jnp.array([4, 1]))
    np.testing.assert_array_equal(sub.centres, model.centres[jnp.array([4, 1])])
    np.testing.assert_array_equal(sub.background, model.background)


def test_values_written_as_python_ints_are_numbers_and_int_arrays_are_refused():
    # `[[0, 0, 0]]` (black) was refused as "an int64 array" with advice for uint8 images.
    circles = dp.Circles.from_values([[0.5, 0.5]], [0.25], [[0, 0, 0]], [1], background=1)
    np.testing.assert_allclose(circles.colours, 0.0, atol=1e-6)
    assert circles.render_image((8, 8)).dtype == jnp.float32
    with pytest.raises(TypeError, match="divide uint8 images by 255"):
        dp.Circles.from_values([[0.5, 0.5]], [0.25], np.zeros((1, 3), np.uint8), [1.0])


@pytest.mark.parametrize("shape_type", shape_types(), ids=lambda t: t.__name__)
def test_a_float64_set_gets_float64_depths(shape_type):
    # They were float32: a float64 set switched to "depth" mixed dtypes, and a float64
    # gradient check of its depths ran in float32.
    with jax.enable_x64(True):
        model = shape_type.init(3, key=jax.random.key(0))
        wide = jax.tree.map(
            lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, model
        )
        assert wide.depths.dtype == wide.with_compositing("depth").raw_depths.dtype == jnp.float64
        assert (
            model.depths.dtype == model.with_compositing("depth").raw_depths.dtype == jnp.float32
        )
        grads = eqx.filter_grad(lambda m: jnp.sum(m.render_image((4, 4))))(
            wide.with_compositing("depth")
        )
        assert grads.raw_depths.dtype == jnp.float64
