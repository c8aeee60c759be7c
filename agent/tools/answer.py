"""final_answer: listed in every prompt; the sandbox worker implements the call itself, so it is never bound."""

from __future__ import annotations

from typing import Any

from agent.tools.base import Tool, ToolContext, register


def final_answer(ctx: ToolContext, answer: Any) -> Any:
    return answer


register(Tool(
    name="final_answer",
    description="Provides a final answer to the given problem.",
    inputs={"answer": {"type": "text", "description": "The final answer to the problem"}},
    output_type="any",
    fn=final_answer,
))
