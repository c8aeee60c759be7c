"""How a trajectory reads to a person, wherever it is shown: Chat streams it, Review and Evaluate render it.

One place decides the step headings and how untrusted text is kept as text, so the same
trajectory looks the same in every tab.
"""

from __future__ import annotations

import html
import re

from agent.steps import Step

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_URL = re.compile(r"(https?://[^\s<>`\\]*[^\s<>`\\.,;:!?'\")\]])")  # a sentence's last mark is not the URL's
_OPEN_FENCE = re.compile(r"^\s*```[^\n]*\n?")


def step_heading(step: Step) -> str:
    """"Step 1" for the first step: people count from one (the record's `[OUTPUT OF STEP 0]` is the model's count)."""
    return f"Step {step.index + 1}"


def plain_markdown(text: str) -> str:
    """Text for a Markdown renderer that shows every character as typed: markup and Markdown syntax stay text.
    A URL becomes an autolink, whose text is taken as written (escapes inside it would show as backslashes)."""
    parts = _URL.split(text)  # odd indices are the URLs
    return "".join(f"<{part}>" if n % 2 else _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(part, quote=False))
                   for n, part in enumerate(parts)).replace("\n", "  \n")


def fenced(text: str, language: str = "text") -> str:
    """A fenced block that no backticks in `text` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def step_markdown(step: Step) -> str:
    """A step as Markdown: thought (kept as text), code, and its observation or error."""
    parts = []
    if step.prompt is not None:  # out of steps or errors, the loop asked for an answer
        parts.append(f"**Asked by the loop:** {step.prompt}")
    if step.thought:
        parts.append(plain_markdown(step.thought))
    if step.code:
        parts.append(fenced(step.code, "python"))
    if step.error:
        parts.append(f"**Error**\n{fenced(step.error.strip())}")
    elif step.observation is not None:
        parts.append(f"**Observation**\n{fenced(step.observation.rstrip() or '(no output)')}")
    return "\n\n".join(parts)


def live_markdown(text: str) -> str:
    """A turn still being written, read as its thought so far and its code so far (no raw markers)."""
    head, found, tail = text.rpartition("Code:")
    thought = re.sub(r"^\s*Thoughts?:\s*", "", head if found else text).strip()
    parts = [plain_markdown(thought)] if thought else []
    code = _OPEN_FENCE.sub("", tail, count=1).split("```", 1)[0].rstrip().rstrip("`").strip("\n") if found else ""
    if code:
        parts.append(fenced(code, "python"))
    return "\n\n".join(parts)
