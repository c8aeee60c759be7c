"""GTA's code-taking tools (Solver, Plot) run the model's program in a fresh sandbox, never in this process."""

from __future__ import annotations

import re

from agent.tools.backends import option
from agent.tools.base import ToolContext, ToolError

_FENCED = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def code_of(command: str) -> str:
    """The Python inside a markdown fence, or the text itself when it has none."""
    match = _FENCED.search(str(command))
    return match.group(1) if match else str(command)


def run_solution(ctx: ToolContext, command: str, call: str, tool: str) -> str:
    """Run the model's code, then `call`, in a sandbox of its own; returns what it printed."""
    from agent.sandbox import Limits, Sandbox

    code = code_of(command)
    if "def solution" not in code:
        raise ToolError(f"{tool}: the code must define a function named `solution`")
    limits = Limits(step_seconds=float(option(ctx, "program_seconds", "MAT_PROGRAM_SECONDS", 30)))
    with Sandbox(ctx.workdir, ctx.attachments, {}, limits) as sandbox:
        result = sandbox.run(f"{code}\n{call}")
    if result.error is not None:
        raise ToolError(f"{tool}: the code failed: {result.error}")
    return result.output
