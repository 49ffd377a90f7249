"""Random shape sets: `AbstractShapes.init`."""

from __future__ import annotations

import weakref
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import memory_for
from .._validate import (
    check_bool,
    check_key,
    check_positive_int,
    check_scalar,
    is_traced,
    run_checks,
    trusted,
)
from ._arguments import static_softness
from ._build import appearance, assembled
from ._protocol import check_concrete

#: `init`'s sizes when none are given, for up to `DEFAULT_SIZES_FOR` shapes a square frame.
DEFAULT_SIZES = (0.03, 0.12)
DEFAULT_SIZES_FOR = 200


def _size_range(size_range: Any, n: int, aspect: Any) -> tuple[Any, Any]:
    if size_range is None:
        # Shrink with the shapes' number so that they cover the frame about as often
        # (a traced `aspect`, under a user's `jit` or `grad`, gives traced sizes).
        xp = jnp if is_traced(aspect) else np
        scale = xp.minimum(1.0, xp.sqrt(DEFAULT_SIZES_FOR * aspect / n))
        return DEFAULT_SIZES[0] * scale, DEFAULT_SIZES[1] * scale
    try:
        low, high = (float(v) for v in size_range)
    except (TypeError, ValueError):
        raise TypeError(
            f"`size_range` must be a pair (low, high) of numbers; got {size_range!r}."
        ) from None
    if not 0 < low <= high < np.inf:
        raise ValueError(
            f"`size_range` must be (low, high) with 0 < low <= high; got {size_range}."
        )
    return low, high


def random_set(cls, n, *, key, target, aspect, size_range, opacity, softness, channels,
               compositing, learn_background):  # fmt: skip
    """`AbstractShapes.init`: `n` shapes at random positions with random sizes."""
    check_concrete(cls)
    n = check_positive_int(n, "n")
    key = check_key(key)
    opacity = check_scalar(opacity, "opacity", lower=0.0, upper=1.0)
    aspect = check_scalar(aspect, "aspect", lower=0.0, hint=" It is the frame's W / H.")
    channels = check_positive_int(channels, "channels")
    if target is not None:
        from .._image import check_image

        target = check_image(target, "target")
        height, width, channels = target.shape
        aspect = width / height
    low, high = _size_range(size_range, n, aspect)
    softness = static_softness(softness)
    # The soft edges' width in frame units, where known (a Gaussian's has none).
    edge = 0.0 if target is None or not cls.edge_margin else softness / target.shape[0]
    traced = any(map(is_traced, [aspect, low, opacity]))
    xp = jnp if traced else np
    numbers = [aspect, xp.log(low), xp.log(high), opacity, edge]  # under a user's jit/vmap
    numbers = jnp.stack(numbers) if traced else np.asarray(numbers, np.float32)
    # Two compiled programs (eagerly, init's dozens of small operations compiled one
    # each: 2.3 s of a first `init` in a process): what no shape type changes (positions,
    # sizes, colours), shared by every type, and the type's part (its geometry and
    # constructor). The numbers go in as an array, so other values compile nothing more.
    additive = compositing == "additive"
    with memory_for(f"Making {n} shapes of {channels} channels", "Ask for fewer."):
        parts = _common(n, key, target, numbers, channels, additive)
    options = (
        softness,
        compositing,
        check_bool(learn_background, "learn_background"),
    )
    if cls.__module__.startswith("diffprims."):
        return _assembled_trusted(cls, *parts, *options)
    return _user_set(cls, parts, options)


#: User types whose `init` needs concrete values (NumPy in `random_geometry`, a
#: `__check_init__` that looks at values): their part runs eagerly, as user types once did.
_EAGER_TYPES: weakref.WeakSet[type] = weakref.WeakSet()


def _user_set(cls, parts, options):
    """A user type's set, its part compiled as ours is (a first `init` 2.0 s -> 0.6 s),
    or eagerly.

    A compiled run that fails (a tracer where the type's code wants a value; a value
    check failing inside the program) runs again eagerly, which either works (the type
    is remembered and runs eagerly from then on) or raises the error an eager `init`
    raises, with its message.
    """
    if cls not in _EAGER_TYPES:
        try:
            model = _assembled_checked(cls, *parts, *options)
        except Exception:  # said below as eagerly, or not an error there
            pass
        else:  # its checks again on the values (one may pass over a tracer, as traced)
            run_checks(model)
            return model
    model = assembled(cls, *parts, *options)
    _EAGER_TYPES.add(cls)
    return model


@eqx.filter_jit
@trusted  # made here from checked numbers
def _common(n, key, target, numbers, channels, additive):
    """Positions, sizes, the stored appearance and the geometry's key: no type's code."""
    aspect, log_low, log_high, opacity, edge = numbers
    k_pos, k_size, k_geom, k_colour = jax.random.split(key, 4)
    centres = jax.random.uniform(k_pos, (n, 2), jnp.float32) * jnp.stack([aspect, 1.0])
    sizes = jnp.exp(jax.random.uniform(k_size, (n,), jnp.float32, minval=log_low, maxval=log_high))
    if target is None:
        colours = jax.random.uniform(k_colour, (n, channels), jnp.float32, minval=0.2, maxval=0.8)
        background = jnp.full((channels,), 0.5)
    else:
        height, width, _ = target.shape
        rows = jnp.clip((centres[:, 1] * height).astype(jnp.int32), 0, height - 1)
        cols = jnp.clip((centres[:, 0] * height).astype(jnp.int32), 0, width - 1)
        colours = target[rows, cols]
        background = jnp.mean(target, axis=(0, 1))
    if additive:
        colours, background = _additive_start(colours, background, sizes, aspect, opacity, edge)
    return centres, sizes, appearance(colours, background, opacity), k_geom


def _additive_start(colours, background, sizes, aspect, opacity, edge):
    """Colours and background whose additive picture starts about as bright as the
    target (or the "over" picture): the shapes cover the frame `cover` times over (~3
    by default; as discs of radius `size` with soft edges `edge` wide, which add
    `pi^2 edge^2 / 3` to a disc's area), so their colours shrink by
    `1 / (opacity * cover)` where that is over 1 (else the picture starts up to four
    times too bright), and the background keeps what they leave."""
    cover = opacity * jnp.sum(jnp.pi * (sizes**2 + (jnp.pi * edge) ** 2 / 3)) / aspect
    gain = 1.0 / jnp.maximum(cover, 1.0)
    return colours * gain, background * jnp.maximum(1.0 - cover * gain, 0.0)


_assembled_trusted = eqx.filter_jit(trusted(assembled))
_assembled_checked = eqx.filter_jit(assembled)
