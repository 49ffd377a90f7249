"""Make the figures of the documentation (the circles tutorial, the home page).

Run from the repository root:

    python docs/scripts/make_figures.py            # all figures, a few minutes on 2 cores
    python docs/scripts/make_figures.py --quick    # tiny versions, to check the script

Writes PNGs, a GIF and small Markdown tables under docs/images/circles/ (each file
atomically), and records them in its made_by.json; the pages include the tables with
`--8<--`, so every number in the text comes from this script. `--quick` writes to a
new temporary folder instead (or to `--out`) and records nothing, so it never touches
the committed figures.
The filter figures come from docs/scripts/filter_figures.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from made_by import output_folder, record  # docs/scripts/made_by.py

import diffprims as dp
from diffprims._files import atomic_write

OUT = Path(__file__).resolve().parents[1] / "images" / "circles"


def fit_circles(target, n, *, steps, seed=0, snapshots=None, lr=1e-2):
    """The seed's method: random circles, Adam, 10 % of the pixels per step."""
    key_init, key_fit = jax.random.split(jax.random.key(seed))
    model = dp.Circles.init(n, key=key_init, target=target)
    return dp.fit(
        model, target, loss=dp.L2(), optimizer=optax.adam(lr), steps=steps, batch=0.1,
        key=key_fit, snapshots=snapshots,
    )  # fmt: skip


def psnr_curve(path, curves):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 2.8), dpi=96)
    for label, losses in curves.items():
        losses = np.asarray(losses)
        # Each step's loss is on 10 % of the pixels: smooth over 50 steps to read the trend.
        window = min(50, len(losses))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(smooth)) + window, -10 * np.log10(smooth), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    # The temporary file's name may lack the suffix: name the format.
    atomic_write(path, lambda temp: fig.savefig(temp, format="png"))
    plt.close(fig)


# --8<-- [start:mastercard]
def mastercard_target(size):
    """Two overlapping discs, the right one in front: the seed's local-minimum example."""
    red, yellow = jnp.array([0.92, 0.0, 0.1]), jnp.array([1.0, 0.62, 0.0])
    model = dp.Circles.from_values(
        [[0.36, 0.5], [0.64, 0.5]], [0.25, 0.25], [red, yellow], [1.0, 1.0], background=1.0
    )
    return model.render_image((size, size))


def mastercard(size, steps, seeds):
    """Fit two circles from `seeds` starts at once (vmap), half of them in the wrong order.

    Each start puts the two circles near the two discs, coloured like the disc under
    them, with a random order: either the back circle sits on the back disc (right) or
    on the front disc (wrong). Everything else is left to gradient descent.
    """
    target = mastercard_target(size)
    discs = jnp.array([[0.36, 0.5], [0.64, 0.5]])
    optimizer = optax.adam(1e-2)

    def start(key, compositing):
        key_order, key_jitter = jax.random.split(key)
        swapped = jax.random.bernoulli(key_order)
        centres = jnp.where(swapped, discs[::-1], discs)
        centres = centres + 0.06 * jax.random.normal(key_jitter, (2, 2))
        pixels = jnp.clip((centres * size).astype(jnp.int32), 0, size - 1)
        colours = target[pixels[:, 1], pixels[:, 0]]
        model = dp.Circles.from_values(
            centres, jnp.full((2,), 0.18), colours, jnp.full((2,), 0.6),
            background=jnp.mean(target, axis=(0, 1)),
        )  # fmt: skip
        if compositing != "over":
            model = model.with_compositing(compositing)
        return model, swapped

    def run(key, compositing):
        model, swapped = start(key, compositing)
        fitted = dp.fit(model, target, optimizer=optimizer, steps=steps).model
        return fitted.render_image((size, size)), swapped

    keys = jax.random.split(jax.random.key(0), seeds)
    results = {}
    for compositing in ("over", "depth"):
        images, swapped = jax.vmap(lambda k, c=compositing: run(k, c))(keys)
        errors = np.asarray(jnp.mean((images - target) ** 2, axis=(1, 2, 3)))
        results[compositing] = (images, errors, np.asarray(swapped))
    return target, results


