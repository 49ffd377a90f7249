"""The `diffprims` command line, end to end on tiny images."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import resvg_py
from PIL import Image

import diffprims as dp
from diffprims._cli import main


def run(argv, capsys):
    """(exit status, stderr) of `diffprims *argv`, run in this process."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse: --help, usage errors
        status = exit.code
    return status, capsys.readouterr().err


def write_picture(path, mode, size=(32, 24)):
    """A small picture with structure (two blobs on a gradient) in any Pillow mode."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([x, y, 0.5 + 0 * x], axis=-1)
    rgb[(x - 0.3) ** 2 + (y - 0.3) ** 2 < 0.03] = [0.9, 0.2, 0.1]
    rgb[(x - 0.7) ** 2 + (y - 0.5) ** 2 < 0.02] = [0.1, 0.3, 0.9]
    picture = Image.fromarray((rgb * 255).astype(np.uint8)).convert(mode)
    picture.save(path)
    return path


FAST = ["-n", 6, "--steps", 30, "--size", 16, "--frames", 4, "-q"]


@pytest.mark.parametrize("mode,suffix", [("RGB", ".png"), ("RGBA", ".png"), ("L", ".png"),
                                         ("RGB", ".jpg")])  # fmt: skip
def test_paint_end_to_end(tmp_path, capsys, mode, suffix):
    image = write_picture(tmp_path / f"in{suffix}", mode)
    out = tmp_path / "out"
    status, err = run(["paint", image, *FAST, "-o", out], capsys)
    assert status == 0, err
    assert err == ""  # --quiet
    files = {"result.png", "result.svg", "progress.gif", "model.eqx", "summary.json"}
    assert {p.name for p in out.iterdir()} == files
    summary = json.loads((out / "summary.json").read_text())
    result = dp.load_image(out / "result.png")
    assert result.shape == (24, 32, 3)  # the input's full resolution
    # The PSNR in the summary is that of result.png against the input.
    assert summary["psnr"] == pytest.approx(float(dp.psnr(result, dp.load_image(image))), abs=1e-3)
    assert summary["steps"] == 30 and summary["num_shapes"] == 6 and summary["seconds"] > 0
    # The SVG drawn by an independent renderer matches result.png.
    png = bytes(resvg_py.svg_to_bytes(svg_string=(out / "result.svg").read_text()))
    svg = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255
    assert float(dp.psnr(svg, result)) >= 35.0
    with Image.open(out / "progress.gif") as gif:
        assert gif.n_frames == 4
    model = dp.load(out / "model.eqx")
    assert isinstance(model, dp.Circles) and model.num_shapes == 6


def test_paint_render_size_and_shape(tmp_path, capsys):
    image = write_picture(tmp_path / "in.png", "RGB")
    out = tmp_path / "o"
    status, err = run(
        ["paint", image, *FAST, "--render-size", 64, "--shape", "Rectangles", "-o", out], capsys
    )
    assert status == 0, err
    assert dp.load_image(out / "result.png").shape == (48, 64, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["render_size"] == [48, 64] and summary["shape"] == "rectangles"
    reference = dp.load_image(image, size=(48, 64))
    expected = float(dp.psnr(dp.load_image(out / "result.png"), reference))
    assert summary["psnr"] == pytest.approx(expected, abs=1e-3)
    assert isinstance(dp.load(out / "model.eqx"), dp.Rectangles)


def test_paint_with_a_time_budget_uses_the_paint_recipe(tmp_path, capsys):
    image = write_picture(tmp_path / "in.png", "RGB")
    out = tmp_path / "o"
    argv = ["paint", image, "-n", 6, "--size", 16, "--frames", 3, "--seconds", 2, "-q"]
    status, err = run([*argv, "-o", out], capsys)
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["seconds_budget"] == 2 and summary["settings"]["softness"] == 0.5
    assert summary["steps"] >= 1 and summary["psnr"] > 15
    with Image.open(out / "progress.gif") as gif:
        assert gif.n_frames == 3  # one frame per round
    assert dp.load(out / "model.eqx").num_shapes == 6


def test_paint_reports_progress(tmp_path, capsys):
    image = write_picture(tmp_path / "in.png", "RGB")
    status, err = run(["paint", image, *FAST[:-1], "-o", tmp_path / "o"], capsys)
    assert status == 0
    assert "30/30" in err and "PSNR" in err


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
    from diffprims._cli import _build_parser

    text = _build_parser()._subparsers._group_actions[0].choices["paint"].format_help()  # pyright: ignore
    for option in (
        "-n",
        "--shape",
        "--steps",
        "--size",
        "--seed",
        "-o",
        "--render-size",
        "--quiet",
    ):
        assert option in text
    for name in ("circles", "rectangles"):
        assert name in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["paint", "--steps", "0"], "--steps"),
        (["paint", "--steps", "many"], "--steps"),
        (["paint", "-n", "-3"], "-n"),
        (["paint", "--batch", "2"], "--batch"),
        (["paint", "{missing}"], "No image"),
        (["paint", "{text}"], "notes.txt"),
        (["paint", "{folder}"], "folder"),
        (["paint", "--shape", "hexagons"], "hexagons"),
        (["paint", "{image}", "-o", "{text}"], "not a folder"),
        (["paint", "--frobnicate"], "unrecognized"),
        (["bogus"], "invalid choice"),
        ([], "required"),
        (["filter", "--kernel", "blob:5"], "NAME:SIZE"),
        (["filter", "--kernel", "disk:x"], "SIZE"),
        (["filter", "--kernel", "disk:5", "--rank", "9"], "rank"),
        (["filter", "--weights", "1,2"], "--weights"),
        (["filter", "--apply", "{missing}"], "No image"),
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


@pytest.mark.skipif(not hasattr(dp, "SeparableFilters"), reason="filter banks not built yet")
def test_filter_end_to_end(tmp_path, capsys):
    image = write_picture(tmp_path / "in.png", "RGB")
    out = tmp_path / "f"
    status, err = run(
        ["filter", "--kernel", "disk:9", "--rank", 2, "--steps", 20, "--apply", image,
         "-o", out, "-q"], capsys,
    )  # fmt: skip
    assert status == 0, err
    names = {"kernel.png", "vectors.json", "vectors.npz", "blurred.png", "summary.json"}
    assert {p.name for p in out.iterdir()} == names
    vectors = json.loads((out / "vectors.json").read_text())
    assert np.shape(vectors["vertical"]) == (2, 9) and np.shape(vectors["horizontal"]) == (2, 9)
    with np.load(out / "vectors.npz") as npz:
        np.testing.assert_allclose(npz["vertical"], vectors["vertical"], rtol=1e-6)
    assert dp.load_image(out / "blurred.png").shape == (24, 32, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fitted"]["min"] > summary["svd"]["min"]  # the fit removes negative lobes
    with Image.open(out / "kernel.png") as picture:
        assert picture.size == (9 * 3 + 4, 9)
