"""The command line on awkward inputs and outputs: one clear line, never a traceback.

Fast: the bad images are refused before any fit; the outputs' tests run tiny fits.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffprims._cli import main
from diffprims._cli._common import read_image
from diffprims._cli._outputs import plan, write_all

FAST = ["-n", "4", "--steps", "8", "--size", "12", "-q"]


@pytest.fixture(autouse=True)
def _in_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _run(argv, capsys):
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


def _picture(path, mode="RGB"):
    rng = np.random.default_rng(0)
    pixels = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return Path(path)


def _zero_pixel_png() -> bytes:
    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)  # 0 x 5 RGB
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )  # fmt: skip


@pytest.mark.parametrize(
    "name,data,words",
    [
        ("missing.png", None, "No image"),
        ("folder", "dir", "a folder"),
        ("empty.png", b"", "got 'empty.png'"),
        ("junk.png", b"not an image", "got 'junk.png'"),
        ("zero.png", _zero_pixel_png(), "got 'zero.png'"),
        ("cut.png", "cut", "damaged or truncated"),
    ],
    ids=lambda value: value if isinstance(value, str) and "." in value else "",
)
def test_bad_images_exit_2_with_one_line(capsys, name, data, words):
    if data == "dir":
        os.mkdir(name)
    elif data == "cut":
        Path(name).write_bytes(_picture("whole.png").read_bytes()[:100])
    elif data is not None:
        Path(name).write_bytes(data)
    status, err = _run(["paint", name, *FAST, "-o", "out"], capsys)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("diffprims paint: error: ") and words in err
    assert not os.path.exists("out")


@pytest.mark.parametrize("mode,suffix", [("CMYK", ".jpg"), ("P", ".png"), ("1", ".png")])
def test_other_image_modes_read_as_rgb(mode, suffix):
    image = np.asarray(read_image(_picture(f"in{suffix}", mode)))
    assert image.shape == (10, 12, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_an_existing_output_is_named_in_the_singular(capsys):
    image = _picture("in.png")
    Path("a.png").write_bytes(b"x")
    status, err = _run(["paint", image, *FAST, "-o", "a.png"], capsys)
    assert status == 2 and "'a.png' already exists;" not in err and "a.png already exists;" in err
    Path("a.svg").write_bytes(b"x")
    status, err = _run(["paint", image, *FAST, "-o", "a.png", "-o", "a.svg"], capsys)
    assert status == 2 and "a.png, a.svg already exist;" in err


def test_symlinked_outputs_are_written_through():
    os.mkdir("real")
    Path("real/a.png").write_bytes(b"old")
    os.symlink("real/a.png", "link.png")
    os.symlink("real/new/b.svg", "dangling.svg")  # its folder does not exist yet
    files = plan(["link.png", "dangling.svg"], {}, force=True)
    write_all(files, lambda temp, kind: Path(temp).write_text(kind))
    assert os.path.islink("link.png") and os.path.islink("dangling.svg")
    assert Path("real/a.png").read_text() == "png"  # the new file, through the link
    assert Path("real/new/b.svg").read_text() == "svg"
    assert sorted(os.listdir("real")) == ["a.png", "new"]  # no temp folders left
    assert sorted(os.listdir()) == ["dangling.svg", "link.png", "real"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX symbolic links")
def test_an_output_that_is_a_looping_link_is_refused(capsys):
    # It "did not exist" (`exists()` follows links), so no --force was asked for, and
    # the link was replaced by a plain file.
    image = _picture("in.png")
    os.symlink("loop2.png", "loop1.png")
    os.symlink("loop1.png", "loop2.png")
    for extra in ([], ["--force"]):
        status, err = _run(["paint", image, *FAST, "-o", "loop1.png", *extra], capsys)
        assert status == 2 and "'loop1.png' is a symbolic link that loops" in err, err
        assert os.path.islink("loop1.png") and os.readlink("loop1.png") == "loop2.png"


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_an_overwritten_output_keeps_its_permissions(capsys):
    """`--force` over a private (0600) result left it 0644: the staged file now takes
    the replaced file's mode before the rename; a new file gets the usual one."""
    image = _picture("in.png")
    assert _run(["paint", image, *FAST, "-o", "a.png", "-o", "a.json"], capsys)[0] == 0
    new_mode = os.stat("a.json").st_mode & 0o777
    os.chmod("a.png", 0o600)
    argv = ["paint", image, *FAST, "-o", "a.png", "-o", "a.json", "-o", "b.svg", "--force"]
    assert _run(argv, capsys)[0] == 0
    assert os.stat("a.png").st_mode & 0o777 == 0o600
    assert os.stat("a.json").st_mode & 0o777 == new_mode
    assert os.stat("b.svg").st_mode & 0o777 == new_mode


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/fd reopens a pipe")
@pytest.mark.parametrize("command", ["paint", "filter --apply"])
def test_an_image_from_a_pipe_is_read_once(capsys, command):
    """`diffprims paint <(cat a.png)`: the second read of a pipe found nothing ("not a
    raster image"); the pipe's bytes are now read once."""
    data = _picture("in.png", "RGBA").read_bytes()
    read, write = os.pipe()
    try:
        os.write(write, data)  # a small PNG fits the pipe's buffer
        os.close(write)
        argv = [*command.split(), f"/dev/fd/{read}", "-q", "-o", "out"]
        argv += FAST[:-1] if command == "paint" else ["--kernel", "box:3", "--steps", "2"]
        status, err = _run(argv, capsys)
    finally:
        os.close(read)
    assert status == 0, err
    assert Path("out/summary.json").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
