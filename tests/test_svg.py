"""SVG export: structure, and agreement with the renderer through an independent rasteriser."""

import io
import re
import xml.etree.ElementTree as ET

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
import resvg_py
from PIL import Image

import diffprims as dp

from .helpers import shape_types

SHAPE_TYPES = shape_types()
SVG = "{http://www.w3.org/2000/svg}"


def rasterise(svg: str) -> np.ndarray:
    """The SVG drawn by resvg (a renderer independent of diffprims), as (H, W, 3) floats."""
    png = bytes(resvg_py.svg_to_bytes(svg_string=svg))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255.0


@pytest.fixture(scope="module")
def demo_fit():
    """Circles fitted to the demo photo (small and short, but a real fit)."""
    target = dp.load_image(dp.demo_image_path(), size=48)
    model = dp.Circles.init(40, key=jax.random.key(0), target=target)
    result = dp.fit(
        model, target, steps=80, batch=0.25, key=jax.random.key(1), optimizer=optax.adam(2e-2)
    )
    return result.model, target


@pytest.mark.parametrize("shape", [(48, 48), (40, 72)])
def test_svg_matches_render_image(demo_fit, shape):
    model, _ = demo_fit
    drawn = rasterise(dp.to_svg(model, shape))
    assert drawn.shape == (*shape, 3)
    assert float(dp.psnr(drawn, model.render_image(shape))) >= 35.0


def test_hard_edges_are_sharper(demo_fit):
    model, _ = demo_fit
    soft = dp.to_svg(model, (48, 48))
    hard = dp.to_svg(model, (48, 48), soft_edges=False)
    assert len(hard) < len(soft)
    reference = model.render_image((48, 48))
    assert dp.psnr(rasterise(hard), reference) < dp.psnr(rasterise(soft), reference)


