"""Images in and out: `(H, W, C)` float32 in `[0, 1]` everywhere."""

from __future__ import annotations

import functools
import math
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from PIL import Image, ImageOps, UnidentifiedImageError

from ._aspect import longer_side
from ._files import special_file
from ._image_formats import (
    SIXTEEN_BIT,
    Misread,
    check_planar,
    check_unsigned,
    draft_for,
    key_opacity,
    low_byte_tiles,
    pixel_limit,
    raw_mode,
    sixteen_bit_colour,
    unidentified,
    unsigned_32_bit,
)
from ._validate import (
    check_bool,
    check_float_array,
    check_not_empty,
    check_positive_int,
    check_scalar,
    check_values,
    describe,
)


def check_image(
    image: Any, name: str = "image", *, channels: int | None = None, check_range: bool = True
) -> Float[Array, "H W C"]:
    """`image` as an `(H, W, C)` float array in `[0, 1]`, or a clear error."""
    values = "float in [0, 1]" if check_range else "float (any range)"
    hint = f" Images are (H, W, C) {values}; load files with `dp.load_image`."
    given, image = image, check_float_array(image, name, hint=hint)
    got = describe(given if hasattr(given, "dtype") else image)  # as given: not float32
    if image.ndim != 3 or 0 in image.shape:
        extra = " Add a channel axis with `x[..., None]`." if image.ndim == 2 else ""
        raise ValueError(f"`{name}` must be a non-empty (H, W, C) image; got {got}.{extra}{hint}")
    if looks_channels_first(image.shape) and image.shape[-1] != channels:
        raise ValueError(
            f"`{name}` looks channels-first, (C, H, W); got {got}. Images are "
            f"(H, W, C): move the channel axis last with `jnp.moveaxis({name}, 0, -1)`. (An "
            f"image {image.shape[0]} pixels tall with {image.shape[-1]} channels: pass one "
            f"channel at a time, e.g. `jax.vmap` over axis 2 of `{name}[..., None]`.)"
        )
    if channels is not None and image.shape[-1] != channels:
        raise ValueError(
            f"`{name}` must have {channels} channels to match the model; got {describe(image)}."
        )
    if check_range:
        image = check_values(image, name, lower=0.0, upper=1.0, hint=hint)
    return image


def looks_channels_first(shape: tuple[int, ...]) -> bool:
    """Whether `shape` is likely `(C, H, W)`: grey, RGB or RGBA first, over 4 last."""
    return len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] > 4


def psnr(image: Any, target: Any, *, max_value: float = 1.0) -> Float[Array, ""]:
    """Peak signal-to-noise ratio in dB: `10 log10(max_value**2 / mean((image - target)**2))`.

    **Arguments:**

    - `image`, `target`: arrays of the same shape, e.g. `(H, W, C)` in `[0, 1]`.
    - `max_value`: the peak value (1.0 for images in `[0, 1]`).

    **Returns:**

    A scalar; `inf` when the two are equal, where its gradient is 0 (not NaN).
    """
    image = check_float_array(image, "image")
    target = check_float_array(target, "target")
    if image.shape != target.shape:
        raise ValueError(
            f"`image` and `target` must have the same shape; got {image.shape} and {target.shape}."
        )
    check_not_empty(image, "image", "`psnr`")
    max_value = check_scalar(max_value, "max_value", lower=0.0)  # traced: checked when run
    if isinstance(max_value, float):
        return _psnr_compiled(image, target, max_value)
    return _psnr(image, target, max_value)


def _psnr(image: Any, target: Any, max_value: Any) -> Array:
    # At least float32 (half precision would round the error away); float64 kept.
    dtype = jnp.promote_types(jnp.result_type(image, target), jnp.float32)
    mse = jnp.mean(jnp.square(image.astype(dtype) - target.astype(dtype)))
    # `max_value` in decibels on its own (a Python float's in float64): `max_value**2`
    # overflowed float32 for 1e30 (PSNR inf) and vanished for 1e-30 (-inf).
    log = math.log10 if isinstance(max_value, float) else jnp.log10
    peak = 20.0 * log(max_value)
    # Equal images (mse 0) give inf, whose gradient would be 0 * inf = NaN: the double
    # `where` takes the value there with no gradient through `mse`, and keeps 0 out of
    # the differentiated branch, so the gradient is 0 (the same values everywhere).
    safe = jnp.where(mse > 0, mse, 1.0)
    at_zero = peak - 10.0 * jnp.log10(jax.lax.stop_gradient(mse))
    return jnp.where(mse > 0, peak - 10.0 * jnp.log10(safe), at_zero)


# One compiled call: eagerly, its five small ops cost several times more.
_psnr_compiled = functools.partial(jax.jit, static_argnames="max_value")(_psnr)


# Raster formats only: Pillow also opens EPS (through Ghostscript), WMF, PSD layers and
# more, which an image named `.png` must not be able to reach.
RASTER_FORMATS = (
    "PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA", "ICO", "JPEG2000",
    "PCX", "SGI", "QOI", "DDS", "AVIF",
)  # fmt: skip


