import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite compiles thousands of small programs and runs each a few times: XLA's
# optimisation passes cost more than they save here (test_degenerate + test_research:
# 161 s -> 135 s). What the tests check does not depend on them; benchmarks/ run with
# them, as users do. Set in the environment so that command-line subprocesses get it too.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def getkey():
    """A fresh, deterministic PRNG key on every call: `getkey()`."""
    keys = iter(jax.random.split(jax.random.key(5678), 10_000))
    return lambda: next(keys)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop compiled programs after each test module.

    The suite compiles thousands of small programs; keeping every executable alive in one
    process exhausts the process's memory maps and crashes the compiler.
    """
    yield
    jax.clear_caches()
