"""GTA tools that need no model weights: Calculator, Solver, Plot, DrawBox, AddText."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from agent.tools import bind_tools, profile_tools
from agent.tools.base import ToolError


@pytest.fixture
def gta(ctx):
    Image.new("RGB", (200, 100), "white").save(ctx.workdir / "blank.png")
    return bind_tools(profile_tools("gta"), ctx)


@pytest.mark.parametrize("expression, value", [
    ("2 + 3 * 4", "14"), ("sqrt(16) + 1", "5.0"), ("math.floor(7.9) % 4", "3"), ("round(pi, 3)", "3.142"),
    ("max(3, 9, 4) - min([2, 8])", "7"), ("(1 + 2) ** 2 / 3", "3.0"),
])
def test_calculator_computes(gta, expression, value):
    assert gta["Calculator"](expression=expression) == value


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('id')", "unknown name"), ("(1).__class__", "unknown name"),
    ("open('/etc/passwd')", "unknown name"), ("[x for x in range(3)]", "not allowed"),
    ("9 ** 9 ** 9", "too large"), ("1 / 0", "division by zero"), ("2 +", "not a valid expression"),
    ("'a' * 10", "not allowed"),
])
def test_calculator_refuses_anything_but_arithmetic(gta, expression, message):
    with pytest.raises(ToolError, match=message):
        gta["Calculator"](expression=expression)


SOLVER_CODE = '''```python
from sympy import symbols, Eq, solve
def solution():
    x, y = symbols('x y')
    return str(solve((Eq(x + y, 10), Eq(x - y, 2)), (x, y)))
```'''


def test_solver_runs_sympy_code_in_a_sandbox(gta):
    assert gta["Solver"](command=SOLVER_CODE) == "{x: 6, y: 4}"


def test_solver_code_cannot_touch_the_host(gta, ctx, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host data")
    code = f"def solution():\n    return open({str(secret)!r}).read()\n"
    with pytest.raises(ToolError, match="Solver: the code failed"):
        gta["Solver"](command=code)


def test_solver_needs_a_solution_function(gta):
    with pytest.raises(ToolError, match="must define a function named `solution`"):
        gta["Solver"](command="print(1)")


def test_plot_saves_the_returned_figure(gta, ctx):
    code = ("import matplotlib.pyplot as plt\ndef solution():\n    figure = plt.figure(figsize=(4, 3))\n"
            "    plt.bar(['a', 'b'], [3, 5])\n    return figure\n")
    path = gta["Plot"](command=code)
    assert path.startswith(".cache/plot_") and Image.open(ctx.workdir / path).size == (400, 300)


def test_drawbox_outlines_the_region_and_returns_the_new_image(gta, ctx):
    path = gta["DrawBox"](image="blank.png", bbox="(20, 10, 120, 80)", annotation="cat")
    pixels = np.asarray(Image.open(ctx.workdir / path))
    assert tuple(pixels[45, 20]) == (255, 0, 0) and tuple(pixels[45, 70]) == (255, 255, 255)
    assert path in ctx.produced


def test_drawbox_rejects_a_malformed_box(gta):
    with pytest.raises(ToolError, match="a box must be four numbers"):
        gta["DrawBox"](image="blank.png", bbox="(20, 10, 120)")


@pytest.mark.parametrize("position, region", [("lt", (slice(0, 50), slice(0, 100))),
                                              ("rb", (slice(50, 100), slice(100, 200))),
                                              ("(10, 90)", (slice(50, 100), slice(0, 100)))])
def test_addtext_writes_in_the_requested_place_and_color(gta, ctx, position, region):
    path = gta["AddText"](image="blank.png", text="Hi", position=position, color="blue")
    pixels = np.asarray(Image.open(ctx.workdir / path)).astype(int)
    blue = (pixels[..., 2] > 200) & (pixels[..., 0] < 80) & (pixels[..., 1] < 80)
    assert blue[region].sum() > 20 and blue.sum() == blue[region].sum()


def test_addtext_rejects_unknown_positions_and_colors(gta):
    with pytest.raises(ToolError, match="position must be"):
        gta["AddText"](image="blank.png", text="Hi", position="somewhere")
    with pytest.raises(ToolError, match="unknown color"):
        gta["AddText"](image="blank.png", text="Hi", position="mm", color="blurple")
