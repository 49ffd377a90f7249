"""Filter specs over a shape set's fields: what trains (`trainable`), what is per shape."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax

from ._roles import is_per_shape

#: Names `AbstractShapes.trainable` accepts besides the role kinds.
GROUPS = {
    "geometry": ("position", "size", "angle", "geometry"),
    "appearance": ("colour", "opacity"),
}


def trainable_spec(shapes: Any, kinds: tuple[str, ...], check: bool = True) -> Any:
    """`AbstractShapes.trainable`: True at the fields whose role kind is in `kinds`
    (every parameter with none, as `Layers.trainable`); with `check`, a `ValueError`
    where that is no parameter of `shapes` (`fit` said only "nothing would train")."""
    from ._roles import KINDS

    if not kinds:
        return fields_spec(shapes, list(shapes.parameter_roles()))
    wanted: set[str] = set()
    for kind in kinds:
        if kind not in KINDS and kind not in GROUPS:
            raise ValueError(
                f"`trainable` takes role kinds {KINDS} or groups {tuple(GROUPS)}; got {kind!r}."
            )
        wanted.update(GROUPS.get(kind, (kind,)))
    present = present_kinds(shapes)
    if check and not wanted & set(present):
        raise ValueError(unmatched_message(kinds, f"this {type(shapes).__name__}", present))
    roles = shapes.parameter_roles()
    return fields_spec(shapes, [n for n, r in roles.items() if r.kind in wanted])


def present_kinds(shapes: Any) -> list[str]:
    """The role kinds of the parameters `shapes` holds (depths only with "depth")."""
    roles = shapes.parameter_roles()
    return sorted({r.kind for n, r in roles.items() if getattr(shapes, n) is not None})


def unmatched_message(kinds: tuple[str, ...], what: str, present: list[str]) -> str:
    """Why `trainable(*kinds)` selects nothing of `what`, whose parameters are `present`."""
    asked = ", ".join(repr(kind) for kind in kinds)
    hint = (
        ' Depths exist with compositing="depth" only: `model.with_compositing("depth")`.'
        if "depth" in kinds and "depth" not in present
        else ""
    )
    return (
        f"`trainable({asked})` selects no parameter of {what}, whose parameters are "
        f"of the kinds {present}: nothing would train.{hint}"
    )


def per_shape_spec(shapes: Any) -> Any:
    """A filter spec: True at the fields with one row per shape (`partition_shapes`)."""
    cls = type(shapes)
    return fields_spec(shapes, [n for n in cls.parameter_roles() if is_per_shape(cls, n)])


def fields_spec(shapes: Any, names: list[str]) -> Any:
    """A filter spec shaped like `shapes`: True at the array fields `names`, else False."""
    names = [name for name in names if getattr(shapes, name) is not None]
    spec = jax.tree.map(lambda _: False, shapes)
    return eqx.tree_at(lambda m: [getattr(m, k) for k in names], spec, [True] * len(names))
