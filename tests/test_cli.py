"""The `diffprims` command line, end to end on tiny images.

Every test runs in its own empty working folder (the default `-o out` never meets the
results of an earlier run, such as the README's quick start)."""

import argparse
import inspect
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
import resvg_py
from PIL import Image

import diffprims as dp
import diffprims._fit._driver as driver_module
from diffprims._cli import main
from diffprims._cli._filter_kernel import read_kernel


@pytest.fixture(autouse=True)
def _in_empty_folder(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def run(argv, capsys):
    """(exit status, stderr) of `diffprims *argv`, run in this process."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse: --help, usage errors
        status = exit.code
    return status, capsys.readouterr().err


def write_picture(path, mode="RGB", size=(32, 24)):
    """A small picture with structure (two blobs on a gradient) in any Pillow mode."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([x, y, 0.5 + 0 * x], axis=-1)
    rgb[(x - 0.3) ** 2 + (y - 0.3) ** 2 < 0.03] = [0.9, 0.2, 0.1]
    rgb[(x - 0.7) ** 2 + (y - 0.5) ** 2 < 0.02] = [0.1, 0.3, 0.9]
    picture = Image.fromarray((rgb * 255).astype(np.uint8)).convert(mode)
    picture.save(path)
    return path


FAST = ["-n", 6, "--steps", 30, "--size", 16, "-q"]
FOLDER = {"result.png", "result.svg", "progress.gif", "shapes.json", "model.eqx", "summary.json"}
FILTER_FOLDER = {"kernel.png", "vectors.json", "vectors.npz", "summary.json"}


def svg_psnr(svg_text, picture):
    """PSNR of the SVG drawn by an independent renderer against `picture`."""
    png = bytes(resvg_py.svg_to_bytes(svg_string=svg_text))
    drawn = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255
    return float(dp.psnr(drawn, picture))


@pytest.mark.parametrize("mode,suffix", [("RGB", ".png"), ("RGBA", ".png"), ("L", ".jpg")])
def test_paint_end_to_end(tmp_path, capsys, mode, suffix):
    image = write_picture(tmp_path / f"in{suffix}", mode)
    status, err = run(["paint", image, *FAST], capsys)  # -o out, in the working folder
    assert status == 0, err
    assert err == ""  # --quiet
    out = tmp_path / "work" / "out"
    assert {p.name for p in out.iterdir()} == FOLDER
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "paint" and summary["steps"] == 30
    assert summary["num_shapes"] == 6 and summary["seconds"] > 0
    # One PSNR: at the fit size (16 px on the longer side); the render size is stated.
    model = dp.load(out / "model.eqx")
    assert isinstance(model, dp.Circles) and model.num_shapes == 6
    target = dp.load_image(image, size=16)
    fitted = float(dp.psnr(model.render_image(target.shape[:2]), target))
    assert summary["psnr"] == pytest.approx(fitted, abs=1e-3)
    assert summary["fit_size"] == "16x12" and summary["render_size"] == "32x24"
    result = dp.load_image(out / "result.png")
    assert result.shape == (24, 32, 3)  # the input's full resolution
    at_render = float(dp.psnr(result, dp.load_image(image)))
    assert summary["psnr_at_render_size"] == pytest.approx(at_render, abs=0.1)  # 8-bit PNG
    assert svg_psnr((out / "result.svg").read_text(), result) >= 35.0
    with Image.open(out / "progress.gif") as gif:
        assert gif.n_frames >= 2  # one per round, then the final picture
    shapes = json.loads((out / "shapes.json").read_text())
    assert shapes["type"] == "Circles" and len(shapes["shapes"]) == 6


def test_outputs_named_by_file(capsys):
    image = write_picture("in.png")
    argv = ["paint", image, *FAST, "-o", "d/a.svg", "-o", "d/a.png", "-o", "d/a.json"]
    status, err = run(argv, capsys)
    assert status == 0, err
    assert sorted(os.listdir("d")) == ["a.json", "a.png", "a.svg"]  # exactly those
    shapes = json.loads(Path("d/a.json").read_text())
    assert len(shapes["shapes"]) == 6 and (shapes["width"], shapes["height"]) == (16, 12)
    first = shapes["shapes"][0]
    assert set(first) == {"centres", "radii", "colour", "opacity"}
    assert first["colour"].startswith("#") and 0 <= first["opacity"] <= 1
    assert dp.load_image("d/a.png").shape == (24, 32, 3)
    # A second run does not overwrite them without --force.
    before = {name: Path("d", name).read_bytes() for name in os.listdir("d")}
    status, err = run([*argv, "--seed", 1], capsys)
    assert status == 2 and "--force" in err and "a.svg" in err
    assert {name: Path("d", name).read_bytes() for name in os.listdir("d")} == before
    assert run([*argv, "--seed", 1, "--force"], capsys)[0] == 0
    assert Path("d/a.png").read_bytes() != before["a.png"]


def test_paint_restarts_keep_the_best_of_several(capsys):
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST, "--restarts", 2, "-o", "two"], capsys)
    assert status == 0, err
    summary = json.loads(Path("two/summary.json").read_text())
    assert summary["settings"]["restarts"] == 2 and summary["num_shapes"] == 6
    # The same seed paints the same picture (each restart's key comes from it).
    assert run(["paint", image, *FAST, "--restarts", 2, "-o", "again"], capsys)[0] == 0
    assert Path("two/result.png").read_bytes() == Path("again/result.png").read_bytes()


def test_an_output_folder_is_not_clobbered(capsys):
    image = write_picture("in.png")
    assert run(["paint", image, *FAST, "--steps", 2], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in Path("out").iterdir()}
    status, err = run(["paint", image, *FAST, "--steps", 3, "--seed", 1], capsys)
    assert status == 2 and "--force" in err and "result.png" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in Path("out").iterdir()} == before  # untouched
    assert run(["paint", image, *FAST, "--steps", 3, "--seed", 1, "--force"], capsys)[0] == 0
    assert json.loads(Path("out/summary.json").read_text())["steps"] == 3
    # A folder without our results is fine, and what it holds stays.
    Path("other").mkdir()
    Path("other/notes.txt").write_text("keep me")
    assert run(["paint", image, *FAST, "--steps", 2, "-o", "other"], capsys)[0] == 0
    assert Path("other/notes.txt").read_text() == "keep me"
    assert {p.name for p in Path("other").iterdir()} == FOLDER | {"notes.txt"}


def test_plain_fit_mode_and_shapes_animation(capsys):
    image = write_picture("in.png")
    argv = ["paint", image, *FAST, "--fit", "--frames", 4, "--render-size", 64]
    status, err = run([*argv, "--shape", "Rectangles", "-o", "a.gif", "-o", "a.eqx"], capsys)
    assert status == 0, err
    with Image.open("a.gif") as gif:
        assert gif.n_frames == 4  # the snapshots, the last one the final picture
    assert isinstance(dp.load("a.eqx"), dp.Rectangles)
    status, err = run(["paint", image, *FAST, "--gif", "shapes", "--frames", 5, "-o", "b.gif"],
                      capsys)  # fmt: skip
    assert status == 0, err
    with Image.open("b.gif") as gif:
        assert gif.n_frames == 5  # 0, 2, 3, 4 and 6 of the 6 shapes
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"), np.float32)
    assert first.std(axis=(0, 1)).max() < 1.0  # no shape yet: the background alone


def test_fixed_background_and_opacity(capsys):
    image = write_picture("in.png")
    argv = ["paint", image, *FAST, "--fit", "--background", "#ff8000", "--opacity", 0.5]
    status, err = run([*argv, "-o", "m.eqx", "-o", "m.json"], capsys)
    assert status == 0, err
    model = dp.load("m.eqx")
    np.testing.assert_allclose(model.background, [1.0, 128 / 255, 0.0], atol=1e-5)
    np.testing.assert_allclose(model.opacities, 0.5, atol=1e-5)  # not trained
    assert json.loads(Path("m.json").read_text())["background"] == "#ff8000"


def test_fixed_opacity_one_is_opaque(capsys):
    # The parser takes (0, 1]; `init` stores a logit and refused 1 after the run began.
    image = write_picture("in.png")
    argv = ["paint", image, *FAST, "--fit", "--opacity", 1, "-o", "m.eqx"]
    status, err = run(argv, capsys)
    assert status == 0, err
    np.testing.assert_allclose(dp.load("m.eqx").opacities, 1.0, atol=1e-5)


def test_hard_svg_edges_are_plain_fills(capsys):
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST, "--svg-edges", "hard", "-o", "a.svg"], capsys)
    assert status == 0, err
    text = Path("a.svg").read_text()
    assert "Gradient" not in text and "filter" not in text


def test_svg_edges_are_soft_by_default_at_any_softness(capsys):
    # `auto` drew hard edges under --softness 0.5 (when soft edges were a blur): 120
    # triangles at --softness 0.3 on a 60 x 150 photo, 31.2 dB from result.png.
    image = write_picture("in.png")
    args = ["paint", image, *FAST, "--shape", "triangles", "-n", "4", "--softness", "0.3"]
    status, err = run([*args, "-o", "a.svg", "-o", "a.png"], capsys)
    assert status == 0, err
    text = Path("a.svg").read_text()
    assert text.count("<polygon") > 4 * 8  # each triangle grown by a range of distances
    png = bytes(resvg_py.svg_to_bytes(svg_string=text))
    drawn = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255
    assert float(dp.psnr(drawn, dp.load_image("a.png"))) > 35.0


