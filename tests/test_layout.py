"""The package's layout holds its design: small functions and modules, compositing once.

The import contracts (which part may import which) are checked by `lint-imports` in CI;
see docs/design.md.
"""

import ast
import pathlib
import re

import pytest

SRC = pathlib.Path(__file__).parent.parent / "src" / "diffprims"
MODULES = sorted(SRC.rglob("*.py"))


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function, its docstring not counted."""
    assert node.end_lineno is not None
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        assert first.end_lineno is not None
        lines -= first.end_lineno - first.lineno + 1
    return lines


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_modules_and_functions_are_small(path):
    text = path.read_text()
    assert text.count("\n") <= 400, f"{path.name} has {text.count(chr(10))} lines (> 400)"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert _code_lines(node) <= 80, f"{path.name}:{node.lineno} {node.name} is long"


def test_the_over_transmittance_product_is_written_once():
    """Every renderer and `paint` composite "over" through `_shapes/_compositing.py`."""
    product = re.compile(r"1(\.0)? - alpha|cumprod\(")
    holders = [p.name for p in MODULES if product.search(p.read_text())]
    assert holders == ["_compositing.py"]


def test_no_environment_variable_switches():
    for path in MODULES:
        assert "os.environ" not in path.read_text(), path
