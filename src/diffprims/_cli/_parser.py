"""The argument parser of the `diffprims` command."""

from __future__ import annotations

import argparse
from typing import Any

from . import _common as types
from ._common import Parser, shape_types
from ._filter import BORDERS, DEFAULT_RANK, run_filter
from ._filter_kernel import MAX_KERNEL, MAX_SIDES, MIN_SIDES
from ._paint import MAX_FRAMES, MAX_RENDER_SIZE, MAX_RESTARTS, MAX_SHAPES, MAX_SIZE, run_paint

DESCRIPTION = """\
Differentiable 2D primitives. Paint a photo with a few hundred soft shapes, or
approximate a 2D kernel (a bokeh disk) with a few separable passes.

  diffprims paint                      paint the bundled demo photo with 200 circles
  diffprims paint photo.jpg -n 50 --seconds 20 -o out.png -o out.svg
  diffprims filter --kernel disk:50 --rank 4 --apply photo.jpg

Run `diffprims COMMAND --help` for each command's options.
"""

PAINT_EPILOG = """\
By default paints with diffprims.paint's recipe (progressive rounds, pruning,
colours in closed form); --fit runs plain gradient descent from random shapes.

-o takes a folder (default: out; end it with / when its name has a dot, as
run.v2/), which receives result.png (at the input's resolution, or
--render-size), result.svg (unless the shape type has no SVG form), progress.gif,
shapes.json (the shapes as a readable list), model.eqx (reload with
diffprims.load) and summary.json; or file names, as many as you like, the format
from the extension: .png .jpg .svg .gif .json .eqx. Nothing is overwritten
without --force.

--shape module:ClassName paints with a shape type of your own (a subclass of
diffprims.AbstractShapes), e.g. --shape rings:Rings for the class Rings in
./rings.py: the module is imported from the current folder or the installed
packages.

PSNR is measured against the image at the fit size (--size); while painting, on
the sampled pixels. The command line keeps compiled programs in a per-user cache
folder (~/.cache/diffprims/jax; on macOS ~/Library/Caches/diffprims/jax):
--no-cache turns it off.
"""

