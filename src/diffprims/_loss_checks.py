"""What `fit` and `paint` check of a loss before they compile a step with it, and its
per-pixel maps sampled at a minibatch's pixels or resized with the target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._losses import AbstractLoss, AbstractPointwiseLoss, Scaled, Sum, Weighted
from ._validate import describe, is_traced


def check_weight_maps(loss: AbstractLoss, shape: tuple[int, int]) -> None:
    """Every per-pixel map in `loss` must be of the target's `(H, W)`: sampled at the
    pixels a minibatch draws, a map of another size would be read out of range (and
    JAX clamps such reads silently)."""
    maps = [
        node
        for node in jax.tree.leaves(loss, is_leaf=lambda node: isinstance(node, Weighted))
        if isinstance(node, Weighted)
    ]
    for node in maps:
        if tuple(node.weights.shape[:2]) != tuple(shape):
            raise ValueError(
                f"`loss`: `Weighted` weights must be a map of the target's size {tuple(shape)} "
                f"(H, W); got weights of shape {tuple(node.weights.shape)}. Build the "
                "weights from the target you fit, e.g. `dp.edge_weights(target)`."
            )
        check_weight_maps(node.loss, shape)


def check_loss_output(loss: AbstractLoss, pred: Any, target: Any) -> None:
    """Raise a clear error now if `loss` does not return a float scalar for these shapes."""
    try:
        # Through a lambda: as the function itself, a loss holding a tracer (a
        # `jax.tree_util.Partial` of a traced weight) was a cache key JAX compared with
        # `==`, which turned the tracer into a bool and failed.
        out = jax.eval_shape(lambda p, t: loss(p, t), pred, target)
    except Exception as error:  # the user's loss failed; say so plainly
        raise ValueError(
            f"`loss` failed on a prediction of shape {tuple(pred.shape)}; got the error: {error}"
        ) from error
    if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(
            "`loss` must return a float scalar; got "
            f"{describe(out)}. Reduce it, e.g. with `jnp.mean`."
        )


def restrict_to_pixels(loss: AbstractLoss, indices: Array) -> AbstractLoss:
    """The loss seen on the flat pixel `indices` only: per-pixel maps are sampled."""
    return map_weight_maps(loss, lambda w: w.reshape(-1, w.shape[-1])[indices])


def on_sampled_pixels(loss: AbstractLoss, count: int) -> AbstractLoss:
    """The loss as a step on `count` sampled pixels sees it (all pixel 0: for checking
    its output abstractly). The indices come from NumPy: eagerly, `jnp.zeros` compiled
    two programs of a cold first call."""
    return restrict_to_pixels(loss, jax.device_put(np.zeros((count,), np.int32)))


def map_weight_maps(loss: AbstractLoss, fn: Callable[[Array], Array]) -> AbstractLoss:
    """`loss` with every `Weighted` map (in nested ones too) replaced by `fn(map)`."""

    def one(node):
        if not isinstance(node, Weighted):
            return node
        parts = fn(node.weights), map_weight_maps(node.loss, fn)
        return eqx.tree_at(lambda w: (w.weights, w.loss), node, parts)

    return jax.tree.map(one, loss, is_leaf=lambda node: isinstance(node, Weighted))


def with_checked_settings(loss: Any) -> Any:
    """`loss` with every loss in it that checks its own traced settings (`_checked`:
    SSIM's `max_value`) checked, for `fit` to call outside its trusted steps."""

    def own(x: Any) -> bool:
        return isinstance(x, AbstractLoss) and type(x)._checked is not AbstractLoss._checked

    return jax.tree.map(lambda x: x._checked() if own(x) else x, loss, is_leaf=own)


def check_loss_on(
    loss: AbstractLoss, target: Any, batch: int | None, advice: Callable[[str], str]
) -> None:
    """Evaluate `loss` abstractly on what each step gives it: whole images (`batch`
    None) or `batch` sampled `(P, C)` values, per-pixel maps sampled along. One that
    fails on the samples but works on whole images is refused with `advice(error)`."""
    height, width, channels = target.shape
    check_weight_maps(loss, (height, width))
    zero = weighs_nothing(loss)
    if zero is not None:  # as an empty `Sum` is refused: a fit would change nothing
        raise ValueError(
            f"`loss` is 0 whatever the prediction: {zero}, so nothing would train. Give it "
            "a weight that is not 0 (a map of zeros is often a mask read wrong)."
        )
    shape = (height, width, channels) if batch is None else (batch, channels)
    sample = jax.ShapeDtypeStruct(shape, target.dtype)
    try:
        # What each step calls: per-pixel maps sampled at the batch's pixels.
        stepped = loss if batch is None else on_sampled_pixels(loss, batch)
        check_loss_output(stepped, sample, sample)
    except ValueError as error:
        if batch is None or not str(error).startswith("`loss` failed"):
            raise
        try:
            check_loss_on(loss, target, None, advice)
        except ValueError:  # whole images fail too: a bug, said as the steps would meet it
            raise error from None
        raise ValueError(advice(str(error))) from None
    if batch is not None:
        problem = sample_order_matters(loss, shape, target.dtype)
        if problem is not None:
            raise ValueError(advice(problem))


def sample_order_matters(loss: AbstractLoss, shape: tuple, dtype: Any) -> str | None:
    """Why `loss` cannot be fitted on `shape` `(P, C)` sampled values, if it changes
    when the samples are put in another order, else None.

    A loss that runs on `(P, C)` values can still be one that needs whole images: a
    difference along the first axis (an edge or gradient loss) compares unrelated
    samples as if they were neighbouring pixels, without any error. A loss that is a
    mean or sum over pixels does not depend on their order. Tried on fixed random
    values, evaluated now (also under a trace); only the library's own pointwise
    losses, which cannot depend on it, are not tried, nor a loss with traced settings."""
    if _pointwise_by_construction(loss) or any(map(is_traced, jax.tree.leaves(loss))):
        return None
    random = np.random.default_rng(0)
    pred, target = (random.uniform(0.05, 0.95, shape).astype(dtype) for _ in range(2))
    order = random.permutation(shape[0])
    try:
        with jax.ensure_compile_time_eval():  # under a trace, evaluated all the same
            stepped = on_sampled_pixels(loss, shape[0])
            before = float(stepped(jnp.asarray(pred), jnp.asarray(target)))
            after = float(stepped(jnp.asarray(pred[order]), jnp.asarray(target[order])))
    except Exception:  # not concrete after all (a tracer it closes over): not tried
        return None
    if not (np.isfinite(before) and np.isfinite(after)):
        return None
    if abs(before - after) <= 1e-4 * max(abs(before), abs(after)) + 1e-12:
        return None
    return (
        f"`loss` changed when the same sampled pixels came in another order ({before:.6g} "
        f"against {after:.6g}), so it compares samples with each other (a difference along "
        "the first axis, an edge or a blur), and samples drawn across the image are not "
        "neighbouring pixels."
    )


def _pointwise_by_construction(loss: Any) -> bool:
    """Whether every loss in `loss` is one of the library's own pointwise losses (or a
    sum, scaling or weighting of them)."""
    if isinstance(loss, Sum):
        return all(map(_pointwise_by_construction, loss.terms))
    if isinstance(loss, Scaled | Weighted):
        return _pointwise_by_construction(loss.loss)
    return isinstance(loss, AbstractPointwiseLoss) and type(loss).__module__ == "diffprims._losses"


def weighs_nothing(loss: Any) -> str | None:
    """Why `loss` is 0 for every input (a concrete weight of 0, a weight map of zeros,
    in every term of a sum), else None (traced weights are not looked at)."""
    if isinstance(loss, Sum):
        reasons = [weighs_nothing(term) for term in loss.terms]
        return None if None in reasons else "; ".join(dict.fromkeys(map(str, reasons)))
    if isinstance(loss, Scaled):
        weight = loss.weight
        if not is_traced(weight) and np.ndim(weight) == 0 and float(weight) == 0:
            return "its weight is 0"
        return weighs_nothing(loss.loss)
    if isinstance(loss, Weighted) and not is_traced(loss.weights):
        return "its `Weighted` map is all zeros" if not np.any(np.asarray(loss.weights)) else None
    return None
