"""`diffprims filter`: approximate a 2D kernel with R separable passes."""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from pathlib import Path
from typing import Any

from . import _outputs
from ._common import (
    FLOAT32_RANGE,
    UsageError,
    in_float32_range,
    read_image_channels,
    write_json,
)
from ._signals import finish_writing

#: What `-o OUTDIR` receives (name -> format).
FOLDER_FILES = {
    "kernel.png": "png", "vectors.json": "json", "vectors.npz": "npz", "summary.json": "summary",
}  # fmt: skip

#: The largest kernel side: the fit renders the full K x K kernel (and its gradient) at
#: every step; at 1025 that is 1M values, at 50000 it was 2.5G (10 GB a copy).
MAX_KERNEL = 1025
#: `polygon:SIZE:SIDES`: a triangle at least; the kernel holds one edge distance per side
#: and pixel (SIDES 1e9 ran for minutes), and at 64 sides a polygon is a disk to the eye.
MIN_SIDES, MAX_SIDES = 3, 64
#: `--border`: the borders of `SeparableFilters.apply`, the default (a photo's edges
#: continue as a mirror image; zero padding darkens them) first.
BORDERS = ("reflect", "symmetric", "edge", "wrap", "zero")
#: `--rank`'s default, cut to `min(KH, KW)` for a smaller kernel.
DEFAULT_RANK = 4
#: What the vectors are, in summary.json.
VECTORS_NOTE = (
    "normalized: the kernel sum_r outer(vertical[r], horizontal[r]) sums to 1 (the bank "
    "--apply blurs with); vertical * kernel_sum is the bank fitted at peak 1"
)


def _loss(weights: str | None) -> tuple[Any, dict[str, float]]:
    """The filter loss and its weights: the library's, or `L2,NONNEG,ZEROS` weights."""
    import diffprims as dp

    if weights is None:
        defaults = inspect.signature(dp.SeparableFilters.recommended_loss).parameters
        used = {name: float(defaults[name].default) for name in ("non_negative", "keep_zeros")}
        return dp.SeparableFilters.recommended_loss(), {"l2": 1.0, **used}
    try:
        l2, non_negative, keep_zeros = (float(w) for w in weights.split(","))
    except ValueError:
        raise UsageError(
            f"--weights {weights!r} must be three numbers L2,NONNEG,ZEROS, e.g. 1,1,0"
        ) from None
    if not all(0 <= w < math.inf for w in (l2, non_negative, keep_zeros)):
        raise UsageError(f"--weights {weights!r} must be finite numbers >= 0")
    if not all(w == 0 or in_float32_range(w) for w in (l2, non_negative, keep_zeros)):
        raise UsageError(f"--weights {weights!r}: each weight must be 0 or {FLOAT32_RANGE}")
    if l2 == non_negative == keep_zeros == 0:
        raise UsageError(f"--weights {weights!r}: at least one weight must be > 0 (all zero "
                         "is a loss that is always 0: the fit would change nothing)")  # fmt: skip
    loss = l2 * dp.L2() + non_negative * dp.NonNegative() + keep_zeros * dp.KeepZeros()
    return loss, {"l2": l2, "non_negative": non_negative, "keep_zeros": keep_zeros}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _stats(kernel: Any, goal: Any) -> dict[str, float | None]:
    """The measures of the filters tutorial's table (docs/scripts/filter_figures.py);
    None where one is undefined (min/max of a kernel whose maximum is not > 0)."""
    import numpy as np

    kernel, goal = np.asarray(kernel, np.float64), np.asarray(goal, np.float64)
    high, mass = float(kernel.max()), max(float(np.abs(kernel).sum()), 1e-30)
    return {
        "relative_l2_error": _finite(float(np.linalg.norm(kernel - goal) / np.linalg.norm(goal))),
        "min_over_max": _finite(float(kernel.min()) / high) if high > 0 else None,
        "min": _finite(float(kernel.min())),
        "max": _finite(high),
        "spill": _finite(float(np.abs(kernel[goal == 0]).sum()) / mass),
    }  # fmt: skip


def _vectors(bank: Any) -> dict[str, Any]:
    import numpy as np

    return {"vertical": np.asarray(bank.vertical), "horizontal": np.asarray(bank.horizontal)}


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


#: Kernel files `--kernel` reads: NumPy arrays, text tables, pictures (their grey level).
ARRAY_FILES, TABLE_FILES = (".npy",), (".txt", ".csv")
PICTURE_FILES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")


