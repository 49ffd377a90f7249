"""Fitting thousands of shapes: `init`'s sizes and the culling margin, against their
former settings in the same run.

Each row fits the same number of shapes to the demo photo for the same steps (compiling
excluded: the same fit run once before compiles what it runs) and prints the wall time
and the PSNR, and the time as a ratio to the first row, the former defaults: shapes
drawn as large as for 200 (`size_range=(0.03, 0.12)`) and bounds grown by 14 edge widths
whatever the type.

    python benchmarks/many_shapes.py                     # 2000 Gaussians, 300 steps
    python benchmarks/many_shapes.py --shape Ellipses --n 1000 --steps 100
"""

from __future__ import annotations

import argparse
import time

import jax

import diffprims as dp


def _fit(cls, n, target, steps, **init):
    model = cls.init(n, key=jax.random.key(0), target=target, **init)
    # The same call: `fit` compiles a loop of `steps` rounded up to a power of two (at
    # most `steps_per_dispatch`), so a shorter warm-up compiled another program.
    dp.fit(model, target, steps=steps, key=jax.random.key(1))
    start = time.perf_counter()
    result = dp.fit(model, target, steps=steps, key=jax.random.key(1))
    jax.block_until_ready(result.model)
    seconds = time.perf_counter() - start
    return seconds, float(dp.psnr(result.model.render_image(target.shape[:2]), target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="Gaussians", help="a shape type of diffprims")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    cls = getattr(dp, args.shape)
    margin14 = type(f"{cls.__name__}Margin14", (cls,), {"edge_margin": 14.0})
    target = dp.load_image(dp.demo_image_path(), size=args.size)
    rows = [
        ("former: sizes as for 200, margin 14", margin14, {"size_range": (0.03, 0.12)}),
        ("sizes by number, margin 14", margin14, {}),
        (f"now: sizes by number, margin {cls.edge_margin:g}", cls, {}),
    ]
    print(f"{args.n} {cls.__name__} at {args.size}^2, {args.steps} steps of dp.fit")
    first = None
    for name, kind, init in rows:
        seconds, psnr = _fit(kind, args.n, target, args.steps, **init)
        first = first or seconds
        print(f"  {name:40s} {seconds:7.1f} s ({first / seconds:4.2f}x)  PSNR {psnr:.2f} dB")


if __name__ == "__main__":
    main()