FILTER_EPILOG = f"""\
KERNEL is NAME:SIZE[:ARG]: disk:50 (a 50 px bokeh disk), polygon:51:6 (a hexagon;
SIDES from {MIN_SIDES} to {MAX_SIDES}), gaussian:31:5 (sigma 5), box:9; SIZE at most
{MAX_KERNEL}. Or a file holding your own kernel (any KH x KW, at most {MAX_KERNEL} a
side; negative values allowed): .npy, .txt or .csv (a table of numbers), or a
picture (.png .jpg .tif ...: its grey level; float TIFFs as they are). The kernel
is fitted scaled to peak 1 (its largest magnitude), the scale the loss weights are
meant for.

The default loss is diffprims.SeparableFilters.recommended_loss(): L2 plus a
penalty on negative values (weights 1,4,0), which removes the negative lobes that
ring when the kernel is applied (on every blur kernel measured; summary.json gives
the fitted min, and the command says when it is below 0: raise the second weight
then); it leaves the corners
outside a disk. For a kernel
with negative values of its own (an edge detector) the default is 1,0,0, which
keeps them. A ZEROS weight > 0 (e.g. --weights 1,3,0.3) also penalises non-zeros
where the kernel is zero, at some cost in accuracy.

Writes OUTDIR/kernel.png (target | SVD | fitted, negative values red),
vectors.json and vectors.npz (the vertical and horizontal vectors, normalised: the
kernel they make sums to 1; at the kernel's own scale when its sum is not clearly
positive, as an edge detector's), summary.json (relative L2 error, min/max, spill,
the loss weights), and blurred.png with --apply. Ctrl-C (or SIGTERM) stops the fit
and writes the results so far.
"""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(
        prog="diffprims",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"diffprims {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    _add_debug(parser, default=False)
    _add_paint(commands)
    _add_filter(commands)
    return parser


def _add_debug(parser: argparse.ArgumentParser, default: Any) -> None:
    """`--debug`, before the command or after it (`diffprims paint --debug`)."""
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the full traceback when a command fails")  # fmt: skip


def _add_paint(commands) -> None:
    paint = commands.add_parser(
        "paint",
        help="approximate an image with N soft shapes",
        description="Fit N soft shapes to an image by gradient descent through the renderer.",
        epilog=PAINT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    paint.add_argument(
        "image",
        nargs="?",
        help="image to paint: PNG, JPEG, WebP, TIFF, BMP, GIF or any other Pillow reads "
        "(RGB, RGBA or grey); default: the bundled demo photo",
    )
    paint.add_argument("-n", "--num-shapes", type=types.int_up_to(MAX_SHAPES), default=200,
                       metavar="N", help=f"number of shapes, up to {MAX_SHAPES} "
                       "(default: 200)")  # fmt: skip
    shape_names = ", ".join(shape_types())
    paint.add_argument("--shape", default="circles", metavar="TYPE",
                       help=f"shape type: {shape_names}, or a type of your own as "
                       "module:ClassName, imported from the current folder or the "
                       "installed packages (default: circles)")  # fmt: skip
    paint.add_argument("--steps", type=types.int_up_to(types.MAX_INT32), default=None,
                       help="optimizer steps in all (default: 1500; 2000 with --fit)")  # fmt: skip
    paint.add_argument("--seconds", type=types.positive_float, default=None, metavar="T",
                       help="finish in about T seconds (compiling, painting, writing; not "
                       "under about 5 s on 2 cores), instead of a number of steps")  # fmt: skip
    paint.add_argument("--fit", action="store_true",
                       help="plain fit: gradient descent on N random shapes (no rounds, "
                       "no pruning; lower PSNR than the default recipe)")  # fmt: skip
    paint.add_argument("--rounds", type=types.int_up_to(MAX_FRAMES), default=None,
                       help="rounds that add shapes (default: 8; at most N; not with "
                       "--fit); paint then runs 5 more: one removes the spare shapes, "
                       "two cycles add spares and remove them")  # fmt: skip
    paint.add_argument("--restarts", type=types.int_up_to(MAX_RESTARTS), default=None,
                       metavar="K", help="paint K times with different keys and keep the "
                       "best; on a CPU each in its own thread with the whole --seconds "
                       f"(default: 1, at most {MAX_RESTARTS}; not with --fit)")  # fmt: skip
    paint.add_argument("--size", type=types.int_up_to(MAX_SIZE), default=256, metavar="PX",
                       help=f"fit at this size, longer side in pixels, up to {MAX_SIZE} "
                       "(default: 256)")  # fmt: skip
    paint.add_argument("--render-size", type=types.int_up_to(MAX_RENDER_SIZE), default=None,
                       metavar="PX", help="longer side of the .png/.svg, up to "
                       f"{MAX_RENDER_SIZE} (default: the input's)")  # fmt: skip
    paint.add_argument("--lr", type=types.positive_float, default=None,
                       help="Adam learning rate (default: 0.01)")  # fmt: skip
    paint.add_argument("--batch", type=types.batch_fraction, default=None, metavar="FRACTION",
                       help="with --fit: fraction of pixels per step, or 'all' "
                       "(default: 0.1)")  # fmt: skip
    paint.add_argument("--background", type=types.colour, default=None, metavar="COLOUR",
                       help="with --fit: a fixed background colour (#rrggbb, white, black "
                       "or R,G,B in [0, 1]); default: learned")  # fmt: skip
    paint.add_argument("--opacity", type=types.fraction, default=None, metavar="A",
                       help="with --fit: every shape has this fixed opacity (default: "
                       "learned)")  # fmt: skip
    paint.add_argument("--softness", type=types.positive_float, default=None, metavar="PX",
                       help="edge width in pixels (default: 0.5; 1 with --fit)")  # fmt: skip
    paint.add_argument("--gif", choices=("progress", "shapes"), default="progress",
                       help="the animation: the picture as the fit ran (progress: one "
                       "frame per round, the 5 extra rounds included, the last frame the "
                       "final picture; or per snapshot with --fit) or the shapes added "
                       "one by one (shapes)")  # fmt: skip
    paint.add_argument("--frames", type=types.int_up_to(MAX_FRAMES), default=None,
                       help=f"frames of the animation (default: 40, at most {MAX_FRAMES}), "
                       "with --fit or --gif shapes")  # fmt: skip
    paint.add_argument("--svg-edges", choices=("auto", "soft", "hard"), default="auto",
                       help="soft edges as the model draws them, or hard edges with plain "
                       "fills (smaller files); auto: soft")  # fmt: skip
    paint.add_argument("--seed", type=types.seed, default=0, help="random seed (default: 0)")
    paint.add_argument("-o", "--output", action="append", default=None, metavar="OUT",
                       help="a folder (default: out) or a file (.png .jpg .svg .gif .json "
                       ".eqx); repeat for several")  # fmt: skip
    paint.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    paint.add_argument("--force", action="store_true",
                       help="overwrite results that are already there")  # fmt: skip
    paint.add_argument("--no-cache", action="store_true",
                       help="do not use the persistent compilation cache")  # fmt: skip
    # SUPPRESS: unless given after the command, the `--debug` before it decides.
    _add_debug(paint, default=argparse.SUPPRESS)
    paint.set_defaults(run=run_paint)


def _add_filter(commands) -> None:
    filt = commands.add_parser(
        "filter",
        help="approximate a 2D kernel with R separable passes",
        description=(
            "Fit a bank of R separable passes (R pairs of 1D filters) to a 2D kernel,\n"
            "from its truncated SVD and (no negative value) its non-negative factorisation,\n"
            "with a loss that penalises negative values (no ringing); the lowest of the\n"
            "starts and the fits is kept and polished by L-BFGS."
        ),
        epilog=FILTER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    filt.add_argument(
        "--kernel",
        default="disk:50",
        help="target kernel: NAME:SIZE[:ARG] or a file (default: disk:50)",
    )
    filt.add_argument("--rank", type=types.positive_int, default=None, metavar="R",
                      help=f"separable passes (default: {DEFAULT_RANK}, or min(KH, KW) "
                      "for a smaller kernel)")  # fmt: skip
    filt.add_argument("--weights", default=None, metavar="L2,NONNEG,ZEROS",
                      help="loss weights of L2, negative values and non-zeros where the "
                      "kernel is zero (default: the library's, 1,4,0; NONNEG 0 for a kernel "
                      "with negative values)")  # fmt: skip
    filt.add_argument("--steps", type=types.int_up_to(types.MAX_INT32), default=500,
                      help="optimizer steps of each fit, from the SVD and from the NMF "
                           "(default: 500; then at most 100 of L-BFGS)")  # fmt: skip
    filt.add_argument("--apply", default=None, metavar="IMAGE",
                      help="blur this image with the fitted bank, write blurred.png")  # fmt: skip
    filt.add_argument("--border", choices=BORDERS, default=None,
                      help="with --apply: how the image continues past its edges "
                      f"(default: {BORDERS[0]}; zero darkens the edges)")  # fmt: skip
    filt.add_argument("-o", "--output", action="append", default=None, metavar="OUTDIR",
                      help="folder for the results (default: out; end a name with a dot "
                      "with /, as run.v2/)")  # fmt: skip
    filt.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    filt.add_argument("--force", action="store_true",
                      help="overwrite results already in OUTDIR")  # fmt: skip
    _add_debug(filt, default=argparse.SUPPRESS)
    filt.set_defaults(run=run_filter)
