"""Checkpoints of a running fit: the state to continue it bit for bit, and nothing else.

A checkpoint file is one line of JSON (the header), one line with the SHA-256 of the
header line and the payload, then the array payload written by
`equinox.tree_serialise_leaves` (NumPy `.npy` records, never pickle). The header records
the step, the PRNG key, what the fit was for (model/optimizer-state structure, target
fingerprint, batch, and prints of the model's settings, the loss and the optimizer: see
`_identity`) and the payload's length, so a corrupt file or a checkpoint of a
different fit is refused with a clear error instead of a silently wrong start. Reads are
bounded: only regular files, a header line of at most `MAX_HEADER` bytes, and a payload
of exactly the recorded length.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._errors import CheckpointError
from .._files import CHECKSUM_LINE, atomic_write, checksum_line, open_regular, read_line
from .._validate import is_typed_key
from ._identity import FIELDS, compared

_HOW = {  # what each identity field covers
    "model_settings": "built alike: class, softness, compositing, learned background, "
    "which parameters train: `trainable`",
    "loss": "its kind, structure and weights",
    "optimizer": "its kind and settings, e.g. the learning rate",
    "hyperparameters": "the values given to `optax.inject_hyperparams`",
    "model_render": "what its `render` computes, functions in its settings included",
}

FORMAT = "diffprims-checkpoint"
VERSION = 2
MAX_HEADER = 16 * 2**20


def _structure(tree: Any) -> list[str]:
    """One line per array leaf: its path, shape and dtype (what a checkpoint must match)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [
        f"{jax.tree_util.keystr(path)}: {_dtype_name(leaf)}{list(jnp.shape(leaf))}"
        for path, leaf in leaves
        if eqx.is_array_like(leaf) or isinstance(leaf, jax.ShapeDtypeStruct)
    ]


def snapshot_slots(count: int) -> int:
    """The snapshot slots of a fit taking `count` snapshots: a power of two, those past
    the count never taken, so another count reuses the compiled loop."""
    return 1 << (count - 1).bit_length()


def _dtype_name(leaf: Any) -> str:
    return str(leaf.dtype) if is_typed_key(leaf) else np.dtype(leaf.dtype).name


def _serialise(file: Any, leaf: Any) -> None:
    """`eqx.tree_serialise_leaves`' writer, a typed PRNG key (in `optax.noisy_sgd`'s
    state, say) written as its `key_data` (NumPy has no key dtype)."""
    eqx.default_serialise_filter_spec(
        file, jax.random.key_data(leaf) if is_typed_key(leaf) else leaf
    )


def _deserialise(file: Any, like: Any) -> Any:
    """`_serialise`'s reader: a typed key read back as its data, wrapped like `like`."""
    if not is_typed_key(like):
        return eqx.default_deserialise_filter_spec(file, like)
    data = eqx.default_deserialise_filter_spec(file, jax.random.key_data(like))
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like))


def target_fingerprint(target: Array) -> str:
    """SHA-256 of the target's bytes, shape and dtype."""
    values = np.ascontiguousarray(np.asarray(target))
    digest = hashlib.sha256(f"{values.dtype.name}{values.shape}".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def _key_record(key: PRNGKeyArray) -> dict[str, Any]:
    return {
        "impl": str(jax.random.key_impl(key)),
        "data": np.asarray(jax.random.key_data(key)).astype(np.uint32).tolist(),
    }


def save_checkpoint(
    path: str | os.PathLike,
    *,
    params: Any,
    opt_state: Any,
    losses: Array,
    step: int,
    key: PRNGKeyArray,
    fit_info: dict[str, Any],
    snapshots: Any = None,
    previous: Any = None,
) -> Path:
    """Write a checkpoint atomically (a temporary file renamed into place). `previous`:
    the parameters before the last update, where a resumed fit goes back to if the loss
    at `params` is not finite (none: the payload reads as before they were kept)."""
    buffer = io.BytesIO()
    tree = (params, opt_state, losses, snapshots, previous)
    eqx.tree_serialise_leaves(buffer, tree, _serialise)
    payload = buffer.getvalue()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "previous": previous is not None,
        "key": _key_record(key),
        "structure": _structure((params, opt_state, snapshots)),
        # float64 under `jax_enable_x64` even for a float32 model.
        "losses_dtype": jnp.dtype(losses.dtype).name,
        "payload_bytes": len(payload),
        **fit_info,
    }
    line = json.dumps(header, sort_keys=True).encode() + b"\n"
    checksum = checksum_line(line, payload)

    def write(temp: str) -> None:
        with open(temp, "wb") as file:
            file.write(line + checksum + payload)  # synced to disk by atomic_write

    return atomic_write(path, write)


