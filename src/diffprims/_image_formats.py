"""What image formats hold: `save_image` refuses what a format would change; 16-bit
colour PNGs and TIFFs read at their full depth (Pillow's own reader keeps 8 bits)."""

from __future__ import annotations

import io
import math
import os
import struct
import sys
import zlib
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError


def check_written(picture: Image.Image, data: bytes) -> None:
    """A `ValueError` if `data` (`picture` encoded) would not load back at its size,
    without the alpha it had, or with fewer colours: a BMP drops alpha, an ICO shrinks
    to at most 256 x 256, a GIF keeps at most 256 colours."""
    try:
        back = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        return  # a format Pillow writes but cannot read back (PDF): nothing to compare
    with back:
        if back.size != picture.size:
            raise ValueError(f"it would be written at {back.size[0]}x{back.size[1]}")
        alpha = "A" in back.getbands() or "transparency" in back.info
        if picture.mode == "RGBA" and not alpha:
            raise ValueError("it would be written without the alpha channel")
        if back.mode == "P" and picture.getcolors(256) is None:  # a GIF's palette
            raise ValueError("it would be reduced to a palette of 256 colours")


def cannot_hold(name: str, fmt: str, mode: str, error: Exception) -> str:
    kind = {"L": "a grey (H, W, 1)", "RGB": "an RGB (H, W, 3)", "RGBA": "an RGBA (H, W, 4)"}[mode]
    fix = "save as .png, which holds grey, RGB and RGBA"
    if mode == "RGBA":
        fix = (
            "drop the alpha with `image[..., :3]`, composite it over white with "
            "`image[..., :3] * image[..., 3:] + 1 - image[..., 3:]`, or "
            "save as .png to keep it"
        )
    return (
        f"`image` must be in a mode {fmt} can hold to be written to {name!r}; got {kind} "
        f"image, which {fmt} cannot hold ({error}). To write it, {fix}."
    )


# Pillow reads 16-bit RGB(A) PNGs and TIFFs at 8 bits (its unpacker keeps each sample's
# high byte). The unpacker for the other byte order takes the other byte, the low one: a
# second read with it gives the low bytes (PNGs are big-endian; TIFFs either, or native
# when compressed). Grey + alpha PNGs (read as RGBA) have no such unpacker, but 8-bit
# RGBA's takes a pixel's 4 bytes as they are: grey high, grey low, alpha high, alpha low.
_NATIVE = "L" if sys.byteorder == "little" else "B"
_LOW_BYTES = {"LA;16B": "RGBA"} | {
    f"{mode};16{order}": f"{mode};16{'B' if (_NATIVE if order == 'N' else order) == 'L' else 'L'}"
    for mode in ("RGB", "RGBA")
    for order in "BLN"
}


def low_byte_tiles(opened: Any) -> list[Any] | None:
    """The tiles that read a 16-bit colour (or grey + alpha) PNG's or TIFF's low bytes;
    None for any other image."""
    if opened.format not in ("PNG", "TIFF") or not opened.tile:
        return None
    tiles = []
    for tile in opened.tile:  # named tuples (codec, extents, offset, args); tuples in Pillow 10
        args = tile[3]  # the raw mode (PNG), or a tuple that starts with it (TIFF)
        raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) else None
        low_mode = _LOW_BYTES.get(raw) if isinstance(raw, str) else None
        if low_mode is None or (opened.format == "TIFF" and str(raw).startswith("LA")):
            return None
        low_args = low_mode if isinstance(args, str) else (low_mode, *args[1:])
        low_tile = (*tile[:3], low_args)
        tiles.append(type(tile)(*low_tile) if hasattr(tile, "_fields") else low_tile)
    return tiles


def raw_mode(tile: Any) -> str:
    return tile[3] if isinstance(tile[3], str) else tile[3][0]


def unsigned_32_bit(opened: Any) -> bool:
    """Whether a picture's samples are 32-bit unsigned integers (a TIFF's, unsigned by
    default), which Pillow reads as signed ("I")."""
    tags = getattr(opened, "tag_v2", {})
    return tags.get(339, 1) in (1, (1,)) and tags.get(258) in ((32,), 32)


def sixteen_bit_values(high: Image.Image, low: Image.Image) -> np.ndarray:
    """The 16-bit samples of a picture read as its high bytes and its low bytes."""
    return (np.asarray(high, np.uint16) << 8) | np.asarray(low, np.uint16)


def sixteen_bit_colour(high: Image.Image, low: Image.Image) -> np.ndarray:
    values = sixteen_bit_values(high, low)
    pixels = values.astype(np.float32) / 65535.0
    rgb = pixels[..., :3]
    opacity = pixels[..., 3:] if high.mode == "RGBA" else key_opacity(high, values)
    return 1.0 + opacity * (rgb - 1.0)  # shown over white, as a viewer would


