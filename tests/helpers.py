"""Shared test helpers: reference renderers, tree comparison, the list of primitives."""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import diffprims as dp


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8):
    """Whether two pytrees have the same structure and allclose array leaves."""
    x_leaves, x_def = jax.tree.flatten(eqx.filter(x, eqx.is_array))
    y_leaves, y_def = jax.tree.flatten(eqx.filter(y, eqx.is_array))
    if x_def != y_def:
        return False
    return all(
        np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=rtol, atol=atol)
        for a, b in zip(x_leaves, y_leaves, strict=True)
    )


def naive_over(model, points, pixel_size):
    """The reference: a Python loop drawing shapes back to front with "over"."""
    alphas = np.asarray(model.alphas(points, pixel_size=pixel_size), np.float64)
    colours = np.asarray(model.colours, np.float64)
    image = np.broadcast_to(
        np.asarray(model.background, np.float64), (points.shape[0], colours.shape[1])
    )
    for alpha, colour in zip(alphas, colours, strict=True):
        image = (1.0 - alpha[:, None]) * image + alpha[:, None] * colour
    return image


def shape_types():
    """Every concrete shape type the package exports, sorted by name."""
    found = {
        value
        for value in vars(dp).values()
        if inspect.isclass(value)
        and issubclass(value, dp.AbstractShapes)
        and not inspect.isabstract(value)
    }
    return sorted(found, key=lambda cls: cls.__name__)


def pointwise_losses():
    """An instance of every exported pointwise loss (Weighted wraps L2)."""
    return [dp.L2(), dp.L1(), dp.NonNegative(), dp.KeepZeros()]


def random_points(key, count, aspect=1.0):
    return jax.random.uniform(key, (count, 2)) * jnp.array([aspect, 1.0])


class SqrtModel(dp.AbstractModel):
    """A user model whose render is NaN once its parameter is negative (divergence tests)."""

    a: jax.Array

    @property
    def num_channels(self):
        return 3

    def render(self, points, *, pixel_size):
        return jnp.ones((points.shape[0], 3)) * jnp.sqrt(self.a)
