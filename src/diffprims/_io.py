"""Models on disk: a JSON header, a SHA-256, and equinox's leaf records (no pickle).

A model file is `diffprims-model\\n`, one line of JSON (the header: the model's classes,
static values, the shape and dtype of every array), one line with the SHA-256 of the
header line and the payload, then the payload: one NumPy `.npy` record per leaf, as
`equinox.tree_serialise_leaves` writes them. Files of format version 1 (release 0.1.0)
have no SHA-256 line and still load.

Loading treats the file as hostile until proven otherwise: the whole header is parsed
and checked (classes, shapes, dtypes, sizes against the payload's length) before
anything is allocated; the template is built abstractly (`eqx.filter_eval_shape`) by the
real constructors; each record's own header must match the template before its bytes
are read; and the loaded model is rebuilt by its constructor, so every check runs.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import LoadError
from ._files import CHECKSUM_LINE, atomic_write, checksum_line, open_regular, read_line
from ._fit._result import FitResult
from ._io_messages import difference, unknown_class
from ._io_tree import (
    MAX_NDIM,
    SERIALISE_LEAVES,
    ClassMismatchError,
    Spec,
    UnknownClassError,
    allowed_classes,
    build,
    changed_class_advice,
    encode,
    missing_classes,
    parse,
    read_leaves,
    rebuild,
    unavailable_dtype,
)
from ._model import Loaded, batch_shape
from ._validate import describe, is_typed_key, run_checks

_MAGIC = b"diffprims-model\n"
_FORMAT_VERSION = 2
_MAX_HEADER = 16 * 2**20  # bytes; a header grows with the number of fields, never with N


def _non_finite(model: Any) -> str | None:
    """The path of the first float leaf with NaN/inf, or None. Of a fit's result, its
    models only: under `jit`/`vmap` its `seconds` are NaN, and a diverged member's
    losses from that step on."""
    parts = [("", model)]
    if isinstance(model, FitResult):
        parts = [(".model", model.model), (".snapshots", model.snapshots)]
    for prefix, part in parts:
        for path, leaf in jax.tree_util.tree_flatten_with_path(part)[0]:
            if eqx.is_inexact_array(leaf) and not np.all(np.isfinite(np.asarray(leaf))):
                return prefix + jax.tree_util.keystr(path)
    return None


def _summary(model: Any, batch: tuple[int, ...]) -> dict[str, Any]:
    info: dict[str, Any] = {"type": type(model).__name__}
    if batch:
        info["batch"] = list(batch)
        model = eqx.filter_eval_shape(_unbatch, model, batch)  # one member, abstractly
    for name in ("num_shapes", "num_channels", "softness"):
        try:
            value = getattr(model, name)
        except Exception:
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            info[name] = value
    return info


def _unbatch(tree: Any, batch: tuple[int, ...]) -> Any:
    return jax.tree.map(lambda x: x[(0,) * len(batch)] if eqx.is_array(x) else x, tree)


def _vmapped(fn: Any, batch: tuple[int, ...]) -> Any:
    for _ in batch:
        fn = eqx.filter_vmap(fn)
    return fn


def _loadable_batch(model: Any) -> tuple[int, ...]:
    """The batch axes of `model` (`()` for one model), or a `ValueError` when `load`
    could not rebuild it by its constructors (so `save` never writes such a file)."""
    try:
        rebuild(model)
        return ()
    except Exception as error:  # whatever the model's constructor raises
        batch = batch_shape(model, rebuild)
        if batch:
            return batch
        raise ValueError(
            f"`save` needs a model that its constructor accepts (`load` rebuilds it with "
            f"the constructor); {type(model).__name__}(...) refuses this one: {error}. "
            "A model holding `equinox.nn` layers (built from sizes, not from their arrays) "
            f"cannot be rebuilt so: {SERIALISE_LEAVES}"
        ) from None


def save(path: str | os.PathLike[str], model: Any) -> Path:
    """Write a model's parameters and structure to `path`, atomically.

    The file is a one-line JSON header (the model's class, its static fields such as
    `softness`, the shape and dtype of every array, and a summary: type, `num_shapes`,
    `num_channels`), a SHA-256 of the header and the arrays, then the arrays as written
    by `equinox.tree_serialise_leaves`. Nothing is pickled. The file appears whole or
    not at all, and a file it replaces keeps its permissions. The usual suffix is `.eqx`.

    **Arguments:**

    - `path`: the file to write (folders are created).
    - `model`: any diffprims model, or any `eqx.Module` of arrays, numbers and strings
      whose constructor takes its fields (not `equinox.nn` layers: save a model holding
      them with `eqx.tree_serialise_leaves`). A batch of models (`jax.vmap` over a
      constructor: a leading axis on every array) is saved as one, and loads as the same
      batch. A model its constructor refuses (as `load` would) raises a `ValueError`.

    **Returns:**

    The path written.

    ```python
    dp.save("circles.eqx", result.model)
    model = dp.load("circles.eqx")
    ```
    """
    if not isinstance(model, eqx.Module):
        raise TypeError(f"`save` needs a diffprims model (an eqx.Module); got {describe(model)}.")
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path; got {describe(path)}.")
    key = next(
        (p for p, x in jax.tree_util.tree_flatten_with_path(model)[0] if is_typed_key(x)), None
    )
    if key is not None:
        where = jax.tree_util.keystr(key)
        raise TypeError(
            f"`save` writes arrays NumPy holds; got a typed PRNG key at `model{where}`. "
            "Keep its data in the model instead (`jax.random.key_data(key)`, uint32) and "
            "wrap it back where it is used (`jax.random.wrap_key_data(data)`)."
        )
    tree = encode(model, type(model).__name__)
    bad = _non_finite(model)
    if bad is not None:
        raise ValueError(
            f"`save` needs a model with finite parameters; got NaN/inf in `model{bad}`. "
            "Save the last finite model (`error.result.model` of a diverged fit)."
        )
    batch = _loadable_batch(model)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, model)
    payload = buffer.getvalue()
    header = {
        "format": "diffprims",
        "version": _FORMAT_VERSION,
        **_summary(model, batch),
        "payload_bytes": len(payload),
        "tree": tree,
    }
    line = json.dumps(header, separators=(",", ":")).encode() + b"\n"
    checksum = checksum_line(line, payload)

    def write(temp: str) -> None:
        with open(temp, "wb") as file:
            file.write(_MAGIC + line + checksum + payload)

    return atomic_write(path, write)


def _fail(path: Any, what: str, spec: Spec | None = None, advice: str | None = None) -> LoadError:
    """A `LoadError` naming the file and what is wrong with it, and `advice`: by default,
    for a file holding the caller's classes (in `spec`), that one of them may have
    changed since it was saved, else to save the model again."""
    what = what.rstrip().rstrip(".")  # `what` may end in a constructor's full stop
    advice = advice or (changed_class_advice(spec.tree) if spec is not None else None)
    advice = advice or (
        "Expected a model file written by `diffprims.save`; save the model again, or use "
        "an older copy."
    )
    return LoadError(f"Cannot load the model file {os.fspath(path)!r}: {what}. {advice}")


def _read_file(path: Any) -> tuple[dict[str, Any], bytes]:
    """`(header, payload)`: lengths bounded, the SHA-256 checked (format 2 on)."""
    file, size = open_regular(path, "The model file", LoadError)
    with file:
        start = file.read(len(_MAGIC))
        if start != _MAGIC or size == len(_MAGIC):
            raise _not_a_model(path, start + file.read(256), size)
        line = read_line(file, _MAX_HEADER)
        if line is None:
            raise _not_a_model(path, start, size)
        try:
            header = json.loads(line)
        except (ValueError, RecursionError):
            raise _fail(path, "its header is damaged (not JSON)") from None
        if not isinstance(header, dict) or header.get("format", "diffprims") != "diffprims":
            raise _fail(path, "its header is not a diffprims header")
        version = header.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _fail(path, f"its header has no valid format version (got {version!r:.40})")
        if version > _FORMAT_VERSION:
            raise LoadError(
                f"{os.fspath(path)!r} was written by a newer diffprims (format version "
                f"{version}); upgrade diffprims to read it."
            )
        checksum = read_line(file, CHECKSUM_LINE) if version >= 2 else b""
        left = size - file.tell()
        expected = header.get("payload_bytes", left) if version >= 2 else left
        if checksum is None or not isinstance(expected, int) or expected != left:
            raise _fail(path, f"it is truncated or damaged (expected {expected!r:.40} "
                              f"payload bytes, found {left})")  # fmt: skip
        payload = file.read(left)
    if version >= 2 and checksum_line(line, payload) != checksum:
        raise _fail(path, "it is damaged: its SHA-256 does not match its contents")
    return header, payload


def _not_a_model(path: Any, start: bytes, size: int) -> LoadError:
    """Why a file whose first two lines cannot be read is no model file, in words."""
    if size == 0:
        return _fail(path, "it is empty (0 bytes)")
    if _MAGIC.startswith(start) or (start == _MAGIC and size <= _MAX_HEADER + len(_MAGIC)):
        what = f"it is truncated or damaged (the file ends after {size} bytes, in its header)"
        return _fail(path, what)
    if start.startswith(b"\x93NUMPY"):  # NumPy records from the first byte
        return _fail(
            path, "it holds NumPy records, as `eqx.tree_serialise_leaves` writes, not a "
            "`diffprims.save` header", advice="Read it with `eqx.tree_deserialise_leaves"
            "(path, like)`, `like` a model of the structure it was saved from.",
        )  # fmt: skip
    if start.startswith(b"{") and b'"diffprims-checkpoint"' in start:
        return _fail(
            path, "it is a `fit` checkpoint, not a model file", advice="Resume it with "
            "the fit's own arguments, `dp.fit(model, target, ..., resume=path)` (with "
            "`steps` as many as it holds, the result's `.model` is its model, unchanged); "
            "`dp.save(path, result.model)` writes a model file.",
        )  # fmt: skip
    if not start.startswith(_MAGIC):
        return _fail(path, "it is not a diffprims model file (no `diffprims-model` line)")
    return _fail(path, f"its header is damaged (no line end in {_MAX_HEADER} bytes)")


def load(path: str | os.PathLike[str], like: Loaded | None = None, *, classes: Any = ()) -> Loaded:
    """Read a model written by [`diffprims.save`][].

    The file is checked whole before anything is built from it: its SHA-256, its header
    (each class, shape and dtype, and that the arrays fit in the file's length), then
    each array record. Only diffprims types and the classes you pass are built, always
    by their constructors, so their checks run; a file cannot make `load` import or run
    other code, nor allocate more memory than the file holds.

    **Arguments:**

    - `path`: the file.
    - `like`: optional model of the same structure (type, `N`, channels) to fill in.
    - `classes`: your own `eqx.Module` classes the file may name (a custom shape type,
      say): `dp.load("rings.eqx", classes=[Rings])`. The classes in `like` count too.
      A class is found by module and name, or by name alone when you pass one class
      of that name (one saved from a script is `__main__.Rings` there).

    **Returns:**

    The model, equal leaf for leaf to the one saved (a batch of models, as the batch).

    **Raises:**

    [`diffprims.LoadError`][] (a `ValueError`) naming the file and what is wrong with it
    (for a class of yours that `classes` does not name, it says which to pass);
    `FileNotFoundError` when there is no file.

    ```python
    model = dp.load("circles.eqx")
    image = model.render_image((1024, 1024))
    ```
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path; got {describe(path)}.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {os.fspath(path)!r}.")
    if like is not None and not isinstance(like, eqx.Module):
        raise TypeError(f"`like` must be a model (an eqx.Module); got {describe(like)}.")
    allowed = allowed_classes(classes, like)
    header, payload = _read_file(path)
    if like is not None and type(like).__name__ != header.get("type"):
        raise LoadError(
            f"{os.fspath(path)!r} holds a model of type {header.get('type')!s:.40}; `like` "
            f"is of type {type(like).__name__}. Pass a `like` of the file's type, or no `like`."
        )
    spec = _parse(path, header, allowed)
    batch = _header_batch(path, header, spec)
    held = sum(math.prod(a.shape) * a.dtype.itemsize for a in spec.arrays)
    if held > len(payload):
        raise _fail(path, f"its header describes {held} bytes of arrays but the file holds "
                          f"{len(payload)} (truncated or damaged)")  # fmt: skip
    wide = unavailable_dtype(spec.arrays)
    if wide is not None:  # saved under `jax_enable_x64`: not a damaged file
        raise LoadError(f"Cannot load the model file {os.fspath(path)!r}: {wide}")
    members = [jax.ShapeDtypeStruct(a.shape[len(batch) :], a.dtype) for a in spec.arrays]
    try:
        template = eqx.filter_eval_shape(build, spec.tree, members)
    except Exception as error:
        what = f"its values are refused by the model's constructor: {error}"
        raise _fail(path, what, spec) from None
    template = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(batch + a.shape, a.dtype)
        if isinstance(a, jax.ShapeDtypeStruct) else a,
        template,
    )  # fmt: skip
    if like is not None:
        shapes = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), (like, template))
        if jax.tree.structure(like) != jax.tree.structure(template) or shapes[0] != shapes[1]:
            raise LoadError(
                f"{os.fspath(path)!r} does not match the structure of `like`: the file holds "
                f"{difference(like, template)}. Pass a `like` made with the file's settings "
                "(or no `like`)."
            )
    try:
        model = read_leaves(payload, template if like is None else like)
        if like is None:
            model = _vmapped(rebuild, batch)(model)
        else:
            _vmapped(run_checks, batch)(model)
    except Exception as error:
        what = f"it does not hold a valid model (or is truncated): {error}"
        raise _fail(path, what, spec) from None
    bad = _non_finite(model)
    if bad is not None:  # `save` never writes them: a damaged or hand-made file
        raise _fail(path, f"it holds NaN/inf parameters (in `model{bad}`)")
    return model


