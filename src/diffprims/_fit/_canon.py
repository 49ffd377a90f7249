"""Same settings, same program: static parts of a fit identified by what they compute.

The step loop is compiled with `eqx.filter_jit`, whose cache keys on its static inputs.
An optax optimizer is a pair of closures and `dp.Loss(fn)` holds a function, so a
fresh `optax.adam(1e-2)` or a fresh `lambda` would be a new key, and a new compile,
though it computes exactly what the last one did. `_loop._canonical_problem` traces the
optimizer's `update` (and a loss holding functions) to a jaxpr on the shapes the step
will use, fingerprints it (the jaxpr's text and the values of its constants), and hands
back the first object seen with that fingerprint, so the compiled step is found again.

It changes nothing global: no JAX setting, no persistent cache. Anything it cannot
trace or fingerprint (a closure over a traced value, say) passes through unchanged: a
new compile, never a wrong program.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import hashlib
import inspect
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr

from ._printed import FUNCTION, structure_text, without_addresses
from ._update import optimizer_update

#: Entries kept by each cache (optimizers, losses): a sweep over this many settings
#: still hits; older ones are dropped (their compiled steps then compile again).
CACHE_SIZE = 64


def abstract(tree: Any) -> Any:
    """`tree` with its arrays replaced by their shapes and dtypes (weak types kept)."""

    def leaf(x):
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            weak = bool(getattr(getattr(x, "aval", None), "weak_type", False))
            return jax.ShapeDtypeStruct(x.shape, x.dtype, weak_type=weak)
        return x

    return jax.tree.map(leaf, tree)


def signature(tree: Any) -> tuple:
    """Structure, shapes and dtypes of a pytree's array leaves (hashable)."""
    leaves, treedef = jax.tree.flatten(tree)
    return (treedef, tuple(_leaf(x) for x in leaves))


def _leaf(x: Any) -> Any:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return (tuple(x.shape), str(x.dtype))
    return (type(x), x)  # a Python scalar: static to `filter_jit`, so part of the key


def fingerprint(
    fn: Callable, *args: Any, portable: bool = False, exact: bool = True
) -> str | None:
    """SHA-256 of `fn`'s jaxpr on abstract `args`, of its constants' values and of the
    pytree structures going in and out; None when `fn` cannot be traced there or closes
    over traced values. `portable` drops object addresses from the jaxpr's text too, so
    the print is the same in another process (a checkpoint's record). With `exact`
    (sharing a compiled step), None also where the text cannot show everything (a
    `custom_jvp` rule, a callback); without (a checkpoint's record, which must tell a
    `relu` loss from an `L1 + relu` one), the print of what it does show.

    The structures count: two optimizers whose `update`s compute the same arithmetic
    but keep different states (`optax.sgd` and `optax.scale`) trace to one jaxpr, and
    must not share a compiled step.
    """
    exact_print, loose_print = fingerprints(fn, *args, portable=portable)
    return exact_print if exact else loose_print


def fingerprints(
    fn: Callable, *args: Any, portable: bool = False
) -> tuple[str | None, str | None]:
    """`fingerprint` exact and not, from one trace (the exact one None where the text
    cannot show everything; the other then the print of what it does show)."""
    try:
        closed, out = jax.make_jaxpr(fn, return_shape=True)(*abstract(args))
    except Exception:
        return None, None
    exact = program_print(closed, (args, out), portable=portable, exact=True)
    if exact is not None:
        return exact, exact
    return None, program_print(closed, (args, out), portable=portable, exact=False)


def program_print(
    closed: ClosedJaxpr, trees: Any, *, portable: bool = False, exact: bool = True
) -> str | None:
    """`fingerprint`'s SHA-256 of a traced program: its text, the structures of
    `trees` (what goes in and out) and the values of its constants, nested ones too."""
    try:
        text = str(closed.jaxpr)
        digest = hashlib.sha256((without_addresses(text) if portable else text).encode())
        for tree in trees:
            digest.update(structure_text(tree).encode())
        consts, complete = _constants(closed)
        if exact and not complete:
            return None
        for const in consts:
            value = np.asarray(const)
            digest.update(f"{value.dtype}{value.shape}".encode())
            digest.update(value.tobytes())
    except Exception:
        return None
    return digest.hexdigest()


