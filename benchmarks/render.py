"""Rendering speed and memory: the naive scan against the tiled paths, in one run.

For each setting it times forward + backward of an L2 loss (jit once, then the median
of several calls, each blocked on), and reads the compiled program's memory from XLA
(`memory_analysis`: arguments + outputs + temporaries, the peak XLA plans for). Ratios
are against the scan measured in the same run. "pairs/s" counts the naive loop's
(shape, pixel) pairs, N * P, per second, so it compares paths on the same work; the
tiled rows also say how many pairs they actually evaluated (per chunk, its longest list
times its points).

    python benchmarks/render.py            # everything (a few minutes on 2 cores)
    python benchmarks/render.py --quick    # 256^2 x 200, the 128^2 vmap-versus-loop
                                           # table and the fit step
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import diffprims as dp
from diffprims._shapes import _culling, _render, _tiled


def timed(fn, *args, repeat: int) -> float:
    """Median wall time in ms of `fn(*args)` over `repeat` calls, after a warm-up."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def peak_bytes(fn, *args) -> int:
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes


def matmul_gflops() -> float:
    a = jax.random.normal(jax.random.key(0), (2048, 2048), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    ms = timed(mm, a, repeat=5)
    return 2 * 2048**3 / (ms * 1e-3) / 1e9


def circles(n: int, radii: tuple[float, float], key) -> dp.Circles:
    k1, k2, k3 = jax.random.split(key, 3)
    centres = jax.random.uniform(k1, (n, 2))
    low, high = np.log(radii[0]), np.log(radii[1])
    r = jnp.exp(jax.random.uniform(k2, (n,), minval=low, maxval=high))
    colours = jax.random.uniform(k3, (n, 3))
    return dp.Circles.from_values(centres, r, colours, jnp.full((n,), 0.7), background=0.5)


def evaluated_pairs_image(model, shape) -> int:
    """Pairs the tiled render_image evaluates: per chunk, its longest list x its pixels."""
    tile = _render.image_tile(shape, model.num_shapes)
    points, boxes = _tiled.tile_points(shape, tile)
    bounds = _culling.grown_bounds(model, 1.0 / shape[0])
    chunk = min(_render.IMAGE_CHUNK, len(points))
    counts = np.asarray(jnp.sum(_culling.overlaps(jnp.asarray(boxes), bounds), axis=1))
    order = np.asarray(_culling.group_order(jnp.asarray(boxes), bounds, chunk))
    longest = np.append(counts, 0)[order].max(axis=1)
    return int(longest.sum()) * chunk * points.shape[1]


def image_rows(model, shape, repeat: int, run_scan: bool) -> list[dict]:
    target = jax.random.uniform(jax.random.key(1), (*shape, 3))
    pairs = model.num_shapes * shape[0] * shape[1]
    rows = []
    for method in ["scan", "tiled"]:

        def loss(m, method=method):
            return jnp.mean((m.render_image(shape, method=method) - target) ** 2)

        step = jax.jit(jax.value_and_grad(loss))
        memory = peak_bytes(jax.value_and_grad(loss), model)
        if method == "scan" and not run_scan:
            rows.append(dict(path="scan", ms=float("nan"), memory=memory, pairs=pairs))
            continue
        ms = timed(step, model, repeat=repeat)
        row = dict(path=method, ms=ms, memory=memory, pairs=pairs)
        if method == "tiled":
            row["evaluated"] = evaluated_pairs_image(model, shape)
        rows.append(row)
    return rows


def points_rows(model, height: int, count: int, repeat: int) -> list[dict]:
    """The minibatched `render` fit uses: `count` random pixel centres."""
    idx = jax.random.randint(jax.random.key(2), (count,), 0, height * height)
    points = jnp.stack([(idx % height + 0.5) / height, (idx // height + 0.5) / height], -1)
    target = jax.random.uniform(jax.random.key(3), (count, 3))
    rows = []
    for method in ["scan", "tiled"]:

        def loss(m, method=method):
            pred = m.render(points, pixel_size=1.0 / height, method=method)
            return jnp.mean((pred - target) ** 2)

        ms = timed(jax.jit(jax.value_and_grad(loss)), model, repeat=repeat)
        memory = peak_bytes(jax.value_and_grad(loss), model)
        rows.append(dict(path=method, ms=ms, memory=memory, pairs=model.num_shapes * count))
    return rows


def fit_rows(steps: int) -> list[dict]:
    """ms per step of the README's fit: 200 circles, 256^2, batch=0.1, adam 1e-2; and
    the same `steps` again after 1800 steps of fitting (shapes have moved and grown), to
    show the step time stays flat over a long fit."""
    target = dp.load_image(dp.demo_image_path(), 256)
    model = dp.Circles.init(200, key=jax.random.key(0), target=target)

    def per_step(start) -> float:
        dp.fit(start, target, steps=steps, batch=0.1, key=jax.random.key(1))  # compile
        best = float("inf")
        for i in range(3):
            begin = time.perf_counter()
            result = dp.fit(start, target, steps=steps, batch=0.1, key=jax.random.key(i))
            jax.block_until_ready(result.model)
            best = min(best, time.perf_counter() - begin)
        return 1e3 * best / steps

    rows = []
    saved = _render.AUTO_MIN_SHAPES
    try:
        _render.AUTO_MIN_SHAPES = 1 << 60  # fit has no method argument: steer "auto"
        jax.clear_caches()
        rows.append(dict(path="scan", ms=per_step(model), memory=0, pairs=200 * 6554))
    finally:
        _render.AUTO_MIN_SHAPES = saved
    jax.clear_caches()
    rows.append(dict(path="auto", ms=per_step(model), memory=0, pairs=200 * 6554))
    later = dp.fit(model, target, steps=1800, batch=0.1, key=jax.random.key(9)).model
    rows.append(dict(path="auto", ms=per_step(later), memory=0, pairs=200 * 6554, late=True))
    return rows


def show(title: str, rows: list[dict]) -> None:
    base = rows[0]["ms"]
    print(f"\n{title}")
    print(
        f"  {'path':<6} {'fwd+bwd ms':>11} {'speed-up':>9} {'peak MiB':>9} {'pairs/s':>10}  notes"
    )
    for row in rows:
        ms = row["ms"]
        ratio = base / ms if np.isfinite(base) and np.isfinite(ms) else float("nan")
        rate = row["pairs"] / (ms * 1e-3) if np.isfinite(ms) else float("nan")
        memory = f"{row['memory'] / 2**20:9.1f}" if row["memory"] else f"{'-':>9}"
        note = ""
        if "evaluated" in row:
            note = f"evaluated {row['evaluated'] / row['pairs']:.3f} of the N*P pairs"
        if row.get("late"):
            note = "the same, from the model after 1800 steps"
        if not np.isfinite(ms):
            note = "not run (memory and time out of reach); memory from the compiled program"
        print(f"  {row['path']:<6} {ms:11.1f} {ratio:8.1f}x {memory} {rate:10.3g}  {note}")


def vmap_rows(n: int, members: int, repeat: int) -> list[dict]:
    """Full-image L2 gradients of `members` sets one by one, then under one `jax.vmap`
    (research code fitting several sets at once): the ms for all members."""
    shape = (128, 128)
    target = jax.random.uniform(jax.random.key(4), (*shape, 3))
    models = [circles(n, (0.02, 0.10), jax.random.key(10 + i)) for i in range(members)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *models)
    grad = jax.grad(lambda m: jnp.mean((m.render_image(shape, method="tiled") - target) ** 2))
    one = jax.jit(grad)
    loop_ms = timed(lambda: [one(m) for m in models], repeat=repeat)
    vmap_ms = timed(jax.jit(jax.vmap(grad)), stacked, repeat=repeat)
    pairs = members * n * shape[0] * shape[1]
    return [
        dict(path="loop", ms=loop_ms, memory=None, pairs=pairs),
        dict(path="vmap", ms=vmap_ms, memory=None, pairs=pairs),
    ]


def layers_rows(n: int, repeat: int) -> list[dict]:
    """The same `n` circles as one set, then as `Layers` of two halves (each layer drawn
    by its own tiled renderer over the picture below): full-image L2 gradient at 256^2.
    The speed-up column is the set's time over this row's (about 1 where layers cost
    what one set costs; before each layer tiled, 0.03)."""
    shape = (256, 256)
    model = circles(n, (0.02, 0.10), jax.random.key(n))
    halves = [model.take(jnp.arange(n // 2)), model.take(jnp.arange(n // 2, n))]
    target = jax.random.uniform(jax.random.key(4), (*shape, 3))
    grad = jax.jit(jax.grad(lambda m: jnp.mean((m.render_image(shape) - target) ** 2)))
    pairs = n * shape[0] * shape[1]
    return [
        dict(path=path, ms=timed(grad, m, repeat=repeat), memory=peak_bytes(grad, m), pairs=pairs)
        for path, m in (("set", model), ("layers", dp.Layers(halves)))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs")
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"2048^2 float32 matmul: {matmul_gflops():.0f} GFLOP/s")
    counts = [200] if args.quick else [50, 200, 1000]
    for n in counts:
        model = circles(n, (0.02, 0.10), jax.random.key(n))
        repeat = 3 if n >= 1000 else 5
        show(
            f"256^2, {n} circles (radius 2-10 %), full-image L2",
            image_rows(model, (256, 256), repeat, True),
        )
        show(
            f"256^2, {n} circles, minibatch of 6554 random pixels (fit's batch=0.1)",
            points_rows(model, 256, 6554, repeat=10),
        )
    if not args.quick:
        model = circles(10_000, (0.005, 0.02), jax.random.key(7))
        show(
            "1024^2, 10 000 circles (radius 0.5-2 %), full-image L2",
            image_rows(model, (1024, 1024), repeat=2, run_scan=False),
        )
    show("128^2, 200 circles x 3 sets, tiled fwd+bwd: a loop, then vmap", vmap_rows(200, 3, 5))
    show("256^2, 500 circles: one set, then two Layers of 250", layers_rows(500, 5))
    show("fit(): 200 circles on the 256^2 demo image, batch=0.1, ms per step", fit_rows(200))
    print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
