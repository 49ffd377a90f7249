"""Models on disk (dp.save / dp.load), fit snapshots and progress GIFs."""

import hashlib
import json
import logging
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

import diffprims as dp

from .helpers import shape_types

SHAPE_TYPES = shape_types()


def models():
    out = [(cls.__name__, cls.init(4, key=jax.random.key(1), softness=1.5)) for cls in SHAPE_TYPES]
    out.append(("grey", dp.Circles.init(3, key=jax.random.key(2), channels=1)))
    out.append(("depth", dp.Circles.init(3, key=jax.random.key(2), compositing="depth")))
    if hasattr(dp, "SeparableFilters") and hasattr(dp, "kernels"):
        out.append(("filters", dp.SeparableFilters.from_svd(dp.kernels.disk(9), rank=2)))
    circles = dp.Circles.init(3, key=jax.random.key(3))
    for dtype in (jnp.float16, jnp.bfloat16):  # bfloat16 is raw bytes in a .npy record
        half = jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, circles)
        out.append((jnp.dtype(dtype).name, half))
    return out


def assert_same(a, b):
    assert type(a) is type(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name,model", models(), ids=[n for n, _ in models()])
@pytest.mark.parametrize("template", [False, True])
def test_round_trip(tmp_path, name, model, template):
    path = dp.save(tmp_path / "model.eqx", model)
    loaded = dp.load(path, like=model if template else None)
    assert_same(loaded, model)


def test_header_metadata(tmp_path):
    model = dp.Circles.init(5, key=jax.random.key(0), softness=2.0)
    path = dp.save(tmp_path / "m.eqx", model)
    with open(path, "rb") as file:
        assert file.readline() == b"diffprims-model\n"
        header = json.loads(file.readline())
    assert header["type"] == "Circles"
    assert header["num_shapes"] == 5
    assert header["num_channels"] == 3
    assert header["softness"] == 2.0


def test_load_rebuilds_a_working_model(tmp_path):
    model = dp.Circles.init(6, key=jax.random.key(0))
    loaded = dp.load(dp.save(tmp_path / "m.eqx", model))
    np.testing.assert_array_equal(loaded.render_image((12, 12)), model.render_image((12, 12)))


def test_atomic_and_no_leftovers(tmp_path):
    model = dp.Circles.init(2, key=jax.random.key(0))
    dp.save(tmp_path / "m.eqx", model)
    first = (tmp_path / "m.eqx").read_bytes()

    class Unsaveable(eqx.Module):
        thing: object

    with pytest.raises(TypeError, match="can store"):
        dp.save(tmp_path / "m.eqx", Unsaveable(object()))
    assert (tmp_path / "m.eqx").read_bytes() == first  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["m.eqx"]


def test_load_errors(tmp_path):
    model = dp.Circles.init(3, key=jax.random.key(0))
    path = dp.save(tmp_path / "m.eqx", model)
    with pytest.raises(FileNotFoundError, match="No model file"):
        dp.load(tmp_path / "missing.eqx")
    (tmp_path / "junk.eqx").write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="model file written by"):
        dp.load(tmp_path / "junk.eqx")
    with pytest.raises(
        ValueError, match=r"holds `raw_colours`: \(3, 3\) float32 where `like` has \(4"
    ):
        dp.load(path, like=dp.Circles.init(4, key=jax.random.key(0)))
    # Only settings differ: the message named size and layout (found by a review).
    with pytest.raises(ValueError, match=r"holds `softness` = 1\.0 where `like` has 2\.5"):
        dp.load(path, like=dp.Circles.init(3, key=jax.random.key(0), softness=2.5))
    layers = dp.save(tmp_path / "l.eqx", dp.Layers([model, model]))
    with pytest.raises(
        ValueError, match=r"`layers\[1\]\.compositing` = 'over' where `like` has 'a"
    ):
        dp.load(layers, like=dp.Layers([model, model.with_compositing("additive")]))
    with pytest.raises(ValueError, match=r"holds `layers`: 2 items where `like` has 1"):
        dp.load(layers, like=dp.Layers([model]))
    # A layer of another type: two models' reprs, cut off mid-field (found by a review).
    with pytest.raises(ValueError, match=r"`layers\[1\]`: a Circles where `like` has an Ellipses"):
        dp.load(layers, like=dp.Layers([model, dp.Ellipses.init(3, key=jax.random.key(0))]))
    with pytest.raises(ValueError, match="of type Circles.*Pass a `like` of the file.s type"):
        dp.load(path, like=dp.Rectangles.init(3, key=jax.random.key(0)))
    with pytest.raises(TypeError, match="`path` must be a file path; got int 3"):
        dp.save(3, model)  # pyright: ignore[reportArgumentType]
    truncated = tmp_path / "short.eqx"
    truncated.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated"):
        dp.load(truncated)
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda m: dp.save(tmp_path / "t.eqx", m) and 0)(model)


