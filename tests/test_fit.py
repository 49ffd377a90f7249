"""fit(): lowers the loss, deterministic, vmappable, compiled once, clear errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp
import diffprims._fit._loop as loop_module

from .helpers import SqrtModel, shape_types, tree_allclose

OPTIMIZER = optax.adam(3e-2)


def _target(key, shape=(16, 16)):
    """A smooth two-blob image: easy for a few shapes."""
    grid = dp.pixel_centres(shape)
    centre = jax.random.uniform(key, (2,)) * 0.5 + 0.25
    blob = jnp.exp(-jnp.sum((grid - centre) ** 2, -1) / 0.05)
    return jnp.stack([blob, 0.5 * blob + 0.2, 1.0 - blob], -1)


@pytest.mark.parametrize("shape_type", shape_types(), ids=lambda t: t.__name__)
@pytest.mark.parametrize("batch", [None, 0.5, 40])
def test_fit_lowers_the_loss(shape_type, batch, getkey):
    target = _target(getkey())
    model = shape_type.init(8, key=getkey(), target=target)
    before = dp.L2()(model.render_image((16, 16)), target)
    result = dp.fit(model, target, optimizer=OPTIMIZER, steps=60, batch=batch, key=getkey())
    after = dp.L2()(result.model.render_image((16, 16)), target)
    assert result.losses.shape == (60,)
    assert float(after) < 0.7 * float(before)
    assert type(result.model) is shape_type
    assert result.seconds > 0


def test_fit_is_deterministic(getkey):
    target = _target(getkey())
    model = dp.Circles.init(5, key=getkey(), target=target)
    run = lambda key: dp.fit(model, target, steps=20, batch=0.3, key=key)  # noqa: E731
    a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    assert tree_allclose(a.model, b.model, rtol=0, atol=0)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.array_equal(a.losses, c.losses)


def test_steps_per_dispatch_does_not_change_the_result(getkey):
    target = _target(getkey())
    model = dp.Circles.init(5, key=getkey(), target=target)
    a = dp.fit(model, target, steps=25, batch=0.3, key=jax.random.key(0), steps_per_dispatch=7)
    b = dp.fit(model, target, steps=25, batch=0.3, key=jax.random.key(0), steps_per_dispatch=100)
    assert tree_allclose(a.model, b.model, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-6)


def test_vmap_over_targets_matches_single_fits(getkey):
    targets = jnp.stack([_target(getkey()), _target(getkey())])
    model = dp.Circles.init(4, key=getkey())

    def run(target):
        return dp.fit(
            model, target, optimizer=OPTIMIZER, steps=15, batch=0.5, key=jax.random.key(7)
        )

    batched = jax.vmap(run)(targets)
    for i in range(2):
        single = run(targets[i])
        assert tree_allclose(
            jax.tree.map(lambda x: x[i], batched.model), single.model, rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(batched.losses[i], single.losses, rtol=1e-4, atol=1e-6)


def test_vmap_over_keys(getkey):
    target = _target(getkey())
    model = dp.Circles.init(4, key=getkey(), target=target)
    keys = jax.random.split(getkey(), 3)
    results = jax.vmap(lambda k: dp.fit(model, target, steps=10, batch=0.5, key=k))(keys)
    assert results.losses.shape == (3, 10)
    assert not np.allclose(results.losses[0], results.losses[1])


def test_second_fit_does_not_recompile(objective_traces, getkey):
    traces = objective_traces
    target = _target(getkey(), shape=(9, 11))  # a shape no other test compiles
    model = dp.Circles.init(3, key=getkey(), target=target)
    loss = dp.L2() + 0.5 * dp.L1()
    dp.fit(model, target, loss=loss, optimizer=OPTIMIZER, steps=12, batch=0.5, key=getkey())
    first = len(traces)
    assert first >= 1
    other_target = _target(getkey(), shape=(9, 11))
    other_model = dp.Circles.init(3, key=getkey(), target=other_target)
    other_loss = dp.L2() + 2.0 * dp.L1()  # other weights, same structure
    dp.fit(
        other_model,
        other_target,
        loss=other_loss,
        optimizer=OPTIMIZER,
        steps=12,
        batch=0.5,
        key=getkey(),
    )
    assert len(traces) == first


def test_plain_callable_loss(getkey):
    target = _target(getkey())
    model = dp.Circles.init(5, key=getkey(), target=target)
    result = dp.fit(model, target, loss=lambda p, t: jnp.mean(jnp.abs(p - t) ** 1.5), steps=30)
    assert float(result.losses[-1]) < float(result.losses[0])


@pytest.mark.parametrize(
    "target, error, match",
    [
        (jnp.zeros((8, 8)), ValueError, "target"),  # no channel axis
        (jnp.zeros((8, 8, 4)), ValueError, "channels"),  # RGBA vs a 3-channel model
        (np.zeros((8, 8, 3), np.uint8), TypeError, "float"),
        (jnp.full((8, 8, 3), 2.0), ValueError, r"\[0\.0, 1\.0\]"),
        (jnp.full((8, 8, 3), jnp.nan), ValueError, "NaN"),
        (jnp.zeros((0, 8, 3)), ValueError, "non-empty"),
    ],
)
def test_bad_targets(target, error, match, getkey):
    model = dp.Circles.init(3, key=getkey())
    with pytest.raises(error, match=match):
        dp.fit(model, target, steps=2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"batch": 0.0, "key": jax.random.key(0)}, ValueError, "batch"),
        ({"batch": 1.5, "key": jax.random.key(0)}, ValueError, "batch"),
        ({"batch": 10_000, "key": jax.random.key(0)}, ValueError, "batch"),
        ({"batch": 0.5}, ValueError, "key"),
        ({"batch": 0.5, "key": 3}, TypeError, "key"),
        ({"optimizer": "adam"}, TypeError, "optimizer"),
        ({"loss": lambda p, t: p - t}, ValueError, "scalar"),
    ],
)
def test_bad_arguments(kwargs, error, match, getkey):
    model = dp.Circles.init(3, key=getkey())
    with pytest.raises(error, match=match):
        dp.fit(model, jnp.zeros((8, 8, 3)), **{"steps": 2, **kwargs})


@pytest.mark.parametrize("n, error", [(0, ValueError), (-1, ValueError), (2.0, TypeError)])
def test_bad_shape_counts(n, error, getkey):
    with pytest.raises(error, match="n"):
        dp.Circles.init(n, key=getkey())


def test_not_a_model():
    with pytest.raises(TypeError, match="model"):
        dp.fit("circles", jnp.zeros((4, 4, 3)), steps=1)  # pyright: ignore[reportArgumentType]


def test_weighted_loss_with_minibatches(getkey):
    """Per-pixel weights are sampled with the pixels: all-ones weights change nothing."""
    target = jax.random.uniform(getkey(), (12, 12, 3))
    model, key = dp.Circles.init(4, key=getkey(), target=target), getkey()
    ones = dp.Weighted(dp.L2(), jnp.ones((12, 12)))
    plain = dp.fit(model, target, loss=dp.L2(), steps=20, batch=0.25, key=key)
    weighted = dp.fit(model, target, loss=ones, steps=20, batch=0.25, key=key)
    np.testing.assert_allclose(weighted.losses, plain.losses, rtol=1e-6)
    # Zero weight on the right half: that half of the target cannot matter.
    half = dp.Weighted(dp.L2(), jnp.where(jnp.arange(12) < 6, 1.0, 0.0)[None].repeat(12, 0))
    other = target.at[:, 6:].set(1.0 - target[:, 6:])
    a = dp.fit(model, target, loss=half, steps=20, batch=0.25, key=key)
    b = dp.fit(model, other, loss=half, steps=20, batch=0.25, key=key)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-6)


@pytest.mark.parametrize(
    ("height", "width", "stride"),
    [(21, 13, 2), (10, 7, 3), (12, 9, 3), (9, 7, (1, 2)), (8, 10, (2, 3))],
)
def test_stratified_sampling_draws_every_pixel_alike(height, width, stride):
    """Where blocks are cut by the image's edge, every pixel is still as likely: the
    last row and column were drawn up to `stride` times as often (the corner `stride^2`),
    which biased the loss and its gradient towards the borders."""
    down, across = (stride, stride) if isinstance(stride, int) else stride
    keys = jax.random.split(jax.random.key(0), 4000)
    # Over keys at one step, and over the steps of one key (epochs of reshuffled orders).
    for draws in (
        jax.vmap(lambda k: loop_module.stratified_indices(k, height, width, stride, 5))(keys),
        jax.vmap(lambda s: loop_module.stratified_indices(keys[0], height, width, stride, s))(
            jnp.arange(4000)
        ),
    ):
        counts = np.bincount(np.asarray(draws).ravel(), minlength=height * width)
        expected = draws.size / (height * width)
        assert draws.shape[1] == -(-height // down) * -(-width // across)
        assert np.all(np.abs(counts / expected - 1) < 0.2), (counts.min(), counts.max())


@pytest.mark.parametrize(("height", "width", "stride"), [(16, 16, 4), (8, 12, (2, 3))])
def test_stratified_sampling_visits_every_pixel_once_an_epoch(height, width, stride):
    # Random reshuffling: drawn independently each step, a block saw some pixels twice
    # and others not at all in as many steps as it has pixels.
    down, across = (stride, stride) if isinstance(stride, int) else stride
    key = jax.random.key(3)
    for epoch in range(2):
        steps = jnp.arange(epoch * down * across, (epoch + 1) * down * across)
        draws = jax.vmap(lambda s: loop_module.stratified_indices(key, height, width, stride, s))(
            steps
        )
        counts = np.bincount(np.asarray(draws).ravel(), minlength=height * width)
        np.testing.assert_array_equal(counts, 1)
    # The epochs differ in their orders.
    first, second = (loop_module.stratified_indices(key, height, width, stride, s)
                     for s in (0, down * across))  # fmt: skip
    assert not np.array_equal(first, second)


def test_large_stratified_blocks_are_drawn_anew_each_step():
    # Permuting a 128 x 128 block every step took 125x the draws (`batch=4` on 256^2):
    # blocks over `RESHUFFLED_AREA` pixels draw each step, unbiased as before.
    assert 17 * 17 > loop_module.RESHUFFLED_AREA
    keys = jax.random.split(jax.random.key(0), 20000)
    draws = jax.vmap(lambda k: loop_module.stratified_indices(k, 40, 37, 17, 3))(keys)
    counts = np.bincount(np.asarray(draws).ravel(), minlength=40 * 37)
    assert np.all(np.abs(counts / (draws.size / (40 * 37)) - 1) < 0.5), (
        counts.min(),
        counts.max(),
    )
    steps = [loop_module.stratified_indices(keys[0], 40, 37, 17, s) for s in range(3)]
    assert not np.array_equal(steps[0], steps[1]) and not np.array_equal(steps[1], steps[2])


@pytest.mark.parametrize("batch", [0.45, 0.5, 0.6, 0.3, 0.25, 0.1, 0.03, 2048, 1000, 300])
def test_stratified_sampling_draws_about_the_pixels_asked_for(batch):
    # Square blocks of a side `round(sqrt(1 / batch))` drew every pixel for 0.45 and 0.6
    # (2.2 and 1.7 times the pixels asked for) and a quarter of them for 0.3; oblong
    # blocks keep each step within about 1.2 times of `batch` (the edge's part blocks).
    target = jnp.full((64, 64, 3), 0.5)
    model = dp.Circles.init(2, key=jax.random.key(0), target=target)
    seen = []
    loss = dp.Loss(
        lambda pred, goal: (seen.append(pred.shape[0]), jnp.mean((pred - goal) ** 2))[1]
    )
    dp.fit(model, target, loss=loss, steps=1, batch=batch, sampling="stratified",
           key=jax.random.key(1))  # fmt: skip
    asked = batch * 64 * 64 if isinstance(batch, float) else batch
    assert 1 / 1.2 <= seen[-1] / asked <= 1.2, (seen, asked)


def test_batch_as_a_concrete_jax_scalar_is_a_number(getkey):
    # `jnp.minimum(0.1, 4096 / (H * W))` was refused as "not a fraction in (0, 1]";
    # NumPy scalars and a JAX `steps` were taken (found by a review).
    target = jnp.full((16, 16, 3), 0.5)
    model, key = dp.Circles.init(2, key=getkey(), target=target), getkey()
    want = dp.fit(model, target, steps=2, batch=0.5, key=key).losses
    for batch in (jnp.float32(0.5), jnp.int32(128), jnp.minimum(0.5, 4096 / 256), np.array(0.5)):
        np.testing.assert_array_equal(
            dp.fit(model, target, steps=2, batch=batch, key=key).losses, want
        )
    with pytest.raises(ValueError, match=r"fraction of the pixels must be in \(0, 1\]; got 1.5"):
        dp.fit(model, target, steps=2, batch=jnp.float32(1.5), key=key)


def test_stratified_sampling(getkey):
    """One pixel from every block, and a stratified fit matches a uniform one's quality."""
    indices = loop_module.stratified_indices(getkey(), 12, 9, 3)
    rows, cols = np.asarray(indices) // 9, np.asarray(indices) % 9
    blocks = sorted(zip((rows // 3).tolist(), (cols // 3).tolist(), strict=True))
    assert blocks == [(r, c) for r in range(4) for c in range(3)]  # each block once
    picture = dp.Circles.init(3, key=getkey(), size_range=(0.15, 0.3), opacity=0.9)
    target = picture.render_image((16, 16))
    model, key = dp.Circles.init(3, key=getkey(), size_range=(0.15, 0.3)), getkey()
    kwargs = dict(steps=150, batch=1 / 16, key=key)
    stratified = dp.fit(model, target, sampling="stratified", **kwargs)
    uniform = dp.fit(model, target, sampling="uniform", **kwargs)
    full = dp.fit(model, target, steps=1)
    assert stratified.losses.shape == (150,)
    error = [float(jnp.mean((r.model.render_image((16, 16)) - target) ** 2))
             for r in (stratified, uniform, full)]  # fmt: skip
    assert error[0] < 0.5 * error[2] and error[0] < 1.5 * error[1]
    with pytest.raises(ValueError, match="sampling"):
        dp.fit(model, target, sampling="sobol", **kwargs)


# -- the boundary: NaN and divergence under jit, bad arguments, batches of models ------


def _batch(n=3):
    keys = jax.random.split(jax.random.key(0), n)
    return jax.vmap(lambda k: dp.Circles.init(4, key=k))(keys)


def test_batched_model_is_refused_clearly_eagerly_and_under_jit():
    model, target = _batch(), jnp.full((8, 8, 3), 0.5)
    for run in (
        lambda: dp.fit(model, target, steps=2),
        lambda: jax.jit(lambda m: dp.fit(m, target, steps=2).model)(model),
    ):
        with pytest.raises(ValueError, match=r"batch of 3 models") as info:
            run()
        assert "jax.vmap" in str(info.value) and "x[i]" in str(info.value)
    # Under vmap each member is one model: fitting works, as the message says.
    fitted = jax.vmap(lambda m: dp.fit(m, target, steps=2).model)(model)
    assert fitted.raw_colours.shape == (3, 4, 3)


def test_batched_layers_are_refused_by_render():
    keys = jax.random.split(jax.random.key(0), 2)
    layers = jax.vmap(
        lambda k: dp.Layers([dp.Rectangles.init(2, key=k), dp.Circles.init(3, key=k)])
    )(keys)
    with pytest.raises(ValueError, match=r"`render_image` takes one model.*batch of 2"):
        layers.render_image((8, 8))
    images = jax.vmap(lambda m: m.render_image((8, 8)))(layers)
    assert images.shape == (2, 8, 8, 3)
    # a batch's leading axis was taken for N (2 shapes, where each member holds 5)
    with pytest.raises(ValueError, match=r"`num_shapes` takes one model.*batch of 2"):
        layers.num_shapes  # noqa: B018
    assert set(jax.vmap(lambda m: jnp.full((), m.num_shapes))(layers).tolist()) == {5}


def test_one_model_with_as_many_shapes_as_channels_is_not_a_batch():
    # N == C == 3: every array has a leading 3, yet it is one valid model.
    model = dp.Circles.init(3, key=jax.random.key(0))
    result = dp.fit(model, jnp.full((8, 8, 3), 0.5), steps=2)
    assert result.model.raw_colours.shape == (3, 3)


@pytest.mark.parametrize("progress", ["", " ", 1, None])
def test_progress_must_be_a_bool_or_a_label(progress):
    model = dp.Circles.init(2, key=jax.random.key(0))
    target = jnp.full((8, 8, 3), 0.5)
    with pytest.raises(TypeError, match="`progress` must be True, False or a label"):
        dp.fit(model, target, steps=2, progress=progress)
    with pytest.raises(TypeError, match="`progress` must be True, False or a label"):
        dp.paint(target, 2, key=jax.random.key(0), steps=2, progress=progress)


def test_progress_label_names_the_bar(capsys):
    model = dp.Circles.init(2, key=jax.random.key(0))
    target = jnp.full((8, 8, 3), 0.5)
    dp.fit(model, target, steps=4, steps_per_dispatch=2, progress="from the SVD")
    dp.paint(target, 2, key=jax.random.key(0), steps=4, progress="painting")
    shown = capsys.readouterr().err
    assert "from the SVD" in shown and "painting" in shown


def test_nan_model_raises_under_jit():
    model = dp.Circles.init(3, key=jax.random.key(0))
    model = eqx.tree_at(lambda m: m.raw_colours, model, model.raw_colours.at[0, 0].set(jnp.nan))
    target = jnp.full((8, 8, 3), 0.5)
    with pytest.raises(ValueError, match="finite parameters"):
        dp.fit(model, target, steps=2)
    with pytest.raises(Exception, match="must have finite parameters"):
        jax.block_until_ready(jax.jit(lambda m: dp.fit(m, target, steps=2).losses)(model))


@pytest.mark.parametrize("layers", [False, True])
def test_a_nan_in_a_frozen_parameter_is_refused_as_one_in_a_trained_one(layers):
    # Frozen, it was a "divergence at step 0" eagerly, and no error at all under `jit`.
    circles = dp.Circles.init(3, key=jax.random.key(0))
    bad = eqx.tree_at(lambda m: m.raw_colours, circles, circles.raw_colours.at[0, 0].set(jnp.nan))
    model = dp.Layers([bad, circles]) if layers else bad
    trainable = model.trainable(layers=[1]) if layers else model.trainable("position")
    target = jnp.full((8, 8, 3), 0.5)
    where = r"layers\[0\]\.raw_colours" if layers else "raw_colours"
    with pytest.raises(ValueError, match=rf"finite parameters; got NaN/inf in `model.{where}`"):
        dp.fit(model, target, steps=2, trainable=trainable)
    fitted = jax.jit(lambda m: dp.fit(m, target, steps=2, trainable=trainable).losses)
    with pytest.raises(Exception, match="must have finite parameters"):
        jax.block_until_ready(fitted(model))


def test_divergence_under_jit_sets_the_flag():
    model = dp.Circles.init(3, key=jax.random.key(0))
    target = jnp.full((8, 8, 3), 0.5)

    def run(lr):
        return dp.fit(model, target, steps=4, optimizer=optax.sgd(lr))

    fine, diverged = jax.jit(run)(1e-2), jax.jit(run)(jnp.inf)
    assert not bool(fine.diverged) and bool(diverged.diverged)
    assert np.isnan(np.asarray(diverged.losses[1:])).all()
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(diverged.model))
    flags = jax.vmap(lambda lr: run(lr).diverged)(jnp.asarray([1e-2, jnp.inf]))
    assert flags.tolist() == [False, True]
    # Eagerly it raises, and the result it carries says so too.
    with pytest.raises(dp.FitDivergedError) as info:
        run(float("inf"))
    assert bool(info.value.result.diverged)
    assert "learning rate that is NaN or inf" in str(info.value)  # not only the loss blamed
    assert not bool(run(1e-2).diverged)


@pytest.mark.parametrize(
    "lr, error",
    [("a", TypeError), (True, TypeError), (None, TypeError), (0.0, ValueError),
     (-1e-2, ValueError), (float("nan"), ValueError), (float("inf"), ValueError)],
)  # fmt: skip
def test_recommended_optimizer_checks_the_learning_rate(lr, error):
    with pytest.raises(error, match="`learning_rate` must be a finite number > 0"):
        dp.SeparableFilters.recommended_optimizer(learning_rate=lr)
    dp.SeparableFilters.recommended_optimizer(learning_rate=np.float32(0.1))


# -- Layers.trainable ---------------------------------------------------------------------


def _layers():
    keys = jax.random.split(jax.random.key(3), 2)
    back = dp.Rectangles.init(3, key=keys[0], opacity=0.8)
    front = dp.Circles.init(4, key=keys[1], opacity=0.8)
    return dp.Layers([back, front]), _target(jax.random.key(4), (12, 12))


def _changed(before, after):
    return jax.tree.map(lambda a, b: not np.array_equal(a, b), before, after)


def test_layers_trainable_kinds_apply_to_every_layer():
    model, target = _layers()
    result = dp.fit(model, target, steps=5, trainable=model.trainable("geometry"))
    changed = _changed(model, result.model)
    for layer in changed.layers:
        assert not layer.raw_colours and not layer.raw_opacities
    assert changed.layers[0].raw_centres and changed.layers[1].raw_radii


def test_layers_trainable_freezes_whole_layers():
    model, target = _layers()
    result = dp.fit(model, target, steps=5, trainable=model.trainable(layers=[1]))
    changed = _changed(model, result.model)
    assert not any(jax.tree.leaves(changed.layers[0]))  # the back layer stays exactly
    assert changed.layers[1].raw_centres and changed.layers[1].raw_colours
    spec = model.trainable("colour", layers=-2)  # the back layer's colours only
    assert jax.tree.leaves(spec.layers[0]).count(True) == 2  # colours and background
    assert not any(jax.tree.leaves(spec.layers[1]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(layers=2), ValueError, "2 layers"),
        (dict(layers=[0, -3]), ValueError, "-3"),
        (dict(layers="back"), TypeError, "layer index"),
        (dict(layers=[True]), TypeError, "ints"),
        (dict(kinds=("nonsense",)), ValueError, "role kinds"),
    ],
)
def test_layers_trainable_errors(kwargs, error, match):
    model, _ = _layers()
    kinds = kwargs.pop("kinds", ())
    with pytest.raises(error, match=match):
        model.trainable(*kinds, **kwargs)


def test_a_selection_of_nothing_is_refused_where_it_is_made():
    # `fit` said only "nothing would train", not that an "over" set has no depths.
    model, _ = _layers()
    circles = model.layers[1]
    with pytest.raises(ValueError, match=r"trainable\('depth'\)` selects no.*with_compositing"):
        circles.trainable("depth")
    with pytest.raises(ValueError, match="kinds \\['colour', 'opacity', 'position', 'size'\\]"):
        circles.trainable("angle")
    assert any(jax.tree.leaves(circles.trainable("position", "angle")))  # generic code
    depth = circles.with_compositing("depth")
    assert jax.tree.leaves(depth.trainable("depth")).count(True) == 1
    # In layers, a kind that one training layer has is enough.
    layers = dp.Layers([dp.Ellipses.init(2, key=jax.random.key(0)), circles])
    assert jax.tree.leaves(layers.trainable("angle")).count(True) == 1
    with pytest.raises(ValueError, match="selects no parameter of the layers that train"):
        layers.trainable("angle", layers=1)


def test_layer_errors_name_the_layer():
    model, target = _layers()
    grey = dp.Circles.init(2, key=jax.random.key(0), channels=1)
    with pytest.raises(ValueError, match=r"`layers\[1\]` has 1, `layers\[0\]` 3"):
        dp.Layers([model.layers[0], grey])
    depth = dp.Layers([model.layers[0], model.layers[1].with_compositing("depth")])
    with pytest.raises(ValueError, match=r"^`layers\[1\]`: method=\"tiled\" cannot render"):
        depth.render_image((8, 8), method="tiled")
    with pytest.raises(ValueError, match=r"^`layers\[1\]`: method=\"tiled\" cannot render"):
        dp.fit(depth, target, steps=1, method="tiled")
    additive = dp.Layers([model.layers[0], model.layers[1].with_compositing("additive")])
    with pytest.raises(ValueError, match=r"^`layers\[1\]`: SVG export draws"):
        dp.to_svg(additive, (8, 8))


def test_a_loss_holding_its_own_map_is_told_to_use_weighted():
    class MaskedL2(dp.AbstractPointwiseLoss):
        mask: jax.Array

        def pointwise(self, pred, target):
            return self.mask * (pred - target) ** 2

    target = jnp.full((24, 24, 3), 0.5)
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)
    loss = MaskedL2(jnp.ones((24, 24, 1)))
    with pytest.raises(ValueError, match=r"works on whole images.*dp\.Weighted\(loss, map\)"):
        dp.fit(model, target, loss=loss, steps=2, batch=0.1, key=jax.random.key(0))
    dp.fit(model, target, loss=loss, steps=2)  # whole images: fine


