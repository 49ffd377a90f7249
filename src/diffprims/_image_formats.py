"""What an image format can hold: `save_image` refuses, never changes silently."""

from __future__ import annotations

import io

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
