"""Composable losses: `(pred, target) -> scalar` modules that add and scale."""

from __future__ import annotations

import abc
import functools
import operator
from collections.abc import Callable
from typing import Any, cast

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._loss_inputs import (
    as_weight,
    check_pair,
    function_name,
    is_zero,
    reciprocal_weight,
    static_number,
)
from ._loss_text import scaled_doc, settings_doc, sum_doc
from ._validate import (
    check_float_array,
    check_values,
    describe,
    is_traced,
)

LossLike = Callable[[Array, Array], Array]


class AbstractLoss(eqx.Module):
    """A loss: called as `loss(pred, target) -> scalar`.

    `pred` and `target` have the same shape: a whole image `(H, W, C)`, or `(P, C)`
    values at sampled pixels when [`diffprims.fit`][] minibatches (in no particular
    order: a loss that depends on their order, such as a difference along the first
    axis, is refused there). Losses compose:
    `a + b` and `w * a` are losses too, and any plain function with the same signature
    can join a sum (`dp.L2() + my_loss`).

    ```python
    loss = dp.L2() + 10.0 * dp.NonNegative() + 5.0 * dp.KeepZeros()
    value = loss(pred, target)
    ```

    A loss is an `eqx.Module` that may hold arrays (weights, weight maps), so it is a
    pytree: `jax.jit(loss)` of one that does raises "unhashable type". Use
    `eqx.filter_jit(loss)`, or call the loss inside your own jitted function (it can be
    an argument of it, and `jax.vmap`ped over, like any pytree). It prints as the
    expression that built it (`L2() + 10.0 * NonNegative()`).
    """

    # NumPy defers to `__mul__`: `np.array([1., 2.]) * loss` made an array of two losses.
    __array_ufunc__ = None

    @abc.abstractmethod
    def __call__(self, pred: Array, target: Array) -> Float[Array, ""]:
        """The loss value, a scalar."""

    def __pdoc__(self, **kwargs: Any) -> Any:  # `SSIM(max_value=1.0, ...)`, not `f32[]`
        return settings_doc(self, kwargs)

    def __add__(self, other: Any) -> AbstractLoss:
        if is_zero(other):  # `loss + 0`, as `0 + loss` (which `sum([...])` needs)
            return self
        other = as_loss(other, "the right-hand side of `+`")
        return Sum(_terms(self) + _terms(other))

    def __radd__(self, other: Any) -> AbstractLoss:
        if is_zero(other):  # lets `sum([...])` work
            return self
        return Sum(_terms(as_loss(other, "the left-hand side of `+`")) + _terms(self))

    def __mul__(self, weight: Any) -> AbstractLoss:
        if callable(weight) or isinstance(weight, eqx.Module):
            raise TypeError(
                "Losses can be scaled by a number (`2.0 * loss`), not multiplied by "
                f"another loss; got {describe(weight)}."
            )
        return Scaled(weight, self)

    __rmul__ = __mul__

    def __truediv__(self, divisor: Any) -> AbstractLoss:
        return Scaled(reciprocal_weight(divisor, "loss divisor"), self)

    def __neg__(self) -> AbstractLoss:
        return Scaled(-1.0, self)

    def __sub__(self, other: Any) -> AbstractLoss:
        if is_zero(other):  # as `loss + 0`
            return self
        return self + (-as_loss(other, "the right-hand side of `-`"))

    def __rsub__(self, other: Any) -> AbstractLoss:  # `fn - loss`; `0 - loss` is `-loss`
        minuend = 0 if is_zero(other) else as_loss(other, "the left-hand side of `-`")
        return minuend + (-self)

    def _checked(self) -> AbstractLoss:  # its traced settings checked (fit's steps do not)
        return self


def _abs(x: Array) -> Array:
    """`|x|` with gradient 0 at 0 (JAX's `abs` has gradient 1 there): an exact match is
    a minimum that gradient descent stays at."""
    return jnp.where(x == 0, 0.0, jnp.abs(x))


