"""A filter bank's effect on an image, as a model: fit a bank by what it does to scenes."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._model import AbstractModel, batch_shape, check_unbatched
from .._validate import check_grid_shape, check_points, describe
from ._bank import SeparableFilters
from ._checks import check_border, check_scene


class Filtered(AbstractModel):
    """`bank.apply(image)` as a model, so `fit` judges a bank by the filtered scene.

    Fitting a bank to a kernel weighs every tap alike; what a viewer sees is the filtered
    picture, where a small negative lobe may show no ringing at all and a tiny error at
    the kernel's edge may. Fit `Filtered(bank, scene)` to the exact blur of the scene
    (for instance `jax.scipy.signal.convolve2d` with the target kernel, channel by
    channel) and every step runs the bank's `2R` separable passes.

    Only the bank trains: the scene is held fixed (its gradient is stopped, and `fit`
    never hands it to the optimizer, so weight decay leaves it as it is too).

    **Arguments:**

    - `bank`: a [`diffprims.SeparableFilters`][].
    - `image`: the `(H, W, C)` float scene to filter (half precision is upcast to float32).
    - `border`: how the scene continues past its edges, as in
      [`diffprims.SeparableFilters.apply`][].

    ```python
    kernel = dp.kernels.disk(15, normalize=True)         # rank 3 is not exact for it
    scene = dp.load_image(path, size=128)
    # The target: the true 2D blur, channel by channel (zero padding, as `border="zero"`).
    convolve = lambda channel: jax.scipy.signal.convolve2d(channel, kernel, mode="same")
    exact = jax.vmap(convolve, in_axes=2, out_axes=2)(scene)
    model = dp.Filtered(dp.SeparableFilters.from_svd(kernel, rank=3), scene)
    optimizer = dp.SeparableFilters.recommended_optimizer(peak=float(kernel.max()))
    result = dp.fit(model, exact, optimizer=optimizer, steps=500)
    bank = result.model.bank
    ```
    """

    #: Filtered scenes are not limited to [0, 1] (a bank may overshoot).
    value_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)

    bank: SeparableFilters
    image: Float[Array, "H W C"]
    border: str = eqx.field(static=True, default="zero")

    def __check_init__(self):
        if not isinstance(self.bank, SeparableFilters):
            raise TypeError(f"`bank` must be a `dp.SeparableFilters`; got {describe(self.bank)}.")
        batch = batch_shape(self.bank)
        if batch:
            raise ValueError(
                f"`Filtered` takes one bank; got a batch of {' x '.join(map(str, batch))} "
                "banks. Build one `Filtered` per bank under `jax.vmap`: "
                "`jax.vmap(lambda b: dp.Filtered(b, scene))(banks)`."
            )
        if jnp.ndim(self.image) != 3 or 0 in jnp.shape(self.image):
            raise ValueError(
                f"`image` must be a non-empty (H, W, C) array; got {describe(self.image)}."
            )
        check_border(self.border)

    def __init__(self, bank: Any, image: Any, *, border: str = "zero"):
        if isinstance(image, SeparableFilters) and not isinstance(bank, SeparableFilters):
            raise TypeError(
                f"`Filtered(bank, image)` takes the bank first; got a {describe(bank)} "
                "then a bank. Swap them: `dp.Filtered(bank, image)`."
            )
        if not isinstance(bank, SeparableFilters):
            raise TypeError(f"`bank` must be a `dp.SeparableFilters`; got {describe(bank)}.")
        if isinstance(image, AbstractModel):
            raise TypeError(
                f"`image` must be the (H, W, C) scene to filter; got a model "
                f"({type(image).__name__}). `Filtered` holds its scene fixed: pass "
                "`model.render_image((H, W))`. To train a model seen through a bank, "
                "write a model whose `render_image` returns `bank.apply(inner.render_image("
                "shape))` (see the research tutorial)."
            )
        self.bank = bank
        self.image = check_scene(
            image, "image", "`jax.vmap(lambda x: dp.Filtered(bank, x))(images)`"
        )
        self.border = border

    @property
    def num_channels(self) -> int:
        """The scene's channel count `C`."""
        return self.image.shape[-1]

    def trainable(self) -> Any:
        """A filter spec for `fit(..., trainable=...)` that trains the bank only."""
        spec = jax.tree.map(lambda _: False, self)
        return eqx.tree_at(lambda m: m.bank, spec, jax.tree.map(lambda _: True, self.bank))

    def _fixed_parameters(self) -> Any:
        """The scene: an optimizer that decays weights (`optax.adamw`) moved it, and the
        fitted bank was judged against another picture."""
        spec = jax.tree.map(lambda _: False, self)
        return eqx.tree_at(lambda m: m.image, spec, True)

    def filtered(self) -> Float[Array, "H W C"]:
        """The filtered scene, `(H, W, C)`."""
        check_unbatched(self, "filtered")
        return self.bank.apply(jax.lax.stop_gradient(self.image), border=self.border)

    def _check_fit_target(self, shape: tuple[int, ...]) -> None:
        if tuple(shape[:2]) != tuple(self.image.shape[:2]):
            raise ValueError(
                f"`target` must be the filtered scene, of the scene's size (H, W) = "
                f"{tuple(self.image.shape[:2])}; got a target of shape {tuple(shape)}. Make "
                "the target from the same scene (or resize both alike)."
            )

    def render_image(self, shape: tuple[int, ...]) -> Float[Array, "H W C"]:
        """The filtered scene; `shape` must be the scene's `(H, W)`."""
        shape = check_grid_shape(shape)
        check_unbatched(self, "render_image")
        if shape != tuple(self.image.shape[:2]):
            raise ValueError(
                f"`Filtered` renders at its scene's size {tuple(self.image.shape[:2])}; got "
                f"shape {shape}. Resize the scene (and the target) instead."
            )
        return self.filtered()

    def render(
        self, points: Float[Array, "P 2"], *, pixel_size: float | Float[Array, ""]
    ) -> Float[Array, "P C"]:
        """The filtered scene at the pixels holding `points` (nearest pixel); `pixel_size`
        is ignored (the scene's own grid fixes the resolution)."""
        del pixel_size  # the scene's own grid fixes the resolution
        points = check_points(points)
        check_unbatched(self, "render")
        height, width = self.image.shape[:2]
        cols = jnp.clip(jnp.floor(points[:, 0] * height), 0, width - 1).astype(jnp.int32)
        rows = jnp.clip(jnp.floor(points[:, 1] * height), 0, height - 1).astype(jnp.int32)
        return self.filtered()[rows, cols]
