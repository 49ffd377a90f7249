"""Checkpoints of a running fit: the state to continue it bit for bit, and nothing else.

A checkpoint file is one line of JSON (the header), then the array payload written by
`equinox.tree_serialise_leaves` (NumPy `.npy` records, never pickle). The header records
the step, the PRNG key, what the fit was for (model/optimizer-state structure, target
fingerprint, batch) and a SHA-256 of the payload, so a corrupt file or a checkpoint of a
different fit is refused with a clear error instead of a silently wrong start.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._errors import CheckpointError
from .._files import atomic_write

FORMAT = "diffprims-checkpoint"
VERSION = 1


def _structure(tree: Any) -> list[str]:
    """One line per array leaf: its path, shape and dtype (what a checkpoint must match)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [
        f"{jax.tree_util.keystr(path)}: {np.dtype(leaf.dtype).name}{list(np.shape(leaf))}"
        for path, leaf in leaves
        if eqx.is_array_like(leaf)
    ]


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
) -> Path:
    """Write a checkpoint atomically (a temporary file renamed into place)."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (params, opt_state, losses, snapshots))
    payload = buffer.getvalue()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "key": _key_record(key),
        "structure": _structure((params, opt_state, snapshots)),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
        **fit_info,
    }

    def write(temp: str) -> None:
        with open(temp, "wb") as file:
            file.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())

    return atomic_write(path, write)


def _read_checked(path: str | os.PathLike, name: str, fit_info: dict[str, Any]):
    """`(header, payload)` of a checkpoint file, its format, hash and fit checked."""
    try:
        with open(path, "rb") as file:
            first_line = file.readline()
            payload = file.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No checkpoint at {os.fspath(path)!r}; `resume` must name a file written by "
            "`fit(..., checkpoint=PATH)`."
        ) from None
    try:
        header = json.loads(first_line)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError
    except ValueError:
        raise CheckpointError(
            f"{name} is not a diffprims checkpoint (expected a JSON header with format "
            f"{FORMAT!r}; got {first_line[:60]!r}). Pass the file written by "
            "`fit(..., checkpoint=PATH)`."
        ) from None
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"{name} has an unknown format version: expected {VERSION}, got "
            f"{header.get('version')!r}. It was written by another diffprims version."
        )
    if len(payload) != header.get("payload_bytes") or hashlib.sha256(
        payload
    ).hexdigest() != header.get("payload_sha256"):
        raise CheckpointError(
            f"{name} is corrupt or truncated: expected {header.get('payload_bytes')} payload "
            f"bytes with the recorded SHA-256, got {len(payload)} bytes that do not match. "
            "Resume from an older checkpoint or start the fit again."
        )
    for field, expected in fit_info.items():
        if header.get(field) != expected:
            raise CheckpointError(
                f"{name} belongs to a different fit: expected {field} {expected!r} (this "
                f"fit's), got {header.get(field)!r}. Call `fit` with the same model, target, "
                "loss, optimizer and batch as the fit that wrote it."
            )
    return header, payload


def load_checkpoint(
    path: str | os.PathLike,
    *,
    params: Any,
    opt_state: Any,
    key: PRNGKeyArray | None,
    steps: int,
    fit_info: dict[str, Any],
    snapshots: Any = None,
) -> tuple[Any, Any, Array, int, PRNGKeyArray, Any]:
    """`(params, opt_state, losses, step, key, snapshots)` from a checkpoint of this fit.

    `params`/`opt_state`/`snapshots` give the structure to read into; `key` (or None to
    take the checkpoint's); `fit_info` must equal what the checkpoint recorded.
    """
    name = f"`resume` checkpoint {os.fspath(path)!r}"
    header, payload = _read_checked(path, name, fit_info)
    structure = _structure((params, opt_state, snapshots))
    if header.get("structure") != structure:
        saved = header.get("structure") or []
        diff = next(
            (f"{a!r} vs {b!r}" for a, b in zip(saved, structure) if a != b),
            f"{len(saved)} vs {len(structure)} arrays",
        )
        raise CheckpointError(
            f"{name} holds a different model or optimizer state: got {diff} (checkpoint vs "
            "this fit). Pass a model of the same type and size and the same optimizer."
        )
    step = int(header["step"])
    if step > steps:
        raise CheckpointError(
            f"{name} is past the end of this fit: got step {step} with `steps`={steps}; "
            f"pass `steps` >= {step}."
        )
    record = header["key"]
    saved_key = jax.random.wrap_key_data(
        jnp.asarray(record["data"], dtype=jnp.uint32), impl=record["impl"]
    )
    if key is not None and _key_record(key) != record:
        raise CheckpointError(
            f"{name} was written by a fit with a different `key` (got {record['data']} "
            f"there, {_key_record(key)['data']} here). Pass the same key, or `key=None` to "
            "use the checkpoint's."
        )
    like = (params, opt_state, jnp.zeros((step,), jnp.float32), snapshots)
    try:
        params, opt_state, losses, snapshots = eqx.tree_deserialise_leaves(
            io.BytesIO(payload), like
        )
    except Exception as error:  # a payload that hashes right but does not parse
        raise CheckpointError(f"{name} could not be read; got the error: {error}") from None
    return params, opt_state, losses, step, saved_key, snapshots


class Checkpointer:
    """Saves a running fit's state for `Driver` (`fit(..., checkpoint=...)`).

    Saves when at least `every` steps passed since the last save (every dispatch by
    default), at the last step, and when Ctrl-C stops the fit.
    """

    def __init__(self, path, *, every, key, fit_info, static_steps, last_saved):
        self.path, self.every, self.key, self.fit_info = path, every or 1, key, fit_info
        self.steps, self.last_saved = static_steps, last_saved

    def save(self, state: Any, losses: Array, done: int, final: bool) -> None:
        if done == self.last_saved or not (final or done - self.last_saved >= self.every):
            return
        save_checkpoint(
            self.path, params=state.params, opt_state=state.opt_state, losses=losses,
            step=done, key=self.key, fit_info=self.fit_info, snapshots=state.snaps,
        )  # fmt: skip
        self.last_saved = done
