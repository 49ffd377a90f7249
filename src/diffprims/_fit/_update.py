"""An optimizer's `update` as `fit` calls it: with the extra arguments (the loss
`value`, a line search's `value_fn`) that the transformations inside take by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optax


def optimizer_update(optimizer: Any, grads, opt_state, params, value, value_fn) -> Any:
    """`optimizer.update`, given what optax's optimizers that need more than the gradient
    take by name: the loss `value` (`contrib.reduce_on_plateau`), and a line search's
    (`lbfgs`) `value_fn` of the parameters.

    Only the names its `update` takes: a `GradientTransformationExtraArgs` of one's own
    whose `update` has no `**extra_args` is given none it does not name. One that
    refuses a name from inside (a wrapper, or `optax.chain`, which passes every name to
    each such member) is called again without that name; if another transformation
    then lacks it, a `TypeError` says which to fix."""
    try:
        return _update(optimizer, grads, opt_state, params, value, value_fn)
    except AttributeError as error:  # e.g. optax.lookahead reading `params.fast`
        raise TypeError(
            "`optimizer` must update the model's parameters as they are: `fit` gives "
            "`optimizer.update` the model (its trainable leaves) as `params`; got an "
            f"optimizer whose update failed on it with AttributeError: {error}. "
            "Optimizers that need parameters of a type of their own (`optax.lookahead` "
            "needs `LookaheadParams`) cannot be used with `fit`."
        ) from error


def _update(optimizer: Any, grads, opt_state, params, value, value_fn) -> Any:
    if not isinstance(optimizer, optax.GradientTransformationExtraArgs):
        if not _takes_any_keyword(optimizer.update):
            return optimizer.update(grads, opt_state, params)
        try:  # `MultiSteps`: hands them on; another `**kwargs` may refuse them
            return _with_extras(optimizer, grads, opt_state, params, value, value_fn)
        except (TypeError, ValueError) as error:
            try:
                return optimizer.update(grads, opt_state, params)
            except Exception:
                raise error from None
    return _with_extras(optimizer, grads, opt_state, params, value, value_fn)


def _with_extras(optimizer: Any, grads, opt_state, params, value, value_fn) -> Any:
    extra = _accepted(optimizer.update, dict(value=value, grad=grads, value_fn=value_fn))
    dropped: list[str] = []
    while True:
        try:
            return optimizer.update(grads, opt_state, params, **extra)
        except TypeError as error:
            refused = next((n for n in extra if _refuses(error, n)), None)
            if refused is None and dropped:
                raise TypeError(_refused_message(dropped, error)) from error
            if refused is None:
                raise
            del extra[refused]
            dropped.append(refused)


def _takes_any_keyword(update: Callable) -> bool:
    """Whether `update` has a `**kwargs` parameter (`optax.MultiSteps.update`, which
    hands the loss `value` on to a `reduce_on_plateau` inside, though `MultiSteps` is
    no `GradientTransformationExtraArgs`)."""
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in parameters)


def _accepted(update: Callable, extra: dict[str, Any]) -> dict[str, Any]:
    """The entries of `extra` that `update` takes by name (all if it takes `**kwargs` or
    its signature cannot be read)."""
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):
        return extra
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return extra
    named = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {name: arg for name, arg in extra.items() if name in named}


def _refuses(error: TypeError, name: str) -> bool:
    """Whether `error` is a function refusing the keyword argument `name`."""
    return f"unexpected keyword argument '{name}'" in str(error)


def _refused_message(dropped: list[str], error: TypeError) -> str:
    names = ", ".join(f"`{name}=`" for name in dropped)
    return (
        "`optimizer` must give optax's extra arguments (`value=`, `grad=`, `value_fn=`) "
        "to the transformations that need them, such as `optax.lbfgs` or "
        "`optax.contrib.reduce_on_plateau`; got one holding a "
        f"`GradientTransformationExtraArgs` whose `update` does not take {names}, and "
        f"without them another part failed ({error}). Give that `update` an "
        "`**extra_args` parameter, or build it as `optax.GradientTransformation(init, "
        "update)`, to which `optax.chain` passes no extra arguments."
    )
