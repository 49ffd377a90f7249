"""Printed structures that are the same in every process: what fingerprints and a
checkpoint's header hash where a pytree's settings are not arrays."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax

# Object addresses in a printed structure: equal structures must print alike.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# A function's repr once its address is dropped, nested names included
# (`<function main.<locals>.l1>`, `<function <lambda>>`).
FUNCTION = re.compile(r"<function (?:[^\s<>]|<[^\s<>]*>)*>")


def without_addresses(text: str) -> str:
    """`text` without object addresses (` at 0x...`), which differ from run to run."""
    return _ADDRESS.sub("", text)


def structure_text(tree: Any) -> str:
    """`tree`'s printed structure, the same in every process.

    `str` of its structure, which prints the static fields' values, unless these hold a
    set: a set's order follows its items' hashes, which for strings change from process
    to process (`PYTHONHASHSEED`), and a checkpoint of a model with a `frozenset`
    setting was refused in the next process as having other settings. Then the print
    is rebuilt node by node with every set sorted (`canonical`). A structure without
    sets prints as it did (the headers of checkpoints written before match).
    """
    structure = jax.tree.structure(tree)
    nodes, data = [structure], []
    while nodes:
        node = nodes.pop()
        data.append((node.node_data(), len(node.children())))
        nodes.extend(reversed(node.children()))
    if not any(_has_set(datum) for datum, _ in data):
        return without_addresses(str(structure))
    return without_addresses(" ".join(f"{canonical(d)}/{n}" for d, n in data))


def sets_sorted(text: str, value: Any) -> str:
    """`text`, a print of `value`, or `canonical(value)` where `value` holds a set."""
    return canonical(value) if _has_set(value) else text


def _has_set(value: Any, depth: int = 0) -> bool:
    """Whether `value` holds a set, through tuples, lists, dicts and dataclasses (equinox
    modules too)."""
    if depth > 64:
        return True  # too deep to look: print it with `canonical`, which stops there
    if isinstance(value, set | frozenset):
        return True
    keys = value.keys() if isinstance(value, dict) else ()
    return any(_has_set(item, depth + 1) for item in [*keys, *_parts(value).values()])


def _parts(value: Any) -> dict[str, Any]:
    """The parts of a container or dataclass that `canonical` prints, by name."""
    if isinstance(value, tuple | list):
        return {str(i): item for i, item in enumerate(value)}
    if isinstance(value, dict):
        return {canonical(key): item for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    return {}


def canonical(value: Any, depth: int = 0) -> str:
    """A print of `value` that names each container's type and lists a set's items
    sorted (by their own prints): the same in every process. Other values print as
    their `repr` (a set that only an object's own `repr` shows keeps its order)."""
    if depth > 64:
        return repr(value)
    kind = type(value).__qualname__
    if isinstance(value, set | frozenset):
        return f"{kind}{{{', '.join(sorted(canonical(v, depth + 1) for v in value))}}}"
    parts = _parts(value)
    if not parts and not isinstance(value, tuple | list | dict):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return f"{kind}()"
        return repr(value)
    items = ", ".join(f"{name}={canonical(part, depth + 1)}" for name, part in parts.items())
    return f"{kind}({items})"