@pytest.mark.parametrize("cls", SHAPE_TYPES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("soft_edges", [True, False])
def test_every_shape_type_exports(cls, soft_edges):
    model = cls.init(7, key=jax.random.key(3), aspect=1.5)
    svg = dp.to_svg(model, (32, 48), soft_edges=soft_edges)
    root = ET.fromstring(svg)
    assert root.get("viewBox") == "0 0 1.5 1"
    assert (root.get("width"), root.get("height")) == ("48", "32")
    groups = root.findall(f"{SVG}g")
    assert len(groups) == 7
    opacities = np.asarray(model.opacities)
    colours = np.round(np.asarray(model.colours) * 255).astype(int)
    for group, opacity, colour in zip(groups, opacities, colours, strict=True):
        assert float(group.get("opacity")) == pytest.approx(opacity, abs=1e-3)
        assert group.get("fill") == "#{:02x}{:02x}{:02x}".format(*colour)
    background = np.round(np.asarray(model.background) * 255).astype(int)
    assert root.find(f"{SVG}rect").get("fill") == "#{:02x}{:02x}{:02x}".format(*background)
    drawn = rasterise(svg)
    assert drawn.shape == (32, 48, 3)
    # Soft edges about 51 to 53 dB from the model (non-circles about 41 with the blur they
    # had before their grown outlines) and hard edges sharper than the model (about 39
    # dB); a Gaussian has no edge and its gradient samples the model's profile (about 53
    # dB; 37 dB when the gradient was placed twice, off the blob).
    floor = 45.0 if cls is dp.Gaussians or soft_edges else 35.0
    assert float(dp.psnr(drawn, model.render_image((32, 48)))) > floor


@pytest.mark.parametrize("cls", [dp.Ellipses, dp.Rectangles], ids=lambda c: c.__name__)
def test_rotated_soft_shapes_at_the_canvas_edge_are_not_cut_off(cls):
    # The soft-edge filter sat on the rotated element, and its canvas-sized region turned
    # with it: a long shape turned upright by the left edge lost its top (rows 44-63
    # drawn of 29-63; the command line's result.svg at 29.7 dB of its result.png). Here
    # 25.0 and 26.9 dB before, 31.8 and 31.2 after (thin edges are approximated).
    centres = np.array([[0.05, 0.9], [0.05, 0.3], [1.45, 0.5], [0.7, 0.05]])
    sizes = np.array([[0.45, 0.15], [0.3, 0.15], [0.4, 0.15], [0.15, 0.4]])
    angles = np.array([np.pi / 2, np.pi / 2 - 0.3, np.pi / 2 + 0.2, np.pi / 2])
    colours = np.eye(3)[[0, 1, 2, 0]]
    model = cls.from_values(centres, sizes, angles, colours, np.ones(4), background=1.0)
    drawn = rasterise(dp.to_svg(model, (32, 48)))
    assert float(dp.psnr(drawn, model.render_image((32, 48)))) > 29.0


def test_background_and_opacity_only():
    # One nearly transparent circle over a fixed background: the SVG is the background.
    model = dp.Circles.from_values(
        [[0.5, 0.5]], [0.3], [[1.0, 0.0, 0.0]], [0.0], background=[0.2, 0.4, 0.6]
    )
    drawn = rasterise(dp.to_svg(model, (16, 16)))
    np.testing.assert_allclose(drawn, np.broadcast_to([0.2, 0.4, 0.6], drawn.shape), atol=1 / 255)


def test_resolution_independent(demo_fit):
    # The same file drawn at twice the size matches the model rendered at that size,
    # once the edges (fixed in frame units) are widened to match.
    model, _ = demo_fit
    svg = dp.to_svg(model, (48, 48))
    large = rasterise(svg.replace('width="48" height="48"', 'width="96" height="96"', 1))
    wide = type(model)(**{**vars(model), "softness": 2 * model.softness})
    assert float(dp.psnr(large, wide.render_image((96, 96)))) >= 35.0


def test_compositing_modes():
    model = dp.Circles.init(6, key=jax.random.key(2), compositing="depth")
    depths = np.asarray(model.depths)
    # It says that the SVG is not its render (a fitted painting 17 dB from it).
    with pytest.warns(UserWarning, match=r'compositing="depth" "over".*with_compositing'):
        svg = dp.to_svg(model, (16, 16))
    fills = [g.get("fill") for g in ET.fromstring(svg).findall(f"{SVG}g")]
    colours = np.round(np.asarray(model.colours) * 255).astype(int)
    expected = ["#{:02x}{:02x}{:02x}".format(*colours[i]) for i in np.argsort(depths)]
    assert fills == expected  # nearest drawn last
    with pytest.raises(ValueError, match="additive"):
        dp.to_svg(model.with_compositing("additive"), (16, 16))
    # The "over" set the warning points to is drawn without one, in the depths' order.
    over = dp.to_svg(model.with_compositing("over"), (16, 16))
    assert [g.get("fill") for g in ET.fromstring(over).findall(f"{SVG}g")] == expected


def test_grey_model():
    model = dp.Circles.init(5, key=jax.random.key(0), channels=1)
    drawn = rasterise(dp.to_svg(model, (24, 24)))
    grey = np.asarray(model.render_image((24, 24)))
    assert float(dp.psnr(drawn, np.repeat(grey, 3, axis=-1))) >= 35.0


def test_save_svg_atomic(tmp_path, demo_fit):
    model, _ = demo_fit
    path = dp.save_svg(tmp_path / "sub" / "a.svg", model, (48, 48))
    assert path.read_text() == dp.to_svg(model, (48, 48))
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.svg"]
    with pytest.raises(ValueError, match=r"end in \.svg.*'\.png'.*save_image"):
        dp.save_svg(tmp_path / "sub" / "b.png", model, (48, 48))
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.svg"]


def test_errors():
    model = dp.Circles.init(3, key=jax.random.key(0))
    with pytest.raises(TypeError, match="shape set"):
        dp.to_svg(object(), (8, 8))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        dp.to_svg(model, (8,))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="4 channels. Export a model of 1 or 3 channels"):
        dp.to_svg(dp.Circles.init(3, key=jax.random.key(0), channels=4), (8, 8))
    # A list of sets was printed value by value; it says to stack them instead.
    with pytest.raises(TypeError, match=r"got a list \(for several shape sets, pass `dp.Layers"):
        dp.to_svg([model, model], (8, 8))  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda m: len(dp.to_svg(m, (8, 8))))(model)
    # A string counted as true: "no" drew soft edges.
    with pytest.raises(TypeError, match=r"`soft_edges` must be True or False; got str 'no'"):
        dp.to_svg(model, (8, 8), soft_edges="no")  # pyright: ignore[reportArgumentType]


