"""`fit` inside a bigger JAX program: static arguments under `jit`, and optax optimizers
that need more than the gradient (the loss value, a line search)."""

import os
import re
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp

KEY = jax.random.key(0)
TARGET = jax.random.uniform(jax.random.key(1), (8, 8, 3))
MODEL = dp.Circles.init(3, key=KEY, target=TARGET)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda s: dp.fit(MODEL, TARGET, steps=s).losses, "steps"),
        (
            lambda s: dp.fit(MODEL, TARGET, steps=2, steps_per_dispatch=s).losses,
            "steps_per_dispatch",
        ),
        (lambda n: dp.Circles.init(n, key=KEY, target=TARGET).raw_centres, "n"),
        (lambda h: MODEL.render_image((h, 8)), "shape[0]"),
        (lambda b: dp.fit(MODEL, TARGET, steps=2, batch=b, key=KEY).losses, "batch"),
        (lambda s: dp.edge_weights(TARGET, sigma=s * 0.5), "sigma"),
    ],
)
def test_a_traced_count_says_to_make_it_static(call, name):
    with pytest.raises(TypeError, match=re.escape(f"`{name}` must be a concrete")) as info:
        jax.jit(call)(3)
    assert "static_argnums" in str(info.value)


@pytest.mark.parametrize(
    "optimizer",
    [
        optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=1)),
        optax.lbfgs(),
    ],
    ids=["reduce_on_plateau", "lbfgs"],
)
def test_optimizers_that_need_the_loss_value(optimizer):
    result = dp.fit(MODEL, TARGET, optimizer=optimizer, steps=4)
    losses = np.asarray(result.losses)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    jitted = jax.jit(lambda t: dp.fit(MODEL, t, optimizer=optimizer, steps=4).losses)(TARGET)
    np.testing.assert_allclose(jitted, losses, rtol=1e-5)


def test_lbfgs_line_search_sees_the_same_minibatch():
    result = dp.fit(MODEL, TARGET, optimizer=optax.lbfgs(), steps=4, batch=0.5, key=KEY)
    assert np.all(np.isfinite(np.asarray(result.losses)))


def _own_extra_args(update):
    """A `GradientTransformationExtraArgs` of one's own: plain SGD through `update`."""
    sgd = optax.sgd(1e-2)
    return optax.GradientTransformationExtraArgs(sgd.init, lambda *a, **k: update(sgd, *a, **k))


def _takes_none(sgd, updates, state, params=None):
    return sgd.update(updates, state, params)


def _takes_value(sgd, updates, state, params=None, *, value):
    assert value.shape == ()
    return sgd.update(updates, state, params)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optax.GradientTransformationExtraArgs(
            optax.sgd(1e-2).init, lambda u, s, p=None: optax.sgd(1e-2).update(u, s, p)
        ),
        lambda: _own_extra_args(_takes_none),
        lambda: _own_extra_args(_takes_value),
        lambda: optax.chain(
            optax.GradientTransformationExtraArgs(
                optax.sgd(1e-2).init, lambda u, s, p=None: optax.sgd(1e-2).update(u, s, p)
            ),
            optax.scale(1.0),
        ),
    ],
    ids=["no-extra-args", "no-extra-args-wrapped", "value-only", "in-a-chain"],
)
def test_an_extra_args_optimizer_whose_update_takes_fewer_names(make):
    expected = dp.fit(MODEL, TARGET, optimizer=optax.sgd(1e-2), steps=3).losses
    np.testing.assert_allclose(dp.fit(MODEL, TARGET, optimizer=make(), steps=3).losses, expected)


def test_a_chain_member_that_refuses_the_value_another_needs_says_which():
    refuses = optax.GradientTransformationExtraArgs(
        optax.identity().init, lambda u, s, p=None: (u, s)
    )
    optimizer = optax.chain(refuses, optax.adam(1e-2), optax.contrib.reduce_on_plateau())
    with pytest.raises(TypeError, match=r"does not take `value=`.*\*\*extra_args"):
        dp.fit(MODEL, TARGET, optimizer=optimizer, steps=2)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_an_optimizer_that_needs_parameters_of_its_own_type_says_so(jit):
    optimizer = optax.lookahead(optax.adam(1e-2), sync_period=2, slow_step_size=0.5)
    run = lambda m: dp.fit(m, TARGET, optimizer=optimizer, steps=2).losses  # noqa: E731
    with pytest.raises(TypeError, match=r"update failed on it.*'fast'.*LookaheadParams"):
        (jax.jit(run) if jit else run)(MODEL)