def reseal(data: bytes) -> bytes:
    """A model file's bytes with its SHA-256 line recomputed (to test header checks)."""
    magic, rest = data.split(b"\n", 1)
    line, rest = rest.split(b"\n", 1)
    _, payload = rest.split(b"\n", 1)
    line += b"\n"
    digest = hashlib.sha256(line + payload).hexdigest().encode()
    return magic + b"\n" + line + digest + b"\n" + payload


def test_load_error_example_handles_both_cases(tmp_path, monkeypatch):
    """The example in `LoadError`'s docstring: no file starts afresh, a bad one stops."""
    code = dp.LoadError.__doc__.split("```python\n")[1].split("```")[0]  # pyright: ignore
    code = "\n".join(line[4:] for line in code.splitlines())
    monkeypatch.chdir(tmp_path)
    scope = {"dp": dp, "jax": jax}
    exec(code, scope)  # no model.eqx yet
    assert isinstance(scope["model"], dp.Circles)
    (tmp_path / "model.eqx").write_bytes(b"not a model")
    with pytest.raises(SystemExit, match="unusable"):
        exec(code, {"dp": dp, "jax": jax})


class Unregistered(eqx.Module):
    weights: jax.Array
    scale: float = 1.0


def test_unknown_module_needs_classes(tmp_path):
    model = dp.Circles.init(2, key=jax.random.key(0))
    path = dp.save(tmp_path / "m.eqx", model)
    data = path.read_bytes().replace(b"diffprims.Circles", b"not_imported_mod:Circles")
    (tmp_path / "other.eqx").write_bytes(reseal(data))
    with pytest.raises(dp.LoadError, match="classes=") as info:
        dp.load(tmp_path / "other.eqx")
    assert "other.eqx" in str(info.value)
    # A class of the program loads only when the caller names it.
    mine = Unregistered(jnp.arange(3.0), 2.0)
    path = dp.save(tmp_path / "mine.eqx", mine)
    with pytest.raises(dp.LoadError, match="not a diffprims class") as info:
        dp.load(path)
    # It names the class and what to pass; the file is not damaged, so it does not say so.
    assert "holds `Unregistered`" in str(info.value)
    assert "classes=[Unregistered]" in str(info.value)
    assert "damaged" not in str(info.value)
    assert_same(dp.load(path, classes=[Unregistered]), mine)
    assert_same(dp.load(path, like=mine), mine)
    # A class or a model where a list of classes belongs: what to pass, not its repr.
    with pytest.raises(TypeError, match=r"the class Unregistered itself; pass `classes=\["):
        dp.load(path, classes=Unregistered)
    with pytest.raises(TypeError, match=r"Unregistered model \(an instance\)\. Pass its class"):
        dp.load(path, classes=[mine])


# -- batches of models (jax.vmap over a constructor) ------------------------------------


def _batched(make, shape=(3,)):
    keys = jax.random.split(jax.random.key(0), shape)
    for _ in shape:
        make = jax.vmap(make)
    return make(keys)


@pytest.mark.parametrize(
    "make",
    [
        lambda k: dp.Circles.init(4, key=k),
        lambda k: dp.Circles.init(3, key=k, compositing="depth"),
        lambda k: dp.Layers([dp.Rectangles.init(2, key=k), dp.Ellipses.init(3, key=k)]),
    ],
    ids=["circles", "depth", "layers"],
)
@pytest.mark.parametrize("shape", [(3,), (2, 3)], ids=["B", "B1xB2"])
def test_batched_model_round_trips(tmp_path, make, shape):
    model = _batched(make, shape)
    path = dp.save(tmp_path / "batch.eqx", model)
    loaded = dp.load(path)
    assert_same(loaded, model)
    assert_same(dp.load(path, like=model), model)
    render = lambda m: m.render_image((6, 6))  # noqa: E731
    for _ in shape:
        render = jax.vmap(render)
    np.testing.assert_array_equal(render(loaded), render(model))
    assert render(loaded).shape == (*shape, 6, 6, 3)


