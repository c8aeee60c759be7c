"""How a trajectory reads to a person, wherever it is shown: Chat streams it, Review and Evaluate render it.

One place decides the step headings and how untrusted text is kept as text, so the same
trajectory looks the same in every tab.
"""

from __future__ import annotations

import html
import re

from agent.steps import Step

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def step_heading(step: Step) -> str:
    """"Step 1" for the first step: people count from one (the record's `[OUTPUT OF STEP 0]` is the model's count)."""
    return f"Step {step.index + 1}"


def plain_markdown(text: str) -> str:
    """Text for a Markdown renderer that shows every character as typed: markup and Markdown syntax stay text."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", "  \n")


def fenced(text: str, language: str = "text") -> str:
    """A fenced block that no backticks in `text` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"
