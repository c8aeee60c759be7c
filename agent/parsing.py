"""Reading what the model wrote and what its code raised, the way MAT's sampling agent read them.

MAT (on transformers.agents) stops generation at `<end_action>` and `Observation:`, takes the text
after the last `Code:` and finds the code with one regex; a turn without a match gets the
release's parse-error feedback. Matching these rules keeps replayed release turns on the same path.
"""

from __future__ import annotations

import re

STOP_SEQUENCES = ["<end_action>", "Observation:"]
_CODE_BLOB = re.compile(r"```(?:py|python)?\n(.*?)\n```", re.S)
_EXCEPTION_NAME = re.compile(r"^[A-Za-z_]\w*(?::|$) ?")
_LINE_SUFFIX = re.compile(r" \(line (\d+): (.*)\)$", re.S)


def truncate_at_stop(text: str, stop: list[str] = STOP_SEQUENCES) -> tuple[str, bool]:
    """Cut `text` at the first stop sequence; for backends that ignore `stop`."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


def parse_action(text: str) -> tuple[str, str | None]:
    """Split a model turn into (thought, code); code is None when MAT would report a parse error."""
    head, found_code, tail = text.rpartition("Code:")
    blob = _CODE_BLOB.search(tail if found_code else text)
    thought_part = head if found_code else (text[: blob.start()] if blob else text)
    thought = re.sub(r"^\s*Thoughts?:\s*", "", thought_part.strip()).strip()
    return thought, (blob.group(1).strip() if blob else None)


def exception_message(report: str, code: str) -> str:
    """The exception's message alone, from the sandbox's `Type: message (line N: source)` report.

    The release feeds back `str(exception)`: no class name and no line. Reports of a step the
    sandbox itself ended (time limit, worker gone) carry no class name and pass through whole.
    """
    lines = code.splitlines()
    suffix = _LINE_SUFFIX.search(report)
    if suffix and 0 < int(suffix.group(1)) <= len(lines) and lines[int(suffix.group(1)) - 1].strip() == suffix.group(2):
        report = report[: suffix.start()]
    name = _EXCEPTION_NAME.match(report)
    if name and _looks_like_exception(name.group(0).rstrip(": ")):
        return report[name.end():]
    return report


def _looks_like_exception(name: str) -> bool:
    import builtins

    return isinstance(getattr(builtins, name, None), type) or name.endswith(("Error", "Exception", "Exit", "Interrupt"))
