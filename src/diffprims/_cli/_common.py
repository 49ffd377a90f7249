"""Shared pieces of the command line: argument types, errors, files."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import stat
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn


class UsageError(Exception):
    """Bad arguments or unreadable input: exit status 2 with a one-line message."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the usage is one `--help` away.
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but arguments no one knows are said by the command's parser
        (its `--help`), with a hint for a file name that starts with '-'."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            message = f"unrecognized arguments: {' '.join(extras)}"
            dashed = next((a for a in extras if a.startswith("-") and _looks_like_file(a)), None)
            if dashed is not None:
                message += (f" (a file whose name starts with '-'? write ./{dashed}, or give "
                            f"it last, after --: -- {dashed})")  # fmt: skip
            self.exit(2, f"{prog}: error: {message} (see `{prog} --help`)\n")
        return parsed


def _looks_like_file(argument: str) -> bool:
    return "." in argument.lstrip("-") or "/" in argument or os.path.exists(argument)


def _number(text: str, convert, kind: str, ok, expected: str):
    """`convert(text)`, or an argparse error naming what was expected and what was got."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


#: The largest count JAX can hold (steps are counted in int32).
MAX_INT32 = 2**31 - 1


def positive_int(text: str) -> int:
    return _number(text, int, "a whole number", lambda v: v >= 1, "a number >= 1")


def int_up_to(most: int, what: str = ""):
    """An argparse type: a whole number in `[1, most]`; `what` explains the limit."""

    def convert(text: str) -> int:
        expected = f"a number from 1 to {most}{what}"
        return _number(text, int, "a whole number", lambda v: 1 <= v <= most, expected)

    convert.__name__ = "int"  # argparse names the type in some messages
    return convert


#: float32's range of positive normal numbers, which the fit computes in: 1e308 became
#: inf and 1e-45 a subnormal (0 on many CPUs), and the fit failed late.
FLOAT32_TINY, FLOAT32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38
FLOAT32_RANGE = f"from {FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g} (float32's range)"


def in_float32_range(value: float) -> bool:
    """Whether `value` is a positive number float32 holds as it is (not inf, nor a
    subnormal that flushes to 0)."""
    return FLOAT32_TINY <= value <= FLOAT32_MAX


def positive_float(text: str) -> float:
    value = _number(text, float, "a number", lambda v: v > 0, "a number > 0")
    if not in_float32_range(value):
        raise argparse.ArgumentTypeError(f"expected a number > 0 {FLOAT32_RANGE}, got {text}")
    return value


def seed(text: str) -> int:
    return _number(text, int, "a whole number", lambda v: 0 <= v < 2**63, "a number in [0, 2**63)")


def colour(text: str) -> tuple[float, float, float]:
    """`#rrggbb`, `#rgb`, `white`, `black` or `R,G,B` in [0, 1] as an RGB triple."""
    names = {"white": "#ffffff", "black": "#000000"}
    value = names.get(text.lower(), text)
    try:
        if value.startswith("#") and len(value) in (4, 7):
            digits = value[1:] if len(value) == 7 else "".join(2 * c for c in value[1:])
            return tuple(int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
        parts = tuple(float(x) for x in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) == 3 and all(0 <= x <= 1 for x in parts):
        return parts  # type: ignore[return-value]
    raise argparse.ArgumentTypeError(
        f"expected #rrggbb, white, black or R,G,B in [0, 1], got {text!r}"
    )


def _in_unit_interval(text: str, expected: str) -> float:
    """A number in `(0, 1]` that float32 holds (not a subnormal); `expected` says what
    that is, in the message for any other (-0.1 and 2 alike)."""
    value = _number(text, float, expected, lambda v: 0 < v <= 1, expected)
    if value < FLOAT32_TINY:
        raise argparse.ArgumentTypeError(f"expected {expected}, at least {FLOAT32_TINY:.3g} "
                                         f"(float32's range), got {text}")  # fmt: skip
    return value


def fraction(text: str) -> float:
    return _in_unit_interval(text, "a number in (0, 1]")


def batch_fraction(text: str) -> float | None:
    if text.lower() in ("all", "none", "1", "1.0"):
        return None
    return _in_unit_interval(text, "a fraction of the pixels in (0, 1] or 'all'")


def shape_types() -> dict[str, type]:
    """Every concrete shape type diffprims exports, by lower-case name."""
    import inspect

    import diffprims

    found = {}
    for name, obj in vars(diffprims).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, diffprims.AbstractShapes)
            and not inspect.isabstract(obj)
        ):
            found[name.lower()] = obj
    return dict(sorted(found.items()))


#: The most a pipe or device given as an image is read (an image file is not limited).
MAX_STREAM_BYTES = 2**30


@contextlib.contextmanager
def regular_file(path: str | os.PathLike, what: str) -> Iterator[str | os.PathLike]:
    """`path`, or where it is a pipe or device (`<(cat a.png)`, `/dev/stdin`), a temporary
    file of its bytes, read once: the image is read more than once (16-bit PNGs, the
    channels of `--apply`), and a pipe's second read finds nothing. A named pipe with no
    writer is refused at once, not waited for. Errors name `path`, never the copy."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        mode = stat.S_IFREG  # load_image says what is wrong
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        yield path
        return
    data = _read_stream(path, what)
    with tempfile.TemporaryDirectory(prefix="diffprims-") as folder:
        copy = os.path.join(folder, os.path.basename(os.fspath(path)) or "image")
        Path(copy).write_bytes(data)
        try:
            yield copy
        except UsageError as error:
            raise UsageError(str(error).replace(copy, os.fspath(path))) from None


