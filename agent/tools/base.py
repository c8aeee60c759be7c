"""What a tool is, where tools are registered, and the path rules every tool obeys.

Tools run in the app's process, never inside the sandbox: model-written code calls
them by name, the sandbox forwards the call, and the tool checks its arguments here.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from agent.models.base import Model

_log = logging.getLogger(__name__)


class ToolError(Exception):
    """A refusal or failure the model should read as the step's error (never a traceback)."""


@dataclass
class ToolContext:
    """What a tool may touch during one task."""

    workdir: Path
    attachments: dict[str, Path] = field(default_factory=dict)
    vlm: Model | None = None
    llm: Model | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Files the tools wrote during the task, as the model sees them, so the UI can show them.
    produced: list[str] = field(default_factory=list)

    def resolve(self, path: str | Path) -> Path:
        """The real file behind a path the model wrote; refuses anything outside the task's roots.

        Attachments are matched by the name the task gave them; every other path must
        resolve, symlinks followed, inside the working directory.
        """
        name = str(path)
        if name in self.attachments:
            return self.attachments[name].resolve()
        workdir = self.workdir.resolve()
        candidate = Path(name) if Path(name).is_absolute() else workdir / name
        real = candidate.resolve()
        for attached in self.attachments.values():
            if real == attached.resolve():
                return real
        if real != workdir and workdir not in real.parents:
            raise ToolError(f"access to '{name}' is not allowed: only the task's working directory and attachments")
        return real

    def existing(self, path: str | Path) -> Path:
        """`resolve`, and the file must exist."""
        real = self.resolve(path)
        if not real.is_file():
            raise ToolError(f"file not found: '{path}'")
        return real

    def output_path(self, stem: str, suffix: str) -> tuple[Path, str]:
        """A fresh file under `.cache/` in the working directory: (real path, path as the model sees it)."""
        cache = self.workdir / ".cache"
        cache.mkdir(parents=True, exist_ok=True)
        name = f"{stem}_{int(time.time() * 1000)}_{uuid.uuid4().hex[:6]}{suffix}"
        self.produced.append(f".cache/{name}")
        return cache / name, f".cache/{name}"


@dataclass
class Tool:
    """A function the model's code can call, with the description the prompt shows."""

    name: str
    description: str
    inputs: dict[str, dict[str, Any]]
    output_type: str
    fn: Callable[..., Any]

    def prompt_line(self) -> str:
        """The tool as the release's system prompt lists it."""
        return f"- {self.name}: {self.description}\n    Takes inputs: {self.inputs}\n"

    def bind(self, ctx: ToolContext) -> Callable[..., Any]:
        """The callable the sandbox host dispatches to for this task.

        Wrong arguments and backend crashes come back as a one-line ToolError the model can act on.
        """
        signature = inspect.signature(self.fn)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                signature.bind(ctx, *args, **kwargs)
            except TypeError as exc:
                raise ToolError(f"{self.name}(): {exc}; it takes {', '.join(self.inputs)}") from None
            try:
                return self.fn(ctx, *args, **kwargs)
            except ToolError:
                raise
            except Exception as exc:
                _log.exception("tool %s crashed", self.name)
                raise ToolError(f"{self.name} failed: {type(exc).__name__}: {exc}") from None

        call.__name__ = self.name
        return call


_REGISTRY: dict[str, Tool] = {}
# Tool names per profile, in prompt order; final_answer is always last. "mat" is the release's own
# toolset in the release's order; "mat+ocr" adds RapidOCR, which no release prompt lists.
MAT_TOOLS = [
    "visualizer", "facedetection", "objectlocation", "inspect_file_as_text", "image_generator",
    "segmentation", "image_edit", "ask_search_agent", "final_answer",
]
PROFILES: dict[str, list[str]] = {
    "mat": MAT_TOOLS,
    "mat+ocr": [*MAT_TOOLS[:3], "ocr", *MAT_TOOLS[3:]],
    "gaia": ["visualizer", "inspect_file_as_text", "ask_search_agent", "final_answer"],
    "gta": [
        "OCR", "ImageDescription", "RegionAttributeDescription", "TextToBbox", "CountGivenObject", "MathOCR",
        "Calculator", "Solver", "DrawBox", "AddText", "GoogleSearch", "Plot", "TextToImage", "ImageStylization",
        "final_answer",
    ],
}


def register(tool: Tool) -> Tool:
    _REGISTRY[tool.name] = tool
    return tool


def get_tool(name: str) -> Tool:
    return _REGISTRY[name]


def registered() -> dict[str, Tool]:
    return dict(_REGISTRY)
