"""A non-negative start for a filter bank: NMF of the kernel, started from its SVD.

The kernel `K ~= W H` with `W (Kh, R) >= 0` and `H (R, Kw) >= 0`, by Lee and Seung's
multiplicative updates from the NNDSVDa start (Boutsidis and Gallopoulos, 2008: each
singular pair's larger non-negative half, zeros filled with the kernel's mean), so the
result is deterministic and needs no key. Computed in float64 NumPy for a concrete
kernel (no compilation: a first call took 1.5 to 2 s to compile the loop in JAX), with
`jax.lax.fori_loop` in the kernel's dtype under `jit`, `vmap` and `grad`. NMF has many
optima: where singular values repeat (a disk's do, nearly), the two SVDs may pick other
vectors for them, and the two paths other optima (a 17-tap disk at rank 4: relative
errors 0.1156 and 0.1152).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._svd import leading_svd, unit_scaled

#: Multiplicative updates from the NNDSVDa start (error at rank 8 on a 17-tap disk:
#: 0.026 after 100, 0.006 after 300, 0.0018 after 1000; the fit that follows does the rest).
NMF_ITERATIONS = 1000

#: Negative values of a kernel (relative to its peak) that `from_nmf` takes for rounding.
NEGATIVE = 1e-6

#: The least value of a factor's entry (the kernel at peak 1/4 to 1): far below what a
#: kernel's float32 vectors resolve, far above float32's smallest normal number.
FLOOR = 1e-30


def _root(x: Any, xp: Any) -> Any:
    # `sqrt(x)` for `x >= 0`, with a finite derivative at 0 (sqrt's is infinite there).
    return xp.where(x > 0, xp.sqrt(xp.where(x > 0, x, 1.0)), 0.0)


def _norm(x: Any, axis: int, xp: Any) -> Any:
    return _root(xp.sum(x * x, axis=axis), xp)


def nndsvda(kernel: Any, rank: int, xp: Any) -> tuple[Any, Any]:
    """`(W, H)`, non-negative, from the `rank` leading singular pairs of `kernel`."""
    u, s, vt = leading_svd(kernel, rank) if xp is jnp else np.linalg.svd(kernel, False)
    u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    pu, nu, pv, nv = (xp.maximum(x, 0.0) for x in (u, -u, vt, -vt))
    positive = _norm(pu, 0, xp) * _norm(pv, 1, xp)
    negative = _norm(nu, 0, xp) * _norm(nv, 1, xp)
    take = positive >= negative  # each pair's larger half (the first pair is all one sign)
    a, b = xp.where(take, pu, nu), xp.where(take[:, None], pv, nv)
    scale = _root(s * xp.maximum(positive, negative), xp)
    w = a / xp.maximum(_norm(a, 0, xp), 1e-30) * scale
    h = b / xp.maximum(_norm(b, 1, xp), 1e-30)[:, None] * scale[:, None]
    fill = xp.mean(kernel)  # NNDSVDa: a zero never moves under multiplicative updates
    return xp.where(w > 0, w, fill), xp.where(h > 0, h, fill)


def _update(kernel: Any, w: Any, h: Any, xp: Any) -> tuple[Any, Any]:
    # `(w.T @ w) @ h`, not `w.T @ (w @ h)`: a (R, R) product, never a (Kh, Kw) one
    # (1000 updates of a 1025-tap kernel: 1.6 -> 0.6 s). The floor keeps entries that
    # decay towards 0 off it: at exactly 0 the derivative of the ratio is inf * 0 (NaN
    # gradients under `jax.grad` after 800 updates of a 3 x 200 kernel).
    h = xp.maximum(h * (w.T @ kernel) / ((w.T @ w) @ h + 1e-12), FLOOR)
    w = xp.maximum(w * (kernel @ h.T) / (w @ (h @ h.T) + 1e-12), FLOOR)
    return w, h


def nmf_vectors(kernel: Any, rank: int, iterations: int) -> tuple[Any, Any]:
    """`(vertical (R, Kh), horizontal (R, Kw))`, non-negative, each pass's two vectors of
    equal norm. A concrete kernel with values below `-NEGATIVE` of its peak is refused;
    smaller negatives (rounding), and under a trace any, count as 0."""
    # At peak 1/4 to 1, as `svd_vectors` computes: kernels of 1e-30 or 1e30 alike.
    xp, values, half = unit_scaled(kernel)
    if xp is np and values.min() < -NEGATIVE * np.abs(values).max():
        peak = float(np.abs(np.asarray(kernel, np.float64)).max())
        least = float(np.asarray(kernel, np.float64).min())
        raise ValueError(
            "`kernel` must be non-negative for `from_nmf` (a non-negative factorisation); "
            f"got a least value of {least:.3g} at peak {peak:.3g}. Start a signed "
            "kernel (a Laplacian, a Gabor) with `dp.SeparableFilters.from_svd(kernel, rank)`."
        )
    values = xp.maximum(values, 0.0)
    w, h = nndsvda(values, rank, xp)
    if xp is jnp:
        w, h = jax.lax.fori_loop(
            0, iterations, lambda _, wh: _update(values, wh[0], wh[1], jnp), (w, h)
        )
    else:
        for _ in range(iterations):
            w, h = _update(values, w, h, xp)
    # Balance each pass (the product is unchanged): both vectors at the same scale.
    balance = xp.sqrt(xp.maximum(_norm(h, 1, xp), 1e-30) / xp.maximum(_norm(w, 0, xp), 1e-30))
    unit = xp.ldexp(1.0, half)
    return (w * balance).T * unit, h / balance[:, None] * unit
