"""System prompts: the MM-Traj release's template rendered with a profile's tools, or a record's own prompt.

Every system prompt in the release is one template (prompts/system.jinja) that differs only in
its authorized-import list, so a model tuned on MM-Traj is served that template word for word.
Other profiles render the same template with their own tools.
"""

from __future__ import annotations

import ast
import json
import re
from functools import lru_cache
from pathlib import Path

from agent.tools.base import Tool

PROMPTS_DIR = Path(__file__).parent / "prompts"
# The import list of the prompt MAT trained with (experiments/CPM-FT/scripts/reset_system_prompt.py in
# the MAT repository), in its order: the release's records list the same modules in varying orders.
AUTHORIZED_IMPORTS = [
    "PIL", "statistics", "pydub", "re", "sympy", "fractions", "zipfile", "collections", "itertools", "sklearn",
    "torch", "Bio", "chess", "requests", "csv", "PyPDF2", "random", "os", "math", "numpy", "datetime", "cv2",
    "stat", "scipy", "xml", "unicodedata", "pickle", "pandas", "pubchempy", "matplotlib", "io", "queue", "json",
    "time", "yahoo_finance", "pptx", "bs4",
]
_IMPORTS = re.compile(r"only from the following list of modules: (\[.*?\])\n")


@lru_cache(maxsize=None)
def _template(name: str):
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(PROMPTS_DIR), undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template(name)


def render_system_prompt(tools: list[Tool], authorized_imports: list[str] | None = None) -> str:
    """The release's system prompt listing exactly `tools` (MAT's import list unless one is given)."""
    from agent.tools import render_tool_list

    imports = AUTHORIZED_IMPORTS if authorized_imports is None else authorized_imports
    return _template("system.jinja").render(tool_list=render_tool_list(tools), authorized_imports=imports)


def default_system_prompt(profile: str) -> str:
    """What a run with `profile` is served when no prompt is chosen."""
    from agent.tools import profile_tools

    return render_system_prompt(profile_tools(profile))


def authorized_imports_of(system_prompt: str) -> list[str]:
    """The import list a release-style system prompt names (ValueError when it names none)."""
    found = _IMPORTS.search(system_prompt)
    if not found:
        raise ValueError("this system prompt has no authorized-import list")
    return ast.literal_eval(found.group(1))


def prompt_text(name: str, **values: str) -> str:
    """A plain prompt file's text, with `{name}` fields filled in."""
    text = (PROMPTS_DIR / name).read_text().strip()
    return text.format(**values) if values else text


def system_prompt_from_record(source: str | Path | dict) -> str:
    """The system turn of an MM-Traj record, or of the first record of a release JSON/JSONL file."""
    if isinstance(source, dict):
        record = source
    else:
        text = Path(source).read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = json.loads(text.splitlines()[0])
        record = data[0] if isinstance(data, list) else data
    turns = record.get("conversations") or []
    if not turns or turns[0].get("from") != "system":
        raise ValueError("the record has no system turn to take the prompt from")
    return turns[0]["value"]
