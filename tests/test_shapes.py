"""Shape types beyond circles, compositing modes, learnable depth and background."""

import dataclasses
import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp
from diffprims._shapes._compositing import composite

from .helpers import shape_types, tree_allclose

MODES = ["over", "additive", "depth"]
SHAPES = shape_types()
ids = lambda t: t.__name__  # noqa: E731


def _naive(model, points, pixel_size):
    """Reference compositing in float64, one shape at a time, for every mode."""
    alphas = np.asarray(model.alphas(points, pixel_size=pixel_size), np.float64)
    colours = np.asarray(model.colours, np.float64)
    background = np.asarray(model.background, np.float64)
    if model.compositing == "over":
        image = np.broadcast_to(background, (points.shape[0], colours.shape[1]))
        for alpha, colour in zip(alphas, colours, strict=True):
            image = (1 - alpha[:, None]) * image + alpha[:, None] * colour
        return image
    if model.compositing == "additive":
        return background + alphas.T @ colours
    weights = alphas * np.exp(np.asarray(model.depths, np.float64))[:, None]
    mix = (weights.T @ colours) / weights.sum(0)[:, None]
    transmittance = np.prod(1 - alphas, 0)[:, None]
    return (1 - transmittance) * mix + transmittance * background


@pytest.mark.parametrize("shape_type", SHAPES, ids=ids)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_equals_its_naive_definition(shape_type, mode, getkey):
    model = shape_type.init(9, key=getkey(), size_range=(0.1, 0.4), compositing=mode)
    model = eqx.tree_at(lambda m: m.raw_opacities, model, jax.random.normal(getkey(), (9,)))
    points = jax.random.uniform(getkey(), (300, 2))
    got = model.render(points, pixel_size=1 / 32)
    np.testing.assert_allclose(got, _naive(model, points, 1 / 32), atol=2e-5)
    stacked = composite(
        mode, model.alphas(points, pixel_size=1 / 32), model.colours, model.background,
        model.depths,
    )  # fmt: skip
    np.testing.assert_allclose(stacked, got, atol=2e-5)


@pytest.mark.parametrize("shape_type", SHAPES, ids=ids)
def test_geometry_is_where_it_says(shape_type, getkey):
    """Inside a shape's bounds coverage is high at the centre; far outside it is ~0."""
    model = shape_type.init(5, key=getkey(), size_range=(0.1, 0.2))
    bounds = model.bounds()
    centres = (bounds[:, :2] + bounds[:, 2:]) / 2
    far = bounds[:, 2:] + 10 / 64  # ten pixels past each box's corner
    coverage_far = jax.vmap(lambda m, p: m.coverage(p[None], 1 / 64)[0, 0])(
        jax.tree.map(lambda x: x[:, None] if x.ndim else x, _per_shape(model)), far
    )
    assert np.all(np.asarray(coverage_far) < 1e-3)
    if shape_type is not dp.Triangles:  # a triangle's box centre may be near an edge
        inside = jnp.diagonal(model.coverage(centres, 1 / 64))
        assert np.all(np.asarray(inside) > 0.5)


def _per_shape(model):
    """The model with a leading axis to vmap over one shape at a time."""
    return eqx.tree_at(lambda m: m.raw_background, model, jnp.zeros((model.num_shapes, 3)))


def test_ellipse_with_equal_axes_is_a_circle(getkey):
    centres = jax.random.uniform(getkey(), (4, 2))
    radii = jnp.array([0.1, 0.2, 0.05, 0.3])
    colours, opacities = jnp.full((4, 3), 0.5), jnp.full((4,), 0.8)
    circles = dp.Circles.from_values(centres, radii, colours, opacities)
    angles = jax.random.uniform(getkey(), (4,))
    ellipses = dp.Ellipses.from_values(
        centres, jnp.stack([radii, radii], -1), angles, colours, opacities
    )
    points = jax.random.uniform(getkey(), (500, 2))
    np.testing.assert_allclose(
        ellipses.coverage(points, 0.01), circles.coverage(points, 0.01), atol=1e-5
    )


def test_rotation_turns_rectangles_and_ellipses():
    for cls, size_name in [(dp.Rectangles, "half_sizes"), (dp.Ellipses, "radii")]:
        values = {size_name: [[0.3, 0.05], [0.3, 0.05]]}
        model = cls.from_values(
            centres=[[0.5, 0.5], [0.5, 0.5]], angles=[0.0, np.pi / 2],
            colours=[[1.0, 0.0, 0.0]] * 2, opacities=[1.0, 1.0], **values,
        )  # fmt: skip
        points = jnp.array([[0.75, 0.5], [0.5, 0.75]])
        cover = np.asarray(model.coverage(points, 0.005))
        assert cover[0, 0] > 0.99 and cover[0, 1] < 0.01  # along x, unrotated
        assert cover[1, 1] > 0.99 and cover[1, 0] < 0.01  # along y after a quarter turn