def test_batched_model_header_describes_one_member(tmp_path):
    model = _batched(lambda k: dp.Circles.init(5, key=k, softness=2.0))
    path = dp.save(tmp_path / "b.eqx", model)
    with open(path, "rb") as file:
        file.readline()
        header = json.loads(file.readline())
    assert header["batch"] == [3]
    assert header["num_shapes"] == 5 and header["num_channels"] == 3
    # A batch's file does not load as one model of that structure.
    with pytest.raises(ValueError, match="does not match"):
        dp.load(path, like=dp.Circles.init(5, key=jax.random.key(0), softness=2.0))


def test_header_batch_is_checked(tmp_path):
    model = _batched(lambda k: dp.Circles.init(4, key=k))
    data = dp.save(tmp_path / "b.eqx", model).read_bytes()
    for bad in (b'"batch":[4]', b'"batch":[0]', b'"batch":"3"'):
        (tmp_path / "bad.eqx").write_bytes(reseal(data.replace(b'"batch":[3]', bad)))
        with pytest.raises(dp.LoadError, match="bad `batch`|declares a batch of"):
            dp.load(tmp_path / "bad.eqx")


def test_a_float64_file_in_a_32_bit_process_says_so(tmp_path):
    # It said the file was damaged ("does not hold a valid model (or is truncated)").
    path = tmp_path / "wide.eqx"
    with jax.enable_x64(True):
        model = dp.Circles.init(2, key=jax.random.key(0))
        model = jax.tree.map(
            lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, model
        )
        dp.save(path, model)
        assert dp.load(path).raw_radii.dtype == jnp.float64
    with pytest.raises(dp.LoadError, match=r"float64 arrays \(saved with `jax_enable_x64`"):
        dp.load(path)


def test_save_refuses_what_load_would_refuse(tmp_path):
    model = dp.Circles.init(3, key=jax.random.key(0))
    broken = eqx.tree_at(lambda m: m.raw_opacities, model, jnp.zeros((5,)))
    with pytest.raises(ValueError, match=r"constructor accepts.*opacities must have shape"):
        dp.save(tmp_path / "broken.eqx", broken)
    assert not (tmp_path / "broken.eqx").exists()


def test_refused_by_constructor_message_has_one_full_stop(tmp_path):
    model = dp.Circles.init(3, key=jax.random.key(0))
    data = dp.save(tmp_path / "m.eqx", model).read_bytes()
    # Opacities of shape (4,) where the colours say N = 3 (sizes kept consistent).
    (tmp_path / "bad.eqx").write_bytes(
        reseal(data.replace(b'"raw_opacities":{"array":[3]', b'"raw_opacities":{"array":[2]'))
    )
    with pytest.raises(dp.LoadError, match="refused by the model's constructor") as info:
        dp.load(tmp_path / "bad.eqx")
    assert ".." not in str(info.value)


# -- snapshots and GIFs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    target = dp.load_image(dp.demo_image_path(), size=16)
    model = dp.Circles.init(5, key=jax.random.key(0), target=target)
    return model, target


@pytest.mark.parametrize("k,steps", [(1, 30), (4, 30), (5, 120), (31, 30)])
def test_snapshots_evenly_spaced(small, k, steps):
    model, target = small
    result = dp.fit(
        model, target, steps=steps, snapshots=k, batch=0.5, key=jax.random.key(1),
        steps_per_dispatch=50,
    )  # fmt: skip
    assert len(result.snapshots) == len(result.snapshot_steps) == k
    expected = [steps] if k == 1 else np.round(np.linspace(0, steps, k)).astype(int).tolist()
    assert list(result.snapshot_steps) == expected
    assert_same(result.snapshots[-1], result.model)
    if k > 1:
        assert_same(result.snapshots[0], model)
    # Every snapshot is the model a shorter fit with the same key ends at.
    middle = k // 2
    if 0 < result.snapshot_steps[middle] < steps:
        short = dp.fit(
            model, target, steps=result.snapshot_steps[middle], batch=0.5,
            key=jax.random.key(1), steps_per_dispatch=50,
        )  # fmt: skip
        for x, y in zip(jax.tree.leaves(short.model), jax.tree.leaves(result.snapshots[middle])):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_no_snapshots_by_default(small):
    model, target = small
    result = dp.fit(model, target, steps=3)
    assert result.snapshots == () and result.snapshot_steps == ()


def test_snapshots_under_vmap(small):
    model, target = small
    keys = jax.random.split(jax.random.key(0), 3)
    centres = jax.vmap(
        lambda key: (
            dp.fit(model, target, steps=10, snapshots=3, batch=0.5, key=key).snapshots[1].centres
        )
    )(keys)
    assert centres.shape == (3, 5, 2)
    assert not np.allclose(centres[0], centres[1])


