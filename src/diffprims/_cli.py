"""The `diffprims` command line: paint an image with shapes, fit a separable filter bank."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

_DESCRIPTION = """\
Differentiable 2D primitives. Paint a photo with a few hundred soft shapes, or
approximate a 2D kernel (a bokeh disk) with a few separable passes.

  diffprims paint                      paint the bundled demo photo with 200 circles
  diffprims paint photo.jpg -n 50 -o out
  diffprims filter --kernel disk:50 --rank 4 --apply photo.jpg

Run `diffprims COMMAND --help` for each command's options.
"""

_PAINT_EPILOG = """\
writes OUTDIR/result.png (at the input's resolution, or --render-size),
result.svg, progress.gif, model.eqx (reload with `diffprims.load`) and
summary.json (PSNR of result.png against the input, loss, steps, seconds, settings).
"""

_FILTER_EPILOG = """\
KERNEL is NAME:SIZE[:ARG]: disk:50 (a 50 px bokeh disk), polygon:51:6 (a hexagon),
gaussian:31:5 (sigma 5), box:9.
writes OUTDIR/kernel.png (target | SVD | fitted), vectors.json, vectors.npz,
summary.json, and blurred.png with --apply.
"""


class UsageError(Exception):
    """Bad arguments or unreadable input: exit status 2 with a one-line message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the usage is one `--help` away.
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _batch(text: str) -> float | None:
    if text.lower() in ("all", "none", "1", "1.0"):
        return None
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(
            f"expected a fraction of the pixels in (0, 1] or 'all', got {text}"
        )
    return value


def _shape_types() -> dict[str, type]:
    """Every concrete shape type diffprims exports, by lower-case name."""
    import inspect

    import diffprims

    found = {}
    for name, obj in vars(diffprims).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, diffprims.AbstractShapes)
            and not inspect.isabstract(obj)
        ):
            found[name.lower()] = obj
    return dict(sorted(found.items()))


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="diffprims",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"diffprims {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    paint = commands.add_parser(
        "paint",
        help="approximate an image with N soft shapes",
        description="Fit N soft shapes to an image by gradient descent through the renderer.",
        epilog=_PAINT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    paint.add_argument(
        "image",
        nargs="?",
        help="PNG or JPEG to paint (RGB, RGBA or grey); default: the bundled demo photo",
    )
    paint.add_argument("-n", "--num-shapes", type=_positive_int, default=200, metavar="N",
                       help="number of shapes (default: 200)")  # fmt: skip
    shape_names = ", ".join(_shape_types())
    paint.add_argument("--shape", default="circles", metavar="TYPE",
                       help=f"shape type: {shape_names} (default: circles)")  # fmt: skip
    paint.add_argument("--steps", type=_positive_int, default=2000,
                       help="optimizer steps (default: 2000)")  # fmt: skip
    paint.add_argument("--seconds", type=_positive_float, default=None, metavar="T",
                       help="paint with diffprims.paint's recipe (progressive rounds, "
                       "pruning, colours in closed form; better pictures) within T "
                       "seconds instead of --steps plain fitting steps")  # fmt: skip
    paint.add_argument("--size", type=_positive_int, default=256, metavar="PX",
                       help="fit at this size, longer side in pixels (default: 256)")  # fmt: skip
    paint.add_argument("--render-size", type=_positive_int, default=None, metavar="PX",
                       help="longer side of result.png/.svg (default: the input's)")  # fmt: skip
    paint.add_argument("--lr", type=_positive_float, default=0.01,
                       help="Adam learning rate (default: 0.01)")  # fmt: skip
    paint.add_argument("--batch", type=_batch, default=0.1, metavar="FRACTION",
                       help="fraction of pixels per step, or 'all' (default: 0.1)")  # fmt: skip
    paint.add_argument("--softness", type=_positive_float, default=None, metavar="PX",
                       help="edge width in pixels (default: 1; 0.5 with --seconds)")  # fmt: skip
    paint.add_argument("--frames", type=_positive_int, default=40,
                       help="frames of progress.gif (default: 40)")  # fmt: skip
    paint.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    paint.add_argument("-o", "--output", default="out", metavar="OUTDIR",
                       help="folder for the results (default: out)")  # fmt: skip
    paint.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    paint.add_argument("--force", action="store_true",
                       help="overwrite results already in OUTDIR")  # fmt: skip
    paint.set_defaults(run=_paint)

    filt = commands.add_parser(
        "filter",
        help="approximate a 2D kernel with R separable passes",
        description=(
            "Fit a bank of R separable passes (R pairs of 1D filters) to a 2D kernel, "
            "starting from its truncated SVD, with a loss that penalises negative "
            "values and non-zeros where the kernel is zero (no ringing)."
        ),
        epilog=_FILTER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    filt.add_argument("--kernel", default="disk:50", help="target kernel (default: disk:50)")
    filt.add_argument("--rank", type=_positive_int, default=4, metavar="R",
                      help="separable passes (default: 4)")  # fmt: skip
    filt.add_argument("--weights", default=None, metavar="L2,NONNEG,ZEROS",
                      help="loss weights of the three terms (default: the library's)")  # fmt: skip
    filt.add_argument("--steps", type=_positive_int, default=500,
                      help="optimizer steps (default: 500)")  # fmt: skip
    filt.add_argument("--apply", default=None, metavar="IMAGE",
                      help="blur this image with the fitted bank, write blurred.png")  # fmt: skip
    filt.add_argument("-o", "--output", default="out", metavar="OUTDIR",
                      help="folder for the results (default: out)")  # fmt: skip
    filt.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    filt.add_argument("--force", action="store_true",
                      help="overwrite results already in OUTDIR")  # fmt: skip
    filt.set_defaults(run=_filter)
    return parser


# -- paint ------------------------------------------------------------------------------


def _read_image(path: str | os.PathLike, size: Any = None):
    import diffprims as dp

    try:
        return dp.load_image(path, size=size)
    except IsADirectoryError:
        raise UsageError(f"{os.fspath(path)!r} is a folder, not an image") from None
    except (OSError, ValueError) as error:
        raise UsageError(str(error).rstrip(".")) from None


def _paint(args: argparse.Namespace) -> int:
    import equinox as eqx
    import jax
    import numpy as np
    import optax

    import diffprims as dp

    shapes = _shape_types()
    shape_type = shapes.get(args.shape.lower())
    if shape_type is None:
        raise UsageError(f"unknown --shape {args.shape!r}; choose one of {', '.join(shapes)}")
    source = args.image if args.image is not None else dp.demo_image_path()
    target = _read_image(source, size=args.size)
    full = _read_image(source)
    full_height, full_width = full.shape[:2]
    if args.render_size is None:
        render_shape = (full_height, full_width)
    else:
        scale = args.render_size / max(full_height, full_width)
        render_shape = (max(1, round(full_height * scale)), max(1, round(full_width * scale)))
    reference = (
        full
        if render_shape == (full_height, full_width)
        else _read_image(source, size=render_shape)
    )
    out = Path(args.output)
    _claim_output(out, _PAINT_FILES, force=args.force)

    key_init, key_fit = jax.random.split(jax.random.key(args.seed))
    batch = args.batch
    if batch is not None and round(batch * target.shape[0] * target.shape[1]) < 1:
        batch = None
    if not args.quiet:
        budget = f"{args.seconds:g} s" if args.seconds else f"{args.steps} steps"
        print(
            f"painting {os.fspath(source)} ({target.shape[1]}x{target.shape[0]}) with "
            f"{args.num_shapes} {args.shape}, {budget}",
            file=sys.stderr,
        )
    interrupted = False
    try:
        if args.seconds is not None:
            # One frame per round of `paint` (the picture as shapes are added).
            result = dp.paint(
                target, args.num_shapes, key=key_fit, shape=shape_type, seconds=args.seconds,
                softness=args.softness or 0.5, rounds=min(8, args.frames, args.num_shapes),
            )  # fmt: skip
        else:
            result = dp.fit(
                shape_type.init(
                    args.num_shapes, key=key_init, target=target, softness=args.softness or 1.0
                ),
                target,
                loss=dp.L2(),
                optimizer=optax.adam(args.lr),
                steps=args.steps,
                batch=batch,
                key=key_fit,
                progress=not args.quiet,
                snapshots=min(args.frames, args.steps + 1),
            )
    except dp.FitInterrupted as stop:
        # Ctrl-C: write what the fit reached (a second Ctrl-C aborts the writing).
        result, interrupted = stop.result, True
        print(
            f"interrupted after {stop.step} of {args.steps} steps; writing the results so far",
            file=sys.stderr,
        )
    fitted: Any = result.model
    steps_done = int(result.losses.shape[0])
    fit_shape = (int(target.shape[0]), int(target.shape[1]))

    image = eqx.filter_jit(lambda m: m.render_image(render_shape))(fitted)
    dp.save_image(out / "result.png", image)
    written = np.asarray(dp.load_image(out / "result.png"))
    psnr = float(dp.psnr(written, reference))
    fit_psnr = float(dp.psnr(fitted.render_image(fit_shape), target))
    dp.save_svg(out / "result.svg", fitted, render_shape)
    frames = (*result.snapshots, fitted) if interrupted else result.snapshots
    dp.save_gif(out / "progress.gif", frames, fit_shape)
    dp.save(out / "model.eqx", fitted)
    losses = np.asarray(result.losses)
    summary = {
        "image": os.fspath(source),
        "psnr": round(psnr, 4),
        "psnr_at_fit_size": round(fit_psnr, 4),
        "loss": float(losses[-1]) if losses.size else None,
        "steps": steps_done,
        "interrupted": interrupted,
        "seconds": round(float(result.seconds), 3),
        "shape": args.shape.lower(),
        "num_shapes": args.num_shapes,
        "fit_size": list(target.shape[:2]),
        "render_size": list(render_shape),
        "settings": {
            "lr": None if args.seconds else args.lr,
            "batch": None if args.seconds else args.batch,
            "softness": fitted.softness,
            "seconds_budget": args.seconds,
            "seed": args.seed,
            "frames": len(result.snapshots),
        },
        "files": ["result.png", "result.svg", "progress.gif", "model.eqx", "summary.json"],
    }
    _write_json(out / "summary.json", summary)
    if not args.quiet:
        print(
            f"PSNR {psnr:.2f} dB with {args.num_shapes} {args.shape} after {steps_done} steps "
            f"({result.seconds:.1f} s); wrote {', '.join(summary['files'])} to {out}/",
            file=sys.stderr,
        )
    return 130 if interrupted else 0


_PAINT_FILES = ("result.png", "result.svg", "progress.gif", "model.eqx", "summary.json")
_FILTER_FILES = (
    "kernel.png", "vectors.json", "vectors.npz", "blurred.png", "summary.json",
)  # fmt: skip


def _claim_output(out: Path, names: tuple[str, ...], *, force: bool) -> None:
    """Refuse to overwrite earlier results in `out` unless `--force`."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {os.fspath(out)!r} is a file, not a folder")
    existing = [name for name in names if (out / name).exists()]
    if existing and not force:
        raise UsageError(
            f"-o {os.fspath(out)!r} already holds {', '.join(existing)}; pass --force to "
            "overwrite them, or choose another folder with -o"
        )


def _write_json(path: Path, data: Any) -> None:
    from ._image import atomic_write

    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))


# -- filter -----------------------------------------------------------------------------


def _kernel(spec: str):
    """A target kernel from `NAME:SIZE[:ARG]` (disk:50, polygon:51:6, gaussian:31:5, box:9)."""
    import diffprims as dp

    name, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    makers = {"disk": 0, "polygon": 1, "gaussian": 1, "box": 0}
    if name not in makers or not 1 <= len(parts) <= 1 + makers[name]:
        raise UsageError(
            f"--kernel {spec!r} is not NAME:SIZE[:ARG]; use disk:50, polygon:51:6 (sides), "
            "gaussian:31:5 (sigma) or box:9"
        )
    try:
        size = int(parts[0])
        extra = [float(parts[1])] if len(parts) > 1 else []
    except ValueError:
        raise UsageError(f"--kernel {spec!r}: SIZE must be a whole number, ARG a number") from None
    try:
        if name == "polygon" and extra:
            return dp.kernels.polygon(size, int(extra[0]))
        if name == "gaussian" and extra:
            return dp.kernels.gaussian(size, sigma=extra[0])
        return getattr(dp.kernels, name)(size)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--kernel {spec!r}: {str(error).rstrip('.')}") from None


def _kernel_picture(kernels: list[Any]):
    """Kernels side by side: white where positive, red where negative (scaled 4x)."""
    import numpy as np

    peak = max(float(np.max(np.abs(k))) for k in kernels) or 1.0
    panels = []
    for kernel in kernels:
        k = np.asarray(kernel, np.float32) / peak
        positive, negative = np.clip(k, 0, 1), np.clip(-4 * k, 0, 1)
        panels.append(np.stack([np.maximum(positive, negative), positive, positive], axis=-1))
        panels.append(np.full((k.shape[0], 2, 3), 0.25, np.float32))
    return np.concatenate(panels[:-1], axis=1)


def _filter(args: argparse.Namespace) -> int:
    import numpy as np

    import diffprims as dp

    target = _kernel(args.kernel)
    loss = dp.SeparableFilters.recommended_loss()
    if args.weights is not None:
        try:
            l2, non_negative, keep_zeros = (float(w) for w in args.weights.split(","))
        except ValueError:
            raise UsageError(
                f"--weights {args.weights!r} must be three numbers L2,NONNEG,ZEROS, e.g. 1,1,0"
            ) from None
        if min(l2, non_negative, keep_zeros) < 0:
            raise UsageError(f"--weights {args.weights!r} must not be negative")
        loss = l2 * dp.L2() + non_negative * dp.NonNegative() + keep_zeros * dp.KeepZeros()
    image = None if args.apply is None else _read_image(args.apply)
    out = Path(args.output)
    _claim_output(out, _FILTER_FILES, force=args.force)
    if args.rank > min(target.shape):
        raise UsageError(f"--rank {args.rank} exceeds the kernel's size {target.shape}")

    start = dp.SeparableFilters.from_svd(target, rank=args.rank)
    result = dp.fit(
        start,
        target[..., None],
        loss=loss,
        optimizer=dp.SeparableFilters.recommended_optimizer(),
        steps=args.steps,
        progress=not args.quiet,
    )
    bank: Any = result.model
    kernel_shape = (int(target.shape[0]), int(target.shape[1]))
    fitted = np.asarray(bank.render_image(kernel_shape))[..., 0]
    svd = np.asarray(start.render_image(kernel_shape))[..., 0]
    goal = np.asarray(target)

    def stats(kernel: Any) -> dict[str, float]:
        return {
            "rms_error": float(np.sqrt(np.mean((kernel - goal) ** 2))),
            "min": float(kernel.min()),
            "max": float(kernel.max()),
            "spill": float(np.abs(kernel[goal == 0]).sum() / max(np.abs(kernel).sum(), 1e-30)),
        }

    dp.save_image(out / "kernel.png", _kernel_picture([goal, svd, fitted]))
    vectors = {"vertical": np.asarray(bank.vertical), "horizontal": np.asarray(bank.horizontal)}
    _write_json(out / "vectors.json", {k: v.tolist() for k, v in vectors.items()})

    from ._image import atomic_write

    atomic_write(
        out / "vectors.npz",
        lambda temp: np.savez(
            temp, vertical=vectors["vertical"], horizontal=vectors["horizontal"]
        ),
        suffix=".npz",
    )
    files = ["kernel.png", "vectors.json", "vectors.npz"]
    if image is not None:
        blurred = bank.normalized().apply(image)
        dp.save_image(out / "blurred.png", np.clip(np.asarray(blurred), 0.0, 1.0))
        files.append("blurred.png")
    files.append("summary.json")
    summary = {
        "kernel": args.kernel,
        "kernel_shape": list(goal.shape),
        "rank": args.rank,
        "steps": args.steps,
        "loss": float(np.asarray(result.losses)[-1]),
        "seconds": round(float(result.seconds), 3),
        "svd": stats(svd),
        "fitted": stats(fitted),
        "weights": args.weights,
        "files": files,
    }
    _write_json(out / "summary.json", summary)
    if not args.quiet:
        fit_stats, svd_stats = summary["fitted"], summary["svd"]
        print(
            f"rank {args.rank} bank for {args.kernel}: rms error "
            f"{fit_stats['rms_error']:.4f} (SVD {svd_stats['rms_error']:.4f}), min "
            f"{fit_stats['min']:.4f} (SVD {svd_stats['min']:.4f}); wrote {', '.join(files)} "
            f"to {out}/",
            file=sys.stderr,
        )
    return 0


# -- entry point ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the `diffprims` command on `argv` (default `sys.argv[1:]`); return its exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"diffprims {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffprims {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one line for the user, not a traceback
        if os.environ.get("DIFFPRIMS_DEBUG"):
            raise
        print(
            f"diffprims {args.command}: failed: {type(error).__name__}: {error} "
            "(set DIFFPRIMS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