class UseCircles(dp.Circles):
    """Circles drawn through `<defs>` and `<use>`, the references written every way SVG
    allows: `href` and `xlink:href`, `url(#...)`, double and single quotes."""

    def svg_geometry(self, edge_width):
        out = []
        for index, circle in enumerate(dp.Circles.svg_geometry(self, 0.0)):
            q, other = ("'", '"') if index % 2 else ('"', "'")
            href = "xlink:href" if index % 3 else "href"
            soft = f" filter={other}url({q}#soft-edge{q}){other}" if edge_width > 0 else ""
            circle = circle.replace("<circle", f"<circle id={q}c{index}{q}")
            out.append(f"<defs>{circle}</defs><use {href}={q}#c{index}{q}{soft}/>")
        return out


def test_layers_keep_every_reference_of_a_shape_to_its_own_ids():
    # Ids were made unique per layer, but only `id="` and `url(#` were rewritten: a
    # `<use href="#c0">` pointed at no id (nothing drawn), and `id='c1'` (not renamed)
    # was defined in both layers, so the second layer drew the first one's circle.
    def layers(cls):
        return dp.Layers([cls.init(6, key=jax.random.key(k)) for k in range(2)])

    for soft_edges in (False, True):
        svg = dp.to_svg(layers(UseCircles), (32, 32), soft_edges=soft_edges)
        ET.fromstring(svg)  # well formed: `xlink:` is declared
        ids = re.findall(r"""\bid\s*=\s*["']([\w.-]+)""", svg)
        references = re.findall(r"""(?:href\s*=\s*["']|url\(["']?)#([\w.-]+)""", svg)
        assert len(ids) == len(set(ids))
        assert len(references) == 12 * (1 + soft_edges) and set(references) <= set(ids)
    drawn = rasterise(dp.to_svg(layers(UseCircles), (32, 32), soft_edges=False))
    plain = rasterise(dp.to_svg(layers(dp.Circles), (32, 32), soft_edges=False))
    np.testing.assert_array_equal(drawn, plain)


# The shape types that draw soft SVG edges as outlines grown by a range of distances.
GROWN_TYPES = [dp.Triangles, dp.Rectangles, dp.Ellipses]


def _small_thin_set(cls, softness, rng):
    """60 small, thin shapes of `cls` (1 to 8 pixels at 40 x 64, slivers for triangles),
    as a fit leaves them on a small image: where a blurred hard outline was far off."""
    n, pixel = 60, 1.0 / 40
    centres = rng.uniform([0.1, 0.1], [1.5, 0.9], (n, 2))
    colours, opacities = rng.uniform(0, 1, (n, 3)), rng.uniform(0.5, 1, n)
    options = dict(background=0.5, softness=softness)
    if cls is dp.Triangles:
        vertices = centres[:, None] + rng.normal(0, 3 * pixel, (n, 3, 2)) * [1.0, 0.3]
        return cls.from_values(vertices, colours, opacities, **options)
    sizes = rng.uniform(0.5, 4, (n, 2)) * pixel * [1.0, 0.4]
    return cls.from_values(centres, sizes, rng.uniform(0, np.pi, n), colours, opacities, **options)


@pytest.mark.parametrize(
    "cls", [dp.Triangles, dp.Rectangles, dp.Ellipses], ids=lambda c: c.__name__
)
@pytest.mark.parametrize("softness", [0.5, 3.0])
def test_soft_edges_of_small_thin_shapes_match_the_model(cls, softness):
    # A Gaussian blur of the hard outline stood in for the soft edge: it rounds corners and
    # dims shapes a few edge widths across. Here 27 to 33 dB at softness 0.5 and 16 to 21
    # at 3 with the blur; 38 to 43 with the shapes' grown outlines (`svg_soft_edge`).
    model = _small_thin_set(cls, softness, np.random.default_rng(0))
    svg = dp.to_svg(model, (40, 64))
    assert "<filter" not in svg  # no shape uses the blur: it is not defined
    assert float(dp.psnr(rasterise(svg), model.render_image((40, 64)))) >= 35.0


