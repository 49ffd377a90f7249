import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def getkey():
    """A fresh, deterministic PRNG key on every call: `getkey()`."""
    keys = iter(jax.random.split(jax.random.key(5678), 10_000))
    return lambda: next(keys)
