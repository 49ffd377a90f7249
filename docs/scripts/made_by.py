"""Which script made the files of a folder under docs/images/, and from which source.

Each figures script ends with `record(OUT, __file__)` (not in its `--quick` mode): it
writes `OUT/made_by.json` atomically (the script's path, the SHA-256 of its source, the
files in `OUT`). tests/test_docs.py checks that every figure and table the pages show
is listed in one, and that the script has not changed since: a changed script means the
figures are stale.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from diffprims._files import atomic_write

ROOT = Path(__file__).resolve().parents[2]


def output_folder(out: Path | None, quick: bool, default: Path) -> Path:
    """The folder a figures script writes: `--out`, else a new temporary folder for a
    `--quick` run (never over the committed figures), else `default`; made if missing."""
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="diffprims-figures-")) if quick else default
    out.mkdir(parents=True, exist_ok=True)
    return out


def source_hash(script: Path) -> str:
    return hashlib.sha256(Path(script).read_bytes()).hexdigest()


def record(folder: Path, script: str | Path) -> None:
    script = Path(script).resolve()
    files = sorted(p.name for p in Path(folder).iterdir() if p.name != "made_by.json")
    data = {
        "script": script.relative_to(ROOT).as_posix(),
        "sha256": source_hash(script),
        "files": files,
    }
    text = json.dumps(data, indent=1) + "\n"
    atomic_write(Path(folder) / "made_by.json", lambda temp: Path(temp).write_text(text))


if __name__ == "__main__":  # record folders whose script is unchanged since they were made
    import sys

    record(Path(sys.argv[1]), sys.argv[2])
