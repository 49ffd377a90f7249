"""SVG export of shape sets: resolution-independent vector files."""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

from .._files import atomic_write, check_suffix
from .._model import check_unbatched
from .._validate import check_bool, check_grid_shape, describe, is_traced
from ._base import AbstractShapes
from ._layers import Layers, flatten_layers, naming_layer
from ._protocol import svg_geometry as checked_svg_geometry

# A sigmoid edge `sigmoid(-d / w)` is drawn as a hard edge blurred by a Gaussian of this
# many edge widths: 4 / sqrt(2 pi) matches the two profiles' slopes at the boundary, and
# the largest difference between them is then below 0.02 of the colour step.
_BLUR_PER_EDGE_WIDTH = 4.0 / math.sqrt(2.0 * math.pi)


# An id, and each local reference to one: `href`/`xlink:href="#..."` and `url(#...)`, the
# values in double or single quotes (or none, in `url()`); ends where the name begins.
_ID_OR_REFERENCE = re.compile(
    r"""(?<![\w.-])id\s*=\s*["']|(?<![\w.-])href\s*=\s*["']\s*#|url\(\s*["']?\s*#"""
)


def _hex(colour: np.ndarray) -> str:
    values = np.round(np.clip(colour, 0.0, 1.0) * 255.0).astype(int)
    if values.shape == (1,):
        values = np.repeat(values, 3)
    return "#{:02x}{:02x}{:02x}".format(*values)


def to_svg(
    model: AbstractShapes | Layers, shape: tuple[int, ...], *, soft_edges: bool = True
) -> str:
    """The shape set as an SVG document (a string).

    The SVG's `viewBox` is the diffprims frame (`0 0 W/H 1`), so it is resolution
    independent: `shape` only sets its nominal pixel size (`width`/`height`) and the
    width of the soft edges. It holds the background as a rectangle, then one group per
    shape, back to front, with the shape's colour and opacity. Sets with
    `compositing="depth"` are drawn nearest last (an approximation of the soft depth
    blend); additive sets cannot be exported.

    Soft edges are drawn as the model draws them, nearly: circles with a radial gradient
    whose stops sample the model's edge `sigmoid(-d / w)` (`w = softness / H`), linear
    between stops; Gaussians, which have no edge, with a radial gradient sampling their
    profile; triangles, rectangles and ellipses as nested outlines half a pixel or half
    an edge width apart, each the shape grown by a distance and faintly filled
    ([`diffprims.svg_soft_edge`][]). Rasterised at `shape` by an SVG renderer (resvg),
    fitted sets match `model.render_image(shape)` to about 40 dB PSNR or better (circles
    about 50, Gaussians 45; triangles, rectangles and ellipses 41 to 56 with the default
    half-pixel edges, 37 to 41 with 3-pixel edges), in 1 to 2 KB a shape (up to 4 for
    thin ellipses with wide edges). A shape type of your own that uses the
    blur filter (see [`diffprims.AbstractShapes.svg_geometry`][]) is close for shapes
    many edge widths across, and rounds corners off. A depth set matches least, with a
    warning: it is drawn nearest last, "over", which its soft z-buffer is not (see
    [`diffprims.AbstractShapes`][]; a fitted painting 17 dB from its render). Drawn
    larger, the edges keep their width in frame units.

    **Arguments:**

    - `model`: any [`diffprims.AbstractShapes`][] (circles, your own shape type) with
      1 (grey) or 3 (RGB) channels.
    - `shape`: the nominal `(H, W)` in pixels; use the shape of the image it was fitted
      to (or any other: the frame keeps its aspect ratio).
    - `soft_edges`: `False` draws hard (anti-aliased) edges, one outline a shape:
      smaller and faster to draw, but sharper than the model renders (31 to 39 dB from
      it at half-pixel edges on sets of shapes a few pixels or more across; a painting
      full of shapes under a pixel or two, or with wider edges, less: 23 dB at 64 x 64).

    **Returns:**

    The SVG document as a `str`.

    ```python
    svg = dp.to_svg(result.model, target.shape[:2])
    Path("result.svg").write_text(svg)
    ```
    """
    if not isinstance(model, AbstractShapes | Layers):
        got = describe(model)  # a module's or a list's repr would be its every value
        if isinstance(model, list | tuple):
            got = f"a {type(model).__name__} (for several shape sets, pass `dp.Layers(sets)`)"
        elif isinstance(model, eqx.Module):
            got = f"a {type(model).__name__}, not a shape set"
        raise TypeError(
            f"`to_svg` needs a shape set such as `dp.Circles` or `dp.Layers`; got {got}."
        )
    check_unbatched(model, "to_svg", mappable=False)
    height, width = check_grid_shape(shape)
    soft_edges = check_bool(soft_edges, "soft_edges")
    layers = flatten_layers(model)
    for index, layer in enumerate(layers):
        with naming_layer(index, len(layers)):
            _check_exportable(layer)
    if any(layer.compositing == "depth" for layer in layers):
        warnings.warn(_DEPTH_WARNING, stacklevel=2)
    aspect = width / height
    lines = [
        # `xlink:` for shapes that reference their defs the SVG 1.1 way (`xlink:href`).
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="0 0 {aspect:.6g} 1">',
        # Gradient stops take the colour of the shape's group (see `svg_geometry`).
        "<style>stop { stop-color: currentColor; }</style>",
    ]
    background = np.asarray(layers[0].background, dtype=np.float64)
    groups = []
    for index, layer in enumerate(layers):
        # Ids (gradients, the soft-edge filter) are made unique per layer.
        prefix = f"layer{index}-" if len(layers) > 1 else ""
        edge_width = layer.softness / height if soft_edges else 0.0
        drawn = _shape_groups(layer, edge_width, prefix)
        # The blur filter, where a shape uses it (`url(#soft-edge)`, quoted or not).
        if soft_edges and any(f"#{prefix}soft-edge" in group for group in drawn):
            lines.append(_soft_edge_filter(prefix, edge_width, aspect))
        groups += drawn
    lines.append(f'<rect x="0" y="0" width="{aspect:.6g}" height="1" fill="{_hex(background)}"/>')
    lines += groups
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


