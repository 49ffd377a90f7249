"""Separable filter banks on the seed's 50 x 50 bokeh disk: accuracy, artifacts and speed.

Prints, for ranks 1, 2, 4, 8:

- relative L2 error `|k - t| / |t|`, `min(k) / max(k)` (negative lobes ring) and spill
  (`sum |k|` where the target is 0, over `sum |k|`) for (a) the truncated SVD, (b) a
  multiplicative-update NMF baseline, (c) banks fitted with `dp.fit` from the SVD at
  several loss weightings (a Pareto table), each with its loss after 500 and 5000 steps
  of the recommended optimizer and after 5000 steps of the seed's gradient descent;
- the time to apply a rank-4 bank to a 1024² RGB image against a direct 2D convolution
  (`jax.lax.conv_general_dilated`) and an FFT convolution
  (`jax.scipy.signal.fftconvolve`), measured in the same run.

Also prints, for other kernels (anti-aliased disk, non-square disk, hexagons, Gaussian),
how far the recommended optimizer's loss after 500 steps is from its loss after 5000
steps and from the seed's gradient descent after 5000 steps (worst over ranks and
weightings; a ratio near 1 means converged).

And the issue's bar (rank 4: min/max >= -1e-3, error below NMF's) with the default loss
on 32 kernels of other sizes and shapes (disks of 21 to 200 taps, polygons, a ring,
a comet).

Run: `python benchmarks/filters.py` (a few minutes on 2 busy CPU cores; `--quick` skips
the other-kernels tables).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import diffprims as dp

RANKS = (1, 2, 4, 8)
# (non_negative, keep_zeros) weights, L2 weight 1; the first is the default.
WEIGHTINGS = ((4.0, 0.0), (1.0, 0.0), (3.0, 0.1), (3.0, 0.3), (4.0, 0.5), (1.0, 1.0), (0.0, 1.0))


def metrics(kernel, target):
    kernel, target = np.asarray(kernel, np.float64), np.asarray(target, np.float64)
    error = np.linalg.norm(kernel - target) / np.linalg.norm(target)
    spill = np.abs(kernel[target == 0]).sum() / np.abs(kernel).sum()
    return error, kernel.min() / kernel.max(), spill


def nmf(target, rank, *, iterations=2000, seed=0):
    """Lee & Seung multiplicative updates for `target ≈ W H`, `W, H >= 0` (float64)."""
    target = np.asarray(target, np.float64)
    rng = np.random.default_rng(seed)
    w = rng.random((target.shape[0], rank))
    h = rng.random((rank, target.shape[1]))
    for _ in range(iterations):
        h *= (w.T @ target) / (w.T @ w @ h + 1e-12)
        w *= (target @ h.T) / (w @ h @ h.T + 1e-12)
    return w @ h


def row(name, kernel, target, extra=""):
    error, ratio, spill = metrics(kernel, target)
    print(f"  {name:<24} {error:7.4f} {ratio:+10.5f} {spill:7.4f}  {extra}")


def accuracy_table(target, long_steps):
    print(f"50x50 hard disk (radius 25), {dp.SeparableFilters.recommended_steps} fit steps")
    print(
        f"  {'method':<24} {'error':>7} {'min/max':>10} {'spill':>7}  "
        f"loss@500 loss@{long_steps} (change)  seed-GD@{long_steps}  fit-s"
    )
    optimizer = dp.SeparableFilters.recommended_optimizer()
    seed_gd = optax.sgd(0.1)  # the seed: plain gradient descent, lr 0.1, 5000 steps
    for rank in RANKS:
        print(f"rank {rank}")
        start = dp.SeparableFilters.from_svd(target, rank)
        row("SVD", start.kernel(), target)
        row("NMF (mult. update)", nmf(target, rank), target)
        for non_negative, keep_zeros in WEIGHTINGS:
            loss = dp.SeparableFilters.recommended_loss(
                non_negative=non_negative, keep_zeros=keep_zeros
            )
            kwargs = dict(loss=loss, steps_per_dispatch=500)
            fitted = dp.fit(start, target[..., None], optimizer=optimizer, steps=500, **kwargs)
            long = dp.fit(
                start, target[..., None], optimizer=optimizer, steps=long_steps, **kwargs
            )
            seed = dp.fit(start, target[..., None], optimizer=seed_gd, steps=long_steps, **kwargs)
            value = lambda model: float(loss(model.kernel()[..., None], target[..., None]))  # noqa: E731
            at_500, at_long = value(fitted.model), value(long.model)
            extra = (
                f"{at_500:.6f} {at_long:.6f} ({at_500 / at_long - 1:+.2%})  "
                f"{value(seed.model):.6f}  {fitted.seconds:5.2f}"
            )
            row(f"fit a={non_negative:g} b={keep_zeros:g}", fitted.model.kernel(), target, extra)


def convergence_table(long_steps):
    """The recommended optimizer on other kernels: is the loss at 500 steps converged?"""
    others = {
        "disk 50 anti-aliased": dp.kernels.disk(50, antialias=True),
        "disk 50x30": dp.kernels.disk((50, 30)),
        "hexagon 41": dp.kernels.polygon(41, 6),
        "hexagon 41 anti-aliased": dp.kernels.polygon(41, 6, antialias=True),
        "gaussian 31": dp.kernels.gaussian(31),
    }
    steps = dp.SeparableFilters.recommended_steps
    print(f"recommended optimizer on other kernels: ranks {RANKS}, weightings {WEIGHTINGS[::2]}")
    print(
        f"  {'kernel':<24} {'L500/L5000':>11} {'L500/seedGD':>12} {'L500/mean(t²)':>14}  (worst)"
    )
    for name, target in others.items():
        worst_long = worst_seed = worst_abs = 0.0
        for rank in RANKS:
            start = dp.SeparableFilters.from_svd(target, rank)
            for non_negative, keep_zeros in WEIGHTINGS[::2]:
                loss = start.recommended_loss(non_negative=non_negative, keep_zeros=keep_zeros)
                kwargs = dict(loss=loss, steps=long_steps, steps_per_dispatch=1000)
                long = dp.fit(
                    start, target[..., None], optimizer=start.recommended_optimizer(), **kwargs
                )
                seed = dp.fit(start, target[..., None], optimizer=optax.sgd(0.1), **kwargs)
                at_steps = float(long.losses[steps])  # the loss after `steps` updates
                worst_long = max(worst_long, at_steps / float(long.losses[-1]))
                worst_seed = max(worst_seed, at_steps / float(seed.losses[-1]))
                worst_abs = max(worst_abs, at_steps / float(jnp.mean(target**2)))
        print(f"  {name:<24} {worst_long:11.4f} {worst_seed:12.4f} {worst_abs:14.2e}")


def ellipse(size, centre, radii):
    """An anti-aliased ellipse (16 x 16 samples a tap) in a `size` square, peak 1."""
    sub = (np.arange(size * 16) + 0.5) / 16
    y, x = np.meshgrid(sub, sub, indexing="ij")
    inside = ((y - centre[0]) / radii[0]) ** 2 + ((x - centre[1]) / radii[1]) ** 2 <= 1
    return jnp.asarray(inside.reshape(size, 16, size, 16).mean((1, 3)), jnp.float32)


def comet(size=41):
    """A bright head with a tail fading along the diagonal (a comet-shaped bokeh)."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    head = np.exp(-((y - 30) ** 2 + (x - 30) ** 2) / 8.0)
    along, across = ((30 - y) + (30 - x)) / 2, (y - x) / np.sqrt(2)
    width = 1 + np.maximum(along, 0) / 10
    tail = np.where(along > 0, np.exp(-along / 10 - across**2 / (2 * width**2)), 0.0)
    kernel = np.maximum(head, 0.6 * tail)
    kernel[kernel < 1e-3] = 0
    return jnp.asarray(kernel / kernel.max(), jnp.float32)