def test_lbfgs_fits_differentiate_in_forward_mode_only():
    """As `fit` and the research tutorial say: `optax.lbfgs`'s line search is a
    `while_loop`, which JAX differentiates in forward mode only."""

    def final(scale):
        return dp.fit(MODEL, TARGET * scale, optimizer=optax.lbfgs(), steps=2).losses[-1]

    forward = jax.jacfwd(final)(1.0)
    assert np.isfinite(forward) and forward != 0
    np.testing.assert_allclose(jax.jvp(final, (1.0,), (1.0,))[1], forward, rtol=1e-5)
    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work for lax"):
        jax.grad(final)(1.0)
    assert "lbfgs" in (dp.fit.__doc__ or "") and "jax.jacfwd" in (dp.fit.__doc__ or "")
    assert "while_loop" in (dp.fit.__doc__ or "")


def test_multi_steps_accumulates():
    every = dp.fit(MODEL, TARGET, optimizer=optax.MultiSteps(optax.sgd(1.0), 2), steps=4)
    params = jnp.stack([every.model.raw_centres.ravel(), MODEL.raw_centres.ravel()])
    assert not np.allclose(*params)


@pytest.mark.parametrize(
    "call",
    [
        lambda: jax.jit(lambda t: dp.paint(t, 2, key=KEY, steps=2).losses)(TARGET),
        lambda: jax.vmap(lambda k: dp.paint(TARGET, 2, key=k, steps=2).losses)(
            jax.random.split(KEY, 2)
        ),
        lambda: jax.grad(lambda lr: dp.paint(TARGET, 2, key=KEY, steps=2, lr=lr).losses[-1])(1e-2),
        lambda: jax.jit(lambda: dp.paint(TARGET, 2, key=KEY, steps=2).losses)(),
    ],
    ids=["jit", "vmap", "grad", "jit-no-arguments"],
)
def test_paint_under_a_transformation_says_it_runs_eagerly(call):
    with pytest.raises(TypeError, match="`paint` runs eagerly") as info:
        call()
    assert "dp.fit" in str(info.value)
    innermost = traceback.extract_tb(info.value.__traceback__)[-1].filename
    assert os.path.dirname(os.path.abspath(dp.__file__)) in os.path.abspath(innermost)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=1)),
        optax.lbfgs,
    ],
    ids=["reduce_on_plateau", "lbfgs"],
)
def test_a_fresh_optimizer_that_needs_the_loss_value_does_not_recompile(objective_traces, make):
    traces = objective_traces
    target = TARGET[:7, :5]  # a shape no other test compiles
    dp.fit(MODEL, target, optimizer=make(), steps=2)
    first = len(traces)
    dp.fit(MODEL, target, optimizer=make(), steps=2)
    assert len(traces) == first


def test_a_checkpoint_names_an_optimizer_that_needs_the_loss_value(tmp_path):
    def make(factor):
        return optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(factor=factor))

    path = tmp_path / "fit.ckpt"
    dp.fit(MODEL, TARGET, optimizer=make(0.5), steps=2, checkpoint=path)
    assert dp.fit(MODEL, TARGET, optimizer=make(0.5), steps=3, resume=path).losses.shape == (3,)
    with pytest.raises(dp.CheckpointError, match="optimizer"):
        dp.fit(MODEL, TARGET, optimizer=make(0.1), steps=3, resume=path)


@pytest.mark.parametrize("weight", [np.int64(2), jnp.array(2), np.array(2, np.int32)])
def test_integer_loss_weights_scale_like_python_ints(weight):
    pred, target = jnp.ones((4, 4, 3)), jnp.zeros((4, 4, 3))
    for loss in (weight * dp.L1(), dp.L1() * weight, dp.L1() / weight):
        assert loss.weight.dtype == jnp.float32
    assert (weight * dp.L1())(pred, target) == (dp.L1() * weight)(pred, target) == 2.0
    assert (dp.L1() / weight)(pred, target) == 0.5
    with pytest.raises(TypeError, match="`loss weight` must be a float"):
        np.bool_(True) * dp.L1()