def test_svg_soft_edge_stacks_outlines_to_the_sigmoid():
    def square(offset):  # a square of half-size 0.25 grown by `offset` (sharp corners)
        half = 0.25 + offset
        if half <= 0:
            return None
        return f'<rect x="{0.5 - half}" y="{0.5 - half}" width="{2 * half}" height="{2 * half}"/>'

    width = 0.01
    stacked = dp.svg_soft_edge(square, width, 0.5)  # half a pixel: a width apart
    opacities = [float(o) for o in re.findall(r'opacity="([\d.]+)"', stacked)]
    offsets = np.linspace(-4, 4, len(opacities))  # in edge widths
    assert len(opacities) == 9 and all(0 < o <= 1 for o in opacities)
    # Drawn one over another, the outlines a point lies in give it the sigmoid of the
    # middle of its distance band: 1 - prod(1 - opacity) over the outlines around it; the
    # inside of the innermost is covered (0.99 left every shape see-through).
    covered = 1 - np.cumprod((1 - np.asarray(opacities))[::-1])[::-1]
    middle = offsets - (offsets[1] - offsets[0]) / 2
    np.testing.assert_allclose(covered[1:], 1 / (1 + np.exp(middle[1:])), atol=1e-4)
    assert opacities[0] == 1.0
    # Outlines that vanish are left out; markup of several elements is grouped.
    assert dp.svg_soft_edge(lambda t: None if t < 0 else square(t), width, 0.5).count("<rect") == 5
    grouped = dp.svg_soft_edge(lambda t: f"{square(t)}{square(t)}", width, 0.5)
    # Wide edges (3 pixels): outlines half a width apart; under 0.175 pixels, the outline.
    assert dp.svg_soft_edge(square, width, 3.0).count("<rect") == 17
    assert dp.svg_soft_edge(square, width, 0.1) == square(0.0)[:-2] + ' opacity="1.0000"/>'
    assert grouped.count("<g opacity=") == 9 and grouped.count("<rect") == 18
    # An outline with its own opacity keeps it, the outline's inside a group's.
    faded = dp.svg_soft_edge(lambda t: square(t)[:-2] + ' opacity="0.5"/>', width, 0.5)
    assert faded.count("<g opacity=") == 9 and faded.count('opacity="0.5"') == 9
    ET.fromstring(f"<svg>{faded}</svg>")
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"`edge_width` must be a finite number > 0.0"):
            dp.svg_soft_edge(square, bad, 0.5)
        with pytest.raises(ValueError, match=r"`softness` must be a finite number > 0.0"):
            dp.svg_soft_edge(square, width, bad)
    for bad in (True, "0.01", None):
        with pytest.raises(TypeError, match="`edge_width` must be a finite number"):
            dp.svg_soft_edge(square, bad, 0.5)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("cls", GROWN_TYPES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("soft_edges", [True, False])
def test_shapes_of_size_zero_export(cls, soft_edges):
    # A size that underflowed to 0 (a stored log size below about -104): hard edges
    # raised a bare AssertionError, an ellipse's soft edge wrote "nan" coordinates.
    model = cls.init(3, key=jax.random.key(0), softness=1.0)
    field = "raw_vertices" if cls is dp.Triangles else "raw_half_sizes"
    field = "raw_radii" if cls is dp.Ellipses else field
    value = getattr(model, field)
    if cls is dp.Triangles:  # every vertex of the first triangle at one point
        value = value.at[0].set(value[0, 0])
    else:
        value = value.at[0].set(-200.0)
    model = eqx.tree_at(lambda m: getattr(m, field), model, value)
    svg = dp.to_svg(model, (32, 32), soft_edges=soft_edges)
    assert "nan" not in svg and len(ET.fromstring(svg).findall(f"{SVG}g")) == 3
    assert float(dp.psnr(rasterise(svg), model.render_image((32, 32)))) > 35.0


def test_large_and_long_shapes_keep_their_inside_and_tips():
    # The innermost outline had the sigmoid's 0.99: every shape's inside showed the
    # background through (a black square over white at 4/255: 36 dB). A thin ellipse
    # grown far past its short radius had its tips drawn pointed (33 dB).
    black, one = np.zeros((1, 3)), np.ones(1)
    square = dp.Rectangles.from_values([[0.5, 0.5]], [[2.0, 2.0]], [0.0], black, one,
                                       background=1.0, softness=1.0)  # fmt: skip
    drawn = rasterise(dp.to_svg(square, (16, 16)))
    np.testing.assert_allclose(drawn, 0.0, atol=0.5 / 255)
    thin = dp.Ellipses.from_values([[0.5, 0.5]], [[0.35, 0.01]], [0.0], black, one,
                                   background=1.0, softness=1.0)  # fmt: skip
    drawn = rasterise(dp.to_svg(thin, (128, 128)))
    assert float(dp.psnr(drawn, thin.render_image((128, 128)))) > 40.0
