"""The check that a model's parameters are finite, for the calls that take a model."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._validate import describe, is_traced


def non_finite_flag(model: Any, requirement: str, fix: str) -> Array | None:
    """Refuse `model` now, with a `ValueError` naming the leaf, if a concrete float leaf
    holds NaN or inf; return a flag for its traced float leaves (True: one is not
    finite), or None when none is traced, for `runtime_check` to ride on the result.

    `requirement` starts the message (e.g. "`model` must have finite parameters") and
    `fix` ends it.
    """
    traced = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(model)[0]:
        if not eqx.is_inexact_array(leaf):
            continue
        if is_traced(leaf):
            traced.append(leaf)
        elif not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(
                f"{requirement}; got NaN/inf in `model{jax.tree_util.keystr(path)}` "
                f"({describe(leaf)}). {fix}"
            )
    if not traced:
        return None
    return ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in traced]))
