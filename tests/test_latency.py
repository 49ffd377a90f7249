"""Compiles, not seconds: eager calls reuse compiled programs, equal settings recompile
nothing. Counted with `jax.log_compiles` (the log of XLA compilations), never timed."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp

from .test_custom_shape import UserCircles


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Compiling "):
            self.names.append(message.split()[1])


@pytest.fixture
def compiles():
    handler = _Count()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield handler.names
    finally:
        logger.removeHandler(handler)


def _model(key=0, grey=0.5):
    return dp.Circles.init(16, key=jax.random.key(key), target=jnp.full((32, 32, 3), grey))


def test_render_image_with_any_softness_compiles_once(compiles):
    # The set's `softness` is static: a training loop annealing it compiled every step.
    model = _model()
    model.render_image((32, 32), softness=jnp.asarray(2.0))
    compiles.clear()
    for softness in (0.5, 1.0, 3.0):
        model.render_image((32, 32), softness=jnp.asarray(softness))
        model.render_image((32, 32), softness=softness)  # a number too: made an array
    assert compiles == []


def test_eager_render_compiles_once(compiles):
    model = _model()
    first = model.render_image((32, 32))
    compiles.clear()
    again = _model(1).render_image((32, 32))  # new values, same structure
    points = jnp.full((5, 2), 0.5)
    model.render(points, pixel_size=0.1)
    compiles.clear()
    model.render(points, pixel_size=0.2)  # a new pixel size is a value, not a program
    assert compiles == []
    assert first.shape == again.shape == (32, 32, 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: jax.grad(lambda m: jnp.sum(m.render_image((32, 32))))(m).raw_centres,
        lambda m: jax.grad(lambda p: jnp.sum(m.render(p, pixel_size=0.03)))(jnp.full((9, 2), 0.4)),
        lambda m: jax.vmap(lambda m: m.render_image((32, 32)))(jax.tree.map(lambda x: x[None], m)),
        lambda m: jax.jacfwd(lambda c: m.render(c, pixel_size=0.03))(jnp.full((3, 2), 0.4)),
    ],
    ids=["grad", "grad-points", "vmap", "jacfwd"],
)
def test_eager_grad_and_vmap_of_a_render_compile_once(compiles, call):
    # Traced inline under an eager grad or vmap, the renderer's loops compiled anew every
    # call (1.4 s a gradient at 256^2).
    first = call(_model())
    compiles.clear()
    again = call(_model(1))
    assert compiles == []
    assert first.shape == again.shape


def test_render_inside_jit_traces_inline(compiles):
    model = _model()
    out = jax.jit(lambda m: m.render_image((32, 32)))(model)
    assert jnp.allclose(out, model.render_image((32, 32)), atol=1e-6)


def _fit(optimizer, loss=None):
    target = jnp.full((32, 32, 3), 0.25)
    return dp.fit(_model(), target, loss=loss, optimizer=optimizer, steps=3, batch=0.5,
                  key=jax.random.key(1))  # fmt: skip


def test_fresh_optimizer_and_loss_do_not_recompile(compiles):
    a = _fit(optax.adam(1e-2), lambda p, t: jnp.mean((p - t) ** 2))
    compiles.clear()
    b = _fit(optax.adam(1e-2), lambda p, t: jnp.mean((p - t) ** 2))
    assert not [n for n in compiles if "run_steps" in n]
    assert jnp.array_equal(a.losses, b.losses)


@pytest.mark.parametrize("setting", ["max_value", "filter_sigma"])
def test_a_sweep_over_ssim_settings_compiles_once(compiles, setting):
    # They were Python floats: each value compiled a new step (2 to 4 s).
    target = jnp.full((16, 16, 3), 0.25)

    def fit(value):
        loss = dp.L2() + dp.SSIM(filter_size=5, **{setting: value})
        return dp.fit(_model(), target, loss=loss, steps=3)

    fit(1.1)
    compiles.clear()
    fit(1.3)
    assert not [n for n in compiles if "run_steps" in n]


def test_a_sweep_over_short_step_counts_compiles_once(compiles):
    target = jnp.full((32, 32, 3), 0.25)

    def fit(steps):
        return dp.fit(_model(), target, steps=steps, batch=0.5, key=jax.random.key(1))

    fit(20)
    compiles.clear()
    thirty = fit(30)  # both run one dispatch of 32 steps, the last ones skipped
    assert not [n for n in compiles if "run_steps" in n]
    assert thirty.losses.shape == (30,)
    np.testing.assert_array_equal(thirty.losses[:20], fit(20).losses)


@pytest.mark.parametrize(
    "make",
    [
        lambda lr: optax.adam(lr),
        lambda lr: optax.adamw(lr, b1=0.8, weight_decay=lr),
        lambda lr: optax.sgd(optax.cosine_decay_schedule(lr, 10), momentum=0.9),
        lambda lr: optax.chain(optax.clip_by_global_norm(10 * lr), optax.lion(lr)),
        # Settings inside a `lax.cond` branch or an inner `jax.jit` (2 s each before).
        lambda lr: optax.MultiSteps(optax.adam(lr), every_k_schedule=round(200 * lr)),
        lambda lr: optax.apply_if_finite(optax.adam(lr), max_consecutive_errors=3),
        lambda lr: optax.chain(optax.adam(lr), optax.contrib.reduce_on_plateau(factor=10 * lr)),
    ],
    ids=["adam", "adamw", "sgd-schedule", "chain", "multisteps", "if-finite", "plateau"],
)
def test_a_sweep_over_learning_rates_compiles_once(compiles, make):
    # A new learning rate (betas, schedule, clip) is an input of the compiled step, not
    # part of it: each recompiled it (2.6 s on a CPU) before.
    first = _fit(make(1e-2))
    compiles.clear()
    second = _fit(make(3e-2))
    assert not [n for n in compiles if "run_steps" in n]
    assert not jnp.array_equal(first.losses, second.losses)
    np.testing.assert_array_equal(second.losses, _fit(make(3e-2)).losses)


@pytest.mark.parametrize("transform", ["grad", "vmap"])
def test_an_eager_transform_over_the_learning_rate_compiles_once(compiles, transform):
    # `optax.adam(lr)` closing over a traced `lr` (research.md's `jax.grad(final_loss)`,
    # no `jax.jit`) could not be lifted: every call compiled the step loop anew.
    def final_loss(lr):
        return _fit(optax.adam(lr)).losses[-1]

    call = jax.grad(final_loss) if transform == "grad" else jax.vmap(final_loss)
    rates = (
        (lambda i: 1e-2 * i) if transform == "grad" else (lambda i: jnp.array([1e-2, 2e-2]) * i)
    )
    first = call(rates(1))
    compiles.clear()
    second = call(rates(2))
    assert not [n for n in compiles if "run_steps" in n]
    assert np.all(np.isfinite(second)) and not np.array_equal(first, second)


def test_other_settings_do_compile(compiles):
    a = _fit(optax.adam(1e-2))
    compiles.clear()
    b = _fit(optax.adam(1e-2), lambda p, t: jnp.mean(jnp.abs(p - t)))
    assert [n for n in compiles if "run_steps" in n]
    assert not jnp.array_equal(a.losses, b.losses)
    compiles.clear()
    _fit(optax.chain(optax.adam(1e-2), optax.scale(0.5)))  # another program
    assert [n for n in compiles if "run_steps" in n]


def _jitted_loss(weight):
    weights = np.full((3,), weight, np.float32)
    return jax.jit(lambda p, t: jnp.mean(weights * (p - t) ** 2))


def _custom_jvp_loss(weight):
    @jax.custom_jvp
    def loss(p, t):
        return jnp.mean((p - t) ** 2)

    @loss.defjvp
    def _(primals, tangents):
        p, t = primals
        return loss(p, t), weight * jnp.sum(2 * (p - t) * tangents[0]) / p.size

    return loss


def _custom_vjp_loss(weight):
    @jax.custom_vjp
    def loss(p, t):
        return jnp.mean((p - t) ** 2)

    def forward(p, t):
        return loss(p, t), (p, t)

    def backward(saved, g):
        p, t = saved
        return weight * g * 2 * (p - t) / p.size, jnp.zeros_like(t)

    loss.defvjp(forward, backward)
    return loss


@pytest.mark.parametrize("make", [_jitted_loss, _custom_jvp_loss, _custom_vjp_loss])
def test_losses_differing_where_the_program_text_is_silent_do_not_share_a_step(make):
    # An inner `jax.jit` keeps what it closes over out of the printed program; a custom
    # rule is a Python function. Sharing the first compiled step trained with its loss.
    trained = _fit(optax.adam(1e-2), make(1.0)).losses
    frozen = _fit(optax.adam(1e-2), make(0.0)).losses
    assert not jnp.allclose(trained[0], trained[-1])
    if make is _jitted_loss:
        assert jnp.all(frozen == 0)
    else:  # a zero gradient: the loss stays where it started
        assert jnp.allclose(frozen, frozen[0])


def test_an_optimizer_closing_over_an_array_in_an_inner_jit_is_not_shared():
    def sgd(rate):
        rate = np.float32(rate)
        update = jax.jit(lambda g: jax.tree.map(lambda x: -rate * x, g))
        return optax.GradientTransformation(lambda p: optax.EmptyState(),
                                            lambda g, s, p=None: (update(g), s))  # fmt: skip

    moving, still = _fit(sgd(1.0)).losses, _fit(sgd(0.0)).losses
    assert not jnp.allclose(moving[0], moving[-1]) and jnp.allclose(still, still[0])


@pytest.mark.parametrize(
    "first, second",
    [
        (lambda: optax.sgd(1e-2), lambda: optax.scale(-1e-2)),
        (lambda: optax.sgd(1e-2), lambda: optax.scale_by_learning_rate(1e-2)),
        (lambda: optax.scale(-1e-2), lambda: optax.chain(optax.scale(-1e-2))),
    ],
)
def test_same_update_other_state_is_another_program(first, second):
    # Their updates trace to the same arithmetic, but their states differ: sharing the
    # first's compiled step ran it on the second's state (a crash inside optax).
    a = _fit(first())
    b = _fit(second())
    assert jnp.allclose(a.losses, b.losses)


def test_save_gif_one_palette(tmp_path, compiles):
    models = [_model(k, 0.2 + 0.3 * k) for k in range(3)]
    path = dp.save_gif(tmp_path / "a.gif", models, (32, 32))
    from PIL import Image, ImageSequence

    with Image.open(path) as gif:
        frames = [frame.copy() for frame in ImageSequence.Iterator(gif)]
    assert len(frames) == 3


def test_library_programs_hold_no_host_callbacks(monkeypatch):
    """`paint`'s and `fit`'s own compiled programs trace no `eqx.error_if` (a host
    callback: JAX's persistent compilation cache never stores a program holding one, so
    the command line compiled its step loop again on every run); a user's traced call
    is still checked."""
    import equinox as eqx

    messages: list[str] = []
    real = eqx.error_if

    def spy(x, pred, message):
        messages.append(message)
        return real(x, pred, message)

    monkeypatch.setattr(eqx, "error_if", spy)
    target = jnp.full((23, 19, 3), 0.4)  # a size no other test compiles for
    dp.paint(target, 9, key=jax.random.key(0), steps=30)
    model = dp.Circles.init(9, key=jax.random.key(1), target=target)
    dp.fit(model, target, steps=5, batch=0.5, key=jax.random.key(2))
    assert messages == []
    points = jnp.full((3, 2), 0.5)
    jax.jit(lambda size: model.render(points, pixel_size=size))(jnp.float32(0.1))
    assert any("pixel_size" in m for m in messages)


def test_loss_history_compiles_nothing_per_dispatch(compiles, tmp_path):
    # The history was joined with `jnp.concatenate` of one more chunk at each dispatch:
    # a new program every time (a checkpointed fit of 300 dispatches 0.3 s -> 22 s, and
    # `paint` ran 0.5 to 3 s past its `seconds`).
    target = jnp.full((8, 8, 3), 0.3)
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)

    def run(steps, name):
        return dp.fit(model, target, steps=steps, steps_per_dispatch=2,
                      checkpoint=tmp_path / name, checkpoint_every=4)  # fmt: skip

    run(8, "a.ckpt")
    compiles.clear()
    result = run(30, "b.ckpt")
    assert compiles == []
    assert result.losses.shape == (30,)


def test_a_short_last_dispatch_compiles_nothing(compiles):
    # A dispatch's losses were cut to its steps on the device: each new length compiled
    # a slice (0.03 to 0.2 s; a cold `paint` met four, 0.44 s, and every later call with
    # other step counts more).
    target = jnp.full((8, 8, 3), 0.3)
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)

    def run(steps):
        return dp.fit(model, target, steps=steps, steps_per_dispatch=8)

    run(16)
    compiles.clear()
    for steps in (13, 14, 9):
        assert run(steps).losses.shape == (steps,)
    assert compiles == []


def test_paint_compiles_its_later_programs_in_the_warm_up(compiles, monkeypatch):
    # `Painting.warm_up` compiles the step loop, the removal and the colour solve in a
    # thread while the seeding compiles here (a cold `seconds=3` ran
    # 5.8 s, compiling one program after the other). The thread is joined here so the
    # check is not a race: what it compiled must be what the rounds call, found in the
    # cache (`jax.log_compiles` logs this thread's compilations only).
    from diffprims._paint._rounds import Painting

    warm_up = Painting.warm_up

    def joined(self, *args):
        thread = warm_up(self, *args)
        thread.join()
        return thread

    monkeypatch.setattr(Painting, "warm_up", joined)
    target = jnp.full((21, 17, 3), 0.6)  # a size no other test compiles for
    result = dp.paint(target, 9, key=jax.random.key(0), steps=60)
    later = {f"jit({name})" for name in ("_run_steps", "remove", "solve_colours")}
    assert later.isdisjoint(compiles), sorted(later & set(compiles))
    assert "jit(add)" in compiles  # the seeding, compiled on this thread
    assert result.model.num_shapes == 9


@pytest.mark.parametrize("cls", [dp.Circles, dp.Ellipses, UserCircles])
def test_init_is_two_compiled_programs_one_shared_by_every_type(compiles, cls):
    # Eagerly, `init`'s dozens of small operations compiled one each: 2.3 s of the
    # README example's first `init` in a process. Other numbers compile nothing more.
    # A user's type too (it ran eagerly: 2.0 s a first init, 1.3 s each new `n`).
    target = jnp.full((23, 29, 3), 0.25)  # a size no other test uses
    keys = jax.random.key(0), jax.random.key(1)
    compiles.clear()
    cls.init(37, key=keys[0], target=target)
    assert len(compiles) <= 2, compiles
    compiles.clear()
    cls.init(37, key=keys[1], target=target, opacity=0.3, size_range=(0.1, 0.2))
    assert compiles == []
    # Another type compiles only its own part (each compiled the whole init: 0.7 s).
    other = type("Other", (cls,), {"__module__": cls.__module__})
    compiles.clear()
    other.init(37, key=keys[0], target=target)
    assert compiles == ["jit(assembled)"], compiles


def test_init_takes_traced_numbers():
    # Compiled, init put its numbers in a NumPy array: a traced opacity or aspect failed.
    key = jax.random.key(0)
    jitted = jax.jit(lambda o: dp.Circles.init(4, key=key, opacity=o).opacities)(0.3)
    np.testing.assert_allclose(jitted, dp.Circles.init(4, key=key, opacity=0.3).opacities)
    grad = jax.grad(lambda o: dp.Circles.init(4, key=key, opacity=o).opacities.sum())(0.3)
    assert grad == pytest.approx(4.0)
    init = lambda a: dp.Circles.init(4, key=key, aspect=a, size_range=(0.1, 0.2))  # noqa: E731
    centres = jax.jit(lambda a: init(a).centres)(2.0)
    assert jnp.all(centres[:, 0] <= 2.0) and jnp.any(centres[:, 0] > 1.0)
    # Without a size range, the default one shrinks with n / aspect: it took a float.
    radii = lambda a: dp.Circles.init(800, key=key, aspect=a).radii  # noqa: E731
    np.testing.assert_allclose(jax.jit(radii)(2.0), radii(2.0), rtol=1e-6)
    assert jax.grad(lambda a: radii(a).sum())(2.0) > 0  # larger frames, larger shapes


class _CheckedCircles(dp.Circles):
    def __check_init__(self):  # a user's eager look at values
        if float(jnp.max(self.radii)) > 10:
            raise ValueError("too large")


@pytest.mark.parametrize("bad_first", [False, True])
def test_init_of_a_users_type_that_looks_at_values_runs_eagerly(bad_first):
    # A user's code may look at values (here its checks): compiled, it fails on a tracer,
    # so such a type runs eagerly, and its own errors are said as an eager init says them.
    cls = type("Checked", (_CheckedCircles,), {})  # new each time: nothing remembered
    too_large = lambda: cls.init(5, key=jax.random.key(0), size_range=(11.0, 12.0))  # noqa: E731
    if bad_first:
        with pytest.raises(ValueError, match="too large"):
            too_large()
    assert cls.init(5, key=jax.random.key(0)).num_shapes == 5
    with pytest.raises(ValueError, match="too large"):
        too_large()


def test_init_of_a_users_type_with_numpy_in_random_geometry_runs_eagerly():
    # `paint` needs a traceable `random_geometry`; `init` never did, and still does not.
    class NumpyAngles(dp.Ellipses):
        @classmethod
        def random_geometry(cls, centres, sizes, *, key):
            values = super().random_geometry(centres, sizes, key=key)
            values["raw_angles"] = np.zeros(np.asarray(centres).shape[0], np.float32)
            return values

    model = NumpyAngles.init(6, key=jax.random.key(0))
    np.testing.assert_array_equal(model.angles, 0.0)


def _solves(monkeypatch) -> list[int]:
    from diffprims._paint._rounds import Painting

    calls, solve = [], Painting.solve
    monkeypatch.setattr(Painting, "solve", lambda self, *a: calls.append(1) or solve(self, *a))
    return calls


@pytest.mark.parametrize("in_time", [False, True])
def test_paint_with_seconds_skips_a_solve_not_compiled_in_time(monkeypatch, in_time):
    # A cold first call waited past its budget for the solve's compile (0.8 s at 200
    # shapes, for a few hundredths of a dB): with `seconds`, the warm-up compiles it only
    # while a second is left, and the solve runs only if compiled when the rounds end.
    from diffprims._paint import _rounds

    monkeypatch.setattr(_rounds, "SOLVE_COMPILE_SECONDS", -1e9 if in_time else 1e9)
    if in_time:  # the warm-up joined before the rounds: its solve is compiled by then
        warm_up = _rounds.Painting.warm_up
        monkeypatch.setattr(_rounds.Painting, "warm_up", lambda *a: _joined(warm_up(*a)))
    calls = _solves(monkeypatch)
    target = jnp.full((12, 14, 3), 0.4)
    result = dp.paint(target, 4, key=jax.random.key(0), seconds=0.5)
    assert calls == ([1] if in_time else [])
    assert result.model.num_shapes == 4
    calls.clear()
    dp.paint(target, 4, key=jax.random.key(0), steps=8)  # a step budget always solves
    assert calls == [1]


def _joined(thread):
    thread.join()
    return thread


def test_paint_solves_with_any_budget_once_the_solve_is_compiled(monkeypatch):
    # A solve compiled in this process is compiled again from JAX's cache at once: with
    # a second or less left it was skipped all the same (3 of 3 warm `seconds=1` calls).
    from diffprims._paint import _rounds

    monkeypatch.setattr(_rounds, "SOLVE_COMPILE_SECONDS", 1e9)
    warm_up = _rounds.Painting.warm_up
    monkeypatch.setattr(_rounds.Painting, "warm_up", lambda *a: _joined(warm_up(*a)))
    target = jnp.full((13, 15, 3), 0.35)  # a size no other test uses
    dp.paint(target, 4, key=jax.random.key(0), steps=8)  # compiles the solve
    calls = _solves(monkeypatch)
    dp.paint(target, 4, key=jax.random.key(1), seconds=0.3)
    assert calls == [1]


def test_paint_returns_without_waiting_for_the_callers_compiles():
    # The command line's renders (`compile_later`) are waited for where it writes, with
    # Ctrl-C deferred: paint waited for them, and a Ctrl-C then lost every output.
    import threading

    from diffprims._paint._later import compile_later

    released, seen = threading.Event(), []
    with compile_later(lambda model: seen.append(released.wait(timeout=20))) as later:
        dp.paint(jnp.full((11, 13, 3), 0.3), 4, key=jax.random.key(0), steps=8)
    released.set()
    later.wait()
    assert seen == [True]


def test_compile_later_gets_a_model_shaped_as_the_paintings_result():
    # The command line compiles its renders of the result in paint's warm-up thread
    # (they compiled after the painting: 1.3 s of a cold `--seconds 8`).
    from diffprims._paint._later import compile_later

    seen = []
    target = jnp.full((13, 11, 3), 0.3)
    with compile_later(seen.append) as later:
        result = dp.paint(target, 5, key=jax.random.key(0), steps=12)
    later.wait()
    dp.paint(target, 5, key=jax.random.key(1), steps=12)  # outside the block: not called
    (model,) = seen
    assert jax.tree.structure(model) == jax.tree.structure(result.model)
    shapes = lambda m: [np.shape(x) for x in jax.tree.leaves(m)]  # noqa: E731
    assert shapes(model) == shapes(result.model) and model.num_shapes == 5


def test_paint_command_renders_with_programs_compiled_while_painting(compiles, tmp_path):
    from diffprims._cli import main

    image = tmp_path / "in.png"
    dp.save_image(image, np.full((38, 46, 3), 0.5, np.float32))  # sizes no other test uses
    compiles.clear()
    argv = ["paint", str(image), "-n", "5", "--steps", "12", "--size", "23", "-q"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "progress.gif").exists()
    assert not {"jit(render)", "jit(_render_each)"} & set(compiles)


def test_fit_with_method_auto_shares_the_unset_methods_program(compiles):
    # "auto" and unset render alike outside a derivative: "auto" compiled its own step.
    target = jnp.full((21, 17, 3), 0.5)  # a size no other test compiles for
    model = dp.Circles.init(4, key=jax.random.key(0), target=target)
    unset = dp.fit(model, target, steps=3)
    compiles.clear()
    auto = dp.fit(model, target, steps=3, method="auto")
    assert not [n for n in compiles if "run_steps" in n]
    np.testing.assert_array_equal(auto.losses, unset.losses)


def test_paint_step_budgets_near_each_other_share_a_dispatch_length():
    # The dispatch length (static: a new one compiles the step loop, 1.5 s) was the
    # longest round's step count exactly: steps=40 gave 10, 48 gave 12. Rounded up to a
    # power of two, as fit's, a sweep over nearby budgets compiles once.
    from diffprims._paint._schedule import Budget, plan_rounds

    plan = plan_rounds(6, 2, coarse=3.0, grow=0.6, aspect=1.0)

    def length(steps):
        budget = Budget(plan, 6, steps=steps, seconds=None, reserve=0.0, start=0.0)
        return budget.dispatch_size(50, 100)

    lengths = {length(steps) for steps in range(40, 49)}
    assert len(lengths) == 1 and lengths.pop() in (16, 32)


def test_the_same_loss_or_optimizer_computing_something_else_is_traced_again(compiles):
    # A bound method reading `self.weight`, and a schedule reading a global, changed
    # between fits: the second fit reused the first's compiled step (and values).
    class Curriculum:
        weight = 1.0

        def loss(self, pred, target):
            return self.weight * jnp.mean((pred - target) ** 2)

    curriculum = Curriculum()
    first = _fit(optax.adam(1e-2), curriculum.loss)
    curriculum.weight = 0.0
    assert np.all(np.asarray(_fit(optax.adam(1e-2), curriculum.loss).losses) == 0.0)
    curriculum.weight = 1.0  # what it computed first: that compiled step again
    compiles.clear()
    np.testing.assert_array_equal(_fit(optax.adam(1e-2), curriculum.loss).losses, first.losses)
    assert not [n for n in compiles if "run_steps" in n]

    rate = {"now": 1e-2}
    optimizer = optax.sgd(lambda count: rate["now"])
    moving = _fit(optimizer).losses
    rate["now"] = 0.0
    still = np.asarray(_fit(optimizer).losses)
    assert not np.all(np.asarray(moving) == moving[0]) and np.all(still == still[0])


def test_a_changed_loss_holding_a_custom_jvp_is_traced_again(compiles):
    # Its exact print cannot be had (the rule is a Python function), so a changed weight
    # went unseen: `dp.SSIM() + dp.Loss(cfg.extra)` kept the first fit's weight.
    class Config:
        weight = 0.0

        def extra(self, pred, target):
            return self.weight * jnp.mean(jax.nn.relu(pred - target))

    config = Config()
    loss = lambda: dp.L2() + dp.Loss(config.extra)  # noqa: E731
    first = _fit(optax.adam(1e-2), loss())
    config.weight = 10.0
    changed = _fit(optax.adam(1e-2), loss())
    fresh = Config()
    fresh.weight = 10.0
    np.testing.assert_array_equal(
        changed.losses, _fit(optax.adam(1e-2), dp.L2() + dp.Loss(fresh.extra)).losses
    )
    assert not np.array_equal(first.losses, changed.losses)
    compiles.clear()  # unchanged since: the same compiled step
    np.testing.assert_array_equal(_fit(optax.adam(1e-2), loss()).losses, changed.losses)
    assert not [n for n in compiles if "run_steps" in n]


def test_multisteps_hands_the_loss_value_on_to_reduce_on_plateau():
    # MultiSteps is no GradientTransformationExtraArgs: `value=` was never passed, and
    # the plateau inside raised optax's "missing ... 'value'".
    inner = optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=1))
    result = _fit(optax.MultiSteps(inner, every_k_schedule=2))
    assert np.all(np.isfinite(result.losses))


def test_another_count_of_snapshots_reuses_the_step_loop(compiles):
    # The count was a shape of the compiled loop: each new count compiled it (1.2-1.9 s).
    target = jnp.full((32, 32, 3), 0.25)

    def fit(snapshots):
        return dp.fit(_model(), target, steps=12, batch=0.5, key=jax.random.key(1),
                      snapshots=snapshots)  # fmt: skip

    three = fit(3)
    compiles.clear()
    four = fit(4)
    assert not [n for n in compiles if "run_steps" in n]
    assert three.snapshot_steps == (0, 6, 12) and four.snapshot_steps == (0, 4, 8, 12)
    np.testing.assert_array_equal(three.losses, four.losses)
    for a, b in ((three.snapshots[1], fit(7).snapshots[3]), (three.model, four.snapshots[-1])):
        np.testing.assert_array_equal(a.raw_centres, b.raw_centres)


def test_an_update_taking_any_keyword_but_refusing_extras_still_runs():
    # A plain GradientTransformation whose update takes **kwargs was given `value=`,
    # `grad=`, `value_fn=` (for MultiSteps' sake) and one that refuses them failed.
    sgd = optax.sgd(1e-2)

    def update(updates, state, params=None, **options):
        if options:
            raise ValueError(f"unsupported options {sorted(options)}")
        return sgd.update(updates, state, params)

    strict = optax.GradientTransformation(sgd.init, update)
    np.testing.assert_array_equal(_fit(strict).losses, _fit(optax.sgd(1e-2)).losses)
