"""Parameter roles for shape types: `dp.roles.POSITION`, `dp.roles.SIZE`, ...

Declare each array field of a shape type with `dp.parameter(role)`; see
[`diffprims.Role`][] for what each role means and the scale it is stored at.
"""

from ._shapes._roles import (
    ANGLE as ANGLE,
    COLOUR as COLOUR,
    DEPTH as DEPTH,
    GEOMETRY as GEOMETRY,
    OPACITY as OPACITY,
    POSITION as POSITION,
    SIZE as SIZE,
    Role as Role,
)