def test_triangle_winding_does_not_matter(getkey):
    vertices = jax.random.uniform(getkey(), (6, 3, 2))
    colours, opacities = jnp.full((6, 3), 0.5), jnp.ones((6,))
    a = dp.Triangles.from_values(vertices, colours, opacities)
    b = dp.Triangles.from_values(vertices[:, ::-1], colours, opacities)
    points = jax.random.uniform(getkey(), (400, 2))
    np.testing.assert_allclose(a.coverage(points, 0.01), b.coverage(points, 0.01), atol=1e-5)


FLAT_TRIANGLES = {
    "horizontal": [[0.2, 0.3], [0.8, 0.3], [0.5, 0.3]],
    "diagonal": [[0.1, 0.1], [0.7, 0.7], [0.3, 0.3]],
    "two-equal": [[0.13, 0.37], [0.71, 0.59], [0.71, 0.59]],
    "point": [[0.4, 0.4]] * 3,
}


_DRAW_FLAT = """
import json, sys, jax, jax.numpy as jnp, numpy as np, diffprims as dp
points = jnp.array([[0.5, 0.3], [0.4, 0.3], [0.4, 0.4], [0.5, 0.45], [0.3, 0.3]])
tiled = jax.jit(lambda m: m.render_image((32, 32), method="tiled"))
coverage = jax.jit(lambda m: m.coverage(points, 0.01))
for name, vertices in json.loads(sys.argv[1]).items():
    model = dp.Triangles.from_values([vertices], [[1.0] * 3], [1.0], background=0.0, softness=0.3)
    scan = model.render_image((32, 32), method="scan")
    assert float(scan.max()) > 0.2, (name, float(scan.max()))  # the line (or dot) is drawn
    np.testing.assert_allclose(tiled(model), scan, atol=1e-5, err_msg=name)
    eager = model.coverage(points, 0.01)
    np.testing.assert_allclose(coverage(model), eager, atol=1e-5, err_msg=name)
"""


def test_a_flat_triangle_draws_the_same_line_every_way():
    """A flat triangle is a soft line (a point: a soft dot), whatever the renderer and
    with or without `jit`. Its winding came from the sign of a rounding residue that
    XLA's fusion computed differently in two places, and one program drew nothing where
    another drew the line (scan max 1e-6, tiled 0.42). Run as users run it, with XLA's
    optimisations (the suite turns them off, and with them the fusion)."""
    unset = ("JAX_DISABLE_MOST_OPTIMIZATIONS", "XLA_FLAGS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    script = [sys.executable, "-c", _DRAW_FLAT, json.dumps(FLAT_TRIANGLES)]
    run = subprocess.run(script, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


AXIS_ALIGNED = {
    "horizontal-edge": [[0.2, 0.8], [0.8, 0.8], [0.5, 0.2]],  # the class's own example
    "vertical-edge": [[0.2, 0.2], [0.2, 0.8], [0.7, 0.5]],
}


@pytest.mark.parametrize("method", ["scan", "tiled"])
@pytest.mark.parametrize("vertices", AXIS_ALIGNED.values(), ids=AXIS_ALIGNED.keys())
def test_a_triangle_with_an_axis_aligned_edge_has_the_true_gradient(vertices, method):
    """Along a horizontal or vertical edge the box's distance equalled the edge line's,
    and the maximum of the two split the gradient between them: an image's gradient was
    a tenth off finite differences, and scan and tiled picked different sides."""
    with jax.enable_x64(True):
        model = dp.Triangles.from_values([vertices], [[1.0, 0.2, 0.3]], [0.9], background=0.0)
        model = jax.tree.map(
            lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, model
        )
        grey = jnp.full((16, 16, 3), 0.5)

        def loss(raw):
            image = eqx.tree_at(lambda m: m.raw_vertices, model, raw).render_image(
                (16, 16), method=method
            )
            return jnp.mean((image - grey) ** 2)

        jax.test_util.check_grads(
            loss, (model.raw_vertices,), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-5
        )


def test_degenerate_shapes_have_finite_gradients():
    """Zero-size shapes, a point exactly at a centre, a collapsed triangle."""
    point = jnp.array([[0.5, 0.5]])
    models = [
        dp.Ellipses.from_values([[0.5, 0.5]], [[1e-8, 0.2]], [0.0], [[1.0, 0.0, 0.0]], [1.0]),
        dp.Rectangles.from_values([[0.5, 0.5]], [[0.1, 1e-8]], [0.3], [[1.0, 0.0, 0.0]], [1.0]),
        dp.Gaussians.from_values([[0.5, 0.5]], [[1e-6, 0.1]], [0.0], [[1.0, 0.0, 0.0]], [1.0]),
        dp.Triangles.from_values([[[0.5, 0.5]] * 3], [[1.0, 0.0, 0.0]], [1.0]),
        dp.Triangles.from_values([[[0.2, 0.2], [0.5, 0.5], [0.8, 0.8]]], [[1.0, 0.0, 0.0]], [1.0]),
    ]
    for model in models:
        grads = jax.grad(lambda m: jnp.sum(m.render(point, pixel_size=0.01)))(model)
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads)), type(model)


