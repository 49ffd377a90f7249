"""Long fits survive interruption: checkpoint, Ctrl-C, resume — bit for bit."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp
import diffprims._fit._checkpoint as checkpoint_module
import diffprims._fit._fit as fit_module

from .helpers import SqrtModel

KEY = jax.random.key(0)
TARGET = jax.random.uniform(jax.random.key(1), (6, 6, 3))
STEPS, PER_DISPATCH = 12, 4


def _model():
    return dp.Circles.init(3, key=KEY, target=TARGET)


def _fit(**kwargs):
    args = dict(steps=STEPS, steps_per_dispatch=PER_DISPATCH, key=KEY, batch=8)
    args.update(kwargs)
    return dp.fit(args.pop("model", _model()), TARGET, **args)


def assert_bit_identical(a: dp.FitResult, b: dp.FitResult) -> None:
    leaves_a = jax.tree.leaves(eqx.filter((a.model, a.losses, a.snapshots), eqx.is_array))
    leaves_b = jax.tree.leaves(eqx.filter((b.model, b.losses, b.snapshots), eqx.is_array))
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.snapshot_steps == b.snapshot_steps


def _interrupt_on_call(monkeypatch, call: int) -> None:
    """Make the `call`-th compiled dispatch of `fit` raise KeyboardInterrupt (Ctrl-C)."""
    original, calls = fit_module.run_steps, [0]

    def flaky(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "run_steps", flaky)


def test_a_real_sigint_stops_after_the_running_dispatch(monkeypatch):
    """SIGINT during a dispatch: that dispatch finishes, then `FitInterrupted` is raised."""
    import signal

    original, calls = fit_module.run_steps, [0]

    def signalled(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this dispatch runs
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "run_steps", signalled)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(dp.FitInterrupted) as info:
        _fit()
    assert info.value.step == 2 * PER_DISPATCH  # the signalled dispatch was kept
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored


@pytest.mark.parametrize(
    "options",
    [dict(batch=8), dict(batch=None), dict(batch=8, snapshots=4), dict(optimizer=optax.sgd(0.1))],
    ids=["batch", "full-image", "snapshots", "sgd"],
)
def test_interrupt_and_resume_is_bit_identical(tmp_path, monkeypatch, options):
    reference = _fit(**options)
    path = tmp_path / "fit.ckpt"
    _interrupt_on_call(monkeypatch, 3)  # Ctrl-C during the third dispatch
    with pytest.raises(dp.FitInterrupted) as info:
        _fit(checkpoint=path, checkpoint_every=100, **options)
    monkeypatch.undo()
    # The interrupt is a KeyboardInterrupt carrying the progress, and the state it had
    # reached was checkpointed although `checkpoint_every` was not yet due.
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.step == 2 * PER_DISPATCH
    assert info.value.result.losses.shape == (2 * PER_DISPATCH,)
    assert json.loads(path.read_bytes().split(b"\n", 1)[0])["step"] == 2 * PER_DISPATCH
    resumed = _fit(resume=path, **options)
    assert_bit_identical(resumed, reference)


def test_resume_from_periodic_checkpoint_after_a_crash(tmp_path, monkeypatch):
    reference = _fit()
    path = tmp_path / "fit.ckpt"
    saved = []
    original = checkpoint_module.save_checkpoint

    def crash_after_saving(*args, **kwargs):
        saved.append(kwargs["step"])
        original(*args, **kwargs)
        if kwargs["step"] == 2 * PER_DISPATCH:
            raise SystemExit("the machine went away")  # not a Ctrl-C: nothing more is saved

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", crash_after_saving)
    with pytest.raises(SystemExit):
        _fit(checkpoint=path, checkpoint_every=PER_DISPATCH)
    monkeypatch.undo()
    assert saved == [PER_DISPATCH, 2 * PER_DISPATCH]
    assert_bit_identical(_fit(resume=path, checkpoint=path), reference)
    # The finished fit saved its last step too.
    assert json.loads(path.read_bytes().split(b"\n", 1)[0])["step"] == STEPS


def test_checkpoint_every_spacing(tmp_path, monkeypatch):
    saved = []
    original = checkpoint_module.save_checkpoint
    monkeypatch.setattr(
        checkpoint_module,
        "save_checkpoint",
        lambda *a, **k: (saved.append(k["step"]), original(*a, **k))[1],
    )
    _fit(steps=22, checkpoint=tmp_path / "a.ckpt", checkpoint_every=8)
    # At dispatch ends (every 4 steps) once 8 have passed, and at the very end.
    assert saved == [8, 16, 22]


def test_resume_extends_a_finished_fit(tmp_path):
    path = tmp_path / "fit.ckpt"
    _fit(steps=8, checkpoint=path)
    assert_bit_identical(_fit(steps=STEPS, resume=path), _fit(steps=STEPS))


def test_a_checkpoint_given_to_load_says_how_to_get_its_model(tmp_path):
    # It said "not a diffprims model file ... save the model again, or use an older copy".
    path = tmp_path / "fit.eqx"
    done = _fit(checkpoint=path)
    with pytest.raises(dp.LoadError, match=r"is a `fit` checkpoint.*resume=path.*dp\.save"):
        dp.load(path)
    # What the message says: resumed with as many steps as it holds, the model unchanged.
    assert_bit_identical(done, _fit(resume=path))


def test_resume_true_starts_fresh_then_continues(tmp_path):
    path = tmp_path / "fit.ckpt"
    first = _fit(checkpoint=path, resume=True)  # no file yet: a fresh fit
    assert_bit_identical(first, _fit())
    again = _fit(checkpoint=path, resume=True)  # finished: returns the same result
    assert_bit_identical(again, first)


def test_resume_with_key_none_takes_the_checkpoints_key(tmp_path):
    path = tmp_path / "fit.ckpt"
    _fit(steps=8, checkpoint=path, key=jax.random.key(7))
    resumed = dp.fit(_model(), TARGET, steps=STEPS, steps_per_dispatch=PER_DISPATCH, batch=8,
                     key=jax.random.key(7), resume=path)  # fmt: skip
    assert_bit_identical(resumed, _fit(key=jax.random.key(7)))


def test_checkpoint_is_json_plus_arrays_and_never_unpickles(tmp_path):
    path = tmp_path / "fit.ckpt"
    _fit(steps=4, checkpoint=path)
    header_line, checksum, payload = path.read_bytes().split(b"\n", 2)
    header = json.loads(header_line)
    assert header["format"] == "diffprims-checkpoint" and header["step"] == 4
    # The SHA-256 covers the header line and the payload.
    assert checksum.decode() == hashlib.sha256(header_line + b"\n" + payload).hexdigest()
    # A payload of pickled objects with a matching hash is still refused, unexecuted.
    buffer = io.BytesIO()
    np.save(buffer, np.array([print], dtype=object), allow_pickle=True)
    evil = buffer.getvalue() * 40
    header.update(payload_bytes=len(evil))
    line = json.dumps(header).encode() + b"\n"
    digest = hashlib.sha256(line + evil).hexdigest().encode()
    path.write_bytes(line + digest + b"\n" + evil)
    with pytest.raises(dp.CheckpointError, match="could not be read"):
        _fit(resume=path)


def test_checkpoint_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "fit.ckpt"
    _fit(steps=4, checkpoint=path)
    good = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)  # fails half-way through the write
    with pytest.raises(OSError, match="disk full"):
        _fit(steps=8, checkpoint=path)
    assert path.read_bytes() == good  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.ckpt"]  # no temp files left


def test_fit_interrupted_without_checkpoint_keeps_progress(monkeypatch):
    _interrupt_on_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt) as info:
        _fit()
    assert isinstance(info.value, dp.FitInterrupted)
    assert info.value.step == PER_DISPATCH
    model = info.value.result.model
    assert all(
        bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))
    )


# The command line's Ctrl-C and no-clobber tests are in tests/test_cli.py.


# A checkpoint records the model's settings, the loss and the optimizer (`_identity`):
# resuming with others is refused, resuming with fresh but equal objects is not.
SMALL = jax.random.uniform(jax.random.key(2), (8, 8, 3))


def _small_fit(path, model_options=(), **kwargs):
    model = dp.Circles.init(3, key=KEY, target=SMALL, **dict(model_options))
    args = dict(steps=4, steps_per_dispatch=2, key=KEY, batch=0.5, checkpoint=path)
    args.update(kwargs)
    return dp.fit(model, SMALL, **args)


@pytest.mark.parametrize(
    ("options", "part"),
    [
        (dict(loss=dp.L1()), "different loss"),
        (dict(optimizer=optax.adam(0.5)), "different optimizer"),
        (dict(model_options=dict(compositing="additive")), "different model settings"),
        (dict(model_options=dict(softness=5)), "different model settings"),
        (dict(model_options=dict(learn_background=False)), "different model settings"),
        (dict(trainable=dp.Circles.init(3, key=KEY).trainable("colour")), "train: `trainable`"),
    ],
    ids=["L1", "learning-rate", "compositing", "softness", "learn-background", "trainable"],
)
def test_resume_refuses_another_loss_optimizer_or_model_settings(tmp_path, options, part):
    path = tmp_path / "fit.ckpt"
    _small_fit(path)
    with pytest.raises(dp.CheckpointError, match=part) as info:
        _small_fit(None, steps=6, resume=path, **options)
    assert "resume=False" in str(info.value)


def test_resume_with_another_chain_of_transformations_says_so(tmp_path):
    # A recipe that gained a transformation (`recommended_optimizer` became a chain) has
    # another optimizer state: the message says how that comes about.
    path = tmp_path / "fit.ckpt"
    _small_fit(path, optimizer=optax.adam(1e-2))
    chained = optax.chain(optax.scale(1.0), optax.adam(1e-2))
    with pytest.raises(dp.CheckpointError, match="different model or optimizer state") as info:
        _small_fit(None, steps=6, resume=path, optimizer=chained)
    assert "chain of optax transformations" in str(info.value)


def test_resume_refuses_another_starting_model(tmp_path):
    # A sweep over seeds sharing one path continued the first seed's fit for every seed.
    path = tmp_path / "fit.ckpt"
    _fit(checkpoint=path)
    other = dp.Circles.init(3, key=jax.random.key(7), target=TARGET)
    with pytest.raises(dp.CheckpointError, match="started from another model"):
        _fit(model=other, resume=path)
    assert_bit_identical(_fit(resume=path), _fit())  # the same start resumes


def test_resume_refuses_another_loss_weight(tmp_path):
    path = tmp_path / "fit.ckpt"
    _small_fit(path, loss=2.0 * dp.L2())
    with pytest.raises(dp.CheckpointError, match="different loss"):
        _small_fit(None, steps=6, resume=path, loss=3.0 * dp.L2())
    weights = jnp.ones((8, 8))
    _small_fit(path, loss=dp.Weighted(dp.L1(), weights))
    with pytest.raises(dp.CheckpointError, match="different loss"):
        _small_fit(None, steps=6, resume=path, loss=dp.Weighted(dp.L1(), 2.0 * weights))


def test_resume_refuses_a_jitted_loss_closing_over_other_weights(tmp_path):
    def jitted(weights):  # an inner jit's constants are not in the printed program
        weights = np.asarray(weights, np.float32)
        return jax.jit(lambda p, t: jnp.mean(weights * (p - t) ** 2))

    path = tmp_path / "fit.ckpt"
    _small_fit(path, loss=jitted([1.0, 1.0, 1.0]))
    with pytest.raises(dp.CheckpointError, match="different loss"):
        _small_fit(None, steps=6, resume=path, loss=jitted([0.0, 0.0, 5.0]))
    _small_fit(None, steps=6, resume=path, loss=jitted([1.0, 1.0, 1.0]))  # equal: resumes


def test_resume_refuses_other_injected_hyperparameters(tmp_path):
    # `inject_hyperparams` keeps the rate in the optimizer state, which the update's
    # print sees only as an input: a resume at 0.5 continued at the checkpoint's 0.05.
    def adam(rate):
        return optax.inject_hyperparams(optax.adam)(learning_rate=rate)

    path = tmp_path / "fit.ckpt"
    _small_fit(path, optimizer=adam(0.05))
    with pytest.raises(dp.CheckpointError, match="optimizer hyperparameters.*inject_hyperparams"):
        _small_fit(None, steps=6, resume=path, optimizer=adam(0.5))
    resumed = _small_fit(None, steps=6, resume=path, optimizer=adam(0.05))  # equal: resumes
    whole = _small_fit(None, steps=6, optimizer=adam(0.05))
    np.testing.assert_array_equal(resumed.model.raw_centres, whole.model.raw_centres)


def test_resume_with_fresh_but_equal_loss_and_optimizer(tmp_path):
    path = tmp_path / "fit.ckpt"
    reference = _small_fit(None, steps=6, loss=dp.L2(), optimizer=optax.adam(1e-2))
    _small_fit(path, loss=dp.L2(), optimizer=optax.adam(1e-2))
    resumed = _small_fit(None, steps=6, resume=path, loss=dp.L2(), optimizer=optax.adam(1e-2))
    assert_bit_identical(resumed, reference)
    _small_fit(path, loss=2.0 * dp.L2())  # array weights: equal values resume
    _small_fit(None, steps=6, resume=path, loss=2.0 * dp.L2())


def _l1(p, t):
    return jnp.mean(jnp.abs(p - t))


def test_resume_with_the_same_loss_function_defined_elsewhere(tmp_path):
    # A script's body moved into `main()`: the function's name gained `<locals>`, and
    # the checkpoint was refused as written with a different loss.
    def _l1(p, t):
        return jnp.mean(jnp.abs(p - t))

    def _l2(p, t):
        return jnp.mean((p - t) ** 2)

    path = tmp_path / "fit.ckpt"
    _small_fit(path, loss=globals()["_l1"])
    _small_fit(None, steps=6, resume=path, loss=_l1)
    _small_fit(None, steps=6, resume=path, loss=lambda p, t: jnp.mean(jnp.abs(p - t)))
    with pytest.raises(dp.CheckpointError, match="different loss"):
        _small_fit(None, steps=6, resume=path, loss=_l2)


def test_resume_names_sampling_when_it_differs(tmp_path):
    path = tmp_path / "fit.ckpt"
    _small_fit(path)
    with pytest.raises(dp.CheckpointError, match="expected sampling 'stratified'"):
        _small_fit(None, steps=6, resume=path, sampling="stratified")


def _edit_header(path, edit) -> None:
    """Rewrite a checkpoint's header with `edit(header)`, its checksum made anew."""
    header_line, _, payload = path.read_bytes().split(b"\n", 2)
    header = json.loads(header_line)
    edit(header)
    line = json.dumps(header).encode() + b"\n"
    path.write_bytes(line + hashlib.sha256(line + payload).hexdigest().encode() + b"\n" + payload)


