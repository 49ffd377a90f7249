"""`diffprims filter`: approximate a 2D kernel with R separable passes."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from . import _outputs
from ._common import UsageError, read_image, write_json

#: What `-o OUTDIR` receives (name -> format).
FOLDER_FILES = {
    "kernel.png": "png", "vectors.json": "json", "vectors.npz": "npz", "summary.json": "summary",
}  # fmt: skip

#: The largest kernel side: the fit renders the full K x K kernel (and its gradient) at
#: every step; at 1025 that is 1M values, at 50000 it was 2.5G (10 GB a copy).
MAX_KERNEL = 1025


def _loss(weights: str | None):
    """The filter loss: the library's, or `L2,NONNEG,ZEROS` weights of its three terms."""
    import diffprims as dp

    if weights is None:
        return dp.SeparableFilters.recommended_loss()
    try:
        l2, non_negative, keep_zeros = (float(w) for w in weights.split(","))
    except ValueError:
        raise UsageError(
            f"--weights {weights!r} must be three numbers L2,NONNEG,ZEROS, e.g. 1,1,0"
        ) from None
    if not all(0 <= w < math.inf for w in (l2, non_negative, keep_zeros)):
        raise UsageError(f"--weights {weights!r} must be finite numbers >= 0")
    if l2 == non_negative == keep_zeros == 0:
        raise UsageError(f"--weights {weights!r}: at least one weight must be > 0 (all zero "
                         "is a loss that is always 0: the fit would change nothing)")  # fmt: skip
    return l2 * dp.L2() + non_negative * dp.NonNegative() + keep_zeros * dp.KeepZeros()


def _stats(kernel: Any, goal: Any) -> dict[str, float]:
    """The measures of the filters tutorial's table (docs/scripts/filter_figures.py)."""
    import numpy as np

    return {
        "relative_l2_error": float(np.linalg.norm(kernel - goal) / np.linalg.norm(goal)),
        "min_over_max": float(kernel.min() / kernel.max()),
        "min": float(kernel.min()),
        "max": float(kernel.max()),
        "spill": float(np.abs(kernel[goal == 0]).sum() / max(np.abs(kernel).sum(), 1e-30)),
    }


def _vectors(bank: Any) -> dict[str, Any]:
    import numpy as np

    return {"vertical": np.asarray(bank.vertical), "horizontal": np.asarray(bank.horizontal)}


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
    if not 1 <= size <= MAX_KERNEL:
        raise UsageError(f"--kernel {spec!r}: SIZE must be from 1 to {MAX_KERNEL} pixels")
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
    picture = np.concatenate(panels[:-1], axis=1)
    zoom = max(1, 256 // picture.shape[0])  # big enough to see: each value a square
    return np.repeat(np.repeat(picture, zoom, axis=0), zoom, axis=1)


def run_filter(args: argparse.Namespace) -> int:
    """Run `diffprims filter`; returns the exit status."""
    import numpy as np

    import diffprims as dp

    target = _kernel(args.kernel)
    loss = _loss(args.weights)
    if args.rank > min(target.shape):
        raise UsageError(f"--rank {args.rank} exceeds the kernel's size {target.shape}")
    for spec in args.output or ["out"]:
        if Path(spec).suffix.lower() in _outputs.FORMATS and not Path(spec).is_dir():
            raise UsageError(f"-o {spec!r}: diffprims filter writes to a folder")
    folder = dict(FOLDER_FILES, **({"blurred.png": "blurred"} if args.apply else {}))
    files = _outputs.plan(args.output or ["out"], folder, force=args.force)
    image = None if args.apply is None else read_image(args.apply, what="--apply")
    with _outputs.claimed(files, force=args.force):
        start = dp.SeparableFilters.from_svd(target, rank=args.rank)
        result = dp.fit(
            start, target[..., None], loss=loss, steps=args.steps, progress=not args.quiet,
            optimizer=dp.SeparableFilters.recommended_optimizer(),
        )  # fmt: skip
        bank: Any = result.model
        kernel_shape = (int(target.shape[0]), int(target.shape[1]))
        fitted = np.asarray(bank.render_image(kernel_shape))[..., 0]
        svd = np.asarray(start.render_image(kernel_shape))[..., 0]
        goal = np.asarray(target)
        summary = {
            "kernel": args.kernel, "kernel_shape": list(goal.shape), "rank": args.rank,
            "steps": args.steps, "loss": float(np.asarray(result.losses)[-1]),
            "seconds": round(float(result.seconds), 3), "svd": _stats(svd, goal),
            "fitted": _stats(fitted, goal), "weights": args.weights,
            "files": sorted(p.name for p in files),
        }  # fmt: skip
        _outputs.write_all(files, _writer(bank, image, [goal, svd, fitted], summary))
    if not args.quiet:
        fit_stats, svd_stats = summary["fitted"], summary["svd"]
        print(
            f"rank {args.rank} bank for {args.kernel}: relative L2 error "
            f"{fit_stats['relative_l2_error']:.3f} (SVD {svd_stats['relative_l2_error']:.3f}), "
            f"min/max {fit_stats['min_over_max']:+.3f} (SVD {svd_stats['min_over_max']:+.3f}); "
            f"wrote {', '.join(summary['files'])} to {', '.join(args.output or ['out'])}",
            file=sys.stderr,
        )
    return 0


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
            blurred = bank.normalized().apply(image)
            dp.save_image(path, np.clip(np.asarray(blurred), 0.0, 1.0))
        else:
            write_json(path, summary)

    return write