def _constants(closed: Any) -> tuple[list, bool]:
    """Every constant of `closed` and of the programs nested in it (an inner `jax.jit`
    keeps what it closes over as its own constants, which the printed text leaves out),
    and whether that is all: not when an equation holds a Python function the text
    cannot show (a `custom_jvp` or `custom_vjp` rule, a callback), so two losses
    differing only there must not share a compiled step."""
    found, complete = list(closed.consts), True
    todo = [closed.jaxpr]
    while todo:
        for eqn in todo.pop().eqns:
            name = eqn.primitive.name
            complete = complete and "custom" not in name and "callback" not in name
            for item in parameter_items(eqn):
                if isinstance(item, ClosedJaxpr):
                    found.extend(item.consts)
                    todo.append(item.jaxpr)
                elif isinstance(item, Jaxpr):
                    todo.append(item)
                elif inspect.isroutine(item) or hasattr(item, "call_wrapped"):
                    complete = False  # a function, or jax's wrapper of one
    return found, complete


def parameter_items(eqn: Any) -> Iterator[Any]:
    """`eqn`'s parameters, those that are tuples or lists item by item."""
    for value in eqn.params.values():
        yield from value if isinstance(value, (tuple, list)) else (value,)


def nested_programs(eqn: Any) -> list[ClosedJaxpr]:
    """The programs held in `eqn`'s parameters (an open one as closed over nothing)."""
    return [
        item if isinstance(item, ClosedJaxpr) else ClosedJaxpr(item, [])
        for item in parameter_items(eqn)
        if isinstance(item, (ClosedJaxpr, Jaxpr))
    ]


