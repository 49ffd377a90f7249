"""Images in and out: `(H, W, C)` float32 in `[0, 1]` everywhere."""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from PIL import Image, UnidentifiedImageError

from ._files import atomic_write
from ._validate import check_float_array, check_values, describe, is_traced


def check_image(
    image: Any, name: str = "image", *, channels: int | None = None, check_range: bool = True
) -> Float[Array, "H W C"]:
    """`image` as an `(H, W, C)` float array in `[0, 1]`, or a clear error."""
    hint = " Images are (H, W, C) float in [0, 1]; load files with `dp.load_image`."
    image = check_float_array(image, name, hint=hint)
    if image.ndim != 3 or 0 in image.shape:
        extra = " Add a channel axis with `x[..., None]`." if image.ndim == 2 else ""
        raise ValueError(
            f"`{name}` must be a non-empty (H, W, C) image; got {describe(image)}.{extra}{hint}"
        )
    if channels is not None and image.shape[-1] != channels:
        raise ValueError(
            f"`{name}` must have {channels} channels to match the model; got {describe(image)}."
        )
    if check_range:
        image = check_values(image, name, lower=0.0, upper=1.0, hint=hint)
    return image


def psnr(image: Any, target: Any, *, max_value: float = 1.0) -> Float[Array, ""]:
    """Peak signal-to-noise ratio in dB: `10 log10(max_value**2 / mean((image - target)**2))`.

    **Arguments:**

    - `image`, `target`: arrays of the same shape, e.g. `(H, W, C)` in `[0, 1]`.
    - `max_value`: the peak value (1.0 for images in `[0, 1]`).

    **Returns:**

    A scalar; `inf` when the two are equal.
    """
    image = check_float_array(image, "image")
    target = check_float_array(target, "target")
    if image.shape != target.shape:
        raise ValueError(
            f"`image` and `target` must have the same shape; got {image.shape} and {target.shape}."
        )
    if isinstance(max_value, int | float) and not isinstance(max_value, bool):
        return _psnr_compiled(image, target, float(max_value))
    return _psnr(image, target, max_value)


def _psnr(image: Any, target: Any, max_value: Any) -> Array:
    mse = jnp.mean(jnp.square(image.astype(jnp.float32) - target.astype(jnp.float32)))
    return 10.0 * jnp.log10(max_value**2 / mse)


# One compiled call: eagerly, its five small ops cost several times more.
_psnr_compiled = functools.partial(jax.jit, static_argnames="max_value")(_psnr)


def _to_float_rgb(picture: Image.Image) -> np.ndarray:
    if picture.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(picture, dtype=np.float32)
        peak = 65535.0 if picture.mode.startswith("I") and values.max() > 255 else 255.0
        values = np.clip(values / (1.0 if picture.mode == "F" else peak), 0.0, 1.0)
        return np.repeat(values[..., None], 3, axis=-1)
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        # Transparent pixels are shown over white, as a viewer would.
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, rgba)
    return np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0