def _kernel(spec: str, *, quiet: bool = False) -> tuple[Any, float]:
    """`(kernel scaled to peak 1, its peak as made)` from `NAME:SIZE[:ARG]` (disk:50,
    polygon:51:6, gaussian:31:5, box:9) or a kernel file; refused unless it has a
    positive peak."""
    import numpy as np

    suffix = Path(spec).suffix.lower()
    from_file = suffix in ARRAY_FILES + TABLE_FILES + PICTURE_FILES
    kernel = _kernel_file(spec, suffix, quiet=quiet) if from_file else _named_kernel(spec)
    peak = float(kernel.max()) if np.all(np.isfinite(kernel)) else math.nan
    if not peak > 0:
        hint = (" (an even SIZE has no pixel at the centre: use an odd SIZE or a larger SIGMA)"
                if spec.startswith("gaussian:") else "")  # fmt: skip
        if math.isnan(peak):
            raise UsageError(f"--kernel {spec!r} holds NaN or infinite values")
        if peak < 0:
            raise UsageError(
                f"--kernel {spec!r} has no positive value (its largest is "
                f"{peak:.3g}); it is fitted scaled to its peak: negate it"
            )
        raise UsageError(f"--kernel {spec!r} is zero everywhere (its largest value is "
                         f"{peak:.3g}): there is nothing to fit{hint}")  # fmt: skip
    # Fitted at peak 1, the scale the loss weights and the optimizer are meant for: a
    # Gaussian of an even SIZE peaks below 1 (far below for a small SIGMA).
    return (kernel / peak).astype(np.float32), peak


def _kernel_file(spec: str, suffix: str, *, quiet: bool = False) -> Any:
    """A 2D kernel from a `.npy` array, a `.txt`/`.csv` table of numbers, or a picture
    (its grey level: the mean of its colour channels, times its alpha where it has
    transparency, so a transparent pixel is 0 whatever its colour)."""
    import numpy as np

    if not Path(spec).is_file():
        what = "not a regular file" if Path(spec).exists() else "no such file"
        raise UsageError(f"--kernel {spec!r}: {what} (a kernel file, or NAME:SIZE)")
    try:
        if suffix in PICTURE_FILES:
            picture = read_image_channels(spec, what="--kernel", quiet=quiet).astype(np.float64)
            kernel = picture[..., :3].mean(axis=-1)
            if picture.shape[-1] == 4:  # straight colour, then alpha
                kernel = kernel * picture[..., 3]
        elif suffix in ARRAY_FILES:
            kernel = np.load(spec, allow_pickle=False)
        else:
            kernel = np.loadtxt(spec, delimiter="," if suffix == ".csv" else None, ndmin=2)
    except (OSError, ValueError) as error:
        raise UsageError(f"--kernel {spec!r} could not be read: {error}") from None
    kernel = np.asarray(kernel)
    if kernel.ndim == 3 and kernel.shape[-1] == 1:
        kernel = kernel[..., 0]
    if kernel.ndim != 2 or kernel.size == 0 or kernel.dtype.kind not in "biuf":
        raise UsageError(
            f"--kernel {spec!r} must hold a 2D array of real numbers (KH, KW); got shape "
            f"{kernel.shape} of {kernel.dtype}"
        )
    if max(kernel.shape) > MAX_KERNEL:
        raise UsageError(f"--kernel {spec!r} is {kernel.shape[0]}x{kernel.shape[1]}: each "
                         f"side must be at most {MAX_KERNEL} pixels")  # fmt: skip
    return kernel.astype(np.float64)


