"""The public annotations hold for a user who type-checks their code with pyright.

One pyright run (standard mode, as most projects use it) over a user script of the
documented usages: the fitted model keeps its type, images' `shape[:2]` is a valid
render shape, NumPy arrays are accepted where arrays are, `load(like=m)` returns `m`'s
type, and `init`/`take`/`with_compositing` return the subclass they are called on. The
script is only type-checked, never run.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).parent.parent / "src"

USER_SCRIPT = '''
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray
from typing_extensions import assert_type

import diffprims as dp


class Squares(dp.AbstractShapes):
    """A user shape type, annotated as the base class is."""

    raw_centres: Float[Array, "N 2"] = dp.parameter(dp.roles.POSITION)
    raw_sizes: Float[Array, " N"] = dp.parameter(dp.roles.SIZE)

    def coverage(
        self, points: Float[Array, "P 2"], edge_width: float | Float[Array, ""]
    ) -> Float[Array, "N P"]:
        centres = dp.roles.POSITION.value(self.raw_centres)
        sizes = dp.roles.SIZE.value(self.raw_sizes)
        d = jnp.max(jnp.abs(points[None] - centres[:, None]), axis=-1) - sizes[:, None]
        return dp.soft_edge(d, edge_width)

    def bounds(self) -> Float[Array, "N 4"]:
        raise NotImplementedError

    @classmethod
    def random_geometry(
        cls, centres: Float[Array, "N 2"], sizes: Float[Array, " N"], *, key: PRNGKeyArray
    ) -> dict[str, Array]:
        return {"raw_centres": centres, "raw_sizes": sizes}

    def svg_geometry(self, edge_width: float) -> list[str]:
        raise NotImplementedError


# README: fit keeps the model's type; an image's shape[:2] renders it.
target = dp.load_image("photo.png", size=256)
model = dp.Circles.init(200, key=jax.random.key(0), target=target)
assert_type(model, dp.Circles)
result = dp.fit(model, target, loss=dp.L2(), optimizer=optax.adam(1e-2),
                steps=2000, batch=0.1, key=jax.random.key(1))
assert_type(result, dp.FitResult[dp.Circles])
assert_type(result.model, dp.Circles)
image = result.model.render_image(target.shape[:2])
assert_type(image, Array)
n: int = result.model.num_shapes
dp.save_svg("out.svg", result.model, target.shape[:2])
svg: str = dp.to_svg(result.model, target.shape[:2])
dp.save_gif(pathlib.Path("out.gif"), result.snapshots, target.shape[:2])
assert_type(result.snapshots, tuple[dp.Circles, ...])
assert_type(model.take(jnp.arange(2)), dp.Circles)
assert_type(model.with_compositing("depth"), dp.Circles)
assert_type(dp.Circles.from_values(
    jnp.zeros((2, 2)), jnp.ones(2), jnp.zeros((2, 3)), jnp.ones(2)), dp.Circles)
assert_type(model.coverage(jnp.zeros((4, 2)), 0.1), Array)

# paint returns the shape type asked for (Circles by default).
painted = dp.paint(target, 20, key=jax.random.key(2), steps=50)
assert_type(painted.model, dp.Circles)
ellipses = dp.paint(target, 20, key=jax.random.key(2), steps=50, shape=dp.Ellipses)
assert_type(ellipses.model, dp.Ellipses)

# NumPy arrays wherever the docs say "array".
np_target = np.asarray(target)
dp.fit(model, np_target, steps=5)
dp.paint(np_target, 10, key=jax.random.key(0), steps=10)
dp.Circles.init(10, key=jax.random.key(0), target=np_target)
dp.psnr(np_target, np_target)
dp.L2()(np_target, np_target)
dp.save_image("out.png", np_target)

# save/load: `like` gives the type back; paths may be pathlib.Path.
dp.save(pathlib.Path("m.eqx"), model)
assert_type(dp.load("m.eqx", like=model), dp.Circles)
dp.fit(model, target, steps=5, checkpoint=pathlib.Path("c.eqx"), resume=True)

# A user shape type: init, take and with_compositing return it.
squares = Squares.init(4, key=jax.random.key(0), target=np_target)
assert_type(squares, Squares)
assert_type(squares.take(jnp.arange(2)), Squares)
assert_type(squares.with_compositing("depth"), Squares)
assert_type(dp.fit(squares, target, steps=5).model, Squares)

# Filter banks (the filters tutorial).
kernel = dp.kernels.disk(21)
bank = dp.SeparableFilters.from_svd(kernel, rank=4)
assert_type(bank.render_image(kernel.shape[:2]), Array)
fitted = dp.fit(bank, kernel[..., None], loss=bank.recommended_loss(non_negative=3.0),
                optimizer=bank.recommended_optimizer(), steps=bank.recommended_steps).model
blurred = fitted.normalized().apply(target, border="reflect")
filtered = dp.fit(dp.Filtered(bank, target), target, steps=5).model
rank: int = filtered.bank.rank
assert_type(dp.load("b.eqx", like=fitted), dp.SeparableFilters)

# vmapped fits: `diverged` is an array of flags (a bool from `paint`).
rates = jnp.array([1e-2, 3e-2])
results = jax.vmap(lambda lr: dp.fit(bank, kernel[..., None], optimizer=optax.adam(lr)))(rates)
good = ~results.diverged
if painted.diverged:
    pass

# Losses.
loss = dp.L2() + 10.0 * dp.NonNegative() + 5.0 * dp.KeepZeros() - 0.1 * dp.SSIM()
assert_type(loss(target, target), Array)
assert_type(dp.L1().pointwise(target, target), Array)

# Signatures with no unknown parts (pyright's strict mode reports those).
reveal_type(dp.fit)
reveal_type(dp.paint)
reveal_type(dp.load)
reveal_type(dp.save)
reveal_type(dp.load_image)
reveal_type(dp.save_image)
reveal_type(dp.save_gif)
reveal_type(dp.save_svg)
reveal_type(dp.to_svg)
reveal_type(dp.Circles.init)
reveal_type(dp.AbstractShapes.from_geometry)
reveal_type(dp.SeparableFilters.render)
reveal_type(dp.SeparableFilters.render_image)
reveal_type(dp.Circles.bounds)
reveal_type(dp.Triangles.coverage)
reveal_type(results)
'''


def _pyright() -> str | None:
    here = pathlib.Path(sys.executable).parent / "pyright"
    return str(here) if here.exists() else shutil.which("pyright")


def test_documented_usage_type_checks(tmp_path):
    pyright = _pyright()
    if pyright is None:
        pytest.skip("pyright is not installed (pip install pyright)")
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    # `extraPaths`: diffprims from this checkout, installed into the interpreter or not.
    config = {"typeCheckingMode": "standard", "include": ["user.py"], "extraPaths": [str(SRC)]}
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    run = subprocess.run(
        [pyright, "--outputjson", "--pythonpath", sys.executable, "-p", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no report: {run.stdout}\n{run.stderr}")
    diagnostics = report["generalDiagnostics"]
    errors = [
        f"line {d['range']['start']['line'] + 1}: {d['message']}"
        for d in diagnostics
        if d["severity"] == "error"
    ]
    assert not errors, "\n".join(errors)
    revealed = [d["message"] for d in diagnostics if d["message"].startswith("Type of")]
    assert len(revealed) == USER_SCRIPT.count("reveal_type("), revealed
    unknown = [m for m in revealed if "Unknown" in m]
    assert not unknown, "\n".join(unknown)