def test_resume_accepts_a_checkpoint_without_the_identity_fields(tmp_path):
    """Checkpoints written before the model/loss/optimizer prints, the starting model and
    the x64 setting were recorded still resume."""
    path = tmp_path / "fit.ckpt"
    _small_fit(path)
    fields = ("model_settings", "loss", "optimizer", "identity_versions", "start_sha256", "x64")

    def drop(header):
        for field in fields:
            del header[field]

    _edit_header(path, drop)
    _small_fit(None, steps=6, resume=path)


def test_resume_across_an_x64_switch_says_so(tmp_path):
    # It blamed the optimizer, whose traced print depends on the setting.
    path = tmp_path / "fit.ckpt"
    _small_fit(path)
    _edit_header(path, lambda header: header.update(x64=not header["x64"]))
    with pytest.raises(dp.CheckpointError, match=r"jax_enable_x64` True; this process has"):
        _small_fit(None, steps=6, resume=path)


def test_resume_refuses_other_frozen_parameters(tmp_path):
    """Parameters that do not train are not in the checkpoint: they must match."""
    path = tmp_path / "fit.ckpt"
    model = dp.Circles.init(3, key=KEY, target=SMALL)
    spec = model.trainable("colour")
    dp.fit(model, SMALL, steps=4, key=KEY, batch=0.5, trainable=spec, checkpoint=path)
    moved = dp.Circles.init(3, key=jax.random.key(5), target=SMALL)
    dp.fit(model, SMALL, steps=6, key=KEY, batch=0.5, trainable=spec, resume=path)
    with pytest.raises(dp.CheckpointError, match="different model settings"):
        dp.fit(moved, SMALL, steps=6, key=KEY, batch=0.5, trainable=spec, resume=path)