@pytest.mark.parametrize("shape_type", SHAPES, ids=ids)
def test_from_values_round_trip_and_errors(shape_type, getkey):
    model = shape_type.init(3, key=getkey())
    values = _values(model)
    again = type(model).from_values(**values, background=model.background)
    assert tree_allclose(again, model, atol=1e-5)
    bad = dict(values)
    bad["colours"] = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="colours"):
        type(model).from_values(**bad)
    with pytest.raises(TypeError, match="(?i)unexpected keyword"):
        type(model).from_values(**values, depth=1)


def _values(model):
    names = {
        dp.Circles: ["centres", "radii"],
        dp.Ellipses: ["centres", "radii", "angles"],
        dp.Rectangles: ["centres", "half_sizes", "angles"],
        dp.Triangles: ["vertices"],
        dp.Gaussians: ["centres", "scales", "angles"],
    }[type(model)]
    out = {name: np.asarray(getattr(model, name)) for name in names}
    out.update(colours=np.asarray(model.colours), opacities=np.asarray(model.opacities))
    return out


@pytest.mark.parametrize("shape_type", [dp.Ellipses, dp.Rectangles, dp.Gaussians])
def test_from_values_rejects_non_positive_sizes(shape_type):
    size_name = {dp.Ellipses: "radii", dp.Rectangles: "half_sizes", dp.Gaussians: "scales"}
    with pytest.raises(ValueError, match=size_name[shape_type]):
        shape_type.from_values([[0.5, 0.5]], [[0.1, -0.1]], [0.0], [[1.0, 0.0, 0.0]], [1.0])


@pytest.mark.parametrize("shape_type", SHAPES, ids=ids)
def test_svg_geometry_has_one_element_per_shape(shape_type, getkey):
    model = shape_type.init(4, key=getkey())
    for width in [0.0, 0.01]:
        markup = model.svg_geometry(width)
        assert len(markup) == 4 and all(m.startswith("<") for m in markup)


def test_bad_compositing_is_a_clear_error(getkey):
    with pytest.raises(ValueError, match="compositing"):
        dp.Circles.init(3, key=getkey(), compositing="multiply")
    model = dp.Circles.init(3, key=getkey())
    with pytest.raises(ValueError, match="with_compositing"):
        dataclasses.replace(model, raw_depths=jnp.zeros(3))
    with pytest.raises(ValueError, match="raw_depths"):
        dataclasses.replace(model, compositing="depth")


def test_fixed_background_gets_no_gradient(getkey):
    target = jax.random.uniform(getkey(), (8, 8, 3))
    for learn in [True, False]:
        model = dp.Circles.init(3, key=getkey(), learn_background=learn)
        grads = jax.grad(lambda m: jnp.mean((m.render_image((8, 8)) - target) ** 2))(model)
        assert bool(jnp.any(grads.raw_background != 0)) == learn


def test_learned_background_fits_an_empty_target(getkey):
    target = jnp.broadcast_to(jnp.array([0.9, 0.2, 0.4]), (8, 8, 3))
    model = dp.Circles.from_values([[0.5, 0.5]], [0.01], [[0.5, 0.5, 0.5]], [0.0], background=0.5)
    result = dp.fit(model, target, optimizer=optax.adam(0.1), steps=200)
    np.testing.assert_allclose(result.model.background, target[0, 0], atol=0.02)
    fixed = model.with_compositing("over", learn_background=False)
    result = dp.fit(fixed, target, optimizer=optax.adam(0.1), steps=20)
    np.testing.assert_allclose(result.model.background, fixed.background)


