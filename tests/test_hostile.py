"""Hostile and unusual inputs (issue 17): files, images, checkpoints and paint's guards.

Nothing a file or an argument does may hang, allocate beyond what a file holds, run code
named by a file, or return a silently wrong result; every refusal is a diffprims message.
"""

import json
import os
import signal
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import diffprims as dp

from .test_io import reseal


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = dp.Circles.init(3, key=jax.random.key(0))
    path = dp.save(tmp_path_factory.mktemp("m") / "m.eqx", model)
    return model, path.read_bytes()


def _edit_header(data: bytes, edit) -> bytes:
    magic, line, rest = data.split(b"\n", 2)
    header = json.loads(line)
    edit(header)
    return reseal(magic + b"\n" + json.dumps(header).encode() + b"\n" + rest)


def _fields(header):
    return header["tree"]["fields"]


def _nested(depth):
    node = {"value": None}
    for _ in range(depth):
        node = {"tuple": [node]}
    return node


HOSTILE_HEADERS = {
    "huge-array": lambda h: _fields(h)["raw_centres"].update(array=[100000, 100000]),
    "negative-dim": lambda h: _fields(h)["raw_centres"].update(array=[-3, 2]),
    "bool-dim": lambda h: _fields(h)["raw_centres"].update(array=[True, 2]),
    "bad-dtype": lambda h: _fields(h)["raw_centres"].update(dtype="object"),
    "softness-negative": lambda h: _fields(h)["softness"].update(value=-5),
    # loaded, then OverflowError on the first render
    "softness-huge-int": lambda h: _fields(h)["softness"].update(value=10**400),
    "compositing-bogus": lambda h: _fields(h)["compositing"].update(value="bogus"),
    "abstract-class": lambda h: h["tree"].update(module="diffprims.AbstractShapes"),
    "foreign-module": lambda h: h["tree"].update(module="equinox.nn._linear:Linear"),
    "unknown-field": lambda h: _fields(h).update(extra={"value": 1}),
    "not-an-entry": lambda h: _fields(h).update(raw_radii=[1, 2]),
    "unknown-kind": lambda h: _fields(h).update(raw_radii={"pickle": "x"}),
    "deep-nesting": lambda h: _fields(h).update(raw_depths=_nested(200)),
    "shape-swap": lambda h: _fields(h)["raw_radii"].update(array=[2, 3]),
    "wrong-dtype": lambda h: _fields(h)["raw_radii"].update(dtype="int32"),
    "tree-missing": lambda h: h.pop("tree"),
    "version-string": lambda h: h.update(version="2"),
    "payload-bytes-lie": lambda h: h.update(payload_bytes=10**12),
}


