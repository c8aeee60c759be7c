"""Profiles, prompt listings, binding for the sandbox, and the import-light promise."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from agent.tools import PROFILES, TOOL_NAMES, bind_tools, profile_tools, registered, render_tool_list
from agent.tools.base import ToolError

GTA_TOOLS = {"OCR", "ImageDescription", "RegionAttributeDescription", "TextToBbox", "CountGivenObject", "MathOCR",
             "Calculator", "Solver", "DrawBox", "AddText", "GoogleSearch", "Plot", "TextToImage", "ImageStylization"}


def listed(prompt: str) -> list[str]:
    return re.findall(r"^- (\w+): ", prompt, re.M)


@pytest.mark.parametrize("profile", ["mat", "mat+ocr", "gaia", "gta"])
def test_each_profile_renders_exactly_its_tools_with_final_answer_last(profile):
    names = listed(render_tool_list(profile_tools(profile)))
    assert names == PROFILES[profile]
    assert names[-1] == "final_answer" and len(set(names)) == len(names)


def test_profiles_hold_the_documented_tools():
    assert set(PROFILES["gaia"]) == {"visualizer", "inspect_file_as_text", "ask_search_agent", "final_answer"}
    assert set(PROFILES["gta"]) == GTA_TOOLS | {"final_answer"}
    release_tools = ["visualizer", "facedetection", "objectlocation", "inspect_file_as_text", "image_generator",
                     "segmentation", "image_edit", "ask_search_agent", "final_answer"]
    assert PROFILES["mat"] == release_tools  # the release's nine tools, in its order; no ocr
    assert set(PROFILES["mat+ocr"]) == set(release_tools) | {"ocr"}


def test_agent_prompt_lists_the_profile_tools():
    from agent.prompt import render_system_prompt

    prompt = render_system_prompt(profile_tools("gaia"))
    assert set(listed(prompt)) == set(PROFILES["gaia"])


def test_mat_listing_reproduces_the_release_prompt_text(release_mmtraj_records):
    """A model tuned on MM-Traj saw these exact descriptions; ours must match them word for word."""
    ours = {tool.name: tool.prompt_line() for tool in profile_tools("mat")}
    release_prompt = release_mmtraj_records[0]["conversations"][0]["value"]
    release = {m.group(1): m.group(0) for m in re.finditer(r"^- (\w+): .*\n    Takes inputs: .*\n", release_prompt, re.M)}
    assert set(release) == set(ours)
    for name, text in release.items():
        if name != "segmentation":  # the release itself has two spellings of this description
            assert ours[name] == text, name


def test_gta_tools_take_gta_argument_names(fidelity_gta_path):
    records = json.loads(fidelity_gta_path.read_text()).values()
    ours = {tool.name: tool for tool in profile_tools("gta")}
    seen = 0
    for record in records:
        for meta in record["tools"]:
            assert list(ours[meta["name"]].inputs) == [arg["name"] for arg in meta["inputs"]], meta["name"]
            seen += 1
    assert seen


def test_every_tool_called_in_the_release_is_registered(fidelity_records):
    called = set()
    for record in fidelity_records:
        for turn in record["conversations"][1:]:
            if turn["from"] == "assistant":
                called |= set(re.findall(r"\b([a-z_]+)\(", turn["value"])) & TOOL_NAMES
    assert {"visualizer", "final_answer", "ask_search_agent", "facedetection", "objectlocation", "segmentation",
            "image_edit", "image_generator"} <= called


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="known profiles: mat, mat\\+ocr, gaia, gta"):
        profile_tools("nope")


def test_bound_tools_leave_out_final_answer_and_report_bad_arguments(ctx):
    tools = bind_tools(profile_tools("gta"), ctx)
    assert "final_answer" not in tools and set(tools) == GTA_TOOLS
    assert tools["Calculator"](expression="2 ** 10") == "1024"
    with pytest.raises(ToolError, match=r"Calculator\(\): missing a required argument: 'expression'; it takes expression"):
        tools["Calculator"](expr="1+1")


def test_importing_the_tools_loads_no_heavy_library():
    code = ("import sys, agent.tools; heavy = {'torch', 'cv2', 'rapidocr', 'transformers', 'ddgs', 'markitdown'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_tool_names_data_code_knows_are_exactly_the_registered_tools():
    """Trajectories count tool calls against TOOL_NAMES without loading a tool; it must not drift."""
    assert set(registered()) == TOOL_NAMES