@pytest.mark.parametrize("command", ["paint", "filter --apply"])
def test_a_named_pipe_with_no_writer_is_refused_at_once(capsys, command):
    """A named pipe no one writes to hung the command (waiting for a writer); it is
    refused with one line. (A watchdog opens it for writing after 60 s, so the test
    ends even where the command waits.)"""
    os.mkfifo("in.png")
    done = threading.Event()

    def watchdog():
        if not done.wait(60):
            os.close(os.open("in.png", os.O_WRONLY))

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        status, err = _run([*command.split(), "in.png", "-q"], capsys)
    finally:
        done.set()
    assert status == 2 and err.count("\n") == 1
    assert "'in.png' is a pipe or device with nothing to read" in err


@pytest.mark.parametrize("quiet", [False, True])
@pytest.mark.parametrize("command", ["paint", "filter --apply"])
def test_an_animated_input_is_said_in_one_line_once(capsys, command, quiet):
    """An animated GIF's first frame is read with one line on stderr (none with -q), not
    a Python UserWarning block printed twice (once per read)."""
    frames = [Image.fromarray(np.full((10, 12, 3), 60 * k, np.uint8)) for k in range(3)]
    frames[0].save("anim.gif", save_all=True, append_images=frames[1:])
    argv = [*command.split(), "anim.gif", "-o", "out", *(["-q"] if quiet else [])]
    argv += FAST[:-1] if command == "paint" else ["--kernel", "box:3", "--steps", "2"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, err = _run(argv, capsys)
    assert status == 0, err
    assert [str(w.message) for w in caught] == []
    note = "'anim.gif' holds several frames (an animation or a multi-page file): using the first"
    assert err.count(note) == (0 if quiet else 1)
    assert "UserWarning" not in err and (err == "") == quiet


@pytest.mark.parametrize("size, fit", [(64, "100x1, 1 px"), (256, "200x2, 2 px")])
def test_a_strip_is_painted_in_place_at_its_own_size(capsys, size, fit):
    """A 1000 x 10 strip: rounded to the longer side, it was fitted at 256 x 3 (a frame
    a quarter wider than the strip) or at 64 x 1 (a third as wide); the painting then
    sat in the wrong place in result.png. Its fit keeps the ratio, and a fit one pixel
    across is said."""
    pixels = np.full((10, 1000, 3), 255, np.uint8)
    pixels[:, 600:800] = (255, 0, 0)
    Image.fromarray(pixels).save("strip.png")
    argv = ["paint", "strip.png", "-n", "3", "--steps", "150", "--size", size, "-o", "out"]
    status, err = _run(argv, capsys)
    assert status == 0, err
    assert f"fitted at {fit} high" in err
    row = np.asarray(Image.open("out/result.png").convert("RGB"), int)[5]
    red = np.nonzero((row[:, 0] > 200) & (row[:, 1] < 100))[0]
    assert abs(red.min() - 600) <= 20 and abs(red.max() - 799) <= 20, (red.min(), red.max())
