"""What `diffprims paint` writes: renders (compiled once), GIF frames (batched), the shapes
as a readable JSON list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


@eqx.filter_jit
def render(model: Any, shape: tuple[int, int]):
    """`model.render_image(shape)`, compiled once per structure and size."""
    return model.render_image(shape)


@eqx.filter_jit
def _render_each(models: Any, shape: tuple[int, int]):
    # `lax.map`, not `vmap`: the renderer compiles once for one model (the tiled
    # renderer's culling under `vmap` compiles slower and runs no faster).
    return jax.lax.map(lambda m: m.render_image(shape), models)


@eqx.filter_jit
def _render_first(model: Any, counts: Any, shape: tuple[int, int]):
    """The set drawn with only its first `k` shapes, for every `k` in `counts`."""
    index = jnp.arange(model.num_shapes)

    def first(k):
        hidden = jnp.where(index < k, model.raw_opacities, -jnp.inf)
        return eqx.tree_at(lambda m: m.raw_opacities, model, hidden).render_image(shape)

    return jax.lax.map(first, counts)


def progress_frames(
    snapshots: list[Any], final: Any, shape: tuple[int, int], *, most: int
) -> np.ndarray:
    """The snapshots then `final` rendered in one compiled call, `(F, H, W, C)` (the
    last snapshot is dropped when it is `final`).

    The batch is padded to `most` models, so a run stopped early (fewer snapshots) reuses
    the program a full run compiled (and cached) instead of compiling another. `most` is
    the frames a full run can have (`_paint.frame_count`), never a user's bare `--frames`:
    each padded model is rendered too.
    """
    if snapshots and _same(snapshots[-1], final):
        snapshots = snapshots[:-1]
    models = [*snapshots, final]
    padded = models + [final] * max(0, most - len(models))
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *padded)
    return np.asarray(_render_each(stacked, shape))[: len(models)]


def shape_frames(model: Any, frames: int, shape: tuple[int, int]) -> np.ndarray:
    """The shapes added one by one (in drawing order): `frames` pictures ending with the
    whole set, `(F, H, W, C)`."""
    n = model.num_shapes
    counts = np.unique(np.round(np.linspace(0, n, max(2, min(frames, n + 1)))).astype(np.int32))
    return np.asarray(_render_first(model, jnp.asarray(counts), shape))


def _same(a: Any, b: Any) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.shape(x) == np.shape(y) and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b)
    )


def encode_gif(path: Path, frames: np.ndarray, *, seconds_per_frame: float = 0.1) -> None:
    """Frames `(F, H, W, C)` in `[0, 1]` as a looping GIF with one palette for all."""
    from PIL import Image

    pixels = (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    pictures = [Image.fromarray(p[..., :3]) for p in pixels]
    palette = pictures[-1].quantize(256, method=Image.Quantize.MEDIANCUT)
    indexed = [p.quantize(palette=palette, dither=Image.Dither.NONE) for p in pictures]
    durations = [round(seconds_per_frame * 1000)] * len(indexed)
    durations[-1] = max(durations[-1], 1000)  # hold the finished picture
    indexed[0].save(
        path, format="GIF", save_all=True, append_images=indexed[1:], duration=durations,
        loop=0, optimize=False,
    )  # fmt: skip


def shapes_json(model: Any, fit_shape: tuple[int, int]) -> dict[str, Any]:
    """The shapes as data: type, frame, background, and per shape its geometry (in
    pixels of the fit size for positions and sizes), colour and opacity."""
    height, width = fit_shape
    roles = model.parameter_roles()
    per_shape: dict[str, np.ndarray] = {}
    for name, role in roles.items():
        raw = getattr(model, name)
        if raw is None or role.kind in ("colour", "opacity") or raw.ndim == 0:
            continue
        if raw.shape[0] != model.num_shapes:
            continue
        value = np.asarray(role.value(raw), np.float64)
        if role.kind in ("position", "size"):
            value = value * height  # frame units are image heights
        per_shape[name.removeprefix("raw_")] = value
    colours = np.asarray(model.colours, np.float64)
    opacities = np.asarray(model.opacities, np.float64)
    shapes = []
    for i in range(model.num_shapes):
        entry: dict[str, Any] = {k: _rounded(v[i]) for k, v in per_shape.items()}
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
        "shapes": shapes,
    }


def _rounded(value: np.ndarray) -> Any:
    return np.round(value, 3).tolist()


def _hex(colour: np.ndarray) -> str:
    levels = np.clip(np.round(np.asarray(colour) * 255), 0, 255).astype(int)
    if levels.size == 1:
        levels = np.repeat(levels, 3)
    return "#" + "".join(f"{v:02x}" for v in levels[:3])
