"""`paint --shape`: a built-in shape type by name, or a type of your own as `module:Class`.

`module:Class` is the convention of uvicorn and gunicorn: the module is imported with the
current folder on `sys.path` (as `python -m` has it; the `diffprims` script does not), and
`Class`, a subclass of `diffprims.AbstractShapes`, paints as a built-in type does.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any, NamedTuple

from ._common import UsageError, shape_types

#: How `--shape` names a type of one's own, for the messages.
FORM = "module:ClassName"


class ShapeType(NamedTuple):
    """What `--shape` names: the class, the name summary.json records (a built-in's
    lower-case name, or `module:ClassName`), and whether the type has an SVG form."""

    cls: type
    name: str
    svg: bool


def resolve_shape(spec: str) -> ShapeType:
    """The shape type `--shape spec` names; a `UsageError` (exit 2) for a bad spec.

    An error raised by the user's own code (importing the module, or the class failing
    the library's check of what its methods return) is not a bad argument: it propagates,
    and `--debug` shows its traceback.
    """
    if ":" not in spec:
        return _built_in(spec)
    module_name, attribute = _split(spec)
    module = _import(module_name, spec)
    cls = _attribute(module, attribute, spec)
    _check_class(cls, spec)
    return ShapeType(cls, f"{module_name}:{attribute}", _has_svg(cls))


def _built_in(spec: str) -> ShapeType:
    shapes = shape_types()
    cls = shapes.get(spec.lower())
    if cls is None:
        raise UsageError(
            f"unknown --shape {spec!r}; choose one of {', '.join(shapes)}, or a type of your "
            f"own as {FORM} (e.g. --shape rings:Rings for the class Rings in ./rings.py)"
        )
    return ShapeType(cls, spec.lower(), True)  # every built-in type has an SVG form


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _split(spec: str) -> tuple[str, str]:
    module_name, _, attribute = spec.partition(":")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        stem = os.path.splitext(os.path.basename(module_name))[0] or "module"
        raise UsageError(
            f"--shape {spec!r}: name the module, not its file: {stem}:{attribute or 'ClassName'} "
            "(run from the folder that holds it)"
        )
    if not (_dotted(module_name) and _dotted(attribute)):
        raise UsageError(
            f"--shape {spec!r}: expected {FORM}, a Python module (my_shapes, or "
            "package.module), a colon, and the class (e.g. rings:Rings)"
        )
    return module_name, attribute


@contextlib.contextmanager
def _current_folder_on_path() -> Iterator[None]:
    """The current folder first on `sys.path` while the block runs (unless it is there)."""
    here = os.getcwd()
    if any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        yield
        return
    sys.path.insert(0, here)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(here)


def _import(module_name: str, spec: str) -> ModuleType:
    importlib.invalidate_caches()  # a module written since the last import looked
    with _current_folder_on_path():
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            missing = error.name or ""
            if not (module_name == missing or module_name.startswith(missing + ".")):
                raise _failed(module_name, spec, error) from error  # an import inside it
            raise UsageError(
                f"--shape {spec!r}: no module named {missing!r} in the current folder "
                f"({os.getcwd()}) or the installed packages"
            ) from None
        except Exception as error:
            raise _failed(module_name, spec, error) from error


def _failed(module_name: str, spec: str, error: Exception) -> ImportError:
    return ImportError(
        f"--shape {spec!r}: importing {module_name!r} raised {type(error).__name__}: "
        f"{str(error).rstrip('.')}"
    )


def _attribute(module: ModuleType, attribute: str, spec: str) -> Any:
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            where = getattr(module, "__file__", None) or module.__name__
            raise UsageError(
                f"--shape {spec!r}: {where} has no {attribute!r}; {_defined_here(module)}"
            ) from None
    return found


def _defined_here(module: ModuleType) -> str:
    """The shape types `module` defines, for a message."""
    import diffprims as dp

    names = [
        name
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, dp.AbstractShapes)
        and not inspect.isabstract(value)
        and value.__module__ == module.__name__
    ]
    if not names:
        return "it defines no shape type (a subclass of diffprims.AbstractShapes)"
    return f"the shape types it defines: {', '.join(sorted(names))}"


def _check_class(cls: Any, spec: str) -> None:
    """A `UsageError` unless `cls` is a concrete subclass of `dp.AbstractShapes`; then the
    library's check of its methods' outputs (`check_shape_type`: its errors propagate)."""
    from .._shapes import check_shape_type, not_a_shape_type
    from .._shapes._protocol import check_concrete

    named = f"--shape {spec!r}"
    expected = "name a subclass of diffprims.AbstractShapes"
    shortfall = not_a_shape_type(cls)
    if shortfall == "set":
        name = type(cls).__name__
        raise UsageError(f"{named} is a shape set (a {name}), not a shape class: name the "
                         f"class itself, {spec.partition(':')[0]}:{name}")  # fmt: skip
    if shortfall == "object":
        kind = type(cls).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise UsageError(f"{named} is {article} {kind}, not a class: {expected}")
    if shortfall == "layers":
        raise UsageError(f"{named} is a container of shape sets ({cls.__name__}), not a "
                         f"shape type: paint paints with one type; {expected}")  # fmt: skip
    if shortfall == "class":
        raise UsageError(f"{named}: the class {cls.__name__} is not a shape type; {expected}")
    try:
        check_concrete(cls)
    except TypeError as error:
        raise UsageError(f"{named}: {error}") from None
    check_shape_type(cls)


def _has_svg(cls: type) -> bool:
    """Whether the type has an SVG form: its `svg_geometry` does not raise
    `NotImplementedError` (for hard or soft edges) on a set of two.

    The set is built from the shapes `init` gives, filled with NumPy values: an eager
    `init` compiled some 40 one-operation programs (1.7 to 2.9 s a run, out of the
    painting's `--seconds`), where the built-in types pay nothing.
    """
    import jax
    import numpy as np

    from .._shapes._protocol import svg_geometry as checked_svg_geometry

    abstract = jax.eval_shape(lambda: cls.init(2, key=jax.random.key(0)))  # pyright: ignore[reportAttributeAccessIssue]
    shapes: Any = jax.tree.map(lambda leaf: np.full(leaf.shape, 0.1, leaf.dtype), abstract)
    # Checked now, what it gives too: a wrong answer found when writing result.svg lost
    # the whole painting after its fit.
    try:
        checked_svg_geometry(shapes, 0.0)
        checked_svg_geometry(shapes, 0.01)
    except TypeError as error:  # the check's word for NotImplementedError: no SVG form
        if isinstance(error.__cause__, NotImplementedError):
            return False
        raise
    return True
