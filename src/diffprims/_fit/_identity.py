"""What a checkpoint records of the fit that wrote it besides its arrays' structure.

A checkpoint holds the trained parameters and the optimizer state, not the model's
settings (softness, compositing, frozen parameters), the loss or the optimizer: a resume
takes those from its caller. So that a resume with others is refused rather than
continued as a different fit, the checkpoint records a SHA-256 of each:

- `model_settings`: the model's static part (its class and settings, with the values of
  any arrays that do not train);
- `loss`: what a step computes with the loss (`_canon.loss_fingerprint`) and the values
  of its arrays (a `Scaled` weight, a `Weighted` map);
- `optimizer`: what its `update` computes on this fit's parameters and state
  (`_canon.fingerprint`), so a fresh `optax.adam(1e-2)` matches and `optax.adam(0.5)`
  does not;
- `model_render`: what a model type from outside diffprims computes to render (its
  settings may hold functions, whose printed form is the same for any constants they
  close over: an activation `lambda x: jnp.sin(freq * x)`).

The prints are of traced programs, whose text may change with the JAX, equinox or optax
version: `identity_versions` is recorded with them, and prints from other versions are
not compared. A print that cannot be made (a loss that cannot be traced abstractly) is
None: not compared.
"""

from __future__ import annotations

import hashlib
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax

from .._model import is_diffprims
from .._validate import is_typed_key
from ._canon import fingerprint, loss_fingerprint, update_fingerprint
from ._loop import loss_args, loss_call
from ._printed import sets_sorted, structure_text, without_addresses

#: The fields `fit_identity` adds to a checkpoint's header, and what each names.
FIELDS = {
    "model_settings": "model settings",
    "loss": "loss",
    "optimizer": "optimizer",
    "hyperparameters": "set of optimizer hyperparameters",
    "model_render": "model computation",
}
VERSIONS = "identity_versions"
CURRENT = f"jax {jax.__version__}, equinox {eqx.__version__}, optax {optax.__version__}"


def fit_identity(
    static: Any, loss: Any, optimizer: Any, params: Any, opt_state: Any, target: Any,
    sampler: tuple[str, Any] | None,
) -> dict[str, str | None]:  # fmt: skip
    """The header fields naming this fit's model settings, loss and optimizer."""
    update = getattr(optimizer, "update", None)
    optimizer_print = None
    if update is not None:
        # Its update on the gradient alone, as checkpoints before the loss value was
        # passed recorded it; given the value only for an optimizer that needs it.
        optimizer_print = fingerprint(
            lambda g, s, p: update(g, s, p), params, opt_state, params, portable=True,
            exact=False,
        ) or update_fingerprint(optimizer, params, opt_state, portable=True)  # fmt: skip
    # Not `exact`: a loss with a `custom_jvp` op (`jax.nn.relu`) printed None, and a
    # resume with any other loss was accepted.
    loss_print = loss_fingerprint(
        loss, loss_call, *loss_args(sampler, target), portable=True, exact=False
    )
    return {
        VERSIONS: CURRENT,
        "model_settings": _digest(structure_text(static), static),
        "loss": None if loss_print is None else _digest(loss_print, loss),
        "optimizer": optimizer_print,
        "hyperparameters": _hyperparameters(opt_state),
        "model_render": _render_print(static, params),
    }


def _render_print(static: Any, params: Any) -> str | None:
    """`fingerprint` of a model's `render` at a few points, for a model type from outside
    diffprims (ours hold no functions: their settings are values, in `model_settings`)."""
    model = eqx.combine(params, static)
    if is_diffprims(type(model)):
        return None
    points = np.linspace(0.1, 0.9, 8, dtype=np.float32).reshape(4, 2)

    def draw(params: Any) -> Any:
        return eqx.combine(params, static).render(points, pixel_size=1.0 / 64)

    return fingerprint(draw, params, portable=True, exact=False)


def start_fingerprint(params: Any) -> str:
    """SHA-256 of the starting model's trainable arrays: a resume from another start (a
    sweep over seeds sharing one path) continued the first."""
    return _digest("start", params)


def _hyperparameters(opt_state: Any) -> str | None:
    """SHA-256 of the settings `optax.inject_hyperparams` keeps in a fresh `opt_state`
    (None without any): the update's print sees them only as inputs, and a resume with
    another learning rate was continued at the checkpoint's."""
    injected = [
        node.hyperparams
        for node in jax.tree.leaves(opt_state, is_leaf=_injected)
        if _injected(node)
    ]
    return _digest("hyperparameters", injected) if injected else None


def _injected(node: Any) -> bool:
    return isinstance(getattr(node, "hyperparams", None), dict)


def _digest(text: str, tree: Any) -> str:
    """SHA-256 of `text` and of `tree`'s leaves (arrays by value, others by repr)."""
    digest = hashlib.sha256(text.encode())
    for leaf in jax.tree.leaves(tree):
        if not eqx.is_array_like(leaf):
            digest.update(without_addresses(sets_sorted(repr(leaf), leaf)).encode())
            continue
        if is_typed_key(leaf):  # (NumPy has no key dtype: its data, and its kind)
            digest.update(str(leaf.dtype).encode())
            leaf = jax.random.key_data(leaf)
        value = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{value.dtype.name}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def compared(field: str, header: dict[str, Any], expected: Any) -> bool:
    """Whether a checkpoint's `field` is compared with this fit's `expected` value: all
    fields are, but an identity field only where both sides have one (an older
    checkpoint has none) made with the same versions."""
    if field not in FIELDS and field != VERSIONS:
        return True
    return (
        field != VERSIONS
        and expected is not None
        and header.get(field) is not None
        and header.get(VERSIONS) == CURRENT
    )