def test_each_step_samples_other_pixels():
    # With the same pixels every step, a `batch` fit would fit one fixed part of the
    # image. Frozen parameters (a learning rate of 0): only the pixels change the loss.
    target = jax.random.uniform(jax.random.key(3), (16, 16, 3))
    model = dp.Circles.init(4, key=jax.random.key(1), target=target)
    losses = dp.fit(model, target, optimizer=optax.sgd(0.0), steps=12, batch=0.1,
                    key=jax.random.key(2)).losses  # fmt: skip
    assert len(np.unique(np.asarray(losses))) == 12


def test_a_fit_stays_stopped_after_its_first_non_finite_step():
    # A loss that is NaN only on the steps whose sample holds the one bright pixel:
    # later steps would be finite again, and the fit must not carry on from there.
    target = jnp.full((16, 16, 3), 0.5).at[3, 5].set(1.0)
    model = dp.Circles.init(4, key=jax.random.key(1), target=target)

    def loss(pred, goal):
        return jnp.where(jnp.any(goal > 0.9), jnp.nan, jnp.mean((pred - goal) ** 2))

    def run(target):
        return dp.fit(model, target, loss=loss, steps=30, batch=0.1, key=jax.random.key(0))

    result = jax.jit(run)(target)
    losses = np.asarray(result.losses)
    first = int(np.argmax(np.isnan(losses)))
    assert bool(result.diverged) and 0 < first < 25
    assert np.all(np.isnan(losses[first:]))
    with pytest.raises(dp.FitDivergedError) as info:
        run(target)
    # A loss that is not finite condemns the parameters it was computed at: the fit goes
    # back to those before the last update, whose loss was finite.
    stopped = dp.fit(model, target, loss=loss, steps=first - 1, batch=0.1, key=jax.random.key(0))
    assert tree_allclose(info.value.result.model, stopped.model, atol=0)
    assert tree_allclose(result.model, stopped.model, atol=0)  # under `jit` too