def test_snapshot_fit_compiles_once(small, caplog):
    model, target = small
    # Same optimizer object and loss: the compiled step is reused (see `fit`).
    kwargs = dict(
        steps=20, snapshots=4, batch=0.5, steps_per_dispatch=10, optimizer=optax.adam(1e-2)
    )
    dp.fit(model, target, key=jax.random.key(0), **kwargs)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        dp.fit(model, target * 0.5, key=jax.random.key(1), **kwargs)
    assert not [r for r in caplog.records if "run_steps" in r.getMessage()]


def test_snapshot_errors(small):
    model, target = small
    for bad in (0, -2):
        with pytest.raises(ValueError, match="snapshots"):
            dp.fit(model, target, steps=5, snapshots=bad)
    with pytest.raises(TypeError, match="snapshots"):
        dp.fit(model, target, steps=5, snapshots=2.5)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("frames", [1, 3, 7])
def test_gif_has_one_frame_per_snapshot(tmp_path, small, frames):
    model, target = small
    result = dp.fit(model, target, steps=12, snapshots=frames, batch=0.5, key=jax.random.key(0))
    path = dp.save_gif(tmp_path / "p.gif", result.snapshots, (20, 30), seconds_per_frame=0.05)
    with Image.open(path) as gif:
        assert gif.n_frames == frames
        assert gif.size == (30, 20)
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"), np.float32) / 255
    # The last frame is the fitted model (up to the GIF palette).
    assert float(dp.psnr(last, result.model.render_image((20, 30)))) > 25.0
    assert [p.name for p in tmp_path.iterdir()] == ["p.gif"]


def test_gif_of_traced_or_batched_snapshots_says_what_to_pass(tmp_path, small):
    model, target = small
    path = tmp_path / "a.gif"

    def traced(t):
        return dp.save_gif(path, dp.fit(model, t, steps=2, snapshots=2).snapshots, (8, 8))

    with pytest.raises(TypeError, match="needs concrete models.*outside it"):
        jax.jit(traced)(target)  # was NumPy's TracerArrayConversionError
    batched = jax.vmap(lambda t: dp.fit(model, t, steps=2, snapshots=2))(jnp.stack([target] * 2))
    with pytest.raises(ValueError, match=r"a batch of 2 models in each.*x\[i\]"):
        dp.save_gif(path, batched.snapshots, (8, 8))  # was "call render_image under vmap"
    assert not path.exists()


def test_gif_errors(tmp_path, small):
    model, _ = small
    with pytest.raises(ValueError, match="non-empty"):
        dp.save_gif(tmp_path / "a.gif", [], (8, 8))
    with pytest.raises(ValueError, match="non-empty"):
        dp.save_gif(tmp_path / "a.gif", [jnp.zeros(3)], (8, 8))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="seconds"):
        dp.save_gif(tmp_path / "a.gif", [model], (8, 8), seconds_per_frame=0)
    with pytest.raises(ValueError, match=r"end in \.gif.*'\.png'.*save_image"):
        dp.save_gif(tmp_path / "a.png", [model], (8, 8))
    with pytest.raises(ValueError, match="no suffix"):
        dp.save_gif(tmp_path / "a", [model], (8, 8))
    two = dp.Circles.init(3, key=jax.random.key(0), channels=2)
    with pytest.raises(ValueError, match="`snapshots` must be models of 1.*got models of 2"):
        dp.save_gif(tmp_path / "a.gif", [two, two], (8, 8))
    # Under 0.02 s a frame would be 0 or 0.01 s, which most viewers show as 0.1 s.
    for fast in (0.001, 0.005, 0.01, 0.014):
        with pytest.raises(ValueError, match=r"`seconds_per_frame` must be at least 0\.02"):
            dp.save_gif(tmp_path / "a.gif", [model], (8, 8), seconds_per_frame=fast)
    with pytest.raises(ValueError, match="at most 65535 pixels a side"):  # was OverflowError
        dp.save_gif(tmp_path / "a.gif", [model], (1, 70000))
    assert not list(tmp_path.iterdir())


def test_gif_of_models_with_different_numbers_of_shapes(tmp_path):
    # Batched rendering stacked them and failed with NumPy's shape message.
    models = [dp.Circles.init(n, key=jax.random.key(n)) for n in (3, 5, 3)]
    path = dp.save_gif(tmp_path / "mixed.gif", models, (8, 8))
    with Image.open(path) as gif:
        assert gif.n_frames == 3


