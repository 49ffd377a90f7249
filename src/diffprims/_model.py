"""The model protocol: anything that renders values at points in one frame."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from typing_extensions import TypeVar

from ._validate import check_grid_shape, describe, run_checks

#: What `dp.load(path, like=m)` returns: a model of `m`'s type (without `like`: `Any`).
Loaded = TypeVar("Loaded", bound=eqx.Module, default=Any)


def pixel_centres(shape: tuple[int, ...]) -> Float[Array, "H W 2"]:
    """The centres of the pixels of an `(H, W)` grid, in the diffprims frame.

    The frame is resolution independent: `y` runs from 0 (top) to 1 (bottom) and `x`
    from 0 (left) to `W / H` (right), so one unit is the image height. Pixel `(i, j)`
    has centre `((j + 0.5) / H, (i + 0.5) / H)`; points are stored as `(x, y)`.

    **Arguments:**

    - `shape`: the grid's `(H, W)`.

    **Returns:**

    An `(H, W, 2)` float32 array of `(x, y)` points.

    ```python
    pts = dp.pixel_centres((64, 96)).reshape(-1, 2)   # (6144, 2)
    ```
    """
    height, width = check_grid_shape(shape)
    ys = (jnp.arange(height, dtype=jnp.float32) + 0.5) / height
    xs = (jnp.arange(width, dtype=jnp.float32) + 0.5) / height
    grid_y, grid_x = jnp.meshgrid(ys, xs, indexing="ij")
    return jnp.stack([grid_x, grid_y], axis=-1)


class AbstractModel(eqx.Module):
    """The protocol every fittable thing in diffprims follows.

    A model is an `eqx.Module` whose floating-point array leaves are its parameters,
    stored unconstrained (constrained views are properties). It renders values at
    sample points `(P, 2)` given in the diffprims frame (see
    [`diffprims.pixel_centres`][]): `y` runs 0→1 from top to bottom, `x` runs 0→W/H from
    left to right, and sizes use the same unit (the image height).

    [`diffprims.fit`][] uses nothing but this protocol: `render` on a random subset of
    pixel centres when minibatching, `render_image` on the whole grid otherwise.

    Subclasses implement `render` and `num_channels`, and may replace `render_image` by
    a faster path that gives the same values.
    """

    #: The range a target for this model must lie in; `fit` checks targets against it.
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    @property
    @abc.abstractmethod
    def num_channels(self) -> int:
        """The number of channels `C` the model renders."""

    @abc.abstractmethod
    def render(
        self, points: Float[Array, "P 2"], *, pixel_size: float | Float[Array, ""]
    ) -> Float[Array, "P C"]:
        """Evaluate the model at sample points.

        **Arguments:**

        - `points`: `(P, 2)` points `(x, y)` in the diffprims frame.
        - `pixel_size`: the size of one pixel of the grid the points come from, in frame
          units (`1 / H` for an `(H, W)` grid). Soft edges are this wide, so a model
          fitted at 128 px renders just as crisply at 1024 px.

        **Returns:**

        `(P, C)` values.
        """

    def _fit_method(self, method: Any) -> str | None:
        """The renderer `fit(..., method=method)` passes on (None: `render`'s default).
        A model with one way to render refuses any; shape sets override this."""
        if method is None:
            return None
        raise TypeError(
            f"`method` picks a shape set's renderer; got method={method!r} for a "
            f"{type(self).__name__}, which renders one way: its own `render`. Leave "
            "`method` unset; if that `render` draws a shape set inside, pick the set's "
            f"renderer there (`inner.render(points, pixel_size=pixel_size, method={method!r})`)."
        )

    def _fixed_parameters(self) -> Any:
        """A filter spec shaped like the model, True at the leaves `fit` never trains
        whatever `trainable` says (so no optimizer touches them, weight decay included);
        None when there are none. Shape sets fix their background with
        `learn_background=False`."""
        return None

    def _check_fit_target(self, shape: tuple[int, ...]) -> None:
        """Refuse an `(H, W, C)` target of this `shape` that `fit` could not fit the model
        to, with a `ValueError` that says why. `fit` checks the value range and channels
        itself; the default accepts any `(H, W)` (the frame scales to the grid). Models
        tied to one grid (a filter bank's kernel, a filtered scene) override this."""
        del shape

    def render_image(self, shape: tuple[int, ...]) -> Float[Array, "H W C"]:
        """Render the model on the full pixel grid of `shape = (H, W)`.

        **Arguments:**

        - `shape`: the grid's `(H, W)`; the frame keeps its aspect ratio, so a
          non-square grid shows more (or less) of the frame's width, never a stretch.

        **Returns:**

        An `(H, W, C)` image (float, in `[0, 1]` for image models).
        """
        height, width = check_grid_shape(shape)
        check_unbatched(self, "render_image")
        points = pixel_centres((height, width)).reshape(-1, 2)
        values = check_rendered(self, self.render(points, pixel_size=1.0 / height), len(points))
        return values.reshape(height, width, -1)


def fixed_parameters(model: AbstractModel) -> Any:
    """A filter spec shaped like `model`, True at the leaves that it, or any model nested
    in it (a shape set inside a user's model), fixes (`_fixed_parameters`); None when
    none does. A user's wrapper around `Circles(learn_background=False)` or a
    `Filtered` had those trained: only the outermost model was asked."""
    spec = model._fixed_parameters()
    nested = jax.tree_util.tree_leaves_with_path(
        model, is_leaf=lambda x: x is not model and isinstance(x, AbstractModel)
    )
    for path, inner in nested:
        inner_spec = fixed_parameters(inner) if isinstance(inner, AbstractModel) else None
        if inner_spec is None:
            continue
        if spec is None:
            spec = jax.tree.map(lambda _: False, model)
        where = lambda tree, path=path: _at(tree, path)  # noqa: E731
        merged = jax.tree.map(lambda a, b: a or b, where(spec), inner_spec)
        spec = eqx.tree_at(where, spec, merged)
    return spec


def _at(tree: Any, path: tuple) -> Any:
    """The node of `tree` at a key path of `jax.tree_util`."""
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            tree = getattr(tree, key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            tree = tree[key.idx]
        elif isinstance(key, jax.tree_util.DictKey):
            tree = tree[key.key]
        else:  # a pytree node without named children
            tree = jax.tree_util.tree_flatten(tree, is_leaf=lambda x: x is not tree)[0][key.key]
    return tree


def check_rendered(model: Any, values: Any, count: int) -> Any:
    """`values`, checked to be what `model.render` promises at `count` points: `(P, C)`
    (a `(C, P)` array reshaped into a scrambled image, and fit trained on it)."""
    expected, name = (count, model.num_channels), f"`{type(model).__name__}.render`"
    got = tuple(getattr(values, "shape", ()))
    if got != expected:
        if not hasattr(values, "shape"):
            hint = " Return one array (`jnp.stack` or `jnp.concatenate` its parts)."
        elif got == expected[::-1]:
            hint = " Return `values.T`: it is `(C, P)`."
        elif got[:1] == expected[:1] and len(got) == 2:
            hint = f" It has {got[1]} channels: make `num_channels` and `render` agree."
        else:
            hint = ""
        raise ValueError(
            f"{name} must return an array of shape `(P, C)`, a row per point and a column "
            f"per channel (`num_channels`): {expected} here; got {describe(values)}.{hint}"
        )
    if not jnp.issubdtype(values.dtype, jnp.floating):
        raise TypeError(
            f"{name} must return floats (the picture's values, differentiable in the "
            f"parameters); got {describe(values)}. Compute in floats: an integer or a "
            "threshold has no gradient."
        )
    return values


def check_rendered_image(model: Any, image: Any, shape: tuple[int, int]) -> Any:
    """`image`, checked to be what `model.render_image(shape)` promises: `(H, W, C)` (a
    transposed or flat picture was blamed on the loss, as a `pred` of another shape)."""
    expected = (*shape, model.num_channels)
    if tuple(getattr(image, "shape", ())) != expected:
        raise ValueError(
            f"`{type(model).__name__}.render_image((H, W))` must return an `(H, W, C)` "
            f"image: {expected} here; got {describe(image)}. Rows run down the image "
            "(`H`) and columns across (`W`): reshape a flat `(H*W, C)` result with "
            "`.reshape(H, W, C)`, or use `jnp.swapaxes(image, 0, 1)` for a `(W, H, C)` one."
        )
    return image


def batch_shape(model: Any, accepts: Callable[[Any], Any] = run_checks) -> tuple[int, ...]:
    """The leading axes `model` holds beyond one model: `(B,)` for a batch of `B` models
    (as `jax.vmap` over a constructor makes), `()` for one model. Reads shapes only.

    A batch is recognised when every array leaf shares those leading axes and `accepts`
    (by default the models' `__check_init__`) refuses `model` but accepts one member,
    checked abstractly. A model without checks of its shapes never counts as a batch.
    """
    return _batch_or_refusal(model, accepts)[0]


def _batch_or_refusal(
    model: Any, accepts: Callable[[Any], Any] = run_checks
) -> tuple[tuple[int, ...], Exception | None]:
    """`batch_shape`, and why `accepts` refused `model` when no batch explains it."""
    arrays = [leaf for leaf in jax.tree.leaves(model) if eqx.is_array(leaf)]
    refusal = _refusal(accepts, model, abstract=False) if arrays else None
    if refusal is None:
        if not (accepts is run_checks and _unchecked_user_batch(model, arrays)):
            return (), None
        # No check of its own refuses it: does it render as one model? If not, it is a
        # batch when one member does (else its render's error is for the caller to say).
        if _refusal(_renders_one, model, abstract=True) is None:
            return (), None
        accepts = _renders_one
    batch: tuple[int, ...] = ()
    while all(a.ndim > len(batch) for a in arrays) and (
        len({a.shape[len(batch)] for a in arrays}) == 1
    ):
        batch += (arrays[0].shape[len(batch)],)
        member = eqx.filter_eval_shape(_member, model, len(batch))
        if _refusal(accepts, member, abstract=True) is None:
            return batch, None
    return (), refusal


def is_diffprims(cls: type) -> bool:
    """Whether `cls` is one of this library's types (else a user's)."""
    return cls.__module__.split(".")[0] == "diffprims"


def _unchecked_user_batch(model: Any, arrays: list) -> bool:
    """Whether `model` may be a batch that no check refuses: a model type from outside
    diffprims with no `__check_init__`, whose arrays all share a leading axis."""
    kind = type(model)
    if is_diffprims(kind) or any("__check_init__" in k.__dict__ for k in kind.__mro__):
        return False
    return bool(arrays) and arrays[0].ndim > 0 and len({a.shape[:1] for a in arrays}) == 1


def _renders_one(model: Any) -> None:
    """Accept a model whose `render` gives `(P, C)` at a few points (traced only): one
    of a batch of user models with no checks of their own (`jax.vmap` over its
    constructor) renders, the batch fails inside the user's code."""
    run_checks(model)
    points = jnp.full((3, 2), 0.5)
    check_rendered(model, model.render(points, pixel_size=0.01), 3)


def _refusal(accepts: Callable[[Any], Any], model: Any, *, abstract: bool) -> Exception | None:
    try:
        eqx.filter_eval_shape(accepts, model) if abstract else accepts(model)
    except Exception as error:  # whatever a model's own checks raise
        return error
    return None


def _member(model: Any, axes: int) -> Any:
    return jax.tree.map(lambda x: x[(0,) * axes] if eqx.is_array(x) else x, model)


def batch_message(
    model: Any, batch: tuple[int, ...], action: str, *, mappable: bool = True
) -> str:
    """Why `action` refuses a batch of models, and the two ways out."""
    size = " x ".join(str(b) for b in batch)
    index = ", ".join("ijk"[n] if n < 3 else f"i{n}" for n in range(len(batch)))
    member = f"`jax.tree.map(lambda x: x[{index}], model)`"
    way = (
        f"Call `{action}` under `jax.vmap` (once per member), or take one member with {member}."
        if mappable
        else f"Take one member at a time with {member} (in a Python loop)."
    )
    return (
        f"`{action}` takes one model; got a {type(model).__name__} that holds a batch of "
        f"{size} models (leading axes {batch} on every parameter, as `jax.vmap` over a "
        f"constructor makes). {way}"
    )


def check_unbatched(model: Any, action: str, *, mappable: bool = True) -> None:
    """A `ValueError` when `model` is a batch of models (see `batch_shape`): rendering,
    fitting or exporting one would otherwise fail deep inside JAX. `mappable`: whether
    `action` can run under `jax.vmap` (not an export to a file or string)."""
    batch, refusal = _batch_or_refusal(model)
    if batch:
        raise ValueError(batch_message(model, batch, action, mappable=mappable))
    if isinstance(refusal, ValueError | TypeError) and not isinstance(
        refusal,
        jax.errors.JAXTypeError,  # a check that needs concrete values, under a trace
    ):
        # Not a batch, yet its own checks refuse it: a model edited past its constructor
        # (`eqx.tree_at`) into inconsistent shapes failed deep inside JAX's scan.
        name = type(model).__name__
        raise type(refusal)(f"`{action}` got a {name} its own checks refuse: {refusal}") from None