def test_a_diverged_fit_returns_a_model_whose_loss_is_finite():
    # The update that took `a` below 0 kept finite parameters whose render is NaN:
    # `error.result.model` rendered NaN, and refitting from it (the message's advice)
    # diverged at once; under `vmap` the diverged member rendered NaN too.
    target = jnp.full((8, 8, 3), 0.25)
    model = SqrtModel(jnp.asarray(1.0))
    with pytest.raises(dp.FitDivergedError) as info:
        dp.fit(model, target, steps=20, optimizer=optax.sgd(10.0), snapshots=21)
    assert float(info.value.result.model.a) == 1.0
    # The snapshot of the parameters sent back is rewritten too (a GIF drew NaN frames).
    assert all(float(m.a) >= 0 for m in info.value.result.snapshots)
    assert "last model whose loss was finite" in str(info.value)
    refit = dp.fit(info.value.result.model, target, steps=50, optimizer=optax.sgd(0.1))
    assert abs(float(refit.model.a) ** 0.5 - 0.25) < 0.01  # renders the target
    fits = jax.vmap(lambda lr: dp.fit(model, target, steps=20, optimizer=optax.sgd(lr)))(
        jnp.array([0.1, 10.0])
    )
    assert np.asarray(fits.diverged).tolist() == [False, True]
    assert float(fits.model.a[1]) == 1.0