class _Field(dp.AbstractModel):
    """A user's neural field: an `eqx.nn.MLP`, which keeps its activation function."""

    mlp: eqx.nn.MLP

    @property
    def num_channels(self):
        return 3

    def render(self, points, *, pixel_size):
        return jax.nn.sigmoid(jax.vmap(self.mlp)(points))


def test_gif_of_a_user_model_holding_a_function(tmp_path):
    # Snapshots were stacked leaf by leaf, the MLP's activation function too: a raw
    # "stack requires ndarray or scalar arguments" from `jnp.stack`.
    field = _Field(eqx.nn.MLP(2, 3, 8, 1, key=jax.random.key(0)))
    models = [eqx.tree_at(lambda m: m.mlp.layers[-1].bias, field, jnp.full(3, b))
              for b in (-2.0, 0.0, 2.0)]  # fmt: skip
    path = dp.save_gif(tmp_path / "field.gif", models, (8, 8), seconds_per_frame=0.1)
    with Image.open(path) as gif:
        assert gif.n_frames == 3
        means = []
        for frame in range(3):
            gif.seek(frame)
            means.append(np.asarray(gif.convert("RGB"), np.float32).mean() / 255)
    expected = [float(jnp.mean(m.render_image((8, 8)))) for m in models]
    np.testing.assert_allclose(means, expected, atol=0.02)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_gif_frames_show_every_channel(tmp_path, channels):
    """Grey as grey, RGB as it is, RGBA over white as `load_image` shows transparency
    (its fourth channel is the opacity, as `save_image` writes it)."""
    model = dp.Circles.init(4, key=jax.random.key(3), channels=channels)
    image = np.clip(np.asarray(model.render_image((8, 8))), 0.0, 1.0)
    if channels == 4:
        assert image[..., 3].max() < 0.9  # the opacity matters here
        expected = image[..., :3] * image[..., 3:] + 1.0 - image[..., 3:]
    else:
        expected = np.broadcast_to(image, (8, 8, 3))
    path = dp.save_gif(tmp_path / "c.gif", [model], (8, 8))
    with Image.open(path) as gif:
        shown = np.asarray(gif.convert("RGB"), np.float32) / 255
    # 64 pixels: at most 64 colours, so the palette holds them all (to 8 bits).
    np.testing.assert_allclose(shown, expected, atol=0.5 / 255 + 1e-6)
    if channels == 4:  # as the PNG of the same picture reads
        png = dp.load_image(dp.save_image(tmp_path / "c.png", image))
        np.testing.assert_allclose(shown, png, atol=1 / 255 + 1e-6)


def test_gif_of_few_colours_is_exact_and_of_many_close(tmp_path):
    """Frames with at most 256 colours in all are written exactly (the palette is theirs);
    with more, one median-cut palette for all frames keeps them close."""
    few = [dp.Circles.init(3, key=jax.random.key(k)) for k in range(3)]
    many = [dp.Circles.init(40, key=jax.random.key(k), softness=4.0) for k in range(3)]
    for models, size, atol in ((few, (12, 12), 0.5 / 255 + 1e-6), (many, (48, 48), 0.1)):
        frames = [np.round(np.clip(np.asarray(m.render_image(size)), 0, 1) * 255) / 255
                  for m in models]  # fmt: skip
        colours = {tuple(c) for f in frames for c in f.reshape(-1, 3)}
        assert (len(colours) <= 256) == (models is few)
        path = dp.save_gif(tmp_path / f"{len(models[0].radii)}.gif", models, size)
        with Image.open(path) as gif:
            for index, frame in enumerate(frames):
                gif.seek(index)
                shown = np.asarray(gif.convert("RGB"), np.float32) / 255
                np.testing.assert_allclose(shown, frame, atol=atol)
                assert np.mean(np.abs(shown - frame)) < (1e-6 if models is few else 0.01)


def test_gif_delays_are_whole_hundredths(tmp_path, small):
    model, _ = small
    other = eqx.tree_at(lambda m: m.raw_colours, model, 1.0 - model.raw_colours)
    models = [model, other, model]  # distinct consecutive frames: none merged
    path = dp.save_gif(tmp_path / "d.gif", models, (8, 8), seconds_per_frame=0.037, hold_last=0.5)
    with Image.open(path) as gif:
        delays = []
        for index in range(gif.n_frames):
            gif.seek(index)
            delays.append(gif.info["duration"])
    assert delays == [40, 40, 500]  # 0.037 s is 4 hundredths (Pillow alone wrote 3)
    path = dp.save_gif(tmp_path / "e.gif", models, (8, 8), seconds_per_frame=0.019)
    with Image.open(path) as gif:
        assert gif.info["duration"] == 20  # the shortest: 0.019 rounds to 0.02
    assert dp.save_gif(tmp_path / "A.GIF", [model], (8, 8)).exists()  # any case


