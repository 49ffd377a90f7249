"""Progress animations: render a fit's snapshots as an animated GIF."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ._files import atomic_write, check_suffix
from ._finite import non_finite_flag
from ._fit._canon import signature
from ._image_save import to_pixels
from ._model import AbstractModel, batch_shape
from ._validate import (
    check_bool,
    check_grid_shape,
    check_scalar,
    describe,
    is_traced,
    trusted,
)

#: Frames rendered per compiled call (a batch under `vmap`; the last one is padded).
BATCH = 8

#: The shortest frame, in seconds. GIF delays are whole hundredths of a second, and
#: browsers and most viewers show a delay under 0.02 s as 0.1 s (and 0 as fast as they can).
MIN_SECONDS = 0.02


@eqx.filter_jit
@trusted  # the models are checked finite by `_check_snapshots`
def _render(model: AbstractModel, shape: tuple[int, int]):
    return model.render_image(shape)


@eqx.filter_jit
@trusted
def _render_batch(models: AbstractModel, shape: tuple[int, int]):
    return eqx.filter_vmap(lambda m: m.render_image(shape))(models)


def _frames(models: list[AbstractModel], shape: tuple[int, int]) -> list[np.ndarray]:
    """Every model rendered, `BATCH` at a time when they share a structure."""
    try:  # batched only where every model has the same structure and shapes (and N)
        treedefs = {signature(m) for m in models}
    except TypeError:
        treedefs = {None, 0}
    if len(treedefs) != 1 or len(models) == 1:
        return [np.asarray(_render(m, shape)) for m in models]
    frames = []
    for start in range(0, len(models), BATCH):
        batch = models[start : start + BATCH]
        padded = batch + [batch[-1]] * (BATCH - len(batch))
        # Array leaves stacked; the rest (a user model's activation function, a Python
        # number) is the same in every model (`signature` says so), kept as it is.
        arrays = [eqx.filter(m, eqx.is_array) for m in padded]
        stacked = eqx.combine(
            jax.tree.map(lambda *xs: jnp.stack(xs), *arrays),
            eqx.filter(padded[0], eqx.is_array, inverse=True),
        )
        frames.extend(np.asarray(_render_batch(stacked, shape))[: len(batch)])
    return frames


def _quantize(pictures: list[Image.Image]) -> list[Image.Image]:
    """The frames on one 256-colour palette: the animation's own colours when it has at
    most 256 (every frame then exact), else a median cut of a sample of every frame."""
    step = max(1, round((len(pictures) * pictures[0].width * pictures[0].height / 2**18) ** 0.5))
    sample = np.concatenate([np.asarray(p)[::step, ::step] for p in pictures], axis=0)
    if len(np.unique(_packed(sample))) <= 256:  # else no exact palette: no full pass
        frames = [_packed(np.asarray(p)) for p in pictures]
        colours = np.unique(np.concatenate([f.ravel() for f in frames]))
        if len(colours) <= 256:
            # Indices by hand: Pillow maps onto a given palette through a 6-bit cache.
            rgb = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=-1)
            entries = rgb.astype(np.uint8).ravel().tolist()
            exact = []
            for frame in frames:
                picture = Image.fromarray(np.searchsorted(colours, frame).astype(np.uint8), "P")
                picture.putpalette(entries)
                exact.append(picture)
            return exact
    palette = Image.fromarray(sample).quantize(256, method=Image.Quantize.MEDIANCUT)
    return [p.quantize(palette=palette, dither=Image.Dither.NONE) for p in pictures]


def _packed(rgb: np.ndarray) -> np.ndarray:
    """An `(..., 3)` uint8 array's colours packed as `R << 16 | G << 8 | B`."""
    packed = rgb.astype(np.int32)
    return (packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2]


def _over_white(frame: np.ndarray) -> np.ndarray:
    """An RGBA frame shown over white, as `load_image` reads a transparent image (GIF
    holds no partial transparency); other frames as they are. Clipped to [0, 1] first,
    as `save_image` writes the channels."""
    if frame.shape[-1] != 4:
        return frame
    rgba = np.clip(frame, 0.0, 1.0)
    rgb, opacity = rgba[..., :3], rgba[..., 3:]
    return 1.0 + opacity * (rgb - 1.0)


#: A GIF stores its width and height in 16 bits.
MAX_SIDE = 65535