def test_a_painting_renders_in_place_at_the_inputs_own_size(capsys):
    # Fitted at 64 x 10 (the longer side 64 rounded the height of 150 x 1000 to 10, an
    # aspect of 6.4 for 6.67), the painting drew its right-hand square 30 px off at
    # 1000 px; the fit size now keeps the aspect ratio (60 x 9).
    pixels = np.full((150, 1000, 3), 255, np.uint8)
    pixels[30:120, 860:950] = (255, 0, 0)
    Image.fromarray(pixels).save("pano.png")
    status, err = run(["paint", "pano.png", "-n", 4, "--steps", 150, "--size", 64, "-q"], capsys)
    assert status == 0, err
    assert json.loads(Path("out/summary.json").read_text())["fit_size"] == "60x9"
    red = np.asarray(Image.open("out/result.png").convert("RGB")).astype(int)
    red = (red[..., 0] > 150) & (red[..., 1] < 100) & (red[..., 2] < 100)
    columns = np.nonzero(red.any(axis=0))[0]
    assert abs(columns.min() - 860) <= 12 and abs(columns.max() - 949) <= 12


def test_paint_reports_progress_and_one_psnr(capsys):
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST[:-1], "--render-size", 64], capsys)
    assert status == 0, err
    assert "30/30" in err
    assert "the PSNR shown is at 16x12" in err  # the header
    summary = json.loads(Path("out/summary.json").read_text())
    assert f"PSNR {summary['psnr']:.2f} dB at 16x12" in err
    assert f"{summary['psnr_at_render_size']:.2f} dB at 64x48" in err


@pytest.mark.parametrize("quiet", [False, True])
def test_the_default_render_size_keeps_within_the_render_size_cap(capsys, monkeypatch, quiet):
    """The input's own size is the default render size, but never beyond --render-size's
    cap (a 9400 px photo wrote a 9400 px result.png): the longer side is cut to the cap,
    with a line saying so (unless -q)."""
    import diffprims._cli._paint_input as input_module

    monkeypatch.setattr(input_module, "MAX_RENDER_SIZE", 20)  # the input is 32x24
    image = write_picture("in.png")
    argv = ["paint", image, *FAST[:-1], *(["-q"] if quiet else []), "-o", "out", "-o", "a.png"]
    status, err = run(argv, capsys)
    assert status == 0, err
    for path in ("a.png", "out/result.png"):
        with Image.open(path) as picture:
            assert picture.size == (20, 15)
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["render_size"] == "20x15"
    assert 'width="20" height="15"' in Path("out/result.svg").read_text()
    note = "rendering the results at most 20 px on the longer side"
    assert (note in err) != quiet and (err == "") == quiet


def _interrupt_dispatch(monkeypatch, call):
    """The `call`-th dispatch of the fit driver raises KeyboardInterrupt (a Ctrl-C)."""
    original, calls = driver_module.Driver.dispatch, [0]

    def dispatch(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(driver_module.Driver, "dispatch", dispatch)


@pytest.mark.parametrize("mode", [[], ["--fit"]])
def test_ctrl_c_writes_results_so_far_and_exits_130(monkeypatch, capsys, mode):
    _interrupt_dispatch(monkeypatch, 3)
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST[:-1], "--steps", 2000, *mode], capsys)
    assert status == 130
    assert "interrupted after" in err and "writing the results so far" in err
    assert {p.name for p in os.scandir("out")} == FOLDER
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["interrupted"] is True and 1 <= summary["steps"] < 2000
    assert np.isfinite(summary["psnr"])


def test_a_stale_output_folder_does_not_hide_argument_errors(capsys):
    os.mkdir("out")
    Path("out/summary.json").write_text("{}")  # left by the README's quick start
    status, err = run(["filter", "--kernel", "disk:5", "--rank", 9], capsys)
    assert status == 2 and "rank" in err
    status, err = run(["paint", "--batch", "0.5"], capsys)
    assert status == 2 and "--batch applies to --fit only" in err


