"""The command line's use of JAX's persistent compilation cache, and the line that says
what compiling cost a `--seconds` budget."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path


def cache_folder() -> Path:
    """The per-user folder of JAX's persistent compilation cache for the command line."""
    import sys

    if sys.platform == "win32":
        base = Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path.home() / ".cache"
    return base / "diffprims" / "jax"


def enable_compilation_cache() -> None:
    """Use JAX's persistent compilation cache in this (command-line) process.

    A second run finds its compiled programs on disk. Set here, in the command line
    only: the library never changes a user's JAX settings. `--no-cache` skips it; a
    `JAX_COMPILATION_CACHE_DIR` set by the user wins.
    """
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None):
        return
    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # no cache: slower, not wrong
        _cache_off["why"] = f"the cache folder {os.fspath(folder)!r} cannot be made: " + (
            error.strerror or str(error)
        )
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        # A folder left by another user (`sudo diffprims ...`): JAX warned twice for each
        # of the ~50 programs it could not write, under `-q` too.
        _cache_off["why"] = f"this user cannot write the cache folder {os.fspath(folder)!r}"
        return
    # Any other failure to write an entry (a full disk) is as harmless: not a warning each.
    warnings.filterwarnings("ignore", message="Error writing persistent compilation cache")
    jax.config.update("jax_compilation_cache_dir", os.fspath(folder))
    # Every program, however quick to compile: from 0.1 s, a run with its programs cached
    # still compiled 1.3 s of small ones (9.1 s of wall time rather than 9.6 to 10.3).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_compiling = {"seconds": 0.0, "listening": False}
_cache_off = {"why": "it is not set up"}  # why the cache is off, when it is


def compile_seconds() -> float:
    """Seconds XLA has spent compiling in this process since the first call (summed over
    threads: `paint` compiles in two at once), from JAX's monitoring events."""
    import jax

    if not _compiling["listening"]:
        _compiling["listening"] = True

        def listen(event: str, duration_secs: float, **_: str | int) -> None:
            if event == "/jax/core/compile/backend_compile_duration":
                _compiling["seconds"] += duration_secs

        jax.monitoring.register_event_duration_secs_listener(listen)
    return _compiling["seconds"]


def cache_settings() -> tuple[str | None, float]:
    """JAX's persistent cache folder (None: no cache) and the least compile time of the
    programs it keeps."""
    import jax

    folder = getattr(jax.config, "jax_compilation_cache_dir", None)
    return folder, float(getattr(jax.config, "jax_persistent_cache_min_compile_time_secs", 0))


def note_compiling(args: argparse.Namespace, compiled: float, steps: int) -> None:
    """A line when compiling took a quarter of `--seconds` or more, and 2 s or more (a
    first run, or a new image size or shape count): the painting got fewer steps than
    the same command will get again, its programs then found in the compilation cache."""

    # A run with every program cached still compiles about half a second of small ones.
    if args.seconds is None or compiled < max(0.25 * args.seconds, 2.0):
        return
    folder, least = cache_settings()
    cached = not args.no_cache and bool(folder)
    off = "--no-cache" if args.no_cache else _cache_off["why"]
    if not cached:
        again = f"the compilation cache is off ({off}), so a new run compiles them again"
    elif least > 0:
        # A JAX_COMPILATION_CACHE_DIR of one's own keeps JAX's threshold: paint's many
        # small programs were compiled again each run (--restarts 3 --seconds 5: 8-11 s).
        again = (
            f"your compilation cache keeps only the programs that took over {least:g} s to "
            "compile, so a new run compiles the rest again "
            "(JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 keeps them all)"
        )
    else:
        again = (
            "they are now in the compilation cache, so the same command again paints for "
            "most of its budget"
        )
    print(
        f"compiling took {compiled:.1f} s (summed over threads) of --seconds "
        f"{args.seconds:g}, and the painting ran {steps} steps: {again}",
        file=sys.stderr,
    )
