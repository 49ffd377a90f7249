"""Files written whole or not at all, and bounded reads of files that may be hostile."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Any, *, suffix: str = "") -> Path:
    """Write a file by `write(temp_path)` in the same folder, then rename it into place.

    A new file gets the mode a plain `open` would give it; a file that is replaced keeps
    its mode (a private 0600 file stays private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix
    )
    os.close(handle)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        # mkstemp makes the file private (0600); give it the mode a plain `open` would.
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temp, mode)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path


def open_regular(path: str | os.PathLike, what: str, error: type[Exception]) -> tuple[Any, int]:
    """`(binary file, size in bytes)` of a regular file, else `error` (devices, folders
    and pipes are refused: their reads need not end)."""
    try:
        file = open(path, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
    except IsADirectoryError:
        raise error(f"{what} {os.fspath(path)!r} is a folder; pass the path of a file.") from None
    info = os.fstat(file.fileno())
    if not stat.S_ISREG(info.st_mode):
        file.close()
        raise error(
            f"{what} {os.fspath(path)!r} is not a regular file (a device, folder or pipe); "
            "pass the path of a file."
        )
    return file, info.st_size


def read_line(file: Any, limit: int) -> bytes | None:
    """The next line (with its newline) of at most `limit` bytes, or None when the line
    is longer or does not end."""
    line = file.readline(limit + 1)
    if len(line) > limit or not line.endswith(b"\n"):
        return None
    return line


#: Bytes of a checksum line written by `checksum_line` (hex SHA-256 and a newline).
CHECKSUM_LINE = 65


def checksum_line(header_line: bytes, payload: bytes) -> bytes:
    """The line that follows a file's header line: the SHA-256 of header and payload, so
    neither can change unnoticed (model files and checkpoints alike)."""
    return hashlib.sha256(header_line + payload).hexdigest().encode() + b"\n"