def test_another_run_holding_the_outputs_is_refused(capsys):
    import fcntl

    image = write_picture("in.png")
    os.mkdir("out")
    with open("out/.diffprims.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run in progress
        status, err = run(["paint", image, *FAST], capsys)
    assert status == 2 and "another diffprims run" in err
    assert os.listdir("out") == [".diffprims.lock"]  # ours, untouched


def test_outputs_checked_before_the_fit(monkeypatch, capsys):
    image = write_picture("in.png")
    Path("file.txt").write_text("x")

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran")

    monkeypatch.setattr(dp, "paint", no_fit)
    status, err = run(["paint", image, *FAST, "-o", "file.txt/a.png"], capsys)
    assert status == 2 and "is a file" in err
    if os.geteuid() != 0:  # root writes anywhere
        os.mkdir("locked")
        os.chmod("locked", 0o500)
        status, err = run(["paint", image, *FAST, "-o", "locked/a.png"], capsys)
        assert status == 2 and "cannot write" in err
    assert sorted(os.listdir()) == ["file.txt", "in.png", *(["locked"] if os.geteuid() else [])]


def test_a_bomb_image_exits_2(monkeypatch, capsys):
    image = write_picture("in.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32x24 is a bomb now
    status, err = run(["paint", image, *FAST], capsys)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not os.path.exists("out")


def test_help():
    # `python -m diffprims` and the `diffprims` script run the same `main`.
    done = subprocess.run(
        [sys.executable, "-m", "diffprims", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: diffprims")
    assert "paint" in done.stdout and "filter" in done.stdout


@pytest.mark.parametrize("command", ["paint", "filter"])
def test_subcommand_help(capsys, command):
    status, _ = run([command, "--help"], capsys)
    assert status == 0


def test_paint_help_lists_every_option():
    from diffprims._cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["paint"].format_help()  # pyright: ignore
    for option in ("-n", "--shape", "--steps", "--seconds", "--fit", "--rounds", "--size",
                   "--restarts", "--seed", "-o", "--render-size", "--quiet", "--force", "--gif",
                   "--svg-edges", "--no-cache", "--background", "--opacity"):  # fmt: skip
        assert option in text
    for name in ("circles", "rectangles"):
        assert name in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["paint", "--steps", "0"], "--steps"),
        (["paint", "--steps", "many"], "--steps"),
        (["paint", "-n", "-3"], "-n"),
        (["paint", "--fit", "--batch", "2"], "--batch"),
        (["paint", "--batch", "0.5"], "--batch applies to --fit only"),
        (["paint", "--fit", "--seconds", "5"], "--seconds applies to paint"),
        (["paint", "--fit", "--rounds", "5"], "--rounds applies to paint"),
        (["paint", "--fit", "--restarts", "2"], "--restarts applies to paint"),
        (["paint", "--restarts", "0"], "--restarts: expected a number from 1 to 64"),
        (["paint", "--restarts", "two"], "--restarts"),
        (["paint", "--steps", "5", "--seconds", "5"], "not both"),
        (["paint", "--frames", "5"], "--frames applies to --fit or --gif shapes"),
        (["paint", "--background", "white"], "--background applies to --fit only"),
        (["paint", "--opacity", "0.5"], "--opacity applies to --fit only"),
        (["paint", "--fit", "--background", "teal"], "--background"),
        (["paint", "--fit", "--opacity", "1.5"], "--opacity"),
        (["paint", "--seed", str(2**70)], "--seed"),
        (["paint", "--seed", "-1"], "--seed"),
        (["paint", "{missing}"], "No image"),
        (["paint", "{text}"], "notes.txt"),
        (["paint", "{folder}"], "folder"),
        (["paint", "--shape", "hexagons"], "hexagons"),
        (["paint", "--shape", "rings"], "own as module:ClassName (e.g. --shape rings:Rings"),
        (["paint", "{image}", "-o", "{text}"], "not a folder"),
        (["paint", "{image}", "-o", "a.bmp"], "unknown file type"),
        (["paint", "{image}", "-o", "a.png", "-o", "a.png"], "twice"),
        (["paint", "{image}", "-o", "g/a.png", "-o", "g/../g/a.png"], "twice"),
        (["paint", "--frobnicate"], "unrecognized"),
        (["bogus"], "invalid choice"),
        ([], "required"),
        (["filter", "--kernel", "blob:5"], "NAME:SIZE"),
        (["filter", "--kernel", "disk:x"], "SIZE"),
        (["filter", "--kernel", "disk:9:3"], "a disk takes only a SIZE (disk:9)"),
        (["filter", "--kernel", "box:9:2"], "a box takes only a SIZE (box:9)"),
        (["filter", "--kernel", "disk:5", "--rank", "9"], "rank"),
        (["filter", "--weights", "1,2"], "--weights"),
        (["filter", "--weights", "nan,1,1"], "finite"),
        (["filter", "--weights", "1,inf,1"], "finite"),
        (["filter", "--apply", "{missing}"], "No image"),
        (["filter", "-o", "k.png"], "folder"),
        # Limits, refused before anything is read or fitted (they used to hang, exhaust
        # memory, or fail late with exit 1).
        (["paint", "-n", "100000000"], "-n/--num-shapes: expected a number from 1 to 10000"),
        (["paint", "-n", "1" + "0" * 21], "-n/--num-shapes"),
        (["paint", "--steps", "10000000000000"], "--steps: expected a number from 1 to 2147"),
        (["filter", "--steps", "10000000000000"], "--steps"),
        (["paint", "--render-size", "1000000"], "--render-size: expected a number from 1 to 8192"),
        (["paint", "--size", "5000"], "--size: expected a number from 1 to 4096"),
        (["paint", "--fit", "--frames", "1001"], "--frames: expected a number from 1 to 1000"),
        (["paint", "--rounds", "100000"], "--rounds: expected a number from 1 to 1000"),
        (["paint", "-n", "6", "--rounds", "7"], "--rounds 7 exceeds -n 6"),
        (["filter", "--kernel", "disk:100000"], "SIZE must be from 1 to 1025"),
        (["filter", "--kernel", "gaussian:1026:5"], "SIZE must be from 1 to 1025"),
        (["filter", "--weights", "0,0,0"], "at least one weight must be > 0"),
        # Beyond float32, which the fit computes in: they passed and failed late (exit 1).
        (["paint", "--lr", "1e308"], "--lr: expected a number > 0 from 1.18e-38 to 3.4e+38"),
        (["paint", "--softness", "1e-45"], "--softness: expected a number > 0 from 1.18e-38"),
        (["paint", "--fit", "--batch", "1e-300"], "--batch: expected a fraction of the pixels"),
        (["filter", "--weights", "1e308,1e308,1e308"], "each weight must be 0 or from 1.18e-38"),
        (["filter", "--weights", "1,1e-45,0"], "(float32's range)"),
        # A kernel that is zero everywhere: it used to be fitted into NaN (and with
        # --apply failed after the fit).
        (["filter", "--kernel", "gaussian:4:0.001"], "zero everywhere"),
        (["filter", "--kernel", "gaussian:4:0.001", "--apply", "{image}"], "odd SIZE"),
        (["filter", "--kernel", "gaussian:9:nan"], "SIGMA must be a number of pixels > 0"),
        # SIDES: 1e9 ran for minutes, 6.7 was cut to 6.
        (["filter", "--kernel", "polygon:9:1e9"], "SIDES must be a whole number from 3 to 64"),
        (["filter", "--kernel", "polygon:9:6.7"], "SIDES must be a whole number from 3 to 64"),
        (["filter", "--kernel", "polygon:9:65"], "SIDES must be a whole number from 3 to 64"),
        (["filter", "--kernel", "polygon:9:2"], "SIDES must be a whole number from 3 to 64"),
        (["filter", "-o", "x.npz"], "writes a folder of files"),
        (["filter", "--border", "zero"], "--border applies to --apply only"),
        (["filter", "--apply", "{image}", "--border", "mirror"], "--border"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    paths = {
        "missing": tmp_path / "missing.png",
        "text": tmp_path / "notes.txt",
        "folder": tmp_path,
        "image": tmp_path / "in.png",
    }
    paths["text"].write_text("hello")
    write_picture(paths["image"], "RGB")
    argv = [a.format(**paths) for a in argv]
    status, err = run(argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("diffprims")
    assert message in err
    assert "Traceback" not in err
    assert os.listdir() == []  # nothing written in the working folder


def test_filter_end_to_end(tmp_path, capsys):
    image = write_picture(tmp_path / "in.png", "RGB")
    out = tmp_path / "f"
    status, err = run(
        ["filter", "--kernel", "disk:9", "--rank", 2, "--steps", 20, "--apply", image,
         "-o", out], capsys,
    )  # fmt: skip
    assert status == 0, err
    assert "relative L2 error" in err and "min/max" in err
    names = {"kernel.png", "vectors.json", "vectors.npz", "blurred.png", "summary.json"}
    assert {p.name for p in out.iterdir()} == names
    vectors = json.loads((out / "vectors.json").read_text())
    assert np.shape(vectors["vertical"]) == (2, 9) and np.shape(vectors["horizontal"]) == (2, 9)
    with np.load(out / "vectors.npz") as npz:
        np.testing.assert_allclose(npz["vertical"], vectors["vertical"], rtol=1e-6)
    assert dp.load_image(out / "blurred.png").shape == (24, 32, 3)
    summary = json.loads((out / "summary.json").read_text())
    fitted, svd = summary["fitted"], summary["svd"]
    assert fitted["min_over_max"] > svd["min_over_max"]  # the fit removes negative lobes
    assert 0 < fitted["relative_l2_error"] < 1
    # The error of what vectors.npz holds, against the disk normalised as they are.
    with np.load(out / "vectors.npz") as npz:
        written = np.einsum("ri,rj->ij", npz["vertical"], npz["horizontal"])
    disk = np.asarray(read_kernel("disk:9")[0], np.float64)
    disk /= disk.sum()
    want = np.linalg.norm(written - disk) / np.linalg.norm(disk)
    assert summary["written_relative_l2_error"] == pytest.approx(want, rel=1e-4)
    with Image.open(out / "kernel.png") as picture:
        zoom = 256 // 9
        assert picture.size == ((9 * 3 + 4) * zoom, 9 * zoom)  # big enough to see


def test_kernel_picture_of_a_wide_flat_kernel_stays_small(tmp_path, capsys):
    # Zoomed by its height alone, a 1 x 64 kernel drew a picture 50176 pixels wide
    # (0.9 GB; 1 x 300: 231424 pixels, 3 GB).
    np.save(tmp_path / "row.npy", np.hanning(66)[1:-1][None, :])
    out = tmp_path / "out"
    argv = ["filter", "--kernel", tmp_path / "row.npy", "--steps", 5, "-o", out, "-q"]
    assert run(argv, capsys)[0] == 0
    with Image.open(out / "kernel.png") as picture:
        width, height = picture.size
    assert width <= 2048 and height >= 8 and width == (64 * 3 + 4) * height


def test_force_over_a_folder_leaves_no_result_of_the_earlier_run(tmp_path, capsys):
    # A run with --apply, then one without: its blurred.png (another kernel's) stayed.
    image = write_picture(tmp_path / "in.png", "RGB")
    out = tmp_path / "f"
    first = ["filter", "--kernel", "disk:5", "--steps", 5, "--apply", image, "-o", out, "-q"]
    assert run(first, capsys)[0] == 0
    assert (out / "blurred.png").exists()
    assert run(["filter", "--kernel", "box:3", "--steps", 5, "-o", out, "-q"], capsys)[0] == 2
    assert (out / "blurred.png").exists()  # refused without --force: nothing touched
    again = ["filter", "--kernel", "box:3", "--steps", 5, "-o", out, "-q", "--force"]
    assert run(again, capsys)[0] == 0
    assert {p.name for p in out.iterdir()} == {"kernel.png", "vectors.json", "vectors.npz",
                                                "summary.json"}  # fmt: skip
    # a file the run reads is never an earlier result: a kernel picture named blurred.png
    Image.fromarray(np.full((5, 5), 255, np.uint8)).save(out / "blurred.png")
    reads = ["filter", "--kernel", out / "blurred.png", "--steps", 5, "-o", out, "-q", "--force"]
    assert run(reads, capsys)[0] == 0
    assert (out / "blurred.png").exists()


def write_kernel_files(folder):
    """An 9 x 21 ellipse (not square, which no NAME:SIZE kernel is) in every kernel format,
    and the kernel itself."""
    y, x = np.mgrid[-4:5, -10:11]
    kernel = ((x / 10) ** 2 + (y / 4) ** 2 <= 1).astype(np.float64)
    np.save(folder / "k.npy", kernel)
    np.savetxt(folder / "k.csv", kernel, delimiter=",")
    np.savetxt(folder / "k.txt", kernel)
    level = (kernel * 255).astype(np.uint8)
    Image.fromarray(np.repeat(level[..., None], 3, -1)).save(folder / "k.png")
    # White everywhere, the kernel in the alpha channel (a white shape on transparency):
    # a transparent pixel is 0, not white.
    white = np.full_like(level, 255)
    Image.fromarray(np.stack([white, white, white, level], -1), "RGBA").save(folder / "ka.png")
    Image.fromarray(np.stack([white, level], -1), "LA").save(folder / "kla.png")
    return kernel


@pytest.mark.parametrize("name", ["k.npy", "k.csv", "k.txt", "k.png", "ka.png", "kla.png"])
def test_filter_reads_a_kernel_file(tmp_path, capsys, name):
    kernel = write_kernel_files(tmp_path)
    status, err = run(["filter", "--kernel", tmp_path / name, "--rank", 9, "--steps", 5], capsys)
    assert status == 0, err
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["kernel_shape"] == [9, 21] and summary["kernel_peak"] == pytest.approx(1)
    # Rank 9 of a 9-row kernel is exact: the file was read as it was written.
    assert summary["svd"]["relative_l2_error"] < 1e-5
    with np.load("out/vectors.npz") as npz:
        bank = dp.SeparableFilters(npz["vertical"], npz["horizontal"])
    np.testing.assert_allclose(bank.kernel() * kernel.sum(), kernel, atol=1e-5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            np.zeros((2, 3, 4)),
            "must hold a 2D array of real numbers (KH, KW); got shape (2, 3, 4)",
        ),
        (np.full((3, 3), np.nan), "holds NaN or infinite values"),
        (np.zeros((3, 3)), "is zero everywhere"),
        (np.ones((3, 1026)), "each side must be at most 1025"),
        (np.array(["a", "b"]), "must hold a 2D array of real numbers"),
        ("junk", "is not a NumPy .npy file (it lacks NumPy's header)"),  # not "pickled data"
        ("npz", "is a NumPy .npz archive (numpy.savez), not a .npy array"),  # not "(1,) of <U1"
        (None, "no such file"),
        ("folder", "not a regular file"),
        ("fifo", "not a regular file"),  # (opened, it waited for a writer for ever)
        # A damaged header: NumPy raised tokenize's TokenError ("failed: TokenError").
        ((b"(3, 3)", b"(99999"), "its NumPy header is damaged"),
        ((b"(3, 3)", b"(99999, 99999)"), "could not be read"),  # 80 GB claimed, none read
    ],
)
def test_bad_kernel_files_exit_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "k.npy"
    if isinstance(content, str) and content == "folder":  # exists, but is no file
        path.mkdir()
    elif isinstance(content, str) and content == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no named pipes here")
        os.mkfifo(path)
    elif isinstance(content, tuple):  # a header edited after numpy.save
        np.save(path, np.ones((3, 3)))
        path.write_bytes(path.read_bytes().replace(*content))
    elif isinstance(content, str) and content == "npz":
        with open(path, "wb") as file:  # an archive under a .npy name
            np.savez(file, kernel=np.ones((3, 3)))
    elif isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        np.save(path, content)
    status, err = run(["filter", "--kernel", path], capsys)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert message in err and not Path("out").exists()


def test_a_csv_kernel_from_a_spreadsheet_is_read_and_a_misread_one_says_why(tmp_path, capsys):
    # A spreadsheet's "CSV UTF-8" starts with a byte-order mark (it was refused: could
    # not convert string '\ufeff1'); a table split by semicolons says what a .csv holds.
    (tmp_path / "bom.csv").write_text("1,2,1\n2,4,2\n1,2,1\n", encoding="utf-8-sig")
    status, err = run(["filter", "--kernel", tmp_path / "bom.csv", "--steps", 5], capsys)
    assert status == 0, err
    assert json.loads(Path("out/summary.json").read_text())["kernel_shape"] == [3, 3]
    (tmp_path / "semi.csv").write_text("1;2\n3;4\n")
    status, err = run(["filter", "--kernel", tmp_path / "semi.csv", "-o", "semi"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "could not be read" in err and "numbers separated by commas" in err


def test_filter_never_returns_worse_than_its_exact_start(capsys):
    # At a rank the kernel has, the SVD start is exact; Adam's first steps and the
    # non-negativity hinge pushed it away (relative error 3e-7 -> 2e-3 on a disk).
    status, err = run(
        ["filter", "--kernel", "disk:9", "--rank", 9, "--steps", 60, "-o", "x"], capsys
    )
    assert status == 0, err
    assert "kept the SVD start" in err
    summary = json.loads(Path("x/summary.json").read_text())
    assert summary["kept"] == "svd"
    assert summary["fitted"] == summary["svd"] and summary["fitted"]["relative_l2_error"] < 1e-5
    assert summary["loss"] < summary["last_step_loss"]
    # Where a fit improves on the starts (rank 2 of a disk, 500 steps), it is kept; in 60
    # steps neither fit reaches the NMF start, which is kept.
    for steps, kept in ((500, "fitted"), (60, "nmf")):
        status, err = run(
            ["filter", "--kernel", "disk:9", "--rank", 2, "--steps", steps, "-o", kept], capsys
        )
        summary = json.loads(Path(kept, "summary.json").read_text())
        assert status == 0 and summary["kept"] == kept, err
        assert ("kept the NMF start" in err) == (kept == "nmf") and "kept the SVD" not in err


def test_filter_keeps_the_fit_from_the_nmf_start_where_it_ends_lower(capsys):
    # A 17-tap disk at rank 4: from the SVD the fit ends at 0.1171 (NMF's own 0.1156),
    # from the NMF at 0.1151. A signed kernel has no NMF start: the SVD's fit is kept.
    status, err = run(["filter", "--kernel", "disk:17", "--rank", 4, "-o", "x"], capsys)
    summary = json.loads(Path("x/summary.json").read_text())
    assert status == 0 and summary["kept"] == "fitted_from_nmf", err
    assert "kept the fit from the NMF start" in err
    assert summary["fitted"]["relative_l2_error"] < 0.1156
    assert summary["fitted"]["min_over_max"] >= -1e-3
    # L-BFGS polished it (0.11512 -> 0.11510); the steps are the Adam fit's.
    assert summary["polished"] is True and summary["steps"] == summary["steps_budget"] == 500
    assert summary["loss"] < summary["last_step_loss"]
    sharpen = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32)
    np.save("sharpen.npy", sharpen)
    status, err = run(["filter", "--kernel", "sharpen.npy", "--rank", 2, "-o", "y"], capsys)
    assert status == 0 and json.loads(Path("y/summary.json").read_text())["kept"] in (
        "fitted",
        "svd",
    )


def write_flat_picture(path, value=0.8, size=(32, 24)):
    Image.fromarray(np.full((size[1], size[0], 3), round(value * 255), np.uint8)).save(path)
    return path


def test_filter_apply_continues_the_image_past_its_edges(capsys):
    # A flat picture stays flat under a blur that sums to 1, unless the border is zero:
    # the default zero padding darkened the edges (top rows 0.36 against 0.64).
    image = write_flat_picture("flat.png")
    argv = ["filter", "--kernel", "disk:9", "--rank", 2, "--steps", 5, "-q", "--apply", image]
    status, err = run([*argv, "-o", "reflect"], capsys)
    assert status == 0, err
    blurred = np.asarray(dp.load_image("reflect/blurred.png"))
    np.testing.assert_allclose(blurred, 0.8, atol=1.5 / 255)
    assert json.loads(Path("reflect/summary.json").read_text())["border"] == "reflect"
    status, err = run([*argv, "--border", "zero", "-o", "zero"], capsys)
    assert status == 0, err
    assert float(np.asarray(dp.load_image("zero/blurred.png"))[0].mean()) < 0.7
    # --border offers exactly what SeparableFilters.apply supports.
    from diffprims._cli._filter import BORDERS
    from diffprims._filters._checks import BORDERS as APPLY_BORDERS

    assert sorted(BORDERS) == sorted(APPLY_BORDERS) and BORDERS[0] == "reflect"


def test_filter_vectors_are_the_normalised_bank(capsys):
    # vectors.json is "ready to paste into a shader": its kernel sums to 1, as the bank
    # that blurs --apply's image (it summed to the kernel's area, 2006 for disk:50).
    status, err = run(["filter", "--kernel", "disk:9", "--rank", 2, "--steps", 5, "-q"], capsys)
    assert status == 0, err
    vectors = json.loads(Path("out/vectors.json").read_text())
    vertical, horizontal = np.asarray(vectors["vertical"]), np.asarray(vectors["horizontal"])
    assert np.einsum("ri,rj->ij", vertical, horizontal).sum() == pytest.approx(1, rel=1e-5)
    with np.load("out/vectors.npz") as npz:
        np.testing.assert_allclose(npz["vertical"], vertical, rtol=1e-6)
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["vectors"].startswith("normalized") and summary["kernel_sum"] > 50
    assert np.einsum("ri,rj->", vertical * summary["kernel_sum"], horizontal) == pytest.approx(
        summary["kernel_sum"], rel=1e-5
    )


def test_filter_summary_records_the_loss_weights_used(capsys):
    status, err = run(["filter", "--kernel", "disk:5", "--rank", 1, "--steps", 2, "-q"], capsys)
    assert status == 0, err
    summary = json.loads(Path("out/summary.json").read_text())
    library = inspect.signature(dp.SeparableFilters.recommended_loss).parameters
    used = {"l2": 1.0, **{k: library[k].default for k in ("non_negative", "keep_zeros")}}
    assert summary["weights"] == used == {"l2": 1, "non_negative": 4, "keep_zeros": 0}
    argv = ["filter", "--kernel", "disk:5", "--rank", 1, "--steps", 2, "-q", "-o", "w"]
    status, err = run([*argv, "--weights", "1,3,0.3"], capsys)
    assert status == 0, err
    weights = json.loads(Path("w/summary.json").read_text())["weights"]
    assert weights == {"l2": 1, "non_negative": 3, "keep_zeros": 0.3}
    # The help describes that loss: no zeros term unless --weights asks for one.
    from diffprims._cli import build_parser

    filt = build_parser()._subparsers._group_actions[0].choices["filter"]  # pyright: ignore
    text = " ".join(filt.format_help().split())
    assert "the library's, 1,4,0" in text
    assert "penalises negative values and non-zeros where the kernel is zero" not in text
    for option in ("--border", "reflect", "symmetric", "edge", "wrap", "zero"):
        assert option in text


def test_filter_output_must_be_a_folder(capsys):
    status, err = run(["filter", "-o", "x.npz"], capsys)
    assert status == 2 and "vectors.npz" in err
    assert ".eqx" not in err and ".gif" not in err  # paint's file types, not filter's


def test_filter_summary_is_strict_json_for_a_faint_kernel(capsys):
    # An even-sized Gaussian with a small sigma peaks far below 1 (1.5e-5 here): fitted
    # at peak 1, it fits as well as any kernel (at its own scale it fitted to garbage).
    argv = ["filter", "--kernel", "gaussian:4:0.15", "--rank", 1, "--steps", 5, "-q"]
    status, err = run(argv, capsys)
    assert status == 0, err

    def no_constants(name):
        raise AssertionError(f"{name} in summary.json")

    summary = json.loads(Path("out/summary.json").read_text(), parse_constant=no_constants)
    assert summary["kernel_peak"] == pytest.approx(math.exp(-0.5 / (2 * 0.15**2)), rel=1e-4)
    assert summary["fitted"]["relative_l2_error"] < 0.1 and summary["fitted"]["max"] > 0.9


def test_json_outputs_are_strict(tmp_path):
    from diffprims._cli._common import write_json

    write_json(tmp_path / "a.json", {"a": math.nan, "b": [1.0, -math.inf], "c": "x"})
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": "x"}


def test_filter_ctrl_c_writes_results_so_far_and_exits_130(monkeypatch, capsys):
    _interrupt_dispatch(monkeypatch, 2)
    argv = ["filter", "--kernel", "disk:5", "--rank", 1, "--steps", 100000, "-q"]
    status, err = run(argv, capsys)
    assert status == 130, err
    assert "interrupted in the fit from the SVD start after" in err
    assert "writing the results so far" in err
    assert {p.name for p in os.scandir("out")} == FILTER_FOLDER
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["interrupted"] is True and 1 <= summary["steps"] < 100000


@pytest.mark.parametrize(
    "where, said, polished",
    [(8, "the fit from the NMF start after 200 steps", False),
     (11, "the L-BFGS polish after 0 steps", False)],
)  # fmt: skip
def test_filter_ctrl_c_after_the_first_fit_keeps_the_lowest_so_far(
    monkeypatch, capsys, where, said, polished
):
    # A 17-tap disk at rank 4, 5 dispatches a fit: 1-5 from the SVD, 6-10 from the NMF,
    # 11 the polish. What is written is the lowest reached.
    _interrupt_dispatch(monkeypatch, where)
    status, err = run(["filter", "--kernel", "disk:17", "--rank", 4, "-q"], capsys)
    assert status == 130 and f"interrupted in {said};" in err, err
    summary = json.loads(Path("out/summary.json").read_text())
    # (the NMF start or its fit, whichever is lower: after 200 steps, the start)
    assert summary["interrupted"] is True and summary["kept"] in ("nmf", "fitted_from_nmf")
    assert summary["polished"] is polished and summary["fitted"]["relative_l2_error"] < 0.1157


def test_filter_ctrl_c_in_the_nmf_start_writes_the_fit_from_the_svd(monkeypatch, capsys):
    import diffprims as dp

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dp.SeparableFilters, "from_nmf", interrupted)
    status, err = run(["filter", "--kernel", "disk:17", "--rank", 4, "-q"], capsys)
    assert status == 130 and "interrupted in the NMF start;" in err, err
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["interrupted"] is True and summary["kept"] == "fitted"


def signal_once_fitting(argv, signum, home, *, wait, header=None):
    """(exit status, stderr) of `python -m diffprims *argv` sent `signum` once it fits.

    The program runs as a user would run it, with `home` as its HOME (its per-user cache
    folder in there, whatever JAX_COMPILATION_CACHE_DIR says). Its stderr is read until
    the progress bar is up (the fit loop has started; `header`, when given, must be in
    the line before it), then the signal is sent `wait` seconds later."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", HOME=str(home))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    command = [sys.executable, "-m", "diffprims", *(str(a) for a in argv)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        if header is not None:
            line = process.stderr.readline()  # the header: the fit is about to start
            assert header in line, line
        seen = ""
        while "step" not in seen:  # the progress bar is up: the fit loop has started
            char = process.stderr.read(1)
            assert char, seen
            seen += char
        time.sleep(wait)
        process.send_signal(signum)
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    return process.returncode, err


def test_filter_sigterm_writes_results_and_unlocks(tmp_path):
    """SIGTERM to a running `python -m diffprims filter` does what Ctrl-C does: the fit
    stops and the results so far are written as a set; no lock is left behind (it used
    to die, leaving only `.diffprims.lock`). Exit status 143."""
    argv = ["filter", "--kernel", "disk:5", "--rank", 1, "--steps", 10**9, "-o", "f"]
    status, err = signal_once_fitting(argv, signal.SIGTERM, tmp_path, wait=0.5)
    assert status == 143, err[-2000:]
    assert "interrupted in the fit from the SVD start after" in err
    assert {p.name for p in os.scandir("f")} == FILTER_FOLDER  # no lock, no temp folder
    assert json.loads(Path("f/summary.json").read_text())["interrupted"] is True


def test_sigterm_while_the_results_are_written_still_exits_143(monkeypatch, capsys):
    # The writing runs to its end (as after one Ctrl-C there), and the status says the
    # run was stopped: it was 0, which a job scheduler takes for a run never signalled.
    import diffprims._cli as cli
    from diffprims._cli import _signals

    def write(args):
        with _signals.finish_writing():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # Python runs the handler between bytecodes
        return 0

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(run=write, command="paint", debug=False)

    monkeypatch.setattr(cli, "build_parser", Parser)
    assert cli.main([]) == 143
    assert "writing the results" in capsys.readouterr().err


def test_a_cache_folder_it_cannot_write_is_left_alone(tmp_path):
    # A cache folder made by another user (`sudo diffprims ...`): JAX warned twice for
    # each program it could not write (94 lines on stderr under `-q`). Run in a fresh
    # process: the cache is a process-wide JAX setting. Root may write anywhere, so
    # the folder's permission is what `os.access` is made to say.
    code = (
        "import os, jax\n"
        "from diffprims._cli import _cache\n"
        "folder = os.fspath(_cache.cache_folder())\n"
        "real = os.access\n"
        "os.access = lambda path, mode, **kw: os.fspath(path) != folder and real(path, mode)\n"
        "_cache.enable_compilation_cache()\n"
        "print('cache:', jax.config.jax_compilation_cache_dir)\n"
    )
    env = dict(os.environ, HOME=os.fspath(tmp_path), XDG_CACHE_HOME="")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)  # fmt: skip
    assert out.stdout.strip() == "cache: None", out.stdout + out.stderr


@pytest.mark.parametrize("budget", [["--fit", "--steps", "10000000"], ["--seconds", "600"]])
def test_sigint_end_to_end(tmp_path, budget):
    """A real Ctrl-C (SIGINT) to a running `python -m diffprims paint`: plain fit and
    `dp.paint`'s rounds both write what they have and exit 130. The process, run as
    the program, keeps its compiled programs in the per-user cache folder."""
    image = write_picture(tmp_path / "in.png")
    argv = ["paint", image, "-n", 3, "--size", 16, *budget]
    status, err = signal_once_fitting(
        argv, signal.SIGINT, tmp_path, wait=1.0, header="the PSNR shown is at 16x12"
    )
    assert status == 130, err[-2000:]
    assert "interrupted after" in err
    assert {p.name for p in os.scandir("out")} == FOLDER
    assert json.loads(Path("out/summary.json").read_text())["interrupted"] is True
    assert any((tmp_path / ".cache" / "diffprims" / "jax").iterdir())  # the persistent cache


def test_seconds_budget_covers_the_command():
    # Painting gets what is left of --seconds after the time already spent, less the
    # reserve for writing the outputs, and never under a quarter of the budget.
    from diffprims._cli import _paint

    now = time.perf_counter()
    args = argparse.Namespace(seconds=8.0)
    left = _paint._paint_seconds(args, now - 2.0, 1.0)
    assert left is not None
    assert 8.0 - 2.0 - 1.0 - 0.5 < left <= 8.0 - 2.0 - 1.0
    assert _paint._paint_seconds(args, now - 100.0, 1.0) == 2.0
    assert _paint._paint_seconds(argparse.Namespace(seconds=None), now, 1.0) is None


def test_seconds_count_from_loading_the_package_when_run_as_the_program(monkeypatch, capsys):
    # `import diffprims` (JAX with it) took 1 to 2 s before the command's clock started:
    # `--seconds 8` ran 9 s with every program cached. As the program, the budget counts
    # from the package's first line; called from Python, from the call.
    from diffprims import _loading
    from diffprims._cli import _paint

    seen = []
    original = _paint._paint_seconds

    def spy(args, started, reserve):
        seen.append(started)
        return original(args, started, reserve)

    monkeypatch.setattr(_paint, "_paint_seconds", spy)
    image = write_picture("in.png")
    argv = ["paint", image, *FAST, "--no-cache", "-o", "a.png"]
    monkeypatch.setattr(sys, "argv", ["diffprims", *map(str, argv)])
    before = time.perf_counter()
    assert main() == 0
    assert seen == [_loading.STARTED] and _loading.STARTED < before
    status, err = run([*argv[:-1], "b.png"], capsys)
    assert status == 0, err
    assert seen[1] > before


def test_a_run_that_spends_its_budget_compiling_says_so(capsys):
    # A cold `paint -n 100 --seconds 8` compiled 10-12 s (summed over threads) and ran
    # 50-100 steps, the same command again 2100: a line says so when compiling took a
    # quarter of the budget and 2 s or more (a warm run still compiles ~0.5 s).
    from diffprims._cli import _cache

    # XLA's compile time in this process: a new program counts, a cached call does not.
    before = _cache.compile_seconds()
    program = jax.jit(lambda x: jax.numpy.sin(x) * 3.0 + 1.0)
    program(jax.numpy.ones(37)).block_until_ready()
    compiled = _cache.compile_seconds()
    program(jax.numpy.ones(37)).block_until_ready()
    assert compiled > before and _cache.compile_seconds() == compiled

    for seconds, compiled, said in [
        (8.0, 10.0, True), (8.0, 2.5, True), (8.0, 1.9, False), (2.0, 1.0, False),
        (60.0, 10.0, False), (None, 10.0, False),
    ]:  # fmt: skip
        _cache.note_compiling(argparse.Namespace(seconds=seconds, no_cache=True), compiled, 70)
        err = capsys.readouterr().err
        assert ("compiling took" in err) == said, (seconds, compiled, err)
        if said:
            assert "ran 70 steps" in err and "--no-cache" in err


def test_the_write_reserve_grows_with_the_render_size(capsys):
    """Writing a 6000x4000 render took 9 s, all of it beyond a --seconds 5 budget that
    kept 1 s for writing: the reserve counts the render's pixels."""
    from diffprims._cli import _paint_input

    fit = (43, 64)
    small = _paint_input.write_seconds(fit, fit)
    assert small == _paint_input.WRITE_RESERVE
    assert small < _paint_input.write_seconds((256, 384), fit) < small + 0.1
    assert _paint_input.write_seconds((4000, 6000), fit) > 5.0
    # Loading and writing that leave the painting less than its quarter of the budget
    # are said (the command will take longer), with the time loading took.
    from diffprims._cli import _paint

    for seconds, spent, render in ((5.0, 0.5, (4000, 6000)), (5.0, 0.5, fit),
                                   (None, 0.5, (4000, 6000)), (2.0, 1.2, fit)):  # fmt: skip
        args = argparse.Namespace(seconds=seconds)
        reserve = _paint_input.write_seconds(render, fit)
        _paint._warn_of_overrun(args, spent, reserve, render, fit)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "at 6000x4000 takes about" in lines[0], lines
    assert "--render-size" in lines[0] and "--render-size" not in lines[1]
    assert lines[1].startswith("loading took 1.2 s") and "--seconds 2," in lines[1]


def test_the_write_reserve_counts_the_svg_outlines(capsys):
    """`paint -n 5000 --shape ellipses --softness 3 --seconds 15` ran 21 s: its SVG (17
    outlines a shape) took 2.6 s to write and 1 s was kept for all the outputs."""
    from diffprims._cli import _paint_input

    fit, write = (64, 64), _paint_input.write_seconds
    soft = write(fit, fit, (dp.Ellipses, True), 5000, 3.0)
    assert soft == pytest.approx(_paint_input.WRITE_RESERVE + 5000 * 17 * 5e-5)
    assert write(fit, fit, (dp.Ellipses, False), 5000, 3.0) < soft / 4  # one outline each
    assert write(fit, fit, (dp.Circles, True), 5000, 3.0) < soft / 4  # a gradient each
    assert write(fit, fit, None, 5000, 3.0) == _paint_input.WRITE_RESERVE  # no SVG
    # When the SVG is what overruns a budget, the line says how to write it faster.
    from diffprims._cli import _paint

    _paint._warn_of_overrun(argparse.Namespace(seconds=5.0), 0.5, soft, fit, fit)
    _paint._warn_of_overrun(argparse.Namespace(seconds=2.0), 1.2, write(fit, fit), fit, fit)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].endswith("(--svg-edges hard writes the SVG faster)")
    assert "--svg-edges" not in lines[1]


def test_paint_decodes_the_image_once(capsys, monkeypatch):
    """The fit-size target and the render-size reference come from one decoding (each
    read of a large photo took a second, and a pipe can be read only once)."""
    reads = []
    original = dp.load_image

    def counted(*args, **kwargs):
        reads.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(dp, "load_image", counted)
    image = write_picture("in.png", size=(40, 30))
    status, err = run(["paint", image, *FAST, "--render-size", 24, "-o", "a.png"], capsys)
    assert status == 0, err
    assert len(reads) == 1
    with Image.open("a.png") as picture:
        assert picture.size == (24, 18)
    # The resizes are load_image's: the same target as reading the file at the fit size.
    from diffprims._cli._paint_input import read_inputs

    args = argparse.Namespace(size=16, render_size=24, quiet=True)
    target, render_shape, reference = read_inputs(args, image)
    np.testing.assert_allclose(target, original(image, size=16), atol=1e-6)
    np.testing.assert_allclose(reference, original(image, size=(18, 24)), atol=1e-6)
    assert render_shape == (18, 24)


def _record_frame_batches(monkeypatch):
    """The number of models in each batch the animation's frames are rendered in."""
    from diffprims._cli import _pictures

    original, sizes = _pictures._render_each, []

    def render_each(models, shape):
        sizes.append(int(jax.tree.leaves(models)[0].shape[0]))
        return original(models, shape)

    monkeypatch.setattr(_pictures, "_render_each", render_each)
    return sizes


def test_animation_renders_only_the_frames_it_can_have(monkeypatch, capsys):
    # `--frames 1000` with 5 steps has at most 6 snapshots and the final picture: the
    # batch is not padded to 1001 models (a big --frames hung after the fit).
    sizes = _record_frame_batches(monkeypatch)
    image = write_picture("in.png")
    argv = ["paint", image, *FAST, "--steps", 5, "--fit", "--frames", 1000, "-o", "a.gif"]
    status, err = run(argv, capsys)
    assert status == 0, err
    assert sizes == [7]
    with Image.open("a.gif") as gif:
        assert gif.n_frames == 6  # the start and the 5 steps; the last is the final one
    # Paint: --rounds 3 adds shapes in 3 rounds, then 5 more rounds (spares removed,
    # two cycles): one frame per round, padded by at most the final picture.
    sizes.clear()
    status, err = run(["paint", image, *FAST, "--rounds", 3, "-o", "b.gif"], capsys)
    assert status == 0, err
    assert sizes == [3 + 5 + 1]
    with Image.open("b.gif") as gif:
        assert gif.n_frames == 3 + 5  # as docs/cli.md says


def test_paint_progress_counts_the_extra_rounds(capsys):
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST[:-1], "--rounds", 2], capsys)
    assert status == 0, err
    assert "round=7/7" in err  # 2 rounds that add shapes, 5 more (docs/cli.md, Rounds)
    from diffprims._cli import build_parser

    paint = build_parser()._subparsers._group_actions[0].choices["paint"]  # pyright: ignore
    assert "then runs 5 more" in " ".join(paint.format_help().split())