#: A fitted painting of 40 depth circles came out 17 dB from its render (16 dB from the
#: photo it was fitted to); "over" sets 40 dB or more.
_DEPTH_WARNING = (
    'An SVG draws a set with compositing="depth" "over", nearest last, which its soft '
    "z-buffer render is not where shapes overlap: the SVG can be far from the render. "
    'For a faithful SVG, export `model.with_compositing("over")` after a short `fit` '
    "of it (it keeps the order the depths found)."
)


def _check_exportable(model: AbstractShapes) -> None:
    if model.num_channels not in (1, 3):
        raise ValueError(
            f"SVG holds grey or RGB colours; the model has {model.num_channels} channels. "
            "Export a model of 1 or 3 channels, or save a raster, "
            "`dp.save_image(path, model.render_image(shape))`."
        )
    mode = model.compositing
    if mode not in ("over", "depth"):
        raise ValueError(
            f"SVG export draws shapes one over another; a set with compositing={mode!r} "
            'cannot be drawn that way. Export a set with compositing="over" or "depth".'
        )
    if any(is_traced(leaf) for leaf in _array_leaves(model)):
        raise TypeError("`to_svg` needs a concrete model, not one traced under jit/vmap.")
    for leaf in _array_leaves(model):
        values = np.asarray(leaf)
        if np.issubdtype(values.dtype, np.inexact) and not np.all(np.isfinite(values)):
            raise ValueError(
                "`to_svg` needs a model with finite parameters; got "
                f"{int(np.sum(~np.isfinite(values)))} NaN/inf value(s) in a "
                f"{describe(leaf)}. Export the last finite model (`error.result.model`)."
            )


def _soft_edge_filter(prefix: str, edge_width: float, aspect: float) -> str:
    sigma = _BLUR_PER_EDGE_WIDTH * edge_width
    # The filter region spans the canvas plus a margin: a shape blurred inside a
    # region that ended at the canvas edge would fade towards that edge.
    margin = 6.0 * sigma
    return (
        f'<defs><filter id="{prefix}soft-edge" filterUnits="userSpaceOnUse" '
        f'x="{-margin:.6g}" y="{-margin:.6g}" width="{aspect + 2 * margin:.6g}" '
        f'height="{1 + 2 * margin:.6g}" color-interpolation-filters="sRGB">'
        f'<feGaussianBlur stdDeviation="{sigma:.6g}"/></filter></defs>'
    )


def _shape_groups(model: AbstractShapes, edge_width: float, prefix: str) -> list[str]:
    """One `<g>` per shape, back to front, with its colour and opacity."""
    colours = np.asarray(model.colours, dtype=np.float64)
    opacities = np.asarray(model.opacities, dtype=np.float64)
    elements = checked_svg_geometry(model, edge_width)
    if prefix:
        elements = [_ID_OR_REFERENCE.sub(lambda m: m.group(0) + prefix, e) for e in elements]
    # "depth" compositing blends by soft depth; drawing nearest last approximates it.
    if model.compositing == "depth":
        order = np.argsort(np.asarray(model.depths), kind="stable")
        elements = [elements[i] for i in order]
        colours, opacities = colours[order], opacities[order]
    groups = []
    for element, colour, opacity in zip(elements, colours, opacities, strict=True):
        hex_colour = _hex(colour)
        groups.append(
            f'<g fill="{hex_colour}" color="{hex_colour}" opacity="{opacity:.4g}">{element}</g>'
        )
    return groups


def save_svg(
    path: str | os.PathLike[str],
    model: AbstractShapes | Layers,
    shape: tuple[int, ...],
    *,
    soft_edges: bool = True,
) -> Path:
    """Write [`diffprims.to_svg`][]`(model, shape, soft_edges=soft_edges)` to `path`
    atomically.

    `path` must end in `.svg` (any case): another suffix raises a `ValueError` rather
    than an SVG under a raster's name.

    **Returns:**

    The path written.
    """
    check_suffix(
        path,
        ".svg",
        "save_svg",
        "for a raster write `dp.save_image(path, model.render_image(shape))`",
    )
    text = to_svg(model, shape, soft_edges=soft_edges)
    return atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def _array_leaves(model: Any) -> list[Any]:
    import jax

    return [leaf for leaf in jax.tree.leaves(model) if eqx.is_array(leaf)]
