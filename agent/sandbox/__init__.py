"""The sandboxed executor: model-written code runs in an isolated worker, tools run in the app."""

from agent.sandbox.bwrap import sandbox_level, sandbox_notice
from agent.sandbox.host import ExecResult, Limits, Sandbox

__all__ = ["ExecResult", "Limits", "Sandbox", "sandbox_level", "sandbox_notice"]