def _read_checked(path: str | os.PathLike, name: str, fit_info: dict[str, Any]):
    """`(header, payload)` of a checkpoint file, its format, hash and fit checked."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No checkpoint at {os.fspath(path)!r}; `resume` must name a file written by "
            "`fit(..., checkpoint=PATH)`."
        )
    file, size = open_regular(path, "The `resume` checkpoint", CheckpointError)
    with file:
        line = read_line(file, MAX_HEADER)
        try:
            header = json.loads(line or b"")
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError
        except (ValueError, RecursionError):
            raise CheckpointError(_not_a_checkpoint(name, line, size)) from None
        if header.get("version") != VERSION:
            raise CheckpointError(
                f"{name} has an unknown format version: expected {VERSION}, got "
                f"{header.get('version')!r:.40}. It was written by another diffprims version."
            )
        checksum = read_line(file, CHECKSUM_LINE)
        expected, left = header.get("payload_bytes"), size - file.tell()
        payload = file.read(left) if checksum is not None and expected == left else None
    if payload is None or checksum_line(line, payload) != checksum:  # pyright: ignore
        raise CheckpointError(
            f"{name} is corrupt or truncated: its header and payload ({left} bytes, "
            f"expected {expected!r:.40}) do not match the recorded SHA-256. Resume from an "
            "older checkpoint or start the fit again."
        )
    _check_header(header, name)
    for field, expected in fit_info.items():
        if field == "snapshot_steps" and not expected:
            continue  # a fit without snapshots may continue one with them
        if field in FIELDS or not compared(field, header, expected):
            continue  # checked after the arrays' structure, the plainer message
        if field == "start_sha256":
            continue  # last: a model of another size says so by its arrays first
        if field == "x64" and field not in header:
            continue  # written before the setting was recorded
        if header.get(field) != expected:
            raise CheckpointError(_mismatch(name, field, expected, header.get(field)))
    return header, payload


def _not_a_checkpoint(name: str, line: bytes | None, size: int) -> str:
    """Why a file's first line is no checkpoint header, in words for an empty or cut file."""
    again = "Resume from an older checkpoint or start the fit again."
    if size == 0:
        return f"{name} is empty (0 bytes). {again}"
    if line is None and size <= MAX_HEADER:
        return (
            f"{name} is truncated or not a checkpoint: its header line does not end (the "
            f"file ends after {size} bytes). {again}"
        )
    got = "a first line that does not end" if line is None else f"{line[:60]!r}"
    return (
        f"{name} is not a diffprims checkpoint (expected a JSON header with format "
        f"{FORMAT!r}; got {got}). Pass the file written by `fit(..., checkpoint=PATH)`."
    )


def _check_identity(
    header: dict[str, Any], name: str, fit_info: dict[str, Any], fields: tuple[str, ...]
) -> None:
    """The identity `fields` (model settings, loss, optimizer) match the checkpoint's."""
    for field in fields:
        expected = fit_info.get(field)
        if compared(field, header, expected) and header.get(field) != expected:
            raise CheckpointError(_mismatch(name, field, expected, header.get(field)))


_LOSS_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _check_header(header: dict[str, Any], name: str) -> None:
    """The fields `load_checkpoint` reads have the types it expects."""
    key, step, steps = header.get("key"), header.get("step"), header.get("snapshot_steps", [])
    ok = (
        isinstance(step, int) and not isinstance(step, bool) and step >= 0
        and isinstance(key, dict) and isinstance(key.get("impl"), str)
        and isinstance(key.get("data"), list) and len(key["data"]) <= 64
        and all(isinstance(v, int) and 0 <= v < 2**32 for v in key["data"])
        and isinstance(header.get("structure"), list)
        and isinstance(steps, list) and all(isinstance(v, int) for v in steps)
        and header.get("losses_dtype", "float32") in _LOSS_DTYPES
    )  # fmt: skip
    if not ok:
        raise CheckpointError(
            f"{name} has a damaged header (its step, key, structure or snapshot steps are "
            "not what `fit` writes). Resume from an older checkpoint or start again."
        )