def test_resume_under_float64_mode(tmp_path):
    # Under `jax_enable_x64` the losses are float64 even for a float32 model; the reader
    # expected float32 and refused every resume as a damaged file.
    path = tmp_path / "x64.ckpt"
    with jax.enable_x64(True):
        target = jnp.full((8, 8, 3), 0.3, jnp.float32)
        model = dp.Circles.init(3, key=jax.random.key(0))
        dp.fit(model, target, steps=4, steps_per_dispatch=2, checkpoint=path)
        resumed = dp.fit(
            model, target, steps=6, steps_per_dispatch=2, checkpoint=path, resume=True
        )
        whole = dp.fit(model, target, steps=6, steps_per_dispatch=2)
    np.testing.assert_array_equal(resumed.losses, whole.losses)


def test_batched_resume_takes_the_checkpoints_key(tmp_path):
    # `key=None` takes the checkpoint's key; a batched fit refused it before reading.
    path = tmp_path / "batched.ckpt"
    target = jnp.full((8, 8, 3), 0.3)
    model = dp.Circles.init(3, key=jax.random.key(0))
    key = jax.random.key(1)
    dp.fit(model, target, steps=4, steps_per_dispatch=2, batch=0.5, key=key, checkpoint=path)
    resumed = dp.fit(
        model, target, steps=8, steps_per_dispatch=2, batch=0.5, key=None, resume=path
    )
    whole = dp.fit(model, target, steps=8, steps_per_dispatch=2, batch=0.5, key=key)
    np.testing.assert_array_equal(resumed.losses, whole.losses)
    # A fresh batched fit (nothing to resume from) still needs its key.
    with pytest.raises(ValueError, match="`key` is required when `batch` is given"):
        dp.fit(model, target, steps=4, batch=0.5, checkpoint=tmp_path / "new.ckpt", resume=True)


