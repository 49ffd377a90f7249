"""Where a command's results go: `-o` as a folder or as file paths, written as a set.

Every `-o` is checked before any file is touched (format, clashes, earlier results,
a writable place). Then, before the (long) fit, the output folders are made and locked
(`.diffprims.lock`, an `flock` held for the run), so a second run on the same outputs
stops at once instead of mixing its files with ours. At the end every file is written
into a hidden temp folder beside its destination and only then renamed into place: a
run that fails or is stopped while writing leaves no half set.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .._files import replaced_mode, sync_folder
from ._common import UsageError
from ._signals import raise_if_writing_stopped, results_written

#: File formats by extension.
FORMATS = {
    ".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".svg": "svg", ".gif": "gif",
    ".json": "json", ".eqx": "eqx",
}  # fmt: skip

LOCK_NAME = ".diffprims.lock"
#: What ends an `-o` that names a folder, whatever its name (`my.results/`).
_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep, "/") if sep)


class Planned(dict[Path, str]):
    """`path -> format` of the files to write, and `stale`: the command's results of an
    earlier run in an `-o` folder that this run does not write (with `--force`: removed
    when the new files are placed, so that a folder never mixes two runs' results)."""

    stale: tuple[Path, ...] = ()


def plan(
    specs: list[str],
    folder_files: dict[str, str],
    *,
    force: bool,
    formats: dict[str, str] = FORMATS,
    inputs: dict[str, str | os.PathLike | None] | None = None,
    other_names: tuple[str, ...] = (),
) -> Planned:
    """`path -> format` of every file the `-o` arguments ask for; touches nothing.

    An `-o` that is an existing folder, or has no file extension of `formats` (the
    command's single-file formats, by extension; none for a command that writes only
    folders), is a folder and gets `folder_files` (name -> format); otherwise the
    extension names the format. No file may be one of `inputs` (`_check_inputs`).
    `other_names`: what the command writes into a folder in other runs (`blurred.png`
    without `--apply`): with `force`, those in an `-o` folder are `stale`.
    """
    try:
        files, folders = _plan(specs, folder_files, force=force, formats=formats, inputs=inputs)
        if force:
            names = [name for name in other_names if name not in folder_files]
            found = (folder / name for folder in folders for name in names)
            # Never a file this run reads (a kernel picture named blurred.png in `-o`).
            read = [os.fspath(given) for given in (inputs or {}).values() if given is not None]
            files.stale = tuple(
                path for path in found
                if (path.is_file() or path.is_symlink())
                and not any(_same_file(path, source) for source in read if os.path.isfile(source))
            )  # fmt: skip
        return files
    except OSError as error:  # a name the system refuses (longer than 255 bytes, ...)
        where = f" {error.filename!r:.80}" if error.filename else ""
        raise UsageError(f"-o: cannot use{where}: {error.strerror or error}") from None


def _plan(specs, folder_files, *, force, formats, inputs) -> tuple[Planned, list[Path]]:
    """`plan`'s files, and the `-o` folders."""
    files, folders = Planned(), []
    seen: set[str] = set()  # real paths: `a/x.png` and `a/../a/x.png` are one file
    for spec in specs:
        if not spec:
            raise UsageError("-o '' is empty: name a folder or a file (-o . for the current "
                             "folder)")  # fmt: skip
        path = Path(spec)
        suffix = path.suffix.lower()
        folder = spec.endswith(_SEPARATORS)  # `my.results/`: a folder, whatever its name
        if folder or path.is_dir() or (suffix not in formats and not path.exists()):
            if suffix and not folder and not path.is_dir():
                raise UsageError(_not_a_file_type(spec, path.suffix, formats, folder_files))
            new = {path / name: kind for name, kind in folder_files.items()}
            folders.append(path)
        elif suffix in formats:
            new = {path: formats[suffix]}
        else:
            raise UsageError(f"-o {spec!r} is a file, not a folder")
        for target in new:
            if os.path.realpath(target) in seen:
                raise UsageError(f"-o names {os.fspath(target)!r} twice")
            seen.add(os.path.realpath(target))
        files.update(new)
    _check_inputs(files, inputs or {})
    _check_places(files, force=force)
    return files, folders


def _not_a_file_type(spec: str, suffix: str, formats: dict[str, str], folder_files) -> str:
    if not formats:
        return (
            f"-o {spec!r}: this command writes a folder of files ({', '.join(folder_files)}), "
            f"not one file; name a folder: end it with '/' ({spec}/), or make it first"
        )
    known = " ".join(sorted(formats))
    return (f"-o {spec!r}: unknown file type {suffix!r}; name a file ending in {known}, or "
            f"end it with '/' to mean a folder ({spec}/)")  # fmt: skip


def _check_inputs(files: dict[Path, str], inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse an output that is one of the run's input files (`inputs`: the option that
    names it -> its path or None), however spelled or linked: `--force` overwrote the
    image being painted."""
    for option, given in inputs.items():
        if given is None or not os.path.isfile(given):
            continue
        source = os.fspath(given)
        for path in files:
            if os.path.realpath(path) == os.path.realpath(source) or _same_file(path, source):
                raise UsageError(
                    f"-o: {os.fspath(path)!r} is the input file {source!r} ({option}); "
                    "writing it would overwrite the input: choose another output"
                )


def _same_file(path: Path, source: str) -> bool:
    try:
        return os.path.samefile(path, source)
    except OSError:  # not there yet
        return False


def _check_places(files: dict[Path, str], *, force: bool) -> None:
    for path in files:
        if _loops(path):  # it "does not exist", and was replaced by a plain file
            raise UsageError(f"-o: {os.fspath(path)!r} is a symbolic link that loops "
                             "(it leads back to itself); remove it or choose another "
                             "output")  # fmt: skip
    existing = [os.fspath(p) for p in files if p.exists()]
    folders = [p for p in files if p.is_dir()]
    if folders:
        raise UsageError(f"-o: {os.fspath(folders[0])!r} is a folder, not a file")
    if existing and not force:
        shown = ", ".join(existing[:4]) + (" ..." if len(existing) > 4 else "")
        verb = "already exists" if len(existing) == 1 else "already exist"
        raise UsageError(f"-o: {shown} {verb}; pass --force to overwrite, or choose other outputs")
    for parent in sorted({p.parent for p in files}):
        place = parent
        while not place.exists() and place != place.parent:
            place = place.parent
        if not place.is_dir():
            raise UsageError(f"-o: cannot make the folder {os.fspath(parent)!r}: "
                             f"{os.fspath(place)!r} is a file")  # fmt: skip
        if not os.access(place, os.W_OK | os.X_OK):
            why = "permission denied"
            with contextlib.suppress(OSError, AttributeError):  # (no statvfs on Windows)
                if os.statvfs(place).f_flag & os.ST_RDONLY:
                    why = "a read-only file system"
            raise UsageError(f"-o: cannot write to {os.fspath(place)!r} ({why})")


@contextlib.contextmanager
def claimed(files: dict[Path, str], *, force: bool) -> Iterator[None]:
    """Make the output folders and hold a lock in each until the block ends."""
    made: list[Path] = []
    with contextlib.ExitStack() as locks:
        parent, doing = None, "make the folder"
        try:
            for parent in _folders(files):
                doing = "make the folder"
                made += _make_folder(parent)
                doing = "create files in"
                locks.enter_context(_lock(parent))
        except OSError as error:
            _remove_empty(made)
            # Name the folder of the user's -o, not our lock file inside it.
            reason = error.strerror or str(error)
            if doing == "create files in":  # the errno is of the first file: our lock
                reason = f"creating one failed: {reason}"
            raise UsageError(f"-o: cannot {doing} {os.fspath(parent or '.')!r} ({reason}); "
                             "choose another output folder") from None  # fmt: skip
        try:
            _check_places(files, force=force)  # a run that finished since we looked
            yield
        finally:
            locks.close()
            _remove_empty(made)


def _folders(files: dict[Path, str]) -> list[Path]:
    """The folders the files go to, one per real folder (so two spellings of one folder,
    or a link to it, take its lock once)."""
    folders: dict[str, Path] = {}
    for path in files:
        folders.setdefault(os.path.realpath(path.parent), path.parent)
    return sorted(folders.values())


def _make_folder(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the ones made, deepest first."""
    missing = []
    place = folder
    while not place.exists():
        missing.append(place)
        place = place.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if nothing was written there


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """An exclusive `flock` on `folder/.diffprims.lock`, removed when done."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, the writes are still atomic per file
        yield
        return
    path = folder / LOCK_NAME
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"-o: another diffprims run is writing to {os.fspath(folder)!r}; wait for it "
                "or choose other outputs"
            ) from None
        # The file may have been removed by the run that held it just before: then our
        # lock is on a file no one else will find.
        if not path.exists() or os.stat(path).st_ino != os.fstat(handle).st_ino:
            raise UsageError(
                f"-o: another diffprims run just finished writing to {os.fspath(folder)!r}; "
                "run again (with --force to overwrite its results)"
            )
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    finally:
        os.close(handle)


def write_all(files: dict[Path, str], write: Callable[[Path, str], None]) -> None:
    """`write(temp_path, format)` for every file into temp folders, then all into place.

    An output that is a symlink is written through: its target is replaced, the link
    stays (the temp folder is then beside the target, so the rename stays in one file
    system). A file that is replaced keeps its permissions (a private 0600 result stays
    private), as the library's own atomic writes do."""
    places = {path: _destination(path) for path in files}
    staging: dict[Path, Path] = {}
    at: str | Path = "the results"  # what is being written: said on a failure
    try:
        for parent in sorted({p.parent for p in places.values()}):
            at = parent
            parent.mkdir(parents=True, exist_ok=True)  # a dangling link's folder
            staging[parent] = Path(tempfile.mkdtemp(prefix=".diffprims-", dir=parent))
        for path, kind in files.items():
            at = path
            write(staging[places[path].parent] / places[path].name, kind)
        raise_if_writing_stopped()  # a Ctrl-C whose exception was swallowed: none placed
        for path in files:
            at = path
            staged = staging[places[path].parent] / places[path].name
            os.chmod(staged, replaced_mode(places[path]))
            os.replace(staged, places[path])
        for path in getattr(files, "stale", ()):  # an earlier run's, which this one replaces
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        for parent in staging:
            sync_folder(parent)
    except OSError as error:  # a full disk, a quota, a folder gone: say where
        full = error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        advice = "Free some space, or choose" if full else "Choose"
        raise OSError(
            f"cannot write {os.fspath(at)!r}: {error.strerror or error}; no file is left "
            f"half-written. {advice} another folder with -o"
        ) from error
    finally:
        for temp in staging.values():
            shutil.rmtree(temp, ignore_errors=True)
    results_written()


def _loops(path: Path) -> bool:
    """Whether `path` is a symbolic link whose chain of links never ends."""
    if not path.is_symlink():
        return False
    try:
        os.path.realpath(path, strict=True)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def _destination(path: Path) -> Path:
    """Where `path`'s bytes go: the file a symlink points to (a loop: the link itself)."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    return path if target.is_symlink() else target
