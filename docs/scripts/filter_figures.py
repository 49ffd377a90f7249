"""Make the figures of the separable-filters tutorial (the seed's bokeh-disk figures).

Run from the repository root:

    python docs/scripts/filter_figures.py            # about a minute on 2 cores
    python docs/scripts/filter_figures.py --quick    # small photo, to check the script

`--quick` writes to a new temporary folder instead of docs/images/filters/ (or to
`--out`) and records nothing in made_by.json, so it never touches the committed figures.

Writes under docs/images/filters/ (each file atomically):

- `kernel_<name>.png`: the 50 x 50 disk target, its rank-4 SVD and rank-4 banks fitted
  with `dp.fit` at several loss weightings, magnified 4x; grey is 0 to the peak, red
  shows negative values (4x brighter than grey at the same value, so faint lobes show);
- `photo_<name>.png`: the demo photo blurred with each kernel (normalised to sum 1), with
  the seed's gamma boost (blur `x**8`, then take the 8th root) so that the ringing of
  negative lobes and the leftover corners show around highlights;
- `kernels.png`: the kernels side by side, left to right in the order of `table.md`;
- `table.md`: error, min/max and spill of each kernel, for `--8<--` in the tutorial.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from made_by import output_folder, record  # docs/scripts/made_by.py

import diffprims as dp
from diffprims._files import atomic_write

OUT = Path(__file__).resolve().parents[1] / "images" / "filters"
RANK = 4
GAMMA = 8.0
MAGNIFY = 4
# name -> (label, non_negative weight, keep_zeros weight); None: not fitted.
VARIANTS = {
    "target": ("target (50x50 disk)", None, None),
    "svd": (f"SVD rank {RANK}", None, None),
    "nonneg": ("fit: non-negative (a=1)", 1.0, 0.0),
    "keepzeros": ("fit: keep zeros (b=1)", 0.0, 1.0),
    "both": ("fit: both (a=1, b=1)", 1.0, 1.0),
    "balanced": ("fit: balanced (a=3, b=0.3)", 3.0, 0.3),
}


def kernels(target):
    """name -> rank-4 bank (the target as its full-rank bank)."""
    start = dp.SeparableFilters.from_svd(target, RANK)
    banks = {"target": dp.SeparableFilters.from_svd(target, min(target.shape)), "svd": start}
    for name, (_, non_negative, keep_zeros) in VARIANTS.items():
        if non_negative is None:
            continue
        loss = start.recommended_loss(non_negative=non_negative, keep_zeros=keep_zeros)
        banks[name] = dp.fit(
            start,
            target[..., None],
            loss=loss,
            optimizer=start.recommended_optimizer(),
            steps=start.recommended_steps,
        ).model
    return banks


def kernel_picture(kernel):
    """Grey for `[0, peak]`, red for negative values (4x); magnified with square pixels."""
    k = np.asarray(kernel, np.float64) / float(np.max(kernel))
    positive, negative = np.clip(k, 0, 1), np.clip(-4 * k, 0, 1)
    rgb = np.stack([positive + negative, positive, positive], -1)
    rgb = np.clip(rgb, 0, 1).repeat(MAGNIFY, 0).repeat(MAGNIFY, 1)
    return jnp.asarray(rgb, jnp.float32)


def blurred_photo(bank, photo):
    """Blur in a gamma-boosted space, as the seed does, so highlights bloom into bokeh."""
    out = bank.normalized().apply(photo**GAMMA, border="reflect")
    return jnp.clip(out, 0.0, 1.0) ** (1.0 / GAMMA)


def side_by_side(images, gap=4):
    height = max(image.shape[0] for image in images)
    parts = []
    for image in images:
        pad = ((0, height - image.shape[0]), (0, gap), (0, 0))
        parts.append(np.pad(np.asarray(image), pad, constant_values=1.0))
    return jnp.asarray(np.concatenate(parts, axis=1)[:, :-gap])


def metrics(kernel, target):
    kernel, target = np.asarray(kernel, np.float64), np.asarray(target, np.float64)
    error = np.linalg.norm(kernel - target) / np.linalg.norm(target)
    spill = np.abs(kernel[target == 0]).sum() / np.abs(kernel).sum()
    return error, kernel.min() / kernel.max(), spill


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a 128 px photo, into a temporary folder")  # fmt: skip
    parser.add_argument("--out", type=Path, help=f"the folder to write (default {OUT})")
    args = parser.parse_args()
    args.out = output_folder(args.out, args.quick, OUT)
    target = dp.kernels.disk(50)
    photo = dp.load_image(dp.demo_image_path(), size=128 if args.quick else 512, square=True)
    banks = kernels(target)
    rows = [
        "| kernel | relative L2 error | min / max | spill |",
        "|---|---:|---:|---:|",
    ]
    kernel_pictures, photos = [], []
    for name, (label, _, _) in VARIANTS.items():
        kernel = target if name == "target" else banks[name].kernel()
        kernel_pictures.append(kernel_picture(kernel))
        photos.append(blurred_photo(banks[name], photo))
        dp.save_image(args.out / f"kernel_{name}.png", kernel_pictures[-1])
        dp.save_image(args.out / f"photo_{name}.png", photos[-1])
        error, ratio, spill = metrics(kernel, target)
        rows.append(f"| {label} | {error:.3f} | {ratio:+.3f} | {spill:.3f} |")
        print(rows[-1], flush=True)
    dp.save_image(args.out / "kernels.png", side_by_side(kernel_pictures))
    table = "\n".join(rows) + "\n"
    atomic_write(args.out / "table.md", lambda path: Path(path).write_text(table))
    if not args.quick:  # a quick run's files are no figures of the docs
        record(args.out, __file__)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