def test_resume_tells_losses_with_custom_rules_apart(tmp_path):
    # A loss with a custom_jvp op (jax.nn.relu) printed no identity, and a resume with
    # any other loss was accepted: two losses in one history.
    target = jax.random.uniform(jax.random.key(1), (8, 8, 3))
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)

    def relu(flip):
        return lambda a, b: jnp.mean(jax.nn.relu(flip * (a - b)))

    path = tmp_path / "relu.ckpt"
    dp.fit(model, target, loss=dp.L2() + relu(1.0), steps=2, steps_per_dispatch=2, checkpoint=path)
    for other in (dp.L1() + relu(1.0), dp.L2(), dp.L2() + relu(-1.0)):
        with pytest.raises(dp.CheckpointError, match="different loss"):
            dp.fit(model, target, loss=other, steps=4, steps_per_dispatch=2, resume=path)
    same = dp.fit(
        model, target, loss=dp.L2() + relu(1.0), steps=4, steps_per_dispatch=2, resume=path
    )
    assert same.losses.shape == (4,)


def test_an_optimizer_state_holding_a_prng_key_is_checkpointed(tmp_path):
    # optax.noisy_sgd keeps a typed key in its state: writing the checkpoint raised
    # equinox's TreePathError (NumPy holds no key dtype), the fit's work lost.

    target = jnp.full((12, 12, 3), 0.4)
    model = dp.Circles.init(4, key=jax.random.key(0), target=target)
    optimizer = optax.chain(optax.add_noise(0.1, 0.55, 0), optax.sgd(1e-2))
    kwargs = dict(optimizer=optimizer, key=jax.random.key(1))
    full = dp.fit(model, target, steps=6, **kwargs)
    path = tmp_path / "noisy.eqx"
    dp.fit(model, target, steps=3, checkpoint=path, **kwargs)
    resumed = dp.fit(model, target, steps=6, resume=path, **kwargs)
    np.testing.assert_array_equal(resumed.losses, full.losses)


