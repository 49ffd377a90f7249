"""How fast `paint` ranks its shapes, and whether it keeps a short budget with many.

`paint` ranks its shapes (how much each one's removal would raise the weighted squared
error) every round, to re-seed the least useful, and to remove its spare shapes. The
first table times that ranking by tiles (each tile visiting only the shapes that reach
it, `method="tiled"`) against the dense scan (every shape at every pixel, the baseline)
in the same run, on the removal's 128 x 128 grid, compiled, best of five. The second
paints the demo photo with many circles and a short `seconds` budget (the second call
in the process: the first compiles) and prints the wall time as a ratio to the budget.

    python benchmarks/ranking.py                 # 260, 1300 and 3000 shapes
    python benchmarks/ranking.py --quick         # 260 and 1300; paint at 1000 only
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import diffprims as dp
from diffprims._paint._placement import usefulness


def _best(fn, *args, repeat: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def rank_row(n: int, grid: int) -> None:
    radius = 0.6 * np.sqrt(1 / (np.pi * n))  # as paint sizes them
    model = dp.Circles.init(n, key=jax.random.key(0), size_range=(0.3 * radius, 2 * radius))
    goal = jax.random.uniform(jax.random.key(1), (grid, grid, 3))
    weights = jax.numpy.ones((grid, grid))
    scan, tiled = (
        _best(jax.jit(lambda m, way=way: usefulness(m, goal, weights, 1, way)), model)
        for way in ("scan", "tiled")
    )
    print(f"{n:6d} {grid:4d}^2  scan {scan * 1e3:8.1f} ms  tiled {tiled * 1e3:7.1f} ms  "
          f"{scan / tiled:5.1f}x", flush=True)  # fmt: skip


def paint_row(n: int, seconds: float, photo) -> None:
    dp.paint(photo, n, key=jax.random.key(0), seconds=seconds)  # compiles
    start = time.perf_counter()
    result = dp.paint(photo, n, key=jax.random.key(1), seconds=seconds)
    jax.block_until_ready(result.model)
    wall = time.perf_counter() - start
    psnr = float(dp.psnr(result.model.render_image(photo.shape[:2]), photo))
    steps = result.losses.shape[0]
    print(f"{n:6d} circles  seconds={seconds:<4g} wall {wall:5.2f} s  {wall / seconds:4.2f}x "
          f"the budget  {steps:5d} steps  {psnr:5.2f} dB", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.default_backend()}, load {os.getloadavg()[0]:.1f}")
    print("\nranking every shape (compiled, best of 5): tiles against the dense scan")
    for n in (260, 1300) if args.quick else (260, 1300, 3000):
        rank_row(n, 128)
    photo = dp.load_image(dp.demo_image_path(), size=256)
    print("\npaint with many circles and a short budget (second call)")
    for n, seconds in ((1000, 2.0),) if args.quick else ((1000, 2.0), (1000, 5.0), (3000, 5.0)):
        paint_row(n, seconds, photo)
    print(f"\nload after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