def pixel_limit() -> int | str:
    """The pixel count from which Pillow refuses to open an image."""
    limit = Image.MAX_IMAGE_PIXELS
    return "any" if limit is None else 2 * int(limit)


#: Pillow's modes of 16-bit grey.
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def key_opacity(picture: Image.Image, values: np.ndarray) -> np.ndarray:
    """`(H, W, 1)` opacity of a 16-bit picture whose `values` (grey `(H, W)` or colour
    `(H, W, 3)`, at full depth) may hold a PNG tRNS colour key, which Pillow keeps at
    16 bits: 0 on the key, 1 elsewhere (8-bit conversions clamp or never match it)."""
    key = picture.info.get("transparency")
    grey = values.ndim == 2
    opacity = np.ones((*values.shape[:2], 1), np.float32)
    if grey and isinstance(key, int):
        opacity[values == key] = 0.0
    elif not grey and isinstance(key, tuple) and len(key) == 3:
        opacity[np.all(values[..., :3] == np.asarray(key, np.uint16), axis=-1)] = 0.0
    return opacity


class Misread(ValueError):
    """A file Pillow opens but would read wrong: its message says so (not "damaged")."""


def check_planar(opened: Any, name: str) -> None:
    """A `ValueError` for a 16-bit colour TIFF stored plane by plane, which Pillow reads
    as garbage (as tifffile writes a `(3, H, W)` array)."""
    tags = getattr(opened, "tag_v2", {})
    bits = tags.get(258, ())
    if tags.get(284) == 2 and 16 in (bits if isinstance(bits, tuple) else (bits,)):
        raise Misread(
            f"`path` must be an image Pillow reads right; got {name!r}, a 16-bit TIFF "
            "stored plane by plane (PlanarConfiguration 2), which it misreads. Save it "
            "interleaved (tifffile: `imwrite(path, image_hwc)`, or planarconfig='contig')."
        )


# EXIF orientations that turn a picture a quarter turn (width and height swap).
_QUARTER_TURNS = (5, 6, 7, 8)


def draft_for(opened: Image.Image, new_size: Any, *, square: bool) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 of its size (in the DCT, before `load`) when
    the image is to be resized far smaller anyway: a 12 MP photo loaded at 256 pixels
    took 1.1 s decoded whole. `new_size((width, height))` gives the final `(W, H)` of
    the upright (and, with `square`, centre-cropped) picture; the decoded picture keeps
    at least twice that (as `Image.thumbnail`'s `reducing_gap=2`), so the final Lanczos
    resize still antialiases. Other formats (and small reductions) are read whole."""
    if opened.format not in ("JPEG", "MPO"):  # MPO: a camera's JPEG with more frames
        return
    width, height = opened.size
    upright = (
        (height, width) if opened.getexif().get(0x0112) in _QUARTER_TURNS else (width, height)
    )
    side = min(upright)
    cropped = (side, side) if square else upright
    new_width, new_height = new_size(cropped)
    scale = 2.0 * max(new_width / cropped[0], new_height / cropped[1])
    if scale < 0.5:  # at least a halving: a draft would decode something smaller
        opened.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))


def unidentified(name: str) -> str:
    """Why Pillow found no image in the file `name`: a TIFF in a pixel format Pillow does
    not read (float or signed colour), or no image file at all."""
    try:
        with open(name, "rb") as file:
            start = file.read(4)
    except OSError:
        start = b""
    if start in (b"II*\0", b"MM\0*"):
        return (
            f"`path` must be an image Pillow can read; got {name!r}, a TIFF it cannot: "
            "damaged or truncated, or in a pixel format Pillow does not read (float or "
            "signed colour, say). Save it as an 8- or 16-bit PNG or TIFF (a float TIFF of "
            "one channel reads too)."
        )
    return (
        f"`path` must be a raster image file Pillow can read (PNG, JPEG, TIFF, ...); got "
        f"{name!r}, which is not one."
    )


def check_unsigned(values: np.ndarray, path: Any) -> None:
    """Refuse integer pixels below 0 (a signed TIFF): an image holds light, 0 and up."""
    if values.min(initial=0) < 0:
        raise ValueError(
            f"`path` must be an image of values >= 0; got {os.fspath(path)!r}, signed "
            f"integers down to {values.min()}. Rescale it to 0 and up (e.g. 0 to 65535) "
            "and save it unsigned."
        )


def png_16(pixels: np.ndarray) -> bytes:
    """A PNG file of `(H, W, C)` uint16 `pixels`, `C` 1 (grey), 3 (RGB) or 4 (RGBA), at
    16 bits a sample (Pillow writes 16-bit grey only). Rows unfiltered, deflated."""
    height, width, channels = pixels.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(pixels, ">u2").reshape(height, width * channels).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter 0 a row

    def chunk(kind: bytes, data: bytes) -> bytes:
        check = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + check

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)),
            chunk(b"IEND", b""),
        )
    )
