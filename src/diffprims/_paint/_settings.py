"""`paint`'s settings: one record of its keyword arguments, checked at the boundary."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._image import check_image
from .._shapes import MODES, Shortfall, check_shape_type, not_a_shape_type
from .._shapes._render import check_method
from .._validate import (
    check_bool,
    check_key,
    check_positive_int,
    check_scalar,
    describe,
    inside_trace,
    is_traced,
)

#: The most `restarts`: each is a whole painting in memory (and a thread on a CPU).
MAX_RESTARTS = 64


@dataclasses.dataclass(frozen=True)
class Settings:
    """`paint`'s keyword arguments but `key` and `progress` (each is documented there);
    `steps` is None with `seconds`."""

    shape: Any
    seconds: float | None
    steps: int | None
    rounds: int
    restarts: int
    threads: bool | None
    loss: Any
    stride: int
    coarse: float
    softness: float
    opacity: float
    grow: float
    prune: float
    compositing: str
    learn_background: bool
    lr: float
    lr_geometry: float
    lr_colour: float
    anneal: float
    solve_colours: bool
    extra: float
    cycles: int
    method: str | None
    steps_per_dispatch: int

    @classmethod
    def of(cls, arguments: dict[str, Any]) -> Settings:
        """The settings among a call's `arguments` (its `locals()`)."""
        return cls(**{field.name: arguments[field.name] for field in dataclasses.fields(cls)})


def check_settings(
    target: Any, n: Any, key: Any, settings: Settings
) -> tuple[Array, int, PRNGKeyArray, Settings]:
    """`paint`'s arguments checked: `(target, n, key, settings)`."""
    s = settings
    _check_eager(target=target, key=key, seconds=s.seconds, opacity=s.opacity, lr=s.lr,
                 lr_geometry=s.lr_geometry, lr_colour=s.lr_colour)  # fmt: skip
    shortfall = not_a_shape_type(s.shape)
    if shortfall is not None:
        raise TypeError(_shape_message(s.shape, shortfall))
    check_shape_type(s.shape)
    # A strong dtype: the blurred goals of early rounds are, and a weakly typed target
    # (`jnp.full(..., 0.6)`) compiled the step loop twice.
    target = check_image(target, "target")
    target = jnp.asarray(target, target.dtype)
    n = check_positive_int(n, "n")
    key = check_key(key)
    # Every number kept as the Python number it was checked as: NumPy and JAX scalars
    # (`np.float64(0.5)`, `jnp.int32(2)`) passed the checks and then failed deep inside
    # (a hashed plan, a static argument, `float()` under a trace).
    ints = {name: check_positive_int(getattr(s, name), name)
            for name in ("rounds", "stride", "steps_per_dispatch")}  # fmt: skip
    # Each restart is a whole painting in memory, and a thread on a CPU: a million of
    # them ran out of memory in threads, minutes on, without a word.
    why = "each restart is a whole painting in memory"
    ints["restarts"] = check_positive_int(s.restarts, "restarts", maximum=MAX_RESTARTS, why=why)
    ints["cycles"] = check_positive_int(s.cycles, "cycles", minimum=0)
    if s.compositing not in MODES:
        raise ValueError(f"`compositing` must be one of {MODES}; got {s.compositing!r}.")
    steps, seconds = None, None
    if s.seconds is not None:
        # At most float32's largest (as the command line): 1e308 overflowed the plan.
        seconds = float(check_scalar(s.seconds, "seconds", lower=0.0,
                                     upper=float(np.finfo(np.float32).max),
                                     hint=" It is a wall-time budget."))  # fmt: skip
    else:
        steps = 1500 if s.steps is None else check_positive_int(s.steps, "steps")
    floats = {"opacity": float(check_scalar(s.opacity, "opacity", lower=0.0, upper=1.0))}
    # Finite numbers first (a TypeError for strings), then the closed ranges.
    for name in ("prune", "coarse", "anneal", "extra", "softness"):
        floats[name] = float(check_scalar(getattr(s, name), name))
    for name in ("grow", "lr", "lr_geometry", "lr_colour"):
        floats[name] = float(check_scalar(getattr(s, name), name, lower=0.0))
    _check_ranges(**floats)
    flags = {"solve_colours": check_bool(s.solve_colours, "solve_colours")}  # "False" ran it
    if s.threads is not None:
        flags["threads"] = check_bool(s.threads, "threads")
    # Here, as `paint`'s argument, not from inside its first compiled program.
    flags["learn_background"] = check_bool(s.learn_background, "learn_background")
    if s.method is not None:  # here, not from inside the seeding's trace
        check_method(s.method, s.compositing, s.shape)
    checked = dataclasses.replace(s, steps=steps, seconds=seconds, **ints, **floats, **flags)
    return target, n, key, checked


def _check_ranges(*, prune, coarse, anneal, extra, softness, **_) -> None:
    if not 0 <= prune < 1:
        raise ValueError(f"`prune` must be a fraction in [0, 1); got {prune}.")
    if not coarse >= 0:
        raise ValueError(f"`coarse` must be >= 0 (pixels of blur); got {coarse}.")
    if not extra >= 0:
        raise ValueError(f"`extra` must be >= 0 (a fraction of `n`); got {extra}.")
    if not softness > 0:  # here, not from inside the seeding
        raise ValueError(f"`softness` must be > 0 (pixels of edge); got {softness}.")
    if not 0 <= anneal <= 1:
        raise ValueError(f"`anneal` must be in [0, 1]; got {anneal}.")


def _check_eager(**values: Any) -> None:
    """A `TypeError` under `jit`/`vmap`/`grad`: rounds are planned on concrete values."""
    names = [name for name, value in values.items() if any(map(is_traced, jax.tree.leaves(value)))]
    if names or inside_trace():
        got = f"a traced `{names[0]}`" if names else "a call inside a traced function"
        raise TypeError(
            "`paint` runs eagerly: between rounds it looks at the error map to decide where "
            "shapes go, so it cannot run under `jax.jit`, `jax.vmap` or `jax.grad`; got "
            f"{got}. Call it outside the transformation (`restarts=` already runs several "
            "paintings batched), or use `dp.fit` on `shape.init(...)`, which works under "
            "any transformation."
        )


def _shape_message(shape: Any, shortfall: Shortfall) -> str:
    """Why `shape` is not a shape type (`not_a_shape_type`), and what to pass instead."""
    expected = (
        "`shape` must be a shape class, a subclass of `dp.AbstractShapes` such as `dp.Circles`"
    )
    if shortfall == "set":
        name = type(shape).__name__
        return f"{expected}, the class; got a shape set (a {name}). Pass `shape={name}`."
    if shortfall == "layers":
        return (
            f"{expected}; got the class {shape.__name__}, a container that stacks shape sets "
            "of other types, not a shape type. Paint with one type (e.g. `shape=dp.Circles`), "
            "or build `dp.Layers([...])` from shape sets and train it with `dp.fit`."
        )
    if shortfall == "class":
        return f"{expected}; got the class {shape.__name__}, which is not one."
    return f"{expected} (the class itself); got {describe(shape)}."
