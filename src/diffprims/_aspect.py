"""Resized shapes that keep an image's aspect ratio, as far as whole pixels allow."""

from __future__ import annotations

import math

#: How far (in pixels of the new size) the far edge of a resized picture may land from
#: where the aspect ratio puts it (`faithful_shape`), and how much smaller it may be.
ASPECT_TOLERANCE, ASPECT_SEARCH = 0.02, 0.1


def faithful_shape(
    height: int, width: int, short_most: int, plain: tuple[int, int] | None = None
) -> tuple[int, int]:
    """`(H, W)` of `height x width`'s aspect ratio with the shorter side at most
    `short_most`: the largest such side (down to 10 % less) whose longer side is within
    `ASPECT_TOLERANCE` px of a whole number; else `plain` (the sizes rounded: a size
    asked for is not cut for a ratio kept no better) unless that puts its far edge more
    than a pixel off (`_least_off`), or with `plain` None the side
    whose longer one is nearest a whole number (paint's working copy, any size under
    its pixel budget: its shapes are drawn at the target's size).

    Shapes are placed in a frame whose width is the image's W / H, so a model fitted
    to a copy whose aspect rounding changed (256 x 171 for a 3:2 photo: 1.497) draws its
    right edge off when rendered at the photo's own size (12 px at 6000 px wide); 255 x
    170 is exact."""
    short, long = sorted((height, width))
    ratio = long / short
    top = max(1, short_most)
    # Down to 10 % less on the longer side (on the shorter one, a 10-pixel side at
    # 5.7 : 1 cut the longer 11 %).
    lower = (1 - ASPECT_SEARCH) * (max(plain) if plain else max(1, round(top * ratio)))
    best, miss = top, math.inf
    for side in range(top, 0, -1):  # only the window: a side of 65536 listed them all
        other = max(1, round(side * ratio))
        if other < lower:
            break
        off = abs(other - side * ratio)
        if off <= ASPECT_TOLERANCE:
            return (side, other) if height <= width else (other, side)
        if off < miss:
            best, miss = side, off
    if plain is not None:
        return _least_off(height, width, top, plain)
    other = max(1, round(best * ratio))
    return (best, other) if height <= width else (other, best)


def _least_off(height: int, width: int, top: int, plain: tuple[int, int]) -> tuple[int, int]:
    """`plain`, unless its longer side is more than a pixel from where the ratio puts it
    (its shorter side rounded, at a ratio above 2): then the shorter side `top`, the
    longer rounded from it (within half a pixel). 4000 x 20 at 256 px rounded to 256 x 1,
    a ratio 28 % off (a painting's right part drawn off the edge), and 200 x 1 is exact;
    2000 x 100 at 256 to 256 x 13, 3.9 px off, and 240 x 12 is exact."""
    short, long = sorted((height, width))
    ratio = long / short
    if abs(max(plain) - min(plain) * ratio) <= 1.0:
        return plain
    other = max(1, round(top * ratio))
    return (top, other) if height <= width else (other, top)


def longer_side(height: int, width: int, side: int) -> tuple[int, int]:
    """`(H, W)` of `height x width`'s aspect with the longer side `side` (or up to 10 %
    less, where that keeps the aspect ratio: `faithful_shape`)."""
    short, long = sorted((height, width))
    if long == side:
        return height, width
    scale = side / long
    plain = (max(1, round(height * scale)), max(1, round(width * scale)))
    ratio = long / short
    most = math.floor(side / ratio)  # the longest shorter side whose longer one rounds to
    while round((most + 1) * ratio) <= side:  # `side` or less
        most += 1
    return faithful_shape(height, width, most, plain) if most >= 1 else plain