def _check_channels(models: list[AbstractModel]) -> None:
    counts = sorted({m.num_channels for m in models})
    if any(count not in (1, 3, 4) for count in counts):
        raise ValueError(
            "`snapshots` must be models of 1 (grey), 3 (RGB) or 4 (RGBA) channels to be "
            f"drawn as GIF frames; got models of {' and '.join(map(str, counts))} channels. "
            "Save the channels you want as images instead, e.g. "
            "`dp.save_image(path, model.render_image(shape)[..., :1])`."
        )


def _check_snapshots(snapshots: Any) -> list[AbstractModel]:
    """`snapshots` as a list of models of 1, 3 or 4 channels, else a `ValueError` that
    describes what it got by type and shape (never by its values)."""
    frames = list(snapshots) if isinstance(snapshots, list | tuple) else None
    if not frames or not all(_is_model(m) for m in frames):
        kind = type(snapshots).__name__
        if frames:
            index, item = next((i, m) for i, m in enumerate(frames) if not _is_model(m))
            got = f"a {kind} of {len(frames)} whose item {index} is {_described(item)}"
        else:
            got = _described(snapshots) if frames is None else f"an empty {kind}"
        raise ValueError(
            "`snapshots` must be a non-empty list or tuple of models, such as the "
            f"`snapshots` of `fit(..., snapshots=30)`; got {got}."
        )
    if any(is_traced(leaf) for leaf in jax.tree.leaves(frames)):
        raise TypeError(
            "`save_gif` needs concrete models; got snapshots traced under jit/vmap. Return "
            "them from the transformed function and call `save_gif` outside it."
        )
    batch = batch_shape(frames[0])
    if batch:  # the snapshots of a `jax.vmap`-ed fit: each a batch of models
        raise ValueError(
            f"`snapshots` must be models, one per frame; got a batch of {batch[0]} models "
            "in each (the snapshots of a `jax.vmap`-ed fit?). Pick one run's: "
            "`[jax.tree.map(lambda x: x[i], m) for m in snapshots]`."
        )
    _check_channels(frames)
    for index, frame in enumerate(frames):  # each would draw a frame of NaN
        requirement = f"`snapshots[{index}]` must have finite parameters to be drawn"
        non_finite_flag(frame, requirement, "Save the frames before it.")
    return frames


def _is_model(x: Any) -> bool:
    return isinstance(x, AbstractModel)


def _described(x: Any) -> str:
    """`x` for an error message, by type and shape (a module's repr is every field)."""
    if _is_model(x):
        return f"one {type(x).__name__} model (pass a list, `[model]`)"
    if isinstance(x, eqx.Module):
        return f"a {type(x).__name__} (an eqx.Module, not a model)"
    if hasattr(x, "__next__"):  # a generator or other iterator: no length, read once
        return f"a {type(x).__name__} (pass a list, `list(snapshots)`)"
    return f"a {describe(x)}" if hasattr(x, "shape") else describe(x)


#: The longest frame, in seconds: a GIF delay is a 16-bit count of hundredths.
MAX_SECONDS = 655.35


def _check_seconds(seconds_per_frame: Any, hold_last: Any) -> tuple[float, float]:
    """The two durations as floats, each a number of seconds a GIF can hold."""
    out = []
    for name, value in (("seconds_per_frame", seconds_per_frame), ("hold_last", hold_last)):
        hint = f" It is a number of seconds, at most {MAX_SECONDS} (a GIF's longest delay)."
        value = float(check_scalar(value, name, lower=0.0, hint=hint))
        if round(value * 100) > round(MAX_SECONDS * 100):
            raise ValueError(
                f"`{name}` must be at most {MAX_SECONDS} seconds (GIF delays are 16-bit "
                f"counts of hundredths); got {value!r}. Pass a shorter time."
            )
        out.append(value)
    if round(out[0] * 100) < round(MIN_SECONDS * 100):
        raise ValueError(
            f"`seconds_per_frame` must be at least {MIN_SECONDS} once rounded to hundredths "
            "(GIF delays are whole hundredths of a second, and most viewers show a delay "
            f"under 0.02 s as 0.1 s); got {out[0]!r}. For a faster animation, "
            "pass fewer snapshots, e.g. `snapshots[::2]`."
        )
    return out[0], out[1]


