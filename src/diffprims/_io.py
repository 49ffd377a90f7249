"""Models on disk: equinox leaf serialisation plus a JSON header (no pickle)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ._files import atomic_write
from ._validate import describe, is_traced

_MAGIC = b"diffprims-model\n"
_FORMAT_VERSION = 1


def _encode(node: Any, where: str) -> Any:
    """The structure of a model as JSON: classes, static values, array shapes."""
    if isinstance(node, eqx.Module):
        cls = type(node)
        fields = {
            field.name: _encode(getattr(node, field.name), f"{where}.{field.name}")
            for field in dataclasses.fields(node)
            if field.init
        }
        return {"module": _public_name(cls), "fields": fields}
    if eqx.is_array(node):
        if is_traced(node):
            raise TypeError(f"`save` needs a concrete model; {where} is traced under jit/vmap.")
        return {"array": list(node.shape), "dtype": str(node.dtype)}
    if node is None or isinstance(node, bool | int | float | str):
        return {"value": node}
    if isinstance(node, tuple | list):
        kind = "tuple" if isinstance(node, tuple) else "list"
        return {kind: [_encode(item, f"{where}[{i}]") for i, item in enumerate(node)]}
    raise TypeError(
        f"`save` can store eqx.Modules of arrays, numbers, strings and tuples; {where} is "
        f"{describe(node)}."
    )


# Where release 0.1.0 (a flat package) wrote each public type; files keep loading after
# a type moves because files now name the public type (`diffprims.Circles`).
_OLD_NAMES = {
    f"diffprims.{module}:{name}": f"diffprims.{name}"
    for module, names in {
        "_circles": ["Circles"],
        "_ellipses": ["Ellipses"],
        "_rectangles": ["Rectangles"],
        "_triangles": ["Triangles"],
        "_gaussians": ["Gaussians"],
        "_filters": ["SeparableFilters"],
        "_losses": ["L1", "L2", "KeepZeros", "NonNegative", "Weighted", "Sum", "Scaled"],
        "_image_losses": ["SSIM"],
    }.items()
    for name in names
}


def _public_name(cls: type) -> str:
    """`diffprims.Name` for a public diffprims type, else `module:qualname`."""
    import diffprims

    if getattr(diffprims, cls.__name__, None) is cls:
        return f"diffprims.{cls.__name__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str) -> type:
    name = _OLD_NAMES.get(name, name)
    if ":" not in name:  # a public diffprims type
        import diffprims

        module_name, _, qualname = name.rpartition(".")
        obj = getattr(diffprims, qualname, None) if module_name == "diffprims" else None
        if not (isinstance(obj, type) and issubclass(obj, eqx.Module)):
            raise ValueError(f"The file names `{name}`, which is not a diffprims type here.")
        return obj
    module_name, _, qualname = name.partition(":")
    # Only classes from diffprims itself or from modules the program has already
    # imported are rebuilt: loading a file never imports new code.
    if module_name.split(".")[0] == "diffprims":
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ValueError(f"The file names `{name}`, which this diffprims lacks.") from None
    elif module_name in sys.modules:
        module = sys.modules[module_name]
    else:
        raise ValueError(
            f"The file holds a `{qualname}` from module `{module_name}`, which is not "
            "imported. Import it first, or pass `like=` a model of the same structure."
        )
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, eqx.Module)):
        raise ValueError(f"The file names `{name}`, which is not an equinox Module here.")
    return obj


def _decode(node: Any) -> Any:
    """A template with the encoded structure; arrays are zeros of the right shape."""
    if "module" in node:
        cls = _resolve(node["module"])
        kwargs = {name: _decode(value) for name, value in node["fields"].items()}
        try:
            return cls(**kwargs)
        except Exception:
            # A class with its own __init__: fill the dataclass fields directly.
            obj = object.__new__(cls)
            for name, value in kwargs.items():
                object.__setattr__(obj, name, value)
            return obj
    if "array" in node:
        return jax.numpy.zeros(tuple(node["array"]), dtype=np.dtype(node["dtype"]))
    if "value" in node:
        return node["value"]
    if "tuple" in node:
        return tuple(_decode(item) for item in node["tuple"])
    if "list" in node:
        return [_decode(item) for item in node["list"]]
    raise ValueError(f"Unrecognised entry in the model file's header: {node!r}.")


def _summary(model: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"type": type(model).__name__}
    for name in ("num_shapes", "num_channels", "softness"):
        try:
            value = getattr(model, name)
        except Exception:
            continue
        if isinstance(value, int | float):
            info[name] = value
    return info


def save(path: str | os.PathLike, model: Any) -> Path:
    """Write a model's parameters and structure to `path`, atomically.

    The file is a one-line JSON header (the model's class, its static fields such as
    `softness`, the shape and dtype of every array, and a summary: type, `num_shapes`,
    `num_channels`) followed by the arrays as written by
    `equinox.tree_serialise_leaves`. Nothing is pickled. The file appears whole or not
    at all. The usual suffix is `.eqx`.

    **Arguments:**

    - `path`: the file to write (folders are created).
    - `model`: any diffprims model, or any `eqx.Module` of arrays, numbers and strings.

    **Returns:**

    The path written.

    ```python
    dp.save("circles.eqx", result.model)
    model = dp.load("circles.eqx")
    ```
    """
    if not isinstance(model, eqx.Module):
        raise TypeError(f"`save` needs a diffprims model (an eqx.Module); got {describe(model)}.")
    header = {
        "format": "diffprims",
        "version": _FORMAT_VERSION,
        **_summary(model),
        "tree": _encode(model, type(model).__name__),
    }
    line = json.dumps(header, separators=(",", ":")).encode() + b"\n"

    def write(temp: str) -> None:
        with open(temp, "wb") as file:
            file.write(_MAGIC)
            file.write(line)
            eqx.tree_serialise_leaves(file, model)

    return atomic_write(path, write)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a file written by [`diffprims.save`][]."""
    with open(path, "rb") as file:
        return _read_header(file, path)


