"""`paint`'s restarts in threads (the CPU default) against batched restarts."""

import signal
import threading
import time

import jax
import numpy as np
import pytest

import diffprims as dp
from diffprims._fit._result import FitResult
from diffprims._paint import _threads


def _target(key, size=16):
    model = dp.Circles.init(3, key=key, size_range=(0.15, 0.3), opacity=0.9)
    return model.render_image((size, size))


def _error(model, target):
    return float(np.mean((np.asarray(model.render_image(target.shape[:2])) - target) ** 2))


def test_threaded_restarts_match_batched_restarts(getkey):
    """Each thread paints what its restart paints batched; both keep the best."""
    target, key = _target(getkey()), getkey()
    kwargs = dict(key=key, steps=40, rounds=2, restarts=3)
    threaded = dp.paint(target, 6, threads=True, **kwargs)
    batched = dp.paint(target, 6, threads=False, **kwargs)
    assert threaded.model.num_shapes == batched.model.num_shapes == 6
    assert threaded.losses.shape == batched.losses.shape == (40,)
    np.testing.assert_allclose(_error(threaded.model, target), _error(batched.model, target),
                               rtol=1e-3)  # fmt: skip
    again = dp.paint(target, 6, threads=True, **kwargs)
    np.testing.assert_array_equal(np.asarray(again.losses), np.asarray(threaded.losses))


def test_restarts_run_in_threads_on_a_cpu(getkey, monkeypatch):
    seen = []
    original = _threads.best_of_threads

    def spy(run, keys, target, *, progress, start_time):
        seen.append(len(keys))
        return original(run, keys, target, progress=progress, start_time=start_time)

    monkeypatch.setattr("diffprims._paint._paint.best_of_threads", spy)
    target = _target(getkey())
    dp.paint(target, 4, key=getkey(), steps=10, rounds=1, restarts=2)
    dp.paint(target, 4, key=getkey(), steps=10, rounds=1)  # one restart: no threads
    assert seen == [2]


def _result(value):
    """A painting of one flat colour `value` (a faint circle of it over it)."""
    flat = np.full((4, 4, 3), value, np.float32)
    model = dp.Circles.init(1, key=jax.random.key(0), target=flat, opacity=0.01)
    return FitResult(model=model, losses=np.zeros(3), seconds=1.0 + value)


def test_best_of_threads_keeps_the_best_and_collects_interrupts():
    target = np.full((4, 4, 3), 0.5, np.float32)
    backgrounds = {0: 0.1, 1: 0.45, 2: 0.9}

    def run(key, stop, progress):
        return _result(backgrounds[int(key)])

    start = time.perf_counter() - 5.0
    best = _threads.best_of_threads(run, [0, 1, 2], target, progress=False, start_time=start)
    assert float(best.model.background[0]) == pytest.approx(0.45)
    # the call's wall time, the ranking included (the slowest run's said 1.9)
    assert 5.0 <= best.seconds <= time.perf_counter() - start

    def stopped(key, stop, progress):
        if int(key) == 1:
            raise dp.FitInterrupted("stop", step=5, result=_result(0.45))
        return _result(backgrounds[int(key)])

    with pytest.raises(dp.FitInterrupted, match="best painting so far") as info:
        _threads.best_of_threads(stopped, [0, 1, 2], target, progress=False, start_time=0.0)
    assert float(info.value.result.model.background[0]) == pytest.approx(0.45)


def test_best_of_threads_raises_a_runs_error_after_all_end():
    ended = []

    def run(key, stop, progress):
        if int(key) == 0:
            raise ValueError("bad restart")
        ended.append(key)
        return _result(0.5)

    with pytest.raises(ValueError, match="bad restart"):
        _threads.best_of_threads(run, [0, 1], np.zeros((2, 2, 3)), progress=False, start_time=0.0)
    assert ended == [1]


def test_ctrl_c_stops_threaded_restarts(getkey, monkeypatch):
    """The main thread's Ctrl-C reaches the restarts in their threads."""
    from diffprims._fit._driver import Driver

    target = _target(getkey())
    # Compile first, so that the signal lands while steps run.
    dp.paint(target, 4, key=getkey(), steps=50, rounds=1, restarts=2)
    dispatch, sent = Driver.dispatch, threading.Event()

    def dispatch_then_interrupt(self, *args, **kwargs):
        state = dispatch(self, *args, **kwargs)
        if not sent.is_set():  # after the first steps (a fixed timer raced a loaded CPU)
            sent.set()
            signal.raise_signal(signal.SIGINT)
        return state

    monkeypatch.setattr(Driver, "dispatch", dispatch_then_interrupt)
    with pytest.raises(dp.FitInterrupted, match="best painting so far") as info:
        dp.paint(target, 4, key=getkey(), steps=10**6, rounds=1, restarts=2)
    assert info.value.result.model.num_shapes == 4
    assert 0 < info.value.step < 10**6


def test_threaded_restarts_count_together_for_the_solve_memory(getkey, monkeypatch):
    """Each thread solves its own colours at the same time: the check counts them all."""
    from diffprims._paint import _solve

    monkeypatch.setattr(_solve, "MAX_GRAM_BYTES", 2000)  # 8 slots: 972 bytes a restart
    target = _target(getkey())
    dp.paint(target, 6, key=getkey(), steps=4, rounds=1, threads=True, restarts=2)
    with pytest.raises(ValueError, match="4 restart"):
        dp.paint(target, 6, key=getkey(), steps=4, rounds=1, threads=True, restarts=4)


