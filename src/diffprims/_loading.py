"""When `import diffprims` began: the command line's `--seconds` counts from here, so that
loading JAX (a second or two on a cold start) is inside the budget, not on top of it.

Run as the `diffprims` program, a Ctrl-C while the package loads ends the run with the
command's own line and status 130, not a traceback from deep inside an import; `main`
hands Ctrl-C back to Python (`loaded`) once it can stop a run cleanly."""

import os
import signal
import sys
import threading
import time

#: `time.perf_counter()` as the package began to load (imported first by `__init__`).
STARTED = time.perf_counter()


def _interrupted_while_loading(signum, frame):
    sys.stderr.write("diffprims: interrupted\n")
    sys.stderr.flush()
    os._exit(130)  # nothing written yet, and JAX half imported: no teardown


def _as_the_program() -> bool:
    """Whether this process is the `diffprims` script (not Python importing the library)."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if name in ("diffprims", "diffprims.exe", "diffprims-script.py"):
        return True
    argv = list(getattr(sys, "orig_argv", ()))  # `python -m diffprims`: argv[0] is "-m"
    return name == "-m" and any(argv[i : i + 2] == ["-m", "diffprims"] for i in range(len(argv)))


def loaded() -> None:
    """Ctrl-C raises `KeyboardInterrupt` again (it ended the process while loading)."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_loading:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if (
    _as_the_program()
    and threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not ignored
):
    signal.signal(signal.SIGINT, _interrupted_while_loading)
