"""Separable filter banks: a 2D kernel as a sum of R separable passes."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from .._losses import AbstractLoss
from .._model import AbstractModel
from .._validate import (
    check_float_array,
    check_grid_shape,
    check_points,
    check_positive_int,
    check_values,
    is_traced,
    runtime_check,
)
from . import _recommended
from ._checks import (
    BORDERS,
    check_bank_fits,
    check_border,
    check_filtered,
    check_kernel,
    check_one_bank,
    check_rank,
    check_scene,
    outer_sum,
)
from ._nmf import NMF_ITERATIONS, nmf_vectors
from ._passes import apply_passes, sample_kernel
from ._svd import svd_vectors

# A kernel whose |sum| is at most this share of sum |k| sums to 0 up to float32 rounding.
_ZERO_SUM = 1e-5

_HINT = " Build a bank with `dp.SeparableFilters.from_svd(kernel, rank)`."


class SeparableFilters(AbstractModel):
    """A bank of `R` separable filters: the 2D kernel `sum_r outer(vertical[r], horizontal[r])`.

    A `(Kh, Kw)` kernel applied as `R` vertical and `R` horizontal 1D passes costs
    `R (Kh + Kw)` multiply-adds per pixel instead of `Kh Kw`. A bank is a model of the
    diffprims protocol with one channel: its image is the kernel, so
    [`diffprims.fit`][] fits it to a target kernel like any other model. The vectors are
    stored as they are (no constraint); [`diffprims.SeparableFilters.from_svd`][] gives
    the best rank-`R` start in the L2 sense.

    **Fitting.** The seed's loss is `L2() + a * NonNegative() + b * KeepZeros()`
    (see [`diffprims.SeparableFilters.recommended_loss`][]). With the kernel at peak 1
    (as `dp.kernels` makes it), the weights trade accuracy for clean filtered images:

    - `a` (non-negativity) removes the negative lobes that ring when the kernel is
      applied, for a small cost in L2 error (0.150 → 0.157 on the 50 × 50 disk at rank
      4). As an exact penalty it clears them (min above −1e-3 of the peak) once `a` is
      over a weight that depends on the kernel. The default `a = 4` does at rank 4 on
      the 32 kernels of `benchmarks/filters.py` (disks of 21 to 200 taps, polygons of 3
      to 8 sides up to 161, a ring, a comet...), each closer than NMF; `a = 1` (the
      plain hinge) left lobes of −0.16 % to −4.4 % on 21 of them, `a = 2` on 5, `a = 3`
      on 2. `recommended_loss` smooths the hinge over 3e-4 of the peak, so that a fit
      near exact is not kicked off its zero taps at every step (the 16 × 16 disk at
      rank 5 from an SVD start at 4e-8: 0.0007 after 500 steps, 0.0065 with the plain
      hinge; NMF 0.0005). `a = 0` for a signed kernel (a Laplacian).
    - `b` (keep-zeros) clears the corners outside the disk (the "spill": the share of
      the kernel's mass where the target is zero), at a higher cost: at rank 4, `a = 4,
      b = 0.5` gives spill 0.018 to 0.029 at error 0.137 to 0.170 on disks of 21 to 128
      (`b = 0.3`: 0.028 on the 50 × 50 disk, 0.031 to 0.033 at 40 and 64 taps), and
      `a = b = 1` 0.019 at 0.179 on that disk, where it turns into a sum of boxes.
    - Only the ratios matter, so L2 keeps weight 1. The penalties are linear in the
      kernel and L2 quadratic: the weights above are for a kernel with peak 1; for
      another, pass `peak=` to `recommended_loss` and `recommended_optimizer`.

    `benchmarks/filters.py` prints the whole trade-off (error, min/max, spill) per rank
    and weighting. [`diffprims.SeparableFilters.recommended_optimizer`][] converges in
    500 steps. Fit from [`diffprims.SeparableFilters.from_nmf`][] too and keep the lower
    loss: either may end lower (and a start may beat its fit), see the filters tutorial.

    ```python
    target = dp.kernels.disk(50)
    bank = dp.SeparableFilters.from_svd(target, rank=4)
    result = dp.fit(bank, target[..., None], loss=bank.recommended_loss(),
                    optimizer=bank.recommended_optimizer(), steps=bank.recommended_steps)
    blurred = result.model.normalized().apply(image, border="reflect")  # mirrored edges
    ```

    **Arguments:**

    - `vertical`: `(R, Kh)` vertical (column) filters.
    - `horizontal`: `(R, Kw)` horizontal (row) filters.
    """

    vertical: Float[Array, "R Kh"]
    horizontal: Float[Array, "R Kw"]

    #: Kernels may be negative (an SVD has negative lobes), so `fit` accepts any finite target.
    value_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    #: Steps after which [`diffprims.SeparableFilters.recommended_optimizer`][] has
    #: converged (the loss within 1 % of its value after 5000 steps) at rank 4 and on
    #: the seed's disk; not on all kernels at rank 8 (an ellipse 9 % above, a comet 32 %,
    #: kernel error 0.0134 against 0.0117), nor from a near-exact start (a loss near 0,
    #: a large ratio, see `recommended_optimizer`): compare a longer fit.
    recommended_steps: ClassVar[int] = 500

    def __init__(self, vertical: Any, horizontal: Any):
        vertical = check_float_array(vertical, "vertical", hint=_HINT)
        horizontal = check_float_array(horizontal, "horizontal", hint=_HINT)
        self.vertical = check_values(vertical, "vertical", hint=_HINT)
        self.horizontal = check_values(horizontal, "horizontal", hint=_HINT)
        check_bank_fits(self.vertical, self.horizontal, _HINT)

    def __check_init__(self):
        # Shapes only (cheap; `batch_shape` reads extra leading axes as a batch of banks).
        vertical, horizontal = jnp.shape(self.vertical), jnp.shape(self.horizontal)
        if (
            len(vertical) != 2
            or len(horizontal) != 2
            or vertical[0] != horizontal[0]
            or 0 in vertical + horizontal
        ):
            batch = ""
            if len(vertical) == len(horizontal) > 2 and vertical[:-2] == horizontal[:-2]:
                batch = (
                    f" For a batch of {' x '.join(map(str, vertical[:-2]))} banks, build "
                    "and use them under `jax.vmap`: `jax.vmap(dp.SeparableFilters)(vs, hs)`."
                )
            raise ValueError(
                "`vertical` (R, Kh) and `horizontal` (R, Kw) must have 2 dimensions and "
                f"hold the same number R >= 1 of non-empty filters; got shapes {vertical} "
                f"and {horizontal}.{batch}{_HINT}"
            )

    @property
    def rank(self) -> int:
        """The number `R` of separable passes."""
        check_one_bank(self, "rank")
        return self.vertical.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """The kernel's `(Kh, Kw)`."""
        check_one_bank(self, "shape")
        return self.vertical.shape[1], self.horizontal.shape[1]

    @property
    def num_channels(self) -> int:
        return 1

    def kernel(self) -> Float[Array, "Kh Kw"]:
        """The 2D kernel `sum_r outer(vertical[r], horizontal[r])`, shape `(Kh, Kw)`."""
        check_one_bank(self, "kernel", "b.kernel()")
        return outer_sum(self.vertical, self.horizontal)

    def render(
        self, points: Float[Array, "P 2"], *, pixel_size: float | Float[Array, ""]
    ) -> Float[Array, "P C"]:
        """The kernel at sample points, as a one-channel image.

        The kernel is the `(Kh, Kw)` image of the diffprims frame: kernel pixel `(i, j)`
        covers `x` in `[j, j + 1) / Kh` and `y` in `[i, i + 1) / Kh`, so its centre is
        `((j + 0.5) / Kh, (i + 0.5) / Kh)`. A point takes the value of the kernel pixel it
        falls in (0 outside the kernel); `pixel_size` is not needed.

        **Arguments:**

        - `points`: `(P, 2)` points `(x, y)` in the diffprims frame.
        - `pixel_size`: unused (the kernel has no soft edges).

        **Returns:**

        `(P, 1)` kernel values.
        """
        del pixel_size
        check_one_bank(self, "render", "b.render(points, pixel_size=s)")
        return sample_kernel(self.vertical, self.horizontal, check_points(points))

    def render_image(self, shape: tuple[int, ...]) -> Float[Array, "H W C"]:
        """The kernel on the pixel grid `shape = (H, W)`, as an `(H, W, 1)` image.

        On the kernel's own grid (`shape == bank.shape`) this is `bank.kernel()[..., None]`;
        other grids sample it as [`diffprims.SeparableFilters.render`][] does.
        """
        shape = check_grid_shape(shape)
        check_one_bank(self, "render_image", "b.render_image(shape)")
        if shape == self.shape:
            return self.kernel()[..., None]
        return super().render_image(shape)

    def _check_fit_target(self, shape: tuple[int, ...]) -> None:
        if tuple(shape[:2]) != self.shape:
            raise ValueError(
                f"`target` must be a kernel of the bank's size (Kh, Kw) = {self.shape}, as "
                f"`(Kh, Kw, 1)`; got a target of shape {tuple(shape)}. A bank is fitted on "
                "its own grid (another size would fit a resampled kernel): start from "
                "`dp.SeparableFilters.from_svd(target[..., 0], rank)`, or make the target at "
                "the bank's size."
            )

    @classmethod
    def from_svd(cls, kernel: Any, rank: int) -> SeparableFilters:
        """The best rank-`R` bank in the L2 sense: a truncated SVD of `kernel`.

        With `kernel = U diag(s) Vᵀ`, pass `r` is `vertical[r] = sqrt(s_r) U[:, r]` and
        `horizontal[r] = sqrt(s_r) V[:, r]` (the singular value split evenly, so both
        vectors have the same scale), signed so that `vertical[r]` sums to `>= 0`.

        **Arguments:**

        - `kernel`: `(Kh, Kw)` finite float array (bfloat16 and float16 are upcast: the
          bank is float32).
        - `rank`: the number of passes, `1 <= rank <= min(Kh, Kw)`.

        **Returns:**

        A `SeparableFilters` with `rank` passes; at full rank its kernel equals `kernel`
        up to float32 rounding. Differentiable in `kernel` where its `rank` leading
        singular values are positive and stand apart from each other and the rest.

        ```python
        bank = dp.SeparableFilters.from_svd(dp.kernels.disk(50), rank=4)
        ```
        """
        kernel = check_kernel(kernel)
        vertical, horizontal = svd_vectors(kernel, check_rank(kernel, rank))
        return cls(vertical.astype(kernel.dtype), horizontal.astype(kernel.dtype))

    @classmethod
    def from_nmf(
        cls, kernel: Any, rank: int, *, iterations: int = NMF_ITERATIONS
    ) -> SeparableFilters:
        """A non-negative rank-`R` bank: a non-negative matrix factorisation of `kernel`.

        Every vector `>= 0` (no lobe), further than [`diffprims.SeparableFilters.from_svd`][]:
        multiplicative updates from NNDSVDa, deterministic, under `jit`/`vmap`/`grad` too.
        The fit from the SVD usually ends closer, not always (a 17-tap disk at rank 4:
        0.117, from here 0.115): keep the lowest of both starts and fits (as `diffprims
        filter` does).

        **Arguments:**

        - `kernel`: `(Kh, Kw)` finite, `>= 0` (below `-1e-6` of its peak: `ValueError`;
          traced: as 0). Eager float64 and float32 under `jit` may find other optima where
          singular values repeat (a 9-tap disk at rank 4: 0.0014 and 0.0006).
        - `rank`: the number of passes, `1 <= rank <= min(Kh, Kw)`.
        - `iterations`: multiplicative updates (default 1000).
        """
        kernel = check_kernel(kernel)
        rank = check_rank(kernel, rank)
        iterations = check_positive_int(iterations, "iterations")
        vertical, horizontal = nmf_vectors(kernel, rank, iterations)
        return cls(vertical.astype(kernel.dtype), horizontal.astype(kernel.dtype))

    def normalized(self) -> SeparableFilters:
        """The same bank scaled so its kernel sums to 1 (a blur that keeps brightness).

        A kernel that sums to 0 up to float32 rounding (`|sum| <= 1e-5 sum |k|`: a
        Laplacian, an edge detector, an all-zero bank) has no such scale and raises a
        `ValueError` (under `jax.jit`, through `eqx.error_if` when run): divided by its
        rounding error it would be multiplied by 1e5 or more.

        **Returns:**

        A `SeparableFilters` whose `kernel()` is `self.kernel() / self.kernel().sum()`.
        """
        check_one_bank(self, "normalized", "b.normalized()")
        # Summed from the vectors scaled (exactly, by powers of 2) to at most 1: a kernel of
        # 1e38 fits but its sum overflowed, and one of 1e-40 underflowed: both "sum to 0".
        ev, eh = (jnp.frexp(jnp.max(jnp.abs(x)))[1] for x in (self.vertical, self.horizontal))
        vertical = jnp.ldexp(self.vertical, -ev)
        kernel = outer_sum(vertical, jnp.ldexp(self.horizontal, -eh))
        total, magnitude = jnp.sum(kernel), jnp.sum(jnp.abs(kernel))
        message = (
            "`normalized` needs a kernel with a non-zero sum; got a kernel that sums to 0 "
            "(up to float32 rounding: |sum| <= 1e-5 sum |k|{got}). A kernel summing to 0 "
            "(a Laplacian, an edge detector) keeps no brightness to normalise: apply it as "
            "it is, or divide it by its sum of absolute values."
        )
        vanishes = jnp.abs(total) <= _ZERO_SUM * magnitude
        if is_traced(vanishes):
            total = runtime_check(total, vanishes, message.format(got=""))
        elif bool(vanishes):
            unit = 2.0 ** int(ev + eh)
            got = f"; sum {float(total) * unit:.3g}, sum |k| {float(magnitude) * unit:.3g}"
            raise ValueError(message.format(got=got))
        return SeparableFilters(jnp.ldexp(vertical / total, -eh), self.horizontal)

    def apply(self, image: Any, *, border: str = "zero") -> Float[Array, "H W C"]:
        """Convolve an image with the kernel as `R` vertical and `R` horizontal 1D passes.

        The result is the 2D convolution with `bank.kernel()` at the same size as the
        input ("same"), centred as `scipy.signal.convolve2d(..., mode="same")`: it is a
        true convolution (the kernel flipped; the same as correlation for the symmetric
        kernels of `dp.kernels`). The image is padded by the kernel's size once, according
        to `border`; then every pass is a 1D convolution, computed tile by tile as small
        dense matrix products (fast on CPU and accelerators alike). Every channel is
        filtered alike. Differentiable in the bank and the image.

        **Arguments:**

        - `image`: `(H, W, C)` float image (any finite range: kernels and images may be
          HDR or negative; half precision is computed in float32). NaN or inf pixels are
          refused (`ValueError`), not under `jit`, `vmap` or `grad` (traced): there each
          turns a tile (the kernel's size rounded up to 32 pixels a side) to NaN. Batch
          with `jax.vmap(bank.apply)(images)`; jit with `eqx.filter_jit(bank.apply)`.
        - `border`: how the image continues past its edges: `"zero"` (zero padding, the
          default), `"edge"` (repeat the edge pixel), `"reflect"` (mirror about the edge
          pixel), `"symmetric"` (mirror including it) or `"wrap"` (periodic).

        **Returns:**

        The `(H, W, C)` filtered image (a `ValueError` eagerly where it overflows float32).

        ```python
        bank = dp.SeparableFilters.from_svd(dp.kernels.disk(31, normalize=True), rank=4)
        blurred = bank.apply(image, border="reflect")
        ```
        """
        image = check_scene(image, "image", "`jax.vmap(bank.apply)(images)`")
        check_one_bank(self, "apply", "b.apply(image)")
        out = apply_passes(self.vertical, self.horizontal, image, BORDERS[check_border(border)])
        return check_filtered(out, image, self.vertical, self.horizontal)

    @classmethod
    def recommended_loss(
        cls, *, non_negative: float = 4.0, keep_zeros: float = 0.0, peak: float = 1.0
    ) -> AbstractLoss:
        """The seed's loss, `L2() + non_negative * NonNegative(smoothing=3e-4 * peak) +
        keep_zeros * KeepZeros()` (the smoothing: see [`diffprims.SeparableFilters`][]).

        The defaults remove negative lobes (no ringing) at a small cost in accuracy on
        the blur kernels measured, up to 200 taps (should `bank.kernel().min()` stay
        below 0 on yours, raise `non_negative`; 0 for a signed kernel, a Laplacian or a
        Gabor, whose lobes it would erase); raise `keep_zeros` to clear the corners of a
        disk. See [`diffprims.SeparableFilters`][] for the trade-off.

        **Arguments:**

        - `non_negative`: weight of [`diffprims.NonNegative`][] (a number >= 0; may be
          traced, e.g. under `jax.vmap` for a sweep).
        - `keep_zeros`: weight of [`diffprims.KeepZeros`][] (a number >= 0).
        - `peak`: the target kernel's scale, its largest magnitude, a concrete number
          > 0 (Python, NumPy or a 0-d array such as `jnp.abs(target).max()`: the peak of
          a blur; for a kernel whose largest lobe is negative, its magnitude). The
          weights are meant for a kernel with peak 1 (as `dp.kernels` makes it); both
          penalties are linear in the kernel and L2 quadratic, so they are multiplied by
          `peak` to mean the same for a kernel at another scale (e.g. one normalized to
          sum 1).

        **Returns:**

        A loss for [`diffprims.fit`][].
        """
        return _recommended.recommended_loss(non_negative, keep_zeros, peak)

    @classmethod
    def recommended_optimizer(
        cls, *, learning_rate: float = 1e-2, decay_steps: int = 400, peak: float = 1.0
    ) -> optax.GradientTransformation:
        """Adam with a cosine decay: converged within `recommended_steps = 500` steps.

        The learning rate falls from `learning_rate` to `learning_rate / 1000` over
        `decay_steps` steps and stays there. Measured by `benchmarks/filters.py` from an
        SVD start at ranks 1 to 8: on the seed's 50 × 50 disk at seven weightings, the
        loss after 500 steps is within 0.1 % of the loss after 5000 steps and below that
        of 5000 steps of the seed's plain gradient descent (lr 0.1); on anti-aliased and
        non-square disks and hexagons within 1.2 % (a 50 × 30 disk at rank 8) and 0.07 %.

        Adam's first steps have the learning rate's size however small the gradient:
        an exact `from_svd(disk(21), rank=8)` (7e-8) ends at 3e-3, NMF's 8e-4. Keep a
        start where it is lower, and finish with L-BFGS (the filters tutorial's "Two
        starts"; `diffprims filter` does).

        **Arguments:**

        - `learning_rate`: the initial step size (> 0), for a kernel with peak 1.
        - `decay_steps`: the steps over which it decays.
        - `peak`: the target kernel's largest magnitude, a concrete number > 0 (as for
          [`diffprims.SeparableFilters.recommended_loss`][]). A bank's vectors scale as
          `sqrt(peak)` and its gradients as `peak ** 1.5`: the step size follows, and
          Adam sees the gradients divided by `peak ** 1.5`, so a kernel at any scale from
          1e-20 to 1e18 fits like the same kernel at peak 1 (with
          [`diffprims.SeparableFilters.recommended_loss`][] given the same `peak`).

        **Returns:**

        An optax transformation for [`diffprims.fit`][].

        ```python
        target = dp.kernels.disk(31, normalize=True)
        peak = float(target.max())
        optimizer = dp.SeparableFilters.recommended_optimizer(peak=peak)
        loss = dp.SeparableFilters.recommended_loss(peak=peak)
        ```
        """
        return _recommended.recommended_optimizer(learning_rate, decay_steps, peak)
