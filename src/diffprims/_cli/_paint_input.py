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
#: ... and per outline in the SVG (a shape's soft edge is drawn as 9 to 17 outlines):
#: 5000 ellipses at 3-pixel edges took 4 s (17 outlines each, many polygons), 5000
#: triangles at 0.5 pixels 1.2 s (9), on 2 cores; `--seconds 15` ran 21 s.
SVG_SECONDS_PER_OUTLINE = 5e-5


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


def write_seconds(
    render_shape: tuple[int, int], fit_shape: tuple[int, int],
    svg: Any = None, num_shapes: int = 0, softness: float = 0.5,
) -> float:  # fmt: skip
    """About how long writing the outputs takes: `WRITE_RESERVE`, the render at
    `render_shape` when that is not the fit size, and the SVG's outlines when `svg` is
    `(shape type, soft edges)`: one a shape, or with soft edges as many as
    `dp.svg_soft_edge` draws (a circle or a Gaussian draws one, with a gradient)."""
    seconds = WRITE_RESERVE
    if render_shape != fit_shape:
        seconds += WRITE_SECONDS_PER_PIXEL * render_shape[0] * render_shape[1]
    if svg:
        from diffprims._shapes import Circles, Gaussians
        from diffprims._shapes._svg_edges import outline_offsets

        shape_type, soft = svg
        one = not soft or issubclass(shape_type, Circles | Gaussians)
        outlines = 1 if one else len(outline_offsets(1.0, softness))
        seconds += SVG_SECONDS_PER_OUTLINE * num_shapes * outlines
    return seconds
