"""The command line on what a review found: bad input refused before the fit, in one
line (status 2, no warning, no traceback), and outputs that say what they are."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float
from PIL import Image

import diffprims as dp
from diffprims._cli import main
from diffprims._cli._outputs import plan

FILTER_FILES = {"kernel.png", "vectors.json", "vectors.npz", "summary.json"}
LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


@pytest.fixture(autouse=True)
def _in_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _run(argv, capsys):
    """(exit status, stderr) of `diffprims *argv`; a warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exit:  # argparse's errors
            status = exit.code
    return status, capsys.readouterr().err


def _refused(argv, capsys, *words):
    status, err = _run(argv, capsys)
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("diffprims"), err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_an_edge_detector_beyond_float32_is_refused_before_the_fit(capsys, scale):
    # Written at its own scale (its sum is 0), 1e300 times the bank overflowed float32
    # after the fit: NumPy's warning, then exit 1 with the library's advice.
    np.save("k.npy", scale * LAPLACIAN)
    argv = ["filter", "--kernel", "k.npy", "--steps", 2, "-q"]
    _refused(argv, capsys, f"peaks at {4 * scale:.3g}", "rescale the kernel", "from 1e-30")
    assert not Path("out").exists()


def test_a_blur_of_huge_values_is_normalised_as_before(capsys):
    # Its vectors are normalised: its scale is never written, so it is not refused.
    np.save("k.npy", np.full((3, 3), 1e300))
    status, err = _run(["filter", "--kernel", "k.npy", "--steps", 2, "-q"], capsys)
    assert status == 0, err
    with np.load("out/vectors.npz") as npz:
        kernel = np.einsum("ri,rj->ij", npz["vertical"], npz["horizontal"])
    np.testing.assert_allclose(kernel, np.full((3, 3), 1 / 9), rtol=1e-4)


@pytest.mark.parametrize("sigma", ["1e300", "1e40", "2e6", "inf", "nan", "0", "-1", "x"])
def test_a_gaussian_sigma_out_of_range_is_refused(capsys, sigma):
    # 1e300 overflowed float32 (NumPy's warning) and was fitted as a box.
    argv = ["filter", "--kernel", f"gaussian:9:{sigma}", "--steps", 2, "-q"]
    _refused(argv, capsys, "SIGMA must be a number of pixels > 0 and at most 1000000")


@pytest.mark.parametrize("spec", ["my.results/", "run.v2/", "x.png/"])
def test_an_output_ending_in_a_slash_is_a_folder(spec):
    # Refused as "unknown file type '.results'" (and x.png/ was one file).
    files = plan([spec], {"a.png": "png", "b.json": "json"}, force=False)
    assert files == {Path(spec) / "a.png": "png", Path(spec) / "b.json": "json"}
    assert not Path(spec).exists()  # nothing touched yet


def test_filter_writes_into_a_dotted_folder_ending_in_a_slash(capsys):
    argv = ["filter", "--kernel", "box:3", "--steps", 2, "-q", "-o", "run.v2/"]
    status, err = _run(argv, capsys)
    assert status == 0, err
    assert {p.name for p in Path("run.v2").iterdir()} >= {"vectors.npz", "summary.json"}


@pytest.mark.parametrize("command", [["paint"], ["filter"]])
def test_a_dotted_output_says_to_end_it_with_a_slash(capsys, command):
    _refused([*command, "-o", "run.v2", "--steps", 2], capsys, "end it with '/'", "run.v2/")


@pytest.mark.parametrize("command", [["paint"], ["filter"]])
def test_an_empty_output_is_refused(capsys, command):
    # `-o ""` wrote every file into the current folder.
    _refused([*command, "-o", "", "--steps", 2], capsys, "-o '' is empty", "-o .")
    assert list(Path().iterdir()) == []


