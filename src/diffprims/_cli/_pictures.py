"""What `diffprims paint` writes: renders (compiled once), GIF frames (batched), the shapes
as a readable JSON list."""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._shapes._roles import is_per_shape
from .._validate import trusted


@eqx.filter_jit
@trusted  # models from a fit or a file, checked there
def render(model: Any, shape: tuple[int, int]):
    """`model.render_image(shape)`, compiled once per structure and size."""
    return model.render_image(shape)


@eqx.filter_jit
@trusted
def _render_each(models: Any, shape: tuple[int, int]):
    # `lax.map`, not `vmap`: the renderer compiles once for one model (the tiled
    # renderer's culling under `vmap` compiles slower and runs no faster).
    return jax.lax.map(lambda m: m.render_image(shape), models)


@eqx.filter_jit
@trusted
def _render_first(model: Any, counts: Any, shape: tuple[int, int]):
    """The set drawn with only its first `k` shapes, for every `k` in `counts`."""
    index = jnp.arange(model.num_shapes)

    def first(k):
        # Opacity exactly 0 (sigmoid of -3e4), from a finite parameter: a model's
        # parameters must be finite to be drawn.
        hidden = jnp.where(index < k, model.raw_opacities, -1e4)
        return eqx.tree_at(lambda m: m.raw_opacities, model, hidden).render_image(shape)

    return jax.lax.map(first, counts)


def progress_frames(
    snapshots: list[Any], final: Any, shape: tuple[int, int], *, most: int
) -> np.ndarray:
    """The snapshots then `final` rendered in one compiled call, `(F, H, W, C)` (the
    last snapshot is dropped when it is `final`).

    The batch is padded to `most` models, so a run stopped early (fewer snapshots) reuses
    the program a full run compiled (and cached) instead of compiling another. `most` is
    the frames a full run can have (`frame_count`), never a user's bare `--frames`:
    each padded model is rendered too.
    """
    if snapshots and _same(snapshots[-1], final):
        snapshots = snapshots[:-1]
    models = [*snapshots, final]
    padded = models + [final] * max(0, most - len(models))
    return np.asarray(_render_each(_stacked(padded), shape))[: len(models)]


def _stacked(models: list[Any]) -> Any:
    # On the host: `jnp.stack` compiled a program per field on a cold first run.
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *models)


def shape_frames(model: Any, frames: int, shape: tuple[int, int]) -> np.ndarray:
    """The shapes added one by one (in drawing order): `frames` pictures ending with the
    whole set, `(F, H, W, C)`."""
    return np.asarray(_render_first(model, _counts(model.num_shapes, frames), shape))


def _counts(n: int, frames: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n, max(2, min(frames, n + 1)))).astype(np.int32))


def compile_renders(model: Any, fit_shape: tuple[int, int], render_shape: tuple[int, int] | None,
                    gif: str | None, frames: int) -> None:  # fmt: skip
    """Compile what the outputs of a painting like `model` will render (its final
    picture at `fit_shape` and, unless None, at `render_shape`; with `gif` "progress",
    `frames` pictures in one batch, with "shapes" `frames` pictures of the first shapes):
    run ahead, in `paint`'s warm-up thread."""
    if gif == "shapes":
        _render_first.lower(model, _counts(model.num_shapes, frames), fit_shape).compile()
    elif gif is not None:
        _render_each.lower(_stacked([model] * frames), fit_shape).compile()
    else:
        render.lower(model, fit_shape).compile()
    if render_shape is not None:
        render.lower(model, render_shape).compile()


def _same(a: Any, b: Any) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.shape(x) == np.shape(y) and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b)
    )


def encode_gif(path: Path, frames: np.ndarray) -> None:
    """Frames `(F, H, W, C)` in `[0, 1]` as a looping GIF, as `dp.save_gif` writes one:
    a tenth of a second a frame, the finished picture held a second."""
    from .._gif import write_frames

    write_frames(path, frames, seconds_per_frame=0.1, hold_last=1.0, loop=True)


#: The fields `shapes_json` writes as `colour`, `opacity` and `background`.
_APPEARANCE = ("raw_colours", "raw_opacities", "raw_background")


class _Field(NamedTuple):
    label: str  # its name in shapes.json
    value: np.ndarray
    per_shape: bool
    colour: bool  # written as #rrggbb


def shapes_json(model: Any, fit_shape: tuple[int, int]) -> dict[str, Any]:
    """The shapes as data: type, frame, background, `shared` (the values every shape has,
    `per_shape=False`) and per shape its geometry, colour and opacity.

    Each field is written as its declaration says (`dp.parameter(role, per_shape=...)`),
    never guessed from its length: as its value (the role's transform; positions and
    sizes in pixels of the fit size, colours `#rrggbb`), named without `raw_`; a field
    declared with no role as it is stored, under a `raw_` name."""
    height, width = fit_shape
    fields = _fields(model, height)
    channels = model.num_channels
    shared = {f.label: _exported(f.value, f.colour, channels) for f in fields if not f.per_shape}
    colours = np.asarray(model.colours, np.float64)
    opacities = np.asarray(model.opacities, np.float64)
    shapes = []
    for i in range(model.num_shapes):
        entry = {f.label: _exported(f.value[i], f.colour, channels) for f in fields if f.per_shape}
        entry["colour"] = _hex(colours[i])
        entry["opacity"] = round(float(opacities[i]), 4)
        shapes.append(entry)
    return {
        "type": type(model).__name__,
        "width": width,
        "height": height,
        "units": "pixels of the width x height frame (x right, y down); angles in radians",
        "background": _hex(np.asarray(model.background, np.float64)),
        "softness": model.softness,
        "compositing": model.compositing,
        "options": _options(model),
        "shared": shared,
        "shapes": shapes,
    }


