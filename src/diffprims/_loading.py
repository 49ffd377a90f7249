"""When `import diffprims` began: the command line's `--seconds` counts from here, so that
loading JAX (a second or two on a cold start) is inside the budget, not on top of it."""

import time

#: `time.perf_counter()` as the package began to load (imported first by `__init__`).
STARTED = time.perf_counter()