def _mismatch(name: str, field: str, expected: Any, got: Any) -> str:
    if field == "snapshot_steps":
        return (
            f"{name} was written by a fit with snapshots at steps {got}; this fit takes "
            f"them at {expected} (its `steps` or `snapshots` differ), so its snapshots "
            "cannot continue the saved ones. Resume with the original `steps` and "
            "`snapshots`, or with `snapshots=None` to fit for longer."
        )
    if field == "x64":
        return (
            f"{name} was written with `jax_enable_x64` {got}; this process has it {expected} "
            "(it changes the dtypes a fit computes in). Set "
            f'`jax.config.update("jax_enable_x64", {got})` before fitting to resume it, or '
            "start afresh: `resume=False` (or another `checkpoint` path)."
        )
    if field == "start_sha256":
        return (
            f"{name} was written by a fit that started from another model (its parameters "
            "differ), so resuming it would not continue this fit. Pass the model that fit "
            "started from (not its result), or start afresh: `resume=False` (or another "
            "`checkpoint` path, one per run when you sweep over starting models)."
        )
    if field in FIELDS:
        return (
            f"{name} was written with a different {FIELDS[field]} (got SHA-256 "
            f"{str(got):.12}... there, {str(expected):.12}... here), so resuming it would "
            f"not continue this fit. Pass the same {FIELDS[field]} as the fit that wrote "
            f"it ({_HOW[field]}), or start afresh: `resume=False` (or another `checkpoint` path). "
            f"(An older diffprims may have recorded the same {FIELDS[field]} differently.)"
        )
    return (
        f"{name} belongs to a different fit: expected {field} {expected!r:.200} (this "
        f"fit's), got {got!r:.200}. Call `fit` with the same model, target, loss, "
        "optimizer, batch and sampling as the fit that wrote it, or start afresh: "
        "`resume=False` (or another `checkpoint` path)."
    )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    params: Any,
    opt_state: Any,
    key: PRNGKeyArray | None,
    steps: int,
    fit_info: dict[str, Any],
    snapshots: Any = None,
) -> tuple[Any, Any, Array, int, PRNGKeyArray, Any, Any]:
    """`(params, opt_state, losses, step, key, snapshots, previous)` from a checkpoint of
    this fit (`previous` None in one written before it was kept: then `params`).

    `params`/`opt_state`/`snapshots` give the structure to read into; `key` (or None to
    take the checkpoint's); `fit_info` must equal what the checkpoint recorded.
    """
    name = f"`resume` checkpoint {os.fspath(path)!r}"
    header, payload = _read_checked(path, name, fit_info)
    saved_snapshots = snapshots
    if snapshots is None and header.get("snapshot_steps"):
        # This fit keeps no snapshots: read the checkpoint's and drop them.
        count = snapshot_slots(len(header["snapshot_steps"]))
        saved_snapshots = jax.tree.map(
            lambda p: jax.ShapeDtypeStruct((count, *np.shape(p)), p.dtype), params
        )
    # The model's settings first: a fixed background (say) also changes what trains,
    # and "different model settings" says more than the arrays that differ because of it.
    _check_identity(header, name, fit_info, ("model_settings",))
    structure = _structure((params, opt_state, saved_snapshots))
    if header.get("structure") != structure:
        saved = header.get("structure") or []
        diff = next(
            (f"{a!r} vs {b!r}" for a, b in zip(saved, structure) if a != b),
            f"{len(saved)} vs {len(structure)} arrays",
        )
        raise CheckpointError(
            f"{name} holds a different model or optimizer state: got {diff} (checkpoint vs "
            "this fit). Pass a model of the same type and size and the same optimizer "
            "(the same chain of optax transformations: a recipe such as "
            "`dp.recommended_optimizer` that changed with a diffprims upgrade changes the "
            "state; rebuild the optimizer as the checkpoint's fit built it)."
        )
    _check_identity(header, name, fit_info, tuple(FIELDS))
    start = header.get("start_sha256")  # none in checkpoints written before it was
    if start is not None and start != fit_info.get("start_sha256"):
        raise CheckpointError(_mismatch(name, "start_sha256", None, start))
    step = int(header["step"])
    if step > steps:
        raise CheckpointError(
            f"{name} is past the end of this fit: got step {step} with `steps`={steps}; "
            f"pass `steps` >= {step}."
        )
    record = header["key"]
    try:
        saved_key = jax.random.wrap_key_data(
            jnp.asarray(record["data"], dtype=jnp.uint32), impl=record["impl"]
        )
    except Exception as error:
        raise CheckpointError(f"{name} holds a key JAX cannot use: {error}") from None
    if key is not None and _key_record(key) != record:
        raise CheckpointError(
            f"{name} was written by a fit with a different `key` (got {record['data']} "
            f"there, {_key_record(key)['data']} here). Pass the same key, or `key=None` to "
            "use the checkpoint's."
        )
    # Checkpoints written before the dtype was recorded hold float32 losses.
    losses_like = jax.ShapeDtypeStruct((step,), header.get("losses_dtype", "float32"))
    like = (params, opt_state, losses_like, saved_snapshots,
            params if header.get("previous") is True else None)  # fmt: skip
    try:
        params, opt_state, losses, saved_snapshots, previous = eqx.tree_deserialise_leaves(
            io.BytesIO(payload), like, _deserialise
        )
    except Exception as error:  # a payload that hashes right but does not parse
        raise CheckpointError(f"{name} could not be read; got the error: {error}") from None
    return (
        params,
        opt_state,
        losses,
        step,
        saved_key,
        (snapshots if snapshots is None else saved_snapshots),
        params if previous is None else previous,
    )


class Checkpointer:
    """Saves a running fit's state for `Driver` (`fit(..., checkpoint=...)`).

    Saves when at least `every` steps passed since the last save (every dispatch by
    default), at the last step, and when Ctrl-C stops the fit.
    """

    def __init__(self, path, *, every, key, fit_info, static_steps, last_saved):
        self.path, self.every, self.key, self.fit_info = path, every or 1, key, fit_info
        self.steps, self.last_saved = static_steps, last_saved

    def save(self, state: Any, losses: Callable[[], Array], done: int, final: bool) -> None:
        """Save `state` and `losses()` (called only when this step is saved)."""
        if done == self.last_saved or not (final or done - self.last_saved >= self.every):
            return
        save_checkpoint(
            self.path, params=state.params, opt_state=state.opt_state, losses=losses(),
            step=done, key=self.key, fit_info=self.fit_info, snapshots=state.snaps,
            previous=state.previous,
        )  # fmt: skip
        self.last_saved = done
