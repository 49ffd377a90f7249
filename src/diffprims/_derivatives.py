"""Which derivatives trace a call: the tiled renderer's gradient is reverse mode and first
order only, and the renderer and `fit` pick the scan where it cannot serve."""

from __future__ import annotations


def differentiating(forward: bool = False) -> bool:
    """Whether this call is being differentiated: traced by `jax.grad`, `jax.jacfwd`,
    `jax.linearize` (or with `forward`, by forward mode anywhere around it: `jax.jacfwd`,
    `jax.jvp`, `jax.hessian`, whose `jacfwd` wraps a `jacrev`), called eagerly or inside
    a `jax.jit` that is itself inside the differentiation; under `jax.jit` the
    differentiation comes after the trace and cannot be seen. Reads JAX's current trace
    and the traces around it; False if JAX moves them."""
    kinds = _differentiation_traces()
    return "JVPTrace" in kinds if forward else bool(kinds)


def differentiation_order() -> int:
    """How many differentiations trace this call (2 under `jax.grad(jax.grad(f))`, also
    with a `jax.jit` between them), as far as `differentiating` can see them."""
    return len(_differentiation_traces())


def _differentiation_traces() -> list[str]:
    """The kinds of JAX's differentiation traces around this call, innermost first."""
    try:
        from jax._src import core

        trace = core.trace_ctx.trace
    except (ImportError, AttributeError):  # pragma: no cover - a JAX without it
        return []
    kinds = []
    for _ in range(64):  # innermost first; a bound in case a trace were its own parent
        if trace is None:
            break
        if type(trace).__name__ in ("JVPTrace", "LinearizeTrace"):
            kinds.append(type(trace).__name__)
        trace = getattr(trace, "parent_trace", None)
    return kinds