def recommended_bank(target, rank, loss=None):
    """`(kept, candidates)`: the SVD and NMF starts, their fits (`recommended_steps` of
    the recommended optimizer each) and the lowest of those polished by L-BFGS (100
    steps), by name ("svd", "nmf", "fit", "fit from NMF", "polished"), and the name of
    the one of lowest loss: what `diffprims filter` keeps (a fit where it ties its start)."""
    loss = loss or dp.SeparableFilters.recommended_loss()
    goal = target[..., None]
    value = lambda bank: float(loss(bank.kernel()[..., None], goal))  # noqa: E731
    starts = {"svd": dp.SeparableFilters.from_svd(target, rank)}
    if float(target.min()) >= -1e-6 * float(jnp.abs(target).max()):  # (as the command)
        starts["nmf"] = dp.SeparableFilters.from_nmf(target, rank)
    candidates = {
        "fit" if name == "svd" else "fit from NMF": dp.fit(
            start, goal, loss=loss, optimizer=start.recommended_optimizer(),
            steps=start.recommended_steps,
        ).model
        for name, start in starts.items()
    }  # fmt: skip
    candidates |= starts
    lowest = candidates[min(candidates, key=lambda name: value(candidates[name]))]
    candidates["polished"] = dp.fit(
        lowest, goal, loss=loss, optimizer=optax.lbfgs(), steps=100
    ).model
    return min(candidates, key=lambda name: value(candidates[name])), candidates


