"""Stage 7, the replay verifier (no LLM): run a trajectory's code again, step by step, in a fresh
sandbox with the same files, and flag the steps whose observation does not come out the same.

A step that reproduces is "same"; one whose output differs, that now fails (or now succeeds), is
"differs" — a tool whose output changed, or code that only worked by accident. Steps that call a
model- or network-backed tool cannot be replayed without an LLM and are "unverifiable" (their
tools answer that no model is configured, so later steps that build on them may differ too).
Works on any stored trajectory whose files are present: synthesized, or imported from the release (whose
`Attachment:` paths and `image` field name one file under different prefixes: they are matched by the
rule import uses, `review.formats.find_image`).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.replay import outcome, recorded_outcome
from agent.steps import Step, Trajectory
from core.clock import now

if TYPE_CHECKING:
    from review.store import Store

MODEL_TOOLS = {"visualizer", "ask_search_agent", "image_generator", "image_edit"}


@dataclass
class StepCheck:
    index: int
    status: str  # same | differs | unverifiable | no code
    expected: str = ""
    got: str = ""


@dataclass
class ReplayReport:
    trajectory_id: str
    steps: list[StepCheck] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[int]:
        return [c.index for c in self.steps if c.status == "differs"]

    @property
    def reproduced(self) -> bool:
        return not self.missing and not self.flagged

    def summary(self) -> str:
        if self.missing:
            return f"not replayed: files missing ({', '.join(self.missing)})"
        if self.flagged:
            return f"steps {', '.join(map(str, self.flagged))} did not reproduce"
        unverifiable = [c.index for c in self.steps if c.status == "unverifiable"]
        note = f" (steps {', '.join(map(str, unverifiable))} call model tools: not checked)" if unverifiable else ""
        return f"all {len(self.steps)} steps reproduce{note}"


def replay(trajectory: Trajectory, files: dict[str, Path], *, trajectory_id: str = "", profile: str = "mat",
           step_seconds: float = 30.0) -> ReplayReport:
    """Re-run `trajectory`'s code; `files` maps each name the task uses to the real file."""
    from agent.sandbox import Limits, Sandbox
    from agent.tools import bind_tools, profile_tools
    from agent.tools.base import ToolContext

    report = ReplayReport(trajectory_id)
    needed = [*trajectory.task.images, *trajectory.task.attachments]
    report.missing = [name for name in dict.fromkeys(needed) if name not in files or not Path(files[name]).is_file()]
    if report.missing:
        return report
    workdir = Path(tempfile.mkdtemp(prefix="mat-replay-"))
    attachments = {name: Path(path) for name, path in files.items()}
    try:
        tools = bind_tools(profile_tools(profile), ToolContext(workdir=workdir, attachments=attachments))
        with Sandbox(workdir, attachments, tools, Limits(step_seconds=step_seconds)) as sandbox:
            for step in trajectory.steps:
                report.steps.append(_check(step, sandbox))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def replay_stored(store: Store, trajectory_id: str, files: dict[str, Path] | None = None,
                  profile: str = "mat") -> ReplayReport:
    """Replay a trajectory from the store (its stored images, plus `files`) and keep the report."""
    from review.formats import find_image

    detail = store.detail(trajectory_id)
    known = {ref.name: ref.path for ref in detail.images if ref.path is not None}
    given = {**known, **(files or {})}
    for name in [*detail.original.task.images, *detail.original.task.attachments]:
        if name not in given and (stored := find_image(name, known)) is not None:
            given[name] = known[stored]
    report = replay(detail.original, given, trajectory_id=trajectory_id, profile=profile)
    with store.db.transaction() as tx:
        tx.execute(
            "INSERT OR REPLACE INTO synthesis_replays VALUES (?, ?, ?, ?, ?)",
            (trajectory_id, now(), int(report.reproduced), json.dumps(report.flagged),
             json.dumps({"summary": report.summary(), "missing": report.missing,
                         "steps": [asdict(c) for c in report.steps]})))
    store.record_replay(trajectory_id, None if report.missing else report.reproduced)
    return report


def _check(step: Step, sandbox) -> StepCheck:
    if not step.code:
        return StepCheck(step.index, "no code")
    result = sandbox.run(step.code)
    if set(re.findall(r"\b(\w+)\s*\(", step.code)) & MODEL_TOOLS:
        return StepCheck(step.index, "unverifiable")
    expected, got = recorded_outcome(step), outcome(result)
    return StepCheck(step.index, "same" if expected == got else "differs", expected, got)
