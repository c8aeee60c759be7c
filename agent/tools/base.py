"""What a tool is, where tools are registered, and the path rules every tool obeys.

Tools run in the app's process, never inside the sandbox: model-written code calls
them by name, the sandbox forwards the call, and the tool checks its arguments here.
Every file a tool reads or writes goes through ToolContext.open_file / write_output, which
check and open in one step (model code keeps running while a tool works).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from agent.profiles import PROFILES, TOOL_NAMES  # noqa: F401 — re-exported for the tools package
from agent.sandbox import beneath

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

    def _locate(self, path: str | Path) -> tuple[Path | None, str]:
        """(an attachment's real file, "") or (None, the path relative to the working directory).

        Attachments are matched by the name the task gave them (or their real path); every other
        path must name something inside the working directory, written without climbing out.
        """
        name = str(path)
        if name in self.attachments:
            return self.attachments[name], ""
        norm = os.path.normpath(name) if name else name
        workdir = str(self.workdir.resolve())
        if os.path.isabs(norm):
            for attached in self.attachments.values():
                if norm == str(attached):
                    return attached, ""
            norm = os.path.relpath(norm, workdir) if norm.startswith(workdir + os.sep) else ".."
        if norm in self.attachments:
            return self.attachments[norm], ""
        if not norm or norm == "." or norm == ".." or norm.startswith("../"):
            raise ToolError(f"access to '{name}' is not allowed: only the task's working directory and attachments")
        return None, norm

    def open_file(self, path: str | Path) -> BinaryIO:
        """The file behind a path the model wrote, opened for reading in one step (see agent/sandbox/beneath.py).

        Tools read from the returned file, never by name again, so swapping the file for a link
        while the tool runs cannot redirect it. Refuses links, paths outside, FIFOs and devices.
        """
        attached, relative = self._locate(path)
        try:
            if attached is not None:
                return open(attached, "rb")
            return os.fdopen(beneath.open_regular(self.workdir, relative), "rb")
        except beneath.PathRefused as exc:
            raise ToolError(f"access to '{path}' is not allowed: {exc.strerror} (only the task's working directory "
                            "and attachments)") from None
        except (FileNotFoundError, NotADirectoryError):
            raise ToolError(f"file not found: '{path}'") from None
        except IsADirectoryError:
            raise ToolError(f"'{path}' is a directory, not a file") from None

    def read_bytes(self, path: str | Path) -> bytes:
        with self.open_file(path) as file:
            return file.read()

    def output_name(self, stem: str, suffix: str) -> str:
        """A fresh name under `.cache/` for a file a tool or a nested sandbox will write (as the model sees it)."""
        name = f".cache/{stem}_{int(time.time() * 1000)}_{uuid.uuid4().hex[:6]}{suffix}"
        self.produced.append(name)
        return name

    def write_output(self, stem: str, suffix: str, write: Callable[[BinaryIO], Any]) -> str:
        """`write(file)` into a new file under `.cache/`; returns its path as the model sees it.

        The file is created with O_EXCL|O_NOFOLLOW below a `.cache` opened without following links,
        so a `.cache` (or file) replaced by a symlink makes the tool fail instead of writing outside.
        """
        shown = self.output_name(stem, suffix)
        try:
            fd = beneath.create_new(self.workdir, shown)
        except (beneath.PathRefused, FileExistsError) as exc:
            self.produced.remove(shown)
            raise ToolError(f"cannot write '{shown}': {exc.strerror}; the tool's output stays inside the working "
                            "directory") from None
        with os.fdopen(fd, "wb") as file:
            write(file)
        return shown

    def exists(self, path: str) -> bool:
        """Whether a plain file is at `path` in the working directory (checked without following links)."""
        try:
            self.open_file(path).close()
            return True
        except ToolError:
            return False


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


def register(tool: Tool) -> Tool:
    _REGISTRY[tool.name] = tool
    return tool


def get_tool(name: str) -> Tool:
    return _REGISTRY[name]


def registered() -> dict[str, Tool]:
    return dict(_REGISTRY)
