"""Ctrl-C and SIGTERM: the first one while the results are written waits for the writing
to end, the second (counting the one that stopped the fit) stops it; SIGTERM does what
Ctrl-C would."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

# Set by a first Ctrl-C (or SIGTERM) that lets the writing finish: the run then still
# exits as interrupted (130), so that a script running the command sees it was stopped.
_PRESSED_WHILE_WRITING = threading.Event()

# Set by the Ctrl-C that stops the writing. Its `KeyboardInterrupt` can land where Python
# swallows it (in a garbage-collection callback of JAX's: "Exception ignored in ..."),
# and the writing then finished; `write_all` checks this before it puts files in place.
_STOP_WRITING = threading.Event()


# Set once this run's results are all in place: a Ctrl-C after that says so.
_WRITTEN = threading.Event()


def results_written(done: bool = True) -> None:
    """Note that the results are all in place (or, `done=False`, not yet)."""
    _WRITTEN.set() if done else _WRITTEN.clear()


def were_results_written() -> bool:
    """Whether this run's results are all in place (`results_written`)."""
    return _WRITTEN.is_set()


def pressed_while_writing() -> bool:
    """Whether a first Ctrl-C came while the results were written (they were finished)."""
    return _PRESSED_WHILE_WRITING.is_set()


def raise_if_writing_stopped() -> None:
    """`KeyboardInterrupt` if a Ctrl-C stopped the writing (see `finish_writing`)."""
    if _STOP_WRITING.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def finish_writing(interrupted: bool = False) -> Iterator[None]:
    """The first Ctrl-C is noted and the block runs on (writing takes a second or two); a
    second one stops it (`KeyboardInterrupt`). With `interrupted` (a Ctrl-C or SIGTERM
    stopped the fit: that was the first), the first one in the block is the second. Where
    SIGINT is ignored, or outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    pressed = {"count": 1 if interrupted else 0}

    def handler(signum, frame):
        pressed["count"] += 1
        if pressed["count"] > 1:
            _STOP_WRITING.set()
            raise KeyboardInterrupt
        _PRESSED_WHILE_WRITING.set()
        print("writing the results; Ctrl-C again stops the writing", file=sys.stderr)

    _STOP_WRITING.clear()
    _PRESSED_WHILE_WRITING.clear()
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _STOP_WRITING.clear()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[dict[str, bool]]:
    """SIGTERM in the block does what Ctrl-C does at that moment: stops the fit, whose
    results are then written as a set; while they are written, is noted; elsewhere
    raises `KeyboardInterrupt`. Either way the run unwinds (its output locks removed),
    instead of dying with its output folders locked and half made. The flag it yields
    says whether SIGTERM came (exit status 143). Outside the main thread, does nothing.
    """
    state = {"terminated": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        state["terminated"] = True
        on_ctrl_c = signal.getsignal(signal.SIGINT)
        if not callable(on_ctrl_c):  # ignored (a background job) or not Python's
            raise KeyboardInterrupt
        on_ctrl_c(signal.SIGINT, frame)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)