def _read_stream(path: str | os.PathLike, what: str) -> bytes:
    name = os.fspath(path)
    try:  # not blocking to open: a named pipe with no writer reads as empty
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise UsageError(f"{what} {name!r} cannot be read ({error.strerror})") from None
    chunks, total = [], 0
    try:
        os.set_blocking(handle, True)
        while chunk := os.read(handle, 2**20):
            total += len(chunk)
            if total > MAX_STREAM_BYTES:
                raise UsageError(f"{what} {name!r} is a pipe or device of more than "
                                 f"{MAX_STREAM_BYTES // 2**20} MiB")  # fmt: skip
            chunks.append(chunk)
    finally:
        os.close(handle)
    if not chunks:
        raise UsageError(
            f"{what} {name!r} is a pipe or device with nothing to read (a named pipe "
            "needs its writer started first); give an image file"
        )
    return b"".join(chunks)


def read_image(
    path: str | os.PathLike, size: Any = None, *, what: str = "IMAGE", quiet: bool = False
):
    """`dp.load_image(path, size)`, or a `UsageError` that names `what` (the argument
    the path came from: `IMAGE`, `--apply`), not the library's parameter `path`. A
    pipe is read once (`regular_file`). Of an animation or a multi-page file, the first
    frame is read with one line saying so (none with `quiet`), not Python's warning."""
    with regular_file(path, what) as real:
        return _load(real, size, what, shown=path, quiet=quiet)


def _load(path: str | os.PathLike, size: Any, what: str, *, shown: Any, quiet: bool):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = _load_image(path, size, what)
    for warning in caught:
        if "read the first frame" in str(warning.message):
            if not quiet:
                print(f"{what} {os.fspath(shown)!r} holds several frames (an animation or "
                      "a multi-page file): using the first", file=sys.stderr)  # fmt: skip
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)  # fmt: skip
    return image


def _load_image(path: str | os.PathLike, size: Any, what: str):
    from PIL import Image

    import diffprims as dp

    try:
        return dp.load_image(path, size=size)
    except IsADirectoryError:
        raise UsageError(f"{what} {os.fspath(path)!r} is a folder, not an image") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # PIL raises SyntaxError for some malformed files, DecompressionBombError (an
        # Exception) for images too large to be safe.
        message = str(error).rstrip(".") or type(error).__name__
        if "`path`" not in message:  # "No image at 'x'": which option gave it?
            message = f"{what}: {message}"
        if os.fspath(path) == "-" and isinstance(error, FileNotFoundError):
            message += " (for standard input, give /dev/stdin)"
        raise UsageError(message.replace("`path`", what)) from None