def _parse(path: Any, header: dict[str, Any], allowed: dict[str, type]) -> Spec:
    spec = Spec(None, [])
    try:
        spec.tree = parse(header.get("tree"), spec, allowed, "the model", 0)
    except UnknownClassError as error:
        missing = missing_classes(header.get("tree"), allowed) or [error.name]
        raise LoadError(unknown_class(path, missing, allowed)) from None
    except ClassMismatchError as error:  # the caller's class changed since the save
        raise LoadError(f"Cannot load the model file {os.fspath(path)!r}: {error}.") from None
    except ValueError as error:
        raise _fail(path, f"its header is damaged: {error}") from None
    return spec


def _header_batch(path: Any, header: dict[str, Any], spec: Spec) -> tuple[int, ...]:
    """The batch axes the header declares (`()` for one model), checked against every
    array's shape."""
    batch = header.get("batch", [])
    if not (
        isinstance(batch, list)
        and len(batch) <= MAX_NDIM
        and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batch)
    ):
        raise _fail(path, f"its header has a bad `batch` {batch!r:.40}")
    for array in spec.arrays:
        if array.shape[: len(batch)] != tuple(batch):
            raise _fail(path, f"its header declares a batch of {batch} models but holds an "
                              f"array of shape {list(array.shape)}")  # fmt: skip
    return tuple(batch)
