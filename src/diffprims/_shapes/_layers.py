"""Layers: shape sets of any types stacked back to front in one picture."""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._model import AbstractModel, batch_shape, check_unbatched
from .._validate import (
    check_grid_shape,
    check_points,
    describe,
    inside_trace,
    upcast_floats,
)
from ._arguments import check_finite_model, check_pixel_size, checked_render
from ._base import AbstractShapes
from ._render import (
    check_method,
    checked_grid,
    fit_method,
    grid_pixel_size,
    render_grid,
    render_points,
    resolved_method,
)
from ._specs import fields_spec, present_kinds, trainable_spec, unmatched_message


class Layers(AbstractModel):
    """Shape sets stacked back to front: each layer composites over the one below.

    The bottom layer's background shows through; the other layers' backgrounds are
    not used (and get no gradient). Each layer keeps its own type, softness and
    compositing, so a picture can mix rectangles under circles. Two "over" layers render
    exactly like one set holding the bottom's shapes then the top's.

    `Layers` is a model like any other: `fit` trains every layer at once (train some
    parts only with `fit(..., trainable=layers.trainable(...))`), and `to_svg`, `save`
    and `load` take it.
    Each layer is drawn by its own renderer (the tiled one where a set of its own would
    take it) over the picture of the layers below it, so layers cost about what one set
    of all their shapes costs.

    **Arguments:**

    - `layers`: shape sets, bottom first, all with the same number of channels.

    ```python
    back = dp.Rectangles.init(50, key=k1, target=target)
    front = dp.Circles.init(150, key=k2, target=target)
    result = dp.fit(dp.Layers([back, front]), target, steps=1000, batch=0.1, key=k3)
    ```
    """

    layers: tuple[AbstractShapes, ...]

    def __init__(self, layers: Any):
        layers = tuple(layers) if isinstance(layers, list | tuple) else layers
        if not isinstance(layers, tuple) or not layers:
            one = " (one set: `dp.Layers([shapes])`)" if isinstance(layers, AbstractShapes) else ""
            raise TypeError(
                f"`layers` must be a non-empty list of shape sets; got {describe(layers)}{one}."
            )
        for index, layer in enumerate(layers):
            if isinstance(layer, Layers):  # its repr is every array of every layer
                raise TypeError(
                    f"`layers[{index}]` is a Layers; Layers do not nest: list its layers "
                    f"with the others, `dp.Layers([*inner.layers, ...])`."
                )
            if not isinstance(layer, AbstractShapes):
                raise TypeError(
                    f"`layers[{index}]` must be a shape set such as `dp.Circles`; got "
                    f"{describe(layer)}."
                )
        first = layers[0].num_channels
        odd = next((i for i, layer in enumerate(layers) if layer.num_channels != first), None)
        if odd is not None:
            raise ValueError(
                f"every layer must have the same channels; `layers[{odd}]` has "
                f"{layers[odd].num_channels}, `layers[0]` {first}. Build every set for the "
                "same image (the same `target` or `channels=`)."
            )
        batches = [batch_shape(layer) for layer in layers]
        if len(set(batches)) > 1:  # else a deep broadcasting error when drawn or fitted
            got = ", ".join(
                f"layers[{i}] {'one set' if not b else f'a batch of {b}'}"
                for i, b in enumerate(batches)
            )
            raise ValueError(
                f"every layer must be one shape set, or all batches of the same shape; got "
                f"{got}. Build the layers inside `jax.vmap` (one Layers per member), or "
                "batch every layer alike."
            )
        self.layers = layers

    @property
    def num_channels(self) -> int:
        """The number of colour channels `C`."""
        return self.layers[0].num_channels

    def _fixed_parameters(self) -> Any:
        """Each layer's own, and the upper layers' backgrounds: never drawn, so never
        trained (weight decay moved them, and `result.model[1]` drawn alone changed)."""
        own = [layer._fixed_parameters() for layer in self.layers]
        if len(own) == 1 and own[0] is None:  # one layer, nothing fixed
            return None
        specs = []
        for index, (layer, spec) in enumerate(zip(self.layers, own, strict=True)):
            if index > 0:
                unused = fields_spec(layer, ["raw_background"])
                spec = unused if spec is None else jax.tree.map(operator.or_, spec, unused)
            specs.append(jax.tree.map(lambda _: False, layer) if spec is None else spec)
        return eqx.tree_at(lambda m: m.layers, jax.tree.map(lambda _: False, self), tuple(specs))

    @property
    def num_shapes(self) -> int:
        """The number of shapes in all layers."""
        return sum(layer.num_shapes for layer in self.layers)

    @property
    def background(self) -> Float[Array, " C"]:
        """The bottom layer's background colour, `(C,)`."""
        return self.layers[0].background

    def render(
        self,
        points: Float[Array, "P 2"],
        *,
        pixel_size: float | Float[Array, ""],
        method: str = "auto",
    ) -> Float[Array, "P C"]:
        """Composite every layer at `points`, soft edges scaled by `pixel_size`; see
        [`diffprims.AbstractModel.render`][]. Each layer is drawn by its own renderer
        over the picture below it; `method` is as for
        [`diffprims.AbstractShapes.render`][], picked per layer when `"auto"`."""
        check_unbatched(self, "render")
        model = upcast_floats(self)  # half-precision parameters render in float32
        points = check_points(points).astype(model.layers[0].raw_colours.dtype)
        points, pixel_size = check_pixel_size(points, pixel_size)
        sizes = (jnp.asarray(pixel_size, points.dtype),) * len(self.layers)
        return _drawn(model, points, sizes, self._methods(method, points.shape[0]))

    def render_image(
        self, shape: tuple[int, ...], *, method: str = "auto", softness: Any = None
    ) -> Float[Array, "H W C"]:
        """Render on the full pixel grid of `shape = (H, W)`; see
        [`diffprims.AbstractModel.render_image`][]. `method` is as for `render`.
        `softness`, if given, draws every layer's edges that many pixels wide for this
        render, whatever each layer's own (as [`diffprims.AbstractShapes.render_image`][]:
        any value, traced too, is one compiled render)."""
        check_unbatched(self, "render_image")
        height, width = check_grid_shape(shape)
        model = upcast_floats(self)
        # One pixel size a layer: each scales its own `softness` to the width asked for.
        sizes = tuple(grid_pixel_size(layer, (height, width), softness) for layer in model.layers)
        methods = self._methods(method, height * width)
        return _drawn(model, (height, width), sizes, methods)

    def _methods(self, method: Any, num_points: int) -> tuple[str, ...]:
        """Each layer's renderer, "scan" or "tiled", as a shape set picks it (checked
        here, outside any compiled program, where an eager derivative can be seen)."""
        checked = self._each(lambda layer: check_method(method, layer.compositing, type(layer)))
        return tuple(map(resolved_method, self.layers, [num_points] * len(checked), checked))

    def _fit_method(self, method: Any) -> str | None:
        # As a set's, checked against every layer (all give the same choice).
        return self._each(lambda layer: fit_method(method, layer))[0]

    def _each(self, fn: Any) -> list[Any]:
        """`fn(layer)` for every layer; a `ValueError` says which layer it was of."""
        out = []
        for index, layer in enumerate(self.layers):
            with naming_layer(index, len(self.layers)):
                out.append(fn(layer))
        return out

    def trainable(self, *kinds: str, layers: Any = None) -> Any:
        """A filter spec for `fit(..., trainable=...)`: train only some parts of the layers.

        **Arguments:**

        - `kinds`: role kinds or groups, as for [`diffprims.AbstractShapes.trainable`][]
          (`"geometry"`, `"appearance"`, `"position"`, `"colour"`, ...), applied to every
          layer that trains; none for every parameter of those layers.
        - `layers`: the indices of the layers that train (negative ones count from the
          top), an int for one layer; default every layer. The others are frozen whole.

        **Returns:**

        A pytree of bools shaped like these layers.

        ```python
        model = dp.Layers([back, front])
        spec = model.trainable("geometry")            # shapes move, colours stay
        spec = model.trainable(layers=[1])            # the back layer stays as it is
        spec = model.trainable("colour", layers=0)    # recolour the back layer only
        result = dp.fit(model, target, trainable=spec, steps=500)
        ```
        """
        chosen = self._layer_indices(layers)
        specs = []
        for index, layer in enumerate(self.layers):
            if index not in chosen:
                specs.append(jax.tree.map(lambda _: False, layer))
            elif kinds:  # a kind some layers lack (angles of circles) is no error
                specs.append(trainable_spec(layer, kinds, check=False))
            else:
                specs.append(jax.tree.map(eqx.is_inexact_array, layer))
        if kinds and not any(jax.tree.leaves(specs)):
            present = sorted({k for i in chosen for k in present_kinds(self.layers[i])})
            raise ValueError(unmatched_message(kinds, "the layers that train", present))
        spec = jax.tree.map(lambda _: False, self)
        return eqx.tree_at(lambda s: s.layers, spec, tuple(specs))

    def _layer_indices(self, layers: Any) -> set[int]:
        """`trainable`'s `layers` as a set of indices in `[0, len(self))`."""
        count = len(self.layers)
        if layers is None:
            return set(range(count))
        items = [layers] if isinstance(layers, int | np.integer) else layers
        if isinstance(items, str) or not isinstance(items, list | tuple | range | set):
            raise TypeError(
                f"`layers` must be a layer index or a list of them; got {describe(layers)}."
            )
        chosen = set()
        for item in items:
            if isinstance(item, bool | np.bool_) or not isinstance(item, int | np.integer):
                raise TypeError(f"`layers` must hold ints (layer indices); got {describe(item)}.")
            if not -count <= item < count:
                raise ValueError(
                    f"`layers` holds {item}, but there are {count} layers (indices "
                    f"{-count} to {count - 1}, bottom first)."
                )
            chosen.add(int(item) % count)
        return chosen

    def __getitem__(self, index: int) -> AbstractShapes:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)


