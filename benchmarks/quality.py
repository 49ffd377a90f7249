"""Quality benchmark: dp.paint against a greedy hill-climbing painter, side by side.

For N = 50, 100, 200, 500 shapes on 256x256 centre-cropped photos (scikit-image's
astronaut and camera, downloaded with scikit-image; install it to run this script), it
prints the PSNR and wall time of

- **greedy**: the hill-climbing approach of fogleman/primitive, written with our renderer:
  add one hard-edged circle at a time with alpha 0.5; for each, score `candidates` random
  circles, then hill-climb the best few with batches of local mutations (move the centre,
  change the radius) until no mutation improves, the colour of every candidate in closed
  form (the colour that minimises the squared error over the pixels it covers);
- **paint**: `dp.paint(target, N, key=..., seconds=T)` with its defaults, given the
  greedy painter's wall time `T` on that photo as its budget (compilation included);
- optionally (`--shapes`) ellipses and triangles at the parameter count of N circles.

Run: `python benchmarks/quality.py [--n 50 100 200 500] [--photos astronaut camera]`.
"""

from __future__ import annotations

import argparse
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import diffprims as dp

ALPHA = 0.5  # primitive's default alpha 128


def load_photo(name: str, size: int = 256) -> jax.Array:
    from skimage import data  # benchmark-only dependency

    image = np.asarray(getattr(data, name)(), np.float32) / 255.0
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    image = image[..., :3]
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top : top + side, left : left + side]
    return jnp.clip(jax.image.resize(jnp.asarray(image), (size, size, 3), "linear"), 0, 1)


# -- greedy hill climbing --------------------------------------------------------------


RADIUS = 32  # largest radius in pixels (primitive draws radii in 1..32)
WINDOW = 2 * RADIUS + 2


def _scores(centres, radii, stats, height, width):
    """Error change and closed-form colour of each candidate circle, `(K,)`, `(K, 3)`.

    `centres` and `radii` are in pixels; `stats` is the padded per-pixel table
    `(residual r (3), |r|^2, current error)` where `ALPHA * colour` must supply `r`.
    Each candidate is scored on the window around it only.
    """
    corner = jnp.floor(centres).astype(jnp.int32) - RADIUS  # top-left, unpadded pixels

    def one(corner, centre, radius):
        window = jax.lax.dynamic_slice(
            stats, (corner[1] + RADIUS, corner[0] + RADIUS, 0), (WINDOW, WINDOW, 5)
        )
        ys = corner[1] + jnp.arange(WINDOW) + 0.5
        xs = corner[0] + jnp.arange(WINDOW) + 0.5
        inside = (xs[None, :] - centre[0]) ** 2 + (ys[:, None] - centre[1]) ** 2 < radius**2
        inside = inside & (ys[:, None] < height) & (ys[:, None] > 0)
        inside = inside & (xs[None, :] < width) & (xs[None, :] > 0)
        return jnp.einsum("ij,ijk->k", inside.astype(jnp.float32), window), inside.sum()

    sums, count = jax.vmap(one)(corner, centres, radii)
    count = jnp.maximum(count, 1).astype(jnp.float32)
    colour = jnp.clip(sums[:, :3] / (ALPHA * count[:, None]), 0.0, 1.0)
    after = (
        ALPHA**2 * jnp.sum(colour**2, -1) * count
        - 2 * ALPHA * jnp.sum(colour * sums[:, :3], -1)
        + sums[:, 3]
    )
    return after - sums[:, 4], colour


