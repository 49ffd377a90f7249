"""The leading singular triplets of a kernel, with a derivative that needs only them.

JAX's SVD derivative is that of the whole decomposition: it divides by the differences
of every pair of singular values, so a kernel whose *discarded* values repeat (the
exact zeros of a 0/1 disk, any kernel of low rank) gave an all-NaN gradient through
`from_svd`, though its leading triplets are well defined wherever they stand apart from
the rest. This rule differentiates only the `rank` leading triplets, by the same
formulas restricted to their columns.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validate import is_traced


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def leading_svd(a: Array, rank: int) -> tuple[Array, Array, Array]:
    """`(u, s, vt)` of the `rank` largest singular values of the 2D `a`: `(Kh, rank)`,
    `(rank,)` and `(rank, Kw)`, as `jnp.linalg.svd(a, full_matrices=False)` gives them."""
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    return u[:, :rank], s[:rank], vt[:rank]


@leading_svd.defjvp
def _leading_svd_jvp(rank: int, primals: tuple, tangents: tuple):
    (a,), (da,) = primals, tangents
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    v = vt.T
    dp = u.T @ da @ v[:, :rank]  # (k, rank): the kept columns of U' dA V
    kept = s[:rank]
    # F[i, j] = 1 / (s_j^2 - s_i^2) for a kept j; 0 where the two are equal (to rounding):
    # on the diagonal, and where a kept value repeats (no derivative to give there).
    diffs = kept[None, :] ** 2 - s[:, None] ** 2
    equal = jnp.abs(diffs) <= jnp.finfo(a.dtype).eps * s[0] ** 2
    f = jnp.where(equal, 0.0, 1.0 / jnp.where(equal, 1.0, diffs))
    # U' dA V in full for the symmetric parts: (k, rank) columns and their transposes.
    dp_t = (u[:, :rank].T @ da @ v).T  # (k, rank): [i, j] = (U' dA V)[j, i]
    du = u @ (f * (dp * kept[None, :] + dp_t * s[:, None]))
    dv = v @ (f * (s[:, None] * dp + kept[None, :] * dp_t))
    inverse = jnp.where(kept > 0, 1.0 / jnp.where(kept > 0, kept, 1.0), 0.0)
    rows, cols = a.shape
    if rows > cols:  # U is not square: the part of dA V outside its columns
        dav = da @ v[:, :rank]
        du = du + (dav - u @ (u.T @ dav)) * inverse[None, :]
    if cols > rows:
        dau = da.T @ u[:, :rank]
        dv = dv + (dau - v @ (v.T @ dau)) * inverse[None, :]
    ds = jnp.diagonal(dp[:rank])
    return (u[:, :rank], kept, vt[:rank]), (du, ds, dv.T)


def unit_scaled(kernel: Array) -> tuple[Any, Any, Any]:
    """`(xp, scaled, half)`: the kernel divided by `4 ** half`, a power of 4 near its
    largest magnitude (its peak then 1/4 to 1), in float64 NumPy when concrete (exact
    to float32 rounding even for large kernels), else traced (`xp` is `jnp`). Multiply
    a factor's vectors by `2 ** half` (`ldexp`: exact, where XLA turned a division by
    `exp2` into 0) to undo it: a singular value may exceed the dtype (5e38 for a 5 x 5
    kernel of 1e38 in float32) where the vectors do not (1e19)."""
    xp = jnp if is_traced(kernel) else np
    values = kernel if xp is jnp else np.asarray(kernel, np.float64)
    half = xp.frexp(xp.max(xp.abs(values)))[1] // 2
    return xp, xp.ldexp(values, -2 * half), half


def svd_vectors(kernel: Array, rank: int) -> tuple[Any, Any]:
    """`(vertical (R, Kh), horizontal (R, Kw))`: `sqrt(s_r)` times the `r`-th singular
    vectors, signed so that each vertical vector sums to `>= 0`."""
    xp, scaled, half = unit_scaled(kernel)
    # Traced: a derivative of the leading triplets alone (finite for a 0/1 disk).
    u, s, vt = leading_svd(scaled, rank) if xp is jnp else np.linalg.svd(scaled, False)
    root = xp.ldexp(xp.sqrt(s[:rank]), half)
    vertical, horizontal = u[:, :rank].T * root[:, None], vt[:rank] * root[:, None]
    sign = xp.where(xp.sum(vertical, axis=1, keepdims=True) < 0, -1.0, 1.0)
    return sign * vertical, sign * horizontal
