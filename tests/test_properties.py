"""Property tests (hypothesis): invariants that must hold for random sets, losses, files.

Shape types, losses and render methods are found by introspection, so new ones are
covered. Examples are small (few shapes, few pixels) and few (`max_examples=20`).
"""

from __future__ import annotations

import inspect
import io
import xml.etree.ElementTree as ElementTree

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import diffprims as dp

from .helpers import shape_types

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)
SHAPE_TYPES = shape_types()
ids = [cls.__name__ for cls in SHAPE_TYPES]


def render_methods() -> list[str | None]:
    """Every rendering algorithm `render` offers (None: the default call)."""
    if "method" not in inspect.signature(dp.AbstractShapes.render).parameters:
        return [None]
    from diffprims._shapes import _render

    return list(getattr(_render, "METHODS", (None,)))


MAX_SHAPES = 9


def random_set(cls, seed: int, n: int, compositing: str = "over", *, pad: bool = False):
    """A random set of `n` shapes: random geometry, colours, opacities and background.

    With `pad`, the set always holds `MAX_SHAPES` shapes, those past `n` invisible
    (opacity 0): the same array shapes for every `n`, so one compilation serves all.
    """
    total = MAX_SHAPES if pad else n
    k_init, k_colour, k_opacity, k_background, k_order = jax.random.split(jax.random.key(seed), 5)
    model = cls.init(total, key=k_init, size_range=(0.05, 0.4))
    raw_opacities = jax.random.normal(k_opacity, model.raw_opacities.shape)
    raw_opacities = jnp.where(jnp.arange(total) < n, raw_opacities, -1e4)
    model = eqx.tree_at(
        lambda m: (m.raw_colours, m.raw_opacities, m.raw_background),
        model,
        (
            jax.random.normal(k_colour, model.raw_colours.shape),
            raw_opacities,
            jax.random.normal(k_background, model.raw_background.shape),
        ),
    )
    if compositing != "over":
        model = model.with_compositing(compositing)
    return model.take(jax.random.permutation(k_order, total))  # a random depth order


def naive(model, points, pixel_size, mode="over"):
    """The reference loop, in float64 NumPy."""
    alphas = np.asarray(model.alphas(points, pixel_size=pixel_size), np.float64)
    colours = np.asarray(model.colours, np.float64)
    image = np.broadcast_to(
        np.asarray(model.background, np.float64), (points.shape[0], colours.shape[1])
    ).copy()
    for alpha, colour in zip(alphas, colours, strict=True):
        if mode == "over":
            image = (1.0 - alpha[:, None]) * image + alpha[:, None] * colour
        else:  # additive
            image = image + alpha[:, None] * colour
    return image


seeds = st.integers(0, 2**16)
counts = st.integers(1, MAX_SHAPES)


@eqx.filter_jit
def _render(model, points, pixel_size, method):
    # Compiled once per shape type and method: examples differ in values only.
    kwargs = {} if method is None else {"method": method}
    return model.render(points, pixel_size=pixel_size, **kwargs)


_render_image = eqx.filter_jit(lambda model, shape: model.render_image(shape))


def _check_against_naive(cls, mode, method, seed, n):
    model = random_set(cls, seed, n, mode, pad=True)
    points = jax.random.uniform(jax.random.key(seed + 1), (40, 2), minval=-0.1, maxval=1.1)
    pixel_size = 1.0 / 32
    got = np.asarray(_render(model, points, pixel_size, method))
    np.testing.assert_allclose(got, naive(model, points, pixel_size, mode), atol=2e-5)


