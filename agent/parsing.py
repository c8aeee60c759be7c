"""Reading what the model wrote: stop-sequence truncation, thought and code extraction."""

from __future__ import annotations

import re

STOP_SEQUENCES = ["<end_action>", "\nObservation:", "[OUTPUT OF STEP", "<|im_end|>"]
_CODE_BLOCK = re.compile(r"```(?:py|python)?\s*\n(.*?)\n```", re.S)

CODE_FORMAT_ERROR = (
    "Error in code parsing: \nThe code blob you used is invalid: no code block was found.\n"
    "Make sure to provide code in this pattern:\n"
    "Thought: Your thoughts\nCode:\n```py\n# Your python code here\n```<end_action>"
)


def truncate_at_stop(text: str, stop: list[str] = STOP_SEQUENCES) -> tuple[str, bool]:
    """Cut `text` at the first stop sequence; for backends that ignore `stop`."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


def parse_action(text: str) -> tuple[str, str | None]:
    """Split a model turn into (thought, code); code is None when there is no code block."""
    found = _CODE_BLOCK.search(text)
    head = text[: found.start()] if found else text
    head = re.sub(r"\n?Code:\s*$", "", head.rstrip())
    thought = re.sub(r"^\s*Thoughts?:\s*", "", head).strip()
    if not found:
        return thought, None
    return thought, found.group(1)
