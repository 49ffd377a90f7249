"""Soft edges in SVG drawn as nested outlines, each a little further out, faintly filled.

A shape whose coverage is `sigmoid(-d / w)` of a signed distance `d` covers each point
inside its outline moved out by `d`. So a stack of outlines at offsets `t_1 < ... < t_K`
around the boundary, each drawn with its own opacity, gives every point the coverage of
its distance band: the outlines keep the shape's own corners (a sharp one stays sharp, a
sliver's faint middle stays faint), where a Gaussian blur of the hard outline rounds them
off and dims small shapes (120 fitted triangles drawn at 60 x 150 pixels: 30.9 dB from
the model with the blur, 41.4 with the outlines; 50 at `softness=3`: 13.8 and 38.6).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._validate import check_scalar

# Outlines from `-SPAN` to `SPAN` edge widths (the sigmoid is 0.982 and 0.018 there).
SPAN = 4.0
# Outlines half a pixel apart, or half an edge width for wide edges, and at most a width:
# 120 fitted triangles 41.4 dB from the model in 141 KB, 50 at softness 3 38.6 dB in 87
# KB; a sixth of a pixel or a width apart, 42.0 and 39.3 in 377 and 243 KB; a pixel or
# a width apart, 38.9 and 31.5. At softness 0.25 to 0.4, half a pixel was two edge widths
# or more (random sets 48.5 to 50.3 dB, 49.0 to 50.8 a width apart). Each outline's
# `opacity` (rather than `fill-opacity`: 39.3 and 37.2 dB, resvg) also fades a stroke.
MIN_PIXELS_APART = 0.5
PER_EDGE_WIDTH = 2.0
# Edges narrower than this many pixels are drawn as the one outline, opaque, anti-aliased
# by the renderer: random sets at softness 0.15 47.5 to 48.0 dB from the model, 46.6 to
# 48.1 with outlines; at 0.2, 47.5 to 48.3 and 48.2 to 49.3.
HARD_BELOW = 0.175


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def svg_soft_edge(
    outline: Callable[[float], str | None], edge_width: float, softness: float
) -> str:
    """One shape's soft edge in SVG, as the model draws it: outlines of the shape moved out
    (and in) by a range of distances, each filled with the opacity that gives the
    points between it and the next the coverage `sigmoid(-d / edge_width)`.

    For [`diffprims.AbstractShapes.svg_geometry`][]: a shape type that can draw itself
    grown or shrunk by a distance gets its corners and small shapes right, where the blur
    filter (`filter="url(#soft-edge)"`) rounds corners and dims shapes a few edge widths
    across. The outlines are spaced by half a pixel or half an edge width, whichever is
    more (at most a width), over four edge widths each side of the boundary (for edges
    under 0.175 pixels, only the outline itself, opaque: anti-aliasing is closer).

    **Arguments:**

    - `outline`: `outline(offset)`, the shape's outline moved out by `offset` (frame
      units; negative moves it in) as SVG markup with no `opacity`, or `None`
      where nothing is left (a shape thinner than twice `-offset`).
    - `edge_width`: the edge width `svg_geometry` was given (frame units, `> 0`).
    - `softness`: the same width in pixels of the SVG's nominal size (the set's
      `softness`).

    **Returns:**

    The outlines' elements, one string, each with its `opacity` (a fill's or a stroke's).

    ```python
    def svg_geometry(self, edge_width):
        def square(x, y, half):
            return lambda t: (None if half + t <= 0 else
                f'<rect x="{x - half - t:.6g}" y="{y - half - t:.6g}" '
                f'width="{2 * (half + t):.6g}" height="{2 * (half + t):.6g}" '
                f'rx="{max(t, 0.0):.6g}"/>')
        squares = [square(x, y, h) for (x, y), h in
                   zip(np.asarray(self.centres), np.asarray(self.halves))]
        if edge_width == 0:  # hard edges
            return [s(0.0) for s in squares]
        return [dp.svg_soft_edge(s, edge_width, self.softness) for s in squares]
    ```
    """
    parts = []
    for offset, opacity in zip(*_outlines(edge_width, softness), strict=True):
        element = outline(offset)
        if element is None:
            continue
        element = element.strip()
        single = element.count("<") == 1 and element.endswith("/>")
        if single and " opacity=" not in element:  # one element: one more attribute
            parts.append(f'{element[:-2].rstrip()} opacity="{opacity:.4f}"/>')
        else:
            parts.append(f'<g opacity="{opacity:.4f}">{element}</g>')
    return "".join(parts)


def outline_offsets(edge_width: float, softness: float) -> list[float]:
    """The offsets `svg_soft_edge(outline, edge_width, softness)` calls `outline` at, in
    order: a shape type can compute its outlines for all its shapes at once."""
    return _outlines(edge_width, softness)[0]


def _outlines(edge_width: float, softness: float) -> tuple[list[float], np.ndarray]:
    """The outlines' offsets (frame units) and opacities."""
    hint = " For hard edges (`edge_width == 0`), return the plain outline, `outline(0.0)`."
    width = float(check_scalar(edge_width, "edge_width", lower=0.0, hint=hint))
    softness = float(check_scalar(softness, "softness", lower=0.0))
    if softness < HARD_BELOW:  # a hard edge, anti-aliased by the renderer
        return [0.0], np.ones(1)
    pixels = min(max(MIN_PIXELS_APART, softness / PER_EDGE_WIDTH), softness)
    apart = pixels / softness  # in edge widths
    count = max(1, round(2 * SPAN / apart))
    offsets = np.linspace(-SPAN, SPAN, count + 1)
    # Points between outline k-1 and k get the coverage at the middle of that band, and
    # those inside the innermost full coverage (as the model: 0.99 left the whole inside
    # of every shape see-through, a large shape's 4/255 from the model)...
    covered = _sigmoid(-(offsets - SPAN / count))
    covered[0] = 1.0
    # ...which the outlines k, k+1, ... around them give when drawn one over another.
    beyond = np.append(covered[1:], 0.0)
    opacities = 1.0 - (1.0 - covered) / (1.0 - beyond)
    return [float(offset) * width for offset in offsets], opacities


def svg_polygon(points: np.ndarray) -> str:
    """An SVG `<polygon>` through `points` `(V, 2)` (frame units)."""
    return '<polygon points="' + " ".join(f"{x:.6g},{y:.6g}" for x, y in points) + '"/>'