@pytest.mark.parametrize("edit", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
def test_hostile_model_headers_are_refused_by_name(tmp_path, saved, edit):
    _, data = saved
    path = tmp_path / "hostile.eqx"
    path.write_bytes(_edit_header(data, edit))
    with pytest.raises(dp.LoadError) as info:
        dp.load(path)
    assert "hostile.eqx" in str(info.value)


def test_every_payload_bit_flip_is_refused(tmp_path, saved):
    model, data = saved
    rng = np.random.default_rng(0)
    path = tmp_path / "flip.eqx"
    for position in rng.choice(np.arange(16, len(data)), 40, replace=False):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        with pytest.raises(dp.LoadError):
            dp.load(path)
    path.write_bytes(data)
    np.testing.assert_array_equal(dp.load(path).raw_centres, model.raw_centres)


def test_truncations_and_non_files_are_refused(tmp_path, saved):
    _, data = saved
    path = tmp_path / "cut.eqx"
    for cut in (17, 40, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(dp.LoadError):
            dp.load(path)
    path.write_bytes(data[:16] + b"{" * (2**20))  # a header line that never ends
    with pytest.raises(dp.LoadError, match="damaged"):
        dp.load(path)
    path.write_bytes(data[:16] + b"[" * 100_000 + b"]" * 100_000 + b"\n")  # too deep for json
    with pytest.raises(dp.LoadError, match="damaged"):
        dp.load(path)
    with pytest.raises(dp.LoadError, match="folder"):
        dp.load(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(dp.LoadError, match="not a regular file"):
            dp.load("/dev/zero")


def test_a_payload_record_larger_than_its_header_is_refused(tmp_path):
    # The payload's own .npy header claims a huge array: checked against the template
    # before a byte of it is read.
    model = dp.Circles.init(2, key=jax.random.key(0))
    data = dp.save(tmp_path / "m.eqx", model).read_bytes()
    record = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
    assert record in data
    huge = record.replace(b"(2, 3)", b"(9999999,)")  # 4 bytes longer: eat 4 of the padding
    hostile = data.replace(record + b"    ", huge)
    (tmp_path / "big.eqx").write_bytes(reseal(hostile))
    with pytest.raises(dp.LoadError, match="where float32"):
        dp.load(tmp_path / "big.eqx")


def test_nan_models_are_not_saved_or_loaded(tmp_path, saved):
    model, data = saved
    nan_model = jax.tree.map(lambda x: x * jnp.nan, model)
    with pytest.raises(ValueError, match="finite"):
        dp.save(tmp_path / "nan.eqx", nan_model)
    with pytest.raises(ValueError, match="finite"):
        dp.to_svg(nan_model, (8, 8))


def test_save_keeps_the_mode_of_a_file_it_replaces(tmp_path, saved):
    model, _ = saved
    path = tmp_path / "private.eqx"
    path.write_bytes(b"")
    os.chmod(path, 0o600)
    dp.save(path, model)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    dp.save_image(tmp_path / "p.png", jnp.zeros((2, 2, 3)))
    os.chmod(tmp_path / "p.png", 0o640)
    dp.save_image(tmp_path / "p.png", jnp.ones((2, 2, 3)))
    assert stat.S_IMODE(os.stat(tmp_path / "p.png").st_mode) == 0o640


# -- images ------------------------------------------------------------------------------


def _write(path, array, mode=None, **save):
    Image.fromarray(array, mode=mode).save(path, **save) if mode else Image.fromarray(array).save(
        path, **save
    )
    return path


def test_bit_depths_scale_by_their_own_peak(tmp_path):
    ramp16 = np.arange(256, dtype=np.uint16).reshape(16, 16)  # 0..255 in a 16-bit file
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp16).save(path)
    with Image.open(path) as opened:
        assert opened.mode.startswith("I")
    image = np.asarray(dp.load_image(path))
    np.testing.assert_allclose(image[..., 0], ramp16 / 65535.0, atol=1e-7)
    # Resized, it stays a dark 16-bit ramp (was [0.53, 1] through an RGBA conversion).
    small = np.asarray(dp.load_image(path, size=8))
    assert small.shape == (8, 8, 3) and small.max() < 0.005
    grey8 = np.asarray(dp.load_image(_write(tmp_path / "g8.png", ramp16.astype(np.uint8))))
    np.testing.assert_allclose(grey8[..., 0], ramp16 / 255.0, atol=1e-6)


def test_float_tiff_resizes_in_float(tmp_path):
    values = np.linspace(0.1, 0.9, 64, dtype=np.float32).reshape(8, 8)
    path = tmp_path / "f.tif"
    Image.fromarray(values, mode="F").save(path)
    image = np.asarray(dp.load_image(path))
    np.testing.assert_allclose(image[..., 1], values, atol=1e-6)
    half = np.asarray(dp.load_image(path, size=4))
    assert half.shape == (4, 4, 3)
    assert 0.1 < half.mean() < 0.9 and abs(half.mean() - values.mean()) < 0.02


def test_transparency_and_palette(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128  # half-transparent red over white
    image = np.asarray(dp.load_image(_write(tmp_path / "a.png", rgba)))
    np.testing.assert_allclose(image[0, 0], [1.0, 127 / 255, 127 / 255], atol=1e-2)
    la = np.stack([np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)], -1)  # clear
    np.testing.assert_allclose(np.asarray(dp.load_image(_write(tmp_path / "la.png", la))), 1.0)
    palette = Image.fromarray(rgba[..., :3]).convert("P")
    palette.save(tmp_path / "p.png")
    np.testing.assert_allclose(np.asarray(dp.load_image(tmp_path / "p.png"))[0, 0], [1, 0, 0])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 6, 3), np.uint8)  # wide, left half white
    pixels[:, :3] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown tall
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    image = np.asarray(dp.load_image(tmp_path / "phone.jpg"))
    assert image.shape == (6, 2, 3)
    assert image[0].mean() > 0.9 and image[-1].mean() < 0.1


def test_size_arguments(tmp_path):
    path = _write(tmp_path / "s.png", np.zeros((12, 24, 3), np.uint8))
    assert dp.load_image(path, size=np.int64(6)).shape == (3, 6, 3)
    assert dp.load_image(path, size=(np.int32(4), 5)).shape == (4, 5, 3)
    for bad in ("12", True, (4.5, 3), (True, 3), 12.0, (1, 2, 3)):
        with pytest.raises(TypeError, match="`size"):
            dp.load_image(path, size=bad)
    for bad in (0, (0, 3), -1, 2**20):
        with pytest.raises(ValueError, match="`size"):
            dp.load_image(path, size=bad)