class _Fourier(dp.AbstractModel):
    """A user model with complex parameters: a few Fourier coefficients per channel."""

    coeffs: jax.Array

    @property
    def num_channels(self):
        return 3

    def render(self, points, *, pixel_size):
        freqs = jnp.stack(jnp.meshgrid(jnp.arange(-1.0, 2.0), jnp.arange(-1.0, 2.0)), -1)
        waves = jnp.exp(2j * jnp.pi * points @ freqs.reshape(-1, 2).T)
        return jax.nn.sigmoid(jnp.real(waves @ self.coeffs))


@pytest.mark.parametrize("optimizer", [optax.sgd(1.0), optax.adam(5e-2)], ids=["sgd", "adam"])
def test_complex_parameters_descend(optimizer):
    # JAX's gradient in a complex parameter is the conjugate of the direction that
    # descends: stepped along it as it came, sgd raised the loss fourfold.
    parts = jax.random.normal(jax.random.key(0), (2, 9, 3))
    target = _Fourier((parts[0] + 1j * parts[1]).astype(jnp.complex64)).render_image((12, 12))
    model = _Fourier(jnp.full((9, 3), 0.01j, jnp.complex64))
    losses = np.asarray(dp.fit(model, target, steps=60, optimizer=optimizer).losses)
    assert losses[-1] < 0.3 * losses[0]