@eqx.filter_jit
def _greedy_shape(canvas, target, points, key, candidates, climbers, mutations, rounds):
    """Pick one circle: best of random candidates, then batched hill climbing."""
    height, width, _ = target.shape
    residual = target - (1 - ALPHA) * canvas
    table = jnp.concatenate(
        [residual, jnp.sum(residual**2, -1, keepdims=True),
         jnp.sum((canvas - target) ** 2, -1, keepdims=True)], -1,
    )  # fmt: skip
    pad = RADIUS + WINDOW
    stats = jnp.pad(table, ((RADIUS, pad), (RADIUS, pad), (0, 0)))
    limits = jnp.array([width, height], jnp.float32)
    k_c, k_r, k_climb = jax.random.split(key, 3)
    centres = jax.random.uniform(k_c, (candidates, 2)) * limits
    radii = jax.random.randint(k_r, (candidates,), 1, RADIUS + 1).astype(jnp.float32)
    scores, _ = _scores(centres, radii, stats, height, width)
    best = jnp.argsort(scores)[:climbers]
    state = (centres[best], radii[best], scores[best])

    def climb(state, key):
        c, r, s = state
        k_move, k_size, k_which = jax.random.split(key, 3)
        shape = (climbers, mutations)
        step = 16.0 * jax.random.normal(k_move, (*shape, 2))
        grow = 16.0 * jax.random.normal(k_size, shape)
        which = jax.random.bernoulli(k_which, 0.5, shape)[..., None]
        new_c = jnp.clip(c[:, None] + jnp.where(which, step, 0.0), 0.0, limits - 1e-3)
        new_r = jnp.clip(r[:, None] + jnp.where(which[..., 0], 0.0, grow), 1.0, RADIUS)
        new_s, _ = _scores(new_c.reshape(-1, 2), new_r.reshape(-1), stats, height, width)
        new_s = new_s.reshape(shape)
        pick = jnp.argmin(new_s, 1)
        rows = jnp.arange(climbers)
        better = new_s[rows, pick] < s
        return (
            jnp.where(better[:, None], new_c[rows, pick], c),
            jnp.where(better, new_r[rows, pick], r),
            jnp.where(better, new_s[rows, pick], s),
        ), None

    (c, r, s), _ = jax.lax.scan(climb, state, jax.random.split(k_climb, rounds))
    i = jnp.argmin(s)
    _, colour = _scores(c[i][None], r[i][None], stats, height, width)
    # Draw the chosen circle with our renderer (a hard edge: coverage > 0.5).
    circle = dp.Circles.from_values(
        c[i][None] / height, r[i][None] / height, colour, jnp.ones((1,)), softness=1e-3
    )
    mask = circle.coverage(points, 1e-3 / height)[0] > 0.5
    canvas = jnp.where(
        mask.reshape(height, width, 1), (1 - ALPHA) * canvas + ALPHA * colour[0], canvas
    )
    return canvas, c[i] / height, r[i] / height, colour[0]


def greedy(target, n, *, key, candidates=512, climbers=8, mutations=32, rounds=16):
    """Paint `n` hard circles greedily; returns (Circles, seconds)."""
    start = time.perf_counter()
    height, width, _ = target.shape
    points = dp.pixel_centres((height, width)).reshape(-1, 2)
    background = jnp.mean(target, (0, 1))
    canvas = jnp.broadcast_to(background, target.shape)
    shapes = []
    for i in range(n):
        canvas, c, r, colour = _greedy_shape(
            canvas, target, points, jax.random.fold_in(key, i), candidates, climbers,
            mutations, rounds,
        )  # fmt: skip
        shapes.append((c, r, colour))
    centres, radii, colours = (jnp.stack(x) for x in zip(*shapes, strict=True))
    model = dp.Circles.from_values(
        centres, radii, colours, jnp.full((n,), ALPHA), background=background, softness=0.01
    )
    jax.block_until_ready((model, canvas))
    return model, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[50, 100, 200, 500])
    parser.add_argument("--photos", nargs="+", default=["astronaut", "camera"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shapes", action="store_true", help="also ellipses and triangles")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, load {os.getloadavg()}")
    rows = []
    for n in args.n:
        for name in args.photos:
            target = load_photo(name, args.size)
            key = jax.random.key(args.seed)
            model, t_greedy = greedy(target, n, key=key)
            shape = target.shape[:2]
            p_greedy = float(dp.psnr(model.render_image(shape), target))
            result = dp.paint(target, n, key=key, seconds=t_greedy)
            p_paint = float(dp.psnr(result.model.render_image(shape), target))
            row = [n, name, p_greedy, t_greedy, p_paint, float(result.seconds)]
            if args.shapes:
                # Equal parameter count: a circle has 7 numbers, an ellipse 9, a triangle 10.
                for cls, size in [(dp.Ellipses, 9), (dp.Triangles, 10)]:
                    m = max(1, round(n * 7 / size))
                    other = dp.paint(target, m, key=key, seconds=t_greedy, shape=cls)
                    row += [float(dp.psnr(other.model.render_image(shape), target))]
            rows.append(row)
            print(_format(row, args.shapes), flush=True)
    print(
        "\nN    photo      greedy dB  greedy s  paint dB  paint s  gain dB"
        + ("  ellipses dB  triangles dB" if args.shapes else "")
    )
    for row in rows:
        print(_format(row, args.shapes))
    for n in args.n:
        sel = [r for r in rows if r[0] == n]
        greedy_db, greedy_s = np.mean([r[2] for r in sel]), np.mean([r[3] for r in sel])
        paint_db, gain = np.mean([r[4] for r in sel]), np.mean([r[4] - r[2] for r in sel])
        print(
            f"N={n}: mean greedy {greedy_db:.2f} dB in {greedy_s:.1f} s; "
            f"mean paint {paint_db:.2f} dB; gain {gain:+.2f} dB"
        )
    print(f"load after: {os.getloadavg()}")


def _format(row, shapes):
    n, name, pg, tg, pp, tp = row[:6]
    text = f"{n:<4} {name:<10} {pg:9.2f} {tg:9.1f} {pp:9.2f} {tp:8.1f} {pp - pg:+8.2f}"
    if shapes:
        text += f" {row[6]:12.2f} {row[7]:13.2f}"
    return text


if __name__ == "__main__":
    main()
