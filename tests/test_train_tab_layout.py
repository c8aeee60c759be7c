"""The Train tab's module reads in one sitting: a layout and its wiring, no builder over 60 lines, and every
handler attached through `core.ui.wire` (so a refusal warns and leaves the page as it was)."""

from __future__ import annotations

import ast
from pathlib import Path

import train.ui

EVENTS = {"click", "change", "input", "submit", "select", "tick", "load", "then", "upload", "release", "blur"}


def _tree() -> ast.Module:
    path = Path(train.ui.__file__)
    return ast.parse(path.read_text(), filename=str(path))


def test_no_function_of_the_tab_is_over_60_lines():
    long = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(_tree())
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 60}
    assert long == {}


def test_every_event_is_attached_through_wire():
    direct = [f"line {node.lineno}: .{node.func.attr}(...)" for node in ast.walk(_tree())
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in EVENTS]
    assert direct == []
    wired = [node for node in ast.walk(_tree()) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "wire"]
    assert len(wired) >= 10


def test_the_layout_is_a_dataclass_of_the_components_the_wiring_uses():
    import dataclasses

    import gradio as gr

    from agent.config import Settings

    with gr.Blocks():
        layout = train.ui.lay_out(Settings(data_dir=Path("/nonexistent-train-layout")), linked=True)
    assert dataclasses.is_dataclass(layout)
    assert len(layout.inputs) == 11 + len(train.ui.FORM_FIELDS)  # form_argv's arguments, in its order
    assert [type(c).__name__ for c in layout.view] == ["Markdown", "LinePlot", "LinePlot", "Dataframe", "Dropdown",
                                                       "LinePlot", "LinePlot"]
    assert layout.runs_table.headers == train.ui.RUN_HEADERS and "folder" in train.ui.RUN_HEADERS
