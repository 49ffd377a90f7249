"""`diffprims paint`: approximate an image with N soft shapes and write the results."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from .._paint._settings import MAX_RESTARTS as MAX_RESTARTS  # `--restarts`, as `dp.paint`
from . import _outputs
from ._cache import compile_seconds, enable_compilation_cache, note_compiling
from ._common import UsageError, write_json
from ._paint_input import MAX_RENDER_SIZE as MAX_RENDER_SIZE, read_inputs, write_seconds
from ._shape_spec import resolve_shape
from ._signals import finish_writing

#: What a folder given to `-o` receives (name -> format).
FOLDER_FILES = {
    "result.png": "png", "result.svg": "svg", "progress.gif": "gif", "shapes.json": "json",
    "model.eqx": "eqx", "summary.json": "summary",
}  # fmt: skip

#: Limits of the arguments, checked before anything is read or fitted. `-n`: paint's final
#: colour solve holds an (n+1)^2 matrix for the n shapes plus 30 % spares, which
#: `dp.paint` caps at 4 GiB (about 14500 shapes); the same cap keeps `--fit` sane.
MAX_SHAPES = 10_000
#: `--size` (the fit) and `--render-size` (`MAX_RENDER_SIZE`: a render 12000 px wide took
#: 9 GB while drawing).
MAX_SIZE = 4096
#: `--frames` and `--rounds`: each frame of the animation is one render at the fit size.
MAX_FRAMES = 1000
#: The animation's frames are rendered together: at most this much memory for them.
MAX_GIF_BYTES = 4 * 2**30

#: Options of one mode only (the option, its `args` name, the mode it belongs to).
_MODE_ONLY = (
    ("--batch", "batch", "--fit"),
    ("--background", "background", "--fit"),
    ("--opacity", "opacity", "--fit"),
    ("--rounds", "rounds", "paint (without --fit)"),
    ("--restarts", "restarts", "paint (without --fit)"),
    ("--seconds", "seconds", "paint (without --fit)"),
)


def check_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """Every check that needs no file; the settings derived from the arguments."""
    for option, name, mode in _MODE_ONLY:
        fit_only = mode == "--fit"
        if getattr(args, name) is not None and fit_only != args.fit:
            raise UsageError(f"{option} applies to {mode} only")
    if args.steps is not None and args.seconds is not None:
        raise UsageError("give --steps or --seconds, not both")
    if args.frames is not None and args.gif == "progress" and not args.fit:
        raise UsageError(
            "--frames applies to --fit or --gif shapes (paint's progress.gif has one frame "
            "per round: set --rounds)"
        )
    if args.rounds is not None and args.rounds > args.num_shapes:
        raise UsageError(
            f"--rounds {args.rounds} exceeds -n {args.num_shapes}: each round adds at least "
            "one shape"
        )
    shape = resolve_shape(args.shape)  # last: it may import the user's module
    steps = args.steps if args.steps is not None else (None if args.seconds else 1500)
    if args.fit and args.steps is None:
        steps = 2000
    return {
        "shape_type": shape.cls,
        "shape_name": shape.name,
        "svg": shape.svg,
        "steps": steps,
        "frames": args.frames or 40,
        "softness": args.softness or (1.0 if args.fit else 0.5),
        "lr": args.lr or 0.01,
    }


def run_paint(args: argparse.Namespace) -> int:
    """Run `diffprims paint`; returns the exit status (130 after Ctrl-C)."""
    import diffprims as dp

    started = getattr(args, "started", None) or time.perf_counter()
    settings = check_arguments(args)
    folder_files = {name: kind for name, kind in FOLDER_FILES.items()
                    if kind != "svg" or settings["svg"]}  # fmt: skip
    source = args.image if args.image is not None else dp.demo_image_path()
    files = _outputs.plan(args.output or ["out"], folder_files, force=args.force,
                          inputs={"IMAGE": source}, other_names=tuple(FOLDER_FILES))  # fmt: skip
    _check_svg(args, settings, files)
    target, render_shape, reference = read_inputs(args, source)
    fit_shape = (int(target.shape[0]), int(target.shape[1]))
    if "gif" in files.values():
        _check_gif_memory(args, settings, fit_shape)
    svg = "svg" in files.values()
    soft = args.svg_edges != "hard"  # `auto`: soft (`to_svg` draws edges under 0.175 px hard)
    reserve = write_seconds(render_shape, fit_shape, svg and (settings["shape_type"], soft),
                            args.num_shapes, settings["softness"])  # fmt: skip
    with _outputs.claimed(files, force=args.force):
        if not args.quiet:  # not before an output refused here: one line then
            print(_header(args, settings, source, fit_shape), file=sys.stderr)
            spent = time.perf_counter() - started
            _warn_of_overrun(args, spent, reserve, render_shape, fit_shape)
        if not args.no_cache:
            enable_compilation_cache()
        compiled_before = compile_seconds()
        seconds = _paint_seconds(args, started, reserve)
        from diffprims._paint._later import compile_later

        from ._pictures import renders_ahead

        # The outputs' renders compile in paint's warm-up thread while it paints.
        ahead = renders_ahead(args, settings, files, fit_shape, render_shape, reference)
        with compile_later(ahead) as later:
            result, interrupted, diverged = _fit(args, settings, target, seconds)
        with finish_writing(interrupted):
            later.wait()
            summary = _write(args, settings, files, source, result, target, render_shape,
                             reference, interrupted, diverged is not None)  # fmt: skip
    if diverged is not None:  # after the files are written: status 1, one line
        raise RuntimeError(diverged)
    if not args.quiet:
        shown = sorted({os.fspath(p.parent) for p in files})
        print(
            f"PSNR {summary['psnr']:.2f} dB at {_size(fit_shape)}{_render_psnr(summary)} with "
            f"{_count(args.num_shapes, settings['shape_name'])} after {summary['steps']} steps "
            f"({summary['seconds']:.1f} s); wrote {len(files)} files to {', '.join(shown)}",
            file=sys.stderr,
        )
        note_compiling(args, compile_seconds() - compiled_before, summary["steps"])
    return 130 if interrupted else 0


def _check_svg(args: argparse.Namespace, settings: dict[str, Any], files: dict) -> None:
    """A type with no SVG form: an `.svg` asked for by name is refused; a folder gets
    no result.svg (said on stderr)."""
    if settings["svg"]:
        return
    why = (f"{settings['shape_type'].__name__} has no SVG form (its svg_geometry raises "
           "NotImplementedError)")  # fmt: skip
    asked = [path for path, kind in files.items() if kind == "svg"]
    if asked:
        raise UsageError(f"-o {os.fspath(asked[0])!r}: {why}; write a .png instead")
    if not args.quiet and "summary" in files.values():  # a folder
        print(f"{why}: the output folder gets no result.svg", file=sys.stderr)


def _size(shape: tuple[int, int] | list[int]) -> str:
    """`(H, W)` as people write it: `WxH`."""
    return f"{shape[1]}x{shape[0]}"


def _count(n: int, name: str) -> str:
    """`n` shapes of the type `name` as people write it: 1 circle, 2 circles; 1
    rings:Rings shape, 2 rings:Rings shapes (a type of one's own)."""
    if ":" in name:
        return f"{n} {name} shape{'' if n == 1 else 's'}"
    return f"{n} {name.removesuffix('s') if n == 1 else name}"


def _render_psnr(summary: dict[str, Any]) -> str:
    extra = summary.get("psnr_at_render_size")
    return "" if extra is None else f" ({extra:.2f} dB at {summary['render_size']})"


def _header(args, settings, source, fit_shape) -> str:
    budget = f"{args.seconds:g} s" if args.seconds else f"{settings['steps']} steps"
    recipe = "plain fit" if args.fit else "paint"
    return (
        f"{recipe}: {os.fspath(source)} at {_size(fit_shape)} with "
        f"{_count(args.num_shapes, settings['shape_name'])}, {budget}; the PSNR shown is at "
        f"{_size(fit_shape)} (while running, on the sampled pixels)"
    )


#: The least share of `--seconds` the painting gets, whatever loading and writing take.
LEAST_PAINTING_SHARE = 0.25


def _paint_seconds(args: argparse.Namespace, started: float, reserve: float) -> float | None:
    """`--seconds` covers the command, not only the painting: what is left of it after
    reading the image, less `reserve` for writing the outputs (`write_seconds`), and at
    least `LEAST_PAINTING_SHARE` of it."""
    if args.seconds is None:
        return None
    left = args.seconds - (time.perf_counter() - started) - reserve
    return max(left, LEAST_PAINTING_SHARE * args.seconds)


def _warn_of_overrun(args, spent: float, reserve: float, render_shape, fit_shape) -> None:
    """A line when loading (`spent` seconds so far) and writing the results (`reserve`)
    leave the painting less than its least share of `--seconds` (`_paint_seconds`): the
    command will then take longer than asked."""
    if args.seconds is None:
        return
    least = LEAST_PAINTING_SHARE * args.seconds
    if args.seconds - spent - reserve >= least:
        return
    hints = ["a smaller --render-size writes faster"] if render_shape != fit_shape else []
    if reserve - write_seconds(render_shape, fit_shape) >= 1.0:  # the SVG's soft edges
        hints.append("--svg-edges hard writes the SVG faster")
    hint = f" ({'; '.join(hints)})" if hints else ""
    print(
        f"loading took {spent:.1f} s and writing the results at {_size(render_shape)} takes "
        f"about {reserve:.1f} s: the command will take longer than --seconds "
        f"{args.seconds:g}, the painting {least:.2g} s of it{hint}",
        file=sys.stderr,
    )


def _fit(args: argparse.Namespace, settings: dict[str, Any], target: Any, seconds: Any):
    """`(result, interrupted, diverged)`: `dp.paint`'s recipe, or plain `dp.fit` with
    `--fit`; `diverged` is None, or what to say of a fit that diverged (its result is
    then the last finite one, written like any other)."""
    import jax
    import optax

    import diffprims as dp

    key_init, key_fit = jax.random.split(jax.random.key(args.seed))
    shape_type, steps = settings["shape_type"], settings["steps"]
    try:
        if not args.fit:
            return dp.paint(
                target, args.num_shapes, key=key_fit, shape=shape_type, seconds=seconds,
                steps=steps, softness=settings["softness"], lr=settings["lr"],
                lr_geometry=settings["lr"], lr_colour=settings["lr"],
                rounds=args.rounds or 8, restarts=args.restarts or 1, progress=not args.quiet,
            ), False, None  # fmt: skip
        batch = args.batch if args.batch is not None else 0.1
        if batch is not None and round(batch * target.shape[0] * target.shape[1]) < 1:
            batch = None
        model, trainable = _start(args, settings, shape_type, target, key_init)
        return dp.fit(
            model, target, loss=dp.L2(), optimizer=optax.adam(settings["lr"]), steps=steps,
            batch=batch, key=key_fit, progress=not args.quiet, trainable=trainable,
            snapshots=min(settings["frames"], steps + 1),
        ), False, None  # fmt: skip
    except dp.FitDivergedError as error:  # the Python API's advice does not fit here
        said = (
            f"the fit diverged at step {error.step} (its loss is not finite); lower --lr "
            f"(it was {settings['lr']:g})"
        )
        # A long run that diverges late keeps what it reached, the last finite result,
        # where that still draws a finite picture and has finite values (one step of a
        # huge rate may not).
        if not _draws_finite(error.result.model, target.shape[:2]):
            raise RuntimeError(said) from None
        return error.result, False, f"{said}; the outputs hold the last finite result"
    except dp.FitInterrupted as stop:
        # Ctrl-C: write what the fit reached (a second Ctrl-C stops the writing).
        print(f"interrupted after {stop.step} steps; writing the results so far (Ctrl-C "
              "again stops the writing)", file=sys.stderr)  # fmt: skip
        return stop.result, True, None


def _draws_finite(model: Any, shape: tuple[int, int]) -> bool:
    import jax.numpy as jnp

    from . import _pictures

    finite = bool(jnp.all(jnp.isfinite(_pictures.render(model, shape))))
    return finite and _pictures.values_finite(model)


def _start(args, settings, shape_type, target, key):
    """The plain fit's random start, with `--background`/`--opacity` fixed; what trains."""
    import equinox as eqx
    import jax.numpy as jnp

    import diffprims as dp

    # `init` takes opacities in (0, 1) (a logit is stored); `--opacity 1` means opaque:
    # 1 - 1e-6 is within float32 rounding of it.
    opacity = min(args.opacity, 1.0 - 1e-6) if args.opacity is not None else 0.6
    model = shape_type.init(
        args.num_shapes, key=key, target=target, softness=settings["softness"],
        opacity=opacity,
    )  # fmt: skip
    if args.background is not None:
        raw = dp.roles.COLOUR.raw(jnp.asarray(args.background, jnp.float32))
        model = eqx.tree_at(lambda m: m.raw_background, model, raw)
        model = model.with_compositing(model.compositing, learn_background=False)
    if args.opacity is None:
        return model, None
    return model, model.trainable("geometry", "colour")


def _write(args, settings, files, source, result, target, render_shape, reference,
           interrupted, diverged) -> dict:  # fmt: skip
    """Write every file of `files` as a set; the summary."""
    import numpy as np

    import diffprims as dp

    from . import _pictures

    fitted: Any = result.model
    fit_shape = (int(target.shape[0]), int(target.shape[1]))
    # The animation's frames end with the final picture at the fit size: one compiled
    # (and persistently cached) program for both.
    gif = "gif" in files.values()
    frames = _pictures.frames(args, settings, result, fit_shape) if gif else None
    at_fit = frames[-1] if frames is not None else np.asarray(_pictures.render(fitted, fit_shape))
    image = at_fit if reference is None else np.asarray(_pictures.render(fitted, render_shape))
    losses = np.asarray(result.losses)
    summary: dict[str, Any] = {
        "image": os.fspath(source),
        "mode": "fit" if args.fit else "paint",
        "psnr": round(float(dp.psnr(at_fit, target)), 4),
        "fit_size": _size(fit_shape),
        "render_size": _size(render_shape),
        # The final picture's L2 loss (mean squared error) on every pixel at the fit
        # size, as `psnr`; the last step's loss was on that step's sampled pixels (and,
        # early in paint, on a blurred target).
        "loss": float(np.mean(np.square(np.asarray(at_fit, np.float64) - np.asarray(target)))),
        "last_step_loss": float(losses[-1]) if losses.size else None,
        "steps": int(losses.shape[0]),
        "interrupted": interrupted,
        "diverged": diverged,
        "seconds": round(float(result.seconds), 3),
        "shape": settings["shape_name"],
        "num_shapes": args.num_shapes,
        "settings": _settings(args, settings, fitted),
        "files": [os.fspath(p) for p in files],
    }
    if reference is not None:
        summary["psnr_at_render_size"] = round(float(dp.psnr(image, reference)), 4)

    def write(path: Path, kind: str) -> None:
        if kind in ("png", "jpg"):
            dp.save_image(path, np.asarray(image))
        elif kind == "svg":
            _write_svg(path, fitted, render_shape, args.svg_edges)
        elif kind == "gif":
            assert frames is not None
            _pictures.encode_gif(path, frames)
        elif kind == "json":
            write_json(path, _pictures.shapes_json(fitted, fit_shape))
        elif kind == "eqx":
            dp.save(path, fitted)
        else:
            write_json(path, summary)

    _outputs.write_all(files, write)
    return summary


def _settings(args, settings, fitted) -> dict[str, Any]:
    return {
        "steps_budget": settings["steps"],
        "seconds_budget": args.seconds,
        "lr": settings["lr"],
        "batch": (args.batch if args.batch is not None else 0.1) if args.fit else None,
        "rounds": None if args.fit else (args.rounds or 8),
        "restarts": None if args.fit else (args.restarts or 1),
        "softness": fitted.softness,
        "seed": args.seed,
        "gif": args.gif,
        "svg_edges": args.svg_edges,
        "background": args.background,
        "opacity": args.opacity,
    }


def _write_svg(path: Path, model: Any, shape: tuple[int, int], edges: str) -> None:
    import diffprims as dp

    try:
        dp.save_svg(path, model, shape, soft_edges=edges != "hard")
    except ValueError as error:  # e.g. additive compositing has no SVG form
        raise UsageError(f"cannot write {path.name}: {str(error).rstrip('.')}") from None


def _check_gif_memory(args, settings, fit_shape: tuple[int, int]) -> None:
    from ._pictures import frame_count

    count = frame_count(args, settings)
    need = count * fit_shape[0] * fit_shape[1] * 3 * 4
    if need > MAX_GIF_BYTES:
        option = "--rounds" if args.gif == "progress" and not args.fit else "--frames"
        raise UsageError(
            f"the animation's {count} frames at {_size(fit_shape)} need about "
            f"{need / 2**30:.1f} GiB (at most {MAX_GIF_BYTES / 2**30:.0f}); use fewer "
            f"{option}, a smaller --size, or outputs without a .gif"
        )