@pytest.mark.parametrize("method", render_methods(), ids=str)
@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=ids)
@SETTINGS
@given(seed=seeds, n=counts)
def test_over_compositing_matches_naive_loop(cls, method, seed, n):
    _check_against_naive(cls, "over", method, seed, n)


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=ids)
@SETTINGS
@given(seed=seeds, n=counts)
def test_additive_compositing_matches_naive_loop(cls, seed, n):
    _check_against_naive(cls, "additive", None, seed, n)


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=ids)
@SETTINGS
@given(seed=seeds, n=counts)
def test_depth_compositing_is_order_independent(cls, seed, n):
    model = random_set(cls, seed, n, "depth", pad=True)
    points = dp.pixel_centres((6, 6)).reshape(-1, 2)
    shuffled = model.take(jax.random.permutation(jax.random.key(seed + 2), MAX_SHAPES))
    np.testing.assert_allclose(
        _render(model, points, 1 / 6, None), _render(shuffled, points, 1 / 6, None), atol=2e-5
    )


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=ids)
@SETTINGS
@given(seed=seeds, n=counts, size=st.sampled_from([(1, 1), (3, 7), (8, 5)]))
def test_render_image_is_render_on_pixel_centres(cls, seed, n, size):
    height, width = size
    model = random_set(cls, seed, n, pad=True)
    image = _render_image(model, (height, width))
    assert image.shape == (height, width, model.num_channels)
    points = dp.pixel_centres((height, width)).reshape(-1, 2)
    # Pixel (i, j) has centre ((j + 1/2) / H, (i + 1/2) / H).
    i, j = seed % height, (seed // 7) % width
    np.testing.assert_allclose(points[i * width + j], [(j + 0.5) / height, (i + 0.5) / height])
    flat = _render(model, points, 1.0 / height, None)
    np.testing.assert_allclose(image, flat.reshape(height, width, -1), atol=2e-6)


# -- losses: linear algebra --------------------------------------------------------------


def _losses(size: int) -> list[dp.AbstractLoss]:
    out = []
    for name in sorted(dir(dp)):
        cls = getattr(dp, name)
        if not (isinstance(cls, type) and issubclass(cls, dp.AbstractLoss)):
            continue
        if inspect.isabstract(cls) or cls in (dp.Sum, dp.Scaled):
            continue
        if cls is dp.Weighted:
            out.append(
                dp.Weighted(dp.L1(), jnp.linspace(0.0, 3.0, size * size).reshape(size, size))
            )
            continue
        if cls is dp.Loss:  # a plain function, wrapped
            out.append(dp.Loss(lambda pred, target: jnp.mean((pred - target) ** 2 * 0.5)))
            continue
        params = inspect.signature(cls).parameters
        out.append(cls(**({"filter_size": 3} if "filter_size" in params else {})))
    return out


LOSSES = _losses(6)
loss_index = st.integers(0, len(LOSSES) - 1)
weights = st.floats(-4.0, 4.0, allow_nan=False, width=32)


@SETTINGS
@given(i=loss_index, j=loss_index, a=weights, b=weights, seed=seeds)
def test_loss_algebra_is_linear(i, j, a, b, seed):
    f, g = LOSSES[i], LOSSES[j]
    k1, k2 = jax.random.split(jax.random.key(seed))
    pred = jax.random.uniform(k1, (6, 6, 3), minval=-0.2, maxval=1.2)
    target = jnp.where(
        jax.random.uniform(k2, (6, 6, 3)) < 0.3, 0.0, jax.random.uniform(k2, (6, 6, 3))
    )
    fv, gv = float(f(pred, target)), float(g(pred, target))
    tol = dict(rel=1e-5, abs=1e-5)
    assert float((a * f + b * g)(pred, target)) == pytest.approx(a * fv + b * gv, **tol)
    assert float((f - g)(pred, target)) == pytest.approx(fv - gv, **tol)
    assert float((f + g)(pred, target)) == pytest.approx(float((g + f)(pred, target)), **tol)
    assert float(sum([f, g, f])(pred, target)) == pytest.approx(2 * fv + gv, **tol)
    if b != 0:
        assert float((f / b)(pred, target)) == pytest.approx(fv / b, **tol)
    assert float((-f)(pred, target)) == pytest.approx(-fv, **tol)
    # A plain function joins a sum as a loss.
    plain = lambda p, t: jnp.mean(p * t)  # noqa: E731
    assert float((f + plain)(pred, target)) == pytest.approx(
        fv + float(plain(pred, target)), **tol
    )
    # Gradients are linear too.
    grad = jax.grad(lambda p: (a * f + b * g)(p, target))(pred)
    expected = a * jax.grad(lambda p: f(p, target))(pred) + b * jax.grad(lambda p: g(p, target))(
        pred
    )
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


# -- files: save/load, SVG and checkpoints round trip -------------------------------------


def _same_model(a, b):
    assert type(a) is type(b)
    leaves_a, def_a = jax.tree.flatten(a)
    leaves_b, def_b = jax.tree.flatten(b)
    assert def_a == def_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=ids)
