"""What a user waits for, in one run: import, first calls against warm calls, a fresh
optimizer, paint's time budget and the command line's wall time against its budget.

Every figure is measured in this process (the CLI and the import in subprocesses) on
the bundled photo at 256^2; compare ratios, not absolute times, across machines.

    python benchmarks/latency.py            # everything (about two minutes on 2 cores)
    python benchmarks/latency.py --no-cli   # without the command line
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import equinox as eqx
import jax
import optax

import diffprims as dp


def seconds(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def import_time() -> float:
    code = "import time; t = time.perf_counter(); import diffprims; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def renders(target) -> None:
    model = dp.Circles.init(200, key=jax.random.key(0), target=target)
    shape = target.shape[:2]
    first = seconds(lambda: model.render_image(shape))
    eager = min(seconds(lambda: model.render_image(shape)) for _ in range(5))
    jitted = eqx.filter_jit(lambda m: m.render_image(shape))
    jit_first = seconds(lambda: jitted(model))
    jit = min(seconds(lambda: jitted(model)) for _ in range(5))
    print(f"render_image 256^2 x 200: eager first {first:.2f} s, eager again {1e3 * eager:.1f} ms,"
          f" jitted first {jit_first:.2f} s, jitted {1e3 * jit:.1f} ms;"
          f" eager/jitted {eager / jit:.2f}x (bar: <= 3x)")  # fmt: skip


def fits(target) -> None:
    model = dp.Circles.init(200, key=jax.random.key(0), target=target)

    def run(optimizer):
        return dp.fit(model, target, loss=dp.L2(), optimizer=optimizer, steps=200,
                      batch=0.1, key=jax.random.key(1)).model  # fmt: skip

    first = seconds(lambda: run(optax.adam(1e-2)))
    fresh = seconds(lambda: run(optax.adam(1e-2)))
    rates = [seconds(lambda: run(optax.adam(lr))) for lr in (3e-2, 3e-3)]
    warmup = optax.warmup_cosine_decay_schedule(0.0, 2e-2, 20, 200)
    scheduled = seconds(lambda: run(optax.adamw(warmup, weight_decay=1e-4)))
    other = seconds(lambda: run(optax.adamw(warmup, weight_decay=1e-3)))
    optimizer = optax.adam(1e-2)
    run(optimizer)
    warm = min(seconds(lambda: run(optimizer)) for _ in range(2))
    print(f"fit (README example, 200 steps, batch 0.1): first {first:.2f} s, warm {warm:.2f} s"
          f" (+{first - warm:.2f} s, bar +4 s); fresh optax.adam(1e-2) {fresh:.2f} s"
          f" (+{fresh - warm:.2f} s, bar +1 s); optax.adam(3e-2), (3e-3): "
          f"{rates[0]:.2f} s, {rates[1]:.2f} s (+{max(rates) - warm:.2f} s at most);"
          f" adamw with a warm-up cosine schedule: first {scheduled:.2f} s, another weight"
          f" decay {other:.2f} s (+{other - warm:.2f} s)")  # fmt: skip


def paints(target, budgets) -> None:
    # Only the very first call compiles; every later one (any budget) runs warm.
    for i, budget in enumerate(budgets):
        for j in range(2):
            label = "first" if i == j == 0 else "warm"
            took = seconds(
                lambda: dp.paint(target, 100, key=jax.random.key(0), seconds=budget).model
            )
            print(f"paint n=100 seconds={budget:g} ({label}): {took:.2f} s,"
                  f" over budget {took - budget:+.2f} s")  # fmt: skip


def cli(budget: float) -> None:
    """Two runs of the command line. Its persistent compilation cache lives under the
    home folder (~/.cache/diffprims/jax on Linux, ~/Library/Caches/... on macOS), so both
    run with a new, empty home folder: the first starts with an empty cache (a true first
    run, whatever this machine ran before), the second finds what the first wrote."""
    exe = os.path.join(os.path.dirname(sys.executable), "diffprims")
    with tempfile.TemporaryDirectory() as folder:
        home = os.path.join(folder, "home")
        os.mkdir(home)
        env = dict(os.environ, HOME=home, USERPROFILE=home)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)  # it would win over the home folder's
        env.pop("XDG_CACHE_HOME", None)  # so would this, on Linux
        for label in ("first (empty compilation cache)", "again (cache warm)"):
            command = [exe, "paint", dp.demo_image_path().as_posix(), "-n", "100",
                       "--size", "256", "--seconds", str(budget), "-q",
                       "-o", os.path.join(folder, "out"), "--force"]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            took = time.perf_counter() - start
            print(f"diffprims paint -n 100 --seconds {budget:g}, {label}: wall {took:.2f} s,"
                  f" over budget {took - budget:+.2f} s (bar: 12 s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-cli", action="store_true")
    args = parser.parse_args()
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; jax {jax.__version__}"
    )
    print(f"import diffprims: {import_time():.2f} s")
    target = dp.load_image(dp.demo_image_path(), size=256)
    renders(target)
    fits(target)
    paints(target, (3.0, 8.0))
    if not args.no_cli:
        cli(8.0)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