def test_the_solve_memory_message_speaks_of_the_n_asked_for(getkey, monkeypatch):
    # It said "n=39000 shapes ... (n <= 18917)" for n=30000: the count with the spares.
    from diffprims._paint import _solve

    monkeypatch.setattr(_solve, "MAX_GRAM_BYTES", 12 * 11**2)  # a solve of 10 slots
    with pytest.raises(ValueError, match=r"n=10 shapes and 3 spare ones \(`extra=0.3`\)") as info:
        dp.paint(_target(getkey()), 10, key=getkey(), steps=4, rounds=1)
    assert "n <= 7 with these spares" in str(info.value) and "extra=0" in str(info.value)


_DIVERGE_THEN_EXIT = """
import jax, numpy as np, diffprims as dp
target = np.full((13, 11, 3), 0.5, np.float32)
target[3:8, 2:6] = 0.1
try:
    dp.paint(target, 9, key=jax.random.key(0), steps=60, lr=1e30, lr_geometry=1e30,
             lr_colour=1e30)
except dp.FitDivergedError:
    print("diverged")
"""


def test_a_script_ending_after_a_paint_that_raised_exits_cleanly():
    # A daemon thread inside an XLA compile when the interpreter exited aborted the
    # process (rc 134, "FATAL: exception not rethrown") after a paint that diverged.
    # `paint` returns without waiting for compiles it no longer needs: they are joined
    # at the interpreter's exit.
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _DIVERGE_THEN_EXIT], capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "diverged"


def test_ctrl_c_on_one_painting_says_paint(getkey, monkeypatch):
    # It said "Fit interrupted after ..." for a `paint` call (threaded restarts: "Paint").
    from diffprims._fit._driver import Driver

    dispatch = Driver.dispatch

    def dispatch_then_interrupt(self, *args, **kwargs):
        state = dispatch(self, *args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return state

    monkeypatch.setattr(Driver, "dispatch", dispatch_then_interrupt)
    with pytest.raises(dp.FitInterrupted, match="^Paint interrupted after") as info:
        dp.paint(_target(getkey()), 4, key=getkey(), steps=10**6, rounds=1)
    assert info.value.result.model.num_shapes == 4


@pytest.mark.parametrize("where", ["removal", "solve"])
def test_ctrl_c_after_the_last_dispatch_stops_the_paint(getkey, monkeypatch, where):
    # The flag a first Ctrl-C sets was read only before a dispatch: one that came while
    # the spare shapes were removed or the colours solved (minutes with thousands of
    # shapes) was dropped, and the run ended as if never stopped (`diffprims paint`
    # exited 0 after 68 s more).
    from diffprims._paint import _rounds

    if where == "removal":
        remove = _rounds.remove

        sent = threading.Event()

        def remove_then_interrupt(*args, **kwargs):
            out = remove(*args, **kwargs)
            if not sent.is_set():  # once: a second Ctrl-C raises at once anyway
                sent.set()
                signal.raise_signal(signal.SIGINT)
            return out

        monkeypatch.setattr(_rounds, "remove", remove_then_interrupt)
    else:
        solve = _rounds.Painting.solve

        def solve_then_interrupt(self, *args, **kwargs):
            solve(self, *args, **kwargs)
            signal.raise_signal(signal.SIGINT)

        monkeypatch.setattr(_rounds.Painting, "solve", solve_then_interrupt)
    with pytest.raises(dp.FitInterrupted, match="^Paint interrupted after") as info:
        # One step: the removals (and cycles) that follow get none, as with `--steps 1`.
        dp.paint(_target(getkey()), 4, key=getkey(), steps=1, rounds=1)
    assert info.value.result.model.num_shapes == 4


def test_compile_caches_are_safe_to_share_between_threads():
    # paint's restarts (and a user's threads) look up fit's caches of optimizers and
    # losses at once: unlocked, one thread's eviction between another's lookup and
    # move-to-front raised KeyError (107 in 5 s).
    import sys
    import threading
    import time

    from diffprims._fit import _canon

    cache, keys = _canon._Cache(), [object() for _ in range(_canon.CACHE_SIZE)]
    for i, key in enumerate(keys):
        cache.get(("old", i), key, lambda: (None, None))
    errors, stop = [], threading.Event()

    def reread():  # each hit is the least recently used entry
        i = 0
        while not stop.is_set():
            try:
                cache.get(("old", i % len(keys)), keys[i % len(keys)], lambda: (None, None))
            except KeyError as error:
                errors.append(error)
            i += 1

    def insert():  # each insert evicts the oldest entry
        j = 0
        while not stop.is_set():
            cache.get(("new", j), object(), lambda: (None, None))
            j += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=f) for f in (reread, insert)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(interval)
    assert errors == []


def test_two_threads_painting_with_batched_restarts_both_finish():
    # Both waited forever on their batched (`vmap`ped) colour solve (jax 0.10.2, CPU).
    photo = dp.load_image(dp.demo_image_path(), size=128)
    images = [photo[:64, :64], photo[64:, 64:]]

    def paint(i):
        return dp.paint(images[i], 50, key=jax.random.key(i), steps=200, restarts=2,
                        threads=False)  # fmt: skip

    serial = [paint(i) for i in range(2)]  # compiles, then the same work twice at once
    results: dict[int, FitResult] = {}
    workers = []
    for _ in range(2):
        workers = [threading.Thread(target=lambda i=i: results.update({i: paint(i)}),
                                    daemon=True) for i in range(2)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert not any(worker.is_alive() for worker in workers)
        for i in range(2):
            assert np.array_equal(results[i].model.raw_colours, serial[i].model.raw_colours)