class Memo:
    """A least-recently-used map of at most `CACHE_SIZE` entries, safe to share between
    threads (`paint` runs its restarts in threads; so may a user's sweep)."""

    def __init__(self) -> None:
        self._items: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, key: Any) -> Any:
        """The value at `key` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def setdefault(self, key: Any, value: Any) -> Any:
        """The value at `key`, stored as `value` if there is none (the oldest entry
        dropped past `CACHE_SIZE`)."""
        with self._lock:
            value = self._items.setdefault(key, value)
            self._items.move_to_end(key)
            while len(self._items) > CACHE_SIZE:
                self._items.popitem(last=False)
            return value


# The run (a `fit` or `paint` call: `one_run`) that identities are trusted within. The
# same loss or optimizer object may compute something else in the next call (a bound
# method reading `self.weight`, a schedule reading a global that changed), so each run
# traces them again once; its later dispatches find them by identity.
_RUN: contextvars.ContextVar[int | None] = contextvars.ContextVar("diffprims_run", default=None)
_RUNS = itertools.count()


@contextlib.contextmanager
def one_run() -> Iterator[None]:
    """Within the block, losses and optimizers are traced again on first use."""
    token = _RUN.set(next(_RUNS))
    try:
        yield
    finally:
        _RUN.reset(token)


# Objects the library built that compute the same in every run (`paint`'s optimizer,
# made from its rates alone): found by identity across runs rather than traced again in
# each (25 ms a `paint` call). Held here, so their ids are not reused while they are.
_STABLE = Memo()


def stable_across_runs(obj: Any) -> Any:
    """Mark `obj` as computing the same in every run (a library-made optimizer); `obj`."""
    _STABLE.setdefault(id(obj), obj)
    return obj


def run_token(obj: Any = None) -> int | None:
    """The innermost `one_run` block's number (None outside any, and for an `obj`
    marked `stable_across_runs`)."""
    if obj is not None and _STABLE.lookup(id(obj)) is obj:
        return None
    return _RUN.get()


class _Cache:
    """`(run, identity, signature) -> (canonical object, fingerprint)`, and
    `fingerprint -> canonical`."""

    def __init__(self) -> None:
        self.seen = Memo()  # values (obj, canonical, print): holding obj keeps its id
        self.by_print = Memo()

    def get(
        self, ident: tuple, obj: Any, make_print: Callable[[], tuple[str | None, str | None]]
    ) -> tuple[Any, str | None]:
        """`make_print()`: the exact and loose fingerprints (`fingerprints`). Without an
        exact one (a `custom_jvp` rule the text cannot show), the loose one marks what
        the object computes in this run (a changed weight it reads is a new key) without
        sharing it with another."""
        ident = (run_token(), ident)
        hit = self.seen.lookup(ident)
        if hit is not None:
            return hit[1], hit[2]
        exact, loose = make_print()  # outside the locks: tracing takes a while
        if exact is not None:
            canonical, printed = self.by_print.setdefault(exact, obj), exact
        else:
            canonical, printed = obj, None if loose is None else f"loose|{loose}"
        return self.seen.setdefault(ident, (obj, canonical, printed))[1:]


_OPTIMIZERS = _Cache()
_LOSSES = _Cache()


def update_fingerprint(
    optimizer: Any, params: Any, opt_state: Any, *, portable: bool = False, exact: bool = True
) -> str | None:
    """`fingerprint` of what `optimizer_update` computes on these shapes, or None."""
    exact_print, loose_print = update_prints(optimizer, params, opt_state, portable=portable)
    return exact_print if exact else loose_print


def update_prints(
    optimizer: Any, params: Any, opt_state: Any, *, portable: bool = False
) -> tuple[str | None, str | None]:
    """`fingerprints` of what `optimizer_update` computes on these shapes (a constant
    `value_fn`: the objective is not the optimizer's), exact and loose, one trace."""

    def update(g, s, p, value):
        return optimizer_update(optimizer, g, s, p, value, lambda _: value)

    value = jax.ShapeDtypeStruct((), jnp.float32)
    return fingerprints(update, params, opt_state, params, value, portable=portable)


def canonical_optimizer(optimizer: Any, params: Any, opt_state: Any) -> tuple[Any, str | None]:
    """The first optimizer seen whose `update` traces to the same program on these
    shapes, and that program's fingerprint (None where it has none)."""
    if getattr(optimizer, "update", None) is None:
        return optimizer, None
    ident = (id(optimizer), signature((params, opt_state)))

    return _OPTIMIZERS.get(ident, optimizer, lambda: update_prints(optimizer, params, opt_state))


def canonical_loss(loss: Any, call: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """`loss` rebuilt on the structure of the first loss seen that has the same leaves
    and traces to the same program in `call(loss, *args)` (the step's use of it; `args`
    may be abstract), and that program's fingerprint (None where it has none).

    Equinox compares static fields by `==`, so a function (`dp.Loss(fn)`) compares by
    identity; this finds the compiled step again for a fresh but equal function.
    """
    leaves, treedef = jax.tree.flatten(loss)
    ident = (treedef, signature(leaves), signature(args))
    try:
        hash(ident)
    except TypeError:  # an unhashable static field: equinox could not cache it either
        return loss, None
    canonical, printed = _LOSSES.get(ident, treedef, lambda: loss_prints(loss, call, *args))
    return (loss if canonical is treedef else jax.tree.unflatten(canonical, leaves)), printed


def loss_fingerprint(
    loss: Any, call: Callable[..., Any], *args: Any, portable: bool = False, exact: bool = True
) -> str | None:
    """`loss_prints`' exact fingerprint, or with `exact=False` the loose one."""
    exact_print, loose_print = loss_prints(loss, call, *args, portable=portable)
    return exact_print if exact else loose_print


def loss_prints(
    loss: Any, call: Callable[..., Any], *args: Any, portable: bool = False
) -> tuple[str | None, str | None]:
    """The structure of `loss` (object addresses dropped: equal losses must have equal
    structures) and the program of `call(loss, *args)`, its array leaves abstract: what
    a compiled step with this loss computes, whatever its weights' values.

    Where the program's text shows all it computes, the names of the functions in the
    structure are dropped too: the same loss defined elsewhere (a script's body moved
    into `main()`, `<function main.<locals>.l1>`) is the same loss. Where it cannot (a
    `custom_jvp` rule), they are kept, to tell such losses apart: the loose print (the
    exact one is then None; where it can be had, both are it)."""
    shape = structure_text(loss)
    dynamic, static = eqx.partition(loss, eqx.is_array)
    # The arrays go in as a list: `dynamic`'s own structure names the functions again.
    leaves, treedef = jax.tree.flatten(dynamic)

    def with_loss(leaves, *a):
        return call(eqx.combine(jax.tree.unflatten(treedef, leaves), static), *a)

    exact_print, loose_print = fingerprints(with_loss, leaves, *args, portable=portable)
    if exact_print is not None:
        exact_print = f"{FUNCTION.sub('<function>', shape)}|{exact_print}"
        return exact_print, exact_print
    return None, None if loose_print is None else f"{shape}|{loose_print}"