def values_finite(model: Any) -> bool:
    """Whether every value the SVG and `shapes.json` write is finite: a radius whose
    stored logarithm a huge step pushed past 88 is inf (its picture, one colour over
    everything, is finite), and the SVG held `nan` and `inf`."""
    with np.errstate(over="ignore", invalid="ignore"):
        return all(np.isfinite(field.value).all() for field in _fields(model, 1))


def _options(model: Any) -> dict[str, Any]:
    """The type's own static fields (a user's star's number of points), as JSON has them
    (else as their `repr`): without them, two sets of one type could not be told apart."""
    common = {"softness", "compositing", "learn_background"}
    options = {}
    for field in dataclasses.fields(model):
        if field.metadata.get("static", False) and field.name not in common:
            value = getattr(model, field.name)
            plain = isinstance(value, bool | int | float | str) or value is None
            options[field.name] = value if plain else repr(value)
    return options


def _fields(model: Any, height: int) -> list[_Field]:
    """Every array field as its declaration says, but the appearance `shapes_json` writes
    itself and the unset (None) ones."""
    declared = {f.name: f.metadata for f in dataclasses.fields(model)}
    found = []
    for name, role in model.parameter_roles().items():
        raw = getattr(model, name)
        if raw is None or name in _APPEARANCE:
            continue
        per_shape = is_per_shape(type(model), name)
        if declared[name].get("role") is None:  # undeclared: as stored, under a raw_ name
            label = name if name.startswith("raw_") else f"raw_{name}"
            found.append(_Field(label, np.asarray(raw, np.float64), per_shape, False))
            continue
        value = np.asarray(role.value(raw), np.float64)
        if role.kind in ("position", "size"):
            value = value * height  # frame units are image heights
        found.append(_Field(name.removeprefix("raw_"), value, per_shape, role.kind == "colour"))
    return found


def _exported(value: np.ndarray, colour: bool, channels: int) -> Any:
    """`value` for JSON: a colour (its last axis the channels) as `#rrggbb`, numbers
    rounded."""
    if not colour or np.ndim(value) == 0 or np.shape(value)[-1] != channels:
        return _rounded(value)
    if np.ndim(value) == 1:
        return _hex(value)
    return [_exported(row, colour, channels) for row in value]


def _rounded(value: np.ndarray) -> Any:
    return np.round(value, 3).tolist()


def _hex(colour: np.ndarray) -> str:
    levels = np.clip(np.round(np.asarray(colour) * 255), 0, 255).astype(int)
    if levels.size == 1:
        levels = np.repeat(levels, 3)
    return "#" + "".join(f"{v:02x}" for v in levels[:3])


#: Rounds after paint's `--rounds`: one removes the spare shapes (paint places 30 % more
#: than asked for), then `dp.paint`'s two cycles each add spares and remove them again.
EXTRA_ROUNDS = 1 + 2 * 2


def frame_count(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    """The most frames the animation can have: the batch its frames are rendered in.

    With `--fit`, one per snapshot (at most one per step and the start) and the final
    picture; with `--gif shapes`, `--frames` (at most one per shape and the background);
    else one per round of `dp.paint` (`--rounds`, at most one per shape, and the
    `EXTRA_ROUNDS`) and the final picture.
    """
    if args.gif == "shapes":
        return min(settings["frames"], args.num_shapes + 1)
    if args.fit:
        return min(settings["frames"], settings["steps"] + 1) + 1
    return min(args.rounds or 8, args.num_shapes) + EXTRA_ROUNDS + 1


def frames(args: argparse.Namespace, settings: dict[str, Any], result: Any,
           fit_shape: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """The animation's frames, `(F, H, W, C)`."""
    if args.gif == "shapes":
        return shape_frames(result.model, settings["frames"], fit_shape)
    most = frame_count(args, settings)
    return progress_frames(list(result.snapshots), result.model, fit_shape, most=most)


def renders_ahead(args, settings, files, fit_shape, render_shape, reference) -> Any:
    """`compile_renders` for what `diffprims paint` will write, given a model."""
    gif = args.gif if "gif" in files.values() else None
    count = settings["frames"] if gif == "shapes" else frame_count(args, settings)
    return functools.partial(
        compile_renders, fit_shape=fit_shape, gif=gif, frames=count,
        render_shape=None if reference is None else render_shape,
    )  # fmt: skip