class AbstractPointwiseLoss(AbstractLoss):
    """A loss that is the mean of a per-element error: `mean(pointwise(pred, target))`.

    Subclasses implement `pointwise`; pointwise losses can be weighted per pixel with
    [`diffprims.Weighted`][].
    """

    @abc.abstractmethod
    def pointwise(self, pred: Array, target: Array) -> Array:
        """The per-element error of `pred` against `target` (same shape), the shape of
        `pred`."""

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> Float[Array, ""]:
        pred, target = check_pair(pred, target, f"`{type(self).__name__}`")
        return jnp.mean(_errors(self, pred, target))


def _errors(loss: AbstractPointwiseLoss, pred: Array, target: Array) -> Array:
    """`loss.pointwise`, checked: one error per element of `pred` (as documented)."""
    errors = loss.pointwise(pred, target)
    if getattr(errors, "shape", None) != pred.shape:
        raise ValueError(
            f"`{type(loss).__name__}.pointwise` must return one error per element of the "
            f"prediction, shape {tuple(pred.shape)}; got {describe(errors)}. Return the "
            "error unreduced, e.g. `jnp.square(pred - target)`: the loss takes the mean."
        )
    return errors


class L2(AbstractPointwiseLoss):
    """Mean squared error: `mean((pred - target) ** 2)`."""

    def pointwise(self, pred: Array, target: Array) -> Array:
        return jnp.square(pred - target)


class L1(AbstractPointwiseLoss):
    """Mean absolute error: `mean(|pred - target|)`. Its gradient at an exact match is 0."""

    def pointwise(self, pred: Array, target: Array) -> Array:
        return _abs(pred - target)


class NonNegative(AbstractPointwiseLoss):
    """Penalty on negative predictions: `mean(max(-pred, 0))`; `target` is ignored.

    Use it to keep a fitted kernel free of negative lobes (which ring when applied).
    Being linear in `pred` against the quadratic [`diffprims.L2`][], its weight is
    relative to the kernel's scale: with a peak-1 kernel, `L2() + 4.0 * NonNegative()`
    removes the lobes of a rank-4 disk at +5 % L2 error (see
    [`diffprims.SeparableFilters`][] for the weight a kernel needs, and the trade-off
    with [`diffprims.KeepZeros`][]).

    **Arguments:**

    - `smoothing`: a number `d >= 0` (a static setting). Above 0, values in `[-d, 0)`
      are penalised `pred ** 2 / (2 d)` and values below `-d` by `-pred - d / 2`: the
      penalty's gradient falls to 0 at 0 instead of jumping, so a fit that reaches
      zeros (the corners of a disk) stays there instead of being kicked off them by
      every step, at the price of negatives down to about `-d`.
    """

    smoothing: float = eqx.field(static=True, default=0.0)

    def __init__(self, smoothing: float = 0.0):
        self.smoothing = static_number(smoothing, "smoothing")

    def pointwise(self, pred: Array, target: Array) -> Array:
        del target
        # Not `maximum(-pred, 0)`, whose gradient at 0 is half a step: a fit that reached
        # exact zeros was pushed off them (as `_abs` keeps L1 at rest on a match).
        if not self.smoothing:
            return jnp.where(pred < 0, -pred, 0.0)
        d = self.smoothing
        quadratic = jnp.where(pred < 0, pred * pred / (2 * d), 0.0)
        return jnp.where(pred < -d, -pred - d / 2, quadratic)


class KeepZeros(AbstractPointwiseLoss):
    """Penalty where the target is exactly zero: `mean((target == 0) * |pred|)`.

    Keeps the zero region of a target (the corners of a disk kernel) zero in the fit.
    It costs accuracy faster than [`diffprims.NonNegative`][]: with a peak-1 rank-4 disk,
    weight 0.3 (beside `3.0 * NonNegative()`) cuts the mass outside the disk from 4.2 %
    to 2.8 % at +8 % L2 error, weight 1 to 1.9 % at +19 % (see
    [`diffprims.SeparableFilters`][]).
    """

    def pointwise(self, pred: Array, target: Array) -> Array:
        return jnp.where(target == 0, _abs(pred), 0.0)


