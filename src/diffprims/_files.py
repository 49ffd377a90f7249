"""Files written whole or not at all, and bounded reads of files that may be hostile."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from ._validate import describe


def atomic_write(path: str | os.PathLike, write: Any, *, suffix: str = "") -> Path:
    """Write a file by `write(temp_path)` in the same folder, then rename it into place.

    The file is synced to disk before the rename and its folder after it, so a crash
    leaves the old file or the new one, never an empty one. A symlink is written through
    (its target is replaced; the link stays). Missing folders are created. A new file gets
    the mode a plain `open` would give it; a file that is replaced keeps its mode (a
    private 0600 file stays private). Returns `path` as given.
    """
    given = Path(path)
    path = _resolved(given)
    _make_folder(path)
    try:
        handle, temp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name[:64]}.", suffix=suffix or path.suffix[:16]
        )
    except OSError as error:
        raise _cannot_write(error, path, f"the folder {os.fspath(path.parent)!r}") from None
    os.close(handle)
    try:
        write(temp)
        # The mode after the write: a read-only (0444) file is replaced, as a rename may.
        os.chmod(temp, replaced_mode(path))
        _sync(temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    sync_folder(path.parent)  # the new name itself
    return given


def sync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (names renamed into it) to the disk, where it can."""
    try:
        _sync(folder)
    except OSError:
        pass  # some file systems cannot sync a folder; the files are whole either way


def _resolved(path: Path) -> Path:
    """`path` with symlinks followed (so the link's target is written), checked to be no
    folder."""
    if path.is_symlink():
        resolved = Path(os.path.realpath(path))
        if resolved.is_symlink():
            raise OSError(
                errno.ELOOP,
                f"Cannot write {os.fspath(path)!r}: it is one of symbolic links that loop; "
                "point the link at a file or remove it",
            )
        path = resolved
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR,
            f"{os.fspath(path)!r} is a folder; pass a file name (a path inside the folder, "
            "with a suffix such as .png) to write to",
        )
    return path


def _make_folder(path: Path) -> None:
    """Create `path`'s missing folders, naming a file in the way or the folder refused."""
    for folder in reversed(path.parents):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(
                errno.ENOTDIR,
                f"Cannot write {os.fspath(path)!r}: {os.fspath(folder)!r} is a file, not a "
                "folder; choose another path or move the file",
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(error, path, "its folder (it could not be created)") from None


def _cannot_write(error: OSError, path: Path, where: str) -> OSError:
    """`error` (the same OSError subclass) in words that name `path`, not a temp file."""
    reason = error.strerror or str(error)
    return type(error)(
        error.errno,
        f"cannot write {os.fspath(path)!r}: {reason} in {where}; choose a folder you can "
        "write to or change its permissions",
    )


def replaced_mode(path: str | os.PathLike) -> int:
    """The mode of the file `path` replaces, or what a plain `open` would give a new one."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        # mkstemp makes the file private (0600); give it the mode a plain `open` would.
        return _new_file_mode(Path(path).parent)


def _new_file_mode(folder: Path) -> int:
    """The mode a plain `open` gives a new file in `folder`: a file created there with
    0666, which the kernel masks by the umask (and a default ACL). Reading the umask by
    setting it (`os.umask`) would change it for the whole process for a moment, and a
    file another thread created then got no umask (0666 where 0600 was asked for)."""
    probe = folder / f".diffprims-mode-{os.urandom(6).hex()}"
    try:
        handle = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except OSError:
        return 0o644  # not seen: the common default
    try:
        return stat.S_IMODE(os.fstat(handle).st_mode)
    finally:
        os.close(handle)
        os.unlink(probe)


def _sync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) data to the disk."""
    # Windows flushes only handles open for writing (and opens no folders: an OSError).
    handle = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def special_file(path: Any) -> bool:
    """Whether `path` names a device, pipe or socket (not a regular file or folder; a
    missing path is not special: whoever opens it says it is missing)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, TypeError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def open_regular(path: str | os.PathLike, what: str, error: type[Exception]) -> tuple[Any, int]:
    """`(binary file, size in bytes)` of a regular file, else `error` (devices, folders
    and pipes are refused: their reads need not end)."""
    not_regular = (
        f"{what} {os.fspath(path)!r} is not a regular file (a device, folder or pipe); "
        "pass the path of a file."
    )
    if special_file(path):  # before opening: a named pipe waits for a writer, for ever
        raise error(not_regular)
    try:
        file = open(path, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
    except IsADirectoryError:
        raise error(f"{what} {os.fspath(path)!r} is a folder; pass the path of a file.") from None
    info = os.fstat(file.fileno())
    if not stat.S_ISREG(info.st_mode):  # (replaced since it was looked at)
        file.close()
        raise error(not_regular)
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


def check_suffix(path: Any, suffix: str, writer: str, hint: str) -> None:
    """That `path` is a file path ending in `suffix` (any case), for `writer`; `hint`
    says what to use for other formats."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path ending in {suffix}; got {describe(path)}.")
    got = Path(path).suffix
    if got.lower() != suffix:
        said = f"the suffix {got!r}" if got else "no suffix"
        raise ValueError(
            f"`path` must end in {suffix}: `{writer}` writes that format whatever the name; "
            f"got {os.fspath(path)!r}, with {said}. Name the file with {suffix}, or {hint}."
        )
