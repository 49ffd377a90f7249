"""How an object passed where a shape type is expected falls short of one."""

from __future__ import annotations

from typing import Any, Literal

from ._base import AbstractShapes
from ._layers import Layers

#: The ways an object is not a shape type (see `not_a_shape_type`).
Shortfall = Literal["set", "object", "layers", "class"]


def not_a_shape_type(obj: Any) -> Shortfall | None:
    """Why `obj` is not a shape type (a subclass of `AbstractShapes`), or None if it is:

    - `"set"`: a shape set (an instance of a shape type), not its class;
    - `"object"`: anything else that is not a class;
    - `"layers"`: `Layers` or a subclass, a container of shape sets of other types;
    - `"class"`: another class, not a subclass of `AbstractShapes`.

    One test for every caller (`paint`'s `shape=`, the command line's `--shape`), each
    wording its own message."""
    if isinstance(obj, AbstractShapes):
        return "set"
    if not isinstance(obj, type):
        return "object"
    if issubclass(obj, Layers):
        return "layers"
    if not issubclass(obj, AbstractShapes):
        return "class"
    return None