#: Pillow's modes of one grey channel (bilevel, 8-bit, 16- and 32-bit, float).
GREY_MODES = ("1", "L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def read_image_channels(path: str | os.PathLike, *, what: str = "IMAGE", quiet: bool = False):
    """The image at `path` with its own channels, float32 in `[0, 1]`: `(H, W, 1)` for a
    grey picture, `(H, W, 4)` (colour not premultiplied, then alpha) for one with
    transparency (a grey one with alpha too: a PNG holds no grey + alpha `save_image`
    writes), otherwise `(H, W, 3)`. Read as `read_image` reads it (its checks, errors
    and warnings); alpha at 8 bits (a 16-bit PNG's tRNS key at 16)."""
    return read_image_and_bits(path, what=what, quiet=quiet)[0]


def read_image_and_bits(path: str | os.PathLike, *, what: str = "IMAGE", quiet: bool = False):
    """`read_image_channels`, and the bits a sample to write a result of it at: 16 where
    the file holds more than 8 (a 16-bit PNG or TIFF, 32-bit or float samples), else 8."""
    import numpy as np

    from .._image import _read
    from .._image_formats import SIXTEEN_BIT

    with regular_file(path, what) as real:  # a pipe's copy lives in the block
        colour = np.asarray(_load(real, None, what, shown=path, quiet=quiet), np.float32)
        try:
            picture, deep, _ = _read(real)
        except (OSError, ValueError) as error:  # changed since it was read just now
            raise UsageError(str(error).rstrip(".").replace("`path`", what)) from None
        bits = 16 if deep is not None or picture.mode in (*SIXTEEN_BIT, "I", "F") else 8
        return _own_channels(picture, colour, deep, real), bits


def _own_channels(picture: Any, colour: Any, deep: str | None, real: Any) -> Any:
    """`read_image_and_bits`' image: `colour` as `load_image` read it, with `picture`'s
    own channels (grey, or its alpha)."""
    import numpy as np

    from .._image import _low_bytes
    from .._image_formats import SIXTEEN_BIT, key_opacity, sixteen_bit_values

    keyed = "transparency" in picture.info
    if keyed and (picture.mode in SIXTEEN_BIT or picture.mode == "I" or deep is not None):
        # A 16-bit tRNS key (8-bit conversions miss it); `colour` is exact where opaque.
        values = np.asarray(picture)
        if deep is not None:
            low = _low_bytes(real, picture, deep)
            values = values.astype(np.uint16) << 8 | (0 if low is None else np.asarray(low))
        return np.concatenate([colour, key_opacity(picture, values)], -1)  # grey too: RGBA
    if deep is not None and picture.mode == "RGBA":  # 16-bit RGBA or grey + alpha
        low = _low_bytes(real, picture, deep)
        if low is not None:
            return sixteen_bit_values(picture, low).astype(np.float32) / 65535.0
    if picture.mode in ("RGBA", "LA", "PA", "RGBa", "La") or keyed:
        return np.asarray(picture.convert("RGBA"), np.float32) / 255.0
    return colour[..., :1] if picture.mode in GREY_MODES else colour


def _strict(data: Any) -> Any:
    """`data` with NaN and infinities as None: strict JSON has no such numbers; and the
    bytes of a file name that are not UTF-8 as `\\xNN` escapes (Python reads them as
    lone surrogates, which JSON readers turn into U+FFFD: the name was lost)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no file name decodes to
            raw = data.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")
    if isinstance(data, dict):
        return {key: _strict(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_strict(value) for value in data]
    return data


def write_json(path: Path, data: Any) -> None:
    """`data` as strict JSON (NaN and infinities written as null), atomically."""
    from .._files import atomic_write

    text = json.dumps(_strict(data), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))