def save_gif(
    path: str | os.PathLike[str],
    snapshots: Sequence[AbstractModel],
    shape: tuple[int, ...],
    *,
    seconds_per_frame: float = 0.1,
    hold_last: float = 1.0,
    loop: bool = True,
) -> Path:
    """Render models (e.g. a fit's snapshots) as the frames of an animated GIF.

    Each model is rendered with `render_image(shape)` (compiled once for all frames,
    several frames per call), so the animation can be made at any size, whatever size
    the fit ran at. Colours are reduced to one 256-colour palette for all frames (GIF's
    limit; an animation of at most 256 colours keeps them exactly), and identical
    consecutive frames (a fit that stopped changing) are merged into one longer frame.
    The file is written atomically.

    **Arguments:**

    - `path`: the `.gif` file to write (another suffix raises a `ValueError`).
    - `snapshots`: a sequence of models with the same structure, e.g.
      `FitResult.snapshots` from `fit(..., snapshots=k)`; one frame each. Models of 1
      (grey), 3 (RGB) or 4 (RGBA) channels; an RGBA frame is shown over white (the
      fourth channel its opacity, as `save_image` writes it and `load_image` reads
      transparency), since a GIF pixel is either opaque or fully transparent.
    - `shape`: the frames' `(H, W)`.
    - `seconds_per_frame`: how long each frame shows, at least 0.02 (GIF delays are
      hundredths of a second, and most viewers show shorter ones as 0.1 s); rounded to
      a hundredth. For a faster animation, pass fewer snapshots (`snapshots[::2]`).
    - `hold_last`: how long the last frame shows, in seconds, before the loop restarts
      (at least `seconds_per_frame`). Neither may exceed 655.35 s, a GIF's longest delay;
      identical frames in a row are one frame, shown at most that long.
    - `loop`: loop forever (`True`) or play once.

    **Returns:**

    The path written.

    ```python
    result = dp.fit(model, target, steps=2000, snapshots=30, batch=0.1, key=key)
    dp.save_gif("progress.gif", result.snapshots, (256, 256))
    ```
    """
    check_suffix(
        path,
        ".gif",
        "save_gif",
        "write one frame with `dp.save_image(path, model.render_image(shape))`",
    )
    frames_in = _check_snapshots(snapshots)
    height, width = check_grid_shape(shape)
    if max(height, width) > MAX_SIDE:
        raise ValueError(
            f"`shape` must be at most {MAX_SIDE} pixels a side for a GIF (its sizes are "
            f"16-bit); got {(height, width)}. Pass a smaller `shape`."
        )
    seconds_per_frame, hold_last = _check_seconds(seconds_per_frame, hold_last)
    loop = check_bool(loop, "loop")
    frames = list(_frames(frames_in, (height, width)))
    return atomic_write(
        path, lambda temp: write_frames(temp, frames, seconds_per_frame, hold_last, loop)
    )


def write_frames(path: Any, frames: Any, seconds_per_frame: float, hold_last: float,
                 loop: bool) -> None:  # fmt: skip
    """Frames `(H, W, C)` in `[0, 1]` (checked) as a GIF at `path` (not atomically: the
    caller stages it), on one palette, repeated frames merged."""
    pictures = []
    for frame in frames:
        picture = Image.fromarray(to_pixels(_over_white(np.asarray(frame))))
        pictures.append(picture.convert("RGB") if picture.mode != "RGB" else picture)
    pictures = _quantize(pictures)
    # Pillow takes milliseconds and writes hundredths, rounding down: whole hundredths.
    durations = [10 * round(seconds_per_frame * 100)] * len(pictures)
    durations[-1] = 10 * round(max(hold_last, seconds_per_frame) * 100)
    pictures, durations = _merge_repeats(pictures, durations)
    # `loop=0` repeats forever; no loop entry at all plays once (a count of 1 asks for
    # one repeat: twice in a browser).
    repeat = {"loop": 0} if loop else {}
    pictures[0].save(
        path, format="GIF", save_all=True, append_images=pictures[1:], duration=durations,
        optimize=False, **repeat,
    )  # fmt: skip


def _merge_repeats(pictures: list, durations: list[int]) -> tuple[list, list[int]]:
    """Identical frames in a row as one frame shown for their summed delay, at most a
    GIF's longest (Pillow merges them itself, and its sum overflowed the 16-bit delay:
    a fit that stopped changing, held 600 s, raised "int too big to convert")."""
    merged, times = [pictures[0]], [durations[0]]
    for picture, duration in zip(pictures[1:], durations[1:]):
        if picture.tobytes() == merged[-1].tobytes() and (
            picture.getpalette() == merged[-1].getpalette()
        ):
            times[-1] = min(times[-1] + duration, round(MAX_SECONDS * 1000))
        else:
            merged.append(picture)
            times.append(duration)
    return merged, times