# -- files written by earlier releases ----------------------------------------------------

DATA = pathlib.Path(__file__).parent / "data"


@pytest.mark.parametrize("path", sorted(DATA.glob("v0.1.0_*.eqx")), ids=lambda p: p.stem)
def test_files_of_release_0_1_0_load(path):
    """Files that name private modules of the flat 0.1.0 layout still load, unchanged."""
    model = dp.load(path)
    assert type(model).__module__.startswith("diffprims")
    expected = np.load(path.with_suffix(".npy"))
    # Triangles' and ellipses' soft tails past sharp corners and tips now end at their
    # boxes (so the tiled renderer may cull them): at 16 px with a 1-px edge that moves
    # pixels by < 2.5 % (ellipses: 0.7 %).
    atol = {dp.Triangles: 0.025, dp.Ellipses: 0.01}.get(type(model), 1e-6)
    np.testing.assert_allclose(np.asarray(model.render_image((16, 16))), expected, atol=atol)


def test_a_loss_whose_settings_were_numbers_loads():
    # Saved when SSIM's `max_value` and `filter_sigma` were Python floats (float64
    # records), since arrays: "holds float64[] where float32[] belongs".
    loss = dp.load(DATA / "ssim_number_settings.eqx")
    ssim = loss.terms[1].loss
    assert str(loss) == "L2() + 0.5 * SSIM(max_value=2.0, filter_size=5, filter_sigma=1.25)"
    assert ssim.max_value.dtype == ssim.filter_sigma.dtype == jnp.float32


def test_only_numbers_become_array_settings_on_load(tmp_path):
    # The cast above is for 0-d records: a (N,) float16 record is no float32 parameter.
    model = dp.Circles.init(3, key=jax.random.key(0))
    half = jax.tree.map(lambda x: x.astype(jnp.float16) if eqx.is_inexact_array(x) else x, model)
    path = dp.save(tmp_path / "half.eqx", half)
    with pytest.raises(dp.LoadError, match=r"holds `raw_colours`: \(3, 3\) float16 where"):
        dp.load(path, like=model)


def test_saved_files_name_public_types(tmp_path):
    for model in (
        dp.Circles.init(2, key=jax.random.key(0)),
        dp.SeparableFilters.from_svd(dp.kernels.disk(5), 1),
    ):
        path = dp.save(tmp_path / "m.eqx", model)
        header = json.loads(path.read_bytes().split(b"\n")[1])
        assert header["tree"]["module"] == f"diffprims.{type(model).__name__}"
        assert type(dp.load(path)) is type(model)


def test_more_snapshots_than_steps_are_clipped(small):
    model, target = small
    result = dp.fit(model, target, steps=3, snapshots=10)
    assert result.snapshot_steps == (0, 1, 2, 3)  # one per step, none repeated
    assert len(result.snapshots) == 4
    assert_same(result.snapshots[-1], result.model)


def test_snapshot_steps_never_repeat():
    from diffprims._fit._checks import snapshot_steps

    for steps in range(1, 60):
        for k in range(1, steps + 8):
            taken = snapshot_steps(k, steps)
            assert len(set(taken)) == len(taken) == min(k, steps + 1)
            assert taken[-1] == steps and (k == 1 or taken[0] == 0)


def test_gif_loop_false_plays_once(tmp_path, small):
    # `loop=False` wrote a loop count of 1: one repeat, so browsers played it twice.
    model, _ = small
    other = eqx.tree_at(lambda m: m.raw_colours, model, 1.0 - model.raw_colours)
    once = dp.save_gif(tmp_path / "once.gif", [model, other], (8, 8), loop=False)
    always = dp.save_gif(tmp_path / "always.gif", [model, other], (8, 8))
    with Image.open(once) as gif:
        assert "loop" not in gif.info
    with Image.open(always) as gif:
        assert gif.info["loop"] == 0


@pytest.mark.parametrize(
    "old, new, said",
    [
        (b'"softness":{"value":1.5}', b'"softness":{"value":true}', "softness"),
        (
            b'"learn_background":{"value":true}',
            b'"learn_background":{"value":"yes"}',
            "learn_background",
        ),  # fmt: skip
    ],
)
def test_load_refuses_settings_of_the_wrong_type(tmp_path, old, new, said):
    # A hand-made file (with its SHA-256 line recomputed) loaded `softness: true` and
    # `learn_background: "yes"`.
    path = dp.save(tmp_path / "m.eqx", dp.Circles.init(2, key=jax.random.key(0), softness=1.5))
    data = path.read_bytes()
    assert old in data
    path.write_bytes(reseal(data.replace(old, new)))
    with pytest.raises(dp.LoadError, match=said):
        dp.load(path)


