"""Every Python block of the README and of `docs/` runs.

The blocks of a page run in order in one namespace (a page builds on its earlier
blocks), in an empty working folder that holds `photo.png` and `photo.jpg` (the demo
photo: the pages' stand-in for a reader's own photo). Blocks are extracted with
mktestdocs; `--8<--` lines are replaced by the text they include, as the docs build does.

A block is skipped only when the line before its fence is `<!-- not run: REASON -->`.

To keep CI fast, `dp.fit` and `dp.paint` run at most a few steps here (a wall-time
budget becomes a step budget) and `dp.paint` paints at most 24 shapes: this checks
that every line works with the library as it is (names, arguments, shapes); the figures
and numbers on the pages come from `docs/scripts/`, whose outputs CI checks separately
(tests/test_docs.py).
"""

import functools
import re
import shutil
import sys
from pathlib import Path

import pytest
from mktestdocs import grab_code_blocks

import diffprims as dp

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
NOT_RUN = re.compile(r"<!-- not run: [^>]+-->\s*\n```python\n.*?\n```", re.DOTALL)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)
MAX_STEPS = 4
MAX_PAINTED = 24


def _include(match: re.Match) -> str:
    """The text of `--8<-- "file"` or `--8<-- "file:section"` (relative to docs/)."""
    name, _, section = match.group(1).partition(":")
    text = (DOCS / name).read_text()
    if not section:
        return text
    start, end = f"# --8<-- [start:{section}]\n", f"# --8<-- [end:{section}]"
    body = text[text.index(start) + len(start) : text.index(end)]
    lines = body.splitlines()
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return "\n".join(x[indent:] for x in lines)


def blocks(page: Path) -> list[str]:
    text = NOT_RUN.sub("", page.read_text())
    return [SNIPPET.sub(_include, block) for block in grab_code_blocks(text, lang="python")]


def _capped(function, *, paint: bool):
    @functools.wraps(function)
    def run(*args, **kwargs):
        steps = kwargs.get("steps")
        kwargs["steps"] = MAX_STEPS if steps is None else min(int(steps), MAX_STEPS)
        if paint:
            kwargs.pop("seconds", None)
            if len(args) >= 2:
                args = (args[0], min(int(args[1]), MAX_PAINTED), *args[2:])
        elif kwargs.get("snapshots") is not None:
            kwargs["snapshots"] = min(kwargs["snapshots"], kwargs["steps"] + 1)
        return function(*args, **kwargs)

    return run


@pytest.mark.parametrize(
    "page", [p for p in PAGES if blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo = dp.load_image(dp.demo_image_path(), size=64)
    dp.save_image("photo.png", photo)
    shutil.copy("photo.png", "photo.jpg")  # Pillow reads by content, not by name
    monkeypatch.setattr(dp, "fit", _capped(dp.fit, paint=False))
    monkeypatch.setattr(dp, "paint", _capped(dp.paint, paint=True))
    monkeypatch.syspath_prepend(str(DOCS / "examples"))  # `from rings import Rings`
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    try:
        for number, code in enumerate(blocks(page), 1):
            try:
                exec(compile(code, f"{page.name}, block {number}", "exec"), namespace)
            except Exception as error:
                raise AssertionError(
                    f"{page.relative_to(ROOT)}, Python block {number} fails:\n{code}"
                ) from error
    finally:
        sys.modules.pop("rings", None)