def _image(path):
    pixels = (np.random.default_rng(0).random((10, 12, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return Path(path).read_bytes()


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("output", ["in.png", "./in.png", "link.png", "hard.png"])
def test_paint_never_writes_over_its_input_image(capsys, force, output):
    # With --force, `paint in.png -o in.png` replaced the photo with the painting.
    data = _image("in.png")
    Path("link.png").symlink_to("in.png")
    os.link("in.png", "hard.png")
    argv = ["paint", "in.png", "-o", output, "-o", "out.svg", "-n", 2, "--steps", 2, *force]
    _refused(argv, capsys, "is the input file 'in.png' (IMAGE)", "choose another output")
    assert Path("in.png").read_bytes() == data and not Path("out.svg").exists()


@pytest.mark.parametrize("option,name", [("--apply", "blurred.png"), ("--kernel", "kernel.png")])
def test_filter_never_writes_over_an_input_file(capsys, option, name):
    Path("out").mkdir()
    data = _image(f"out/{name}")
    argv = ["filter", option, f"out/{name}", "-o", "out", "--force", "--steps", 2]
    _refused(argv, capsys, f"is the input file 'out/{name}' ({option})")
    assert Path(f"out/{name}").read_bytes() == data


def test_a_second_ctrl_c_stops_the_writing(monkeypatch, capsys):
    # The Ctrl-C that stopped the fit was not counted: the second only printed "press
    # Ctrl-C again to stop" and the writing went on; a third stopped it.
    import diffprims as dp
    import diffprims._fit._driver as driver_module

    dispatch, save_image = driver_module.Driver.dispatch, dp.save_image
    calls = [0]

    def first_ctrl_c(self, *args, **kwargs):  # in the fit
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return dispatch(self, *args, **kwargs)

    def second_ctrl_c(*args, **kwargs):  # while kernel.png is written
        signal.raise_signal(signal.SIGINT)
        return save_image(*args, **kwargs)

    monkeypatch.setattr(driver_module.Driver, "dispatch", first_ctrl_c)
    monkeypatch.setattr(dp, "save_image", second_ctrl_c)
    argv = ["filter", "--kernel", "disk:5", "--rank", 1, "--steps", 10**6, "-q"]
    status, err = _run(argv, capsys)
    assert status == 130, err
    assert "Ctrl-C again stops the writing" in err and "press Ctrl-C again" not in err
    assert err.strip().endswith("diffprims filter: interrupted")
    assert not Path("out").exists()  # stopped: no file written, the folder made removed


def test_a_first_ctrl_c_while_writing_a_finished_fit_lets_it_finish(monkeypatch, capsys):
    import diffprims as dp

    save_image = dp.save_image

    def ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return save_image(*args, **kwargs)

    monkeypatch.setattr(dp, "save_image", ctrl_c)
    status, err = _run(["filter", "--kernel", "disk:5", "--rank", 1, "--steps", 2], capsys)
    # The results are whole; the status says the run was stopped (it was 0, and a
    # script could not tell; SIGTERM at that moment already gave 143).
    assert status == 130, err
    assert "writing the results; Ctrl-C again stops the writing" in err
    assert Path("out/kernel.png").exists()
    monkeypatch.setattr(dp, "save_image", save_image)
    status, err = _run(["filter", "--kernel", "disk:5", "--rank", 1, "--steps", 2, "-o", "b"],
                       capsys)  # fmt: skip
    assert status == 0, err  # the next run, not pressed, is not taken for one


@pytest.mark.parametrize(
    "argv,words",
    [
        # argparse's top parser said it, pointing at `diffprims --help`.
        (
            ["paint", "-dash.png"],
            [
                "diffprims paint: error: unrecognized arguments: -dash.png",
                "write ./-dash.png",
                "-- -dash.png",
                "(see `diffprims paint --help`)",
            ],
        ),  # fmt: skip
        (
            ["filter", "--frob"],
            [
                "diffprims filter: error: unrecognized arguments: --frob (see "
                "`diffprims filter --help`)"
            ],
        ),  # fmt: skip
        # '' is the current folder: "a suffix-less file".
        (["filter", "--kernel", ""], ["--kernel '' is empty: give NAME:SIZE[:ARG]"]),
        # A folder was "a suffix-less file" (one named `my.kernels` "a .kernels file").
        (["filter", "--kernel", "."], ["--kernel '.' is a folder; kernel files are"]),
        (["filter", "--kernel", "my.kernels"], ["--kernel 'my.kernels' is a folder"]),
        # NumPy's advice: "use `usecols` to select a subset".
        (
            ["filter", "--kernel", "ragged.txt"],
            ["every row must have the same number of values"],
        ),  # fmt: skip
        # -0.1 said "a number > 0", 2 said "in (0, 1]".
        (
            ["paint", "--fit", "--opacity", "-0.1"],
            ["--opacity: expected a number in (0, 1], got -0.1"],
        ),  # fmt: skip
        (["paint", "--fit", "--opacity", "2"], ["--opacity: expected a number in (0, 1], got 2"]),
        (
            ["paint", "--fit", "--batch", "-0.1"],
            ["--batch: expected a fraction of the pixels in (0, 1] or 'all', got -0.1"],
        ),  # fmt: skip
        # Which option named the missing image?
        (["filter", "--apply", "none.png"], ["error: --apply: No image at 'none.png'"]),
        (["paint", "none.png"], ["error: IMAGE: No image at 'none.png'"]),
        (["paint", "-"], ["No image at '-' (for standard input, give /dev/stdin)"]),
    ],
)
def test_messages_say_what_is_wrong(capsys, argv, words):
    Path("ragged.txt").write_text("1 2 3\n4 5\n")
    Path("my.kernels").mkdir(exist_ok=True)
    assert "usecols" not in _refused(argv, capsys, *words)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="a /proc file system")
def test_an_output_folder_that_takes_no_files_is_said_so(capsys):
    # "cannot write files in '/proc' (No such file or directory)": the errno was of the
    # lock file it made, and `paint` printed its header line first.
    err = _refused(["paint", "-o", "/proc/x.png"], capsys, "cannot create files in '/proc' "
                   "(creating one failed: No such file or directory)")  # fmt: skip
    assert err.startswith("diffprims paint: error: -o:")
    _refused(["filter", "-o", "/proc/x/y"], capsys, "cannot make the folder '/proc/x/y'")


@pytest.mark.parametrize("n,shapes", [(1, "1 circle"), (2, "2 circles")])
def test_paint_counts_its_shapes_in_words(capsys, n, shapes):
    # "with 1 circles", in the header and the last line.
    _image("in.png")
    argv = ["paint", "in.png", "--fit", "-n", n, "--steps", 2, "--size", 8, "-o", "a.png"]
    status, err = _run(argv, capsys)
    assert status == 0, err
    assert f"with {shapes}, 2 steps" in err and f"with {shapes} after 2 steps" in err


def test_paint_help_names_the_image_formats_it_reads(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["paint", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert exit.value.code == 0 and "PNG or JPEG" not in help_text
    assert "PNG, JPEG, WebP, TIFF, BMP, GIF or any other Pillow reads" in help_text


def test_filter_summary_lists_its_files_as_paths_as_paint_does(capsys):
    # filter listed bare names ("kernel.png"), paint paths ("out/result.png").
    status, err = _run(["filter", "--kernel", "box:3", "--steps", 2, "-o", "f"], capsys)
    assert status == 0, err
    files = json.loads(Path("f/summary.json").read_text())["files"]
    assert files == sorted(str(Path("f", name)) for name in FILTER_FILES)
    assert f"wrote {', '.join(sorted(FILTER_FILES))} to f" in err


class _Tinted(dp.AbstractShapes):
    """Discs with a shared offset, a tint each (a colour role), a shared gain, and a
    field declared with no role."""

    raw_centres: Float[Array, "N 2"] = dp.parameter(dp.roles.POSITION)
    raw_offset: Float[Array, " D"] = dp.parameter(dp.roles.POSITION, per_shape=False)
    raw_tints: Float[Array, "N 3"] = dp.parameter(dp.roles.COLOUR)
    raw_gain: Float[Array, ""] = dp.parameter(dp.roles.SIZE, per_shape=False)
    wobble: Float[Array, " N"]

    def coverage(self, points, edge_width):
        centres = dp.roles.POSITION.value(self.raw_centres)
        distance = jnp.linalg.norm(points[None] - centres[:, None], axis=-1)
        return dp.soft_edge(distance - 0.1, edge_width)

    def bounds(self):
        centres = dp.roles.POSITION.value(self.raw_centres)
        return jnp.concatenate([centres - 0.1, centres + 0.1], axis=-1)

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        raise NotImplementedError

    def svg_geometry(self, edge_width):
        raise NotImplementedError


def test_shapes_json_writes_each_field_as_declared():
    # Per shape was guessed from the length: the shared offset (2,) with N = 2 was
    # written as if one value per shape, the shared gain was lost, the tints (a colour
    # role) were dropped, and `wobble` (no role) was written raw as if a value.
    from diffprims._cli._pictures import shapes_json

    roles = dp.roles
    model = _Tinted(
        raw_colours=roles.COLOUR.raw(jnp.full((2, 3), 0.5)),
        raw_opacities=roles.OPACITY.raw(jnp.full((2,), 0.8)),
        raw_background=roles.COLOUR.raw(jnp.ones(3)),
        softness=1.0,
        raw_centres=roles.POSITION.raw(jnp.array([[0.25, 0.5], [0.75, 0.5]])),
        raw_offset=roles.POSITION.raw(jnp.array([0.1, 0.2])),
        raw_tints=roles.COLOUR.raw(jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])),
        raw_gain=roles.SIZE.raw(jnp.asarray(0.5)),
        wobble=jnp.array([3.0, -4.0]),
    )
    data = json.loads(json.dumps(shapes_json(model, (10, 20))))
    assert data["shared"] == {"offset": [1.0, 2.0], "gain": 5.0}  # pixels of 10 px high
    first, second = data["shapes"]
    assert set(first) == {"centres", "tints", "raw_wobble", "colour", "opacity"}
    assert first["centres"] == [2.5, 5.0] and second["centres"] == [7.5, 5.0]
    assert (first["tints"], second["tints"]) == ("#ff0000", "#0000ff")
    assert (first["raw_wobble"], second["raw_wobble"]) == (3.0, -4.0)
    assert first["colour"] == "#808080" and first["opacity"] == pytest.approx(0.8, abs=1e-3)
    assert data["background"] == "#ffffff"


def test_a_ctrl_c_swallowed_while_writing_still_stops_the_writing(tmp_path):
    # The second Ctrl-C's KeyboardInterrupt can land in a garbage-collection callback,
    # where Python prints "Exception ignored" and runs on: the writing then finished.
    from diffprims._cli._outputs import write_all
    from diffprims._cli._signals import finish_writing

    def write(path, kind):
        if path.name == "a.png":
            try:  # the press lands here and is swallowed, as in a GC callback
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(10**6):  # let Python run the handler
                    pass
            except KeyboardInterrupt:
                pass
        path.write_bytes(b"x")

    files = {tmp_path / "a.png": "png", tmp_path / "b.json": "json"}
    with pytest.raises(KeyboardInterrupt), finish_writing(interrupted=True):
        write_all(files, write)
    assert not any(p.exists() for p in files)
    with finish_writing(interrupted=True):  # the next writing is not stopped by it
        write_all(files, lambda path, kind: path.write_bytes(b"x"))
    assert all(p.exists() for p in files)


class _ClosedPipe:
    """stderr whose reader left: every write raises, as `2>&1 | head -1` does."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self):
        return False


@pytest.mark.parametrize("stderr", [None, _ClosedPipe()], ids=["closed", "broken-pipe"])
def test_a_stderr_nobody_reads_does_not_stop_the_run(monkeypatch, stderr):
    # The first status line or progress update raised (BrokenPipeError; with `2>&-`,
    # tqdm's AttributeError on None) and the run ended with status 1, nothing written.
    monkeypatch.setattr("sys.stderr", stderr)
    status = main(["filter", "--kernel", "disk:5", "--rank", "1", "--steps", "20", "-o", "f"])
    assert status == 0 and {p.name for p in Path("f").iterdir()} == FILTER_FILES


@pytest.mark.parametrize("stderr", [None, _ClosedPipe()], ids=["closed", "broken-pipe"])
def test_a_fit_with_a_progress_bar_survives_a_stderr_nobody_reads(monkeypatch, stderr):
    # pythonw and daemons run with `sys.stderr = None`; the bar is only a view.
    target = jnp.full((8, 8, 3), 0.5)
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)
    monkeypatch.setattr("sys.stderr", stderr)
    result = dp.fit(model, target, steps=6, steps_per_dispatch=2, progress=True)
    assert result.losses.shape == (6,)


class _Stars(dp.Circles):
    points: int = eqx.field(static=True, default=5, kw_only=True)
    label: object = eqx.field(static=True, default=(1, 2), kw_only=True)


def test_shapes_json_writes_the_types_own_static_fields():
    # A user's 6-pointed star was written as a 5-pointed one: static fields were lost.
    from diffprims._cli._pictures import shapes_json

    model = dataclasses.replace(_Stars.init(2, key=jax.random.key(0)), points=6)
    data = json.loads(json.dumps(shapes_json(model, (10, 10))))
    assert data["options"] == {"points": 6, "label": "(1, 2)"}
    circles = shapes_json(dp.Circles.init(2, key=jax.random.key(0)), (10, 10))
    assert circles["options"] == {}
