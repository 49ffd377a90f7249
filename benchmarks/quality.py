"""Quality benchmark: dp.paint against fogleman/primitive (or our greedy painter), side by side.

The photos are fixed: every colour photo that ships with scikit-image (install it to run
this script; `pip install scikit-image`), its grey photos, and texture-heavy ones, each
centre-cropped to a square and resized to `--size` (256). They are split in two:

- **TUNE** (`--set tune`): the photos `paint`'s defaults were tuned on (all of its
  knobs were chosen on these, in this session and earlier ones);
- **REPORT** (`--set report`, the default): photos no default was chosen on, except
  that the scored seeding's choices also looked at motorcycle and hubble_deep_field
  (docs/tutorials/quality.md). Quote these, saying so.

`--photos synthetic_circles` is not a photo: 200 random circles, which 200 circles
paint exactly, so what a painter reaches there (at `--n 200`) measures its search, not
what circles can draw.

For each N (`--n`, default 50 100 200 500) and photo it prints the PSNR and wall time of

- **greedy**: the hill-climbing approach of fogleman/primitive, written with our renderer:
  add one hard-edged circle at a time with alpha 0.5; for each, score `candidates` random
  circles, then hill-climb the best few with batches of local mutations (move the centre,
  change the radius) until no mutation improves, the colour of every candidate in closed
  form (the colour that minimises the squared error over the pixels it covers). Its
  radii stop at 32 pixels, where primitive's grow to the frame; on the REPORT photos at
  N = 200 it scores 0.4 dB below primitive and takes 1.6 times its time;
- **primitive** (`--primitive PATH`, instead of greedy): fogleman/primitive itself, the
  Go binary at PATH, as the issue's bar runs it: circles (`-m 4`), alpha 128, 2 workers,
  the photo at `--size` in and out (`go install github.com/fogleman/primitive@latest`
  builds it);
- **paint**: `dp.paint(target, N, key=..., seconds=T)` with its defaults, given the
  baseline's wall time `T` on that photo as its budget (compilation included: the
  first photo of each N pays for it);
- `--variant NAME='{"prune": 0.2}'` (repeatable): more paint runs with these keyword
  arguments, same budget, in the same run (A/B comparisons on shared CPUs);
- `--curve 0.1 0.25 0.5`: the time-to-quality curve, paint's PSNR with budgets of these
  fractions of `T` beside the baseline's PSNR at the same N (after the main run, compiled;
  with `--shapes`, for ellipses and Gaussians too);
- `--shapes`: ellipses, Gaussians and triangles at the parameter count of N circles
  (circle 7 numbers, ellipse and Gaussian 9, triangle 10), same budget;
- `--budget S`: no baseline; give paint S seconds (for quick tuning runs);
  `--warmup` compiles every variant first, so that none pays for compilation.

`--photos` also takes image files (a path, e.g. `--photos ~/photos/*.jpg`): photos
no knob was chosen on, for checking that a figure holds beyond the fixed sets.

Run: `python benchmarks/quality.py [--set report|tune|all] [--photos NAME|PATH ...]
[--n 200] [--primitive PATH] [--curve 0.1 0.25 0.5] [--shapes] [--variant NAME=JSON ...]
[--budget S]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import diffprims as dp
from diffprims._files import atomic_write

ALPHA = 0.5  # primitive's default alpha 128

# Photos that ship with scikit-image (no download). Colour: astronaut, chelsea, coffee,
# hubble_deep_field, immunohistochemistry, retina, rocket, motorcycle (the left view of
# stereo_motorcycle). Grey: camera, coins, moon, clock. Textures: brick, grass, gravel
# (with immunohistochemistry and hubble_deep_field). Synthetic images (colorwheel, logo,
# checkerboard, shepp_logan_phantom) and documents (page, text) are left out.
TUNE = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "retina",
    "immunohistochemistry", "brick",
)  # fmt: skip
REPORT = ("motorcycle", "hubble_deep_field", "moon", "clock", "grass", "gravel")
SETS = {"tune": TUNE, "report": REPORT, "all": TUNE + REPORT}

PARAMETERS = {"Circles": 7, "Ellipses": 9, "Gaussians": 9, "Triangles": 10}


def synthetic_circles(size: int = 256, n: int = 200, seed: int = 1) -> jax.Array:
    """`n` random soft circles over grey, `(size, size, 3)`: a target that `n` circles
    paint exactly (radii log-uniform from 2 to 40 pixels, the largest at the back,
    opacities 0.4 to 1), so the PSNR a painter reaches on it measures its search alone,
    not what circles can draw."""
    k_radius, k_centre, k_colour, k_opacity = jax.random.split(jax.random.key(seed), 4)
    log_radii = jax.random.uniform(k_radius, (n,), minval=np.log(2.0), maxval=np.log(40.0))
    model = dp.Circles.from_values(
        jax.random.uniform(k_centre, (n, 2)),
        -jnp.sort(-jnp.exp(log_radii)) / 256,
        jax.random.uniform(k_colour, (n, 3)),
        jax.random.uniform(k_opacity, (n,), minval=0.4, maxval=1.0),
        background=jnp.full((3,), 0.5),
        softness=0.5,
    )
    return jnp.clip(model.render_image((size, size)), 0, 1)


def load_photo(name: str, size: int = 256) -> jax.Array:
    """A photo of scikit-image's `data`, centre-cropped square, `(size, size, 3)`; or
    `"synthetic_circles"` (`synthetic_circles`); or an image file of your own (a path:
    any file `dp.load_image` reads, as RGB: grey repeated, transparency over white)."""
    if name == "synthetic_circles":
        return synthetic_circles(size)
    if os.path.sep in name or os.path.isfile(name):
        image = np.asarray(dp.load_image(name), np.float32)
    else:
        from skimage import data  # benchmark-only dependency

        if name != "motorcycle" and not callable(getattr(data, name, None)):
            raise SystemExit(f"--photos {name!r}: neither a file nor a photo of skimage.data")
        image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        image = np.asarray(image, np.float32) / 255.0
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


def primitive(target, n, path: str) -> tuple[float, float]:
    """PSNR and wall time of fogleman/primitive (the binary at `path`): `n` circles,
    alpha 128, 2 workers, at the target's size. The input is the target in 8 bits; the
    output is scored against the float target, as paint's is."""
    from PIL import Image  # a dependency of diffprims

    size = target.shape[0]
    pixels = np.asarray(jnp.round(target * 255), np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        source, output = os.path.join(folder, "in.png"), os.path.join(folder, "out.png")
        Image.fromarray(pixels).save(source)
        command = [path, "-i", source, "-o", output, "-n", str(n), "-m", "4", "-a", "128"]
        command += ["-j", "2", "-r", str(size), "-s", str(size)]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        painted = np.asarray(Image.open(output).convert("RGB"), np.float32) / 255.0
    return float(dp.psnr(jnp.asarray(painted), target)), seconds


def equal_count(n: int, cls) -> int:
    """How many shapes of `cls` have as many parameters as `n` circles."""
    return max(1, round(n * PARAMETERS["Circles"] / PARAMETERS[cls.__name__]))


def _psnr(model, target) -> float:
    return float(dp.psnr(model.render_image(target.shape[:2]), target))


def _paint(target, n, key, seconds, **kwargs) -> tuple[float, float]:
    """PSNR and wall time of one `dp.paint` (the time measured here, all included)."""
    start = time.perf_counter()
    result = dp.paint(target, n, key=key, seconds=seconds, **kwargs)
    jax.block_until_ready(result.model)
    return _psnr(result.model, target), time.perf_counter() - start


def run_photo(name, n, args, variants) -> dict:
    """One photo at one N: the baseline (primitive, greedy, or the fixed budget), each
    paint variant, then the shapes and the time-to-quality curve when asked."""
    target = load_photo(name, args.size)
    key = jax.random.key(args.seed)
    row: dict = {"n": n, "photo": name}
    if args.budget is None and args.primitive:
        row["primitive"] = primitive(target, n, args.primitive)
        budget = row["primitive"][1]
    elif args.budget is None:
        model, budget = greedy(target, n, key=key)
        row["greedy"] = (_psnr(model, target), budget)
    else:
        budget = args.budget
    for label, kwargs in variants.items():
        row[label] = _paint(target, n, key, budget, **kwargs)
    shapes = [dp.Circles, dp.Ellipses, dp.Gaussians, dp.Triangles] if args.shapes else []
    for cls in shapes[1:]:
        row[cls.__name__] = _paint(target, equal_count(n, cls), key, budget, shape=cls)
    for fraction in args.curve:
        for cls in shapes[:3] or [dp.Circles]:
            name = "" if cls is dp.Circles else f"{cls.__name__} "
            row[f"{name}curve {fraction:g}"] = _paint(
                target, equal_count(n, cls), key, fraction * budget, shape=cls
            )
    print(_line(row), flush=True)
    return row


def _line(row: dict) -> str:
    cells = "".join(f" {k} {db:6.2f} dB {s:5.1f} s" for k, (db, s) in _results(row))
    return f"{row['n']:<4} {_short(row['photo']):<21}{cells}"


def _short(name: str) -> str:
    """A photo's name for the tables (an image file's name without folder or suffix)."""
    return os.path.splitext(os.path.basename(name))[0]


def _results(row: dict) -> list[tuple[str, tuple[float, float]]]:
    return [(k, v) for k, v in row.items() if k not in ("n", "photo")]


BASELINES = ("primitive", "greedy")


def _table(sel: list[dict]) -> None:
    """Each photo's (and the mean) PSNR and time per column, and gains over the baseline."""
    labels = [label for label, _ in _results(sel[0])]
    base = next((label for label in labels if label in BASELINES), None)
    others = [label for label in labels if label != base] if base else []
    print(
        f"{'photo':<21}" + "".join(f" {label:>16}" for label in labels)
        + "".join(f" {'gain ' + label:>14}" for label in others)
    )  # fmt: skip
    for part, title in [*(([r], _short(r["photo"])) for r in sel), (sel, "mean")]:
        text = f"{title:<21}"
        for label in labels:
            db = np.mean([r[label][0] for r in part])
            text += f" {db:8.2f} {np.mean([r[label][1] for r in part]):5.1f} s"
        for label in others:
            text += f" {np.mean([r[label][0] - r[base][0] for r in part]):+14.2f}"
        print(text)


def summary(rows: list[dict], photos: dict[str, tuple[str, ...]]) -> None:
    """Per set and N: each column's PSNR (dB) and time per photo and mean."""
    for set_name, names in photos.items():
        for n in sorted({r["n"] for r in rows}):
            sel = [r for r in rows if r["n"] == n and r["photo"] in names]
            if sel:
                print(f"\n{set_name.upper()} N={n} ({len(sel)} photos)")
                _table(sel)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[50, 100, 200, 500])
    parser.add_argument("--set", choices=sorted(SETS), default="report")
    parser.add_argument(
        "--photos", nargs="+", help="these photos (names or image files) instead of a set"
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shapes", action="store_true", help="ellipses, Gaussians, triangles")
    parser.add_argument("--curve", type=float, nargs="*", default=[], help="budget fractions")
    parser.add_argument("--variant", nargs="*", default=[], help="NAME='{\"prune\": 0.2}'")
    parser.add_argument("--no-default", action="store_true", help="only the --variant runs")
    parser.add_argument("--primitive", help="fogleman/primitive's binary: the baseline")
    parser.add_argument("--budget", type=float, help="seconds for paint; no baseline")
    parser.add_argument("--warmup", action="store_true", help="compile each variant first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    variants = {} if args.no_default else {"paint": {}}
    for text in args.variant:
        label, _, kwargs = text.partition("=")
        variants[label] = json.loads(kwargs or "{}")
    names = tuple(args.photos) if args.photos else SETS[args.set]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, load {os.getloadavg()}")
    print(f"photos: {', '.join(names)}; N: {args.n}; variants: {variants}")
    if args.warmup:  # compile every variant at every N, so no variant pays for it
        for n in args.n:
            for kwargs in variants.values():
                _paint(load_photo(names[0], args.size), n, jax.random.key(99), 1.0, **kwargs)
    rows = [run_photo(name, n, args, variants) for n in args.n for name in names]
    groups = {k: tuple(p for p in names if p in v) for k, v in SETS.items() if k != "all"}
    groups["other"] = tuple(p for p in names if p not in SETS["all"])  # e.g. image files
    groups = {k: v for k, v in groups.items() if v}
    summary(rows, groups)
    print(f"\nload after: {os.getloadavg()}")
    if args.json:
        text = json.dumps(rows, indent=1)
        atomic_write(args.json, lambda temp: Path(temp).write_text(text))


if __name__ == "__main__":
    main()