def test_an_animation_too_big_for_memory_is_refused_up_front(monkeypatch, capsys):
    from diffprims._cli import _paint

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran")

    monkeypatch.setattr(dp, "paint", no_fit)
    monkeypatch.setattr(dp, "fit", no_fit)
    monkeypatch.setattr(_paint, "MAX_GIF_BYTES", 16 * 12 * 3 * 4 * 10)  # 10 frames at 16x12
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST, "--fit", "--frames", 20], capsys)
    assert status == 2 and "--frames" in err and err.count("\n") == 1
    status, err = run(["paint", image, *FAST, "--rounds", 6], capsys)  # 6 + 5 + 1 frames
    assert status == 2 and "--rounds" in err
    # Without a .gif there are no frames to render.
    status, err = run(["paint", image, *FAST, "--fit", "--frames", 20, "-o", "a.png"], capsys)
    assert status == 1 and "the fit ran" in err  # it got to the fit


def test_the_shape_limit_is_one_paint_can_solve():
    from diffprims._cli._paint import MAX_SHAPES
    from diffprims._paint._solve import check_solve_memory

    check_solve_memory(MAX_SHAPES, 1, 0.3)  # with paint's 30 % spares


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command(monkeypatch, capsys, where):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(dp, "paint", broken)
    image = write_picture("in.png")
    argv = ["paint", image, *FAST]
    status, err = run(argv, capsys)
    assert status == 1 and "failed: RuntimeError: boom" in err and "--debug" in err
    debug = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(RuntimeError, match="boom"):
        main([str(a) for a in debug])
    status, err = run(["filter", "--debug", "--steps", 0], capsys)
    assert status == 2 and "--steps" in err  # accepted by filter too