def test_with_compositing_depth_then_over_sorts_by_depth(getkey):
    model = dp.Circles.init(5, key=getkey(), compositing="depth")
    depths = jnp.array([3.0, -1.0, 0.5, 2.0, 0.0])
    model = eqx.tree_at(lambda m: m.raw_depths, model, depths)
    over = model.with_compositing("over")
    assert over.compositing == "over" and over.raw_depths is None
    np.testing.assert_allclose(over.centres, model.centres[jnp.argsort(depths)])
    assert model.with_compositing("additive").raw_depths is None


def _mastercard():
    """Red disc in front of a green one, drawn as a hard-edged image."""
    target = dp.Circles.from_values(
        [[0.38, 0.5], [0.62, 0.5]], [0.22, 0.22], [[0.1, 0.8, 0.1], [0.9, 0.1, 0.1]],
        [1.0, 1.0], background=1.0, softness=0.5,
    ).render_image((32, 32))  # fmt: skip
    # The start: the same discs in the reverse order (red at the back), so "over" is
    # stuck in the Mastercard minimum: swapping needs both discs to change colour.
    start = dp.Circles.from_values(
        [[0.62, 0.5], [0.38, 0.5]], [0.22, 0.22], [[0.85, 0.15, 0.15], [0.15, 0.75, 0.15]],
        [0.95, 0.95], background=1.0,
    )  # fmt: skip
    return target, start


def test_mastercard_over_is_stuck_but_learnable_depth_recovers_the_order():
    target, start = _mastercard()
    optimizer = optax.adam(0.03)
    stuck = dp.fit(start, target, optimizer=optimizer, steps=450).model
    learned = dp.fit(start.with_compositing("depth"), target, optimizer=optimizer, steps=300)
    learned = learned.model
    # The red disc (index 0, drawn at the back at first) ends up in front ...
    assert float(learned.depths[0]) > float(learned.depths[1]) + 1.0
    # ... and re-sorting hands over to a plain "over" fit that reaches the target.
    resorted = learned.with_compositing("over")
    np.testing.assert_allclose(resorted.colours[1], learned.colours[0])
    polished = dp.fit(resorted, target, optimizer=optimizer, steps=150).model
    psnr_stuck = float(dp.psnr(stuck.render_image((32, 32)), target))
    psnr_depth = float(dp.psnr(polished.render_image((32, 32)), target))
    assert psnr_depth > 25.0
    assert psnr_depth > psnr_stuck + 4.0


def test_additive_compositing_fits_gaussian_image(getkey):
    target = dp.Gaussians.from_values(
        [[0.3, 0.4], [0.7, 0.6]], [[0.1, 0.05], [0.08, 0.12]], [0.4, -0.3],
        [[0.8, 0.2, 0.1], [0.1, 0.3, 0.9]], [0.9, 0.8], background=0.0,
        compositing="additive",
    ).render_image((24, 24))  # fmt: skip
    model = dp.Gaussians.init(
        6, key=getkey(), target=target, compositing="additive", size_range=(0.05, 0.1)
    )
    result = dp.fit(model, target, optimizer=optax.adam(0.03), steps=300)
    assert float(dp.psnr(result.model.render_image((24, 24)), target)) > 30.0


# -- a brand-new shape type, defined in this test file (the "one door") --------------


class Rings(dp.AbstractShapes):
    """Annuli: a circle of radius `r` with a hole of radius `hole * r`."""

    raw_centres: jax.Array
    raw_radii: jax.Array
    raw_holes: jax.Array

    def coverage(self, points, edge_width):
        distance = jnp.sqrt(jnp.sum((points[None] - self.raw_centres[:, None]) ** 2, -1) + 1e-20)
        radius = jnp.exp(self.raw_radii)[:, None]
        inner = jax.nn.sigmoid(self.raw_holes)[:, None] * radius
        return dp.soft_edge(jnp.maximum(distance - radius, inner - distance), edge_width)

    def bounds(self):
        radius = jnp.exp(self.raw_radii)[:, None]
        return jnp.concatenate([self.raw_centres - radius, self.raw_centres + radius], -1)

    def svg_geometry(self, edge_width):
        return ["<circle/>"] * self.num_shapes

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        holes = jax.random.uniform(key, sizes.shape, minval=-1.0, maxval=1.0)
        return {"raw_centres": centres, "raw_radii": jnp.log(sizes), "raw_holes": holes}


