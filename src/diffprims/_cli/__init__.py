"""The `diffprims` command line: paint an image with shapes, fit a separable filter bank."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import time

from .. import _loading
from ._common import UsageError as UsageError
from ._parser import build_parser as build_parser
from ._signals import (
    pressed_while_writing,
    results_written,
    terminate_as_interrupt,
    were_results_written,
)
from ._streams import tolerant_stderr


def main(argv: list[str] | None = None) -> int:
    """Run the `diffprims` command on `argv` (default `sys.argv[1:]`); return its exit status.

    Run as the program (`argv` None: the `diffprims` script, `python -m diffprims`), it
    keeps compiled programs in JAX's persistent compilation cache in a per-user folder
    (`--no-cache` turns that off), and `--seconds` counts from when `diffprims` began to
    load. Called with a list from Python (a test, a script), it leaves the calling
    process's JAX settings alone and counts from the call. SIGTERM does what Ctrl-C would
    (the results so far are written) and the status is then 143, not 130.
    """
    _loading.loaded()  # Ctrl-C from here on stops the run cleanly (below)
    parser = build_parser()
    args = parser.parse_args(argv)
    # `--seconds` covers the whole command: as the program, from when `diffprims` (and
    # JAX with it) began to load, a second or two on a cold start; called from Python,
    # from now (the caller loaded it for its own reasons).
    args.started = _loading.STARTED if argv is None else time.perf_counter()
    if argv is not None:
        args.no_cache = True
    results_written(False)
    with terminate_as_interrupt() as signals, tolerant_stderr():
        try:
            status = args.run(args)
        except UsageError as error:
            print(f"diffprims {args.command}: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            stopped = "terminated" if signals["terminated"] else "interrupted"
            if were_results_written():  # a Ctrl-C just after: the set is whole
                stopped += " after the results were written"
            print(f"diffprims {args.command}: {stopped}", file=sys.stderr)
            status = 130
        except Exception as error:  # noqa: BLE001 - one line for the user, not a traceback
            if args.debug:
                raise
            print(
                f"diffprims {args.command}: failed: {type(error).__name__}: {error} "
                "(run with --debug for the traceback)",
                file=sys.stderr,
            )
            return 1
    # Ctrl-C or SIGTERM while the results were written let them finish (status 0):
    # still 130 or 143, so that a script or a job scheduler sees the run was stopped.
    status = 130 if status == 0 and pressed_while_writing() else status
    status = 143 if status in (0, 130) and signals["terminated"] else status
    if argv is None and status in (130, 143):
        # Interrupted, as the program: the results are written (or cleaned up) and the
        # locks gone. A Ctrl-C that landed while JAX had work in flight can leave its
        # runtime unable to shut down (a segfault at exit in about 1 run in 3 with two
        # quick Ctrl-Cs during paint), so leave without the interpreter's teardown.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, gone
                stream.flush()
        os._exit(status)
    if argv is None:
        # Done, as the program: a Ctrl-C in the interpreter's teardown landed in JAX's
        # exit hook ("Exception ignored ... KeyboardInterrupt"). Exit hooks run last
        # registered first, so this one runs before JAX's (and changes nothing for a
        # caller that goes on: a test calling `main()`).
        atexit.register(_ignore_ctrl_c)
    return status


def _ignore_ctrl_c() -> None:
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