def test_load_refuses_non_finite_parameters(tmp_path, monkeypatch):
    # `save` refuses NaN; a file holding them anyway (hand-made, or written by an older
    # version) loaded them.
    import diffprims._io as io_module

    model = dp.Circles.init(2, key=jax.random.key(0))
    model = eqx.tree_at(lambda m: m.raw_radii, model, model.raw_radii.at[1].set(jnp.nan))
    monkeypatch.setattr(io_module, "_non_finite", lambda model: None)
    path = dp.save(tmp_path / "nan.eqx", model)
    monkeypatch.undo()
    with pytest.raises(dp.LoadError, match=r"NaN/inf parameters \(in `model.raw_radii`\)"):
        dp.load(path)


# -- a class of the caller's that changed since the file was saved ----------------------


def _ring_class(*extra: str, module: str | None = None, optional: str = ""):
    """A class `Ring` (the same qualname each call), as a notebook cell redefines it; its
    `optional` field defaults to None."""
    annotations = {"centres": jax.Array, **{name: jax.Array for name in extra}}
    namespace = {"__annotations__": annotations, "__qualname__": "Ring"}
    namespace["__module__"] = module or __name__
    if optional:
        annotations[optional] = jax.Array | None
        namespace[optional] = None
    return type("Ring", (eqx.Module,), namespace)


@pytest.mark.parametrize("saved_module", [None, "__main__"], ids=["same", "script"])
def test_a_changed_class_is_named_not_the_file(tmp_path, saved_module):
    # Loading with a class given a field since the save said the file's "header is
    # damaged" or "refused by the model's constructor: missing 1 required argument", and
    # to "save the model again, or use an older copy".
    old = _ring_class("radii", module=saved_module)
    path = dp.save(tmp_path / "ring.eqx", old(jnp.zeros((3, 2)), jnp.ones(3)))
    added, renamed = _ring_class("radii", "tilts"), _ring_class("sizes")
    for new, only_file, only_class in (
        (added, "none", "`tilts`"),
        (renamed, "`radii`", "`sizes`"),
    ):
        with pytest.raises(dp.LoadError) as info:
            dp.load(path, classes=[new])
        said = str(info.value)
        assert f"the class passed, `{new.__module__}.Ring`, does not match" in said
        assert f"only in the file: {only_file}; only in the class: {only_class}." in said
        assert "load the file with `Ring` as it was then" in said
        assert "damaged" not in said and "older copy" not in said
        if saved_module:
            assert "saved from module `__main__`" in said
    # A field added with a default still loads (files saved before it keep loading).
    loaded = dp.load(path, classes=[_ring_class("radii", optional="tilts")])
    np.testing.assert_array_equal(loaded.radii, jnp.ones(3))
    assert loaded.tilts is None


def test_a_class_that_refuses_its_values_is_named(tmp_path):
    # A class whose check changed since the save: the file is not blamed alone.
    old = _ring_class()
    path = dp.save(tmp_path / "ring.eqx", old(jnp.zeros((3, 2))))
    stricter = _ring_class()

    def check(self):
        if self.centres.shape[-1] != 3:
            raise ValueError("centres must be (N, 3)")

    stricter.__check_init__ = check
    with pytest.raises(dp.LoadError, match="centres must be") as info:
        dp.load(path, classes=[stricter])
    said = str(info.value)
    assert f"It holds your class `{stricter.__module__}.Ring`: if one changed since" in said
    assert "older copy" not in said


def test_gif_settings_are_checked(tmp_path, small):
    # `loop="no"` looped forever, `seconds_per_frame=True` was a second, an infinite or
    # too long time raised OverflowError, a NumPy float was refused, and an image in
    # `snapshots` had its values printed in the message.
    model, _ = small
    path = tmp_path / "a.gif"
    with pytest.raises(TypeError, match="`loop` must be True or False; got str 'no'"):
        dp.save_gif(path, [model], (8, 8), loop="no")  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="`seconds_per_frame` must be a finite number"):
        dp.save_gif(path, [model], (8, 8), seconds_per_frame=True)
    for name in ("seconds_per_frame", "hold_last"):
        for bad in (float("inf"), float("nan"), 655.36, 1e6):
            with pytest.raises(ValueError, match=f"`{name}` must be .*655.35"):
                dp.save_gif(path, [model], (8, 8), **{name: bad})
    image = np.full((8, 8, 3), 0.123456, np.float32)
    with pytest.raises(ValueError, match=r"item 1 is a float32 array of shape \(8, 8, 3\)\.$"):
        dp.save_gif(path, [model, image], (8, 8))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match=r"got one Circles model \(pass a list, `\[model\]`\)"):
        dp.save_gif(path, model, (8, 8))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match=r"got a generator \(pass a list, `list\(snapshots\)`\)"):
        dp.save_gif(path, (m for m in [model]), (8, 8))  # pyright: ignore[reportArgumentType]
    assert not list(tmp_path.iterdir())
    longest = dp.save_gif(path, [model], (8, 8), seconds_per_frame=np.float32(655.35))
    with Image.open(longest) as gif:
        assert gif.info["duration"] == 655350


