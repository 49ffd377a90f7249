"""Programs the caller of `paint` will need after it, compiled in the painting's warm-up
thread once the painting's own are done."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any


class Later:
    """Compiles the command line asks a `paint` for (its final renders: compiled after
    the painting, they took 1.3 s of a cold `diffprims paint --seconds 8`), each task
    called on a set like the painting's result, and the threads that run them."""

    def __init__(self, tasks: tuple[Callable[[Any], object], ...]):
        self.tasks = tasks
        self.threads: list[threading.Thread] = []

    def wait(self) -> None:
        """Until the tasks are done (a bounded compile each)."""
        for thread in self.threads:
            thread.join()


_LATER: contextvars.ContextVar[Later | None] = contextvars.ContextVar(
    "diffprims_compile_later", default=None
)


@contextlib.contextmanager
def compile_later(*tasks: Callable[[Any], object]) -> Iterator[Later]:
    """Within the block, a `paint` of one restart also runs `tasks` in its warm-up
    thread, after its own programs, however the painting ends; `Later.wait` after it."""
    later = Later(tasks)
    token = _LATER.set(later)
    try:
        yield later
    finally:
        _LATER.reset(token)


def current_later() -> Later | None:
    """The innermost `compile_later` block's tasks around this call, if any."""
    return _LATER.get()


# Warm-up threads still compiling: joined at exit (an interpreter that ends while a thread
# is inside an XLA compile aborts the process). `paint` returns without waiting for the
# compiles it no longer needs.
_RUNNING: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def run_in_background(target: Callable[[], None]) -> threading.Thread:
    """`target` in a started daemon thread, joined at the interpreter's exit."""
    thread = threading.Thread(target=target, name="diffprims-warm-up", daemon=True)
    _RUNNING.add(thread)
    thread.start()
    return thread


@atexit.register
def _join_running() -> None:
    for thread in list(_RUNNING):
        thread.join()