def _to_float(picture: Image.Image, path: Any, low: Image.Image | None = None) -> np.ndarray:
    """`(H, W, 3)` float32: every mode at its own bit depth, transparency over white.

    `low` holds the low bytes of a 16-bit colour PNG whose high bytes are `picture`."""
    mode = picture.mode
    if low is not None:
        return sixteen_bit_colour(picture, low)
    if mode in SIXTEEN_BIT or mode in ("I", "F", "1"):
        values = np.asarray(picture)
        if mode == "F":
            if not np.all(np.isfinite(values)):
                raise ValueError(
                    f"`path` must be an image of finite values; got {os.fspath(path)!r}, "
                    "a float image with NaN/inf."
                )
            grey = values.astype(np.float32)
        elif mode == "1":
            grey = values.astype(np.float32)
        elif mode == "I" and picture.info.get("uint32"):  # Pillow reads it as signed
            grey = values.view(np.uint32).astype(np.float64) / (2**32 - 1)
        else:  # 16-bit, or 32-bit ints (a 16-bit PNG may read as "I"); a tRNS key white
            check_unsigned(values, path)
            peak = 65535.0 if mode in SIXTEEN_BIT or values.max(initial=0) <= 65535 else 2**31 - 1
            grey = np.where(key_opacity(picture, values)[..., 0] > 0, values / peak, 1.0)
        return np.repeat(np.asarray(grey, np.float32)[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info:
        rgba = np.asarray(picture.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, opacity = rgba[..., :3], rgba[..., 3:]
        return 1.0 + opacity * (rgb - 1.0)  # shown over white, as a viewer would
    return np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0


def _read(
    path: Any, *, low_bytes: bool = False, draft: Any = None
) -> tuple[Image.Image, str | None, bool]:
    """The picture at `path` (its first frame), loaded and turned upright; the raw mode
    of a 16-bit colour or grey + alpha PNG, else None (with `low_bytes`, such a PNG is
    read with `_LOW_BYTES`' raw mode); and whether the file holds more frames. `draft`,
    if given, is called with the opened file before it is decoded (`draft_for`)."""
    name = os.fspath(path)
    if special_file(path):  # opening a named pipe waits for a writer, for ever if none comes
        raise ValueError(
            f"`path` must be an image file; got {name!r}, a device, pipe or socket (its "
            "reads need not end). Save the image to a file and pass that."
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns from MAX_IMAGE_PIXELS (89 MP) and refuses from twice that: a
            # 108 MP phone photo is in between, and is read.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=RASTER_FORMATS) as opened:
                animated = bool(getattr(opened, "is_animated", False))  # at frame 0 still
                check_planar(opened, name)
                low_tiles = low_byte_tiles(opened)
                deep = raw_mode(opened.tile[0]) if low_tiles else None  # before tiles change
                if low_tiles and low_bytes:
                    opened.tile = low_tiles
                if draft is not None:
                    draft(opened)
                opened.load()
                opened.info["uint32"] = unsigned_32_bit(opened)
                return ImageOps.exif_transpose(opened), deep, animated
    except FileNotFoundError:
        raise FileNotFoundError(f"No image at {name!r}.") from None
    except IsADirectoryError:
        raise ValueError(f"`path` must be an image file; got {name!r}, a folder.") from None
    except UnidentifiedImageError:
        raise ValueError(unidentified(name)) from None
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"`path` must be an image of at most {pixel_limit()} pixels (Pillow refuses "
            f"larger ones as possible decompression bombs); got {name!r}: {error}. Scale "
            "the photo down first or, for a file you trust, raise the limit in Python: "
            "`PIL.Image.MAX_IMAGE_PIXELS = None`."
        ) from None
    except (PermissionError, Misread):
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ValueError(
            f"`path` must be a readable image file; got {name!r}, which is damaged or "
            f"truncated ({error})."
        ) from None


def _low_bytes(path: Any, high: Image.Image, raw: str) -> Image.Image | None:
    """The low bytes of a 16-bit PNG of raw mode `raw` whose high bytes `high` holds, or
    None (read at 8 bits, as before) where this Pillow's decoder does not take the
    low-byte tiles: the second read goes through Pillow's internals, so it must never
    fail the load."""
    try:
        low = _read(path, low_bytes=True)[0]
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OSError):
        return None
    if (low.mode, low.size) != (high.mode, high.size):
        return None
    if raw == "LA;16B":  # every byte: grey and alpha, each high then low
        data, kept = np.asarray(low), np.asarray(high)
        if not np.array_equal(data[..., [0, 2]], kept[..., [0, 3]]):
            return None
        low = Image.fromarray(np.ascontiguousarray(data[..., [1, 1, 1, 3]]))
    return low


def _new_size(size: Any, width: int, height: int) -> tuple[int, int]:
    """`(W, H)` to resize to, from `size`: an int (the longer side) or `(H, W)`."""
    if isinstance(size, int | np.integer) and not isinstance(size, bool | np.bool_):
        side = check_positive_int(size, "size", maximum=2**16)
        rows, cols = longer_side(height, width, side)
        return cols, rows
    if not (isinstance(size, tuple | list) and len(size) == 2):
        raise TypeError(
            f"`size` must be an int (the longer side) or a pair (H, W) of ints; got "
            f"{describe(size)}."
        )
    rows, cols = (check_positive_int(v, "size", maximum=2**16) for v in size)
    return cols, rows


def _check_output_pixels(new: tuple[int, int]) -> None:
    """A `ValueError` if resizing to `new` (W, H) asks for more pixels than Pillow opens
    (a 1-pixel PNG at `size=2**16` was 51 GB of float32, and the process was killed)."""
    limit, (cols, rows) = pixel_limit(), new
    if limit != "any" and rows * cols > int(limit):
        raise ValueError(
            f"`size` asks for a {rows} x {cols} image ({rows * cols} pixels, "
            f"{rows * cols * 12 / 2**30:.3g} GiB as float32 RGB); at most {limit} pixels, "
            "Pillow's limit for an image. Ask for a smaller `size` or, if you mean it, "
            "raise the limit: `PIL.Image.MAX_IMAGE_PIXELS = None`."
        )


def _resize(pixels: np.ndarray, new: tuple[int, int]) -> np.ndarray:
    """Lanczos resize of a float `(H, W, C)` array, channel by channel, in float."""
    channels = [
        np.asarray(Image.fromarray(pixels[..., c], mode="F").resize(new, Image.Resampling.LANCZOS))
        for c in range(pixels.shape[-1])
    ]
    return np.stack(channels, -1)


def load_image(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    *,
    square: bool = False,
) -> Float[Array, "H W 3"]:
    """Read an image file as an `(H, W, 3)` float32 array in `[0, 1]`.

    Every mode Pillow reads becomes RGB at its own bit depth: 8- and 16-bit grey and
    colour (16-bit RGB, RGBA and grey + alpha PNGs at full precision, though Pillow reads
    them at 8 bits), float grey TIFFs (clipped to `[0, 1]`), palette images, and
    transparency shown over white. The EXIF orientation of a photo is applied. Only
    raster formats are read (PNG, JPEG, GIF, BMP, TIFF, WebP, ...); a damaged or
    truncated file, or one too large to be an image (a decompression bomb), raises a
    `ValueError`.

    Of an animation (GIF, APNG, WebP) or a multi-page TIFF, the first frame is read,
    with a `UserWarning`: a first frame may be blank or a title card, so the choice is
    not made silently.

    **Arguments:**

    - `path`: the file (PNG, JPEG, ...).
    - `size`: `None` keeps the size; an int scales the image so its longer side is
      `size` (less where that keeps the aspect ratio: to 0.02 px up to 10 % less, a 3:2
      photo at 256 is 255 x 170, so its shapes render in place at its own size);
      `(H, W)` resizes to exactly that. Resizing is
      Lanczos, in float (a JPEG far larger is first decoded at 1/2 to 1/8 of its size,
      at least twice the final one: a 12 MP photo at 256 px in 0.1 s rather than 1.1).
    - `square`: centre-crop to a square first (so `size=256` gives 256×256).

    **Returns:**

    An `(H, W, 3)` float32 array in `[0, 1]`.

    ```python
    target = dp.load_image("photo.png", size=256)
    ```
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path; got {describe(path)}.")
    if size is not None:
        _new_size(size, 1, 1)  # checked before the file is read
    square = check_bool(square, "square")  # "no" would crop
    draft = None
    if size is not None:
        draft = functools.partial(
            draft_for, new_size=lambda wh: _new_size(size, *wh), square=square
        )
    picture, deep, animated = _read(path, draft=draft)
    if animated:
        warnings.warn(
            f"`load_image` read the first frame of {os.fspath(path)!r}, which holds several "
            "(an animation or a multi-page file). To use another, save it as an image of "
            "its own, e.g. with Pillow: `im.seek(k); im.save('frame.png')`.",
            stacklevel=2,
        )
    low = _low_bytes(path, picture, deep) if deep else None
    if square:
        side = min(picture.size)
        left, top = (picture.width - side) // 2, (picture.height - side) // 2
        picture = picture.crop((left, top, left + side, top + side))
        low = low.crop((left, top, left + side, top + side)) if low is not None else None
    new = None if size is None else _new_size(size, picture.width, picture.height)
    if new is not None:
        _check_output_pixels(new)
    pixels = _to_float(picture, path, low)
    if new is not None:
        if new != picture.size:
            pixels = _resize(pixels, new)
    # `device_put`: `jnp.asarray` of a NumPy array compiles a program for each new size.
    return jax.device_put(np.clip(pixels, 0.0, 1.0).astype(np.float32))


def demo_image_path() -> Path:
    """The path of the bundled demo photo (scikit-image's astronaut, public domain)."""
    return Path(str(resources.files("diffprims") / "data" / "astronaut.jpg"))
