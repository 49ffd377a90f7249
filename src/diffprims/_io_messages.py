"""What a refused `load` says: classes it was not given, and how `like` differs."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ._validate import describe


def unknown_class(path: Any, names: list[str], allowed: dict[str, type]) -> str:
    """What to do about a file naming classes that `load` was not given (all of them,
    with those already passed in the `classes` to pass)."""
    upgrade = [name for name in names if name.startswith("diffprims.")]
    if upgrade:
        return (
            f"{os.fspath(path)!r} holds a `{upgrade[0]:.80}`, which this version of diffprims "
            "does not have; upgrade diffprims to read it."
        )
    shorts = [name.rpartition(":")[2].rpartition(".")[2][:80] for name in names]
    passed = [cls.__name__ for key, cls in allowed.items() if not key.startswith("diffprims.")]
    listed = ", ".join(dict.fromkeys([*passed, *shorts]))
    holds = ", ".join(
        f"`{qualname:.80}` (from module `{module:.80}`)"
        for module, _, qualname in (name.rpartition(":") for name in names[:8])
    )
    return (
        f"{os.fspath(path)!r} holds {holds}, not a diffprims class. `load` "
        "builds only diffprims classes and the classes you pass (a file cannot make it "
        f"import or run anything else): import {', '.join(shorts[:8])} and pass "
        f"{'it' if len(shorts) == 1 else 'them'}, `dp.load(path, classes=[{listed}])`."
    )


def difference(like: Any, held: Any, where: str = "") -> str:
    """The first place where the file's model `held` (arrays as `jax.ShapeDtypeStruct`)
    differs from `like`, in words."""

    def what(x: Any) -> str:
        if isinstance(x, jax.ShapeDtypeStruct) or eqx.is_array(x):
            return f"{tuple(x.shape)} {x.dtype}"
        if isinstance(x, eqx.Module):  # a model: its type, not its fields
            name = type(x).__name__
            return f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"
        return describe(x)

    found = ""
    if isinstance(like, eqx.Module) and type(like) is type(held):
        for field in dataclasses.fields(like):
            path = f"{where}.{field.name}".lstrip(".")
            mine, theirs = getattr(like, field.name, None), getattr(held, field.name, None)
            if not field.metadata.get("static"):
                found = found or difference(mine, theirs, path)
            elif mine != theirs:
                found = found or f"`{path}` = {theirs!r} where `like` has {mine!r}"
    elif isinstance(like, list | tuple) and isinstance(held, list | tuple):
        if len(like) != len(held):
            return f"`{where}`: {len(held)} items where `like` has {len(like)}"
        for i, (mine, theirs) in enumerate(zip(like, held, strict=True)):
            found = found or difference(mine, theirs, f"{where}[{i}]")
    elif isinstance(held, jax.ShapeDtypeStruct):
        leaf: Any = like
        mine = (jnp.shape(leaf), jnp.result_type(leaf)) if eqx.is_array_like(leaf) else None
        if mine != (held.shape, held.dtype):
            found = f"`{where}`: {what(held)} where `like` has {what(like)}"
    elif type(like) is not type(held) or like != held:
        found = f"`{where or 'the model'}`: {what(held)} where `like` has {what(like)}"
    return found or ("" if where else "a model of another size or layout")