def test_damaged_and_foreign_images_are_value_errors(tmp_path, monkeypatch):
    path = _write(tmp_path / "ok.png", np.full((32, 32, 3), 7, np.uint8))
    (tmp_path / "cut.png").write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match="cut.png"):
        dp.load_image(tmp_path / "cut.png")
    (tmp_path / "eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ValueError, match="raster"):
        dp.load_image(tmp_path / "eps.png")
    with pytest.raises(ValueError, match="folder"):
        dp.load_image(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 32x32 "bomb"
    with pytest.raises(ValueError, match="at most 200 pixels.*MAX_IMAGE_PIXELS = None"):
        dp.load_image(path)
    # Pillow warns from MAX_IMAGE_PIXELS and refuses from twice that; in between (a
    # 108 MP phone photo against 89 MP), the image is read, with no warning.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
    assert dp.load_image(path).shape[:2] == (32, 32)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert dp.load_image(path).shape[:2] == (32, 32)


# -- fit and paint arguments ------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    target = dp.load_image(dp.demo_image_path(), size=8)
    return dp.Circles.init(3, key=jax.random.key(0), target=target), target


def test_fit_int_arguments(small, tmp_path):
    model, target = small
    with pytest.raises(TypeError, match="`steps`"):
        dp.fit(model, target, steps=True)
    with pytest.raises(ValueError, match="`steps`.*int32"):
        dp.fit(model, target, steps=2**31)
    result = dp.fit(model, target, steps=np.int64(2), batch=np.float32(0.5), key=jax.random.key(0))
    assert result.losses.shape == (2,)
    assert dp.fit(model, target, steps=2, batch=np.int64(10), key=jax.random.key(0))
    with pytest.raises(TypeError, match="`batch`"):
        dp.fit(model, target, steps=2, batch=np.bool_(True), key=jax.random.key(0))


def test_checkpoint_folder_refused_before_the_fit(small, tmp_path, monkeypatch):
    model, target = small
    from diffprims._fit import _fit as fit_module

    def no_dispatch(*args, **kwargs):
        raise AssertionError("dispatched")

    monkeypatch.setattr(fit_module, "run_steps", no_dispatch)
    with pytest.raises(ValueError, match="folder"):
        dp.fit(model, target, steps=2, checkpoint=tmp_path)


def test_resume_refuses_devices_and_damaged_headers(small, tmp_path):
    model, target = small
    if os.path.exists("/dev/zero"):
        with pytest.raises(dp.CheckpointError, match="not a regular file"):
            dp.fit(model, target, steps=2, resume="/dev/zero")
    path = tmp_path / "c.ckpt"
    dp.fit(model, target, steps=2, checkpoint=path)
    line, checksum, payload = path.read_bytes().split(b"\n", 2)
    header = json.loads(line)
    header["step"] = "two"  # a changed header no longer matches the SHA-256
    path.write_bytes(json.dumps(header).encode() + b"\n" + checksum + b"\n" + payload)
    with pytest.raises(dp.CheckpointError, match="SHA-256"):
        dp.fit(model, target, steps=2, resume=path)
    assert issubclass(dp.CheckpointError, dp.LoadError)


def test_resume_with_more_steps_without_snapshots(small, tmp_path):
    model, target = small
    path = tmp_path / "c.ckpt"
    dp.fit(model, target, steps=4, snapshots=3, checkpoint=path, steps_per_dispatch=2)
    with pytest.raises(dp.CheckpointError, match="snapshots=None"):
        dp.fit(model, target, steps=8, snapshots=3, resume=path)
    longer = dp.fit(model, target, steps=8, resume=path, steps_per_dispatch=2)
    straight = dp.fit(model, target, steps=8, steps_per_dispatch=2)
    np.testing.assert_array_equal(longer.losses, straight.losses)


def test_no_sigint_handler_when_sigint_is_ignored(small):
    from diffprims._fit._driver import ctrl_c_flag

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with ctrl_c_flag(True):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    with ctrl_c_flag(True) as flag:
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)
        flag["busy"] = True  # a second Ctrl-C while a dispatch runs: no raise inside JAX
        handler(signal.SIGINT, None)
        handler(signal.SIGINT, None)
        assert flag["stop"]
        flag["busy"] = False
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)


