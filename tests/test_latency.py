"""Compiles, not seconds: eager calls reuse compiled programs, equal settings recompile
nothing. Counted with `jax.log_compiles` (the log of XLA compilations), never timed."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import optax
import pytest

import diffprims as dp


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


def test_other_settings_do_compile(compiles):
    _fit(optax.adam(1e-2))
    compiles.clear()
    a = _fit(optax.adam(3e-2))
    assert [n for n in compiles if "run_steps" in n]
    compiles.clear()
    b = _fit(optax.adam(1e-2), lambda p, t: jnp.mean(jnp.abs(p - t)))
    assert [n for n in compiles if "run_steps" in n]
    assert not jnp.array_equal(a.losses, b.losses)


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
