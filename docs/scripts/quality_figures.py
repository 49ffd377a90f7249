"""Figures of docs/tutorials/quality.md: how `dp.paint`'s PSNR grows with its time budget,
beside fogleman/primitive (`--primitive PATH`, its Go binary; without it, our greedy
painter as a stand-in) at the same N, for circles, and for ellipses and Gaussians with
as many parameters.

The photos are benchmarks/quality.py's REPORT photos (no default of `paint` was chosen
on them, except that the scored seeding's choices also looked at motorcycle and
hubble_deep_field). Each photo: the baseline paints N circles in T seconds; then `paint`
gets budgets of a fraction of T. Every program is compiled first (a throwaway paint of
each shape type and, without `--primitive`, a throwaway greedy painting), so the times
are those of a warm process; benchmarks/quality.py gives the cold figures.

Run: python docs/scripts/quality_figures.py [--photos motorcycle moon grass] [--n 200]
[--primitive PATH]
(about 2 minutes a photo on 2 CPU cores; writes docs/images/quality/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np
from made_by import record  # docs/scripts/made_by.py

import diffprims as dp
from diffprims._files import atomic_write

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import quality  # noqa: E402  (benchmarks/quality.py)

OUT = ROOT / "docs" / "images" / "quality"
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
SHAPES = (dp.Circles, dp.Ellipses, dp.Gaussians)


def measure(photos, n: int, primitive: str | None) -> dict:
    """Per photo: the baseline's (PSNR, seconds) under "baseline" (its name under
    "name"), and per shape type paint's (PSNR, seconds) at each fraction of its time."""
    key = jax.random.key(0)
    warm = quality.load_photo(photos[0])
    for cls in SHAPES:  # compile every program once
        quality._paint(warm, quality.equal_count(n, cls), jax.random.key(9), 1.0, shape=cls)
    if not primitive:  # and the greedy baseline's, so that its time T is a warm one
        quality.greedy(warm, 2, key=jax.random.key(9))
    results = {}
    for name in photos:
        target = quality.load_photo(name)
        if primitive:
            row = {"name": "primitive", "baseline": quality.primitive(target, n, primitive)}
        else:
            model, seconds = quality.greedy(target, n, key=key)
            row = {"name": "greedy", "baseline": (quality._psnr(model, target), seconds)}
        seconds = row["baseline"][1]
        for cls in SHAPES:
            count = quality.equal_count(n, cls)
            row[cls.__name__] = [
                quality._paint(target, count, key, f * seconds, shape=cls) for f in FRACTIONS
            ]
        results[name] = row
        print(name, row, flush=True)
    return results


def plot(results: dict, n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), sharey=False)
    colours = {"Circles": "C0", "Ellipses": "C1", "Gaussians": "C2"}
    for ax, (name, row) in zip(np.atleast_1d(axes), results.items(), strict=True):
        for cls in SHAPES:
            points = np.array(row[cls.__name__])
            count = quality.equal_count(n, cls)
            ax.plot(points[:, 1], points[:, 0], "o-", color=colours[cls.__name__],
                    label=f"paint, {count} {cls.__name__.lower()}")  # fmt: skip
        db, seconds = row["baseline"]
        ax.axhline(db, color="k", ls="--", lw=1)
        ax.plot([seconds], [db], "ks", label=f"{row['name']}, {n} circles")
        ax.set_title(name)
        ax.set_xlabel("wall time (s)")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("PSNR (dB)")
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    # The temporary file's name may lack the suffix: name the format.
    atomic_write(path, lambda temp: fig.savefig(temp, dpi=110, format="png"))
    plt.close(fig)


def table(results: dict, n: int) -> str:
    """Markdown: one row per photo and shape type, PSNR at each fraction of T."""
    head = " | ".join(f"{f:g} T" for f in FRACTIONS)
    name = next(iter(results.values()))["name"]
    lines = [
        f"| photo | {name} ({n} circles), T | shapes | {head} |",
        "|---|---|---|" + "---|" * len(FRACTIONS),
    ]
    for name, row in results.items():
        db, seconds = row["baseline"]
        for cls in SHAPES:
            cells = " | ".join(f"{p:.2f} dB ({s:.1f} s)" for p, s in row[cls.__name__])
            count = quality.equal_count(n, cls)
            lines.append(
                f"| {name} | {db:.2f} dB, {seconds:.1f} s | {count} "
                f"{cls.__name__.lower()} | {cells} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=["motorcycle", "moon", "grass"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--primitive", help="fogleman/primitive's binary: the baseline")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = measure(args.photos, args.n, args.primitive)
    plot(results, args.n, OUT / "curve.png")
    text = table(results, args.n)
    atomic_write(OUT / "curve.md", lambda temp: Path(temp).write_text(text))
    record(OUT, __file__)


if __name__ == "__main__":
    main()
