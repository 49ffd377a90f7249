"""`paint`'s restarts in threads: on a CPU one painting keeps about one core busy.

XLA runs a dispatch on the thread that calls it and releases the GIL meanwhile, so
paintings in separate threads run on separate cores (two 900-step paintings of 200
circles took 4.8 s together on 2 cores, one alone 4.3 s). `jax.vmap`ped restarts share
one core and split it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from jaxtyping import Array

from .._errors import FitInterrupted
from .._fit._driver import ctrl_c_flag
from .._fit._result import FitResult
from ._rounds import image_error


def best_of_threads(
    run: Callable[[Array, dict, bool | str], FitResult], keys: Sequence[Array], target: Array,
    *, progress: bool | str, start_time: float,
) -> FitResult:  # fmt: skip
    """`run(key, stop, progress)` for every key, each in its own thread; the result whose
    model has the lowest squared error on `target` (only the first shows `progress`),
    its `seconds` the wall time since `start_time`, the ranking included.

    Ctrl-C sets `stop["stop"]`: every run ends after its running dispatch, and the best
    painting so far comes back in a `FitInterrupted`. Any other error of a run is raised
    once every run has ended (a diverged restart raises, as with batched restarts).
    """
    with ctrl_c_flag(True) as stop, ThreadPoolExecutor(max_workers=len(keys)) as pool:
        # The others start once the first has compiled its step loop (`Driver` sets
        # "dispatched"): compiling the same programs in several threads at once is not
        # concurrent, and a cold paint with 2 restarts ran 1.4 s past `seconds=10`.
        futures = [pool.submit(run, keys[0], stop, progress)]
        while not stop.get("dispatched") and wait(futures, timeout=0.05).not_done:
            pass  # short waits, so that the main thread runs its Ctrl-C handler
        futures += [pool.submit(run, key, stop, False) for key in keys[1:]]
        while wait(futures, timeout=0.1).not_done:
            pass
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except FitInterrupted as interrupted:
                outcomes.append(interrupted)
            except Exception as error:  # re-raised below, once every run has ended
                outcomes.append(error)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    if errors:
        raise errors[0]
    results = [o.result if isinstance(o, FitInterrupted) else o for o in outcomes]
    image_errors = [float(image_error(result.model, target)) for result in results]
    at = min(range(len(results)), key=image_errors.__getitem__)
    # The wall time, the ranking's renders too (compiled on a first call: the slowest
    # thread's time fell 0.6 to 0.9 s short of the call's).
    best = dataclasses.replace(results[at], seconds=time.perf_counter() - start_time)
    if any(isinstance(o, FitInterrupted) for o in outcomes):
        # The step of the painting handed back (a restart still waiting for its first
        # dispatch has none, so the fewest would often say 0).
        outcome = outcomes[at]
        step = outcome.step if isinstance(outcome, FitInterrupted) else len(best.losses)
        raise FitInterrupted(
            f"Paint interrupted: {len(keys)} restarts ran in threads. `error.result` holds "
            f"the best painting so far, after {step} steps.",
            step=step,
            result=best,
        )
    return best
