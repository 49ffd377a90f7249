"""dp.paint (initialisation, rounds, restarts, budgets) and the image losses."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp
from diffprims._blur import blur
from diffprims._paint._placement import usefulness as _usefulness
from diffprims._paint._schedule import plan_rounds
from diffprims._paint._solve import solve_colours as _solve_colours

from .helpers import shape_types, tree_allclose


def _target(key, size=16):
    """A small picture: three overlapping discs on a grey background."""
    model = dp.Circles.init(3, key=key, size_range=(0.15, 0.3), opacity=0.9)
    return model.render_image((size, size))


def _psnr(model, target):
    return float(dp.psnr(model.render_image(target.shape[:2]), target))


@pytest.mark.parametrize("shape_type", shape_types(), ids=lambda t: t.__name__)
def test_paint_fits_every_shape_type(shape_type, getkey):
    target = _target(getkey())
    result = dp.paint(target, 6, key=getkey(), shape=shape_type, steps=60, rounds=2)
    assert isinstance(result, dp.FitResult) and isinstance(result.model, shape_type)
    assert result.model.num_shapes == 6
    assert result.losses.shape == (60,) and np.all(np.isfinite(result.losses))
    flat = float(dp.psnr(jnp.broadcast_to(target.mean((0, 1)), target.shape), target))
    assert _psnr(result.model, target) > flat + 3.0


def test_paint_is_deterministic(getkey):
    target, key = _target(getkey()), getkey()
    a = dp.paint(target, 5, key=key, steps=30, rounds=2)
    b = dp.paint(target, 5, key=key, steps=30, rounds=2)
    assert tree_allclose(a.model, b.model)
    c = dp.paint(target, 5, key=getkey(), steps=30, rounds=2)
    assert not tree_allclose(a.model, c.model)


def test_paint_places_shapes_where_the_error_is(getkey):
    """A new shape is centred where it lowers the error most: on the one small disc, in
    its colour."""
    target = dp.Circles.from_values(
        [[0.75, 0.25]], [0.12], [[0.9, 0.1, 0.1]], [1.0], background=0.2
    ).render_image((32, 32))
    result = dp.paint(
        target, 8, key=getkey(), steps=1, rounds=1, solve_colours=False, extra=0.0
    )  # the seeding alone: no spare shapes to remove
    distance = jnp.linalg.norm(result.model.centres - jnp.array([0.75, 0.25]), axis=-1)
    nearest = int(jnp.argmin(distance))
    assert float(distance[nearest]) < 0.04  # a pixel and a bit: 1 / 32 = 0.031
    assert jnp.allclose(result.model.colours[nearest], jnp.array([0.9, 0.1, 0.1]), atol=0.15)


def test_paint_places_shapes_where_the_weighted_error_is(getkey):
    """Two equal discs; the one under weight 10 gets most of the new shapes (placed
    best first, each its radius clear of the others: a few, so the halves don't fill)."""
    target = dp.Circles.from_values(
        [[0.25, 0.5], [0.75, 0.5]], [0.1, 0.1], [[0.9, 0.1, 0.1]] * 2, [1.0, 1.0],
        background=0.2,
    ).render_image((32, 32))  # fmt: skip
    weights = jnp.where(jnp.arange(32) >= 16, 10.0, 1.0)[None, :].repeat(32, 0)

    def right(loss):
        result = dp.paint(target, 6, key=getkey(), steps=1, rounds=1, loss=loss, extra=0.0)
        return int(jnp.sum(result.model.centres[:, 0] > 0.5))

    # 5 of 6 weighted; 3 of 6 (an even split) unweighted.
    assert right(dp.Weighted(dp.L2(), weights)) >= 5 > right(dp.L2())


def test_more_steps_and_restarts_do_not_hurt(getkey):
    target, key = _target(getkey(), 20), getkey()
    short = dp.paint(target, 6, key=key, steps=20, rounds=2)
    long = dp.paint(target, 6, key=key, steps=150, rounds=2)
    assert _psnr(long.model, target) > _psnr(short.model, target)
    best = dp.paint(target, 6, key=key, steps=20, rounds=2, restarts=3)
    assert best.model.centres.shape == (6, 2) and best.losses.shape == (20,)


def test_paint_with_a_time_budget_and_other_modes(getkey):
    target = _target(getkey())
    result = dp.paint(target, 4, key=getkey(), seconds=0.5, rounds=2)
    assert result.losses.shape[0] >= 1 and np.isfinite(result.seconds)
    for mode in ["additive", "depth"]:
        result = dp.paint(target, 4, key=getkey(), steps=30, compositing=mode)
        assert result.model.compositing == mode
        assert np.all(np.isfinite(result.losses))
    key = getkey()
    fixed = dp.paint(target, 4, key=key, steps=30, learn_background=False)
    np.testing.assert_allclose(fixed.model.background, target.mean((0, 1)), atol=1e-5)
    # Bit for bit: the colour solve rewrote it a rounding error away.
    unsolved = dp.paint(target, 4, key=key, steps=30, learn_background=False, solve_colours=False)
    np.testing.assert_array_equal(fixed.model.raw_background, unsolved.model.raw_background)


def test_paint_takes_a_weighted_loss(getkey):
    target = _target(getkey())
    loss = dp.Weighted(dp.L2(), dp.edge_weights(target))
    result = dp.paint(target, 4, key=getkey(), steps=30, loss=loss)
    assert np.all(np.isfinite(result.losses))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(shape=dp.L2), TypeError, "shape class"),
        (dict(n=0), ValueError, "n"),
        (dict(seconds=-1.0), ValueError, "seconds"),
        (dict(compositing="screen"), ValueError, "compositing"),
        (dict(opacity=1.5), ValueError, "opacity"),
        (dict(prune=1.0), ValueError, "prune"),
        (dict(key=0), TypeError, "key"),
        (dict(target=np.zeros((8, 8, 3), np.uint8)), TypeError, "float"),
        # Unchecked, "False" ran the solve; the others failed from inside the seeding's
        # trace, a second into the paint ("could not convert string to float: 'a'").
        (dict(solve_colours="False"), TypeError, "`solve_colours` must be True or False"),
        (dict(softness="a"), TypeError, "`softness`"),
        (dict(softness=0.0), ValueError, "`softness` must be > 0"),
        (dict(method="foo"), ValueError, "`method` must be one of"),
        (dict(method="tiled", compositing="depth"), ValueError, "cannot render"),
        # It was refused from inside the first compiled program, as "a Circles set's".
        (dict(learn_background="no"), TypeError, "`learn_background` must be True or False"),
    ],
)
def test_paint_errors_are_clear(kwargs, error, match, getkey, monkeypatch):
    from diffprims._paint import _paint

    def no_paint(*args, **kwargs):
        raise AssertionError("painted before checking its arguments")

    monkeypatch.setattr(_paint, "_paint_once", no_paint)
    args = dict(target=np.zeros((8, 8, 3), np.float32), n=3, key=getkey(), steps=2)
    args.update(kwargs)
    target, n = args.pop("target"), args.pop("n")
    with pytest.raises(error, match=match):
        dp.paint(target, n, **args)


