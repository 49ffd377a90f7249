"""Renders and their gradients stay finite at extreme but finite shape parameters.

Every exported shape type, through both render paths (the scan and the tiled one), with
half of its shapes at huge or tiny stored positions, sizes and angles, as a diverging
fit could leave them: centres at 1e19 made `Ellipses`' renders and gradients NaN,
centres at 6e37 `Gaussians`' gradients. A stored size past 88 is not among them: its value
overflows float32 (a radius past 1.7e38), and the NaN it gives is how a fit sees that it
diverged (`test_hostile.test_paint_divergence_sets_the_flag`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from .helpers import shape_types

N = 8  # the tiled path runs from 8 shapes on
SIZE = 16
POINTS = jax.random.uniform(jax.random.key(1), (256, 2))
TARGET = jax.random.uniform(jax.random.key(2), (SIZE, SIZE, 3))

# (role kind, how, stored value): "set" gives every stored coordinate the value, "spread"
# gives them alternating signs (a triangle with vertices on both sides of the frame).
CASES = [
    ("position", "set", 1e19),
    ("position", "set", 1e30),
    ("position", "set", -1e30),
    ("position", "set", 3e38),
    ("position", "spread", 1e30),
    ("position", "set", 0.0),
    ("size", "set", 80.0),
    ("size", "set", -1e30),
    ("angle", "set", 1e30),
]


def _extreme(cls, kind: str, how: str, value: float):
    """`N` shapes of `cls`, the first half with every `kind` parameter made extreme."""
    model = cls.init(N, key=jax.random.key(0))
    for name, role in cls.parameter_roles().items():
        raw = getattr(model, name)
        if role.kind != kind or raw is None:
            continue
        new = jnp.full_like(raw, value)
        if how == "spread":
            signs = jnp.where(jnp.arange(new.size) % 3 == 0, 1.0, -1.0).reshape(new.shape)
            new = new * signs
        new = raw.at[: N // 2].set(new[: N // 2])
        model = eqx.tree_at(lambda m, name=name: getattr(m, name), model, new)
    return model


def _image(model, method):
    return model.render_image((SIZE, SIZE), method=method)


def _points(model, method):
    return model.render(POINTS, pixel_size=1.0 / SIZE, method=method).reshape(SIZE, SIZE, 3)


@eqx.filter_jit
def _value_and_grad(model, path):
    render, method = path

    def loss(model):
        image = render(model, method)
        return jnp.mean((image - TARGET) ** 2), image

    return eqx.filter_value_and_grad(loss, has_aux=True)(model)


PATHS = {
    "image": (_image, "auto"),  # the scan at 16 x 16 pixels
    "points-scan": (_points, "scan"),
    "points-tiled": (_points, "tiled"),
}


@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case)))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", shape_types(), ids=lambda cls: cls.__name__)
def test_extreme_parameters_give_finite_renders_and_gradients(cls, path, case):
    model = _extreme(cls, *case)
    (value, image), grads = _value_and_grad(model, PATHS[path])
    assert bool(jnp.all(jnp.isfinite(image))), image
    assert bool(jnp.isfinite(value)), value
    for leaf in jax.tree.leaves(eqx.filter(grads, eqx.is_array)):
        assert bool(jnp.all(jnp.isfinite(leaf))), grads


def test_every_geometry_kind_is_made_extreme():
    # A kind of geometry no case names would go untested.
    named = {kind for kind, _, _ in CASES}
    for cls in shape_types():
        kinds = {role.kind for role in cls.parameter_roles().values()}
        assert kinds & {"position", "size", "angle", "geometry"} <= named, cls
