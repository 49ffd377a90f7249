"""`diffprims paint`'s input: the image decoded once, at the fit size and the render size,
and the time writing the outputs at that render size is likely to take."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._aspect import longer_side
from ._common import read_image

#: `--render-size`'s cap, also the default render size's (the input's own size).
MAX_RENDER_SIZE = 8192

#: Seconds of a `--seconds` budget kept for writing the outputs after painting (the final
#: renders at the fit size, GIF frames, SVG: about 1-1.5 s at 256^2 on 2 cores, compiling
#: included)...
WRITE_RESERVE = 1.0
#: ... and per pixel of a render size that differs from the fit size: its render (compiled
#: for that size), its PSNR and the PNG encoding. Measured on 2 cores: 6000x4000 (24 MP)
#: took 5-9 s (compiling 1-4 s of it, less once the program is in the cache).
WRITE_SECONDS_PER_PIXEL = 3e-7


def read_inputs(args: argparse.Namespace, source: Any) -> tuple[Any, tuple[int, int], Any]:
    """`(target at the fit size, render shape, reference at the render shape or None when
    it is the fit size)`, from one decoding of the file (a large photo took about a
    second a read, and a pipe can be read only once)."""
    import jax
    import numpy as np

    full = np.asarray(read_image(source, quiet=args.quiet), np.float32)
    height, width = full.shape[:2]
    target = _resized(full, _fit_shape(args.size, height, width))
    _note_thin_fit(args, (height, width), target.shape[:2])
    render_shape = _render_shape(args, height, width)
    if render_shape == target.shape[:2]:
        reference = None
    elif render_shape == (height, width):
        reference = full
    else:
        reference = _resized(full, render_shape)
    return jax.device_put(np.asarray(target, np.float32)), render_shape, reference


#: A fit size whose shorter side is under this many pixels (and the input's is not) is
#: said on stderr: a 4000 x 20 strip at `--size 256` is fitted from 200 x 1 pixels.
THIN_FIT = 8


def _note_thin_fit(args: argparse.Namespace, shape: tuple[int, int], fit: tuple[int, int]):
    if args.quiet or min(fit) >= min(THIN_FIT, *shape):
        return
    (height, width), (rows, cols) = shape, fit
    across = "high" if rows <= cols else "wide"
    print(
        f"the image is {width}x{height}: at --size {args.size} it is fitted at {cols}x{rows}, "
        f"{min(fit)} px {across}, and detail across it is lost (a larger --size keeps more)",
        file=sys.stderr,
    )


def _fit_shape(size: int, height: int, width: int) -> tuple[int, int]:
    """`(H, W)` with the longer side `size`, as `dp.load_image(path, size)` makes it;
    longer where `size` would leave less than a pixel across (a strip of 4000 x 20 at
    `--size 64` was fitted at 64 x 1, a frame of a third of its width: the painting
    covered the left third of `result.png`)."""
    short, long = sorted((height, width))
    if long / short > size:  # one pixel across: the aspect ratio sets the longer side
        size = min(round(long / short), long)
    return longer_side(height, width, size)


def _resized(pixels: Any, shape: tuple[int, int]) -> Any:
    """`pixels` at `shape` (H, W), resized as `dp.load_image` resizes (Lanczos, in float,
    clipped to [0, 1])."""
    import numpy as np

    from .._image import _resize

    if tuple(pixels.shape[:2]) == shape:
        return pixels
    return np.clip(_resize(pixels, (shape[1], shape[0])), 0.0, 1.0).astype(np.float32)


def _render_shape(args: argparse.Namespace, height: int, width: int) -> tuple[int, int]:
    """`--render-size`, or the input's size, at most `MAX_RENDER_SIZE` on the longer side."""
    side = args.render_size
    if side is None and max(height, width) > MAX_RENDER_SIZE:
        side = MAX_RENDER_SIZE  # the input's own size, as far as --render-size may go
        if not args.quiet:
            print(
                f"the image is {width}x{height}: rendering the results at most "
                f"{MAX_RENDER_SIZE} px on the longer side (set --render-size to choose)",
                file=sys.stderr,
            )
    if side is None:
        return height, width
    return longer_side(height, width, side)


def write_seconds(render_shape: tuple[int, int], fit_shape: tuple[int, int]) -> float:
    """About how long writing the outputs takes: `WRITE_RESERVE`, and the render at
    `render_shape` when that is not the fit size."""
    if render_shape == fit_shape:
        return WRITE_RESERVE
    return WRITE_RESERVE + WRITE_SECONDS_PER_PIXEL * render_shape[0] * render_shape[1]
