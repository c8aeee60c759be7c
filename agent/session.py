"""One agent run's surroundings: its working directory, attachments, tools, sandbox and stop switch.

The CLI, the Chat tab and the evaluation runner all start runs here, so every run is
sandboxed and laid out the same way.
"""

from __future__ import annotations

import os
import re
import shutil
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


RUN_NAME = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")  # a run folder under data/runs: when it started, and a tag
UPLOADS = "uploads"  # data/runs/uploads/<tag>: the Chat tab's scaled copies of uploaded images
_live: set[Path] = set()  # working directories of this process's runs in progress: never pruned
_live_lock = threading.Lock()


@dataclass
class AgentRun:
    """A task being solved; `stop()` may be called from another thread."""

    trajectory: Trajectory
    workdir: Path
    attachments: dict[str, Path]
    sandbox: Sandbox
    stop_event: threading.Event = field(default_factory=threading.Event)
    kept: dict[str, Path] = field(default_factory=dict)
    keep_runs: int | None = None  # run folders kept beside this one once it ends (None: all)

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
        """End the sandbox; then only the newest `keep_runs` run folders stay."""
        self.sandbox.close()
        with _live_lock:
            _live.discard(self.workdir)
        if self.keep_runs is not None:
            prune_runs(self.workdir.parent, self.keep_runs)


def _run_files(runs_dir: Path, name: str) -> list[Path]:
    """A run's folder and what sits beside it: the images its steps saved and the Chat tab's record of it."""
    return [runs_dir / name, runs_dir / f"{name}-images", runs_dir / f"{name}.json"]


def prune_runs(runs_dir: Path, keep: int) -> int:
    """Remove all but the newest `keep` run folders (and upload folders) under `runs_dir`; returns how many went.

    Runs in progress in this process are never removed; another process's run is the newest there is.
    """
    with _live_lock:
        live = {path.name for path in _live}
    runs = sorted((p.name for p in _entries(runs_dir) if RUN_NAME.match(p.name) and p.is_dir()), reverse=True)
    removed = 0
    for name in runs[keep:]:
        if name not in live:
            for path in _run_files(runs_dir, name):
                _remove(path)
            removed += 1
    uploads = sorted(_entries(runs_dir / UPLOADS), key=_mtime, reverse=True)
    for path in uploads[keep:]:
        _remove(path)
    return removed + len(uploads[keep:])


def runs_usage(runs_dir: Path) -> tuple[int, int]:
    """(run folders, bytes) under `runs_dir`, uploads and saved images included."""
    runs = sum(1 for p in _entries(runs_dir) if RUN_NAME.match(p.name) and p.is_dir())
    total = 0
    for root, _dirs, files in os.walk(runs_dir):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return runs, total


def clean_disk(settings: Settings) -> None:
    """At start: remove killed runs' sandbox folders and run folders beyond MAT_KEEP_RUNS."""
    from agent.sandbox.host import remove_stale_folders

    remove_stale_folders()
    prune_runs(settings.runs_dir, settings.keep_runs)


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
    with _live_lock:
        _live.add(workdir)
    return AgentRun(trajectory=trajectory, workdir=workdir, attachments=attachments, sandbox=sandbox,
                    keep_runs=settings.keep_runs)


def loop_limits(settings: Settings, max_steps: int | None = None, *, tiny: bool = False) -> LoopLimits:
    """The loop's limits; the tiny smoke model writes noise, so it gets a short budget per turn."""
    return LoopLimits(
        max_steps=max_steps or settings.max_steps,
        max_errors=settings.max_errors,
        max_new_tokens=min(settings.max_new_tokens, 64) if tiny else settings.max_new_tokens,
    )