def test_a_user_model_holding_a_prng_key_is_checkpointed_and_refused_by_save(tmp_path):

    class Keyed(dp.AbstractModel):
        inner: dp.Circles
        key: jax.Array

        @property
        def num_channels(self):
            return 3

        def render(self, points, *, pixel_size):
            return self.inner.render(points, pixel_size=pixel_size)

    target = jnp.full((12, 12, 3), 0.4)
    model = Keyed(dp.Circles.init(4, key=jax.random.key(0), target=target), jax.random.key(3))
    full = dp.fit(model, target, steps=4)
    dp.fit(model, target, steps=2, checkpoint=tmp_path / "keyed.eqx")
    resumed = dp.fit(model, target, steps=4, resume=tmp_path / "keyed.eqx")
    np.testing.assert_array_equal(resumed.losses, full.losses)
    with pytest.raises(TypeError, match=r"typed PRNG key at `model.key`.*key_data"):
        dp.save(tmp_path / "keyed_model.eqx", model)


class _Waves(dp.AbstractModel):
    """A user model with a function among its settings (as `eqx.nn.MLP`'s activation)."""

    weights: jax.Array
    activation: Any = eqx.field(static=True)

    @property
    def num_channels(self):
        return 3

    def render(self, points, *, pixel_size):
        return jax.nn.sigmoid(self.activation(points @ self.weights))


