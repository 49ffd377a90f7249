"""The step loop: `length` optimizer steps in one compiled call (`lax.scan`).

The one step loop of the library: `fit` and `paint` both run it. It knows the model
only through a render function, so it serves every model of the protocol.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._loss_checks import restrict_to_pixels
from .._losses import AbstractLoss
from .._model import check_rendered, check_rendered_image
from .._validate import trusted
from ._canon import Memo, canonical_loss, canonical_optimizer, signature
from ._lifted import LiftedUpdate, lifted
from ._update import optimizer_update


class PointRender(eqx.Module):
    """How the step loop renders a model: `model.render(...)` at sampled points,
    `model.render_image(...)` on the full grid; `method` (shape sets only) picks the
    renderer, None the model's default.

    A subclass can take its place; `paint` passes one that widens soft edges.
    """

    method: str | None = eqx.field(static=True, default=None)

    def __call__(self, model: Any, points: Array, pixel_size: Any) -> Array:
        if self.method is None:
            return model.render(points, pixel_size=pixel_size)
        return model.render(points, pixel_size=pixel_size, method=self.method)

    def image(self, model: Any, shape: tuple[int, int]) -> Array:
        if self.method is None:
            return model.render_image(shape)
        return model.render_image(shape, method=self.method)


class Problem(eqx.Module):
    """What every step of a fit needs besides the parameters.

    `sampler` is None (every pixel, `model.render_image`), `("uniform", count)` or
    `("stratified", stride)`; `render` renders sampled points (see `PointRender`).
    """

    target: Array
    loss: AbstractLoss
    optimizer: Any  # an optax.GradientTransformation (in the step: a LiftedUpdate)
    key: PRNGKeyArray
    sampler: tuple[str, Any] | None = eqx.field(static=True)
    render: Any = PointRender()
    # What the loss and optimizer compute (`_canon`'s fingerprints): the compiled step's
    # key, so the same object computing something else since (a bound method reading
    # `self.weight`) compiles anew rather than reusing the old program.
    computes: Any = eqx.field(static=True, default=None)


class LoopState(eqx.Module):
    """The carry of the step loop: parameters, optimizer state, the finite flag, the
    snapshots `(k, ...)` (or None) and the parameters before the last update (`previous`,
    where a fit goes back to if the loss at `params` is not finite; None: it does not)."""

    params: Any
    opt_state: Any
    ok: Array
    snaps: Any = None
    previous: Any = None


def pixel_points(indices: Array, height: int, width: int) -> Array:
    """Pixel centres (frame units) of flat pixel `indices` of an `(H, W)` grid."""
    rows, cols = indices // width, indices % width
    return jnp.stack([(cols + 0.5) / height, (rows + 0.5) / height], axis=-1)


#: The largest block (in pixels) whose epochs are reshuffled (`stratified_indices`).
RESHUFFLED_AREA = 256


def stratified_indices(
    key, height: int, width: int, stride: int | tuple[int, int], step: Any = 0
) -> Array:
    """Flat indices of one random pixel in every `stride x stride` block of the grid
    (`(rows, cols)` for oblong blocks) at `step` of a fit sampling with `key`, every
    pixel as likely as any other.

    Over an epoch of as many steps as a block has pixels, each block visits each of its
    pixels once (random reshuffling: the epoch's order drawn from `key` and the epoch,
    each block's shifted by its own random offset). Drawn independently each step, some
    pixels went unseen for many steps and others came twice: at 1800 steps of `paint`
    +0.06 dB mean on six photos and four keys (27.02 -> 27.08), at no cost. Blocks of
    more than `RESHUFFLED_AREA` pixels (a few pixels a step, epochs of thousands of
    steps) draw anew each step: permuting them cost more than the step.

    A block cut by the image's bottom or right edge is drawn over its whole rectangle,
    and a draw past the edge takes a pixel of the whole image at random instead: each
    pixel is then drawn with the same probability (one over the block's area plus the
    same share of the redrawn ones), so the mean loss over the samples is the image's,
    unbiased. (Clipped onto the edge, the last row and column were drawn up to `stride`
    times as often.)
    """
    down, across = (stride, stride) if isinstance(stride, int) else stride
    area = down * across
    rows, cols = np.arange(0, height, down), np.arange(0, width, across)
    grid_r, grid_c = (jnp.asarray(g) for g in np.meshgrid(rows, cols, indexing="ij"))
    # int32 throughout: under jax_enable_x64 a default int64 draw took other pixels.
    step_key = jax.random.fold_in(key, step)  # for what is drawn anew each step
    if area <= RESHUFFLED_AREA:
        k_order, k_shift = jax.random.split(jax.random.fold_in(key, step // area))
        order = jax.random.permutation(k_order, jnp.arange(area, dtype=jnp.int32))
        shift = jax.random.randint(k_shift, grid_r.shape, 0, area, jnp.int32)
        offset = (order[step % area] + shift) % area
    else:  # a step permuting a block of 128 x 128 took 6 ms, 125x its draws: drawn anew
        offset = jax.random.randint(
            jax.random.fold_in(step_key, 2), grid_r.shape, 0, area, jnp.int32
        )
    r, c = grid_r + offset // across, grid_c + offset % across
    indices = (r * width + c).reshape(-1)
    if height % down == 0 and width % across == 0:
        return indices
    past_edge = ((r >= height) | (c >= width)).reshape(-1)
    k_any = jax.random.fold_in(step_key, 1)
    anywhere = jax.random.randint(k_any, indices.shape, 0, height * width, jnp.int32)
    return jnp.where(past_edge, anywhere, indices)


def sample_count(sampler: tuple[str, Any], height: int, width: int) -> int:
    """Pixels a step of `sampler` draws on an `(H, W)` grid: its size, or one a block
    (blocks cut by the image's edge too)."""
    kind, size = sampler
    if kind == "uniform":
        return size
    down, across = (size, size) if isinstance(size, int | np.integer) else size
    return -(-height // down) * -(-width // across)


def sample_indices(sampler: tuple[str, Any], key, step: Any, height: int, width: int) -> Array:
    """The pixels of `step` of a fit sampling with `key`."""
    kind, size = sampler
    if kind == "uniform":
        # With replacement: O(batch) per step, where a permutation is O(H W log HW).
        step_key = jax.random.fold_in(key, step)
        return jax.random.randint(step_key, (size,), 0, height * width, jnp.int32)
    return stratified_indices(key, height, width, size, step)


def objective(params: Any, static: Any, problem: Problem, step) -> Array:
    """The loss of `step`: on the full grid, or on the pixels the sampler picks."""
    model = eqx.combine(params, static)
    target, loss = problem.target, problem.loss
    height, width, channels = target.shape
    if problem.sampler is None:
        image = problem.render.image(model, (height, width))
        return loss(check_rendered_image(model, image, (height, width)), target)
    indices = sample_indices(problem.sampler, problem.key, step, height, width)
    pred = problem.render(model, pixel_points(indices, height, width), 1.0 / height)
    pred = check_rendered(model, pred, indices.shape[0])
    goal = target.reshape(-1, channels)[indices]
    return restrict_to_pixels(loss, indices)(pred, goal)


def _all_finite(tree: Any) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _like(new: Any, old: Any) -> Any:
    same = not hasattr(old, "dtype") or getattr(new, "dtype", old.dtype) == old.dtype
    return new if same else jnp.asarray(new).astype(old.dtype)


def _step(static, problem, total, update_scale, state: LoopState, index) -> tuple[Any, Array]:
    """One optimizer step, or none for the padding past `total` of a dispatch's last
    steps: a `lax.cond`, since a masked step cost a whole step (`paint(steps=300)`, whose
    rounds each end in a short dispatch: 2.83 -> 1.75 s; `steps=1500` 4.98 -> 4.87 s)."""
    carried = (state.params, state.opt_state, state.ok, state.previous)
    skipped = carried, jnp.full((), jnp.nan, _loss_dtype())
    return jax.lax.cond(
        index < total,
        lambda: _real_step(static, problem, update_scale, state, index),
        lambda: skipped,
    )


def _loss_dtype() -> Any:
    """The loss history's dtype: the default float (float64 only with `jax_enable_x64`)."""
    return jnp.result_type(float)


def _real_step(static, problem, update_scale, state: LoopState, index) -> tuple[Any, Array]:
    value, grads = jax.value_and_grad(objective)(state.params, static, problem, index)
    # For a complex parameter JAX gives the conjugate of the steepest ascent of a real loss:
    # conjugated, optax's updates descend (unconjugated, sgd raised the loss 4x).
    grads = jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, grads)
    if isinstance(problem.optimizer, LiftedUpdate):
        updates, new_state = problem.optimizer(grads, state.opt_state, state.params, value)
    else:
        updates, new_state = optimizer_update(
            problem.optimizer, grads, state.opt_state, state.params, value,
            lambda params: objective(params, static, problem, index),  # this step's pixels
        )  # fmt: skip
    if update_scale is not None:
        updates = jax.tree.map(lambda u: update_scale * u, updates)
    # In the old dtypes, as `optax.apply_updates` keeps them: a float64 learning rate (a
    # vmapped one under jax_enable_x64) would promote float32 parameters mid-scan.
    new_params = jax.tree.map(_like, eqx.apply_updates(state.params, updates), state.params)
    new_state = jax.tree.map(_like, new_state, state.opt_state)
    # The first step whose loss or new parameters are not finite stops the fit for good
    # (`ok` stays False): the carry keeps the last parameters whose loss was finite (a
    # loss that is not finite at `params` sends them back to `previous`: a user model's
    # `sqrt` of a parameter the last update made negative), losses read NaN.
    ok = state.ok & jnp.isfinite(value) & _all_finite(new_params)
    kept = state.params
    if state.previous is not None:
        back = state.ok & ~jnp.isfinite(value)
        kept = jax.tree.map(lambda p, q: jnp.where(back, q, p), state.params, state.previous)
    params, opt_state = jax.tree.map(
        lambda new, old: jnp.where(ok, new, old),
        (new_params, new_state),
        (kept, state.opt_state),
    )
    previous = None if state.previous is None else kept
    return (params, opt_state, ok, previous), jnp.where(ok, value, jnp.nan).astype(_loss_dtype())


def run_steps(
    state: LoopState,
    static: Any,
    problem: Problem,
    first: Array,
    total: Array,
    length: int,
    snap_steps: Array | None = None,
    update_scale: Array | None = None,
) -> tuple[LoopState, Array]:
    """`length` optimizer steps from step `first` (those at or past `total` do nothing).

    Returns the new state and the `(length,)` losses. `update_scale` (traced)
    multiplies every update, or (`(length,)`) each step's (a learning-rate schedule set
    from outside). Snapshot `j` holds the parameters after `snap_steps[j]` steps.

    Compiled once per structure and settings: a fresh optimizer or loss that computes
    what an earlier one did reuses its compiled loop (`_canon`).
    """
    problem = _canonical_problem(problem, state)
    return _run_steps(state, static, problem, first, total, length, snap_steps, update_scale)


def loss_call(loss, pred, goal, indices):
    """What each step computes with the loss (sampled pixels: `indices`, else None)."""
    return loss(pred, goal) if indices is None else restrict_to_pixels(loss, indices)(pred, goal)


def loss_args(sampler: tuple[str, Any] | None, target: Any) -> tuple[Any, Any, Any]:
    """The abstract `(pred, goal, indices)` each step passes to `loss_call`."""
    height, width, channels = target.shape
    if sampler is None:
        pred = jax.ShapeDtypeStruct((height, width, channels), target.dtype)
        return pred, pred, None
    count = sample_count(sampler, height, width)
    pred = jax.ShapeDtypeStruct((count, channels), target.dtype)
    return pred, pred, jax.ShapeDtypeStruct((count,), jnp.int32)


_VALUES = Memo()


def loss_value(loss: Any, args: tuple) -> Any:
    """The shape and dtype of the loss each step computes (float64 in a float64 fit),
    traced once per loss structure and arguments; None when it cannot be traced here."""
    leaves, treedef = jax.tree.flatten(loss)
    ident = (treedef, signature(leaves), signature(args))
    try:
        hit = _VALUES.lookup(ident)
    except TypeError:  # an unhashable static field
        return None
    if hit is None:
        try:
            shape = jax.eval_shape(lambda d, *a: loss_call(d, *a), loss, *args)
        except Exception:  # the step will raise it, with its own message
            return None
        hit = _VALUES.setdefault(ident, (jax.ShapeDtypeStruct(shape.shape, shape.dtype),))
    return hit[0]


def _canonical_problem(problem: Problem, state: LoopState) -> Problem:
    """`problem` with its optimizer lifted (its float settings as leaves: `_lifted`) or
    else swapped for the first equal one seen, and its loss for the first equal one."""
    args = loss_args(problem.sampler, problem.target)
    loss, loss_print = canonical_loss(problem.loss, loss_call, *args)
    value = loss_value(loss, args)  # the dtype the optimizer is given the loss in
    optimizer, update_print = lifted(problem.optimizer, state.params, state.opt_state, value), None
    if optimizer is None:  # (a lifted update's program is static, compared by its print)
        optimizer, update_print = canonical_optimizer(
            problem.optimizer, state.params, state.opt_state
        )
    computes = (loss_print, update_print)
    return dataclasses.replace(problem, loss=loss, optimizer=optimizer, computes=computes)


@eqx.filter_jit
@trusted
def _run_steps(state, static, problem, first, total, length, snap_steps, update_scale):

    def body(carry: LoopState, step):
        index, scale = step
        stepped, value = _step(static, problem, total, scale, carry, index)
        params, opt_state, ok, previous = stepped
        snaps = carry.snaps
        if snaps is not None:
            # A masked write each step costs O(k x parameters), nothing next to a render.
            # The step that stops the fit also rewrites the snapshot of its parameters: a
            # loss that is not finite there sent them back (`_real_step`).
            hit = (snap_steps == index + 1) | ((snap_steps == index) & carry.ok & ~ok)
            snaps = jax.tree.map(
                lambda s, p: jnp.where(hit.reshape((-1,) + (1,) * p.ndim), p[None], s),
                snaps,
                params,
            )
        return LoopState(params, opt_state, ok, snaps, previous), value

    if update_scale is not None:  # one a step
        update_scale = jnp.broadcast_to(update_scale, (length,))
    return jax.lax.scan(body, state, (first + jnp.arange(length), update_scale))
