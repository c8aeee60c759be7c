"""One agent run's surroundings: its working directory, attachments, tools, sandbox and stop switch.

The CLI, the Chat tab and the evaluation runner all start runs here, so every run is
sandboxed and laid out the same way.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import Settings
from agent.loop import IMAGE_SUFFIXES, Delta, LoopLimits, run
from agent.models.base import Model
from agent.models.base import ModelError
from agent.models.cancel import ModelCancelled, cancelled_by
from agent.steps import Step, Task, Trajectory
from core.errors import UserError

if TYPE_CHECKING:
    from agent.sandbox import Sandbox


class UploadError(UserError):
    """A file the user gave cannot be used; the message says which and why."""


def check_files(files: list[Path], max_mb: int) -> None:
    """Refuse missing, huge and unreadable files before anything runs."""
    from PIL import Image, UnidentifiedImageError

    for path in files:
        if not path.is_file():
            raise UploadError(f"{path.name}: file not found")
        size_mb = path.stat().st_size / 2**20
        if size_mb > max_mb:
            raise UploadError(f"{path.name} is {size_mb:.0f} MB; the limit is {max_mb} MB (MAT_MAX_UPLOAD_MB)")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                with Image.open(path) as image:
                    image.verify()
            except Image.DecompressionBombError:
                raise UploadError(f"{path.name} has too many pixels to be a safe image to open") from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise UploadError(f"{path.name} is not a readable image ({type(exc).__name__})") from None


def _attachment_names(files: list[Path]) -> dict[str, Path]:
    """Names the task gives its files: `attachments/<name>`, made unique and shell-safe."""
    names: dict[str, Path] = {}
    for path in files:
        stem = re.sub(r"[^\w.-]", "_", path.name) or "file"
        name, n = f"attachments/{stem}", 1
        while name in names:
            n += 1
            name = f"attachments/{n}_{stem}"
        names[name] = path.resolve()
    return names


@dataclass
class AgentRun:
    """A task being solved; `stop()` may be called from another thread."""

    trajectory: Trajectory
    workdir: Path
    attachments: dict[str, Path]
    sandbox: Sandbox
    stop_event: threading.Event = field(default_factory=threading.Event)
    kept: dict[str, Path] = field(default_factory=dict)

    @property
    def kept_dir(self) -> Path:
        """Copies of the images steps saved, beside the working directory and out of the model code's reach."""
        return self.workdir.with_name(self.workdir.name + "-images")

    @property
    def images(self) -> list[Path]:
        return [self.attachments[name] for name in self.trajectory.task.images]

    def steps(self, model: Model, limits: LoopLimits) -> Iterator[Step | Delta]:
        """The run's events; after `stop()` it ends within a second, even mid model call or backoff.

        Each step is advanced under the run's stop event (agent.models.cancel), whichever thread
        advances it, so a model call waiting on a server gives up when the run is stopped.
        """
        events = run(
            self.trajectory, model=model, sandbox=self.sandbox, images=self.images, limits=limits, stop=self.stop_event
        )
        try:
            while True:
                try:
                    with cancelled_by(self.stop_event):
                        event = next(events)
                except StopIteration:
                    return
                except ModelCancelled:
                    if self.stop_event.is_set():
                        return
                    raise
                if isinstance(event, Step):
                    self._keep_images(event)
                yield event
        finally:
            events.close()

    def _keep_images(self, step: Step) -> None:
        """Copy the step's images out of the working directory now, opened without following links.

        Model code keeps running beside the page: a file it swaps for a link after the step must
        not be shown or stored, so the page and Save to Review only ever read these copies.
        """
        from agent.sandbox.beneath import open_regular

        kept = []
        for name in step.images:
            target = self.kept_dir / f"{step.index}-{len(self.kept)}{Path(name).suffix.lower()}"
            try:
                with open(open_regular(self.workdir, name), "rb") as source:
                    self.kept_dir.mkdir(exist_ok=True)
                    target.write_bytes(source.read())
            except OSError:
                continue
            self.kept[name] = target
            kept.append(name)
        step.images = kept

    def stop(self) -> None:
        """Stop the run from any thread: the model call, its retries and the running step end now."""
        self.stop_event.set()
        self.sandbox.kill()

    def close(self) -> None:
        self.sandbox.close()


def tool_models(settings: Settings, controller: Model | None, *, tiny: bool = False) -> tuple[Model | None, Model | None]:
    """The models the tools ask, (vlm, llm): the visualizer's is MAT_VLM_MODEL when set, else the controller;
    the text tools' is the controller. A VLM that cannot load leaves the tool to say how to configure it."""
    from agent.models import load_model

    vlm = controller
    if settings.vlm_model and not tiny:
        try:
            vlm = load_model(settings, which="vlm")
        except ModelError:
            vlm = None
    return vlm, controller


def start_run(
    settings: Settings,
    text: str,
    files: list[Path] = (),
    *,
    controller: Model | None = None,
    tiny: bool = False,
    profile: str | None = None,
    system_prompt: str | None = None,
) -> AgentRun:
    """Lay out a fresh working directory and a sandbox for one task; the tools ask `controller`'s models."""
    from agent.prompt import render_system_prompt
    from agent.sandbox import Limits, Sandbox
    from agent.tools import bind_tools, profile_tools
    from agent.tools.base import ToolContext

    files = [Path(f) for f in files]
    check_files(files, settings.max_upload_mb)
    attachments = _attachment_names(files)
    images = [name for name, path in attachments.items() if path.suffix.lower() in IMAGE_SUFFIXES]
    task = Task(text=text.strip(), images=images, attachments=list(attachments))
    tools = profile_tools(profile or settings.profile)
    workdir = settings.runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    (workdir / ".cache").mkdir(parents=True)
    vlm, llm = tool_models(settings, controller, tiny=tiny)
    ctx = ToolContext(workdir=workdir, attachments=attachments, vlm=vlm, llm=llm)
    limits = Limits(step_seconds=settings.step_timeout, memory_mb=settings.memory_mb)
    sandbox = Sandbox(workdir, attachments, bind_tools(tools, ctx), limits)
    trajectory = Trajectory(task=task, system_prompt=system_prompt or render_system_prompt(tools))
    return AgentRun(trajectory=trajectory, workdir=workdir, attachments=attachments, sandbox=sandbox)


def loop_limits(settings: Settings, max_steps: int | None = None, *, tiny: bool = False) -> LoopLimits:
    """The loop's limits; the tiny smoke model writes noise, so it gets a short budget per turn."""
    return LoopLimits(
        max_steps=max_steps or settings.max_steps,
        max_errors=settings.max_errors,
        max_new_tokens=min(settings.max_new_tokens, 64) if tiny else settings.max_new_tokens,
    )
