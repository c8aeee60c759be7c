"""System prompts: ours rendered from a template with the tool list, or the one a dataset record carries.

A model tuned on the public MM-Traj release saw the release's own system prompt; serving it
with that exact text (`system_prompt_from_record`) keeps training and serving consistent.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from agent.tools.base import Tool

PROMPTS_DIR = Path(__file__).parent / "prompts"
AUTHORIZED_IMPORTS = [
    "json", "os", "re", "math", "random", "statistics", "fractions", "collections", "itertools", "datetime",
    "time", "io", "csv", "zipfile", "unicodedata", "xml", "queue", "stat", "numpy", "pandas", "PIL",
    "matplotlib", "scipy", "sympy", "cv2",
]


@lru_cache(maxsize=None)
def _template(name: str):
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(PROMPTS_DIR), undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template(name)


def render_system_prompt(tools: list[Tool], template: str = "system.jinja") -> str:
    """Our system prompt listing exactly `tools`."""
    from agent.tools import render_tool_list

    return _template(template).render(tool_list=render_tool_list(tools), authorized_imports=AUTHORIZED_IMPORTS)


def prompt_text(name: str) -> str:
    """A plain prompt file's text (no template variables)."""
    return (PROMPTS_DIR / name).read_text().strip()


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