class Weighted(AbstractPointwiseLoss):
    """A pointwise loss weighted per pixel: `mean(weights * loss.pointwise(pred, target))`.

    With all weights 1 this equals `loss`. Under minibatching, [`diffprims.fit`][]
    samples the weights at the same pixels as the target. The loss has the dtype of
    `loss` on its own (at least float32): float64 weights do not widen a float32 loss.

    **Arguments:**

    - `loss`: a pointwise loss ([`diffprims.L2`][], [`diffprims.L1`][], ...).
    - `weights`: non-negative `(H, W)`, `(H, W, 1)` or `(H, W, C)` weight map.

    ```python
    weights = 1.0 + 4.0 * face_mask               # (H, W)
    loss = dp.Weighted(dp.L2(), weights)
    ```
    """

    loss: AbstractPointwiseLoss
    weights: Float[Array, "H W C"]

    def __init__(self, loss: AbstractPointwiseLoss, weights: Any):
        if not isinstance(loss, AbstractPointwiseLoss):
            raise TypeError(
                "`Weighted` needs a pointwise loss such as `dp.L2()` or `dp.L1()`; got "
                f"{describe(loss)}. To weight a sum, weight each term."
            )
        weights = check_float_array(weights, "weights")
        if weights.ndim == 2:
            weights = weights[..., None]
        if weights.ndim != 3:
            raise ValueError(
                f"`weights` must be an (H, W) or (H, W, C) map; got {describe(weights)}."
            )
        weights = check_values(weights, "weights", lower=0.0)
        self.loss = loss
        self.weights = weights

    def pointwise(self, pred: Array, target: Array) -> Array:
        weights = self.weights
        if (
            weights.ndim != pred.ndim
            or weights.shape[:-1] != pred.shape[:-1]
            or weights.shape[-1] not in (1, pred.shape[-1])
        ):
            sampled = " (P sampled pixels, C channels)" if pred.ndim == 2 else ""
            raise ValueError(
                "`Weighted` needs one weight per pixel of the prediction (the same "
                f"(H, W), with 1 or C channels); got weights of shape {tuple(weights.shape)} "
                f"for a prediction of shape {tuple(pred.shape)}{sampled}. Build the weights "
                "at the target's size; `dp.fit` and `dp.paint` sample them at the pixels "
                "they draw."
            )
        errors = _errors(self.loss, pred, target)
        # At least float32, no wider than the errors: float64 weights would promote.
        return weights.astype(jnp.promote_types(errors.dtype, jnp.float32)) * errors


class Sum(AbstractLoss):
    """The sum of losses: `sum(term(pred, target) for term in terms)`. Made by `+`."""

    terms: tuple[AbstractLoss, ...]

    def __init__(self, terms: Any):
        if isinstance(terms, AbstractLoss) or callable(terms):
            terms = (terms,)
        try:
            terms = tuple(terms)
        except TypeError:
            raise TypeError(
                f"`Sum` takes a sequence of losses; got {describe(terms)}. Write "
                "`dp.L2() + dp.L1()`."
            ) from None
        if not terms:  # a loss that is always 0: a fit would change nothing
            raise ValueError("`Sum` takes at least one loss; got none.")
        self.terms = tuple(as_loss(term, "terms") for term in terms)

    def __call__(self, pred: Array, target: Array) -> Float[Array, ""]:
        values = [term(pred, target) for term in self.terms]
        # From the first term: a float64 zero (jax_enable_x64) would promote float32.
        return functools.reduce(operator.add, values)

    def __pdoc__(self, **kwargs: Any) -> Any:  # prints `L2() + 10.0 * NonNegative()`
        return sum_doc(self.terms, Scaled, kwargs)


class Scaled(AbstractLoss):
    """A loss times a weight: `weight * loss(pred, target)`. Made by `weight * loss`.

    The weight is stored as an array, so fits with other weights reuse the compilation
    (and weights can be `vmap`ped over for a Pareto sweep).
    """

    weight: Float[Array, ""]
    loss: AbstractLoss

    def __init__(self, weight: Any, loss: AbstractLoss):
        weight = as_weight(weight, "loss weight")
        if weight.ndim != 0:
            raise ValueError(f"`loss weight` must be a scalar; got {describe(weight)}.")
        weight = check_values(weight, "loss weight")
        # float32, which a Python number (weakly typed) leaves a float32 loss in, even
        # under jax_enable_x64; a float64 array stays float64, as it does when traced.
        strong64 = weight.dtype == jnp.float64 and not getattr(weight, "weak_type", False)
        if not is_traced(weight) and not strong64:
            weight = weight.astype(jnp.float32)
        self.weight = weight
        self.loss = as_loss(loss, "loss")

    def __call__(self, pred: Array, target: Array) -> Float[Array, ""]:
        return self.weight * self.loss(pred, target)

    def __pdoc__(self, **kwargs: Any) -> Any:  # prints `10.0 * NonNegative()`
        return scaled_doc(self, Scaled, kwargs)