def test_a_new_shape_in_a_few_lines_fits_and_paints(getkey):
    true = Rings.init(1, key=getkey(), size_range=(0.3, 0.3), opacity=0.9)
    true = eqx.tree_at(lambda m: (m.raw_holes, m.raw_centres), true,
                       (jnp.array([0.0]), jnp.array([[0.5, 0.5]])))  # fmt: skip
    target = true.render_image((24, 24))
    model = Rings.init(1, key=getkey(), target=target, size_range=(0.2, 0.2))
    model = eqx.tree_at(lambda m: m.raw_centres, model, jnp.array([[0.45, 0.55]]))
    before = float(dp.psnr(model.render_image((24, 24)), target))
    result = dp.fit(model, target, optimizer=optax.adam(0.02), steps=300)
    after = float(dp.psnr(result.model.render_image((24, 24)), target))
    assert after > before + 10.0 and after > 28.0
    painted = dp.paint(target, 3, key=getkey(), shape=Rings, steps=60, rounds=1)
    assert isinstance(painted.model, Rings)


def test_images_that_are_not_channels_first_are_accepted():
    """The channels-first check refuses `(1|3|4, H, W>4)` only, and never a target whose
    last axis matches the model's channels."""
    key = jax.random.key(0)
    small = jnp.full((3, 5, 3), 0.5)  # three rows of RGB: first axis 3, last axis 3
    assert dp.Circles.init(2, key=key, target=small).num_channels == 3
    assert dp.edge_weights(jnp.full((4, 6, 4), 0.5)).shape == (4, 6, 1)
    wide = dp.Circles.init(2, key=key, channels=8)  # an 8-channel model fits (3, W, 8)
    result = dp.fit(wide, jnp.full((3, 16, 8), 0.5), steps=1)
    assert result.model.num_channels == 8
    with pytest.raises(ValueError, match=r"moveaxis\(target, 0, -1\)"):
        dp.fit(dp.Circles.init(2, key=key), jnp.full((3, 16, 16), 0.5), steps=1)


@pytest.mark.parametrize("cls", SHAPES, ids=ids)
def test_a_batch_of_sets_is_refused_by_render_and_export(cls):
    keys = jax.random.split(jax.random.key(0), 3)
    batch = jax.vmap(lambda k: cls.init(5, key=k))(keys)
    calls = {
        "render_image": lambda: batch.render_image((8, 8)),
        "render": lambda: batch.render(jnp.full((4, 2), 0.5), pixel_size=0.1),
        "to_svg": lambda: dp.to_svg(batch, (8, 8)),
    }
    for action, call in calls.items():
        with pytest.raises(ValueError, match=rf"`{action}` takes one model.*batch of 3 models"):
            call()
    # What the message offers: vmap for pictures, one member at a time for exports.
    assert jax.vmap(lambda m: m.render_image((8, 8)))(batch).shape == (3, 8, 8, 3)
    assert "<svg" in dp.to_svg(jax.tree.map(lambda x: x[0], batch), (8, 8))


@pytest.mark.parametrize("shape_type", SHAPES, ids=ids)
@pytest.mark.parametrize("aspect", [1.0, 2.0])
def test_init_shrinks_many_shapes_to_cover_the_frame_as_200_do(shape_type, aspect):
    """Past 200 shapes a square frame (400 a 2:1 one), `init`'s default sizes shrink so
    that the shapes cover the frame about as often: large shapes that all overlap make
    every pixel draw every shape. Up to there sizes are those of `size_range=(0.03, 0.12)`."""

    def cover(n, **kwargs):
        bounds = shape_type.init(n, key=jax.random.key(0), aspect=aspect, **kwargs).bounds()
        return float(jnp.sum(jnp.prod(bounds[:, 2:] - bounds[:, :2], axis=1))) / aspect

    pivot = int(200 * aspect)
    assert 0.75 < cover(16 * pivot) / cover(pivot) < 1.33
    assert cover(pivot // 4) == cover(pivot // 4, size_range=(0.03, 0.12))
    assert cover(16 * pivot) < 0.1 * cover(16 * pivot, size_range=(0.03, 0.12))


@pytest.mark.parametrize("shape_type", SHAPES, ids=ids)
@pytest.mark.parametrize("n", [20, 1000])
def test_additive_init_starts_as_bright_as_its_target(shape_type, n):
    """`init(target=..., compositing="additive")` scales its colours and background so
    that the sum starts about as bright as the target: with the "over" start's colours
    every pixel added about three shapes to the target's mean (1.8 times it at 1000
    shapes), a start `fit` first had to undo."""
    target = jax.random.uniform(jax.random.key(1), (48, 64, 3), minval=0.2, maxval=0.7)
    model = shape_type.init(n, key=jax.random.key(0), target=target, compositing="additive")
    mean = float(jnp.mean(model.render_image(target.shape[:2])))
    assert abs(mean - float(jnp.mean(target))) < 0.15 * float(jnp.mean(target)), mean
    plain = shape_type.init(n, key=jax.random.key(0), compositing="additive")
    assert 0.35 < float(jnp.mean(plain.render_image((256, 256)))) < 0.65
