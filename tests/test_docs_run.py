"""Every Python block of the README, of `docs/` and of the public API's docstrings runs.

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
import inspect
import re
import shutil
import sys
import textwrap
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxtyping import Array, Float
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


# -- the examples in the docstrings of the public API ----------------------------------
# Every ```python block in the docstring of a public name of `diffprims` (its classes'
# methods and properties, `dp.kernels` and `dp.roles` included) runs, each in a fresh
# copy of the namespace below: the names an example takes as given (`target`, `model`,
# `result`, ...), as the API reference's reader would have them.

DOC_FENCE = re.compile(r"^([ \t]*)```python\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


def _public_objects() -> list[tuple[str, object]]:
    """`(qualified name, object)` of every public name and of its classes' members."""
    out: list[tuple[str, object]] = []
    for name, obj in sorted(vars(dp).items()):
        if name.startswith("_") or name == "annotations":
            continue
        if isinstance(obj, types.ModuleType):
            out.append((name, obj))
            out += [(f"{name}.{n}", o) for n, o in vars(obj).items() if not n.startswith("_")]
        else:
            out.append((name, obj))
    members = []
    for qualname, obj in out:
        if isinstance(obj, type):
            for attr in dir(obj):
                if not attr.startswith("_") or attr == "__init__":
                    members.append((f"{qualname}.{attr}", inspect.getattr_static(obj, attr)))
    return out + members


def _docstring(obj: object) -> str | None:
    obj = getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj
    if isinstance(obj, types.ModuleType):
        module = obj.__name__
    else:
        module = getattr(obj, "__module__", None) or ""
    if not module.startswith("diffprims"):
        return None  # equinox's and the standard library's own members
    return inspect.getdoc(obj)


def docstring_examples() -> list[tuple[str, str]]:
    """`(where, code)` of every docstring example, each block once."""
    seen, out = set(), []
    for qualname, obj in _public_objects():
        for number, match in enumerate(DOC_FENCE.finditer(_docstring(obj) or ""), 1):
            code = textwrap.dedent(match.group(2))
            if code not in seen:
                seen.add(code)
                out.append((f"{qualname}, block {number}", code))
    return out


@pytest.fixture(scope="module")
def given(tmp_path_factory):
    """The names an example takes as given, and a working folder holding its files."""
    folder = tmp_path_factory.mktemp("docstrings")
    target = dp.load_image(dp.demo_image_path(), size=24)
    dp.save_image(folder / "photo.png", target)
    model = dp.Circles.init(8, key=jax.random.key(0), target=target)
    result = dp.fit(model, target, steps=2)
    for name in ("circles.eqx", "model.eqx"):
        dp.save(folder / name, model)
    colours = model.colours
    names = dict(
        jax=jax, jnp=jnp, np=np, optax=optax, dp=dp, Path=Path, Array=Array, Float=Float,
        target=target, image=target, scene=target, pred=result.model.render_image((24, 24)),
        model=model, result=result, key=jax.random.key(1), k1=jax.random.key(2),
        k2=jax.random.key(3), k3=jax.random.key(4), path=folder / "photo.png",
        kernel=dp.kernels.disk(5, normalize=True),
        face_mask=jnp.zeros((24, 24)).at[6:18, 8:16].set(1.0), raw_radius=jnp.log(0.1),
        rates=jnp.array([1e-3, 1e-2]), back=dp.Rectangles.init(3, key=jax.random.key(5)),
        front=dp.Circles.init(3, key=jax.random.key(6)),
        # The naive loop in `dp.AbstractShapes`'s docstring, at one point.
        N=model.num_shapes, background=model.background, opacities=model.opacities,
        colours=colours, coverage=model.coverage(jnp.full((1, 2), 0.5), 1 / 24)[:, 0],
    )  # fmt: skip
    return folder, names


EXAMPLES = docstring_examples()


@pytest.mark.parametrize("where, code", EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_docstring_example_runs(where, code, given, monkeypatch):
    folder, names = given
    monkeypatch.chdir(folder)
    monkeypatch.setattr(dp, "fit", _capped(dp.fit, paint=False))
    monkeypatch.setattr(dp, "paint", _capped(dp.paint, paint=True))
    namespace = {"__name__": "docstring_example", **names}
    try:
        exec(compile(code, where, "exec"), namespace)
    except Exception as error:
        raise AssertionError(f"the docstring example of {where} fails:\n{code}") from error


def test_docstring_examples_are_found():
    found = {where.split(",")[0] for where, _ in EXAMPLES}
    for name in ("Ellipses.from_values", "AbstractShapes.init", "kernels", "kernels.disk", "fit"):
        assert name in found, sorted(found)
