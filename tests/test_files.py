"""`atomic_write`: whole files or none, durable, through symlinks, with clear errors."""

import os
import tempfile
from pathlib import Path

import pytest

from diffprims._files import atomic_write


def _text(text):
    return lambda temp: Path(temp).write_text(text)


def test_writes_whole_and_leaves_no_temp_files(tmp_path):
    path = atomic_write(tmp_path / "a.txt", _text("one"))
    assert path == tmp_path / "a.txt" and path.read_text() == "one"

    def fails(temp):
        Path(temp).write_text("two")
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        atomic_write(path, fails)
    assert path.read_text() == "one"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_the_file_and_its_folder_are_synced_before_and_after_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(source, target):
        events.append(("replace", os.path.basename(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write(path, _text("x"))
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(".a.txt.")  # the temporary file, before its rename
    assert events[2][1] == tmp_path.name  # then the folder that holds the new name


def test_a_failed_sync_keeps_the_old_file(tmp_path, monkeypatch):
    path = atomic_write(tmp_path / "a.txt", _text("old"))

    def broken(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, _text("new"))
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_a_read_only_file_is_replaced_and_stays_read_only(tmp_path):
    path = atomic_write(tmp_path / "a.txt", _text("old"))
    os.chmod(path, 0o444)
    atomic_write(path, _text("new"))  # the temporary file stays writable until written
    assert path.read_text() == "new" and os.stat(path).st_mode & 0o777 == 0o444
    assert os.listdir(tmp_path) == ["a.txt"]


def test_a_new_file_gets_the_mode_open_gives(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.txt", _text("x"))
    finally:
        os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["a.txt"]  # nothing left of finding that mode


def test_writing_a_new_file_leaves_the_process_umask_alone(tmp_path):
    # The new file's mode was read by setting the umask to 0 and back: a file another
    # thread created meanwhile got 0666 under a 0077 umask (72 of 20000 in a race).
    import stat
    import sys
    import threading

    umask, interval = os.umask(0o077), sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    stop, wrong = threading.Event(), []

    def write_new_files():
        i = 0
        while not stop.is_set():
            atomic_write(tmp_path / f"new{i}.txt", _text("x"))
            i += 1

    writer = threading.Thread(target=write_new_files)
    writer.start()
    try:
        for i in range(4000):
            other = tmp_path / f"other{i}"
            other.write_text("private")
            if stat.S_IMODE(os.stat(other).st_mode) != 0o600:
                wrong.append(other)
            other.unlink()
    finally:
        stop.set()
        writer.join()
        os.umask(umask)
        sys.setswitchinterval(interval)
    assert wrong == []


def test_a_symlink_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "a.txt"
    target.write_text("old")
    os.chmod(target, 0o600)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert atomic_write(link, _text("new")) == link
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new" and os.stat(target).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path / "real")) == ["a.txt"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "made.txt")
    atomic_write(link, _text("new"))
    assert link.is_symlink() and (tmp_path / "made.txt").read_text() == "new"


def test_a_symlink_loop_is_refused(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError, match="symbolic links that loop"):
        atomic_write(tmp_path / "a", _text("x"))
    assert (tmp_path / "a").is_symlink()


def test_a_folder_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "out").mkdir()
    calls = []
    with pytest.raises(IsADirectoryError, match=r"'.*out' is a folder.*file name") as info:
        atomic_write(tmp_path / "out", calls.append)
    assert ".out." not in str(info.value)  # no temporary file named
    assert calls == [] and os.listdir(tmp_path / "out") == []
    link = tmp_path / "to_out"
    link.symlink_to(tmp_path / "out")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        atomic_write(link, calls.append)


def test_missing_folders_are_created(tmp_path):
    path = atomic_write(tmp_path / "x" / "y" / "a.txt", _text("x"))
    assert path.read_text() == "x"


def test_a_file_in_the_way_of_a_folder_is_named(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"'.*f\.txt' is a file, not a folder"):
        atomic_write(tmp_path / "f.txt" / "sub" / "a.txt", _text("x"))
    with pytest.raises(NotADirectoryError, match=r"'.*f\.txt' is a file, not a folder"):
        atomic_write(tmp_path / "f.txt" / "a.txt", _text("x"))


def test_a_read_only_folder_is_named(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: refuse as a read-only folder would

        def refused(dir, prefix, suffix):
            raise PermissionError(13, "Permission denied", os.path.join(dir, prefix + suffix))

        monkeypatch.setattr(tempfile, "mkstemp", refused)
    os.chmod(locked, 0o500)
    try:
        with pytest.raises(PermissionError, match=r"cannot write .*a\.txt.*locked") as info:
            atomic_write(locked / "a.txt", _text("x"))
        assert ".a.txt." not in str(info.value)  # the temporary file is not named
    finally:
        os.chmod(locked, 0o700)


def test_a_long_file_name_gets_a_shorter_temporary_name(tmp_path):
    name = "a" * 250 + ".png"
    path = atomic_write(tmp_path / name, _text("x"))
    assert path.name == name and os.listdir(tmp_path) == [name]
