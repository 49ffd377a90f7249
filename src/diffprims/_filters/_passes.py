"""The numerical core of a separable filter bank: its 1D passes and its sampling."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array


def _toeplitz(taps: Array, tile: int) -> Array:
    """`(R, K)` taps as `(R, tile, tile + K - 1)` matrices `M[r, t, u] = taps[r, K - 1 - (u - t)]`.

    `M[r] @ x[u0 : u0 + tile + K - 1]` is `tile` consecutive outputs of the full
    convolution of `x` with `taps[r]` (a band matrix: K non-zeros per row).
    """
    size = taps.shape[1]
    offset = jnp.arange(tile + size - 1)[None, :] - jnp.arange(tile)[:, None]
    band = (offset >= 0) & (offset < size)
    return jnp.where(band, taps[:, ::-1][:, jnp.clip(offset, 0, size - 1)], 0.0)


def _tiles(x: Array, length: int, size: int, tile: int) -> Array:
    """Overlapping `(num_tiles, tile + size - 1, ...)` windows of the first axis of `x`."""
    num_tiles = -(-length // tile)
    rows = num_tiles * tile + size - 1
    x = jnp.pad(x, [(0, rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1))
    index = jnp.arange(num_tiles)[:, None] * tile + jnp.arange(tile + size - 1)[None, :]
    return x[index]


def _tile_size(length: int, size: int) -> int:
    # Each tile does (tile + K - 1) multiply-adds per output where K are needed, and reads
    # (tile + K - 1) / tile input rows per output row: a tile about as long as the kernel
    # balances the two. Measured on CPU (1024² RGB, tiles 16..256): K = 15 -> 32 and
    # K = 50 -> 64 were fastest, i.e. K rounded up to a multiple of 32.
    return min(length, 32 * -(-size // 32))


# Above this many elements in the vertical passes' intermediate images
# `(R, H, W + Kw - 1, C)` (64 MiB of float32; about 3x that with the tile windows of
# both passes), a bank is applied a chunk of passes at a time: memory then grows with
# the image alone, not with R x the image (rank 200 of a 301 x 301 disk on a 2000 x 2000
# RGB image asked for 33 GB). A bank that fits is applied in one go, as before.
CHUNK_ELEMENTS = 2**24


def _chunks(rank: int, per_pass: int, budget: int) -> tuple[int, int]:
    """`(count, size)`: the fewest chunks of at most `budget // per_pass` passes (>= 1),
    as even as they go (`count * size - rank < count` passes of zeros pad the last)."""
    count = -(-rank // max(1, budget // per_pass))
    return count, -(-rank // count)


def _passes(vertical: Array, horizontal: Array, rows: Array, shape: tuple[int, ...]) -> Array:
    """The passes of a bank (or a chunk of one) over the row tiles of the padded image,
    summed: `(H, W', C)`, `W'` the width rounded up to whole horizontal tiles."""
    height, width, channels = shape
    (rank, size_h), size_w = vertical.shape, horizontal.shape[1]
    # Vertical passes: (R, H, W + Kw - 1, C), one intermediate image per pass.
    tile = rows.shape[1] - size_h + 1
    columns = jnp.einsum("rtu,buwc->rbtwc", _toeplitz(vertical, tile), rows)
    columns = columns.reshape(rank, -1, width + size_w - 1, channels)[:, :height]
    # Horizontal passes, summed over the bank, on tile windows of these R images only.
    tile = _tile_size(width, size_w)
    cols = _tiles(jnp.moveaxis(columns, 2, 0), width, size_w, tile)
    out = jnp.einsum("rtu,burhc->hbtc", _toeplitz(horizontal, tile), cols)
    return out.reshape(height, -1, channels)


@functools.partial(jax.jit, static_argnames=("mode", "chunk_elements"))
def apply_passes(
    vertical: Array,
    horizontal: Array,
    image: Array,
    mode: str,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Array:
    # Compiled as a whole: eagerly, dispatching its dozen small ops costs ~10x more.
    height, width, channels = image.shape
    (rank, size_h), size_w = vertical.shape, horizontal.shape[1]
    dtype = jnp.result_type(image.dtype, vertical.dtype)
    padding = ((size_h // 2, (size_h - 1) // 2), (size_w // 2, (size_w - 1) // 2), (0, 0))
    padded = jnp.pad(image.astype(dtype), padding, mode=mode)
    rows = _tiles(padded, height, size_h, _tile_size(height, size_h))
    per_pass = height * (width + size_w - 1) * channels
    count, size = _chunks(rank, per_pass, chunk_elements)
    if count == 1:
        return _passes(vertical, horizontal, rows, image.shape)[:, :width]
    # Chunk by chunk, summed in a loop (passes of zeros fill the last chunk: they add 0).
    # `checkpoint`: gradients recompute a chunk's intermediate images, not store them all.
    pad = ((0, count * size - rank), (0, 0))
    chunks = (
        jnp.pad(vertical, pad).reshape(count, size, size_h),
        jnp.pad(horizontal, pad).reshape(count, size, size_w),
    )
    passes = jax.checkpoint(_passes, static_argnums=3)

    def step(total: Array, chunk: tuple[Array, Array]) -> tuple[Array, None]:
        return total + passes(*chunk, rows, image.shape), None

    tile = _tile_size(width, size_w)
    shape = (height, -(-width // tile) * tile, channels)
    total = jnp.zeros(shape, jnp.result_type(dtype, horizontal.dtype))
    total, _ = jax.lax.scan(step, total, chunks)
    return total[:, :width]


@jax.jit
def sample_kernel(vertical: Array, horizontal: Array, points: Array) -> Array:
    height, width = vertical.shape[1], horizontal.shape[1]
    rows = jnp.floor(points[:, 1] * height).astype(jnp.int32)
    cols = jnp.floor(points[:, 0] * height).astype(jnp.int32)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    values = jnp.sum(
        vertical[:, jnp.clip(rows, 0, height - 1)] * horizontal[:, jnp.clip(cols, 0, width - 1)],
        axis=0,
    )
    return jnp.where(inside, values, 0.0)[:, None]
