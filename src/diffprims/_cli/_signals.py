"""Ctrl-C while the results are written: the first one waits for the writing to end."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def finish_writing() -> Iterator[None]:
    """The first Ctrl-C in the block is noted and the block runs on (writing takes a
    second or two); a second one stops it (`KeyboardInterrupt`). Where SIGINT is ignored,
    or outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    pressed = {"count": 0}

    def handler(signum, frame):
        pressed["count"] += 1
        if pressed["count"] > 1:
            raise KeyboardInterrupt
        print("writing the results; press Ctrl-C again to stop", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
