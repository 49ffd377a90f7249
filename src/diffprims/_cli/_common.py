"""Shared pieces of the command line: argument types, errors, files."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, NoReturn


class UsageError(Exception):
    """Bad arguments or unreadable input: exit status 2 with a one-line message."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the usage is one `--help` away.
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def batch_fraction(text: str) -> float | None:
    if text.lower() in ("all", "none", "1", "1.0"):
        return None
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(
            f"expected a fraction of the pixels in (0, 1] or 'all', got {text}"
        )
    return value


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


def read_image(path: str | os.PathLike, size: Any = None):
    import diffprims as dp

    try:
        return dp.load_image(path, size=size)
    except IsADirectoryError:
        raise UsageError(f"{os.fspath(path)!r} is a folder, not an image") from None
    except (OSError, ValueError) as error:
        raise UsageError(str(error).rstrip(".")) from None


PAINT_FILES = ("result.png", "result.svg", "progress.gif", "model.eqx", "summary.json")
FILTER_FILES = (
    "kernel.png", "vectors.json", "vectors.npz", "blurred.png", "summary.json",
)  # fmt: skip


def claim_output(out: Path, names: tuple[str, ...], *, force: bool) -> None:
    """Refuse to overwrite earlier results in `out` unless `--force`."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {os.fspath(out)!r} is a file, not a folder")
    existing = [name for name in names if (out / name).exists()]
    if existing and not force:
        raise UsageError(
            f"-o {os.fspath(out)!r} already holds {', '.join(existing)}; pass --force to "
            "overwrite them, or choose another folder with -o"
        )


def write_json(path: Path, data: Any) -> None:
    from .._files import atomic_write

    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))