class _Flat(dp.AbstractModel):
    """A user model with no checks of its own: one colour everywhere."""

    colour: jax.Array

    @property
    def num_channels(self):
        return 3

    def render(self, points, *, pixel_size):
        return jnp.broadcast_to(self.colour, (points.shape[0], 3))


class _NoPixelSize(_Flat):
    def render(self, points):  # pyright: ignore[reportIncompatibleMethodOverride]
        return super().render(points, pixel_size=None)


class _Integers(_Flat):
    def render(self, points, *, pixel_size):
        return super().render(points, pixel_size=pixel_size).astype(jnp.int32)


class _FourChannels(_Flat):
    def render(self, points, *, pixel_size):
        return jnp.ones((points.shape[0], 4)) * self.colour[0]


@pytest.mark.parametrize(
    "cls, error, pattern",
    [
        (_NoPixelSize, TypeError, r"_NoPixelSize\.render` must be `def render\(self, points, \*"),
        (_Integers, TypeError, r"_Integers\.render` must return floats"),
        (_FourChannels, ValueError, r"It has 4 channels: make `num_channels` and `render` agree"),
    ],
)
def test_a_user_models_render_is_named_when_fit_cannot_use_it(cls, error, pattern):
    # Were Python's own TypeError from inside the compiled step, "`pred` must be a float
    # array" (the loss's argument), and "Return `values.T`" for a channel mismatch.
    target = jnp.full((8, 8, 3), 0.5)
    with pytest.raises(error, match=pattern):
        dp.fit(cls(jnp.zeros(3)), target, steps=2)


def test_a_batch_of_unchecked_user_models_is_refused_at_the_call():
    # No check of its own refused the batch: it failed inside the user's render (a JAX
    # shape error 25 frames deep). One member renders, so it is a batch.
    batch = jax.vmap(_Flat)(jnp.zeros((4, 3)))
    with pytest.raises(
        ValueError, match=r"`fit` takes one model; got a _Flat that holds a batch of 4"
    ):
        dp.fit(batch, jnp.full((8, 8, 3), 0.5), steps=2)
    assert dp.fit(_Flat(jnp.zeros(3)), jnp.full((8, 8, 3), 0.5), steps=2).losses.shape == (2,)
