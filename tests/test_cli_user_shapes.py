"""`diffprims paint --shape module:ClassName`: a shape type of one's own, from the CLI.

The user's modules are written into the test's working folder (the tutorial's `Rings`,
docs/examples/rings.py, as it is), and the command runs in this process, tiny and short.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import diffprims as dp
from diffprims._cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "rings.py"
FAST = ["-n", "5", "--steps", "12", "--size", "12", "-q"]

USER_SHAPES = '''
import jax

import diffprims as dp
from rings import Rings


class PlainRings(Rings):
    """Rings with no SVG form."""

    def svg_geometry(self, edge_width):
        raise NotImplementedError("rings drawn only as pixels")


class OneSvgElement(Rings):
    """An SVG form of one element, whatever the number of shapes."""

    def svg_geometry(self, edge_width):
        return ['<circle cx="0.5" cy="0.5" r="0.1"/>']


class NotAShape:
    pass


class Unfinished(dp.AbstractShapes):
    pass


def helper():
    return Rings


a_set = Rings.init(2, key=jax.random.key(0))
'''

#: Modules the tests import; removed from `sys.modules` after each test.
MODULES = ("rings", "user_shapes", "broken", "shapes_pkg", "shapes_pkg.more")


@pytest.fixture(autouse=True)
def work(tmp_path, monkeypatch):
    """An empty working folder holding the user's modules and an image; `sys.path` is
    left as it was found (the CLI puts the folder on it only while importing)."""
    folder = tmp_path / "work"
    (folder / "shapes_pkg").mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ in the folder
    shutil.copy(EXAMPLE, folder / "rings.py")
    (folder / "user_shapes.py").write_text(USER_SHAPES)
    (folder / "broken.py").write_text("import a_module_that_is_not_there\n")
    (folder / "shapes_pkg" / "__init__.py").write_text("")
    (folder / "shapes_pkg" / "more.py").write_text("from user_shapes import PlainRings\n")
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[2:7, 3:9] = (230, 40, 30)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    path = list(sys.path)
    # As under the `diffprims` script: the folder is not on `sys.path` until the CLI puts it.
    assert all(Path(entry or ".").resolve() != folder.resolve() for entry in path)
    yield folder
    for name in MODULES:
        sys.modules.pop(name, None)
    assert sys.path == path


def run(argv, capsys):
    return main([str(a) for a in argv]), capsys.readouterr().err


def test_paint_with_a_type_of_ones_own(tmp_path, capsys):
    status, err = run(["paint", tmp_path / "in.png", "--shape", "rings:Rings", *FAST], capsys)
    assert status == 0, err
    out = Path("out")
    assert {p.name for p in out.iterdir()} == {
        "result.png", "result.svg", "progress.gif", "shapes.json", "model.eqx", "summary.json",
    }  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shape"] == "rings:Rings" and summary["num_shapes"] == 5
    assert np.isfinite(summary["psnr"])
    shapes = json.loads((out / "shapes.json").read_text())
    assert shapes["type"] == "Rings" and len(shapes["shapes"]) == 5
    assert set(shapes["shapes"][0]) == {"centres", "radii", "widths", "colour", "opacity"}
    assert "stroke=" in (out / "result.svg").read_text()  # Rings' own SVG
    rings = sys.modules["rings"].Rings
    model = dp.load(out / "model.eqx", classes=[rings])
    assert type(model) is rings and model.num_shapes == 5


def test_plain_fit_with_a_type_from_a_package(tmp_path, capsys):
    # A package's module (that imports the class from elsewhere); a type with no SVG form
    # paints, and its output folder has everything but result.svg.
    argv = ["paint", tmp_path / "in.png", "--shape", "shapes_pkg.more:PlainRings", "--fit",
            "--gif", "shapes", "--frames", "3", *FAST[:-1], "-o", "out", "-o",
            "a.json"]  # fmt: skip
    status, err = run(argv, capsys)
    assert status == 0, err
    assert "PlainRings has no SVG form" in err and "no result.svg" in err
    assert {p.name for p in Path("out").iterdir()} == {
        "result.png", "progress.gif", "shapes.json", "model.eqx", "summary.json",
    }  # fmt: skip
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["shape"] == "shapes_pkg.more:PlainRings" and summary["mode"] == "fit"
    assert json.loads(Path("a.json").read_text())["type"] == "PlainRings"


@pytest.mark.parametrize(
    "spec,message",
    [
        ("no_such_module:Rings", "no module named 'no_such_module' in the current folder"),
        ("shapes_pkg.nothing:Rings", "no module named 'shapes_pkg.nothing'"),
        ("rings:Ringz", "has no 'Ringz'; the shape types it defines: Rings"),
        ("user_shapes:Rings.inner", "has no 'Rings.inner'"),
        ("user_shapes:helper", "is a function, not a class"),
        ("user_shapes:NotAShape", "the class NotAShape is not a shape type"),
        ("user_shapes:a_set", "a shape set (a Rings), not a shape class: name the class"),
        ("user_shapes:a_set", "name the class itself, user_shapes:Rings"),
        ("user_shapes:Unfinished", "Unfinished is abstract: it does not implement"),
        ("diffprims:AbstractShapes", "AbstractShapes is abstract"),
        ("diffprims:Layers", "a container of shape sets"),
        ("rings.py:Rings", "name the module, not its file: rings:Rings"),
        ("rings:", "expected module:ClassName"),
        ("rings:Rings:x", "expected module:ClassName"),
        ("hexagons", "or a type of your own as module:ClassName"),
    ],
)
def test_a_bad_shape_spec_exits_2_with_one_line(tmp_path, capsys, spec, message):
    status, err = run(["paint", tmp_path / "in.png", "--shape", spec, *FAST], capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("diffprims paint: error:")
    assert message in err, err
    assert not Path("out").exists()


def test_an_svg_of_a_type_without_one_is_refused_before_the_fit(tmp_path, capsys):
    argv = ["paint", tmp_path / "in.png", "--shape", "user_shapes:PlainRings", *FAST,
            "-o", "a.png", "-o", "a.svg"]  # fmt: skip
    status, err = run(argv, capsys)
    assert status == 2 and err.count("\n") == 1
    assert "-o 'a.svg': PlainRings has no SVG form" in err
    assert not Path("a.png").exists()


def test_an_error_inside_the_users_module_exits_1_and_debug_shows_it(tmp_path, capsys):
    argv = ["paint", tmp_path / "in.png", "--shape", "broken:Rings", *FAST]
    status, err = run(argv, capsys)
    assert status == 1 and err.count("\n") == 1
    assert "importing 'broken' raised ModuleNotFoundError" in err
    assert "a_module_that_is_not_there" in err and "--debug" in err
    sys.modules.pop("broken", None)
    with pytest.raises(ImportError) as caught:
        main([str(a) for a in [*argv, "--debug"]])
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_an_svg_form_that_gives_the_wrong_count_stops_before_the_fit(tmp_path, capsys):
    # Found when writing result.svg, after the fit: the whole painting was lost (exit 2,
    # as for a usage error, and no traceback under --debug).
    argv = ["paint", tmp_path / "in.png", "--shape", "user_shapes:OneSvgElement", *FAST]
    status, err = run(argv, capsys)
    assert status == 1 and err.count("\n") == 1, err
    assert "OneSvgElement.svg_geometry() gave 1 element for 2 shapes" in err
    assert "--debug" in err and not Path("out").exists()
    with pytest.raises(ValueError, match="must give one per shape"):
        main([str(a) for a in [*argv, "--debug"]])
