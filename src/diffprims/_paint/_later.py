"""Programs the caller of `paint` will need after it, compiled in the painting's warm-up
thread once its own are done."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

# Compiles of programs the caller of `paint` will need after it (the command line's
# final renders), run by the painting's warm-up thread once its own are done: a cold
# `diffprims paint` compiled them after the painting, 1.3 s of a `--seconds 8`.
_LATER: contextvars.ContextVar[tuple[Callable[[Any], object], ...]] = contextvars.ContextVar(
    "diffprims_compile_later", default=()
)


@contextlib.contextmanager
def compile_later(*tasks: Callable[[Any], object]) -> Iterator[None]:
    """Within the block, a `paint` (one restart) also runs each of `tasks` on a model of
    its result's structure (zeros) in its warm-up thread, after its own programs."""
    token = _LATER.set(_LATER.get() + tasks)
    try:
        yield
    finally:
        _LATER.reset(token)


def later_tasks() -> tuple[Callable[[Any], object], ...]:
    """The tasks of the `compile_later` blocks around this call."""
    return _LATER.get()