def _read_header(file: Any, path: str | os.PathLike) -> dict[str, Any]:
    if file.read(len(_MAGIC)) != _MAGIC:
        raise ValueError(
            f"`path` must be a model file written by `diffprims.save`; got "
            f"{os.fspath(path)!r}, which is not."
        )
    try:
        header = json.loads(file.readline())
    except ValueError:
        raise ValueError(
            f"`path` must be a model file written by `diffprims.save`; got "
            f"{os.fspath(path)!r}, whose header is damaged."
        ) from None
    if header.get("version", 0) > _FORMAT_VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} was written by a newer diffprims (format version "
            f"{header.get('version')}); upgrade diffprims to read it."
        )
    return header


def load(path: str | os.PathLike, like: Any = None) -> Any:
    """Read a model written by [`diffprims.save`][].

    **Arguments:**

    - `path`: the file.
    - `like`: optional model of the same structure (type, `N`, channels) to fill in.
      Without it the model is rebuilt from the file's header; that works for every
      diffprims model and for your own classes once their module is imported.

    **Returns:**

    The model, equal leaf for leaf to the one saved.

    ```python
    model = dp.load("circles.eqx")
    image = model.render_image((1024, 1024))
    ```
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {os.fspath(path)!r}.")
    with open(path, "rb") as file:
        header = _read_header(file, path)
        if like is None:
            like = _decode(header["tree"])
        elif not isinstance(like, eqx.Module):
            raise TypeError(f"`like` must be a model (an eqx.Module); got {describe(like)}.")
        elif type(like).__name__ != header.get("type"):
            raise ValueError(
                f"{os.fspath(path)!r} holds a {header.get('type')}; `like` is a "
                f"{type(like).__name__}."
            )
        try:
            model = eqx.tree_deserialise_leaves(file, like)
        except Exception as error:
            raise ValueError(
                f"{os.fspath(path)!r} does not match the structure of `like` (or is "
                f"truncated): {error}"
            ) from None
    return model