def bar_kernels():
    """The kernels of the bar table: the 32 the default weight was chosen on, and the
    small disks added later (where the SVD start alone fell short)."""
    ring = dp.kernels.disk(41) - dp.kernels.disk(41, radius=12)
    kernels = {f"disk {n}": dp.kernels.disk(n) for n in (5, 7, 9, 11, 13, 15, 17, 19)}
    kernels |= {f"disk {n} anti-aliased": dp.kernels.disk(n, antialias=True) for n in (9, 13, 17)}
    kernels |= {f"disk {n}": dp.kernels.disk(n) for n in (21, 33, 40, 45, 48, 50, 52, 56, 64)}
    kernels |= {f"disk {n}": dp.kernels.disk(n) for n in (80, 100, 128, 200)}
    kernels |= {
        "disk 21 anti-aliased": dp.kernels.disk(21, antialias=True),
        "disk 64 anti-aliased": dp.kernels.disk(64, antialias=True),
        "disk 100 anti-aliased": dp.kernels.disk(100, antialias=True),
        "triangle 61": dp.kernels.polygon(61, 3),
        "square 45": dp.kernels.polygon(45, 4),
        "pentagon 61": dp.kernels.polygon(61, 5),
        "hexagon 37": dp.kernels.polygon(37, 6),
        "hexagon 101": dp.kernels.polygon(101, 6),
        "hexagon 161": dp.kernels.polygon(161, 6),
        "octagon 31": dp.kernels.polygon(31, 8),
        "octagon 45 anti-aliased": dp.kernels.polygon(45, 8, antialias=True),
        "octagon 75 anti-aliased": dp.kernels.polygon(75, 8, antialias=True),
        "octagon 99": dp.kernels.polygon(99, 8),
        "octagon 151": dp.kernels.polygon(151, 8),
        "ring 41 (hole 12)": ring,
        "disk 50x30": dp.kernels.disk((50, 30)),
        "disk 24 off-centre in 41": ellipse(41, (16.0, 25.0), (12.0, 12.0)),
        "ellipse 38x18 in 41": ellipse(41, (20.5, 20.5), (19.0, 9.0)),
        "comet 41": comet(41),
    }
    return kernels


def bar_rows(rank):
    """Per kernel of `bar_kernels` (those with `rank <= min(Kh, Kw)`): its name, the
    relative errors of each candidate of `recommended_bank` and of the NMF baseline, the
    kept one's name, error and min/max, and whether the fit from the SVD alone (the
    issue's recipe) and the kept bank hold the bar: "held", "tie" (within 1e-4 of the
    NMF's error) or "MISSED"."""
    for name, target in bar_kernels().items():
        if rank > min(target.shape):
            continue
        kept, banks = recommended_bank(target, rank)
        errors = {key: metrics(bank.kernel(), target) for key, bank in banks.items()}
        baseline = metrics(nmf(target, rank), target)[0]

        def verdict(error, ratio):
            if ratio < -1e-3:
                return "MISSED"
            if error < baseline or max(error, baseline) < 1e-4:
                return "held"
            return "tie" if error <= baseline * (1 + 1e-4) else "MISSED"

        yield {
            "name": name, "nmf": baseline, "kept": kept,
            "errors": {key: e[0] for key, e in errors.items()}, "ratio": errors[kept][1],
            "svd_fit": verdict(*errors["fit"][:2]), "bar": verdict(*errors[kept][:2]),
        }  # fmt: skip


