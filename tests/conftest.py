import os
import signal
import subprocess
import sys

# Started as a background job of a non-interactive shell (`(cmd &)`, a CI step), the
# suite inherits SIGINT ignored, and every command-line subprocess it sends Ctrl-C to
# with it: those ran on until their timeouts. Ctrl-C is Python's default here.
signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite compiles thousands of small programs and runs each a few times: XLA's
# optimisation passes cost more than they save here (test_degenerate + test_research:
# 161 s -> 135 s). What the tests check does not depend on them; benchmarks/ run with
# them, as users do. Set in the environment so that command-line subprocesses get it too.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


def _add_fast_compile_flags() -> None:
    """XLA:CPU's fusion emitters and its code generation split across threads cost more
    compile time than they save on the suite's small programs (test_circles.py: 45 s ->
    23 s of compilation; the whole suite 950 s -> 488 s on 2 cores, whose two workers
    keep both cores busy). XLA aborts the process on a flag it does not know, so they
    are tried in a subprocess first (together, then one by one): a jaxlib without them
    runs the suite slower rather than not at all. Set in the environment, so workers
    and command-line subprocesses get them (a worker finds them there: no probe)."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    extra = [f for f in _FAST_COMPILE if f not in flags]
    if extra and not _xla_accepts(flags + extra):
        extra = [flag for flag in extra if _xla_accepts(flags + [flag])]
    os.environ["XLA_FLAGS"] = " ".join(flags + extra)


def _xla_accepts(flags: list[str]) -> bool:
    env = dict(os.environ, XLA_FLAGS=" ".join(flags))
    probe = [sys.executable, "-c", "import jax; jax.devices()"]
    return subprocess.run(probe, env=env, capture_output=True, timeout=300).returncode == 0


_FAST_COMPILE = ["--xla_cpu_use_fusion_emitters=false", "--xla_cpu_parallel_codegen_split_count=1"]
_add_fast_compile_flags()

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def getkey():
    """A fresh, deterministic PRNG key on every call: `getkey()`."""
    keys = iter(jax.random.split(jax.random.key(5678), 10_000))
    return lambda: next(keys)


@pytest.fixture
def objective_traces(monkeypatch):
    """A list that grows by one each time `fit`'s step objective is traced: a fit that
    reuses a compiled step loop leaves it as it was."""
    from diffprims._fit import _loop

    traces = []
    original = _loop.objective

    def counting(*args):
        traces.append(1)
        return original(*args)

    monkeypatch.setattr(_loop, "objective", counting)
    return traces


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop compiled programs after each test module.

    The suite compiles thousands of small programs; keeping every executable alive in one
    process exhausts the process's memory maps and crashes the compiler.
    """
    yield
    jax.clear_caches()