PAINT_BAD = {
    "seconds-inf": dict(seconds=float("inf")),
    "grow-negative": dict(grow=-1.0),
    "lr-nan": dict(lr=float("nan")),
    "anneal-nan": dict(anneal=float("nan")),
    "coarse-inf": dict(coarse=float("inf")),
    "prune-str": dict(prune="0.1"),
    "seconds-bool": dict(seconds=True),
    "seconds-1e308": dict(seconds=1e308),  # past float32: it overflowed the plan, 10 s on
    "restarts-million": dict(restarts=10**6),  # a thread each: out of memory, minutes on
    "restarts-65": dict(restarts=65),
}


@pytest.mark.parametrize("kwargs", PAINT_BAD.values(), ids=PAINT_BAD.keys())
def test_paint_arguments(small, kwargs):
    _, target = small
    with pytest.raises((ValueError, TypeError)) as info:
        dp.paint(target, 3, key=jax.random.key(0), steps=2, **kwargs)
    assert f"`{next(iter(kwargs))}`" in str(info.value)


def test_paint_loss_checked_and_divergence_raised(small):
    _, target = small
    with pytest.raises(ValueError, match="scalar"):
        dp.paint(target, 3, key=jax.random.key(0), steps=2, loss=lambda p, t: (p - t) ** 2)

    def nan_loss(pred, target):
        return jnp.mean((pred - target) ** 2) * jnp.nan

    with pytest.raises(dp.FitDivergedError) as info:
        dp.paint(target, 3, key=jax.random.key(0), steps=4, loss=nan_loss)
    leaves = jax.tree.leaves(info.value.result.model)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in leaves)


def test_paint_refuses_a_colour_solve_too_large_before_running(small, monkeypatch):
    _, target = small
    from diffprims._paint import _rounds

    monkeypatch.setattr(_rounds.Painting, "run_round", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(ValueError, match="solve_colours=False"):
        dp.paint(target, 100_000, key=jax.random.key(0), steps=1)


def test_chunked_colour_solve_matches_one_chunk(small, monkeypatch):
    model, target = small
    from diffprims._paint import _solve

    weights = jax.random.uniform(jax.random.key(1), target.shape[:2])
    whole, error = _solve.solve_colours(model, target, weights)
    monkeypatch.setattr(_solve, "CHUNK_BYTES", 16 * 4 * 5)  # 5-pixel chunks, one padded
    chunked, chunked_error = _solve.solve_colours(model, target, weights)
    np.testing.assert_allclose(chunked.colours, whole.colours, atol=1e-4)
    np.testing.assert_allclose(chunked_error, error, rtol=1e-4)


@pytest.mark.parametrize("restarts", [1, 2])
def test_paint_divergence_sets_the_flag(small, restarts):
    _, target = small
    rates = dict(lr=1e9, lr_geometry=1e9, lr_colour=1e9)
    with pytest.raises(dp.FitDivergedError) as info:
        dp.paint(target, 4, key=jax.random.key(0), steps=40, restarts=restarts, **rates)
    assert info.value.result.diverged is True
    assert dp.paint(target, 4, key=jax.random.key(0), steps=4).diverged is False


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_refused_before_it_is_opened(small, tmp_path):
    # Opening a pipe for reading waits for a writer: each of these hung for ever.
    model, target = small
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(dp.LoadError, match="not a regular file"):
        dp.load(pipe)
    with pytest.raises(dp.CheckpointError, match="not a regular file"):
        dp.fit(model, target, steps=2, resume=pipe)
    with pytest.raises(ValueError, match="a device, pipe or socket"):
        dp.load_image(pipe)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match="a device, pipe or socket"):
            dp.load_image("/dev/zero")


@pytest.mark.parametrize(
    "softness", [10**400, float("inf"), -1, 0], ids=["int-1e400", "inf", "negative", "zero"]
)
def test_softness_out_of_range_is_a_value_error_everywhere(softness):
    # An int too large for a float raised OverflowError from inside the builders.
    key = jax.random.key(0)
    model = dp.Circles.init(2, key=key)
    values = (model.centres, model.radii, model.colours, model.opacities)
    for build in (
        lambda: dp.Circles.init(2, key=key, softness=softness),
        lambda: dp.Circles.from_values(*values, softness=softness),
        lambda: dp.Ellipses.init(2, key=key, softness=softness),
        lambda: dp.Circles(
            raw_centres=model.raw_centres, raw_radii=model.raw_radii,
            raw_colours=model.raw_colours, raw_opacities=model.raw_opacities,
            raw_background=model.raw_background, softness=softness,
        ),
    ):  # fmt: skip
        with pytest.raises(ValueError, match="`softness`.* must be a finite float > 0"):
            build()