def bar_table(ranks=(4,)):
    """The issue's bar with the default loss beyond the seed's disk: at rank 4 (and the
    other `ranks`), min/max >= -1e-3 and an error below NMF's, on kernels of other sizes
    and shapes, for the fit from the SVD alone and for `recommended_bank`."""
    for rank in ranks:
        print(f"default loss at rank {rank} on other kernels: the bar is min/max >= -1e-3, "
              "error < NMF's (or both exact, under 1e-4)")  # fmt: skip
        print(
            f"  {'kernel':<24} {'SVD':>7} {'NMF':>7} {'SVD fit':>7} {'NMF fit':>7} "
            f"{'kept':>7} {'min/max':>9}  {'kept':<12}  SVD fit alone / kept"
        )
        counts = {}
        for row in bar_rows(rank):
            e = row["errors"]
            print(
                f"  {row['name']:<24} {e['svd']:7.4f} {row['nmf']:7.4f} {e['fit']:7.4f} "
                f"{e.get('fit from NMF', float('nan')):7.4f} {e[row['kept']]:7.4f} "
                f"{row['ratio']:+9.5f}  {row['kept']:<12}  {row['svd_fit']} / {row['bar']}"
            )
            for key in ("svd_fit", "bar"):
                counts[key, row[key]] = counts.get((key, row[key]), 0) + 1
        for key, label in (("svd_fit", "the fit from the SVD alone"), ("bar", "kept")):
            print(f"  {label}: " + ", ".join(
                f"{counts.get((key, v), 0)} {v}" for v in ("held", "tie", "MISSED")))  # fmt: skip


def direct_convolution(image, kernel):
    """2D convolution, zero padded, "same": one `conv_general_dilated` with the full kernel."""
    size_h, size_w = kernel.shape
    pad = ((size_h // 2, (size_h - 1) // 2), (size_w // 2, (size_w - 1) // 2))
    x = jnp.moveaxis(image, -1, 0)[:, None]  # channels as the batch: (C, 1, H, W)
    out = jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1][None, None], (1, 1), pad, dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    return jnp.moveaxis(out[:, 0], 0, -1)


def fft_convolution(image, kernel):
    convolve = lambda channel: jax.scipy.signal.fftconvolve(channel, kernel, mode="same")  # noqa: E731
    return jax.vmap(convolve, in_axes=-1, out_axes=-1)(image)


def timings(calls, repeats):
    """Median and min seconds per call; the calls take turns, so load changes hit all alike."""
    for call in calls.values():
        jax.block_until_ready(call())  # compile
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - start)
    return {name: (float(np.median(t)), float(np.min(t))) for name, t in times.items()}


def speed_table(target, size, repeats):
    start = dp.SeparableFilters.from_svd(target, 4)
    bank = dp.fit(
        start,
        target[..., None],
        loss=start.recommended_loss(),
        optimizer=start.recommended_optimizer(),
        steps=start.recommended_steps,
    ).model.normalized()
    kernel = bank.kernel()
    image = jax.random.uniform(jax.random.key(0), (size, size, 3))
    apply = jax.jit(lambda bank, image: bank.apply(image))
    direct = jax.jit(direct_convolution)
    fft = jax.jit(fft_convolution)
    reference = direct(image, kernel)
    for name, out in (("separable", apply(bank, image)), ("fft", fft(image, kernel))):
        print(f"  max |{name} - direct| = {float(jnp.max(jnp.abs(out - reference))):.2e}")
    print(
        f"apply a rank-4 50x50 bank to a {size}² RGB image ({repeats} runs each, after compiling)"
    )
    print(f"  {'method':<34} {'median s':>9} {'min s':>8} {'direct/method':>14}")
    calls = {
        "separable apply (rank 4, 2x4 1D)": lambda: apply(bank, image),
        "direct 2D conv_general_dilated": lambda: direct(image, kernel),
        "fftconvolve": lambda: fft(image, kernel),
    }
    results = timings(calls, repeats)
    base = results["direct 2D conv_general_dilated"][0]
    for name, (median, best) in results.items():
        print(f"  {name:<34} {median:9.4f} {best:8.4f} {base / median:13.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-steps", type=int, default=5000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="skip the other-kernels table")
    parser.add_argument(
        "--bar-ranks", type=int, nargs="+", default=[4], help="ranks of the other-kernels bar"
    )
    parser.add_argument("--bar-only", action="store_true", help="print the bar table alone")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    target = dp.kernels.disk(50)
    if args.bar_only:
        bar_table(args.bar_ranks)
        return
    accuracy_table(target, args.long_steps)
    print()
    if not args.quick:
        convergence_table(args.long_steps)
        print()
        bar_table(args.bar_ranks)
        print()
    speed_table(target, args.size, args.repeats)


if __name__ == "__main__":
    main()