class Loss(AbstractLoss):
    """Any function `(pred, target) -> scalar` as a loss, so it adds and scales.

    A plain function joins a sum by itself (`dp.L2() + fn`), but Python cannot scale a
    function (`3.0 * fn` is a `TypeError`): wrap it, `3.0 * dp.Loss(fn)`.

    **Arguments:**

    - `fn`: a function `(pred, target) -> scalar`, called on `(H, W, C)` images or
      `(P, C)` sampled values (see [`diffprims.AbstractLoss`][]). It is static;
      [`diffprims.fit`][] keys its compiled step on what the step computes, so a new
      function object that computes the same thing (a lambda written again) reuses the
      compilation. A pytree holding arrays (an `eqx.Module` with weights, a learned or
      perceptual loss) keeps those arrays as the loss's own leaves: they are traced, not
      baked into the compiled step, and gradients reach them.

    ```python
    def luma_l2(pred, target):
        luma = jnp.array([0.299, 0.587, 0.114])
        return jnp.mean(((pred - target) @ luma) ** 2)

    loss = dp.L2() + 3.0 * dp.Loss(luma_l2)
    ```
    """

    fn: Callable[[Array, Array], Array] = eqx.field(static=True)
    #: `fn`'s array leaves when it is a pytree (`fn` keeps the rest), else None.
    arrays: Any = None

    def __init__(self, fn: Callable[[Array, Array], Array]):
        if not callable(fn) or isinstance(fn, type | AbstractLoss):
            raise TypeError(
                "`dp.Loss` wraps a function `(pred, target) -> scalar`; got "
                f"{describe(fn)}. Losses such as `dp.L2()` compose without it."
            )
        arrays, rest = eqx.partition(fn, eqx.is_array)
        if jax.tree.leaves(arrays):  # a module with weights: those stay dynamic
            self.fn, self.arrays = rest, arrays
        else:
            self.fn, self.arrays = fn, None

    def __call__(self, pred: Array, target: Array) -> Float[Array, ""]:
        fn = self.fn if self.arrays is None else eqx.combine(self.arrays, self.fn)
        out = fn(pred, target)
        # Each term checked (when traced: no cost in the step), not only a sum's total,
        # to which an integer term (a count, with no gradient) added silently.
        value = out if hasattr(out, "dtype") else None
        if not isinstance(out, float) and (
            value is None
            or jnp.shape(value) != ()
            or not jnp.issubdtype(value.dtype, jnp.floating)
        ):
            raise ValueError(
                f"A loss function must return a float scalar; `{function_name(self.fn)}` returned "
                f"{describe(out)}. Reduce it, e.g. with `jnp.mean` (an integer or boolean "
                "has no gradient)."
            )
        return jnp.asarray(out) if isinstance(out, float) else out


def _terms(loss: AbstractLoss) -> tuple[AbstractLoss, ...]:
    # Sums stay flat, so a printed loss reads like the expression that built it.
    return loss.terms if isinstance(loss, Sum) else (loss,)


def as_loss(loss: Any, name: str = "loss") -> AbstractLoss:
    """`loss` as an `AbstractLoss`: losses pass through, plain callables are wrapped."""
    if isinstance(loss, AbstractLoss):
        return loss
    if callable(loss) and not isinstance(loss, type):
        return Loss(cast(LossLike, loss))
    hint = ""
    if isinstance(loss, type):
        cls = ("dp." if loss.__module__.startswith("diffprims") else "") + loss.__name__
        hint = f" Did you mean `{cls}()` (an instance) instead of `{cls}`?"
    named = f"`{name}`" if name.isidentifier() else name  # no backticks in backticks
    raise TypeError(
        f"{named} must be a loss `(pred, target) -> scalar` such as `dp.L2()`; got "
        f"{describe(loss)}.{hint}"
    )
