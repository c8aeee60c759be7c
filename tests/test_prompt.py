"""The system prompt is the release's template: rendered with a record's import list it is that record's prompt."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

from agent.prompt import AUTHORIZED_IMPORTS, authorized_imports_of, default_system_prompt, render_system_prompt
from agent.tools import profile_tools

# Ng6Zvvp2 carries an older prompt (other few-shot examples, absolute paths, "beacuse", "acces"): it is not
# the template MAT trained with (reset_system_prompt.py) and is the one record of the sample left out.
OLDER_PROMPT = {"Ng6Zvvp2"}


def _tools_for(prompt: str):
    """The mat tools; the release spells segmentation's description two ways (the one typo it varies in)."""
    tools = profile_tools("mat")
    if "do instance segmentation" not in prompt:
        return tools
    return [dataclasses.replace(t, description=t.description.replace("instantce", "instance"))
            if t.name == "segmentation" else t for t in tools]


def test_the_template_with_a_records_imports_is_that_records_prompt_byte_for_byte(fidelity_records):
    compared = 0
    for record in fidelity_records:
        if record["id"] in OLDER_PROMPT:
            continue
        prompt = record["conversations"][0]["value"]
        assert render_system_prompt(_tools_for(prompt), authorized_imports_of(prompt)) == prompt, record["id"]
        compared += 1
    assert compared == len([r for r in fidelity_records if r["id"] not in OLDER_PROMPT])


def test_the_default_mat_prompt_differs_from_the_release_only_in_the_import_order(fidelity_records):
    prompt = default_system_prompt("mat")
    release = fidelity_records[0]["conversations"][0]["value"]
    assert "instantce segmentation" in release  # the spelling MAT trained with
    assert sorted(authorized_imports_of(release)) == sorted(AUTHORIZED_IMPORTS)
    assert prompt == render_system_prompt(profile_tools("mat"), authorized_imports_of(release)).replace(
        str(authorized_imports_of(release)), str(AUTHORIZED_IMPORTS))
    assert "- ocr:" not in prompt


def test_other_profiles_render_the_same_template_with_their_tools():
    mat = default_system_prompt("mat")
    for profile in ("mat+ocr", "gaia", "gta"):
        prompt = default_system_prompt(profile)
        names = re.findall(r"^- (\w+): ", prompt, re.M)
        assert names == [t.name for t in profile_tools(profile)]
        before, after = mat.split("\n- visualizer: ")[0], mat.split("You also can perform computations")[1]
        assert prompt.startswith(before) and prompt.endswith(after)
    assert "- ocr: " in default_system_prompt("mat+ocr")


def test_cli_prints_the_default_prompt():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "agent", "prompt", *args], capture_output=True, text=True, timeout=60)

    shown = cli()
    assert shown.returncode == 0 and shown.stdout == default_system_prompt("mat")
    assert cli("--profile", "gaia").stdout == default_system_prompt("gaia")
    wrong = cli("--profile", "nope")
    assert wrong.returncode == 2 and "unknown tool profile 'nope'" in wrong.stderr and "Traceback" not in wrong.stderr
