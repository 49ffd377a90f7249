"""`diffprims filter --kernel`: the target kernel, made by name or read from a file."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from tokenize import TokenError
from typing import Any

from ._common import UsageError, read_image_channels

#: The largest kernel side: the fit renders the full K x K kernel (and its gradient) at
#: every step; at 1025 that is 1M values, at 50000 it was 2.5G (10 GB a copy).
MAX_KERNEL = 1025
#: `polygon:SIZE:SIDES`: a triangle at least; the kernel holds one edge distance per side
#: and pixel (SIDES 1e9 ran for minutes), and at 64 sides a polygon is a disk to the eye.
MIN_SIDES, MAX_SIDES = 3, 64
#: `gaussian:SIZE:SIGMA`'s largest SIGMA: wider, a Gaussian over the largest kernel is
#: flat to 3e-7, a box (SIGMA 1e300 overflowed float32, with NumPy's warning).
MAX_SIGMA = 1e6
#: Kernel files `--kernel` reads: NumPy arrays, text tables, pictures (their grey level).
ARRAY_FILES, TABLE_FILES = (".npy",), (".txt", ".csv")
PICTURE_FILES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")
FILE_TYPES = f".npy, .txt, .csv or a picture ({' '.join(PICTURE_FILES)})"
#: The kernels made by name, and how many `:ARG` each takes.
NAMED = {"disk": 0, "polygon": 1, "gaussian": 1, "box": 0}


def read_kernel(spec: str, *, quiet: bool = False) -> tuple[Any, float]:
    """`(kernel scaled to peak 1, its peak as made)` from `NAME:SIZE[:ARG]` (disk:50,
    polygon:51:6, gaussian:31:5, box:9) or a kernel file; the peak is its largest
    magnitude (as `recommended_loss` has it), refused where it is 0 or not finite."""
    import numpy as np

    if not spec.strip():
        raise UsageError(f"--kernel {spec!r} is empty: give NAME:SIZE[:ARG] (e.g. disk:50) "
                         f"or a kernel file ({FILE_TYPES})")  # fmt: skip
    suffix = Path(spec).suffix.lower()
    if suffix in ARRAY_FILES + TABLE_FILES + PICTURE_FILES:
        kernel = _kernel_file(spec, suffix, quiet=quiet)
    elif spec.partition(":")[0] not in NAMED and Path(spec).exists():
        what = "a folder" if Path(spec).is_dir() else f"a {suffix or 'suffix-less'} file"
        raise UsageError(f"--kernel {spec!r} is {what}; kernel files are {FILE_TYPES} "
                         "(or give NAME:SIZE[:ARG], e.g. disk:50)")  # fmt: skip
    else:
        kernel = _named_kernel(spec)
    peak = float(np.abs(kernel).max()) if np.all(np.isfinite(kernel)) else math.nan
    if math.isnan(peak):
        raise UsageError(f"--kernel {spec!r} holds NaN or infinite values")
    if not peak > 0:
        hint = (" (an even SIZE has no pixel at the centre: use an odd SIZE or a larger SIGMA)"
                if spec.startswith("gaussian:") else "")  # fmt: skip
        raise UsageError(f"--kernel {spec!r} is zero everywhere: there is nothing to fit{hint}")
    # Fitted at peak 1, the scale the loss weights and the optimizer are meant for: a
    # Gaussian of an even SIZE peaks below 1 (far below for a small SIGMA).
    return (kernel / peak).astype(np.float32), peak


def _kernel_file(spec: str, suffix: str, *, quiet: bool = False) -> Any:
    """A 2D kernel from a `.npy` array, a `.txt`/`.csv` table of numbers, or a picture:
    a float or 32-bit integer one (a TIFF) as it holds them, any other its grey level
    (the mean of its colour channels, times its alpha where it has transparency, so a
    transparent pixel is 0 whatever its colour)."""
    import numpy as np

    try:
        regular, exists = Path(spec).is_file(), Path(spec).exists()
    except OSError as error:  # a name the system refuses (longer than 255 bytes, ...)
        raise UsageError(f"--kernel {spec!r:.80}: {error.strerror or error}") from None
    if not regular:
        what = "not a regular file" if exists else "no such file"
        raise UsageError(f"--kernel {spec!r}: {what} (a kernel file, or NAME:SIZE)")
    try:
        if suffix in PICTURE_FILES:
            kernel = _raw_picture(spec)
            if kernel is None:
                picture = read_image_channels(spec, what="--kernel", quiet=quiet)
                kernel = picture[..., :3].astype(np.float64).mean(axis=-1)
                if picture.shape[-1] == 4:  # straight colour, then alpha
                    kernel = kernel * picture[..., 3]
        elif suffix in ARRAY_FILES:
            _check_numpy_file(spec, suffix)
            # Mapped, not read: a header that claims (99999, 99999) allocates nothing
            # before `_check_side` refuses it.
            kernel = np.load(spec, allow_pickle=False, mmap_mode="r")
        else:
            with warnings.catch_warnings():  # an empty file: said below, in words
                warnings.filterwarnings("ignore", "loadtxt: input contained no data")
                # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark.
                kernel = np.loadtxt(spec, delimiter="," if suffix == ".csv" else None,
                                    ndmin=2, encoding="utf-8-sig")  # fmt: skip
    except (OSError, ValueError, SyntaxError, TokenError, MemoryError) as error:
        # (A .npy header is read as a Python literal: a damaged one raises the last two.)
        reason = str(error) or type(error).__name__
        if isinstance(error, SyntaxError | TokenError):
            reason = "its NumPy header is damaged (save the kernel again with numpy.save)"
        if "number of columns changed" in reason:  # NumPy's advice: "use `usecols`"
            reason = (reason.partition(";")[0] + "; every row must have the same number of "
                      "values (write 0 where the kernel is zero)")  # fmt: skip
        elif "could not convert" in reason:
            reason = reason.rstrip(".") + (
                "; a .csv kernel holds numbers separated by commas (a .txt: by spaces), one "
                "row of the kernel a line, with a point for decimals"
            )
        raise UsageError(f"--kernel {spec!r} could not be read: {reason}") from None
    kernel = np.asarray(kernel)
    if suffix in TABLE_FILES and kernel.size == 0:
        raise UsageError(f"--kernel {spec!r} is empty: it holds no numbers; write the "
                         "kernel as KH lines of KW numbers")  # fmt: skip
    if kernel.ndim == 3 and kernel.shape[-1] == 1:
        kernel = kernel[..., 0]
    if kernel.ndim != 2 or kernel.size == 0 or kernel.dtype.kind not in "biuf":
        raise UsageError(
            f"--kernel {spec!r} must hold a 2D array of real numbers (KH, KW); got shape "
            f"{kernel.shape} of {kernel.dtype}"
        )
    _check_side(spec, kernel.shape)
    return kernel.astype(np.float64)


def _check_numpy_file(spec: str, suffix: str) -> None:
    """A `UsageError` unless the file starts as `numpy.save`'s do: `np.load` takes anything
    else for a pickle and says so, and an archive of `numpy.savez` (a zip) came back as
    an archive, its array unread ("got shape (1,) of <U1")."""
    with open(spec, "rb") as file:
        start = file.read(6)
    if start.startswith(b"PK"):
        raise UsageError(
            f"--kernel {spec!r} is a NumPy .npz archive (numpy.savez), not a .npy array; "
            "save the kernel alone with numpy.save(path, kernel)"
        )
    if not start.startswith(b"\x93NUMPY"):
        raise UsageError(
            f"--kernel {spec!r} is not a NumPy {suffix} file (it lacks NumPy's header); "
            "save the kernel with numpy.save(path, kernel), or write its numbers in a "
            ".txt or .csv table"
        )


def _check_side(spec: str, shape: tuple[int, ...]) -> None:
    if max(shape) > MAX_KERNEL:
        raise UsageError(f"--kernel {spec!r} is {shape[0]}x{shape[1]}: each side must be at "
                         f"most {MAX_KERNEL} pixels")  # fmt: skip


def _raw_picture(spec: str) -> Any:
    """The values of a float or 32-bit integer picture (Pillow's modes "F" and "I": a
    TIFF), negative and above 1 kept (`load_image` clips them to [0, 1]); None for
    other pictures."""
    import numpy as np
    from PIL import Image

    from .._image_formats import unsigned_32_bit

    try:
        opened = Image.open(spec)
    except OSError:  # not a picture: `read_image_channels` says so as for any picture
        return None
    except Image.DecompressionBombError:  # its header claims 179M pixels or more
        raise UsageError(f"--kernel {spec!r} is a picture of 179M pixels or more: each "
                         f"side must be at most {MAX_KERNEL} pixels") from None  # fmt: skip
    with opened as picture:
        if picture.mode not in ("F", "I"):
            return None
        _check_side(spec, picture.size[::-1])
        values = np.asarray(picture)
        if picture.mode == "I" and unsigned_32_bit(picture):
            values = values.view(np.uint32)  # Pillow reads 32-bit unsigned as signed
        return values.astype(np.float64)


def _named_kernel(spec: str) -> Any:
    """`NAME:SIZE[:ARG]` made by `dp.kernels` (float64)."""
    import numpy as np

    import diffprims as dp

    name, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    if name in NAMED and not NAMED[name] and len(parts) == 2:
        raise UsageError(f"--kernel {spec!r}: a {name} takes only a SIZE ({name}:{parts[0]})")
    if name not in NAMED or not 1 <= len(parts) <= 1 + NAMED[name]:
        raise UsageError(
            f"--kernel {spec!r} is not NAME:SIZE[:ARG] (use disk:50, polygon:51:6 (sides), "
            f"gaussian:31:5 (sigma) or box:9) nor an existing kernel file ({FILE_TYPES})"
        )
    size = _whole(parts[0])
    if size is None:
        raise UsageError(f"--kernel {spec!r}: SIZE must be a whole number")
    if not 1 <= size <= MAX_KERNEL:
        raise UsageError(f"--kernel {spec!r}: SIZE must be from 1 to {MAX_KERNEL} pixels")
    options: dict[str, Any] = {}
    if name == "polygon" and len(parts) > 1:
        options["sides"] = _whole(parts[1])
        if options["sides"] is None or not MIN_SIDES <= options["sides"] <= MAX_SIDES:
            raise UsageError(f"--kernel {spec!r}: SIDES must be a whole number from "
                             f"{MIN_SIDES} to {MAX_SIDES}")  # fmt: skip
    if name == "gaussian" and len(parts) > 1:
        try:
            options["sigma"] = float(parts[1])
        except ValueError:
            options["sigma"] = math.nan
        if not 0 < options["sigma"] <= MAX_SIGMA:
            raise UsageError(f"--kernel {spec!r}: SIGMA must be a number of pixels > 0 and "
                             f"at most {MAX_SIGMA:.0f} (wider, the Gaussian is flat: use "
                             "box:SIZE)")  # fmt: skip
    try:
        return np.asarray(getattr(dp.kernels, name)(size, **options), np.float64)
    except (TypeError, ValueError) as error:
        message = str(error).rstrip(".").replace("`sigma`", "SIGMA")
        raise UsageError(f"--kernel {spec!r}: {message}") from None


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
