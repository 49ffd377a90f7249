"""`diffprims filter`: approximate a 2D kernel with R separable passes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._files import atomic_write
from ._common import FILTER_FILES, UsageError, claim_output, read_image, write_json


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
    if min(l2, non_negative, keep_zeros) < 0:
        raise UsageError(f"--weights {weights!r} must not be negative")
    return l2 * dp.L2() + non_negative * dp.NonNegative() + keep_zeros * dp.KeepZeros()


def _stats(kernel: Any, goal: Any) -> dict[str, float]:
    import numpy as np

    return {
        "rms_error": float(np.sqrt(np.mean((kernel - goal) ** 2))),
        "min": float(kernel.min()),
        "max": float(kernel.max()),
        "spill": float(np.abs(kernel[goal == 0]).sum() / max(np.abs(kernel).sum(), 1e-30)),
    }


def _write_vectors(out: Path, bank: Any) -> None:
    import numpy as np

    vectors = {"vertical": np.asarray(bank.vertical), "horizontal": np.asarray(bank.horizontal)}
    write_json(out / "vectors.json", {k: v.tolist() for k, v in vectors.items()})
    atomic_write(
        out / "vectors.npz",
        lambda temp: np.savez(
            temp, vertical=vectors["vertical"], horizontal=vectors["horizontal"]
        ),
        suffix=".npz",
    )


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


def run_filter(args: argparse.Namespace) -> int:
    """Run `diffprims filter`; returns the exit status."""
    import numpy as np

    import diffprims as dp

    target = _kernel(args.kernel)
    loss = _loss(args.weights)
    image = None if args.apply is None else read_image(args.apply)
    out = Path(args.output)
    claim_output(out, FILTER_FILES, force=args.force)
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

    dp.save_image(out / "kernel.png", _kernel_picture([goal, svd, fitted]))
    _write_vectors(out, bank)
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
        "svd": _stats(svd, goal),
        "fitted": _stats(fitted, goal),
        "weights": args.weights,
        "files": files,
    }
    write_json(out / "summary.json", summary)
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