def test_unreadable_inputs_are_named_by_their_argument(tmp_path, capsys):
    Path("notes.txt").write_text("hello")
    status, err = run(["paint", "notes.txt"], capsys)
    assert status == 2 and "IMAGE" in err and "notes.txt" in err and "`path`" not in err
    status, err = run(["filter", "--apply", "notes.txt"], capsys)
    assert status == 2 and "--apply" in err and "notes.txt" in err and "`path`" not in err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_unwritable_output_names_its_folder(capsys):
    # /proc takes no new files: as root the check passes and the lock file fails.
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST, "-o", "/proc/a.png"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "'/proc'" in err and ".diffprims.lock" not in err


def test_summary_loss_is_the_final_pictures(monkeypatch, capsys):
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST], capsys)
    assert status == 0, err
    summary = json.loads(Path("out/summary.json").read_text())
    # `loss` and `psnr` measure the same picture; the last step's loss is kept apart.
    assert summary["loss"] == pytest.approx(10 ** (-summary["psnr"] / 10), rel=1e-3)
    assert summary["last_step_loss"] is not None and summary["last_step_loss"] > 0


@pytest.mark.parametrize(("kernel", "rank"), [("disk:1", 1), ("box:3", 3)])
def test_filter_default_rank_is_clamped_to_a_small_kernel(capsys, kernel, rank):
    # The default --rank 4 exceeded a 1 x 1 or 3 x 3 kernel's rank and exited 2; it is
    # cut to min(KH, KW) with one line saying so, and summary.json records the rank used.
    status, err = run(["filter", "--kernel", kernel, "--steps", 3], capsys)
    assert status == 0, err
    notes = [line for line in err.splitlines() if "clamped" in line]
    assert len(notes) == 1 and f"--rank 4 (the default) clamped to {rank}" in notes[0]
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["rank"] == rank
    assert np.shape(json.loads(Path("out/vectors.json").read_text())["vertical"])[0] == rank
    # An explicit --rank the kernel cannot have is still refused (the library is strict).
    status, err = run(["filter", "--kernel", kernel, "--rank", rank + 1, "-o", "x"], capsys)
    assert status == 2 and f"at most {rank}" in err and err.count("\n") == 1


