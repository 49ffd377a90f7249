"""Writing images: `save_image` at 8 or 16 bits a sample, atomically, refusing what the
format would change."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ._files import atomic_write
from ._image import RASTER_FORMATS, looks_channels_first
from ._image_formats import cannot_hold, check_written, png_16
from ._validate import check_float_array, describe, is_traced


def to_pixels(image: Any, bits: int = 8) -> np.ndarray:
    """An `(H, W, C)` float image in [0, 1] as `bits`-bit samples for writing (uint8, or
    uint16 with `bits=16`; values are clipped)."""
    image = check_float_array(image, "image")
    if is_traced(image):
        raise TypeError(
            "`save_image` needs a concrete array; got one traced under jit/vmap. Call it "
            "outside `jax.jit`."
        )
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or 0 in image.shape:
        hint = ""
        if looks_channels_first(image.shape):
            hint = " It looks channels-first: move that axis last, `jnp.moveaxis(image, 0, -1)`."
        raise ValueError(
            "`image` must be a non-empty (H, W) or (H, W, 1|3|4) array; got "
            f"{describe(image)}.{hint}"
        )
    pixels = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(pixels)):
        raise ValueError(
            f"`image` must be finite to be written; got {int(np.sum(~np.isfinite(pixels)))} "
            "NaN/inf value(s)."
        )
    peak, dtype = (255.0, np.uint8) if bits == 8 else (65535.0, np.uint16)
    pixels = np.round(np.clip(pixels, 0.0, 1.0) * peak).astype(dtype)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def save_image(path: str | os.PathLike[str], image: Any, *, bits: int = 8) -> Path:
    """Write an `(H, W, C)` float image in `[0, 1]` to `path` atomically.

    The format follows the suffix (`.png`, `.jpg`, ...). Values are clipped to
    `[0, 1]` and rounded to `bits` bits a sample: 8, or 16 for a PNG (a filtered
    16-bit photo, say, which 8 bits would band). The file appears whole or not at all
    (it is written to a temporary file in the same folder and renamed).

    `C` is 1 (grey), 3 (RGB) or 4 (RGBA); an `(H, W)` array is taken as grey. An image
    the format cannot hold is refused with a `ValueError`, never changed silently (a
    BMP would lose the alpha, an ICO shrink to 256 pixels, a GIF keep 256 colours);
    lossy formats (JPEG) change values only by their compression. An RGBA image as JPEG
    (which has no alpha channel) raises, and the message says how to drop the alpha
    (`image[..., :3]`), composite it over white as `load_image` shows transparency, or
    keep it by saving as PNG.

    **Returns:**

    The path written.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"`bits` must be the int 8 or 16; got {bits!r}.")
    if bits not in (8, 16):
        raise ValueError(f"`bits` must be 8 or 16; got {bits!r}.")
    pixels = to_pixels(image, bits)
    name = os.fspath(path)
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt not in RASTER_FORMATS or fmt not in Image.SAVE:  # what `load_image` reads back
        said = f"the suffix {suffix!r}, not a raster format it writes" if suffix else "no suffix"
        raise ValueError(
            f"`path` must end in an image suffix such as .png or .jpg; got {name!r}, with "
            f"{said}. For vector output (SVG) use `dp.save_svg`."
        )
    if bits == 16:
        if fmt != "PNG":
            raise ValueError(
                f"`bits=16` writes PNG files only; got {name!r}. End the name in .png, or "
                "write 8 bits (`bits=8`)."
            )
        encoded = png_16(pixels if pixels.ndim == 3 else pixels[..., None])
        return atomic_write(path, lambda temp: Path(temp).write_bytes(encoded))
    picture = Image.fromarray(pixels)
    encoded = io.BytesIO()
    try:  # in memory: what the format cannot hold is told apart from a failing disk
        picture.save(encoded, format=fmt)
        check_written(picture, encoded.getvalue())
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(cannot_hold(name, fmt, picture.mode, error)) from None
    return atomic_write(path, lambda temp: Path(temp).write_bytes(encoded.getvalue()))
