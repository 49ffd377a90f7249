"""Figures of docs/tutorials/research.md: a hexagonal bokeh judged by its kernel or by
the filtered scene, and how far vmapped fits are from one-by-one fits.

Run: python docs/scripts/research_figures.py  (writes docs/images/research/*.md)
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from made_by import record  # docs/scripts/made_by.py

import diffprims as dp
from diffprims._files import atomic_write

OUT = Path(__file__).resolve().parents[1] / "images" / "research"


# --8<-- [start:blur]
def blur_exactly(scene, kernel):
    """The true 2D blur, channel by channel ("same" size, zero border)."""
    return jnp.stack(
        [jax.scipy.signal.convolve2d(scene[..., c], kernel, mode="same") for c in range(3)], -1
    )


# --8<-- [end:blur]


def kernel_stats(bank, kernel, scene, exact):
    fitted = np.asarray(bank.kernel())
    goal = np.asarray(kernel)
    error = np.linalg.norm(fitted - goal) / np.linalg.norm(goal)
    scene_psnr = float(dp.psnr(jnp.clip(bank.apply(scene), 0, 1), exact))
    return error, fitted.min() / goal.max(), scene_psnr


def filtered_table(rank: int = 3, steps: int = 500) -> str:
    # --8<-- [start:filtered]
    scene = dp.load_image(dp.demo_image_path(), size=128)
    kernel = dp.kernels.polygon(21, 6)
    kernel = kernel / kernel.sum()  # a hexagonal bokeh that keeps brightness
    exact = blur_exactly(scene, kernel)
    start = dp.SeparableFilters.from_svd(kernel, rank)
    peak = float(kernel.max())
    optimizer = dp.SeparableFilters.recommended_optimizer(peak=peak)

    # Judged by the kernel: the library's penalty on negative lobes and spill.
    by_kernel = dp.fit(
        start, kernel[..., None], loss=dp.SeparableFilters.recommended_loss(peak=peak),
        optimizer=optimizer, steps=steps,
    ).model  # fmt: skip

    # Judged by the filtered scene: every step runs the 2R separable passes.
    model = dp.Filtered(start, scene)
    by_scene = dp.fit(
        model, exact, optimizer=optimizer, steps=steps, trainable=model.trainable()
    ).model.bank
    # --8<-- [end:filtered]
    rows = [("truncated SVD", start), ("fit to the kernel", by_kernel),
            ("fit to the filtered scene", by_scene)]  # fmt: skip
    lines = [
        "| rank 3 hexagon | kernel rel. L2 error | most negative tap / peak | "
        "filtered scene PSNR |",
        "|---|---|---|---|",
    ]
    for name, bank in rows:
        error, lobe, scene_psnr = kernel_stats(bank, kernel, scene, exact)
        lines.append(f"| {name} | {error:.4f} | {lobe:+.4f} | {scene_psnr:.2f} dB |")
    return "\n".join(lines) + "\n"


def vmap_table(steps: int = 300) -> str:
    target = dp.load_image(dp.demo_image_path(), size=48)
    keys = jax.random.split(jax.random.key(0), 4)
    models = jax.vmap(lambda k: dp.Circles.init(30, key=k, target=target))(keys)

    def one(model):
        return dp.fit(model, target, steps=steps).model

    batched = jax.vmap(one)(models)
    rows = []
    for i in range(len(keys)):
        single = one(jax.tree.map(lambda x: x[i], models))
        again = one(jax.tree.map(lambda x: x[i], models))
        member = jax.tree.map(lambda x: x[i], batched)
        same = all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(again))
        )
        gap = float(
            jnp.max(jnp.abs(member.render_image((48, 48)) - single.render_image((48, 48))))
        )
        rows.append((same, gap))
    lines = [
        f"| {steps} full-image steps, 30 circles, 48² | same key twice | vmap vs one by one "
        "(max per-pixel difference) |",
        "|---|---|---|",
    ]
    for i, (same, gap) in enumerate(rows):
        lines.append(f"| start {i} | {'bit-identical' if same else 'differs'} | {gap:.2e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in (("filtered.md", filtered_table()), ("vmap.md", vmap_table())):
        atomic_write(OUT / name, lambda temp, text=text: Path(temp).write_text(text))
        print(text)

    record(OUT, __file__)


if __name__ == "__main__":
    main()