@SETTINGS
@given(seed=seeds, n=st.sampled_from([1, 4]), mode=st.sampled_from(["over", "additive", "depth"]))
def test_save_load_round_trip(tmp_path_factory, cls, seed, n, mode):
    model = random_set(cls, seed, n, mode)
    path = tmp_path_factory.mktemp("model") / "model.eqx"
    dp.save(path, model)
    _same_model(dp.load(path), model)


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=ids)
@SETTINGS
@given(
    seed=seeds,
    n=st.sampled_from([1, 4]),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    soft=st.booleans(),
)
def test_svg_structure_round_trip(cls, seed, n, height, width, soft):
    model = random_set(cls, seed, n)
    svg = dp.to_svg(model, (height, width), soft_edges=soft)
    root = ElementTree.fromstring(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    assert (root.get("width"), root.get("height")) == (str(width), str(height))
    view_box = [float(v) for v in root.get("viewBox").split()]
    assert view_box == pytest.approx([0, 0, width / height, 1], abs=1e-5)
    groups = root.findall(f"{ns}g")
    assert len(groups) == n  # one group per shape, back to front

    def rgb(hex_colour):
        return [int(hex_colour[k : k + 2], 16) / 255 for k in (1, 3, 5)]

    colours = np.asarray(model.colours)
    opacities = np.asarray(model.opacities)
    for group, colour, opacity in zip(groups, colours, opacities, strict=True):
        np.testing.assert_allclose(rgb(group.get("fill")), colour, atol=0.5 / 255 + 1e-6)
        assert float(group.get("opacity")) == pytest.approx(float(opacity), abs=1e-3)


def test_svg_raster_round_trip():
    resvg = pytest.importorskip("resvg_py")
    from PIL import Image

    @SETTINGS
    @given(seed=seeds, n=st.sampled_from([1, 3, 6]))
    def check(seed, n):
        model = random_set(dp.Circles, seed, n)
        png = bytes(resvg.svg_to_bytes(svg_string=dp.to_svg(model, (32, 32))))
        drawn = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255
        assert float(dp.psnr(drawn, model.render_image((32, 32)))) >= 30.0

    check()


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=ids)
@settings(max_examples=5, deadline=None, derandomize=True)
@given(seed=seeds, n=st.sampled_from([1, 3]))
def test_checkpoint_round_trip(tmp_path_factory, cls, seed, n):
    from diffprims._fit._checkpoint import load_checkpoint, save_checkpoint

    model = random_set(cls, seed, n)
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    state = ({"count": jnp.int32(seed)}, jax.tree.map(jnp.zeros_like, params))
    losses = jax.random.uniform(jax.random.key(seed), (seed % 5,))
    key = jax.random.key(seed)
    path = tmp_path_factory.mktemp("ckpt") / "fit.ckpt"
    info = {"model": cls.__name__}
    save_checkpoint(path, params=params, opt_state=state, losses=losses, step=seed % 5,
                    key=key, fit_info=info)  # fmt: skip
    like_state = ({"count": jnp.int32(0)}, jax.tree.map(jnp.ones_like, params))
    p, s, saved, step, k, _, _ = load_checkpoint(
        path,
        params=jax.tree.map(jnp.zeros_like, params),
        opt_state=like_state,
        key=None,
        steps=10,
        fit_info=info,
    )
    _same_model(eqx.combine(p, eqx.partition(model, eqx.is_inexact_array)[1]), model)
    _same_model(s, state)
    np.testing.assert_array_equal(saved, losses)
    assert step == seed % 5
    np.testing.assert_array_equal(jax.random.key_data(k), jax.random.key_data(key))