def test_filter_apply_keeps_a_grey_image_grey(capsys):
    # blurred.png of a grey picture was RGB; of a 16-bit grey one too (and 8-bit).
    write_picture("grey.png", "L")
    write_picture("grey16.png", "I;16")
    for name, mode in (("grey", "L"), ("grey16", "I;16")):
        argv = ["filter", "--kernel", "disk:5", "--rank", 1, "--steps", 2, "-q"]
        status, err = run([*argv, "--apply", f"{name}.png", "-o", name], capsys)
        assert status == 0, err
        with Image.open(f"{name}/blurred.png") as picture:
            assert picture.mode == mode and picture.size == (32, 24)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_filter_apply_writes_a_16_bit_image_at_16_bits(capsys, channels):
    # A 16-bit photo came back blurred at 8 bits: a smooth ramp in 256 steps.
    from .test_image import _png16

    ramp = np.linspace(0.0, 1.0, 40, dtype=np.float64)
    samples = np.broadcast_to(ramp[None, :, None], (24, 40, channels)).copy()
    if channels in (2, 4):
        samples[..., -1] = 1.0
    _png16(Path("deep.png"), np.round(samples * 65535).astype(np.uint16))
    argv = ["filter", "--kernel", "box:3", "--rank", 1, "--steps", 2, "-q"]
    status, err = run([*argv, "--apply", "deep.png"], capsys)
    assert status == 0, err
    assert json.loads(Path("out/summary.json").read_text())["blurred_bits"] == 16
    with Image.open("out/blurred.png") as picture:  # grey + alpha is written RGBA
        assert picture.mode == {1: "I;16", 2: "RGBA", 3: "RGB", 4: "RGBA"}[channels]
    blurred = np.asarray(dp.load_image("out/blurred.png"), np.float64)
    # A box blur keeps a linear ramp away from the edges: its values, not 8-bit steps.
    inner = blurred[4:-4, 4:-4, 0]
    assert np.abs(inner - ramp[None, 4:-4]).max() < 1e-4
    assert np.any(np.round(inner * 65535) % 257 != 0)  # between two 8-bit levels


