import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