# --8<-- [end:mastercard]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few steps, into a temporary folder")  # fmt: skip
    parser.add_argument("--out", type=Path, help=f"the folder to write (default {OUT})")
    args = parser.parse_args()
    size, steps, counts = (32, 60, (5, 20)) if args.quick else (128, 1500, (10, 50, 200))
    out = output_folder(args.out, args.quick, OUT)
    started = time.perf_counter()

    target = dp.load_image(dp.demo_image_path(), size=size)
    dp.save_image(out / "target.png", target)
    rows, curves = [], {}
    for n in counts:
        result = fit_circles(target, n, steps=steps, snapshots=12 if n == counts[-1] else None)
        image = result.model.render_image((size, size))
        dp.save_image(out / f"n{n}.png", image)
        curves[f"N = {n}"] = result.losses
        rows.append((n, float(dp.psnr(image, target)), float(result.seconds)))
        if n == counts[-1]:
            gif_size = max(size, 160)  # the size the pages show it at
            dp.save_gif(out / "progress.gif", result.snapshots, (gif_size, gif_size),
                        seconds_per_frame=0.25, hold_last=1.5)  # fmt: skip
            # The same model drawn three times larger: positions are resolution independent.
            dp.save_image(out / f"n{n}_large.png", result.model.render_image((3 * size, 3 * size)))
        print(f"N={n}: {rows[-1][1]:.2f} dB in {rows[-1][2]:.1f} s", flush=True)
    psnr_curve(out / "psnr.png", curves)
    # The library's best defaults for the same job: progressive rounds, smart placement.
    n = counts[-1]
    painted = dp.paint(target, n, key=jax.random.key(0), steps=steps)
    image = painted.model.render_image((size, size))
    dp.save_image(out / f"paint{n}.png", image)
    # The home page and README pictures, at 3x: the photo, and the painting drawn at that
    # size (shapes have no pixels to upscale).
    dp.save_image(out / "hero_target.png", dp.load_image(dp.demo_image_path(), size=3 * size))
    dp.save_image(out / "hero_paint.png", painted.model.render_image((3 * size, 3 * size)))
    paint_row = (n, float(dp.psnr(image, target)), float(painted.seconds))
    print(f"paint N={n}: {paint_row[1]:.2f} dB in {paint_row[2]:.1f} s", flush=True)
    table = ["| method | circles N | PSNR (dB) | time (s) |", "|---|---:|---:|---:|"]
    table += [f"| `fit` (the seed's method) | {n} | {p:.1f} | {s:.0f} |" for n, p, s in rows]
    table += ["| `paint` | {} | {:.1f} | {:.0f} |".format(*paint_row)]
    text = "\n".join(table) + "\n"
    atomic_write(out / "results.md", lambda temp: Path(temp).write_text(text))

    mc_size, mc_seeds = (32, 4) if args.quick else (64, 8)
    mc_target, mc = mastercard(mc_size, steps=100 if args.quick else 1000, seeds=mc_seeds)
    dp.save_image(out / "mastercard_target.png", mc_target)
    images, errors, swapped = mc["over"]
    dp.save_image(out / "mastercard_good.png", images[int(np.argmin(errors))])
    dp.save_image(out / "mastercard_stuck.png", images[int(np.argmax(errors))])
    depth_images, depth_errors, _ = mc["depth"]
    dp.save_image(out / "mastercard_depth.png", depth_images[int(np.argmax(depth_errors))])

    def db(values):
        return f"{-10 * np.log10(values.max()):.1f} to {-10 * np.log10(values.min()):.1f}"

    lines = [
        "| compositing | right order at the start: PSNR (dB) | wrong order: PSNR (dB) |",
        "|---|---:|---:|",
    ]
    for name, (_, errs, swap) in mc.items():
        lines.append(f"| `{name}` | {db(errs[~swap])} ({np.sum(~swap)} starts) | "
                     f"{db(errs[swap])} ({np.sum(swap)} starts) |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    atomic_write(out / "mastercard.md", lambda temp: Path(temp).write_text(text))
    text = (
        json.dumps(
            {
                "size": size,
                "steps": steps,
                "fit": [{"n": n, "psnr": p, "seconds": s} for n, p, s in rows],
                "paint": {"n": paint_row[0], "psnr": paint_row[1], "seconds": paint_row[2]},
                "mastercard": {
                    k: {"mse": [float(e) for e in v[1]], "wrong_order": v[2].tolist()}
                    for k, v in mc.items()
                },
            },
            indent=1,
        )
        + "\n"
    )
    atomic_write(out / "results.json", lambda temp: Path(temp).write_text(text))
    if not args.quick:  # a quick run's files are no figures of the docs
        record(out, __file__)
    print(f"wrote {out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
