"""Make the figures of the weighted-error-map section (docs/tutorials/losses.md).

Run from the repository root:

    python docs/scripts/weighted_figures.py            # about 3 minutes on 1 core
    python docs/scripts/weighted_figures.py --quick    # tiny versions, to check the script

`--quick` writes to a new temporary folder instead of docs/images/weighted/ (or to
`--out`) and records nothing in made_by.json, so it never touches the committed figures.

Paints the demo photo with `dp.paint` and three losses, with the same shapes and steps:
plain `dp.L2()`, `dp.Weighted(dp.L2(), face)` with a soft ellipse around the face
weighted ~8x, and `dp.Weighted(dp.L2(), dp.edge_weights(target))`. Every loss is run with
8 keys, so the table shows the spread between runs; the pictures are those of the key
whose face gain (face-weighted minus plain) is the median one, not the best one.
Writes under docs/images/weighted/ (each file atomically):

- `target.png`, `weights_face.png`, `weights_edges.png`: the photo and the two weight maps
  (white = the largest weight);
- `paint_<name>.png`: the paintings, `error_<name>.png`: `|painting - photo|` (mean over
  channels, 3x brighter) with the face ellipse outlined in amber;
- `table.md`: PSNR over the whole image and inside the face ellipse (the pictured key,
  and the mean over keys), how many circles are centred in the ellipse, and PSNR where
  the edge map is strongest and weakest; `results.json` with every run's numbers and
  time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from made_by import output_folder, record  # docs/scripts/made_by.py

import diffprims as dp
from diffprims._files import atomic_write

OUT = Path(__file__).resolve().parents[1] / "images" / "weighted"
ERROR_GAIN = 3.0
OUTLINE = np.array([1.0, 0.75, 0.0])  # amber
FIELDS = ("whole", "face")  # PSNR over the whole image, inside the face ellipse


def error_map(image, target, inside):
    """`|image - target|` (mean over channels, ERROR_GAIN brighter), `inside` outlined."""
    error = ERROR_GAIN * np.mean(np.abs(np.asarray(image - target)), -1, keepdims=True)
    # 16 grey levels: enough to read, and the PNG stays small.
    picture = np.broadcast_to(np.round(np.clip(error, 0.0, 1.0) * 15) / 15, target.shape)
    # The outline: pixels of `inside` with a 4-neighbour outside it.
    padded = np.pad(inside, 1)
    core = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return np.where((inside & ~core)[..., None], OUTLINE, picture)


def grey(weights):
    """A weight map as a grey picture, white = its 99th percentile."""
    top = jnp.percentile(weights, 99.0)
    return jnp.clip(jnp.broadcast_to(weights / top, (*weights.shape[:2], 3)), 0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few steps, into a temporary folder")  # fmt: skip
    parser.add_argument("--out", type=Path, help=f"the folder to write (default {OUT})")
    args = parser.parse_args()
    size, n, steps, seeds = (64, 20, 100, 2) if args.quick else (256, 150, 1500, 8)
    out = output_folder(args.out, args.quick, OUT)
    started = time.perf_counter()

    # --8<-- [start:weights]
    target = dp.load_image(dp.demo_image_path(), size=size)  # size = 256
    # Pixel centres in frame units (x right, y down, the height is 1).
    rows, cols = (jnp.mgrid[0:size, 0:size] + 0.5) / size
    # 1 on an ellipse around the face (centre (0.45, 0.245), half-axes 0.115 and 0.135).
    r = jnp.hypot((cols - 0.45) / 0.115, (rows - 0.245) / 0.135)
    weights = 1.0 + 7.0 * jax.nn.sigmoid((1.0 - r) / 0.08)  # 1 outside, ~8 inside, soft edge
    losses = {
        "l2": dp.L2(),
        "face": dp.Weighted(dp.L2(), weights),
        "edges": dp.Weighted(dp.L2(), dp.edge_weights(target, strength=4.0)),
    }
    # --8<-- [end:weights]
    inside = np.asarray(r < 1.0)  # the face region of the table: the ellipse itself
    # Where the edge weights are largest (top 10 %) and smallest (bottom half).
    edge_map = np.asarray(losses["edges"].weights).reshape(size, size, -1).mean(-1)
    regions = {
        "edges": edge_map >= np.percentile(edge_map, 90.0),
        "flat": edge_map < np.median(edge_map),
    }

    dp.save_image(out / "target.png", target)
    dp.save_image(out / "weights_face.png", grey(weights[..., None]))
    dp.save_image(out / "weights_edges.png", grey(losses["edges"].weights))

    runs, images = [], {}
    for seed in range(seeds):
        for name, loss in losses.items():
            # --8<-- [start:paint]
            result = dp.paint(target, n, key=jax.random.key(seed), steps=steps, loss=loss)
            # --8<-- [end:paint]
            image = result.model.render_image((size, size))
            whole = float(dp.psnr(image, target))
            in_face = float(dp.psnr(image[inside], target[inside]))
            by_edges = {k: float(dp.psnr(image[m], target[m])) for k, m in regions.items()}
            # Circles centred in the face ellipse (the pixel under each centre).
            x, y = np.clip(np.asarray(result.model.centres * size, int), 0, size - 1).T
            shapes = int(np.sum(inside[y, x]))
            runs.append(dict(loss=name, key=seed, whole=whole, face=in_face,
                             **by_edges, face_circles=shapes,
                             seconds=float(result.seconds)))  # fmt: skip
            images[name, seed] = image
            print(f"{name} key={seed}: whole {whole:.2f} dB, face {in_face:.2f} dB, "
                  f"{shapes} circles in the face, {result.seconds:.1f} s", flush=True)  # fmt: skip

    labels = {
        "l2": "`dp.L2()`",
        "face": "`dp.Weighted(dp.L2(), weights)`, face ~8x",
        "edges": "`dp.Weighted(dp.L2(), dp.edge_weights(target))`",
    }
    fields = (*FIELDS, *regions, "face_circles")
    by = {(run["loss"], run["key"], field): run[field] for run in runs for field in fields}

    def change(name, field):
        """`field` of loss `name` minus that of plain L2 with the same key, per key."""
        return np.array([by[name, k, field] - by["l2", k, field] for k in range(seeds)])

    gains, changes = change("face", "face"), change("face", "whole")
    edge_gains, edge_changes = change("edges", "face"), change("edges", "whole")
    circles = {name: [by[name, k, "face_circles"] for k in range(seeds)] for name in losses}
    # The pictures: the key whose face gain is the median (the lower one), not the best.
    shown = int(np.argsort(gains)[(seeds - 1) // 2])
    for name in losses:
        dp.save_image(out / f"paint_{name}.png", images[name, shown])
        dp.save_image(out / f"error_{name}.png", error_map(images[name, shown], target, inside))
    table = [
        f"| loss | whole image, key {shown} | face, key {shown} | whole image, mean of "
        f"{seeds} keys | face, mean of {seeds} keys |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in labels.items():
        cells = [by[name, shown, field] for field in FIELDS]
        cells += [np.mean([by[name, k, field] for k in range(seeds)]) for field in FIELDS]
        table.append(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    short = {"l2": "plain", "face": "face-weighted", "edges": "edge-weighted"}
    counts = ", ".join(
        f"{short[name]} {by[name, shown, 'face_circles']} "
        f"({min(circles[name])} to {max(circles[name])})"
        for name in losses
    )
    table += [
        "",
        f"PSNR in dB; {n} circles, {steps} steps, {size} x {size} pixels. Against plain "
        f"`dp.L2()` with the same key, the face weights changed the face PSNR by "
        f"{gains.min():+.2f} to {gains.max():+.2f} dB (better with {np.sum(gains > 0)} of "
        f"{seeds} keys) and the whole-image PSNR by {changes.min():+.2f} to "
        f"{changes.max():+.2f} dB; the edge weights changed the face PSNR by "
        f"{edge_gains.min():+.2f} to {edge_gains.max():+.2f} dB and the whole-image PSNR "
        f"by {edge_changes.min():+.2f} to {edge_changes.max():+.2f} dB. Circles centred "
        f"in the face ellipse, key {shown} (range over the keys): {counts}. The pictures "
        f"are those of key {shown}, whose face gain is the median one.",
    ]
    table += [
        "",
        f"| loss | strongest 10 % of the edge map, mean of {seeds} keys | weakest half "
        f"(flat regions), mean of {seeds} keys |",
        "|---|---:|---:|",
    ]
    for name, label in labels.items():
        cells = [np.mean([by[name, k, field] for k in range(seeds)]) for field in regions]
        table.append(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    table += ["", "PSNR in dB over the pixels where `dp.edge_weights(target)` is largest and "
              "smallest."]  # fmt: skip
    text = "\n".join(table) + "\n"
    atomic_write(out / "table.md", lambda path: Path(path).write_text(text))
    summary = {"size": size, "n": n, "steps": steps, "shown_key": shown, "runs": runs}
    atomic_write(
        out / "results.json",
        lambda path: Path(path).write_text(json.dumps(summary, indent=1) + "\n"),
    )
    if not args.quick:  # a quick run's files are no figures of the docs
        record(out, __file__)
    print(f"wrote {out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