def _named_kernel(spec: str) -> Any:
    """`NAME:SIZE[:ARG]` made by `dp.kernels` (float64)."""
    import numpy as np

    import diffprims as dp

    name, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    extra = {"disk": 0, "polygon": 1, "gaussian": 1, "box": 0}
    if name not in extra or not 1 <= len(parts) <= 1 + extra[name]:
        raise UsageError(
            f"--kernel {spec!r} is not NAME:SIZE[:ARG]; use disk:50, polygon:51:6 (sides), "
            "gaussian:31:5 (sigma) or box:9"
        )
    size = _whole(parts[0])
    if size is None:
        raise UsageError(f"--kernel {spec!r}: SIZE must be a whole number")
    if not 1 <= size <= MAX_KERNEL:
        raise UsageError(f"--kernel {spec!r}: SIZE must be from 1 to {MAX_KERNEL} pixels")
    options: dict[str, Any] = {}
    if name == "polygon" and len(parts) > 1:
        options["sides"] = _whole(parts[1])
        if options["sides"] is None or not MIN_SIDES <= options["sides"] <= MAX_SIDES:
            raise UsageError(f"--kernel {spec!r}: SIDES must be a whole number from "
                             f"{MIN_SIDES} to {MAX_SIDES}")  # fmt: skip
    if name == "gaussian" and len(parts) > 1:
        try:
            options["sigma"] = float(parts[1])
        except ValueError:
            raise UsageError(f"--kernel {spec!r}: SIGMA must be a number of pixels > 0") from None
    try:
        return np.asarray(getattr(dp.kernels, name)(size, **options), np.float64)
    except (TypeError, ValueError) as error:
        message = str(error).rstrip(".").replace("`sigma`", "SIGMA")
        raise UsageError(f"--kernel {spec!r}: {message}") from None


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
    picture = np.concatenate(panels[:-1], axis=1)
    zoom = max(1, 256 // picture.shape[0])  # big enough to see: each value a square
    return np.repeat(np.repeat(picture, zoom, axis=0), zoom, axis=1)


def run_filter(args: argparse.Namespace) -> int:
    """Run `diffprims filter`; returns the exit status (130 after Ctrl-C)."""
    import diffprims as dp

    if args.border is not None and args.apply is None:
        raise UsageError("--border applies to --apply only")
    target, peak = _kernel(args.kernel, quiet=args.quiet)
    loss, weights = _loss(args.weights)
    args.rank = _rank(args.rank, target.shape, quiet=args.quiet)
    folder = dict(FOLDER_FILES, **({"blurred.png": "blurred"} if args.apply else {}))
    files = _outputs.plan(args.output or ["out"], folder, force=args.force, formats={})
    image = None
    if args.apply is not None:
        image = read_image_channels(args.apply, what="--apply", quiet=args.quiet)
    with _outputs.claimed(files, force=args.force):
        start = dp.SeparableFilters.from_svd(target, rank=args.rank)
        result, interrupted, kept = _fit(args, start, target, loss)
        with finish_writing():
            summary, kernels = _summary(args, start, result, target, files, loss)
            summary.update(kernel_peak=peak, weights=weights, interrupted=interrupted, kept=kept)
            _outputs.write_all(files, _writer(result.model, image, kernels, summary))
    if not args.quiet:
        fit_stats, svd_stats = summary["fitted"], summary["svd"]
        print(
            f"rank {args.rank} bank for {args.kernel}: relative L2 error "
            f"{_shown(fit_stats['relative_l2_error'])} "
            f"(SVD {_shown(svd_stats['relative_l2_error'])}), min/max "
            f"{_shown(fit_stats['min_over_max'], '+.3f')} "
            f"(SVD {_shown(svd_stats['min_over_max'], '+.3f')}); "
            f"{'kept the SVD start, which the fit did not improve on; ' if kept == 'svd' else ''}"
            f"wrote {', '.join(summary['files'])} to {', '.join(args.output or ['out'])}",
            file=sys.stderr,
        )
    return 130 if interrupted else 0


def _rank(rank: int | None, shape: tuple[int, ...], *, quiet: bool) -> int:
    """The rank to fit: `--rank`, or the default cut to `min(KH, KW)` (a 1 x 1 kernel has
    rank 1 at most) with a line saying so. An explicit `--rank` above it is refused, as
    the library refuses it."""
    most = min(shape)
    if rank is None:
        if DEFAULT_RANK > most and not quiet:
            print(
                f"--rank {DEFAULT_RANK} (the default) clamped to {most}: a "
                f"{shape[0]}x{shape[1]} kernel has at most rank {most}",
                file=sys.stderr,
            )
        return min(DEFAULT_RANK, most)
    if rank > most:
        raise UsageError(f"--rank {rank} exceeds the kernel's size {shape[0]}x{shape[1]}: "
                         f"it must be at most {most} (min(KH, KW))")  # fmt: skip
    return rank


def _shown(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _fit(args: argparse.Namespace, start: Any, target: Any, loss: Any) -> tuple[Any, bool, str]:
    """`(result, interrupted, kept)`: the fit from the SVD start, or where Ctrl-C stopped
    it; `kept` says which bank the result holds, "fitted" or "svd" (`_better_of`)."""
    import diffprims as dp

    try:
        result = dp.fit(
            start, target[..., None], loss=loss, steps=args.steps, progress=not args.quiet,
            optimizer=dp.SeparableFilters.recommended_optimizer(),
        )  # fmt: skip
    except dp.FitInterrupted as stop:
        # Ctrl-C: write what the fit reached (a second Ctrl-C aborts the writing).
        print(f"interrupted after {stop.step} steps; writing the results so far", file=sys.stderr)
        return stop.result, True, "fitted"
    result, kept = _better_of(start, result, target, loss)
    return result, False, kept


def _better_of(start: Any, result: Any, target: Any, loss: Any) -> tuple[Any, str]:
    """`(result, kept)`: `result`, or the SVD start in its place ("svd") when the start's
    loss on the whole kernel is lower: an exact start (rank >= the kernel's rank) has
    nothing left to gain, and Adam's first steps plus the non-negativity hinge only push
    it away (relative error 3e-7 -> 2e-3 on a disk), so the command never returns worse
    than its start."""
    import equinox as eqx

    goal = target[..., None]
    fitted = float(loss(result.model.render_image(target.shape), goal))
    if float(loss(start.render_image(target.shape), goal)) <= fitted:
        return eqx.tree_at(lambda r: r.model, result, start), "svd"
    return result, "fitted"


def _summary(args, start, result, target, files, loss) -> tuple[dict[str, Any], list[Any]]:
    """summary.json (less the settings `run_filter` adds), and the target, SVD and fitted
    kernels."""
    import numpy as np

    shape = (int(target.shape[0]), int(target.shape[1]))
    bank: Any = result.model
    fitted = np.asarray(bank.render_image(shape))[..., 0]
    svd = np.asarray(start.render_image(shape))[..., 0]
    goal = np.asarray(target)
    losses = np.asarray(result.losses)
    summary = {
        "kernel": args.kernel, "kernel_shape": list(shape), "rank": args.rank,
        "steps": int(losses.shape[0]), "steps_budget": args.steps,
        # The kept bank on the whole kernel (as paint's summary), then the last step's.
        "loss": _finite(float(loss(bank.render_image(shape), target[..., None]))),
        "last_step_loss": _finite(float(losses[-1])) if losses.size else None,
        "seconds": round(float(result.seconds), 3),
        "border": (args.border or BORDERS[0]) if args.apply is not None else None,
        "svd": _stats(svd, goal), "fitted": _stats(fitted, goal),
        "vectors": VECTORS_NOTE, "kernel_sum": _finite(float(np.sum(bank.kernel()))),
        "files": sorted(p.name for p in files),
    }  # fmt: skip
    return summary, [goal, svd, fitted]


def _writer(bank: Any, image: Any, kernels: list[Any], summary: dict[str, Any]):
    import numpy as np

    import diffprims as dp

    normalized = bank.normalized()

    def write(path: Path, kind: str) -> None:
        if kind == "png":
            dp.save_image(path, _kernel_picture(kernels))
        elif kind == "json":
            write_json(path, {k: v.tolist() for k, v in _vectors(normalized).items()})
        elif kind == "npz":
            np.savez(path, **_vectors(normalized))
        elif kind == "blurred":
            dp.save_image(path, _blurred(normalized, image, summary["border"]))
        else:
            write_json(path, summary)

    return write


def _blurred(bank: Any, image: Any, border: str) -> Any:
    """`image` blurred by `bank`, in `[0, 1]`, with its channels: grey stays grey, and
    RGBA is blurred premultiplied (alpha * colour and alpha alike, colour then divided by
    the blurred alpha), so a transparent pixel's colour, which nobody sees, never bleeds
    into its visible neighbours."""
    import numpy as np

    pixels = np.asarray(image, np.float32)
    if pixels.shape[-1] != 4:
        return np.clip(np.asarray(bank.apply(pixels, border=border)), 0.0, 1.0)
    alpha = pixels[..., 3:]
    both = np.asarray(bank.apply(np.concatenate([pixels[..., :3] * alpha, alpha], -1),
                                 border=border), np.float64)  # fmt: skip
    alpha = both[..., 3:]
    colour = np.where(alpha > 0, both[..., :3] / np.where(alpha > 0, alpha, 1.0), 0.0)
    return np.clip(np.concatenate([colour, alpha], -1), 0.0, 1.0)
