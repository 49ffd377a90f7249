"""How composed losses print: as the expression that built them.

Printed as equinox prints any module, `L2() + 10.0 * NonNegative()` read
`Sum(terms=(L2(), Scaled(weight=f32[], loss=NonNegative())))`: the one number a reader
wants was hidden. `Sum` and `Scaled` give equinox's printer (wadler_lindig) a document
of their own (`__pdoc__`), so `repr`, `print` and any printed pytree holding them show
the expression. A weight that is not a concrete scalar (traced, or batched by `vmap`)
prints as equinox prints it. Every other loss prints as equinox prints it but for its
concrete scalar settings, which print as numbers (`SSIM(max_value=1.0, ...)`, a user's
`Huber(delta=0.05)`, where equinox prints `f32[]`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import wadler_lindig as wl

from ._validate import is_traced


def weight_text(weight: Any) -> str | None:
    """A concrete scalar weight as its shortest text (`10.0`, `0.0001`), else None."""
    if is_traced(weight) or np.ndim(weight) != 0:
        return None
    return repr(float(str(np.asarray(weight)[()])) + 0.0)  # NumPy's shortest; -0.0 is 0.0


def scaled_doc(loss: Any, scaled: type, kwargs: dict[str, Any]) -> Any:
    """`w * inner` for `loss = scaled(w, inner)` (`scaled`: the class of `w * loss`),
    nested products multiplied out (`-(0.5 * L1())` prints `-0.5 * L1()`); None where
    the weight is not concrete (equinox then prints it)."""
    weight, inner = _folded(loss, scaled)
    return None if weight is None else _product(weight, inner, kwargs)


def sum_doc(terms: tuple, scaled: type, kwargs: dict[str, Any]) -> Any:
    """`a + b - 0.5 * c` for the terms of a sum (`scaled`: as for `scaled_doc`), or None
    for one term."""
    if len(terms) < 2:
        return None
    doc = wl.pdoc(terms[0], **kwargs)
    for term in terms[1:]:
        weight, inner = _folded(term, scaled)
        if weight is not None and weight < 0:
            doc = doc + wl.BreakDoc(" ") + wl.TextDoc("- ")
            doc = doc + _product(-weight, inner, kwargs, plain_one=True)
        else:
            doc = doc + wl.BreakDoc(" ") + wl.TextDoc("+ ") + wl.pdoc(term, **kwargs)
    return doc


def _folded(loss: Any, scaled: type) -> tuple[Any, Any]:
    """`(w, inner)` with `loss = w * inner` and `inner` no concrete product, w in
    float32; `(None, loss)` for a loss whose outer weight is not concrete."""
    weight = None
    while isinstance(loss, scaled) and weight_text(loss.weight) is not None:
        exact = float(loss.weight) * (1.0 if weight is None else float(weight))
        with np.errstate(all="ignore"):
            product = np.float32(exact)
        if not np.isfinite(product) or (product == 0) != (exact == 0):
            break  # no float32 (1e20 * 1e20, 1e-30 * 1e-30): printed as it is nested
        weight, loss = product, loss.loss
    return weight, loss


def _product(weight: Any, inner: Any, kwargs: dict[str, Any], plain_one: bool = False) -> Any:
    """`weight * inner` (brackets around a sum), `-inner` for -1, `inner` for 1 where
    `plain_one` (a sum's `a - b`)."""
    doc = wl.pdoc(inner, **kwargs)
    if len(getattr(inner, "terms", ())) > 1:  # a sum of several terms
        doc = wl.TextDoc("(") + doc + wl.TextDoc(")")
    if weight == -1 or (weight == 1 and plain_one):
        return wl.TextDoc("-" if weight < 0 else "") + doc
    return wl.TextDoc(f"{weight_text(weight)} * ") + doc


def settings_doc(loss: Any, kwargs: dict[str, Any]) -> Any:
    """`loss` as equinox prints a module, its concrete float scalars as numbers."""
    pairs = [
        (field.name, _as_number(getattr(loss, field.name)))
        for field in dataclasses.fields(loss)
        if field.repr
        and not (kwargs["hide_defaults"] and _is_default(getattr(loss, field.name), field))
    ]
    name_kwargs = {**kwargs, "show_type_module": kwargs["show_dataclass_module"]}
    return wl.bracketed(
        begin=wl.pdoc(type(loss), **name_kwargs) + wl.TextDoc("("),
        docs=wl.named_objs(pairs, **kwargs),
        sep=wl.comma,
        end=wl.TextDoc(")"),
        indent=kwargs["indent"],
    )


def _is_default(value: Any, field: dataclasses.Field) -> bool:
    """Whether `value` is `field`'s default: the same object, or an equal Python number
    (a setting a constructor checked and converted, `NonNegative(smoothing=0)`)."""
    default = field.default
    if value is default:
        return True
    numbers = (bool, int, float)
    return type(value) in numbers and type(default) is type(value) and value == default


def _as_number(value: Any) -> Any:
    """A concrete float scalar array as a Python float (printed `1.5`), a Python float
    at float32's shortest (`3e-24`, not `2.9999999999999996e-24`), else `value`."""
    if type(value) is float and abs(value) <= np.finfo(np.float32).max:
        return float(str(np.float32(value)))
    dtype = getattr(value, "dtype", None)
    if dtype is None or not np.issubdtype(dtype, np.floating) or weight_text(value) is None:
        return value
    return float(weight_text(value))  # pyright: ignore[reportArgumentType]