@pytest.mark.parametrize(
    "indices", [jnp.zeros((0,), jnp.int32), 1, jnp.array(1), jnp.array([[0, 1]])]
)
def test_take_needs_a_non_empty_list_of_shapes(indices):
    model = dp.Circles.init(12, key=KEY, target=TARGET)
    with pytest.raises(ValueError, match="`indices` must be a non-empty 1D array") as info:
        model.take(indices)
    assert "model.take(jnp.array([i]))" in str(info.value)
    with pytest.raises(ValueError, match="non-empty 1D"):
        jax.jit(lambda m: m.take(indices).raw_centres)(model)


def test_a_raw_key_as_a_numpy_array_is_a_key():
    # `np.asarray(jax.random.PRNGKey(0))` (a raw key read back from a file) was refused
    # where the same key as a JAX array was taken.
    raw = jax.random.key_data(KEY)
    expected = dp.Circles.init(3, key=raw, target=TARGET)
    got = dp.Circles.init(3, key=np.asarray(raw), target=TARGET)
    np.testing.assert_array_equal(got.raw_centres, expected.raw_centres)
    fitted = dp.fit(MODEL, TARGET, steps=2, batch=0.5, key=np.asarray(raw))
    np.testing.assert_array_equal(
        fitted.losses, dp.fit(MODEL, TARGET, steps=2, batch=0.5, key=raw).losses
    )


@pytest.mark.parametrize(
    "optimizer",
    [
        optax.adam(3e-2),
        optax.adamw(1e-2, b1=0.8, weight_decay=1e-3),
        optax.sgd(optax.warmup_cosine_decay_schedule(0.0, 0.3, 3, 20), momentum=0.9),
        optax.chain(optax.clip_by_global_norm(0.5), optax.lion(1e-3)),
        optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=1)),
        optax.inject_hyperparams(optax.rmsprop)(learning_rate=1e-2),
        optax.masked(optax.adam(1e-2), {"a": True, "b": False}),
        optax.MultiSteps(optax.adam(1e-2), every_k_schedule=2),  # a lax.cond
        optax.apply_if_finite(optax.sgd(1e-1, momentum=0.5), 2),
        optax.contrib.muon(1e-2),  # a lax.scan (Newton-Schulz iterations)
    ],
    ids=[
        "adam",
        "adamw",
        "schedule",
        "clip-lion",
        "plateau",
        "inject",
        "masked",
        "multisteps",
        "if-finite",
        "muon",
    ],
)
def test_a_lifted_update_computes_the_optimizers_update(optimizer):
    # fit's step runs an optimizer's update with its float settings as inputs (one
    # compile for a learning-rate sweep): the same numbers as the update itself.
    from diffprims._fit._lifted import lift

    params = {"a": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([[1.0, 3.0], [0.2, -0.4]])}
    grads = {"a": jnp.array([0.3, -0.1, 0.2]), "b": jnp.array([[-0.5, 0.25], [0.1, 0.3]])}
    state = optimizer.init(params)
    lifted = lift(optimizer, params, state)
    assert lifted is not None
    for _ in range(4):
        value = jnp.asarray(1.5, jnp.float32)
        got, got_state = lifted(grads, state, params, value)
        want, state = optimizer.update(grads, state, params, value=value)
        close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6)  # noqa: E731
        jax.tree.map(close, (got, got_state), (want, state))
        grads = jax.tree.map(lambda g: -0.7 * g, grads)


def test_updates_that_cannot_be_lifted_are_left_alone():
    from diffprims._fit._lifted import lift

    params = {"a": jnp.ones(3)}
    lbfgs = optax.lbfgs()  # calls the objective again (its line search)
    assert lift(lbfgs, params, lbfgs.init(params)) is None

    def traced(lr):  # a learning rate under vmap: lifted as it is, a tracer input
        adam = optax.adam(lr)
        lifted = lift(adam, params, adam.init(params))
        assert lifted is not None and any(isinstance(v, jax.core.Tracer) for v in lifted.values)
        return lr

    jax.vmap(traced)(jnp.array([1e-2, 2e-2]))