def test_a_traced_softness_says_it_is_static_and_where_a_traced_one_goes():
    model = dp.Circles.init(2, key=jax.random.key(0))
    values = (model.centres, model.radii, model.colours, model.opacities)
    with pytest.raises(TypeError, match=r"static.*render_image\(shape, softness=\.\.\.\)"):
        jax.jit(lambda s: dp.Circles.from_values(*values, softness=s).render_image((8, 8)))(1.0)
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda s: dp.Circles.init(2, key=jax.random.key(0), softness=s).radii)(1.0)
    # The documented way: a traced edge width at render time.
    widths = jax.vmap(lambda s: model.render_image((8, 8), softness=s))(jnp.array([0.5, 2.0]))
    assert widths.shape == (2, 8, 8, 3) and bool(jnp.all(jnp.isfinite(widths)))


def test_sizes_no_device_holds_say_what_needed_the_memory():
    # They were XLA's bare "RESOURCE_EXHAUSTED: Out of memory allocating ... bytes".
    model = dp.Circles.init(3, key=jax.random.key(0))
    with pytest.raises(MemoryError, match=r"Rendering a 1000000 x 1000000 image needs more"):
        model.render_image((10**6, 10**6))
    with pytest.raises(ValueError, match=r"Making 1000000000 shapes of 10000 channels.*fewer"):
        dp.Circles.init(10**9, key=jax.random.key(0), channels=10**4)
    # Other errors pass as they are.
    from diffprims._errors import memory_for

    with pytest.raises(RuntimeError, match="other"), memory_for("x", "y"):
        raise RuntimeError("other")


def test_fit_and_paint_say_what_needed_the_memory(monkeypatch):
    # XLA's bare error, as a device that runs out of memory mid-fit raises it.
    def exhausted(*args, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 3221225472 bytes.")

    target = jnp.full((12, 16, 3), 0.5)
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)
    monkeypatch.setattr("diffprims._fit._fit.Driver.dispatch", exhausted)
    with pytest.raises(MemoryError, match=r"Fitting this Circles to a 12 x 16 target.*3 GiB"):
        dp.fit(model, target, steps=2)
    monkeypatch.setattr("diffprims._paint._paint._paint_once", exhausted)
    with pytest.raises(MemoryError, match=r"Painting 4 shapes on 12 x 16 pixels.*fewer shapes"):
        dp.paint(target, 4, key=jax.random.key(0), steps=10)


def test_load_image_refuses_an_output_larger_than_pillow_opens(tmp_path):
    # A 1-pixel PNG at size=2**16 (within `size`'s bound) was 51 GB of float32: killed.
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "one.png")
    Image.fromarray(np.zeros((2, 600, 3), np.uint8)).save(tmp_path / "wide.png")
    for size in (2**16, (20000, 20000)):
        with pytest.raises(ValueError, match=r"`size` asks for a .* at most \d+ pixels"):
            dp.load_image(tmp_path / "one.png", size=size)
    # The bound is on what comes out: a panorama 2**16 wide is 14 million pixels.
    assert dp.load_image(tmp_path / "wide.png", size=2**16).shape == (218, 65400, 3)


def test_snapshots_have_a_memory_plan(monkeypatch):
    # 10**9 was killed at 24 GB building the list of steps; 10**6 ran 100x slower.
    model = dp.Circles.init(4, key=jax.random.key(0))
    target = jnp.full((8, 8, 3), 0.5)
    with pytest.raises(ValueError, match=r"`snapshots` must be an int <= 65536 \(each is a copy"):
        dp.fit(model, target, steps=10**9, key=jax.random.key(0), snapshots=10**9)
    from diffprims._fit import _fit as fit_module

    copy = 4 * 9 * 4  # bytes of 4 circles' parameters (centres, radii, colours, opacities)
    copy += 3 * 4  # the background
    monkeypatch.setattr(fit_module, "SNAPSHOT_BYTES", 100 * copy)
    with pytest.raises(ValueError, match=r"keeps 128 copies .* ask for at most 64 snapshots"):
        dp.fit(model, target, steps=200, key=jax.random.key(0), snapshots=100)
    result = dp.fit(model, target, steps=200, key=jax.random.key(0), snapshots=64)
    assert len(result.snapshots) == 64