def test_resume_tells_functions_in_a_user_models_settings_apart(tmp_path):
    # Every `lambda` prints alike once addresses are dropped: a checkpoint of a fit with
    # `sin(3 x)` resumed a fit with `sin(50 x)` without a word.
    def make(freq):
        return _Waves(jnp.full((2, 3), 0.1), lambda x: jnp.sin(freq * x))

    target, path = jnp.full((8, 8, 3), 0.3), tmp_path / "fit.ckpt"
    dp.fit(make(3.0), target, steps=4, checkpoint=path, steps_per_dispatch=2)
    resumed = dp.fit(make(3.0), target, steps=6, checkpoint=path, resume=True)
    assert resumed.losses.shape == (6,)
    with pytest.raises(dp.CheckpointError, match="different model computation"):
        dp.fit(make(50.0), target, steps=8, checkpoint=path, resume=True)


class _Channels(dp.AbstractModel):
    """A user model with a set among its settings (which channels it draws)."""

    weights: jax.Array
    drawn: frozenset = eqx.field(static=True)

    @property
    def num_channels(self):
        return 3

    def render(self, points, *, pixel_size):
        mask = jnp.asarray([c in self.drawn for c in range(3)], jnp.float32)
        return jax.nn.sigmoid(points @ self.weights) * mask


def test_resume_reads_a_set_setting_in_any_order(tmp_path):
    # A set's order follows its items' hashes (for strings, `PYTHONHASHSEED`): the same
    # settings printed in another order in the next process were refused as "different
    # model settings". Here two equal sets that iterate in different orders.
    first, second = frozenset([0, 2, 8]), frozenset([8, 2, 0])
    assert first == second and list(first) != list(second)
    target, path = jnp.full((8, 8, 3), 0.3), tmp_path / "fit.ckpt"
    dp.fit(_Channels(jnp.full((2, 3), 0.1), first), target, steps=4, checkpoint=path)
    resumed = dp.fit(
        _Channels(jnp.full((2, 3), 0.1), second), target, steps=6, checkpoint=path, resume=True
    )
    assert resumed.losses.shape == (6,)
    with pytest.raises(dp.CheckpointError, match="different model settings"):
        dp.fit(
            _Channels(jnp.full((2, 3), 0.1), frozenset([0, 2])), target, steps=8,
            checkpoint=path, resume=True,
        )  # fmt: skip


class _Palette(eqx.Module):
    """Settings kept in a static field: a module whose print wraps once it is long."""

    drawn: frozenset


class _Painted(_Channels):
    palette: _Palette = eqx.field(static=True, default=_Palette(frozenset()))


def test_resume_reads_a_set_inside_a_module_setting_in_any_order(tmp_path):
    # Equinox prints a long module over several lines, where the set's one-line print
    # was not found to be sorted: the next process refused the checkpoint.
    first, second = frozenset(range(0, 160, 8)), frozenset(reversed(range(0, 160, 8)))
    assert first == second and list(first) != list(second)
    assert "\n" in repr(_Palette(first))
    target, path = jnp.full((8, 8, 3), 0.3), tmp_path / "fit.ckpt"

    def model(drawn):
        return _Painted(jnp.full((2, 3), 0.1), frozenset({0, 1, 2}), _Palette(drawn))

    dp.fit(model(first), target, steps=4, checkpoint=path)
    resumed = dp.fit(model(second), target, steps=6, checkpoint=path, resume=True)
    assert resumed.losses.shape == (6,)
    with pytest.raises(dp.CheckpointError, match="different model settings"):
        dp.fit(model(first - {0}), target, steps=8, checkpoint=path, resume=True)


def test_a_resume_that_diverges_at_once_goes_back_as_the_fit_would(tmp_path):
    # The checkpoint after one step holds `a` < 0 (its loss not yet computed); resumed,
    # the fit diverged there and went back to... that same model, whose render is NaN,
    # where the uninterrupted fit returns the start (`a` = 1).
    target, path, model = (
        jnp.full((8, 8, 3), 0.25),
        tmp_path / "fit.ckpt",
        SqrtModel(jnp.asarray(1.0)),
    )
    with pytest.raises(dp.FitDivergedError) as whole:
        dp.fit(model, target, steps=20, optimizer=optax.sgd(10.0))
    assert (
        float(dp.fit(model, target, steps=1, optimizer=optax.sgd(10.0), checkpoint=path).model.a)
        < 0
    )
    with pytest.raises(dp.FitDivergedError) as resumed:
        dp.fit(model, target, steps=20, optimizer=optax.sgd(10.0), checkpoint=path, resume=True)
    assert float(resumed.value.result.model.a) == float(whole.value.result.model.a) == 1.0
