"""Code an agent really writes runs in both sandbox levels: libraries, files, attachments, tools, answers."""

from __future__ import annotations

import logging

import pytest
from PIL import Image

from agent.sandbox import Limits, Sandbox, sandbox_level
from agent.sandbox.bwrap import bwrap_problem
from agent.tools.base import ToolError
from tests.support.sandbox_levels import level_params

CALLS: list[tuple] = []


def count_words(text: str, *, lower: bool = False) -> dict:
    CALLS.append((text, lower))
    if not text:
        raise ToolError("count_words needs some text")
    words = text.lower().split() if lower else text.split()
    return {"words": len(words), "first": words[0]}


@pytest.fixture(scope="module", params=level_params())
def box(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("work")
    photo = tmp_path_factory.mktemp("uploads") / "photo.png"
    Image.new("RGB", (32, 16), (200, 10, 10)).save(photo)
    attachments = {"attachments/photo.png": photo}
    with Sandbox(workdir, attachments, {"count_words": count_words}, Limits(step_seconds=30), level=request.param) as sandbox:
        yield sandbox


def test_the_level_asked_for_is_used(box):
    assert box.level in ("bwrap", "fallback")
    assert box.run("print(1 + 1)").output == "2\n"


def test_math_and_variables_persist_between_steps(box):
    first = box.run("import math\nradius = 3\narea = math.pi * radius ** 2\nprint(round(area, 2))")
    assert (first.output, first.error) == ("28.27\n", None)
    second = box.run("print(round(area / radius, 3))")
    assert second.output == "9.425\n"


def test_numpy_and_pandas(box):
    result = box.run(
        "import numpy as np\nimport pandas as pd\n"
        "df = pd.DataFrame({'city': ['a', 'b', 'a'], 'sales': np.array([3, 4, 5])})\n"
        "df.to_csv('.cache/sales.csv', index=False)\n"
        "print(pd.read_csv('.cache/sales.csv').groupby('city').sales.sum().to_dict())"
    )
    assert result.error is None
    assert result.output == "{'a': 8, 'b': 4}\n"
    assert result.files == [".cache/sales.csv"]


def test_pil_writes_an_image_listed_in_files(box):
    result = box.run(
        "from PIL import Image\nimport os\nos.makedirs('.cache', exist_ok=True)\n"
        "Image.new('RGB', (20, 10), 'blue').save('.cache/blue.png')\nprint('saved')"
    )
    assert result.error is None
    assert ".cache/blue.png" in result.files
    assert Image.open(box.workdir / ".cache/blue.png").size == (20, 10)


def test_matplotlib_saves_a_plot(box):
    result = box.run(
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2, 3], [3, 1, 2])\n"
        "fig.savefig('plot.png')\nprint(plt.get_backend())"
    )
    assert result.error is None, result.error
    assert result.output.strip().lower() == "agg"
    assert result.files == ["plot.png"]
    assert Image.open(box.workdir / "plot.png").format == "PNG"


def test_reads_an_attachment_by_its_task_name_but_cannot_change_it(box):
    result = box.run("from PIL import Image\nimg = Image.open('attachments/photo.png')\nprint(img.size, img.getpixel((0, 0)))")
    assert result.output == "(32, 16) (200, 10, 10)\n"
    assert "attachments/photo.png" not in result.files
    write = box.run("open('attachments/photo.png', 'wb').write(b'gone')")
    assert write.error is not None
    assert Image.open(box.attachments["attachments/photo.png"]).size == (32, 16)


def test_tool_round_trip_with_arguments_and_tool_error(box):
    CALLS.clear()
    result = box.run("r = count_words('The Quick fox', lower=True)\nprint(r['words'], r['first'])\n"
                     "print(count_words('a b')['words'])")
    assert result.output == "3 the\n2\n"
    assert CALLS == [("The Quick fox", True), ("a b", False)]
    refused = box.run("count_words('')")
    assert refused.error == "ToolError: count_words needs some text (line 1: count_words(''))"


def test_tool_arguments_must_be_plain_values(box):
    result = box.run("count_words(object())")
    assert result.error.startswith("TypeError: count_words() takes JSON values")


def test_final_answer_ends_the_step(box):
    result = box.run("print('thinking')\nfinal_answer(6 * 7)\nprint('never')")
    assert (result.is_final, result.final_answer, result.error) == (True, "42", None)
    assert result.output == "thinking\n"


def test_error_names_the_type_and_the_failing_line(box):
    result = box.run("values = [1, 2]\ntotal = values[5]")
    assert result.error == "IndexError: list index out of range (line 2: total = values[5])"
    syntax = box.run("print('x'")
    assert syntax.error.startswith("SyntaxError:")


def test_long_output_is_truncated_with_a_note(box):
    result = box.run("for i in range(5000):\n    print('line', i)")
    assert len(result.output) < Limits().output_chars + 200
    assert "output truncated" in result.output


def test_level_follows_the_environment_and_is_logged(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("MAT_SANDBOX", "fallback")
    assert sandbox_level() == "fallback"
    with caplog.at_level(logging.INFO, logger="agent.sandbox"):
        with Sandbox(tmp_path) as sandbox:
            assert sandbox.level == "fallback"
            assert sandbox.run("print('ok')").output == "ok\n"
    assert f"sandbox level fallback for {tmp_path.resolve()}" in caplog.text
    with pytest.raises(RuntimeError, match="closed"):
        sandbox.run("print('after close')")


def test_an_unknown_level_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown sandbox level 'docker'"):
        Sandbox(tmp_path, level="docker")


@pytest.mark.bwrap
def test_bwrap_is_the_level_where_it_is_installed(monkeypatch):
    monkeypatch.delenv("MAT_SANDBOX", raising=False)
    assert bwrap_problem() is None
    assert sandbox_level() == "bwrap"