@pytest.mark.parametrize(
    "name, value",
    [
        ("softness", np.float64(0.5)),
        ("softness", jnp.asarray(0.5)),
        ("coarse", np.float64(3.0)),
        ("rounds", jnp.asarray(8)),
        ("stride", np.int64(4)),
        ("opacity", np.asarray(0.7)),
        ("prune", jnp.asarray(0.1)),
        ("anneal", np.asarray(0.9)),
        ("extra", jnp.asarray(0.3)),
        ("restarts", jnp.asarray(1)),
        ("cycles", np.int64(2)),
        ("lr", jnp.asarray(1e-2)),
        ("steps", np.int64(8)),
    ],
)
def test_paint_takes_numpy_and_jax_scalars_as_numbers(name, value):
    # Each passed the checks and failed deep inside: a traced `float()`, an unhashable
    # plan key, a non-hashable static argument, `" blurred" * np.bool_`.
    target = jax.random.uniform(jax.random.key(1), (12, 12, 3))
    args = dict(key=jax.random.key(0), steps=8)
    plain = dp.paint(target, 4, **{**args, name: value.item()})
    given = dp.paint(target, 4, **{**args, name: value})
    np.testing.assert_array_equal(given.model.raw_colours, plain.model.raw_colours)


def test_schedule_and_blur():
    for n, rounds in [(10, 4), (3, 3), (200, 4), (7, 1)]:
        counts = [r.count for r in plan_rounds(n, rounds, coarse=3.0, grow=0.6, aspect=1.0)]
        assert sum(counts) == n and len(counts) == rounds and max(counts) - min(counts) <= 1
    image = jax.random.uniform(jax.random.key(0), (12, 9, 3))
    np.testing.assert_allclose(blur(image, 1e-4), image, atol=1e-6)
    np.testing.assert_allclose(blur(jnp.full((6, 5, 2), 0.3), 2.0), 0.3, atol=1e-6)
    assert float(blur(image, 3.0).std()) < float(image.std())


