"""The README's Python example, timed from the start of the process.

    python benchmarks/example.py [PHOTO]     # default: the bundled demo photo

Prints PSNR, the last loss and `result.seconds` (compilation included), then the wall
time including imports. The foundation's bar: <= 90 s and >= 23 dB on a held-out 256² photo.
"""

import argparse
import time

start = time.perf_counter()

import jax  # noqa: E402
import optax  # noqa: E402

import diffprims as dp  # noqa: E402

parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
)
parser.add_argument("photo", nargs="?", default=None, help="default: the bundled demo photo")
photo = parser.parse_args().photo or dp.demo_image_path()
target = dp.load_image(photo, size=256)  # (H, W, 3) float32 in [0, 1]
model = dp.Circles.init(200, key=jax.random.key(0), target=target)
result = dp.fit(
    model,
    target,
    loss=dp.L2(),
    optimizer=optax.adam(1e-2),
    steps=2000,
    batch=0.1,
    key=jax.random.key(1),
)
image = result.model.render_image(target.shape[:2])  # (H, W, 3)
print(dp.psnr(image, target), result.losses[-1], result.seconds)
print(f"wall time including imports: {time.perf_counter() - start:.1f} s")