def _drawn(layers: Layers, where: Any, pixel_sizes: tuple, methods: tuple) -> Array:
    """Every layer drawn over the picture below, at points `(P, 2)` or on a grid `(H, W)`:
    inside a trace inline; otherwise (also under an eager grad/vmap, where it compiled
    every call) one cached compiled program, as for a shape set (`_render`)."""
    bad = check_finite_model(layers)
    if not inside_trace():
        return _stacked_compiled(layers, where, pixel_sizes, methods)
    out = _stacked(layers, where, pixel_sizes, methods)
    return (
        checked_grid(out, bad, pixel_sizes)
        if isinstance(where, tuple)
        else checked_render(out, bad)
    )


def _stacked(layers: Layers, where: Any, pixel_sizes: tuple, methods: tuple) -> Array:
    picture = None
    for layer, size, method in zip(layers.layers, pixel_sizes, methods, strict=True):
        if isinstance(where, tuple):
            picture = render_grid(layer, where, method, size, below=picture)
        else:
            picture = render_points(layer, where, size, method, below=picture)
    assert picture is not None
    return picture


_stacked_compiled = eqx.filter_jit(_stacked)


def flatten_layers(model: Any) -> tuple[AbstractShapes, ...]:
    """The shape sets of `model`, bottom first (a shape set is one layer)."""
    return model.layers if isinstance(model, Layers) else (model,)


@contextlib.contextmanager
def naming_layer(index: int, count: int) -> Iterator[None]:
    """A `ValueError` about one of `count` layers says which (`layers[1]: ...`)."""
    try:
        yield
    except ValueError as error:
        if count == 1:
            raise
        raise ValueError(f"`layers[{index}]`: {error}") from None
