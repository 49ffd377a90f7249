"""The documentation: every public name in the API reference, and the pages' examples run."""

import importlib.util
import io
import re
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import resvg_py
from PIL import Image

import diffprims as dp

DOCS = Path(__file__).resolve().parents[1] / "docs"


def public_names():
    names = []
    for name, obj in vars(dp).items():
        if name.startswith("_") or name == "annotations":
            continue
        if isinstance(obj, types.ModuleType):
            if name == "kernels":
                names += [f"kernels.{n}" for n in vars(obj) if not n.startswith("_")]
            elif name == "roles":
                names.append("roles")
            continue
        names.append(name)
    return sorted(names)


@pytest.mark.parametrize("name", public_names())
def test_every_public_name_in_api_reference(name):
    text = "".join(page.read_text() for page in (DOCS / "api").glob("*.md"))
    assert f"::: diffprims.{name}\n" in text, f"document diffprims.{name} in docs/api/"


def test_pages_use_only_real_names():
    used = set()
    for page in DOCS.rglob("*.md"):
        used |= set(re.findall(r"\bdp\.([A-Za-z_][A-Za-z_0-9]*)", page.read_text()))
    missing = sorted(name for name in used if not hasattr(dp, name))
    assert not missing, f"the docs use names diffprims does not have: {missing}"


@pytest.fixture(scope="module")
def rings():
    spec = importlib.util.spec_from_file_location("rings", DOCS / "examples" / "rings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.modules["rings"] = module  # so `dp.load` can rebuild a saved Rings
    spec.loader.exec_module(module)
    yield module.Rings
    del sys.modules["rings"]


def test_custom_shape_example_fits(rings):
    target = dp.load_image(dp.demo_image_path(), size=24)
    model = rings.init(12, key=jax.random.key(0), target=target)
    result = dp.fit(
        model, target, optimizer=optax.adam(1e-2), steps=60, batch=0.5, key=jax.random.key(1)
    )
    assert float(result.losses[-5:].mean()) < float(result.losses[:5].mean())
    assert isinstance(result.model, rings)


def test_custom_shape_example_gradients_finite(rings):
    model = rings.init(3, key=jax.random.key(0))
    points = jnp.concatenate([model.centres, jnp.array([[0.5, 0.5]])])  # at centres

    def total(m):
        return jnp.sum(m.render(points, pixel_size=1 / 32))

    grads = jax.grad(total)(model)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_custom_shape_example_exports(rings, tmp_path):
    model = rings.init(8, key=jax.random.key(2))
    svg = dp.to_svg(model, (48, 48))
    png = bytes(resvg_py.svg_to_bytes(svg_string=svg))
    drawn = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255
    assert float(dp.psnr(drawn, model.render_image((48, 48)))) > 25.0
    loaded = dp.load(dp.save(tmp_path / "rings.eqx", model), classes=[rings])
    assert type(loaded) is rings
    np.testing.assert_array_equal(loaded.raw_widths, model.raw_widths)


# -- figures and tables: made by a script, and up to date with it ----------------------

IMAGES = DOCS / "images"
REFERENCE = re.compile(r"""(?:\]\(|src="|--8<-- ")(?:\.\./|docs/)*(images/[^)"\s]+)""")


def made_by():
    records = {}
    for path in sorted(IMAGES.glob("*/made_by.json")):
        import json

        records[path.parent.name] = json.loads(path.read_text())
    return records


@pytest.mark.parametrize("folder", sorted(made_by()))
def test_figures_are_up_to_date_with_their_script(folder):
    import hashlib

    record = made_by()[folder]
    script = DOCS.parent / record["script"]
    assert hashlib.sha256(script.read_bytes()).hexdigest() == record["sha256"], (
        f"{record['script']} changed since it made docs/images/{folder}/: run it again "
        f"(python {record['script']})"
    )
    for name in record["files"]:
        assert (IMAGES / folder / name).is_file(), f"docs/images/{folder}/{name} is missing"


def test_every_figure_and_table_comes_from_a_script():
    records = made_by()
    pages = [DOCS.parent / "README.md", *DOCS.rglob("*.md")]
    shown = {ref for page in pages for ref in REFERENCE.findall(page.read_text())}
    assert shown, "no figure found: is REFERENCE out of date?"
    for ref in sorted(shown):
        folder, name = Path(ref).parts[1], Path(ref).name
        assert folder in records and name in records[folder]["files"], (
            f"docs/{ref} is shown in the docs but no script in docs/scripts records making it"
        )


def test_tutorials_state_what_the_code_does():
    """Claims of the tutorials a review found wrong, read from the page and checked."""
    from diffprims._shapes._culling import CUTOFF

    def page(name):
        return " ".join((DOCS / "tutorials" / name).read_text().split())

    # The culling margin: a fixed number of edge widths, and no made-up attribute.
    custom = page("custom-shape.md")
    margins = re.findall(r"grown by (\d+) edge widths", custom)
    assert margins and all(float(m) == CUTOFF for m in margins), margins
    for name in re.findall(r"`(?:dp\.)?AbstractShapes`? ?`?\.?([A-Za-z_]+)`", custom):
        assert hasattr(dp.AbstractShapes, name), f"dp.AbstractShapes has no {name}"
    # The weight map's shape, as `edge_weights` returns it.
    shape = re.search(r"dp\.edge_weights\(target\) +# \(([^)]*)\)", page("losses.md"))
    assert shape is not None
    got = dp.edge_weights(jnp.full((4, 5, 3), 0.5)).shape
    names = {(4, 5): "H, W", (4, 5, 1): "H, W, 1", (4, 5, 3): "H, W, C"}
    assert shape.group(1) == names[got], (shape.group(1), got)
    # The Mastercard runs: the modes the page says the script runs are those it measured.
    circles = (DOCS / "tutorials" / "circles.md").read_text()
    sentence = circles.split("The figures script runs", 1)[1].split("```", 1)[0]
    table = (DOCS / "images" / "circles" / "mastercard.md").read_text()
    assert set(re.findall(r'"(\w+)" compositing', sentence)) == set(
        re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
    ), sentence
