"""stderr that never stops a run: status lines and the progress bar are only a view.

A reader that left the pipe (`diffprims paint ... 2>&1 | head -1`), a closed stderr
(`2>&-`, where Python's `sys.stderr` is None) or a full device (`2>/dev/full`) made the
first status line or bar update raise, and the run ended with nothing written (exit 1,
its message lost on the same stream). The results go to files; they should not depend
on whether anyone reads the commentary.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


class TolerantStream:
    """A text stream that, once a write or flush to `stream` fails, drops the rest."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        if self._stream is not None:
            try:
                self._stream.write(text)
            except (OSError, ValueError):  # a closed pipe or file, a full device
                self._stream = None
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._stream = None

    def isatty(self) -> bool:
        try:
            return self._stream is not None and bool(self._stream.isatty())
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:  # encoding, errors, fileno, ...
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


@contextlib.contextmanager
def tolerant_stderr() -> Iterator[None]:
    """`sys.stderr` as a `TolerantStream` for the duration (restored after)."""
    original = sys.stderr
    sys.stderr = TolerantStream(original)  # type: ignore[assignment]
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        sys.stderr = original
