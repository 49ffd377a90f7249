"""`diffprims filter`: approximate a 2D kernel with R separable passes."""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
from pathlib import Path
from typing import Any

from . import _outputs
from ._common import (
    FLOAT32_RANGE,
    UsageError,
    in_float32_range,
    read_image_and_bits,
    write_json,
)
from ._filter_fit import NEGATIVE, fit_bank, kept_note
from ._filter_kernel import read_kernel
from ._signals import finish_writing

#: What `-o OUTDIR` receives (name -> format).
FOLDER_FILES = {
    "kernel.png": "png", "vectors.json": "json", "vectors.npz": "npz", "summary.json": "summary",
}  # fmt: skip

#: `--border`: the borders of `SeparableFilters.apply`, the default (a photo's edges
#: continue as a mirror image; zero padding darkens them) first.
BORDERS = ("reflect", "symmetric", "edge", "wrap", "zero")
#: `--rank`'s default, cut to `min(KH, KW)` for a smaller kernel.
DEFAULT_RANK = 4
#: What the vectors are, in summary.json: normalised, or at the kernel's own scale.
VECTORS_NOTE = (
    "normalized: the kernel sum_r outer(vertical[r], horizontal[r]) sums to 1 (the bank "
    "--apply blurs with); vertical * kernel_sum is the bank fitted at peak 1"
)
OWN_SCALE_NOTE = (
    "not normalized (the kernel's sum is not clearly > 0): sum_r outer(vertical[r], "
    "horizontal[r]) is the kernel at its own scale (the bank --apply filters with); "
    "vertical / kernel_peak is the bank fitted at peak 1"
)
#: The vectors are normalised where the kernel's sum is above this share of sum |k|:
#: one summing to 0 (an edge detector) or less keeps no brightness, and divided by its
#: sum it would be amplified (by 4.5x for a Sobel fitted to sum 0.22) or negated.
NORMALIZE_MIN = 1e-3
#: The peaks a kernel written at its own scale may have: its vectors, `peak` times those
#: of the bank fitted at peak 1, are float32, whose normal numbers span 1.2e-38 to 3.4e38;
#: the margin covers the vectors' own values (1e300 overflowed to inf after the fit).
OWN_SCALE_PEAKS = (1e-30, 1e30)