def test_filter_apply_writes_an_8_bit_image_at_8_bits(capsys):
    write_picture("rgb.png", "RGB")
    argv = ["filter", "--kernel", "box:3", "--rank", 1, "--steps", 2, "-q", "--apply", "rgb.png"]
    assert run(argv, capsys)[0] == 0
    assert json.loads(Path("out/summary.json").read_text())["blurred_bits"] == 8
    with Image.open("out/blurred.png") as picture:
        assert picture.mode == "RGB"


def test_filter_apply_blurs_an_rgba_image_with_premultiplied_alpha(capsys):
    # The alpha was dropped (the picture composited over white, written RGB). Blurred
    # premultiplied, an opaque red half keeps its colour where it fades out over a
    # transparent half whose (invisible) colour is green.
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[:, :16] = [255, 0, 0, 255]
    rgba[:, 16:] = [0, 255, 0, 0]
    Image.fromarray(rgba, "RGBA").save("rgba.png")
    argv = ["filter", "--kernel", "box:5", "--rank", 1, "--steps", 2, "-q", "--apply", "rgba.png"]
    status, err = run(argv, capsys)
    assert status == 0, err
    with Image.open("out/blurred.png") as picture:
        assert picture.mode == "RGBA"
        out = np.asarray(picture).astype(int)
    alpha = out[..., 3]
    assert alpha[:, :13].min() == 255 and alpha[:, 19:].max() == 0
    fading = (alpha > 0) & (alpha < 255)
    assert fading[:, 14:18].all()  # the edge is blurred in alpha
    visible = alpha > 0
    assert (out[visible][:, 0] >= 254).all() and (out[visible][:, 1] <= 1).all()


SOBEL = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def written_kernel(folder):
    with np.load(f"{folder}/vectors.npz") as npz:
        return np.einsum("ri,rj->ij", npz["vertical"], npz["horizontal"])


@pytest.mark.parametrize(
    ("kernel", "weights"),
    [
        (SOBEL, None),
        (LAPLACIAN, None),
        (LAPLACIAN, "1,0,0"),  # exited 1 after the fit: `normalized` needs a non-zero sum
        (LAPLACIAN - 0.5, None),  # sums to -4.5: normalising negated it
        (-np.ones((3, 3)), None),  # no positive value: refused, peak was its largest value
    ],
)
def test_filter_keeps_an_edge_detector_an_edge_detector(capsys, kernel, weights):
    # A Sobel with the default weights: the non-negativity term dragged the exact start
    # to sum 0.22, and the vectors were divided by it ("normalized", 4.5x too large). A
    # kernel with negative values gets NONNEG 0 by default; one whose sum is not clearly
    # positive is written at its own scale, not normalised.
    np.save("k.npy", kernel)
    argv = ["filter", "--kernel", "k.npy", "--rank", 3, "--steps", 100]
    status, err = run([*argv, *(["--weights", weights] if weights else [])], capsys)
    assert status == 0, err
    np.testing.assert_allclose(written_kernel("out"), kernel, atol=1e-4 * np.abs(kernel).max())
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["normalized"] is False and summary["vectors"].startswith("not normalized")
    assert summary["kernel_peak"] == np.abs(kernel).max()
    assert summary["fitted"]["relative_l2_error"] < 1e-4
    notes = [line for line in err.splitlines() if "at the kernel's own scale" in line]
    assert len(notes) == 1 and f"the kernel sums to {kernel.sum():.3g}" in notes[0]
    if weights is None:
        assert summary["weights"]["non_negative"] == 0
        assert "NONNEG weight 0: the kernel has negative values" in summary["weights_note"]
        assert "NONNEG weight 0" in err


def test_filter_normalises_a_kernel_with_negative_values_and_a_positive_sum(capsys):
    # A sharpening kernel sums to 1: normalised (to itself), its negative lobes kept.
    sharpen = np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])
    np.save("k.npy", sharpen)
    status, err = run(["filter", "--kernel", "k.npy", "--rank", 3, "--steps", 100], capsys)
    assert status == 0, err
    np.testing.assert_allclose(written_kernel("out"), sharpen, atol=1e-4)
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["normalized"] is True and summary["weights"]["non_negative"] == 0
    assert "own scale" not in err
    # A blur keeps the library's weights, and no note.
    status, err = run(["filter", "--kernel", "disk:5", "--steps", 5, "-o", "d"], capsys)
    summary = json.loads(Path("d/summary.json").read_text())
    library = inspect.signature(dp.SeparableFilters.recommended_loss).parameters
    assert summary["weights"]["non_negative"] == library["non_negative"].default
    assert summary["weights_note"] is None
    assert summary["normalized"] is True and "NONNEG" not in err


def test_filter_kernel_peak_is_its_largest_magnitude(capsys):
    # A kernel whose largest lobe is negative was scaled by its largest value (0.5 here):
    # fitted at peak 8, not the peak 1 the loss weights and the optimizer are meant for.
    np.save("k.npy", 0.5 * np.array([[1.0, 1.0, 1.0], [1.0, -16.0, 1.0], [1.0, 1.0, 1.0]]))
    status, err = run(["filter", "--kernel", "k.npy", "--steps", 5, "-q"], capsys)
    assert status == 0, err
    assert json.loads(Path("out/summary.json").read_text())["kernel_peak"] == 8


@pytest.mark.parametrize("mode", ["F", "I"])
def test_filter_reads_a_float_or_integer_tiff_kernel_as_it_is(capsys, mode):
    # Read as a picture, a float (or 32-bit integer) TIFF was clipped to [0, 1]: this
    # sharpening kernel's -3s became 0 and its 15 became 1 (a box, not a sharpener).
    kernel = 3 * np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])
    Image.fromarray(kernel.astype(np.float32 if mode == "F" else np.int32), mode).save("k.tif")
    argv = ["filter", "--kernel", "k.tif", "--rank", 3, "--steps", 5, "--weights", "1,0,0"]
    status, err = run(argv, capsys)
    assert status == 0, err
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["kernel_peak"] == 15 and summary["svd"]["min"] == pytest.approx(-0.2)
    assert summary["svd"]["relative_l2_error"] < 1e-6
    np.testing.assert_allclose(written_kernel("out"), kernel / kernel.sum(), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("kernel.dat", "1 2\n3 4\n", "is a .dat file; kernel files are .npy, .txt, .csv or a"),
        ("k.npz", None, "is a .npz file; kernel files are .npy, .txt, .csv or a picture"),
        ("k.txt", "", "'k.txt' is empty: it holds no numbers; write the kernel as KH lines"),
        ("k.csv", "\n", "'k.csv' is empty: it holds no numbers"),
        ("nothere.npz", "-", "nor an existing kernel file (.npy, .txt, .csv or a picture"),
    ],
)
def test_filter_says_which_kernel_files_it_reads(capsys, name, content, message):
    # An existing kernel.dat or .npz was "not NAME:SIZE[:ARG]"; an empty table leaked
    # NumPy's "loadtxt: input contained no data" warning before "got shape (0, 1)".
    if content is None:
        np.savez(name, a=np.ones((3, 3)))
    elif content != "-":
        Path(name).write_text(content)
    status, err = run(["filter", "--kernel", name], capsys)
    assert status == 2 and err.count("\n") == 1 and "Warning" not in err, err
    assert message in err and not Path("out").exists()


def test_paint_lr_sets_every_learning_rate(capsys, monkeypatch):
    # `--lr` is "the Adam learning rate": paint has three (positions, other geometry,
    # colours), and it set only the first.
    import diffprims as dp

    seen = {}
    paint = dp.paint

    def spy(*args, **kwargs):
        seen.update({k: kwargs[k] for k in ("lr", "lr_geometry", "lr_colour")})
        return paint(*args, **kwargs)

    monkeypatch.setattr(dp, "paint", spy)
    image = write_picture("in.png")
    assert run(["paint", image, *FAST, "--steps", 2, "--lr", "0.03"], capsys)[0] == 0
    assert seen == {"lr": 0.03, "lr_geometry": 0.03, "lr_colour": 0.03}


