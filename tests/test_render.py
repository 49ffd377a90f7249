"""The tiled renderer equals the naive scan: images, gradients, modes, vmap, overflow."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffprims as dp
from diffprims._shapes import _culling, _render, _tiled

from .helpers import random_points, shape_types, tree_allclose

# 40 x 56 pixels: 5 x 7 tiles of 8, 2240 points (enough for "auto" to tile).
GRID = (40, 56)


def _model(cls, key, n=20, **kwargs):
    kwargs.setdefault("size_range", (0.03, 0.25))
    return cls.init(n, key=key, aspect=GRID[1] / GRID[0], **kwargs)


def _loss_image(method, target):
    def loss(model):
        return jnp.mean((model.render_image(GRID, method=method) - target) ** 2)

    return loss


def _loss_points(method, points, target):
    def loss(model, points):
        pred = model.render(points, pixel_size=1.0 / GRID[0], method=method)
        return jnp.mean((pred - target) ** 2)

    return loss


def _grads_close(a, b):
    scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(eqx.filter(a, eqx.is_array)))
    return tree_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def tight_types():
    return [cls for cls in shape_types() if cls.tight_bounds]


class LooseCircles(dp.Circles):
    tight_bounds = False  # a type whose soft tails reach past its bounds


def test_loose_bounds_use_scan(getkey):
    # Shape types whose soft tails reach past their bounds render with the scan.
    model = _model(LooseCircles, getkey())
    assert not _render._use_tiles(model, GRID[0] * GRID[1], "auto")
    np.testing.assert_array_equal(
        model.render_image(GRID), model.render_image(GRID, method="scan")
    )


@pytest.mark.parametrize("call", ["render_image", "render", "fit", "paint"])
def test_asking_tiles_of_a_type_with_loose_bounds_is_refused(getkey, call):
    # It drew each shape inside boxes the type said may not hold it, without a word.
    model, target = _model(LooseCircles, getkey()), jnp.full((*GRID, 3), 0.5)
    with pytest.raises(ValueError, match=r'method="tiled".*LooseCircles.*tight_bounds = False'):
        if call == "render_image":
            model.render_image(GRID, method="tiled")
        elif call == "render":
            model.render(jnp.zeros((4, 2)), pixel_size=0.1, method="tiled")
        elif call == "fit":
            dp.fit(model, target, steps=1, key=getkey(), method="tiled")
        else:
            dp.paint(target, 3, key=getkey(), steps=2, shape=LooseCircles, method="tiled")


def test_every_shape_of_ours_has_tight_bounds():
    assert tight_types() == list(shape_types())


@pytest.mark.parametrize("cls", tight_types(), ids=lambda c: c.__name__)
def test_image_and_gradients_equal_scan(cls, getkey):
    model = _model(cls, getkey())
    scan = model.render_image(GRID, method="scan")
    tiled = jax.jit(lambda m: m.render_image(GRID, method="tiled"))(model)
    assert tiled.shape == scan.shape == (*GRID, 3)
    np.testing.assert_allclose(tiled, scan, atol=1e-5)
    target = jax.random.uniform(getkey(), scan.shape)
    g_scan = jax.grad(_loss_image("scan", target))(model)
    g_tiled = jax.jit(jax.grad(_loss_image("tiled", target)))(model)
    assert _grads_close(g_tiled, g_scan)


@pytest.mark.parametrize("cls", tight_types(), ids=lambda c: c.__name__)
def test_points_and_gradients_equal_scan(cls, getkey):
    model = _model(cls, getkey())
    # Random points, with repeats (fit samples with replacement) and a far-away one.
    points = random_points(getkey(), 1500, aspect=GRID[1] / GRID[0])
    points = jnp.concatenate([points, points[:20], jnp.array([[3.0, -2.0]])])
    scan = model.render(points, pixel_size=1.0 / GRID[0], method="scan")
    tiled = model.render(points, pixel_size=1.0 / GRID[0], method="tiled")
    np.testing.assert_allclose(tiled, scan, atol=1e-5)
    target = jax.random.uniform(getkey(), scan.shape)
    g_scan = jax.grad(_loss_points("scan", points, target), argnums=(0, 1))(model, points)
    g_tiled = jax.jit(jax.grad(_loss_points("tiled", points, target), argnums=(0, 1)))(
        model, points
    )
    assert _grads_close(g_tiled[0], g_scan[0])
    np.testing.assert_allclose(g_tiled[1], g_scan[1], rtol=1e-4, atol=1e-6)


def test_shapes_straddling_tiles(getkey):
    # Centres exactly on tile corners and edges, radii from sub-pixel to several tiles.
    h = GRID[0]
    corners = jnp.array([[8, 8], [16, 8], [8.5, 24], [40, 32], [0, 0], [56, 40]]) / h
    radii = jnp.array([0.3, 4.0, 8.0, 11.0, 20.0, 2.0]) / h
    model = dp.Circles.from_values(
        corners, radii, jax.random.uniform(getkey(), (6, 3)), jnp.full((6,), 0.9)
    )
    model = model.take(jnp.arange(24) % 6)  # 24 shapes, so every path is exercised
    scan = model.render_image(GRID, method="scan")
    np.testing.assert_allclose(model.render_image(GRID, method="tiled"), scan, atol=1e-5)
    target = jax.random.uniform(getkey(), scan.shape)
    g_scan = jax.grad(_loss_image("scan", target))(model)
    assert _grads_close(jax.grad(_loss_image("tiled", target))(model), g_scan)


def test_a_large_render_holds_no_pixel_grid_in_its_program(getkey):
    # The tiled renderer's pixel centres, made with NumPy, were constants of the compiled
    # program: 96 MB at 4000 x 3000, a 21 MB entry in the command line's compilation
    # cache, and a first render at that size 4.1 s against 1.5 s now.
    model = dp.Circles.init(20, key=getkey())
    lowered = jax.jit(lambda m: m.render_image((768, 1024), method="tiled")).lower(model)
    assert len(lowered.as_text()) < 200_000  # 768 x 1024 x 2 floats would be 6 MB
    points, boxes = _tiled.tile_points((8, 12), 4)  # the pixel centres, tile by tile
    centres = np.asarray(dp.pixel_centres((8, 12)))
    expected = centres.reshape(2, 4, 3, 4, 2).transpose(0, 2, 1, 3, 4).reshape(6, 16, 2)
    np.testing.assert_array_equal(points, expected)
    np.testing.assert_array_equal(boxes[:, :2], expected.min(1))
    np.testing.assert_array_equal(boxes[:, 2:], expected.max(1))


def test_crowded_tiles(getkey):
    # 150 small circles piled onto one tile plus 30 spread out: that tile's chunk draws
    # 150+ layers while most chunks draw a few, and both must match the naive loop.
    n_pile, n_spread = 150, 30
    pile = jnp.array([12.0, 12.0]) / GRID[0] + 0.05 * jax.random.uniform(getkey(), (n_pile, 2))
    spread = jax.random.uniform(getkey(), (n_spread, 2)) * jnp.array([1.4, 1.0])
    centres = jnp.concatenate([pile, spread])
    radii = jnp.concatenate([jnp.full((n_pile,), 0.04), jnp.full((n_spread,), 0.08)])
    n = n_pile + n_spread
    model = dp.Circles.from_values(
        centres, radii, jax.random.uniform(getkey(), (n, 3)), jnp.full((n,), 0.5)
    )
    _, boxes = _tiled.tile_points(GRID, 8)
    counts = _culling.overlaps(jnp.asarray(boxes), _culling.grown_bounds(model, 1.0 / GRID[0]))
    assert int(jnp.max(jnp.sum(counts, axis=1))) >= n_pile  # really crowded
    assert int(jnp.min(jnp.sum(counts, axis=1))) < 10
    scan = model.render_image(GRID, method="scan")
    np.testing.assert_allclose(model.render_image(GRID, method="tiled"), scan, atol=1e-5)
    target = jax.random.uniform(getkey(), scan.shape)
    g_scan = jax.grad(_loss_image("scan", target))(model)
    assert _grads_close(jax.grad(_loss_image("tiled", target))(model), g_scan)


def test_empty_tiles_and_shapes_off_frame(getkey):
    # Everything far outside the frame: every tile is empty and shows the background.
    model = _model(dp.Circles, getkey(), size_range=(0.01, 0.02))
    model = eqx.tree_at(lambda m: m.raw_centres, model, model.raw_centres + 50.0)
    tiled = model.render_image(GRID, method="tiled")
    np.testing.assert_allclose(tiled, jnp.broadcast_to(model.background, tiled.shape), atol=1e-7)
    grads = jax.grad(lambda m: jnp.sum(m.render_image(GRID, method="tiled")))(model)
    assert all(jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(grads))


def test_nan_shape_poisons_like_scan(getkey):
    # Inside `fit` and `paint` (which stop on a NaN loss) both renderers must show a
    # diverged shape alike; `render` and `render_image` refuse such a model.
    model = _model(dp.Circles, getkey())
    model = eqx.tree_at(lambda m: m.raw_centres, model, model.raw_centres.at[3, 0].set(jnp.nan))
    scan = _render.render_grid(model, GRID, "scan", None)
    tiled = _render.render_grid(model, GRID, "tiled", None)
    assert bool(jnp.any(jnp.isnan(scan)))
    np.testing.assert_array_equal(jnp.isnan(tiled), jnp.isnan(scan))
    with pytest.raises(ValueError, match="finite parameters"):
        model.render_image(GRID, method="tiled")


def test_additive_compositing(getkey):
    model = _model(dp.Circles, getkey(), compositing="additive", opacity=0.2)
    scan = model.render_image(GRID, method="scan")
    np.testing.assert_allclose(model.render_image(GRID, method="tiled"), scan, atol=1e-5)
    target = jax.random.uniform(getkey(), scan.shape)
    g_scan = jax.grad(_loss_image("scan", target))(model)
    assert _grads_close(jax.grad(_loss_image("tiled", target))(model), g_scan)


def test_depth_compositing_uses_scan(getkey):
    model = _model(dp.Circles, getkey(), compositing="depth")
    with pytest.raises(ValueError, match="depth"):
        model.render_image(GRID, method="tiled")
    np.testing.assert_array_equal(
        model.render_image(GRID), model.render_image(GRID, method="scan")
    )


@pytest.mark.parametrize("method", ["fast", None, 1])
def test_bad_method(method, getkey):
    model = _model(dp.Circles, getkey())
    with pytest.raises(ValueError, match="method.*Leave it at 'auto'"):
        model.render_image(GRID, method=method)
    with pytest.raises(ValueError, match="method.*Leave it at 'auto'"):
        jax.jit(lambda m: m.render(jnp.zeros((4, 2)), pixel_size=0.1, method=method))(model)


def test_auto_choice():
    assert _render._use_tiles(_model_stub(200, "over"), 256 * 256, "auto")
    assert not _render._use_tiles(_model_stub(3, "over"), 256 * 256, "auto")
    assert not _render._use_tiles(_model_stub(200, "over"), 100, "auto")
    assert not _render._use_tiles(_model_stub(200, "depth"), 256 * 256, "auto")
    assert _render._use_tiles(_model_stub(3, "over"), 100, "tiled")
    assert not _render._use_tiles(_model_stub(200, "over"), 256 * 256, "scan")


def _model_stub(n, compositing):
    class Stub:
        num_shapes = n
        tight_bounds = True
        edge_margin = 14.0

    stub = Stub()
    stub.compositing = compositing  # pyright: ignore[reportAttributeAccessIssue]
    return stub


def test_vmap_over_models_equals_each(getkey):
    # Members' lists differ in length; under vmap a chunk runs as long as its longest
    # member and still gives each member's own image.
    sizes = [(0.01, 0.03), (0.1, 0.4)]
    models = [_model(dp.Circles, getkey(), size_range=s) for s in sizes]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *models)
    batched = jax.vmap(lambda m: m.render_image(GRID, method="tiled"))(stacked)
    for i, model in enumerate(models):
        np.testing.assert_allclose(batched[i], model.render_image(GRID, method="scan"), atol=1e-5)
    grads = jax.vmap(jax.grad(lambda m: jnp.sum(m.render_image(GRID, method="tiled") ** 2)))(
        stacked
    )
    for i, model in enumerate(models):
        single = jax.grad(lambda m: jnp.sum(m.render_image(GRID, method="scan") ** 2))(model)
        assert _grads_close(jax.tree.map(lambda x: x[i], grads), single)


def test_lists_kth_and_block_size():
    boxes = jnp.asarray([[0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]])
    bounds = jnp.asarray([[0.0, 0.0, 0.2, 0.2], [0.4, 0.4, 0.9, 0.9], [0.05, 0.05, 0.7, 0.7]])
    lists = _culling.Lists.of(boxes, bounds)
    assert int(lists.longest) == 2
    np.testing.assert_array_equal(lists.kth(0), [0, 1])
    np.testing.assert_array_equal(lists.kth(1), [2, 2])
    np.testing.assert_array_equal(lists.kth(2), [3, 3])  # past the end: N, draws nothing
    # The backward sweep stores a picture per layer: all of them while they fit.
    assert _tiled.block_size(1024, 200) == 200
    assert _tiled.block_size(1024, 10**5) == _tiled.CHUNK_PAIRS // 1024
    assert _tiled.block_size(10**9, 10**5) == 8
    assert _tiled.block_size(1024, 3) == 3


def test_long_lists_run_backward_in_blocks(getkey, monkeypatch):
    # Stored pictures capped at 8 layers: a tile listing 40 shapes runs its backward in
    # 5 blocks, each redrawing the layers behind it; gradients still equal the scan's.
    monkeypatch.setattr(_tiled, "CHUNK_PAIRS", 1)
    n = 40
    centres = jnp.array([0.5, 0.5]) + 0.05 * jax.random.uniform(getkey(), (n, 2))
    model = dp.Circles.from_values(
        centres, jnp.full((n,), 0.1), jax.random.uniform(getkey(), (n, 3)), jnp.full((n,), 0.4)
    )
    target = jax.random.uniform(getkey(), (*GRID, 3))
    g_scan = jax.grad(_loss_image("scan", target))(model)
    assert _grads_close(jax.grad(_loss_image("tiled", target))(model), g_scan)


def test_traced_pixel_size(getkey):
    model = _model(dp.Circles, getkey())
    points = random_points(getkey(), 1200)

    @jax.jit
    def both(model, pixel_size):
        return (
            model.render(points, pixel_size=pixel_size, method="tiled"),
            model.render(points, pixel_size=pixel_size, method="scan"),
        )

    tiled, scan = both(model, jnp.asarray(0.02))
    np.testing.assert_allclose(tiled, scan, atol=1e-5)


def test_thin_ellipses_and_gaussian_tails_stay_inside_their_bounds():
    # A thin ellipse's first-order distance fell short past its tip: a streak (0.3 on a
    # pixel 23 px beyond it) that the tiled renderer, culling by bounds, did not draw.
    # Gaussians' bounds reached 3.5 scales, where the coverage is still 2e-3.
    row = 24.5 / 48 + 0.0005
    thin = dp.Ellipses.from_values([[0.3, row]], [[0.2, 0.001]], [0.0], [[0.0, 0.0, 0.0]], [1.0])
    stretched = [
        dp.Ellipses.from_values([[0.5, 0.5]], [[0.15, 0.15 / aspect]], [0.7], [[0.0] * 3], [1.0])
        for aspect in (8, 16, 50)
    ]
    gaussians = dp.Gaussians.from_values(
        np.full((8, 2), 0.5), np.full((8, 2), 0.05), np.zeros(8), np.ones((8, 3)), np.ones(8),
        background=0.0, compositing="additive",
    )  # fmt: skip
    for model in (thin, *stretched, gaussians):
        scan = model.render_image((48, 48), method="scan")
        tiled = model.render_image((48, 48), method="tiled")
        np.testing.assert_allclose(scan, tiled, rtol=2e-6, atol=2e-6)
    assert float(1.0 - thin.render_image((48, 48), method="scan")[24, 47, 0]) < 1e-5
    points = jnp.tile(jnp.array([[0.5 + 4.0 * 0.05, 0.5]]), (1024, 1))  # 4 scales out
    np.testing.assert_allclose(
        gaussians.render(points, pixel_size=1 / 1024, method="tiled"),
        gaussians.render(points, pixel_size=1 / 1024, method="scan"), rtol=1e-5,
    )  # fmt: skip


@pytest.mark.parametrize("method", ["scan", "tiled"])
def test_a_subnormal_edge_width_keeps_gradients_finite(method):
    # softness * pixel_size below float32's normal range overflowed: NaN gradients.
    model = dp.Circles.from_values([[0.5, 0.5]], [0.3], [[1.0, 0.0, 0.0]], [1.0])
    points = jnp.array([[0.5, 0.5], [0.9, 0.9]])
    grads = jax.grad(lambda m: jnp.sum(m.render(points, pixel_size=1e-38, method=method) ** 2))(
        model
    )
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_tiled_under_forward_mode_names_the_fix():
    # JAX's bare "can't apply forward-mode autodiff (jvp) to a custom_vjp function".
    model = dp.Circles.from_values([[0.5, 0.5]], [0.3], [[1.0, 0.0, 0.0]], [1.0])
    points = jnp.full((2, 2), 0.5)
    with pytest.raises(ValueError, match='method="scan"'):
        jax.jacfwd(lambda m: m.render(points, pixel_size=0.1, method="tiled"))(model)


def test_culling_grows_bounds_by_the_types_edge_margin(getkey):
    """Soft edges reach 14 edge widths past a box; a Gaussian's box already holds it all
    (5.3 standard deviations), so its tiles list only the Gaussians that reach them."""
    for cls, margin in [(dp.Circles, 14.0), (dp.Gaussians, 0.0)]:
        model = _model(cls, getkey())
        grown = _culling.grown_bounds(model, 1 / 64)
        expected = model.bounds() + margin * model.softness / 64 * jnp.asarray([-1, -1, 1, 1])
        np.testing.assert_allclose(grown, expected, rtol=1e-6)


def test_counting_each_tiles_shapes_holds_no_tile_by_shape_table():
    """Tiles are sorted by how many shapes reach them; counted all at once, that held a
    (tiles x shapes) table: 262 MB for 16k circles at 512 x 512, 3.4 GB for 50k at 1024
    x 1024. Counted in blocks of tiles, the same counts."""
    boxes = jax.random.uniform(jax.random.key(0), (300, 2))
    boxes = jnp.concatenate([boxes, boxes + 0.05], axis=1)
    bounds = jax.random.uniform(jax.random.key(1), (20000, 2))
    bounds = jnp.concatenate([bounds, bounds + 0.02], axis=1)
    at_once = jnp.sum(_culling.overlaps(boxes, bounds), axis=1)
    np.testing.assert_array_equal(_culling.list_lengths(boxes, bounds), at_once)
    model = dp.Circles.init(16000, key=jax.random.key(2))
    program = jax.jit(lambda m: m.render_image((512, 512))).lower(model).compile()
    assert program.memory_analysis().temp_size_in_bytes < 64e6


def test_the_scan_gradient_keeps_one_picture_per_block_past_remat_pairs(monkeypatch):
    # It stored the picture behind every shape: 1000 circles at 512^2 planned 9 GB.
    from diffprims._shapes import _render

    model = dp.Circles.init(50, key=jax.random.key(0), target=jnp.full((16, 16, 3), 0.3))
    target = jax.random.uniform(jax.random.key(1), (16, 16, 3))

    def program():
        loss = lambda m: jnp.mean((m.render_image((16, 16), method="scan") - target) ** 2)  # noqa: E731
        return jax.jit(jax.value_and_grad(loss)).lower(model).compile()

    stored = program()
    monkeypatch.setattr(_render, "REMAT_PAIRS", 0)
    blocked = program()
    (value, grads), (value_b, grads_b) = stored(model), blocked(model)
    assert float(value) == float(value_b)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    memory = lambda c: c.memory_analysis().temp_size_in_bytes  # noqa: E731
    assert memory(blocked) < memory(stored) / 3


def test_a_vmapped_tiled_render_equals_its_members_one_by_one():
    # On a CPU the tiled renderer runs a vmap's members one after another (batched, it
    # ran 3 to 6 times slower than a loop); values and gradients are each member's own.
    target = jax.random.uniform(jax.random.key(1), (40, 40, 3))
    models = jax.vmap(lambda k: dp.Circles.init(12, key=k, target=target))(
        jax.random.split(jax.random.key(0), 3)
    )

    def loss(m):
        return jnp.mean((m.render_image((40, 40), method="tiled") - target) ** 2)

    values, grads = jax.jit(jax.vmap(jax.value_and_grad(loss)))(models)
    for i in range(3):
        member = jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, models)
        value, grad = jax.jit(jax.value_and_grad(loss))(member)
        np.testing.assert_allclose(values[i], value, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grad), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("cls", shape_types(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("method", ["scan", "tiled"])
def test_render_image_softness_draws_as_a_set_of_that_softness(cls, method, getkey):
    # The field is static (another value compiles anew); the argument is this render's.
    if method == "tiled" and not cls.tight_bounds:
        pytest.skip("a type with loose bounds renders by the scan")
    model = _model(cls, getkey(), softness=0.5)
    for softness in (0.5, 2.0, 7.0):
        want = dataclasses.replace(model, softness=softness).render_image(GRID, method=method)
        got = model.render_image(GRID, method=method, softness=jnp.asarray(softness))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_render_image_softness_is_differentiable_and_batches(getkey):
    model, target = _model(dp.Circles, getkey()), jax.random.uniform(getkey(), (*GRID, 3))

    @eqx.filter_jit
    def loss(model, softness):
        return jnp.mean((model.render_image(GRID, softness=softness) - target) ** 2)

    grad = jax.grad(loss, argnums=1)(model, 1.5)
    step = 1e-2
    numeric = (loss(model, 1.5 + step) - loss(model, 1.5 - step)) / (2 * step)
    assert grad == pytest.approx(float(numeric), rel=2e-2)
    images = jax.vmap(lambda s: model.render_image(GRID, softness=s))(jnp.array([0.5, 3.0]))
    np.testing.assert_allclose(images[1], model.render_image(GRID, softness=3.0), atol=1e-6)


# -- Layers: each layer drawn by its own renderer over the picture below it --------------


@pytest.mark.parametrize("mode", ["over", "additive"])
@pytest.mark.parametrize("cls", tight_types(), ids=lambda c: c.__name__)
def test_layers_tiled_equal_scan_values_and_gradients(cls, mode, getkey):
    # Every layer takes the tiled path, over the picture the layers below pass up (it
    # closed-form composited every shape at every point: 30-60x one set's time); values
    # and gradients, the lower layers' through that picture, the points' too, equal the
    # scan's, on the grid and at points.
    back = _model(dp.Circles, getkey(), n=12)
    layers = dp.Layers([back, _model(cls, getkey(), compositing=mode), _model(cls, getkey(), n=9)])
    assert layers._methods("auto", GRID[0] * GRID[1]) == ("tiled",) * 3
    scan = layers.render_image(GRID, method="scan")
    np.testing.assert_allclose(jax.jit(lambda m: m.render_image(GRID))(layers), scan, atol=1e-5)
    target = jax.random.uniform(getkey(), scan.shape)
    g_scan = jax.grad(_loss_image("scan", target))(layers)
    g_tiled = jax.jit(jax.grad(_loss_image("tiled", target)))(layers)
    for tiled_layer, scan_layer in zip(g_tiled.layers, g_scan.layers, strict=True):
        assert _grads_close(tiled_layer, scan_layer)
    points = random_points(getkey(), 1500, aspect=GRID[1] / GRID[0])
    target = jax.random.uniform(getkey(), (1500, 3))
    g_scan = jax.grad(_loss_points("scan", points, target), argnums=(0, 1))(layers, points)
    g_tiled = jax.jit(jax.grad(_loss_points("auto", points, target), argnums=(0, 1)))(
        layers, points
    )
    for tiled_layer, scan_layer in zip(g_tiled[0].layers, g_scan[0].layers, strict=True):
        assert _grads_close(tiled_layer, scan_layer)
    np.testing.assert_allclose(g_tiled[1], g_scan[1], rtol=1e-4, atol=1e-6)


def test_layers_pick_a_renderer_per_layer_and_take_the_scan_where_tiles_cannot(getkey):
    # A "depth" layer, or a layer of few shapes, takes the scan while the others tile;
    # forward mode takes the scan everywhere, as for one set; `method` is checked per layer.
    depth = _model(dp.Circles, getkey(), compositing="depth")
    layers = dp.Layers([_model(dp.Circles, getkey()), depth, _model(dp.Circles, getkey(), n=3)])
    assert layers._methods("auto", GRID[0] * GRID[1]) == ("tiled", "scan", "scan")
    np.testing.assert_allclose(
        layers.render_image(GRID), layers.render_image(GRID, method="scan"), atol=1e-5
    )
    with pytest.raises(ValueError, match='method="tiled" cannot render compositing="depth"'):
        layers.render_image(GRID, method="tiled")
    with pytest.raises(ValueError, match='method="tiled" cannot render compositing="depth"'):
        dp.fit(layers, jnp.zeros((*GRID, 3)), steps=2, method="tiled")

    def total(scale):
        moved = eqx.tree_at(
            lambda m: m.layers[0].raw_centres, layers, layers[0].raw_centres * scale
        )
        return jnp.sum(moved.render_image(GRID))

    forward = jax.jacfwd(total)(1.0)
    assert forward == pytest.approx(float(jax.grad(total)(1.0)), rel=1e-4)
    result = dp.fit(layers, jnp.zeros((*GRID, 3)), steps=3, method="scan", key=getkey())
    assert np.isfinite(result.losses).all()


def test_a_layers_gradient_keeps_no_chunk_of_shapes_x_pixels(getkey):
    # Reverse mode kept every chunk's alphas: 2 x 500 circles at 512^2 planned 11 GB for
    # the gradient against 70 MB forward; each layer's renderer recomputes instead.
    layers = dp.Layers([_model(dp.Circles, getkey(), n=200), _model(dp.Circles, getkey(), n=200)])
    target = jnp.zeros((128, 128, 3))

    def planned(fn):
        stats = jax.jit(fn).lower(layers).compile().memory_analysis()
        if stats is None:
            pytest.skip("this backend plans no memory")
        return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes

    forward = planned(lambda m: m.render_image((128, 128)))
    gradient = planned(jax.grad(lambda m: jnp.mean((m.render_image((128, 128)) - target) ** 2)))
    assert gradient < 6 * forward


def test_layers_render_image_softness_draws_every_layer_that_wide(getkey):
    # Each layer keeps its own softness; the argument sets them all for one render.
    back = _model(dp.Rectangles, getkey(), softness=0.5)
    front = _model(dp.Circles, getkey(), softness=2.0)
    layers = dp.Layers([back, front])
    np.testing.assert_array_equal(
        layers.render_image(GRID, softness=None), layers.render_image(GRID)
    )
    for softness in (0.3, 1.0, 4.0):
        alike = [dataclasses.replace(layer, softness=softness) for layer in (back, front)]
        want = dp.Layers(alike).render_image(GRID)
        np.testing.assert_allclose(layers.render_image(GRID, softness=softness), want, atol=1e-6)
    images = jax.jit(jax.vmap(lambda s: layers.render_image(GRID, softness=s)))(
        jnp.array([1.0, 3.0])
    )
    np.testing.assert_allclose(images[1], layers.render_image(GRID, softness=3.0), atol=1e-6)
    assert np.isfinite(jax.grad(lambda s: layers.render_image(GRID, softness=s).sum())(1.0))
    with pytest.raises(ValueError, match=r"`softness` must be a finite number > 0"):
        layers.render_image(GRID, softness=-1.0)


@pytest.mark.parametrize(
    "softness, error", [(0.0, ValueError), (-1.0, ValueError), (np.nan, ValueError),
                        ("wide", TypeError), (np.ones(2), TypeError)],
)  # fmt: skip
def test_render_image_softness_checked(softness, error, getkey):
    with pytest.raises(error, match=r"`softness` must be a finite number > 0.*in pixels"):
        _model(dp.Circles, getkey()).render_image(GRID, softness=softness)
