"""A new learning rate, the same compiled step: an optimizer's `update` whose float
constants are inputs of the program rather than part of it.

`optax.adam(1e-2)` and `optax.adam(3e-2)` trace to programs that differ only in the
literals the learning rate became (so do two `adamw`s with other betas, or two cosine
schedules with other peaks). `lift` traces an optimizer's `update` once on the step's
shapes, turns every floating-point scalar literal at the top of that program, and every
constant it captured, into an input, and returns a `LiftedUpdate`: the program, a
static field equal to any other with the same print, beside those values, array leaves.
The step loop, compiled with `filter_jit`, then compiles once for a sweep over learning
rates and runs each with its values.

What cannot be lifted keeps the path of `_canon` (the whole program is the key): a
literal inside a nested program (an inner `jax.jit`, a `lax.cond` branch), an update
that calls the objective again (`optax.lbfgs`'s line search) or holds functions the
print cannot show (a `custom_jvp`, a callback). Values traced outside (an eager
`jax.vmap` over the learning rate) are lifted as they are, for that trace only.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Var, jaxpr_as_fun
from jaxtyping import Array

from .._validate import is_traced
from ._canon import Memo, abstract, optimizer_update, program_print, signature

# (id(optimizer), structures) -> (optimizer, its LiftedUpdate or None); holding the
# optimizer keeps its id from being reused while the entry lives.
_LIFTED = Memo()


class Program:
    """A traced `update`: `jaxpr` takes the lifted values, then the leaves of
    `(grads, opt_state, params, value)`, and returns those of `(updates, opt_state)`.
    Equal to (and hashed as) any program with the same print."""

    def __init__(self, jaxpr: Jaxpr, in_tree: Any, out_tree: Any, printed: str):
        self.jaxpr, self.in_tree, self.out_tree, self.printed = jaxpr, in_tree, out_tree, printed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Program) and other.printed == self.printed

    def __hash__(self) -> int:
        return hash(self.printed)


class LiftedUpdate(eqx.Module):
    """An optimizer's `update` as a program (static) and its float constants (leaves)."""

    program: Program = eqx.field(static=True)
    values: tuple[np.ndarray, ...]  # NumPy: `filter_jit` passes them in as arguments

    def __call__(self, grads: Any, opt_state: Any, params: Any, value: Array) -> Any:
        """`optimizer_update(optimizer, grads, opt_state, params, value, ...)`."""
        leaves, tree = jax.tree.flatten((grads, opt_state, params, value))
        if tree != self.program.in_tree:  # the cache's key is these structures: a bug
            raise AssertionError(f"lifted update for {self.program.in_tree}, got {tree}")
        inputs = self.program.jaxpr.invars[len(self.values) :]
        # Only `value` may differ: a loss that returns a weakly typed or another float.
        dtypes = [getattr(v.aval, "dtype") for v in inputs]  # noqa: B009 (AbstractValue)
        leaves = [jnp.asarray(x, dtype) for x, dtype in zip(leaves, dtypes, strict=True)]
        outputs = jaxpr_as_fun(ClosedJaxpr(self.program.jaxpr, []))(*self.values, *leaves)
        return jax.tree.unflatten(self.program.out_tree, outputs)


def lifted(optimizer: Any, params: Any, opt_state: Any, value: Any) -> LiftedUpdate | None:
    """`lift`, traced once per optimizer object and structures."""
    ident = (id(optimizer), signature((params, opt_state, value)))
    hit = _LIFTED.lookup(ident)
    if hit is None:
        made = lift(optimizer, params, opt_state, value)
        if made is not None and any(is_traced(v) for v in made.values):
            return made  # valid in this trace only: never kept
        hit = _LIFTED.setdefault(ident, (optimizer, made))
    return hit[1]


def lift(optimizer: Any, params: Any, opt_state: Any, value: Any = None) -> LiftedUpdate | None:
    """`optimizer`'s update on these shapes with its float constants lifted, or None
    where that cannot be done (see the module's docstring). `value` is the step's loss
    (its shape and dtype; default a float32 scalar): a float64 fit's optimizer must see
    the float64 loss, not one rounded to float32."""
    if getattr(optimizer, "update", None) is None:
        return None
    calls_objective = []

    def update(grads, state, params, value):
        def value_fn(_):
            calls_objective.append(True)
            return value

        return optimizer_update(optimizer, grads, state, params, value, value_fn)

    value = jax.ShapeDtypeStruct((), jnp.float32) if value is None else value
    args = (params, opt_state, params, jax.ShapeDtypeStruct(value.shape, value.dtype))
    try:
        closed, out = jax.make_jaxpr(update, return_shape=True)(*abstract(args))
        # A value traced outside (`optax.adam(lr)` under an eager `jax.grad` or `jax.vmap`
        # over `lr`) stays a tracer: an input like any other, so the step is not compiled
        # anew for each call, and the derivative flows through it.
        consts = [c if is_traced(c) else np.asarray(c) for c in closed.consts]
    except Exception:
        return None
    if calls_objective or closed.jaxpr.effects:
        return None
    jaxpr, literals = _lift_literals(closed.jaxpr)
    printed = program_print(ClosedJaxpr(jaxpr, []), (args, out))
    if printed is None:
        return None
    program = Program(jaxpr, jax.tree.structure(args), jax.tree.structure(out), printed)
    # NumPy arrays: leaves `filter_jit` passes in as arguments. `jnp.asarray` ran an
    # eager conversion each, about 8 ms apiece on a busy first `paint` (0.5 s in all).
    return LiftedUpdate(program, (*literals, *consts))


def _lift_literals(jaxpr: Jaxpr) -> tuple[Jaxpr, list[np.ndarray]]:
    """`jaxpr` with each floating-point scalar literal of its equations, then each of
    its constants, as its first inputs; and the literals' values in that order."""
    # One input per occurrence: sharing inputs between equal values would make the
    # program depend on coincidences (a clip of 0.1 beside lion's 1 - b1 = 0.1).
    lifted, values, eqns = [], [], []
    for eqn in jaxpr.eqns:
        invars = []
        for atom in eqn.invars:
            value = _float_scalar(atom)
            if value is not None:
                atom = Var(atom.aval)
                lifted.append(atom)
                values.append(value)
            invars.append(atom)
        eqns.append(eqn.replace(invars=invars))
    inputs = [*lifted, *jaxpr.constvars, *jaxpr.invars]
    info = jaxpr.debug_info
    names = [f"setting{i}" for i in range(len(lifted))]
    names += [f"constant{i}" for i in range(len(jaxpr.constvars))]
    names += list(info.arg_names or ("",) * len(jaxpr.invars))
    info = info._replace(arg_names=tuple(names))
    return Jaxpr((), inputs, jaxpr.outvars, eqns, jaxpr.effects, info), values


def _float_scalar(atom: Any) -> np.ndarray | None:
    """The value of `atom` if it is a floating-point scalar literal, else None."""
    aval = getattr(atom, "aval", None)
    dtype, shape = getattr(aval, "dtype", None), getattr(aval, "shape", None)
    if not isinstance(atom, Literal) or shape != () or dtype is None:
        return None
    return np.asarray(atom.val, dtype) if jnp.issubdtype(dtype, jnp.floating) else None
