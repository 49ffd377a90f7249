"""Image I/O and PSNR: any mode in, (H, W, 3) float32 in [0, 1] out; atomic writes."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

import diffprims as dp
from diffprims._aspect import ASPECT_TOLERANCE, longer_side


def _write(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_round_trip(tmp_path, getkey):
    import jax

    image = jax.random.uniform(getkey(), (9, 13, 3))
    path = dp.save_image(tmp_path / "x.png", image)
    loaded = dp.load_image(path)
    assert loaded.shape == (9, 13, 3) and loaded.dtype == jnp.float32
    np.testing.assert_allclose(loaded, image, atol=0.5 / 255 + 1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary left behind


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "LA"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    base = Image.new("RGB", (6, 4), (255, 0, 0))
    picture = base.convert(mode) if mode != "I;16" else Image.new("I;16", (6, 4), 65535)
    picture.save(tmp_path / "in.png")
    image = dp.load_image(tmp_path / "in.png")
    assert image.shape == (4, 6, 3) and image.dtype == jnp.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def _png16(path, samples, transparent=None):
    """`samples` (H, W, 1|2|3|4) uint16 (grey, grey + alpha, RGB, RGBA) as a 16-bit PNG
    (`transparent`: a tRNS key, a grey value or an RGB triple), its rows
    filtered by each of PNG's five filters in turn (Sub, Average and Paeth reach back one
    whole 4-, 6- or 8-byte pixel)."""
    import struct
    import zlib

    height, width, channels = samples.shape
    rows = samples.astype(">u2").view(np.uint8).reshape(height, -1).astype(np.int64)
    step = 2 * channels
    data, prior = b"", np.zeros_like(rows[0])
    for index, row in enumerate(rows):
        a = np.concatenate([np.zeros(step, np.int64), row[:-step]])
        c = np.concatenate([np.zeros(step, np.int64), prior[:-step]])
        p = a + prior - c
        pa, pb, pc = np.abs(p - a), np.abs(p - prior), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, prior, c))
        kind = index % 5
        predicted = [0 * a, a, prior, (a + prior) // 2, paeth][kind]
        data += bytes([kind]) + ((row - predicted) % 256).astype(np.uint8).tobytes()
        prior = row

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(
        ">IIBBBBB", width, height, 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0
    )
    key = np.atleast_1d(transparent) if transparent is not None else None
    extra = chunk(b"tRNS", struct.pack(f">{len(key)}H", *key)) if key is not None else b""
    body = (
        chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")
    )
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_png_keeps_every_bit(tmp_path, channels):
    # Neighbouring values 1/65535 apart, which 8 bits would make equal.
    samples = np.random.default_rng(0).integers(0, 65536, (7, 6, channels), dtype=np.uint16)
    samples[0, :2, :3] = [[30000, 30001, 30002], [30255, 30256, 30257]]
    samples[..., 3:] = 65535  # opaque: the colours as they are
    image = np.asarray(dp.load_image(_png16(tmp_path / "deep.png", samples)))
    np.testing.assert_allclose(image, samples[..., :3] / 65535.0, rtol=0, atol=1e-7)
    assert len(np.unique(image[0, :2])) == 6
    if channels == 4:  # alpha at 16 bits too, shown over white
        samples[..., 3] = samples[..., 0]
        image = np.asarray(dp.load_image(_png16(tmp_path / "alpha.png", samples)))
        rgb, opacity = samples[..., :3] / 65535.0, samples[..., 3:] / 65535.0
        np.testing.assert_allclose(image, 1.0 + opacity * (rgb - 1.0), rtol=0, atol=1e-6)
    # `square` crops (rows 0 to 5 of 7) and `size` resizes the 16-bit values as they are.
    square = np.asarray(dp.load_image(tmp_path / "deep.png", square=True))
    np.testing.assert_allclose(square, samples[:6, :, :3] / 65535.0, rtol=0, atol=1e-7)


def test_sixteen_bit_colour_falls_back_to_8_bits_where_pillow_refuses_the_low_bytes(
    tmp_path, monkeypatch
):
    # The low bytes come from Pillow's internals (a second read with another unpacker):
    # a Pillow whose decoder refuses it must still load the image, at 8 bits.
    import diffprims._image_formats as formats_module

    monkeypatch.setattr(formats_module, "_LOW_BYTES", {"RGB;16B": "no such rawmode"})
    samples = np.random.default_rng(1).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    image = np.asarray(dp.load_image(_png16(tmp_path / "deep.png", samples)))
    np.testing.assert_allclose(image, (samples >> 8) / 255.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("alpha", ["opaque", "varying"])
def test_sixteen_bit_grey_alpha_png_keeps_every_bit(tmp_path, alpha):
    # Pillow reads 16-bit grey + alpha as 8-bit RGBA; grey and alpha keep all 16 bits,
    # as 16-bit grey does, and the transparency is shown over white.
    samples = np.random.default_rng(2).integers(0, 65536, (7, 6, 2), dtype=np.uint16)
    samples[0, :4, 0] = [30000, 30001, 30255, 30256]  # equal at 8 bits
    samples[..., 1] = 65535 if alpha == "opaque" else samples[..., 1]
    samples[1, :2, 1] = [40000, 40001]
    image = np.asarray(dp.load_image(_png16(tmp_path / "la.png", samples)))
    grey, opacity = samples[..., :1] / 65535.0, samples[..., 1:] / 65535.0
    expected = np.repeat(1.0 + opacity * (grey - 1.0), 3, axis=-1)
    np.testing.assert_allclose(image, expected, rtol=0, atol=1e-6)
    if alpha == "opaque":
        assert len(np.unique(image[0, :4, 0])) == 4
    square = np.asarray(dp.load_image(tmp_path / "la.png", square=True))
    np.testing.assert_allclose(square, expected[:6], rtol=0, atol=1e-6)
    # A Pillow that refuses the second read still loads the image, at 8 bits.
    grey = np.asarray(Image.open(tmp_path / "la.png").convert("RGBA"))[..., :1] / 255.0
    import diffprims._image_formats as formats_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(formats_module, "_LOW_BYTES", {"LA;16B": "no such rawmode"})
        eight = np.asarray(dp.load_image(tmp_path / "la.png"))
    opacity = (samples[..., 1:] >> 8) / 255.0
    np.testing.assert_allclose(eight, np.repeat(1.0 + opacity * (grey - 1.0), 3, -1), atol=1e-6)


def test_sixteen_bit_transparent_colour_is_matched_at_16_bits(tmp_path):
    samples = np.full((2, 2, 3), 1000, np.uint16)
    samples[0, 0] = [1000, 1000, 1001]  # the same colour at 8 bits
    samples[1, 1] = [0, 0, 0]
    image = np.asarray(dp.load_image(_png16(tmp_path / "key.png", samples, (1000, 1000, 1000))))
    np.testing.assert_allclose(image[0, 0], [1000 / 65535, 1000 / 65535, 1001 / 65535], atol=1e-7)
    np.testing.assert_allclose(image[0, 1], 1.0)  # transparent: white
    np.testing.assert_allclose(image[1, 1], 0.0)


def test_sixteen_bit_transparent_grey_is_matched_at_16_bits(tmp_path):
    # Pillow's 8-bit conversion clamped every grey to white; the key was never seen.
    samples = np.full((2, 2, 1), 5000, np.uint16)
    samples[0, 0], samples[1, 1] = 60000, 5001
    image = np.asarray(dp.load_image(_png16(tmp_path / "key.png", samples, 5000)))
    np.testing.assert_allclose(image[0, 0], 60000 / 65535, atol=1e-7)
    np.testing.assert_allclose(image[1, 1], 5001 / 65535, atol=1e-7)
    np.testing.assert_allclose(image[0, 1], 1.0)  # transparent: white


@pytest.mark.parametrize("channels", [1, 3])
def test_the_command_line_keeps_a_16_bit_keyed_transparency(tmp_path, channels):
    # `filter --apply` reads an image's own channels: through Pillow's RGBA conversion a
    # keyed 16-bit grey came out white everywhere, a keyed colour never transparent.
    from diffprims._cli._common import read_image_channels

    samples = np.full((2, 2, channels), 5000, np.uint16)
    samples[0, 0] = 60000
    pixels = read_image_channels(_png16(tmp_path / "key.png", samples, [5000] * channels))
    assert pixels.shape == (2, 2, 4)
    np.testing.assert_allclose(pixels[..., 3], [[1, 0], [0, 0]])
    np.testing.assert_allclose(pixels[0, 0, :3], 60000 / 65535, atol=1e-7)


def test_a_16_bit_tiff_stored_plane_by_plane_is_refused(tmp_path):
    # Pillow reads its planes as garbage (0.95 off); interleaved, it reads exactly.
    tifffile = pytest.importorskip("tifffile")
    samples = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5) * 1000
    tifffile.imwrite(tmp_path / "planes.tif", samples, photometric="rgb", planarconfig="separate")
    with pytest.raises(ValueError, match="16-bit TIFF stored plane by plane.*interleaved"):
        dp.load_image(tmp_path / "planes.tif")
    tifffile.imwrite(tmp_path / "pixels.tif", np.moveaxis(samples, 0, -1), photometric="rgb")
    image = np.asarray(dp.load_image(tmp_path / "pixels.tif"))
    np.testing.assert_allclose(image, np.moveaxis(samples, 0, -1) / 65535, atol=1e-7)


def test_signed_and_float_colour_tiffs_are_refused_saying_why(tmp_path):
    # A signed 16-bit TIFF lost its negative half (clipped to 0, the rest / 65535); a
    # float RGB TIFF, which Pillow cannot read, was "not a raster image file".
    tifffile = pytest.importorskip("tifffile")
    signed = np.array([[-30000, 0], [100, 30000]], np.int16)
    tifffile.imwrite(tmp_path / "signed.tif", signed)
    with pytest.raises(ValueError, match=r"values >= 0.*down to -30000.*save it unsigned"):
        dp.load_image(tmp_path / "signed.tif")
    tifffile.imwrite(tmp_path / "positive.tif", np.abs(signed))  # signed, none below 0
    np.testing.assert_allclose(dp.load_image(tmp_path / "positive.tif")[1, 1], 30000 / 65535)
    tifffile.imwrite(
        tmp_path / "float.tif", np.full((4, 4, 3), 0.5, np.float32), photometric="rgb"
    )
    with pytest.raises(ValueError, match=r"a TIFF it cannot: damaged or truncated, or in a pixel"):
        dp.load_image(tmp_path / "float.tif")
    (tmp_path / "cut.tif").write_bytes(b"II*\0" + bytes(20))  # a TIFF's start, then nothing
    with pytest.raises(ValueError, match=r"damaged or truncated"):
        dp.load_image(tmp_path / "cut.tif")
    tifffile.imwrite(tmp_path / "grey.tif", np.full((4, 4), 0.5, np.float32))
    np.testing.assert_allclose(dp.load_image(tmp_path / "grey.tif"), 0.5)


@pytest.mark.parametrize("suffix", [".gif", ".png", ".tif"])
def test_several_frames_read_the_first_with_a_warning(tmp_path, suffix):
    red, blue = (Image.new("RGB", (4, 3), colour) for colour in ("red", "blue"))
    red.save(tmp_path / f"a{suffix}", save_all=True, append_images=[blue])
    with pytest.warns(UserWarning, match="first frame.*im.seek"):
        image = dp.load_image(tmp_path / f"a{suffix}")
    np.testing.assert_allclose(image, np.broadcast_to([1.0, 0.0, 0.0], (3, 4, 3)), atol=1e-6)
    red.save(tmp_path / f"still{suffix}")
    dp.load_image(tmp_path / f"still{suffix}")  # one frame: no warning (they are errors here)


def _grey_32_bit_tiff(path, values, sample_format=None):
    """A baseline little-endian TIFF of one row of 32-bit grey samples (Pillow writes
    only signed ones), with SampleFormat (tag 339) as given or absent."""
    import struct

    data = np.asarray(values, "<u4").tobytes()
    tags = [(256, 4, len(values)), (257, 4, 1), (258, 3, 32), (259, 3, 1), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, 1), (279, 4, len(data))]  # fmt: skip
    if sample_format is not None:
        tags.append((339, 3, sample_format))
    ifd_size = 2 + 12 * len(tags) + 4
    tags[5] = (273, 4, 8 + ifd_size)  # the strip right after the directory
    entries = b"".join(
        struct.pack("<HHI", tag, kind, 1)
        + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        for tag, kind, value in tags
    )
    header = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", len(tags))
    path.write_bytes(header + entries + struct.pack("<I", 0) + data)
    return path


@pytest.mark.parametrize("sample_format", [None, 1])
def test_unsigned_32_bit_tiff_keeps_its_values(tmp_path, sample_format):
    # Pillow reads these as signed: values past 2^31 wrapped negative and were clipped.
    truth = np.array([0.0, 0.233, 0.466, 0.698, 0.931, 1.0])
    values = np.round(truth * (2**32 - 1)).astype(np.uint64)
    path = _grey_32_bit_tiff(tmp_path / "u32.tif", values, sample_format)
    image = np.asarray(dp.load_image(path))
    np.testing.assert_allclose(image[0, :, 0], truth, atol=1e-6)


def _rgb_16_bit_tiff(path, values, order):
    """A baseline uncompressed TIFF of `(H, W, 3)` 16-bit samples in byte `order` ("II"
    little-endian, "MM" big-endian)."""
    import struct

    e = "<" if order == "II" else ">"
    height, width, _ = values.shape
    data = np.asarray(values, f"{e}u2").tobytes()
    bits_at = 8 + 2 + 12 * 9 + 4  # after the directory: BitsPerSample's three, then the strip
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, bits_at), (259, 3, 1, 1),
            (262, 3, 1, 2), (273, 4, 1, bits_at + 6), (277, 3, 1, 3), (278, 4, 1, height),
            (279, 4, 1, len(data))]  # fmt: skip
    entries = b"".join(
        struct.pack(f"{e}HHI", tag, kind, count)
        + (
            struct.pack(f"{e}HH", value, 0)
            if kind == 3 and count == 1
            else struct.pack(f"{e}I", value)
        )
        for tag, kind, count, value in tags
    )
    header = order.encode() + struct.pack(f"{e}HIH", 42, 8, len(tags))
    bits = struct.pack(f"{e}HHH", 16, 16, 16)
    path.write_bytes(header + entries + struct.pack(f"{e}I", 0) + bits + data)
    return path


@pytest.mark.parametrize("order", ["II", "MM"])
def test_16_bit_rgb_tiff_keeps_its_depth(tmp_path, order):
    # Read at 8 bits (1000 / 65535 came back as 3 / 255), though PNGs kept 16.
    values = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000 + 7).astype(np.uint16)
    path = _rgb_16_bit_tiff(tmp_path / "rgb16.tif", values, order)
    np.testing.assert_allclose(dp.load_image(path), values / 65535.0, atol=1e-7)


def test_transparent_pixels_show_white(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)  # fully transparent black
    _write(tmp_path / "t.png", pixels, "RGBA")
    np.testing.assert_allclose(dp.load_image(tmp_path / "t.png"), 1.0)


def test_size_and_square(tmp_path):
    _write(tmp_path / "wide.png", np.zeros((50, 100, 3), np.uint8))
    assert dp.load_image(tmp_path / "wide.png", size=20).shape == (10, 20, 3)
    assert dp.load_image(tmp_path / "wide.png", size=(7, 9)).shape == (7, 9, 3)
    assert dp.load_image(tmp_path / "wide.png", size=20, square=True).shape == (20, 20, 3)
    assert dp.load_image(tmp_path / "wide.png").shape == (50, 100, 3)
    _write(tmp_path / "photo.png", np.zeros((200, 300, 3), np.uint8))  # 3:2
    assert dp.load_image(tmp_path / "photo.png", size=256).shape == (170, 255, 3)  # not 171


@pytest.mark.parametrize(
    "height, width", [(4000, 6000), (2848, 4288), (1080, 1920), (150, 1000), (3, 500), (767, 1023),
                      (4032, 3024), (1800, 4000), (999, 1000), (7, 11)],
)  # fmt: skip
@pytest.mark.parametrize("side", [16, 255, 256, 512])
def test_a_size_keeps_the_aspect_ratio_as_near_as_whole_pixels_allow(height, width, side):
    # Shapes live in a frame W / H wide: a copy at 256 x 171 of a 3:2 photo (1.497) put
    # a fitted painting's right edge 12 px off at the photo's 6000 px. A smaller size
    # only where it keeps the ratio to ASPECT_TOLERANCE px, else the sizes rounded.
    rows, cols = longer_side(height, width, side)
    scale = side / max(height, width)
    plain = max(1, round(height * scale)), max(1, round(width * scale))
    ratio = max(height, width) / min(height, width)
    short, long = sorted((rows, cols))
    assert max(rows, cols) <= side and (rows <= cols) == (height <= width)
    if (rows, cols) != plain:  # kept to 0.02 px within 10 %, or plain a pixel off
        faithful = abs(long - short * ratio) <= ASPECT_TOLERANCE and long >= 0.9 * side
        rounded = abs(long - short * ratio) <= 0.5 and _far_edge_off(plain, ratio) > 1
        assert faithful or rounded
    if (height, width) == (4000, 6000) and side == 256:
        assert (rows, cols) == (170, 255)


def _off(rows, cols, height, width):
    return abs(cols / rows * height / width - 1)


def _far_edge_off(shape, ratio):
    return abs(max(shape) - min(shape) * ratio)


@pytest.mark.parametrize(
    "height, width, expected",
    [(20, 4000, (1, 200)), (7, 1000, (1, 143)), (100, 1999, (12, 240)), (4000, 333, (252, 21))],
)
def test_a_very_wide_or_tall_image_is_not_squeezed_into_the_longer_side(height, width, expected):
    # Rounded, 4000 x 20 at 256 px was 256 x 1: a frame 28 % wider than the photo's, so
    # the painting rendered at the photo's size drew its right part off the edge.
    assert longer_side(height, width, 256) == expected
    rows, cols = expected
    assert _off(rows, cols, height, width) <= 0.0011
    # A photo whose rounded size is off by less than a pixel keeps that size (a first
    # version of this rule cut 5785 x 5629 at 64 px to 37 x 36 for a 0.3 px error).
    assert longer_side(5785, 5629, 64) == (64, 62)
    assert longer_side(2470, 4872, 256) == (130, 256)


def test_a_size_never_keeps_the_aspect_ratio_worse_than_rounding():
    rng = np.random.default_rng(0)
    for height, width, side in zip(
        *rng.integers(100, 6000, (2, 2000)), rng.choice([64, 256], 2000)
    ):
        rows, cols = longer_side(int(height), int(width), int(side))
        scale = side / max(height, width)
        plain = max(1, round(height * scale)), max(1, round(width * scale))
        assert _off(rows, cols, height, width) <= _off(*plain, height, width) + 1e-12
        # Cut by more than 10 % only where rounding put the far edge a pixel off.
        ratio = max(height, width) / min(height, width)
        assert max(rows, cols) >= 0.9 * side or _far_edge_off(plain, ratio) > 1


@pytest.mark.parametrize(
    "orientation, size, square, shape",
    [(None, 96, False, (72, 96)), (6, 96, False, (96, 72)), (None, 64, True, (64, 64)),
     (None, (50, 120), False, (50, 120))],
)  # fmt: skip
def test_a_large_jpeg_loaded_small_is_decoded_small(
    tmp_path, monkeypatch, orientation, size, square, shape
):
    # A 12 MP photo loaded at 256 px took 1.1 s decoded whole, 0.1 s with Pillow's
    # JPEG draft (a reduced DCT decode keeping twice the final size, then Lanczos).
    y, x = np.mgrid[0:900, 0:1200] / 900.0
    rgb = np.stack([np.sin(9 * x) * np.cos(7 * y), x * y, (x + y) % 0.3], -1)
    picture = Image.fromarray((np.clip(0.5 + 0.5 * rgb, 0, 1) * 255).astype(np.uint8))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation  # a quarter turn: the loaded picture is 900 x 1200
    path = tmp_path / "photo.jpg"
    picture.save(path, quality=95, exif=exif)
    drafted = []
    draft = JpegImageFile.draft
    monkeypatch.setattr(
        JpegImageFile, "draft", lambda self, *a: drafted.append(a[1]) or draft(self, *a)
    )
    small = np.asarray(dp.load_image(path, size=size, square=square))
    assert small.shape == (*shape, 3)
    assert drafted and min(drafted[0]) >= 2 * min(shape)  # twice the final size kept
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, *a: None)  # decoded whole
    whole = np.asarray(dp.load_image(path, size=size, square=square))
    assert not np.array_equal(small, whole)  # the draft did decode less
    assert 10 * np.log10(1 / np.mean((small - whole) ** 2)) > 40  # and looks the same


def test_a_small_or_png_picture_is_decoded_whole(tmp_path, monkeypatch):
    drafted = []
    draft = JpegImageFile.draft
    monkeypatch.setattr(
        JpegImageFile, "draft", lambda self, *a: drafted.append(a) or draft(self, *a)
    )
    picture = Image.fromarray(np.zeros((300, 400, 3), np.uint8))
    picture.save(tmp_path / "a.png")
    picture.save(tmp_path / "a.jpg")
    dp.load_image(tmp_path / "a.png", size=32)  # not a JPEG
    dp.load_image(tmp_path / "a.jpg", size=300)  # less than a halving to go
    dp.load_image(tmp_path / "a.jpg")  # its own size
    assert drafted == []


def test_demo_image_is_bundled():
    image = dp.load_image(dp.demo_image_path(), size=32)
    assert image.shape == (32, 32, 3)
    assert 0.1 < float(image.mean()) < 0.9


def test_psnr():
    a = jnp.zeros((4, 4, 3))
    np.testing.assert_allclose(dp.psnr(a + 0.1, a), 20.0, rtol=1e-5)
    assert float(dp.psnr(a, a)) == np.inf
    with pytest.raises(ValueError, match="same shape"):
        dp.psnr(a, jnp.zeros((4, 4, 1)))


@pytest.mark.parametrize("max_value", [1.0, 255.0, "array"])
def test_psnr_gradient_is_finite_at_equal_images(max_value):
    # Equal images give inf, whose gradient was 0 * inf = NaN; an exact match is the
    # optimum, so the gradient there is 0. Other values (and their gradients) unchanged.
    import jax

    peak = jnp.asarray(2.0) if max_value == "array" else max_value  # an array: not compiled
    a = jnp.linspace(0.0, 1.0, 48, dtype=jnp.float32).reshape(4, 4, 3)
    value, grad = jax.value_and_grad(lambda x: dp.psnr(x, a, max_value=peak))(a)
    assert float(value) == np.inf and grad.dtype == jnp.float32
    np.testing.assert_array_equal(grad, 0.0)
    np.testing.assert_array_equal(jax.grad(lambda x: dp.psnr(a, x, max_value=peak))(a), 0.0)
    b = a + 0.1
    value, grad = jax.value_and_grad(lambda x: dp.psnr(x, a, max_value=peak))(b)
    mse = np.mean(np.square(np.asarray(b, np.float64) - np.asarray(a, np.float64)))
    np.testing.assert_allclose(value, 10.0 * np.log10(float(peak) ** 2 / mse), rtol=1e-6)
    # d/dx 10 log10(p² / mse) = -10 / (ln 10 mse) * 2 (x - a) / n
    expected = -10.0 / (np.log(10.0) * 0.01) * 2 * 0.1 / a.size
    np.testing.assert_allclose(grad, expected, rtol=1e-4)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No image"):
        dp.load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="Pillow can read"):
        dp.load_image(tmp_path / "text.png")
    _write(tmp_path / "ok.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="size"):
        dp.load_image(tmp_path / "ok.png", size=0)


def test_save_errors(tmp_path):
    with pytest.raises(TypeError, match="float"):
        dp.save_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="suffix"):
        dp.save_image(tmp_path / "a.unknown", jnp.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        dp.save_image(tmp_path / "a.png", jnp.full((4, 4, 3), jnp.nan))
    with pytest.raises(ValueError, match="'.psd', not a raster format it writes"):
        dp.save_image(tmp_path / "a.psd", jnp.zeros((4, 4, 3)))  # Pillow only reads PSD
    for suffix in (".eps", ".pdf", ".xbm", ".im"):  # Pillow writes them; load_image refuses
        with pytest.raises(ValueError, match=f"'{suffix}', not a raster format"):
            dp.save_image(tmp_path / f"a{suffix}", jnp.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="no suffix"):
        dp.save_image(tmp_path / "a", jnp.zeros((4, 4, 3)))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "name,channels,size,said",
    [("a.bmp", 4, (8, 8), "without the alpha"), ("a.ico", 3, (300, 400), "at 256x192")],
)
def test_save_refuses_what_would_not_load_back(tmp_path, name, channels, size, said):
    # A BMP drops the alpha (a transparent picture came back opaque black); an ICO
    # shrinks to at most 256 x 256. Both were written silently.
    image = np.zeros((*size, channels), np.float32)
    with pytest.raises(ValueError, match=said):
        dp.save_image(tmp_path / name, image)
    assert not os.listdir(tmp_path)
    dp.save_image(tmp_path / "a.png", image)  # the fix the message gives
    dp.save_image(tmp_path / "b.ico", np.zeros((16, 16, 3), np.float32))  # small: fine


def test_save_refuses_a_gif_of_more_than_256_colours(tmp_path):
    # Quantised in silence (an error of 0.22 after reloading).
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="256 colours"):
        dp.save_image(tmp_path / "a.gif", image)
    assert not os.listdir(tmp_path)
    few = np.round(image * 3) / 3  # 64 colours: held exactly
    dp.save_image(tmp_path / "b.gif", few)
    np.testing.assert_allclose(dp.load_image(tmp_path / "b.gif"), few, atol=1 / 255)


def test_save_rgba_as_jpeg_is_refused_with_the_fixes(tmp_path):
    rgba = jnp.full((4, 4, 4), 0.5)
    with pytest.raises(ValueError, match="RGBA") as error:
        dp.save_image(tmp_path / "a.jpg", rgba)
    assert "JPEG" in str(error.value) and "image[..., :3]" in str(error.value)
    assert ".png" in str(error.value)
    assert not os.listdir(tmp_path)
    # Each fix the message names works.
    dp.save_image(tmp_path / "a.jpg", rgba[..., :3])
    dp.save_image(tmp_path / "b.png", rgba)
    over_white = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]
    np.testing.assert_allclose(
        dp.load_image(tmp_path / "b.png"), over_white, atol=1 / 255
    )  # as `load_image` shows transparency


def test_square_must_be_a_bool():
    # "no" is true: it cropped.
    with pytest.raises(TypeError, match="`square` must be True or False"):
        dp.load_image(dp.demo_image_path(), square="no")  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_save_image_writes_16_bits(tmp_path, channels):
    # Every sample to 1/65535 (8 bits: 1/255), read back by Pillow and `load_image`.
    image = np.random.default_rng(channels).random((9, 13, channels)).astype(np.float32)
    path = dp.save_image(tmp_path / "deep.png", image, bits=16)
    with Image.open(path) as picture:
        samples = np.asarray(picture) if channels == 1 else None
        assert picture.mode == {1: "I;16", 3: "RGB", 4: "RGBA"}[channels]
    if samples is not None:
        np.testing.assert_array_equal(samples, np.round(image[..., 0] * 65535))
    back = np.asarray(dp.load_image(path), np.float64)
    want = np.repeat(image, 3, -1) if channels == 1 else image[..., :3]
    if channels == 4:  # shown over white
        want = 1.0 + image[..., 3:] * (image[..., :3] - 1.0)
    assert np.abs(back - want).max() < 2e-5


def test_save_image_16_bits_wants_a_png_and_8_or_16(tmp_path):
    image = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"`bits=16` writes PNG files only.*\.png"):
        dp.save_image(tmp_path / "a.jpg", image, bits=16)
    with pytest.raises(ValueError, match="`bits` must be 8 or 16; got 12"):
        dp.save_image(tmp_path / "a.png", image, bits=12)
    for bits in (True, 8.0, "16"):
        with pytest.raises(TypeError, match="`bits` must be the int 8 or 16"):
            dp.save_image(tmp_path / "a.png", image, bits=bits)
    assert not list(tmp_path.iterdir())