@pytest.mark.parametrize("method", ["scan", "tiled"])
@pytest.mark.parametrize("compositing", ["over", "additive"])
@pytest.mark.parametrize("shape_type", shape_types(), ids=lambda t: t.__name__)
def test_usefulness_is_the_error_each_shape_saves(shape_type, compositing, method, getkey):
    """`_usefulness` (one scan, or tiles visiting only the shapes that reach them)
    equals removing each shape and re-rendering, on a grid not of whole tiles."""
    target = jax.random.uniform(getkey(), (13, 11, 3))
    weights = jax.random.uniform(getkey(), (13, 11), minval=0.5, maxval=4.0)
    model = shape_type.init(6, key=getkey(), size_range=(0.1, 0.4), compositing=compositing)
    useful = jax.jit(_usefulness, static_argnums=(3, 4))(model, target, weights, 1, method)

    def error(m):
        squared = (m.render_image((13, 11), method="scan") - target) ** 2
        return jnp.sum(weights[..., None] * squared)

    expected = [error(model.take(jnp.array([j for j in range(6) if j != i]))) for i in range(6)]
    np.testing.assert_allclose(useful, jnp.stack(expected) - error(model), rtol=1e-4, atol=1e-4)


def test_tiled_usefulness_in_blocks_and_batched(monkeypatch, getkey):
    """Lists longer than a block of stored pictures (redrawn from the back), and restarts
    batched with `vmap`, rank as the scan does."""
    import diffprims._shapes._tiled as tiled

    target = jax.random.uniform(getkey(), (24, 24, 3))
    weights = jnp.ones((24, 24))
    models = jax.vmap(lambda k: dp.Circles.init(40, key=k, size_range=(0.2, 0.5)))(
        jax.random.split(getkey(), 2)
    )
    dense = jax.vmap(lambda m: _usefulness(m, target, weights, 1, "scan"))(models)
    monkeypatch.setattr(tiled, "CHUNK_PAIRS", 1)  # blocks of 8 layers
    tiles = jax.jit(jax.vmap(lambda m: _usefulness(m, target, weights, 1, "tiled")))(models)
    np.testing.assert_allclose(tiles, dense, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("learn_background", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_colour_solve_is_the_least_squares_optimum(learn_background, weighted, getkey):
    model = dp.Circles.init(4, key=getkey(), learn_background=learn_background)
    # Same geometry, other colours, plus noise: the optimum is inside [0, 1] (no clipping).
    truth = dp.Circles.from_values(
        model.centres, model.radii, jax.random.uniform(getkey(), (4, 3), minval=0.3, maxval=0.7),
        model.opacities, background=model.background, softness=model.softness,
    )  # fmt: skip
    noise = 0.05 * jax.random.normal(getkey(), (10, 10, 3))
    target = truth.render_image((10, 10), method="scan") + noise
    weights = jax.random.uniform(getkey(), (10, 10), minval=0.2, maxval=5.0)
    weights = weights if weighted else jnp.ones((10, 10))
    solved, error = _solve_colours(model, target, weights if weighted else None, ridge=0.0)

    def weighted_error(m):
        image = m.render_image((10, 10), method="scan")
        return float(jnp.mean(weights[..., None] * (image - target) ** 2))

    np.testing.assert_allclose(error, weighted_error(solved), rtol=1e-4)
    if not learn_background:
        np.testing.assert_allclose(solved.background, model.background, atol=1e-6)
    # No small change of any one colour lowers the error (unless clipped at 0 or 1).
    for delta in [0.02, -0.02]:
        nudged = dp.Circles.from_values(
            solved.centres, solved.radii, jnp.clip(solved.colours + delta, 0, 1),
            solved.opacities, background=solved.background, softness=solved.softness,
        )  # fmt: skip
        assert weighted_error(nudged) >= float(error) - 1e-6


@pytest.mark.parametrize("compositing", ["over", "additive"])
def test_colour_solve_never_raises_the_error_where_the_optimum_is_out_of_range(compositing):
    # Many shapes on few pixels: most unconstrained colours come out negative, and
    # clipping them threw the fit away (additive: 4x the squared error of no solve).
    yy, xx = jnp.mgrid[0:16, 0:16] / 16
    target = jnp.stack([(jnp.sin(6 * xx + i) + 1) / 2 * (0.5 + 0.5 * yy) for i in range(3)], -1)
    kwargs = dict(key=jax.random.key(1), steps=60, compositing=compositing)
    unsolved = dp.paint(target, 40, solve_colours=False, **kwargs).model
    solved, error = _solve_colours(unsolved, target)

    def mse(m):
        return float(jnp.mean((m.render_image((16, 16)) - target) ** 2))

    assert mse(solved) <= mse(unsolved)
    np.testing.assert_allclose(error, mse(solved), rtol=1e-3)
    assert bool(jnp.all((solved.colours >= 0) & (solved.colours <= 1)))
    # The same through paint: its solve is this one.
    assert mse(dp.paint(target, 40, **kwargs).model) <= mse(unsolved)


# -- image losses ----------------------------------------------------------------------


def test_ssim_loss(getkey):
    x = jax.random.uniform(getkey(), (16, 16, 3))
    y = jax.random.uniform(getkey(), (16, 16, 3))
    assert float(dp.SSIM()(x, x)) == pytest.approx(0.0, abs=1e-5)
    assert 0.5 < float(dp.SSIM()(x, y)) <= 2.0
    flat = jnp.full((16, 16, 3), 0.5)
    grads = jax.grad(lambda p: dp.SSIM()(p, flat))(flat)
    assert np.all(np.isfinite(grads))
    with pytest.raises(ValueError, match="whole images"):
        dp.SSIM()(x.reshape(-1, 3), y.reshape(-1, 3))
    with pytest.raises(ValueError, match=r"dp.SSIM\(filter_size=5\)"):
        # A module holding arrays (its settings): `eqx.filter_jit`, as for any such loss.
        eqx.filter_jit(dp.SSIM())(x[:5, :5], y[:5, :5])


def test_ssim_drives_a_fit(getkey):
    target = _target(getkey())
    model = dp.Circles.init(4, key=getkey(), target=target)
    loss = dp.L2() + 0.1 * dp.SSIM()
    result = dp.fit(model, target, loss=loss, optimizer=optax.adam(3e-2), steps=40)
    assert float(result.losses[-1]) < float(result.losses[0])


def test_edge_weights(getkey):
    target = jnp.zeros((16, 16, 3)).at[:, 8:].set(1.0)  # one vertical edge
    weights = dp.edge_weights(target)
    assert weights.shape == (16, 16, 1)
    assert float(weights.mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(weights[8, 8, 0]) > 3 * float(weights[8, 1, 0])
    flat = dp.edge_weights(jnp.full((8, 8, 3), 0.4))
    np.testing.assert_allclose(flat, 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="strength"):
        dp.edge_weights(target, strength=-1.0)


def test_paint_snapshots_every_round(getkey):
    target = _target(getkey())
    result = dp.paint(target, 6, key=getkey(), steps=40, rounds=3)
    # Three rounds that add shapes, one that removes the spare ones (`extra`), then two
    # rounds (add spares, remove) per cycle.
    assert len(result.snapshots) == 3 + 1 + 2 * 2 and result.snapshot_steps[-1] == 40
    assert list(result.snapshot_steps) == sorted(result.snapshot_steps)
    assert tree_allclose(result.snapshots[-1], result.model)
    # Shapes appear round by round: early snapshots show fewer of them.
    visible = [int(jnp.sum(m.opacities > 1e-6)) for m in result.snapshots]
    assert visible[0] < visible[-1] == 6


@pytest.mark.parametrize("restarts", [1, 2])
def test_repeated_paint_traces_once_not_each_dispatch(getkey, monkeypatch, restarts):
    """A second paint of the same shapes reuses every compiled step loop, tracing its
    loss and optimizer once (a run checks they still compute what they did), not once a
    dispatch (each dispatch re-traced the optimizer: a rebuilt optimizer object missed
    `run_steps`' cache of equal ones)."""
    from diffprims._fit import _canon, _lifted

    target, key = _target(getkey()), getkey()
    counts = []
    for steps in (40, 80):  # 4 and 8 dispatches
        kwargs = dict(key=key, steps=steps, rounds=2, steps_per_dispatch=10, restarts=restarts)
        dp.paint(target, 6, threads=False, **kwargs)
        calls = []
        for module, name in ((_canon, "fingerprint"), (_lifted, "lift")):
            original = getattr(module, name)
            traced = lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k)  # noqa: E731
            monkeypatch.setattr(module, name, traced)
        dp.paint(target, 6, threads=False, **kwargs)
        monkeypatch.undo()
        counts.append(len(calls))
    assert counts[0] == counts[1] <= 2, counts


def test_a_bug_in_a_loss_is_not_blamed_on_whole_images():
    # Any error raised by a user loss was said to be a loss needing whole images.
    target = jnp.full((12, 12, 3), 0.5)
    with pytest.raises(ValueError, match="division by zero") as info:
        dp.paint(target, 4, key=jax.random.key(0), steps=4, loss=lambda p, t: 1 / 0)
    assert "whole images" not in str(info.value)
    with pytest.raises(ValueError, match="whole images"):
        dp.paint(target, 4, key=jax.random.key(0), steps=4, loss=dp.SSIM())

    class Reduced(dp.AbstractPointwiseLoss):  # fails on whole images too: said as it is
        def pointwise(self, pred, target):
            return jnp.mean((pred - target) ** 2)

    def with_numpy(pred, target):
        return np.mean(np.asarray(pred - target) ** 2)

    for loss, said in ((Reduced(), "unreduced"), (with_numpy, "traced array")):
        with pytest.raises(ValueError, match=said) as info:
            dp.paint(target, 4, key=jax.random.key(0), steps=4, loss=loss)
        assert "whole images" not in str(info.value)


def test_a_large_target_is_painted_from_a_smaller_copy(monkeypatch):
    # Scaled down: "large" is above 24 x 16 pixels here (512 x 512 in the library).
    from diffprims._paint import _rounds, _working

    monkeypatch.setattr(_working, "WORKING_PIXELS", 24 * 16)
    monkeypatch.setattr(_working, "PIXELS_PER_SHAPE", 1)
    seen = []
    init = _rounds.Painting.__init__

    def spy(self, models, target, weights, *args, **kwargs):
        seen.append((target.shape, weights.shape))
        init(self, models, target, weights, *args, **kwargs)

    monkeypatch.setattr(_rounds.Painting, "__init__", spy)
    y, x = jnp.mgrid[0:72, 0:48] / 72.0
    target = jnp.stack([x, y, 0.5 * (x + y)], axis=-1)
    weights = jnp.ones((72, 48)).at[:36].set(4.0)
    loss = dp.Weighted(dp.L2(), weights) + 0.1 * dp.Weighted(dp.L1(), weights)
    result = dp.paint(target, 6, key=jax.random.key(0), steps=60, loss=loss)
    assert seen == [((24, 16, 3), (24, 16))]
    # resolution-free shapes: drawn at the target's size they paint it
    assert _psnr(result.model, target) > 20.0


@pytest.mark.parametrize("height, width", [(4000, 6000), (3000, 4000), (2848, 4288), (1000, 4000)])
def test_the_working_copy_keeps_the_targets_aspect_ratio(height, width):
    # Painted in the copy's frame and rendered in the target's: 443 x 591 for 3000 x 4000
    # (1.3341 for 1.3333) drew the right edge 2.3 px off at the photo's size.
    from diffprims._paint._working import working_pixels, working_shape

    rows, cols = working_shape(height, width, 200)
    assert rows * cols <= working_pixels(200) and rows * cols >= 0.8 * working_pixels(200)
    assert abs(cols / rows * height - width) * rows / height <= 0.15  # in the copy's pixels


def test_working_copy_shrinks_every_weight_map():
    from diffprims._paint._working import working_copy

    target = jnp.full((40, 60, 3), 0.25)
    inner = dp.Weighted(dp.L2(), jnp.full((40, 60), 2.0))
    loss = dp.Weighted(inner, jnp.full((40, 60, 3), 3.0)) + 0.5 * dp.L1()
    small, shrunk = working_copy(target, loss, n=1)
    assert small.shape == target.shape  # 2400 pixels: below the limit, unchanged
    big = jnp.pad(target, ((0, 560), (0, 540), (0, 0)), constant_values=0.25)
    maps = dp.Weighted(dp.Weighted(dp.L2(), jnp.full((600, 600), 2.0)), jnp.ones((600, 600, 3)))
    small, shrunk = working_copy(big, maps + 0.5 * dp.L1(), n=1)
    assert small.shape == (512, 512, 3)
    np.testing.assert_allclose(small, 0.25, atol=1e-6)
    outer = shrunk.terms[0]
    assert outer.weights.shape == (512, 512, 3) and outer.loss.weights.shape == (512, 512, 1)
    np.testing.assert_allclose(outer.loss.weights, 2.0, atol=1e-5)


@pytest.mark.parametrize(
    "colour", [1.0, 0.0, (0.2, 0.7, 0.4)], ids=["white", "black", "one-colour"]
)
def test_the_colour_solve_never_spoils_a_plain_page(colour):
    # Regularised towards black and compared on the regularised error, the solve turned
    # a shape on a white page near black (72.6 -> 50.7 dB); bounds of [1e-3, 1 - 1e-3]
    # held a black page at 60 dB.
    target = jnp.broadcast_to(jnp.asarray(colour, jnp.float32), (24, 24, 3))
    psnrs = [
        _psnr(dp.paint(target, 8, key=jax.random.key(0), steps=100, solve_colours=s).model, target)
        for s in (True, False)
    ]
    assert psnrs[0] >= psnrs[1] - 0.01 and psnrs[0] > 80.0, psnrs


def test_every_keyword_of_paint_is_a_setting():
    # `paint` hands its keywords on as one record (`Settings.of(locals())`): a keyword
    # added to the signature and not to the record would raise a KeyError at every call.
    import inspect

    from diffprims._paint._settings import Settings

    keywords = [
        name
        for name, parameter in inspect.signature(dp.paint).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    fields = [field.name for field in dataclasses.fields(Settings)]
    assert sorted(fields) == sorted(set(keywords) - {"key", "progress"})


def test_seconds_is_the_whole_call(monkeypatch):
    # `FitResult.seconds` ("wall time, compilation included") began at the step loop's
    # driver, after the checks, the working copy and the blank shapes.
    import time

    from diffprims._paint import _paint as module

    slow_blank = module.blank

    def blank(*args, **kwargs):
        time.sleep(0.5)
        return slow_blank(*args, **kwargs)

    monkeypatch.setattr(module, "blank", blank)
    start = time.perf_counter()
    result = dp.paint(jnp.full((8, 8, 3), 0.5), 2, key=jax.random.key(0), steps=4)
    assert 0.5 <= result.seconds <= time.perf_counter() - start


def test_the_bounded_solve_starts_from_the_better_of_its_solution_and_the_colours(
    monkeypatch,
):
    # Without projected-gradient steps after it, the clipped solution of the normal
    # equations alone can be far worse than the colours the fit ended with.
    from diffprims._paint import _solve

    monkeypatch.setattr(_solve, "BOUNDED_STEPS", 0)
    gram = jnp.array([[1.0, 0.999], [0.999, 1.0]])
    rhs = gram @ jnp.array([[3.0], [-2.9]])  # the optimum is far outside [0, 1]
    current = jnp.array([[0.1], [0.0]])

    def error(x):
        return float(jnp.sum(x * (gram @ x)) - 2 * jnp.sum(rhs * x))

    clipped = jnp.clip(jnp.linalg.solve(gram, rhs), 0, 1)
    assert error(clipped) > error(current) + 0.5  # the case the guard is for
    assert error(_solve._bounded_solve(gram, rhs, current, 1e-3)) <= error(current) + 1e-6


def test_a_depth_painting_beats_a_flat_colour_and_keeps_improving():
    # Depths started 0.5 apart (200 shapes spanned 100) and new shapes stacked 0.5
    # apart on top: a shape's soft edge outweighed the shape covering a pixel, and 50
    # steps painted the demo 1.46 times worse than its mean colour, worse each round.
    target = dp.load_image(dp.demo_image_path(), size=48)
    flat = float(jnp.mean((jnp.mean(target, (0, 1)) - target) ** 2))
    result = dp.paint(target, 150, steps=40, key=jax.random.key(0), compositing="depth")
    errors = [float(jnp.mean((m.render_image((48, 48)) - target) ** 2)) for m in result.snapshots]
    assert errors[-1] < 0.5 * flat, (errors, flat)
    assert errors[-1] <= min(errors) * 1.05, errors


def test_paints_own_optimizer_is_traced_once_not_once_a_call(monkeypatch):
    # `paint` builds its optimizer from its rates alone, so what it computes cannot
    # change between calls: each call traced it again all the same (25 ms of a 100 ms
    # paint of 50 circles on 64^2).
    import diffprims._fit._lifted as lifted_module

    target = jnp.full((16, 16, 3), 0.5).at[4:9, 3:12].set(0.9)
    traces = []
    lift = lifted_module.lift
    monkeypatch.setattr(lifted_module, "lift", lambda *a, **k: traces.append(1) or lift(*a, **k))
    first = dp.paint(target, 6, key=jax.random.key(0), steps=8, rounds=2, lr=3e-3)
    traced = len(traces)
    again = dp.paint(target, 6, key=jax.random.key(0), steps=8, rounds=2, lr=3e-3)
    assert len(traces) == traced >= 1
    assert tree_allclose(first.model, again.model, atol=0)


def test_anneal_lowers_the_last_rounds_rates_step_by_step():
    # The scale was set once a dispatch: a last round of one dispatch (any `steps` up to
    # about 200) never annealed, bit for bit the same with `anneal` 0 and 1.
    target = jax.random.uniform(jax.random.key(1), (16, 16, 3))

    def painted(anneal, per_dispatch=50):
        return dp.paint(target, 6, key=jax.random.key(0), steps=40, anneal=anneal,
                        steps_per_dispatch=per_dispatch).model  # fmt: skip

    none, full = painted(0.0), painted(1.0)
    assert not np.array_equal(none.raw_centres, full.raw_centres)
    # A schedule of steps, not of dispatches: the same one in dispatches of 1 step.
    np.testing.assert_allclose(painted(1.0, 1).raw_centres, full.raw_centres, atol=1e-5)