def load_image(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    *,
    square: bool = False,
) -> Float[Array, "H W 3"]:
    """Read an image file as an `(H, W, 3)` float32 array in `[0, 1]`.

    Any mode Pillow reads (greyscale, palette, RGBA over white, 16-bit) becomes RGB.

    **Arguments:**

    - `path`: the file (PNG, JPEG, ...).
    - `size`: `None` keeps the size; an int scales the image so its longer side is
      `size` (keeping the aspect ratio); `(H, W)` resizes to exactly that.
    - `square`: centre-crop to a square first (so `size=256` gives 256×256).

    **Returns:**

    An `(H, W, 3)` float32 array in `[0, 1]`.

    ```python
    target = dp.load_image("photo.png", size=256)
    ```
    """
    try:
        with Image.open(path) as picture:
            picture.load()
            if square:
                side = min(picture.size)
                left = (picture.width - side) // 2
                top = (picture.height - side) // 2
                picture = picture.crop((left, top, left + side, top + side))
            if size is not None:
                if isinstance(size, int) and not isinstance(size, bool):
                    if size < 1:
                        raise ValueError(f"`size` must be >= 1; got {size}.")
                    scale = size / max(picture.size)
                    new = (
                        max(1, round(picture.width * scale)),
                        max(1, round(picture.height * scale)),
                    )
                else:
                    try:
                        height, width = (int(v) for v in size)  # pyright: ignore[reportGeneralTypeIssues]
                    except (TypeError, ValueError):
                        raise ValueError(
                            f"`size` must be an int or (H, W); got {size!r}."
                        ) from None
                    if height < 1 or width < 1:
                        raise ValueError(f"`size` must be positive; got {size!r}.")
                    new = (width, height)
                if new != picture.size:
                    if picture.mode not in ("RGB", "RGBA", "L", "LA"):
                        picture = picture.convert("RGBA")
                    picture = picture.resize(new, Image.Resampling.LANCZOS)
            pixels = _to_float_rgb(picture)
    except FileNotFoundError:
        raise FileNotFoundError(f"No image at {os.fspath(path)!r}.") from None
    except UnidentifiedImageError:
        raise ValueError(
            f"`path` must be an image file Pillow can read (PNG, JPEG, ...); got "
            f"{os.fspath(path)!r}, which is not."
        ) from None
    return jnp.asarray(pixels)


def _blur_matrix(size: int, sigma: Array) -> Array:
    """`(size, size)` Gaussian blur along one axis, rows renormalised at the borders."""
    offsets = jnp.arange(size, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / sigma) ** 2)
    return weights / jnp.sum(weights, 1, keepdims=True)


@jax.jit
def blur(image: Float[Array, "H W C"], sigma: float | Array) -> Float[Array, "H W C"]:
    """Gaussian blur of an `(H, W, C)` image with standard deviation `sigma` pixels.

    Separable (two matrix products), renormalised at the borders; `sigma` may be traced.
    A `sigma` near 0 returns the image unchanged.
    """
    sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)
    height, width, _ = image.shape
    rows, cols = _blur_matrix(height, sigma), _blur_matrix(width, sigma)
    return jnp.einsum("ij,jkc,lk->ilc", rows, image, cols)


def demo_image_path() -> Path:
    """The path of the bundled demo photo (scikit-image's astronaut, public domain)."""
    return Path(str(resources.files("diffprims") / "data" / "astronaut.jpg"))


def to_uint8(image: Any) -> np.ndarray:
    """An `(H, W, C)` float image in [0, 1] as uint8 for writing (values are clipped)."""
    image = check_float_array(image, "image")
    if is_traced(image):
        raise TypeError(
            "`save_image` needs a concrete array; got one traced under jit/vmap. Call it "
            "outside `jax.jit`."
        )
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or 0 in image.shape:
        raise ValueError(
            f"`image` must be a non-empty (H, W) or (H, W, 1|3|4) array; got {describe(image)}."
        )
    pixels = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(pixels)):
        raise ValueError(
            f"`image` must be finite to be written; got {int(np.sum(~np.isfinite(pixels)))} "
            "NaN/inf value(s)."
        )
    pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def save_image(path: str | os.PathLike, image: Any) -> Path:
    """Write an `(H, W, C)` float image in `[0, 1]` to `path` atomically.

    The format follows the suffix (`.png`, `.jpg`, ...). Values are clipped to
    `[0, 1]` and rounded to 8 bits. The file appears whole or not at all (it is written
    to a temporary file in the same folder and renamed).

    **Returns:**

    The path written.
    """
    pixels = to_uint8(image)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(
            f"`path` must end in an image suffix such as .png or .jpg; got {os.fspath(path)!r}."
        )
    return atomic_write(path, lambda temp: Image.fromarray(pixels).save(temp, format=fmt))