def test_a_file_of_another_diffprims_is_not_called_damaged(tmp_path):
    # A diffprims type with other fields than this version's: the header "is damaged".
    data = dp.save(tmp_path / "m.eqx", dp.Circles.init(2, key=jax.random.key(0))).read_bytes()
    (tmp_path / "new.eqx").write_bytes(reseal(data.replace(b'"raw_radii"', b'"raw_sizes"')))
    with pytest.raises(dp.LoadError) as info:
        dp.load(tmp_path / "new.eqx")
    said = str(info.value)
    assert "does not match `diffprims.Circles` of this diffprims" in said
    assert "only in the file: `raw_sizes`; only in this diffprims: `raw_radii`." in said
    assert "another version of diffprims" in said and "damaged" not in said


def test_gif_identical_frames_in_a_row_are_one_frame_within_the_longest_delay(tmp_path):
    # Pillow merges identical frames and sums their delays: a fit that stopped changing,
    # held 655.35 s (each delay allowed alone), raised "int too big to convert".
    from PIL import Image

    still = dp.Circles.init(3, key=jax.random.key(0))
    moved = dp.Circles.init(3, key=jax.random.key(1))
    dp.save_gif(tmp_path / "a.gif", [still, still], (8, 8), hold_last=655.35)
    dp.save_gif(tmp_path / "b.gif", [still] * 3 + [moved], (8, 8), seconds_per_frame=300)

    def delays(path):
        with Image.open(path) as gif:
            out = []
            for index in range(gif.n_frames):
                gif.seek(index)
                out.append(gif.info["duration"])
            return out

    assert delays(tmp_path / "a.gif") == [655350]
    assert delays(tmp_path / "b.gif") == [655350, 300000]


def test_a_model_holding_an_mlp_gets_the_advice_that_saves_it(tmp_path):
    # An MLP keeps its activation function: `save` named the function but not the way
    # to save such a model, and `load` of the file that way wrote said to save again.
    field = _Field(eqx.nn.MLP(2, 3, 8, 1, key=jax.random.key(0)))
    with pytest.raises(TypeError, match=r"activation.*eqx\.tree_serialise_leaves\(path, model\)"):
        dp.save(tmp_path / "field.eqx", field)
    path = tmp_path / "leaves.eqx"
    eqx.tree_serialise_leaves(path, field)
    with pytest.raises(dp.LoadError, match=r"NumPy records.*eqx\.tree_deserialise_leaves") as info:
        dp.load(path, like=field)
    assert "save the model again" not in str(info.value)
    loaded = eqx.tree_deserialise_leaves(path, field)  # the advice works
    np.testing.assert_array_equal(loaded.render_image((4, 4)), field.render_image((4, 4)))


def test_a_result_of_a_traced_fit_saves(tmp_path):
    # Under jit/vmap `seconds` is NaN by design, and `save` refused the whole result as
    # "NaN/inf in `model.seconds` ... save the last finite model" (no fit had diverged).
    target = jnp.full((8, 8, 3), 0.5)
    model = dp.Circles.init(2, key=jax.random.key(0), target=0.3 * target)
    results = jax.vmap(lambda lr: dp.fit(model, target, steps=3, optimizer=optax.adam(lr)))(
        jnp.array([1e-2, 2e-2])
    )
    assert np.isnan(results.seconds).all()
    loaded = dp.load(dp.save(tmp_path / "results.eqx", results), like=results)
    np.testing.assert_array_equal(loaded.losses, results.losses)
    broken = eqx.tree_at(lambda r: r.model.raw_radii, results, jnp.full((2, 2), jnp.nan))
    with pytest.raises(ValueError, match=r"NaN/inf in `model\.model\.raw_radii`"):
        dp.save(tmp_path / "broken.eqx", broken)
