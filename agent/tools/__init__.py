"""The agent's tools: the MAT toolset and the GTA benchmark's tools, grouped into profiles.

Importing this package registers every tool but loads no model: backends load on first use.
"""

from __future__ import annotations

from typing import Any, Callable

from agent.tools import answer, detection, diffusion, files, gta, ocr, search, segmentation, vision  # noqa: F401
from agent.tools.base import PROFILES, TOOL_NAMES, Tool, ToolContext, ToolError, get_tool, register, registered

__all__ = [
    "PROFILES", "TOOL_NAMES", "Tool", "ToolContext", "ToolError", "bind_tools", "get_tool", "profile_tools",
    "register", "registered", "render_tool_list",
]


def profile_tools(profile: str) -> list[Tool]:
    """The tools of a profile, in prompt order."""
    if profile not in PROFILES:
        raise ValueError(f"unknown tool profile '{profile}'; known profiles: {', '.join(PROFILES)}")
    return [get_tool(name) for name in PROFILES[profile]]


def bind_tools(tools: list[Tool], ctx: ToolContext) -> dict[str, Callable[..., Any]]:
    """Name -> callable for the sandbox host; final_answer stays out (the worker handles it)."""
    return {tool.name: tool.bind(ctx) for tool in tools if tool.name != "final_answer"}


def render_tool_list(tools: list[Tool]) -> str:
    """The tool list as the MM-Traj release's system prompt writes it."""
    return "\n".join(tool.prompt_line() for tool in tools)

