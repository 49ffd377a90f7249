"""The checks behind `dp.load`: a model file's header parsed against the classes it may
name, and its payload's records read against the template, each checked before reading."""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.dtypes import canonicalize_dtype

from ._model import is_diffprims
from ._validate import describe, is_traced

MAX_DEPTH = 64
MAX_NDIM = 32
DTYPES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "bfloat16", "complex64", "complex128",
}  # fmt: skip

# Where release 0.1.0 (a flat package) wrote each public type; files keep loading after
# a type moves because files now name the public type (`diffprims.Circles`).
OLD_NAMES = {
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


def public_name(cls: type) -> str:
    """`diffprims.Name` for a public diffprims type, else `module:qualname`."""
    import diffprims

    if getattr(diffprims, cls.__name__, None) is cls:
        return f"diffprims.{cls.__name__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def allowed_classes(classes: Any, like: Any) -> dict[str, type]:
    """The classes a file may name: public diffprims types, `classes`, those in `like`."""
    import diffprims

    allowed = {
        f"diffprims.{name}": obj
        for name, obj in vars(diffprims).items()
        if isinstance(obj, type) and issubclass(obj, eqx.Module) and not inspect.isabstract(obj)
    }
    if isinstance(classes, type) or not isinstance(classes, list | tuple | set | frozenset):
        got = describe(classes)
        if isinstance(classes, type):
            got = f"the class {classes.__name__} itself; pass `classes=[{classes.__name__}]`"
        raise TypeError(
            "`classes` must be a list of your eqx.Module classes, e.g. `classes=[Rings]`; "
            f"got {got}."
        )
    for cls in [*classes, *module_types(like)]:
        if isinstance(cls, eqx.Module):  # its repr would be its every field
            raise TypeError(
                f"`classes` must hold eqx.Module classes; got a {type(cls).__name__} model "
                f"(an instance). Pass its class, `classes=[{type(cls).__name__}]`."
            )
        if not (isinstance(cls, type) and issubclass(cls, eqx.Module)):
            raise TypeError(f"`classes` must hold eqx.Module classes; got {describe(cls)}.")
        allowed[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return allowed


def module_types(tree: Any) -> list[type]:
    if isinstance(tree, eqx.Module):
        found = [type(tree)]
        for field in dataclasses.fields(tree):
            found += module_types(getattr(tree, field.name, None))
        return found
    if isinstance(tree, list | tuple):
        return [cls for item in tree for cls in module_types(item)]
    return []


class UnknownClassError(ValueError):
    """A header naming a class that `load` may not build; `name` is the class's
    `module:qualname` (or `diffprims.Name`)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class ClassMismatchError(ValueError):
    """A header whose fields for one of the caller's classes differ from that class's
    own: the class changed since the file was saved (the file is not damaged)."""


@dataclasses.dataclass
class Spec:
    """A parsed, checked header: `tree` with arrays replaced by `Slot`s into `arrays`."""

    tree: Any
    arrays: list[jax.ShapeDtypeStruct]


@dataclasses.dataclass(frozen=True)
class Slot:
    index: int


@dataclasses.dataclass(frozen=True)
class Node:
    cls: type
    fields: dict[str, Any]


def parse(node: Any, spec: Spec, allowed: dict[str, type], where: str, depth: int) -> Any:
    """Check one header entry (raising `ValueError` with what is wrong) and parse it."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise ValueError(f"{where} must be an entry such as {{'array': [...]}}; got {node!r:.80}")
    if "module" in node:
        return parse_module(node, spec, allowed, where, depth)
    if "array" in node:
        shape, dtype = node["array"], node.get("dtype")
        if not (
            isinstance(shape, list)
            and len(shape) <= MAX_NDIM
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise ValueError(f"{where} has a bad array shape {shape!r:.80}")
        if dtype not in DTYPES or set(node) != {"array", "dtype"}:
            raise ValueError(f"{where} has a bad array dtype {dtype!r:.40}")
        spec.arrays.append(jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype)))
        return Slot(len(spec.arrays) - 1)
    if len(node) != 1:
        raise ValueError(f"{where} has unexpected keys {sorted(node)!r:.80}")
    ((kind, value),) = node.items()
    if kind == "value":
        ok = value is None or isinstance(value, bool | int | float | str)
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{where} has a bad value {value!r:.80}")
        return value
    if kind in ("tuple", "list") and isinstance(value, list):
        items = [
            parse(item, spec, allowed, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)
        ]
        return tuple(items) if kind == "tuple" else items
    raise ValueError(f"{where} is an unknown entry {node!r:.80}")


def _same_name(allowed: dict[str, type], qualname: str) -> type | None:
    """The one passed class named `qualname`, whatever its module: a class saved from a
    script or notebook is `__main__:Rings` there, and imported from `rings` here."""
    found = {
        cls for key, cls in allowed.items() if ":" in key and key.rpartition(":")[2] == qualname
    }
    return found.pop() if len(found) == 1 else None


def resolve(name: str, allowed: dict[str, type]) -> tuple[str, type | None]:
    """`(name, class)` of a saved class name (the class None if `allowed` lacks it)."""
    name = OLD_NAMES.get(name, name)
    module_name, _, qualname = name.rpartition(":")
    if module_name.split(".")[0] == "diffprims" and f"diffprims.{qualname}" in allowed:
        name = f"diffprims.{qualname}"  # a public type saved under a private module
    return name, allowed.get(name) or _same_name(allowed, qualname)


def missing_classes(node: Any, allowed: dict[str, type]) -> list[str]:
    """Every class name in a header's tree that `allowed` lacks, in order, once each."""
    found: list[str] = []
    if isinstance(node, dict):
        name = node.get("module")
        if isinstance(name, str):
            name, cls = resolve(name, allowed)
            found += [] if cls is not None else [name]
        for value in node.values():
            found += missing_classes(value, allowed)
    elif isinstance(node, list):
        for value in node:
            found += missing_classes(value, allowed)
    return list(dict.fromkeys(found))


def parse_module(node: dict, spec: Spec, allowed: dict[str, type], where: str, depth: int):
    name, fields = node["module"], node.get("fields")
    if not isinstance(name, str) or not isinstance(fields, dict) or len(node) != 2:
        raise ValueError(f"{where} is a damaged module entry {node!r:.80}")
    name, cls = resolve(name, allowed)
    if cls is None:
        raise UnknownClassError(name)
    init = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(fields) - set(init))
    required = [
        key
        for key, f in init.items()
        if key not in fields
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if unknown or required:
        raise ClassMismatchError(_mismatch(name, cls, list(fields), list(init), where))
    parsed = {
        key: parse(value, spec, allowed, f"{where}.{key}", depth + 1)
        for key, value in fields.items()
    }
    return Node(cls, parsed)


def _listed(names: list[str]) -> str:
    shown = ", ".join(f"`{name:.40}`" for name in names[:12])
    return (shown + (f" and {len(names) - 12} more" if len(names) > 12 else "")) or "none"


def _mismatch(saved: str, cls: type, fields: list[str], init: list[str], where: str) -> str:
    """Why a class of the caller's cannot take the fields saved for it, and what to do."""
    module, _, qualname = saved.rpartition(":")
    origin = f" (saved from module `{module:.80}`)" if module else ""
    at = "" if where == "the model" else f" at `{where.removeprefix('the '):.80}`"
    only_file = [name for name in fields if name not in init]
    only_class = [name for name in init if name not in fields]
    if is_diffprims(cls):  # the file's version of a diffprims type: another release's
        import diffprims

        return (
            f"its `{qualname:.80}`{at} does not match `diffprims.{cls.__name__}` of this "
            f"diffprims ({diffprims.__version__}): fields only in the file: "
            f"{_listed(only_file)}; only in this diffprims: {_listed(only_class)}. It was "
            "written by another version of diffprims (or edited by hand): upgrade "
            "diffprims, or load it with the version that wrote it"
        )
    return (
        f"the class passed, `{cls.__module__}.{cls.__qualname__}`, does not match the "
        f"`{qualname:.80}`{origin}{at} in the file: fields only in the file: "
        f"{_listed(only_file)}; only in the class: {_listed(only_class)}. The class has "
        "changed since the file was saved (or is another class of that name): load the "
        f"file with `{cls.__name__}` as it was then, or save the model again from the "
        "class as it is now"
    )


def changed_class_advice(tree: Any) -> str | None:
    """What to do when a parsed header holding classes of the caller's is refused (one
    of them may have changed since the save); None when it holds only diffprims'."""
    mine = list(dict.fromkeys(_user_classes(tree)))
    if not mine:
        return None
    names = ", ".join(f"`{cls.__module__}.{cls.__qualname__}`" for cls in mine[:8])
    return (
        f"It holds your {'class' if len(mine) == 1 else 'classes'} {names}: if one changed "
        "since the file was saved, load the file with the class as it was then, or save "
        "the model again from the class as it is now."
    )


def _user_classes(tree: Any) -> list[type]:
    if isinstance(tree, Node):
        mine = [] if is_diffprims(tree.cls) else [tree.cls]
        return mine + [cls for value in tree.fields.values() for cls in _user_classes(value)]
    if isinstance(tree, tuple | list):
        return [cls for item in tree for cls in _user_classes(item)]
    return []


def build(tree: Any, arrays: list[Any]) -> Any:
    """The model described by a parsed header, with `arrays` in its slots."""
    if isinstance(tree, Node):
        return tree.cls(**{k: build(v, arrays) for k, v in tree.fields.items()})
    if isinstance(tree, Slot):
        return arrays[tree.index]
    if isinstance(tree, tuple | list):
        return type(tree)(build(item, arrays) for item in tree)
    return tree


def rebuild(tree: Any) -> Any:
    """`tree` with every module made again by its constructor (so its checks run)."""
    if isinstance(tree, eqx.Module):
        fields = dataclasses.fields(tree)
        return type(tree)(**{f.name: rebuild(getattr(tree, f.name)) for f in fields if f.init})
    if isinstance(tree, tuple | list):
        return type(tree)(rebuild(item) for item in tree)
    return tree


def read_record(stream: io.BytesIO, like: Any, where: str) -> Any:
    """One `.npy` record, its shape and dtype checked against `like` before reading."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    scalar = not hasattr(like, "shape")
    wanted = None if scalar else np.dtype(like.dtype)
    if wanted is not None and _raw_bytes_of(dtype, wanted):
        dtype = wanted  # NumPy writes bfloat16 (and other ml_dtypes) as raw bytes
    # A number saved before it became an array (SSIM's `max_value` before 0.2): cast.
    kind = getattr(wanted, "kind", None)
    setting = not scalar and shape == tuple(like.shape) == () and dtype.kind == "f" == kind
    if dtype.hasobject or (
        not scalar and (shape != tuple(like.shape) or (dtype != like.dtype and not setting))
    ):
        expected = "a number" if scalar else f"{np.dtype(like.dtype).name}{list(like.shape)}"
        raise ValueError(f"{where} holds {dtype.name}{list(shape)} where {expected} belongs")
    if scalar and shape != ():
        raise ValueError(f"{where} holds {dtype.name}{list(shape)} where a number belongs")
    size = math.prod(shape) * dtype.itemsize
    data = stream.read(size)
    if len(data) != size:
        raise ValueError(f"{where} is cut short ({len(data)} of {size} bytes)")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").copy()
    return (
        type(like)(array.item()) if scalar else jnp.asarray(array.astype(like.dtype, copy=False))
    )


def _raw_bytes_of(stored: np.dtype, wanted: np.dtype) -> bool:
    """Whether `stored` is the plain `void` dtype NumPy's `.npy` header gives an
    ml_dtypes type such as bfloat16 (itself a `void` kind to NumPy) of `wanted`'s size."""
    plain = stored.kind == "V" and stored.names is None and stored.subdtype is None
    same_size = stored.itemsize == wanted.itemsize
    return plain and same_size and wanted.kind == "V" and wanted.names is None


def read_leaves(payload: bytes, template: Any) -> Any:
    """The leaves of `template` filled from `payload`, every record checked first."""
    stream = io.BytesIO(payload)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for path, leaf in leaves:
        where = f"the payload's record for `{jax.tree_util.keystr(path) or 'model'}`"
        if isinstance(leaf, jax.ShapeDtypeStruct) or eqx.is_array_like(leaf):
            leaf = read_record(stream, leaf, where)
        out.append(leaf)
    extra = len(payload) - stream.tell()
    if extra:
        raise ValueError(f"the payload has {extra} bytes after the last record")
    return jax.tree_util.tree_unflatten(treedef, out)


def unavailable_dtype(arrays: list[jax.ShapeDtypeStruct]) -> str | None:
    """Why this process cannot hold the arrays (64-bit types without `jax_enable_x64`)."""
    wide = next((a.dtype for a in arrays if canonicalize_dtype(a.dtype) != a.dtype), None)
    if wide is None:
        return None
    return (
        f"it holds {np.dtype(wide).name} arrays (saved with `jax_enable_x64`), which this "
        'process cannot hold (64-bit types are off). Call `jax.config.update("jax_enable_x64", '
        "True)` before loading it, or save a float32 copy where it was made."
    )


#: How to save and load a model `load` cannot rebuild by its constructors.
SERIALISE_LEAVES = (
    "save it with `eqx.tree_serialise_leaves(path, model)` and read it into a model of "
    "the same structure with `eqx.tree_deserialise_leaves(path, like)`."
)


def encode(node: Any, where: str) -> Any:
    """The structure of a model as JSON: classes, static values, array shapes."""
    if isinstance(node, eqx.Module):
        cls = type(node)
        fields = {
            field.name: encode(getattr(node, field.name), f"{where}.{field.name}")
            for field in dataclasses.fields(node)
            if field.init
        }
        return {"module": public_name(cls), "fields": fields}
    if eqx.is_array(node):
        if is_traced(node):
            raise TypeError(f"`save` needs a concrete model; {where} is traced under jit/vmap.")
        return {"array": list(node.shape), "dtype": str(node.dtype)}
    if node is None or isinstance(node, bool | int | float | str):
        if isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"`save` needs finite numbers; {where} is {node!r}.")
        return {"value": node}
    if isinstance(node, tuple | list):
        kind = "tuple" if isinstance(node, tuple) else "list"
        return {kind: [encode(item, f"{where}[{i}]") for i, item in enumerate(node)]}
    raise TypeError(
        f"`save` can store eqx.Modules of arrays, numbers, strings and tuples; {where} is "
        f"{describe(node)}. A model holding functions (an `eqx.nn.MLP`'s activation) "
        f"cannot be rebuilt from a file: {SERIALISE_LEAVES}"
    )