def _loss(weights: str | None, target: Any) -> tuple[Any, dict[str, float], str | None]:
    """`(loss, weights, note)`: the library's loss (with NONNEG 0 for a kernel with
    negative values, and a note saying so), or one of `L2,NONNEG,ZEROS` weights."""
    import diffprims as dp

    if weights is None:
        defaults = inspect.signature(dp.SeparableFilters.recommended_loss).parameters
        used = {name: float(defaults[name].default) for name in ("non_negative", "keep_zeros")}
        note, low = None, float(target.min())
        if low < -NEGATIVE and used["non_negative"] > 0:
            note = (f"NONNEG weight 0: the kernel has negative values (min {low:.3g} at peak 1), "
                    f"which the default {used['non_negative']:g} would remove; set it with "
                    "--weights")  # fmt: skip
            used["non_negative"] = 0.0
        return dp.SeparableFilters.recommended_loss(**used), {"l2": 1.0, **used}, note
    try:
        l2, non_negative, keep_zeros = (float(w) for w in weights.split(","))
    except ValueError:
        raise UsageError(
            f"--weights {weights!r} must be three numbers L2,NONNEG,ZEROS, e.g. 1,4,0"
        ) from None
    if not all(0 <= w < math.inf for w in (l2, non_negative, keep_zeros)):
        raise UsageError(f"--weights {weights!r} must be finite numbers >= 0")
    if not all(w == 0 or in_float32_range(w) for w in (l2, non_negative, keep_zeros)):
        raise UsageError(f"--weights {weights!r}: each weight must be 0 or {FLOAT32_RANGE}")
    if l2 == non_negative == keep_zeros == 0:
        raise UsageError(f"--weights {weights!r}: at least one weight must be > 0 (all zero "
                         "is a loss that is always 0: the fit would change nothing)")  # fmt: skip
    from .._filters._recommended import SMOOTHING  # the library's hinge, at peak 1

    non_negative_loss = non_negative * dp.NonNegative(smoothing=SMOOTHING)
    loss = l2 * dp.L2() + non_negative_loss + keep_zeros * dp.KeepZeros()
    return loss, {"l2": l2, "non_negative": non_negative, "keep_zeros": keep_zeros}, None


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
    # Big enough to see, each value a square, the width bounded: zoomed by the height
    # alone, a 1 x 300 kernel made a picture 231424 pixels wide (3 GB to draw).
    zoom = max(1, min(256 // picture.shape[0], 2048 // picture.shape[1]))
    return np.repeat(np.repeat(picture, zoom, axis=0), zoom, axis=1)


def run_filter(args: argparse.Namespace) -> int:
    """Run `diffprims filter`; returns the exit status (130 after Ctrl-C)."""
    import diffprims as dp

    if args.border is not None and args.apply is None:
        raise UsageError("--border applies to --apply only")
    target, peak = read_kernel(args.kernel, quiet=args.quiet)
    if not _normalizable(target):
        _check_own_scale(args.kernel, peak, "the kernel's sum is not clearly > 0")
    loss, weights, weights_note = _loss(args.weights, target)
    if weights_note is not None and not args.quiet:
        print(weights_note, file=sys.stderr)
    args.rank = _rank(args.rank, target.shape, quiet=args.quiet)
    folder = dict(FOLDER_FILES, **({"blurred.png": "blurred"} if args.apply else {}))
    files = _outputs.plan(args.output or ["out"], folder, force=args.force, formats={},
                          inputs={"--kernel": args.kernel, "--apply": args.apply},
                          other_names=("blurred.png",))  # fmt: skip
    image, args.bits = None, 8
    if args.apply is not None:  # blurred.png at the file's depth: 8 or 16 bits
        image, args.bits = read_image_and_bits(args.apply, what="--apply", quiet=args.quiet)
    with _outputs.claimed(files, force=args.force):
        start = dp.SeparableFilters.from_svd(target, rank=args.rank)
        result, interrupted, kept, polished = fit_bank(args, start, target, loss)
        with finish_writing(interrupted):
            bank, scale_note = _written(result.model, target, peak)
            summary, kernels = _summary(args, start, result, target, files, loss)
            error = _written_error(bank, target, peak, normalized=scale_note is None)
            summary.update(written_relative_l2_error=error, kernel_peak=peak, weights=weights,
                           weights_note=weights_note, interrupted=interrupted, kept=kept,
                           polished=polished, normalized=scale_note is None,
                           vectors=OWN_SCALE_NOTE if scale_note else VECTORS_NOTE)  # fmt: skip
            _outputs.write_all(files, _writer(bank, image, kernels, summary))
    if scale_note is not None and not args.quiet:
        print(scale_note, file=sys.stderr)
    if not args.quiet:
        fit_stats, svd_stats = summary["fitted"], summary["svd"]
        print(
            f"rank {args.rank} bank for {args.kernel}: relative L2 error "
            f"{_shown(fit_stats['relative_l2_error'])} "
            f"(SVD {_shown(svd_stats['relative_l2_error'])}), min/max "
            f"{_shown(fit_stats['min_over_max'], '+.3f')} "
            f"(SVD {_shown(svd_stats['min_over_max'], '+.3f')}); "
            f"{kept_note(kept, polished)}"
            f"wrote {', '.join(sorted({p.name for p in files}))} to "
            f"{', '.join(args.output or ['out'])}",
            file=sys.stderr,
        )
        _note_lobes(summary["fitted"]["min"], weights, float(target.min()))
    return 130 if interrupted else 0


#: A fitted kernel's least value (at peak 1) below which the command says that the
#: non-negativity penalty left lobes (a ring bokeh at rank 3 keeps -0.04 at weight 1).
LOBE_NOTE = -1e-3


def _note_lobes(fitted_min: float | None, weights: dict[str, float], target_min: float) -> None:
    """Say on stderr when a non-negative kernel's fit kept negative lobes despite the
    NONNEG weight (it removes them on most kernels, not all), and what to pass."""
    non_negative = weights["non_negative"]
    signed = target_min < -NEGATIVE  # as `_loss` tells a kernel with negative values
    if fitted_min is None or fitted_min >= LOBE_NOTE or non_negative <= 0 or signed:
        return
    print(
        f"note: the fitted kernel keeps negative lobes (min {fitted_min:.3g} at peak 1), "
        f"which ring when applied; a larger NONNEG weight removes them, e.g. --weights "
        f"{weights['l2']:g},{2 * non_negative:g},{weights['keep_zeros']:g}",
        file=sys.stderr,
    )


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
        "blurred_bits": args.bits if args.apply is not None else None,
        "svd": _stats(svd, goal), "fitted": _stats(fitted, goal),
        "kernel_sum": _finite(float(np.sum(bank.kernel()))),
        "files": sorted(os.fspath(p) for p in files),  # paths, as paint's summary
    }  # fmt: skip
    return summary, [goal, svd, fitted]


def _written(bank: Any, target: Any, peak: float) -> tuple[Any, str | None]:
    """`(bank, note)`: the bank the files hold and `--apply` filters with. Normalised (its
    kernel sums to 1) where the kernel's sum and the fitted one's are clearly positive
    (above `NORMALIZE_MIN` of their sum of magnitudes); otherwise the fitted bank at the
    kernel's own scale (`peak` times the bank fitted at peak 1), and a note saying so."""
    import diffprims as dp

    (goal, mass), (fitted, fitted_mass) = _total(target), _total(bank.kernel())
    if goal > NORMALIZE_MIN * mass and fitted > NORMALIZE_MIN * fitted_mass:
        return bank.normalized(), None
    if goal > NORMALIZE_MIN * mass:  # checked before the fit otherwise
        _check_own_scale("", peak, f"the fitted kernel sums to {fitted * peak:.3g}")
    why = (f"the kernel sums to {goal * peak:.3g} (its magnitudes to {mass * peak:.3g})"
           if goal <= NORMALIZE_MIN * mass else f"the fitted kernel sums to {fitted * peak:.3g} "
           f"(its magnitudes to {fitted_mass * peak:.3g})")  # fmt: skip
    note = (f"vectors written at the kernel's own scale, not normalised to sum 1: {why}, "
            "which keeps no brightness to normalise (divided by it, it would be amplified or "
            "negated)")  # fmt: skip
    return dp.SeparableFilters(bank.vertical * peak, bank.horizontal), note


def _written_error(bank: Any, target: Any, peak: float, *, normalized: bool) -> float | None:
    """The relative L2 error of the kernel the vectors written make, against the kernel
    at the same scale: normalised, both summing to 1 (the fit's extra mass, from the
    non-negativity term, then shows: 0.113 fitted, 0.121 written on a rotated Gaussian);
    at its own scale, `peak` times the kernel fitted at peak 1."""
    import numpy as np

    written, goal = np.asarray(bank.kernel(), np.float64), np.asarray(target, np.float64)
    goal = goal / goal.sum() if normalized else goal * peak
    return _finite(float(np.linalg.norm(written - goal) / np.linalg.norm(goal)))


def _total(kernel: Any) -> tuple[float, float]:
    """`(sum, sum of magnitudes)` of `kernel`."""
    import numpy as np

    kernel = np.asarray(kernel, np.float64)
    return float(kernel.sum()), float(np.abs(kernel).sum())


def _normalizable(kernel: Any) -> bool:
    """Whether `kernel`'s sum is clearly positive (`NORMALIZE_MIN`): its bank is written
    normalised, unless the fitted kernel's sum is not."""
    total, mass = _total(kernel)
    return total > NORMALIZE_MIN * mass


def _check_own_scale(spec: str, peak: float, why: str) -> None:
    """Refuse a kernel to be written at its own scale (`why` says why) whose `peak` puts
    its vectors beyond float32 (`OWN_SCALE_PEAKS`)."""
    low, high = OWN_SCALE_PEAKS
    if low <= peak <= high:
        return
    named = f"--kernel {spec!r}" if spec else "the kernel"
    raise UsageError(
        f"{named} peaks at {peak:.3g} (its largest magnitude) and {why}, so its vectors "
        f"are written at its own scale, in float32: its peak must be from {low:g} to "
        f"{high:g}; rescale the kernel (divide it by {_power_of_ten(peak):g})"
    )


def _power_of_ten(value: float) -> float:
    return 10.0 ** math.floor(math.log10(value))


def _writer(bank: Any, image: Any, kernels: list[Any], summary: dict[str, Any]):
    import numpy as np

    import diffprims as dp

    def write(path: Path, kind: str) -> None:
        if kind == "png":
            dp.save_image(path, _kernel_picture(kernels))
        elif kind == "json":
            write_json(path, {k: v.tolist() for k, v in _vectors(bank).items()})
        elif kind == "npz":
            np.savez(path, **_vectors(bank))
        elif kind == "blurred":
            dp.save_image(
                path, _blurred(bank, image, summary["border"]), bits=summary["blurred_bits"]
            )
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
