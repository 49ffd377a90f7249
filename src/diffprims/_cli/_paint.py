"""`diffprims paint`: approximate an image with N soft shapes and write the results."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ._common import PAINT_FILES, UsageError, claim_output, read_image, shape_types, write_json


def _inputs(args: argparse.Namespace):
    """`(shape type, source, target at fit size, render shape, reference at render size)`."""
    import diffprims as dp

    shapes = shape_types()
    shape_type = shapes.get(args.shape.lower())
    if shape_type is None:
        raise UsageError(f"unknown --shape {args.shape!r}; choose one of {', '.join(shapes)}")
    source = args.image if args.image is not None else dp.demo_image_path()
    target = read_image(source, size=args.size)
    full = read_image(source)
    full_height, full_width = full.shape[:2]
    if args.render_size is None:
        render_shape = (full_height, full_width)
    else:
        scale = args.render_size / max(full_height, full_width)
        render_shape = (max(1, round(full_height * scale)), max(1, round(full_width * scale)))
    reference = (
        full
        if render_shape == (full_height, full_width)
        else read_image(source, size=render_shape)
    )
    return shape_type, source, target, render_shape, reference


def _fit(args: argparse.Namespace, shape_type: Any, target: Any):
    """`(result, interrupted)`: `dp.paint` with `--seconds`, else plain `dp.fit`."""
    import jax
    import optax

    import diffprims as dp

    key_init, key_fit = jax.random.split(jax.random.key(args.seed))
    batch = args.batch
    if batch is not None and round(batch * target.shape[0] * target.shape[1]) < 1:
        batch = None
    try:
        if args.seconds is not None:
            # One frame per round of `paint` (the picture as shapes are added).
            result = dp.paint(
                target, args.num_shapes, key=key_fit, shape=shape_type, seconds=args.seconds,
                softness=args.softness or 0.5, rounds=min(8, args.frames, args.num_shapes),
                progress=not args.quiet,
            )  # fmt: skip
        else:
            model = shape_type.init(
                args.num_shapes, key=key_init, target=target, softness=args.softness or 1.0
            )
            result = dp.fit(
                model, target, loss=dp.L2(), optimizer=optax.adam(args.lr), steps=args.steps,
                batch=batch, key=key_fit, progress=not args.quiet,
                snapshots=min(args.frames, args.steps + 1),
            )  # fmt: skip
    except dp.FitInterrupted as stop:
        # Ctrl-C: write what the fit reached (a second Ctrl-C aborts the writing).
        of = "" if args.seconds is not None else f" of {args.steps}"
        message = f"interrupted after {stop.step}{of} steps; writing the results so far"
        print(message, file=sys.stderr)
        return stop.result, True
    return result, False


def run_paint(args: argparse.Namespace) -> int:
    """Run `diffprims paint`; returns the exit status (130 after Ctrl-C)."""
    shape_type, source, target, render_shape, reference = _inputs(args)
    out = Path(args.output)
    claim_output(out, PAINT_FILES, force=args.force)
    if not args.quiet:
        budget = f"{args.seconds:g} s" if args.seconds else f"{args.steps} steps"
        print(
            f"painting {os.fspath(source)} ({target.shape[1]}x{target.shape[0]}) with "
            f"{args.num_shapes} {args.shape}, {budget}",
            file=sys.stderr,
        )
    result, interrupted = _fit(args, shape_type, target)
    summary = _write(args, out, source, result, interrupted, target, render_shape, reference)
    if not args.quiet:
        print(
            f"PSNR {summary['psnr']:.2f} dB with {args.num_shapes} {args.shape} after "
            f"{summary['steps']} steps ({result.seconds:.1f} s); wrote "
            f"{', '.join(summary['files'])} to {out}/",
            file=sys.stderr,
        )
    return 130 if interrupted else 0


def _write(args, out, source, result, interrupted, target, render_shape, reference) -> dict:
    """Write result.png/.svg, progress.gif, model.eqx and summary.json; the summary."""
    import equinox as eqx
    import numpy as np

    import diffprims as dp

    fitted: Any = result.model
    fit_shape = (int(target.shape[0]), int(target.shape[1]))
    image = eqx.filter_jit(lambda m: m.render_image(render_shape))(fitted)
    dp.save_image(out / "result.png", image)
    written = np.asarray(dp.load_image(out / "result.png"))
    psnr = float(dp.psnr(written, reference))
    fit_psnr = float(dp.psnr(eqx.filter_jit(lambda m: m.render_image(fit_shape))(fitted), target))
    dp.save_svg(out / "result.svg", fitted, render_shape)
    frames = (*result.snapshots, fitted) if interrupted else result.snapshots
    dp.save_gif(out / "progress.gif", frames or (fitted,), fit_shape)
    dp.save(out / "model.eqx", fitted)
    losses = np.asarray(result.losses)
    summary = {
        "image": os.fspath(source),
        "psnr": round(psnr, 4),
        "psnr_at_fit_size": round(fit_psnr, 4),
        "loss": float(losses[-1]) if losses.size else None,
        "steps": int(losses.shape[0]),
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
        "files": list(PAINT_FILES),
    }
    write_json(out / "summary.json", summary)
    return summary