def test_a_diverged_fit_says_to_lower_the_rate(capsys):
    image = write_picture("in.png")
    status, err = run(["paint", image, *FAST, "--fit", "--steps", 20, "--lr", "1e30"], capsys)
    assert status == 1 and "diverged at step" in err and "lower --lr (it was 1e+30)" in err
    assert "error.result" not in err and "optax.chain" not in err
    # The last model whose loss was finite (the start: the first update overflowed) and
    # its progress, every frame finite, are written and marked.
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["diverged"] is True and np.isfinite(summary["psnr"])
    assert Path("out/progress.gif").exists()


def test_a_diverged_fit_whose_values_overflowed_writes_nothing(capsys, monkeypatch):
    # Its stored parameters finite, its radii exp(raw) inf: the picture (one colour over
    # everything) was finite, and the SVG was written with `nan` and `inf` in it.
    image = write_picture("in.png")
    fit = dp.fit

    def overflowing(*args, **kwargs):
        result = fit(*args, **kwargs)
        model = eqx.tree_at(lambda m: m.raw_radii, result.model, result.model.raw_radii + 200.0)
        result = eqx.tree_at(lambda r: r.model, result, model)
        raise dp.FitDivergedError("diverged", step=len(result.losses), result=result)

    monkeypatch.setattr(dp, "fit", overflowing)
    status, err = run(["paint", image, *FAST, "--fit", "--steps", 6], capsys)
    assert status == 1 and "diverged at step 6" in err
    assert not os.path.exists("out")


def test_a_fit_that_diverges_late_writes_its_last_finite_result(capsys, monkeypatch):
    # A long run that diverged lost everything it had reached; now its outputs hold the
    # last finite result (the status is still 1, and the line says so).
    image = write_picture("in.png")
    fit = dp.fit

    def diverging(*args, **kwargs):
        result = fit(*args, **kwargs)
        raise dp.FitDivergedError("diverged", step=len(result.losses), result=result)

    monkeypatch.setattr(dp, "fit", diverging)
    status, err = run(["paint", image, *FAST, "--fit", "--steps", 6], capsys)
    assert status == 1 and "diverged at step 6" in err and "last finite result" in err
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["diverged"] is True and summary["interrupted"] is False
    assert summary["steps"] == 6 and math.isfinite(summary["psnr"])
    assert sorted(os.listdir("out")) == sorted(
        ["model.eqx", "progress.gif", "result.png", "result.svg", "shapes.json", "summary.json"]
    )


def test_output_and_kernel_names_the_system_refuses_are_usage_errors(tmp_path, capsys):
    # A name over 255 bytes: OSError ENAMETOOLONG from `Path.exists`, status 1 "failed".
    long = os.fspath(tmp_path / ("t" * 300))
    assert main(["filter", "--kernel", "disk:5", "-o", long]) == 2
    assert main(["filter", "--kernel", long + ".npy"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "failed" not in err


def test_a_cache_folder_that_cannot_be_made_is_named_not_blamed_on_no_cache(
    tmp_path, monkeypatch, capsys
):
    import argparse

    from diffprims._cli import _cache

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(_cache, "cache_folder", lambda: blocker / "diffprims" / "jax")
    monkeypatch.setitem(_cache._cache_off, "why", "it is not set up")
    _cache.enable_compilation_cache()  # cannot make the folder: no cache, no error
    args = argparse.Namespace(seconds=2.0, no_cache=False)
    _cache.note_compiling(args, compiled=5.0, steps=10)
    err = capsys.readouterr().err
    assert "cannot be made" in err and "a-file" in err and "--no-cache" not in err


def test_json_keeps_file_names_that_are_not_utf8_as_escapes(tmp_path):
    # `caf\xe9.png` was written as a lone surrogate, which JSON readers turn into U+FFFD.
    import json

    from diffprims._cli._common import write_json

    name = os.fsdecode(b"caf\xe9.png")
    write_json(tmp_path / "s.json", {"image": name, "files": ["été.png"]})
    data = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert data == {"image": "caf\\xe9.png", "files": ["été.png"]}


@pytest.mark.parametrize("sides, noted", [(8, True), (0, False)])
def test_filter_says_when_the_fit_kept_negative_lobes(capsys, sides, noted):
    # A NONNEG weight too small for the kernel leaves lobes: an octagon at rank 4 kept
    # -0.06 of its peak with weight 1 (the default once), and the command said nothing
    # but min/max.
    kernel = dp.kernels.polygon(41, sides, antialias=True) if sides else dp.kernels.disk(15)
    np.save("k.npy", np.asarray(kernel))
    status, err = run(["filter", "--kernel", "k.npy", "--rank", 4, "--weights", "1,1,0"], capsys)
    assert status == 0, err
    lows = json.loads(Path("out/summary.json").read_text())["fitted"]["min"]
    notes = [line for line in err.splitlines() if "keeps negative lobes" in line]
    assert (lows < -1e-3) is noted and len(notes) == int(noted)
    if noted:
        assert "--weights 1,2,0" in notes[0] and f"{lows:.3g}" in notes[0]


@pytest.mark.parametrize(
    "settings, said",
    [
        (("/cache", 0.0), "now in the compilation cache, so the same command again paints"),
        # A JAX_COMPILATION_CACHE_DIR of one's own keeps JAX's threshold of 1 s: the line
        # promised a second run its budget, and paint's small programs compiled again.
        (("/cache", 1.0), "keeps only the programs that took over 1 s to compile"),
        ((None, 0.0), "the compilation cache is off"),
    ],
)
def test_the_compiling_line_says_what_the_cache_keeps(capsys, monkeypatch, settings, said):
    from diffprims._cli import _cache

    monkeypatch.setattr(_cache, "cache_settings", lambda: settings)
    _cache.note_compiling(argparse.Namespace(seconds=5.0, no_cache=False), 4.0, 50)
    assert said in capsys.readouterr().err


def test_filter_reads_an_unsigned_32_bit_tiff_kernel_as_unsigned(capsys, tmp_path):
    # A uint32 TIFF disk at 2^32 - 1 was read as -1 everywhere (Pillow's signed "I"):
    # the kernel negative, the default weights switched, the bank not normalised.
    from .test_image import _grey_32_bit_tiff

    values = np.array([0, 2**32 - 1, 2**32 - 1, 2**31, 0], np.uint32)
    for sample_format in (None, 1):
        path = _grey_32_bit_tiff(tmp_path / f"k{sample_format}.tif", values, sample_format)
        out = tmp_path / f"out{sample_format}"
        status, err = run(["filter", "--kernel", path, "--steps", 2, "-o", out], capsys)
        assert status == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["kernel_peak"] == 2**32 - 1 and summary["normalized"], summary
        assert "negative" not in err


def test_a_full_disk_is_said_with_the_output_folder(capsys, monkeypatch):
    # "failed: OSError: [Errno 28] No space left on device", naming no file or folder.
    import errno

    write_picture("in.png", "RGB")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dp, "save_image", full)
    argv = ["paint", "in.png", "-n", 2, "--steps", 2, "--size", 16, "-q", "-o", "results"]
    status, err = run(argv, capsys)
    assert status == 1 and "No space left on device" in err, err
    assert "results" in err and "choose another folder with -o" in err
    assert not Path("results").exists() or not list(Path("results").iterdir())


def test_a_read_only_file_system_is_not_called_permission_denied(capsys, monkeypatch):
    import types

    write_picture("in.png", "RGB")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    read_only = types.SimpleNamespace(f_flag=os.ST_RDONLY)
    monkeypatch.setattr(os, "statvfs", lambda path: read_only, raising=False)
    status, err = run(["paint", "in.png", "-n", 2, "--steps", 2, "-o", "x"], capsys)
    assert status == 2 and "read-only file system" in err and "permission" not in err, err


def test_a_ctrl_c_after_the_results_are_written_says_so(capsys, monkeypatch):
    # "interrupted" alone read as if the writing had been stopped: the set was whole.
    from diffprims._cli import _outputs

    write_picture("in.png", "RGB")
    original = _outputs.write_all

    def then_ctrl_c(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(_outputs, "write_all", then_ctrl_c)
    argv = ["paint", "in.png", "-n", 2, "--steps", 2, "--size", 16, "-q", "-o", "done"]
    status, err = run(argv, capsys)
    assert status == 130 and "interrupted after the results were written" in err, err
    assert (Path("done") / "summary.json").exists()
    monkeypatch.setattr(
        _outputs, "write_all", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    status, err = run([*argv[:-1], "stopped"], capsys)
    assert status == 130 and err.strip().endswith("interrupted"), err


def test_a_failed_write_names_the_file_that_failed(capsys, monkeypatch):
    # The first output's folder was named, whichever file could not be written.
    import errno

    write_picture("in.png", "RGB")
    save_image = dp.save_image

    def too_large(path, *args, **kwargs):
        if Path(path).name == "r.png":
            raise OSError(errno.EFBIG, "File too large")
        return save_image(path, *args, **kwargs)

    monkeypatch.setattr(dp, "save_image", too_large)
    argv = ["paint", "in.png", "-n", 2, "--steps", 2, "--size", 16, "-q"]
    status, err = run([*argv, "-o", "a/s.json", "-o", "b/r.png"], capsys)
    assert status == 1 and "cannot write 'b/r.png': File too large" in err, err
    assert not Path("a/s.json").exists()
