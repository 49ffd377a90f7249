"""Printed structures that are the same in every process: what fingerprints and a
checkpoint's header hash where a pytree's settings are not arrays."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
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
    """`tree`'s printed structure, the same in every process: its settings' sets (the
    static fields' values, printed in its node data) listed sorted."""
    structure = jax.tree.structure(tree)
    nodes, data = [structure], []
    while nodes:
        node = nodes.pop()
        data.append(node.node_data())
        nodes.extend(node.children())
    return without_addresses(sets_sorted(str(structure), data))


def sets_sorted(text: str, value: Any) -> str:
    """`text`, a print of `value`, with the sets inside `value` printed in sorted order.

    A set's order follows its items' hashes, which for strings change from process to
    process (`PYTHONHASHSEED`): a checkpoint of a model with a `frozenset` setting was
    refused in the next process as having other settings. A print that holds none is
    returned as it is (the headers of checkpoints written before match)."""
    for found in sorted(_sets_in(value), key=lambda s: -len(repr(s))):
        text = text.replace(repr(found), _sorted_repr(found))
    return text


def _sets_in(value: Any, depth: int = 0) -> Iterator[set | frozenset]:
    """The sets in `value`, through tuples, lists, dicts, sets and dataclasses."""
    if depth > 32:
        return
    if isinstance(value, set | frozenset):
        yield value
        items: Any = value
    elif isinstance(value, tuple | list):
        items = value
    elif isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [getattr(value, f.name, None) for f in dataclasses.fields(value)]
    else:
        return
    for item in items:
        yield from _sets_in(item, depth + 1)


def _sorted_repr(value: Any) -> str:
    """`repr(value)` with the items of its sets sorted by their own such prints."""
    if isinstance(value, set | frozenset):
        items = ", ".join(sorted(_sorted_repr(item) for item in value))
        if isinstance(value, frozenset):
            return f"frozenset({{{items}}})" if items else "frozenset()"
        return f"{{{items}}}" if items else "set()"
    if isinstance(value, tuple):
        items = [_sorted_repr(item) for item in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return sets_sorted(repr(value), value)
