"""A new learning rate, the same compiled step: an optimizer's `update` whose numeric
constants are inputs of the program rather than part of it.

`optax.adam(1e-2)` and `optax.adam(3e-2)` trace to programs that differ only in the
literals the learning rate became (so do two `adamw`s with other betas, two cosine
schedules with other peaks, two `MultiSteps` accumulating over other counts). `lift`
traces an optimizer's `update` once on the step's shapes, turns every float or integer
scalar literal of that program and of the programs nested in it (a `lax.cond` branch,
as in `MultiSteps`, `apply_if_finite` and `reduce_on_plateau`; an inner `jax.jit`; a
loop's body), and every constant captured, into an input, and returns a
`LiftedUpdate`: the program, a static field equal to any other with the same print,
beside those values, array leaves. The step loop, compiled with `filter_jit`, then
compiles once for a sweep over learning rates and runs each with its values.

What cannot be lifted keeps the path of `_canon` (the whole program is the key): an
update that calls the objective again (`optax.lbfgs`'s line search) or holds functions
the print cannot show (a `custom_jvp`, a callback). Values traced outside (an eager
`jax.vmap` over the learning rate) are lifted as they are, for that trace only.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, jaxpr_as_fun
from jaxtyping import Array

from .._validate import is_traced
from ._canon import Memo, abstract, nested_programs, program_print, run_token, signature
from ._update import optimizer_update

# (run, id(optimizer), structures) -> (optimizer, its LiftedUpdate or None); holding
# the optimizer keeps its id from being reused while the entry lives.
_LIFTED = Memo()
# (update's text, settings, structures) -> its Program: each run traces its optimizer
# again (`one_run`), and an unchanged one skips the second trace and the print.
_PROGRAMS = Memo()


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
    """`lift`, traced once per optimizer object and structures in a run (`one_run`)."""
    ident = (run_token(optimizer), id(optimizer), signature((params, opt_state, value)))
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
    settings = _settings(closed.jaxpr)
    structures = (jax.tree.structure(args), jax.tree.structure(out))
    avals = tuple((a.shape, a.dtype, a.weak_type) for _, a in settings.values())
    shapes = tuple((np.shape(c), str(np.result_type(c))) for c in consts)
    ident = (str(closed.jaxpr), avals, shapes, structures)
    program = _PROGRAMS.lookup(ident)
    if program is None:
        try:
            jaxpr = _retraced(closed, settings, args)
        except Exception:
            return None
        printed = program_print(ClosedJaxpr(jaxpr, []), (args, out))
        if printed is None:  # (never kept: a program the print cannot show in full)
            return None
        program = _PROGRAMS.setdefault(ident, Program(jaxpr, *structures, printed))
    # NumPy arrays: leaves `filter_jit` passes in as arguments. `jnp.asarray` ran an
    # eager conversion each, about 8 ms apiece on a busy first `paint` (0.5 s in all).
    return LiftedUpdate(program, (*(v for v, _ in settings.values()), *consts))


def _settings(jaxpr: Jaxpr) -> dict[tuple, tuple[Any, jax.ShapeDtypeStruct]]:
    """Every numeric scalar literal of `jaxpr` and of the programs nested in it (a
    `lax.cond` branch, an inner `jax.jit`, a loop's body), and every constant of a
    nested program: `key -> (value, abstract value)` in the order met, keyed by its
    equation and operand (`(id(eqn), i)`) or program and place (`(id(closed), j)`).
    One key per occurrence, not one per value: sharing inputs between equal values
    would make the program depend on coincidences (a clip of 0.1 beside lion's
    1 - b1 = 0.1)."""
    found: dict[tuple, tuple[Any, jax.ShapeDtypeStruct]] = {}
    todo = [jaxpr]
    while todo:
        for eqn in todo.pop(0).eqns:
            for i, atom in enumerate(eqn.invars):
                value = _scalar(atom)
                if value is not None:
                    weak = bool(getattr(atom.aval, "weak_type", False))
                    aval = jax.ShapeDtypeStruct((), value.dtype, weak_type=weak)
                    found.setdefault((id(eqn), i), (value, aval))
            for closed in nested_programs(eqn):
                for j, const in enumerate(closed.consts):
                    value = const if is_traced(const) else np.asarray(const)
                    aval = jax.ShapeDtypeStruct(np.shape(value), value.dtype)
                    found.setdefault((id(closed), j), (value, aval))
                todo.append(closed.jaxpr)
    return found


def _scalar(atom: Any) -> np.ndarray | None:
    """The value of `atom` if it is a float or integer scalar literal, else None."""
    aval = getattr(atom, "aval", None)
    dtype, shape = getattr(aval, "dtype", None), getattr(aval, "shape", None)
    if not isinstance(atom, Literal) or shape != () or dtype is None:
        return None
    numeric = jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
    return np.asarray(atom.val, dtype) if numeric else None


def _retraced(closed: ClosedJaxpr, settings: dict, args: Any) -> Jaxpr:
    """`closed` traced again with each value in `settings` read from an input, and
    its constants as inputs: a program of `(*settings, *consts, *leaves of args)`.

    Retracing, rather than editing the equations, lets JAX build the nested programs:
    a branch or loop body run by `_evaluate` closes over the settings it reads, and
    `lax.switch`/`while_loop`/`scan` make them operands as they do for any closure.
    An inner `jax.jit` is evaluated in line."""
    keys = list(settings)
    n, m = len(keys), len(closed.consts)

    def program(*inputs):
        read = dict(zip(keys, inputs[:n], strict=True))
        return _evaluate(closed.jaxpr, inputs[n : n + m], inputs[n + m :], read)

    consts = [jax.ShapeDtypeStruct(np.shape(c), jnp.result_type(c)) for c in closed.consts]
    avals = [aval for _, aval in settings.values()]
    again = jax.make_jaxpr(program)(*avals, *consts, *jax.tree.leaves(abstract(args)))
    if again.consts:  # nothing is closed over: every value came in as an input
        raise ValueError("retraced update captured constants")
    return again.jaxpr


def _evaluate(jaxpr: Jaxpr, consts: Any, args: Any, read: dict) -> list:
    """`jaxpr` on `consts` and `args`, its literals at the keys of `read` taken from
    there, nested programs evaluated the same way (see `_retraced`)."""
    env: dict[Any, Any] = {}
    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def get(eqn, i, atom):
        if isinstance(atom, Literal):
            return read.get((id(eqn), i), atom.val)
        return env[atom]

    for eqn in jaxpr.eqns:
        ins = [get(eqn, i, atom) for i, atom in enumerate(eqn.invars)]
        outs = _bind(eqn, ins, read)
        if not eqn.primitive.multiple_results:
            outs = [outs]
        env.update(zip(eqn.outvars, outs, strict=True))
    return [atom.val if isinstance(atom, Literal) else env[atom] for atom in jaxpr.outvars]


def _bind(eqn: Any, ins: list, read: dict) -> Any:
    """One equation on `ins`: a call, branch or loop through `_evaluate` (so its own
    literals are read too), any other primitive bound as it was."""
    name, params = eqn.primitive.name, eqn.params

    def run(closed):
        consts = [read.get((id(closed), j), c) for j, c in enumerate(closed.consts)]
        return lambda *xs: _evaluate(closed.jaxpr, consts, xs, read)

    if name in ("jit", "pjit", "closed_call", "core_call"):
        return run(params.get("jaxpr") or params["call_jaxpr"])(*ins)
    if name == "cond":
        index, *ops = ins
        return jax.lax.switch(index, [run(b) for b in params["branches"]], *ops)
    if name == "while":
        nc, nb = params["cond_nconsts"], params["body_nconsts"]
        cond_consts, body_consts, init = ins[:nc], ins[nc : nc + nb], ins[nc + nb :]
        cond, body = run(params["cond_jaxpr"]), run(params["body_jaxpr"])
        return list(
            jax.lax.while_loop(
                lambda carry: cond(*cond_consts, *carry)[0],
                lambda carry: tuple(body(*body_consts, *carry)),
                tuple(init),
            )
        )
    if name == "scan":
        nc, nk = params["num_consts"], params["num_carry"]
        consts, init, xs = ins[:nc], ins[nc : nc + nk], ins[nc + nk :]
        body = run(params["jaxpr"])

        def step(carry, x):
            outs = body(*consts, *carry, *x)
            return tuple(outs[:nk]), tuple(outs[nk:])

        carry, ys = jax.lax.scan(
            step,
            tuple(init),
            tuple(xs),
            length=params["length"],
            reverse=params["reverse"],
            unroll=params["unroll"],
        )
        return [*carry, *ys]
    bind_params = eqn.primitive.get_bind_params(params)
    subfuns = []
    if isinstance(bind_params, tuple):  # JAX before 0.8: (functions, parameters)
        subfuns, bind_params = bind_params
    with eqn.ctx.manager:
        return eqn.primitive.bind(*subfuns, *ins, **bind_params)
