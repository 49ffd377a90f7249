"""Resized shapes that keep an image's aspect ratio, as far as whole pixels allow."""

from __future__ import annotations

import math

#: How far (in pixels of the new size) the far edge of a resized picture may land from
#: where the aspect ratio puts it (`faithful_shape`), and how much smaller it may be.
ASPECT_TOLERANCE, ASPECT_SEARCH = 0.02, 0.1


def faithful_shape(height: int, width: int, short_most: int) -> tuple[int, int]:
    """`(H, W)` of `height x width`'s aspect ratio with the shorter side at most
    `short_most`: the largest such side (down to 10 % less) whose longer side is within
    `ASPECT_TOLERANCE` px of a whole number, else the one nearest a whole number.

    Shapes are placed in a frame whose width is the image's W / H, so a model fitted
    to a copy whose aspect rounding changed (256 x 171 for a 3:2 photo: 1.497) draws its
    right edge off when rendered at the photo's own size (12 px at 6000 px wide); 255 x
    170 is exact."""
    short, long = sorted((height, width))
    ratio = long / short
    top = max(1, short_most)
    best, miss = top, math.inf
    for side in range(top, max(1, math.ceil(top * (1 - ASPECT_SEARCH))) - 1, -1):
        off = abs(max(1, round(side * ratio)) - side * ratio)
        if off <= ASPECT_TOLERANCE:
            best = side
            break
        if off < miss - 1e-9:
            best, miss = side, off
    other = max(1, round(best * ratio))
    return (best, other) if height <= width else (other, best)


def longer_side(height: int, width: int, side: int) -> tuple[int, int]:
    """`(H, W)` of `height x width`'s aspect with the longer side `side` (or up to 10 %
    less, where that keeps the aspect ratio: `faithful_shape`)."""
    short, long = sorted((height, width))
    if long == side:
        return height, width
    ratio = long / short
    most = math.floor(side / ratio)  # the longest shorter side whose longer one rounds to
    while round((most + 1) * ratio) <= side:  # `side` or less
        most += 1
    if most < 1:  # thinner than 1 : side: one pixel across
        return (1, side) if height <= width else (side, 1)
    return faithful_shape(height, width, most)
