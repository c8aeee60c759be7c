"""A fresh sandbox brought to the state a trajectory prefix left: the prefix's code run again, step by step.

Review's step sampler runs each candidate next step in such a sandbox, so that a variable, an import or a file the
prefix made is there, as it was for the step the candidate stands in for. Synthesis's replay verifier needs the same
thing for a whole trajectory. The sandbox keeps its variables between steps, so running each step's code in order
rebuilds the state; what cannot be rebuilt is said, step by step:

- a step *reproduces* when it comes out the same way: the same printed output (line ends and the retry hint aside),
  or again an error, or again a final answer;
- it *differs* otherwise: a tool whose answer changed (a model-backed tool answers anew), code that only worked
  by accident, or a step that depended on one that differed;
- a step without code (the model's turn did not parse) has nothing to run.

The sandbox sees the task's pictures and attachments at the names the task gives them, and nothing else: images
earlier steps saved are made again by their code, not laid out from copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.steps import EXECUTION_FAILED, RETRY_HINT, Step, Trajectory, observation_text
from core import defaults
from core.errors import UserError

if TYPE_CHECKING:
    from agent.models.base import Model
    from agent.sandbox import ExecResult, Limits, Sandbox

SAME, DIFFERS, NO_CODE = "same", "differs", "no code"


class FilesMissing(UserError):
    """A picture or attachment the task names is not among the files given: nothing was run."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(f"cannot replay: the task's file{'s' * (len(names) > 1)} {', '.join(names)} "
                         f"{'are' if len(names) > 1 else 'is'} missing")


@dataclass
class StepReplay:
    """How one prefix step came out when its code ran again (`expected` and `got` compared as described above)."""

    index: int
    status: str  # SAME | DIFFERS | NO_CODE
    expected: str = ""
    got: str = ""


@dataclass
class Replay:
    """A sandbox at the state the prefix left, open until `close()`; `steps` says how each prefix step came out."""

    sandbox: Sandbox
    workdir: Path
    attachments: dict[str, Path]
    steps: list[StepReplay] = field(default_factory=list)

    @property
    def not_reproduced(self) -> list[int]:
        """The indices of the prefix steps that did not come out the same."""
        return [step.index for step in self.steps if step.status == DIFFERS]

    def summary(self) -> str:
        ran = sum(step.status != NO_CODE for step in self.steps)
        if not self.not_reproduced:
            return f"the {ran} prefix step{'s' * (ran != 1)} with code reproduced"
        shown = ", ".join(str(index + 1) for index in self.not_reproduced)
        return f"prefix step{'s' * (len(self.not_reproduced) > 1)} {shown} (counted from 1) did not reproduce"

    def close(self) -> None:
        self.sandbox.close()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replay(prefix: Trajectory, files: Mapping[str, str | Path], workdir: Path, *,
           profile: str = defaults.TOOL_PROFILE, vlm: Model | None = None, llm: Model | None = None,
           limits: Limits | None = None) -> Replay:
    """Run `prefix`'s code, step by step, in a new sandbox in `workdir`; returns it open, at that state.

    `files` maps the names the task uses (its pictures and attachments) to the real files; one that is missing is
    refused (FilesMissing) before anything runs. Tools ask `vlm` and `llm` (None: they answer that no model is
    configured), with `profile`'s tools bound as in an agent run.
    """
    from agent.sandbox import Sandbox
    from agent.tools import bind_tools, profile_tools
    from agent.tools.base import ToolContext

    attachments = task_files(prefix, files)
    workdir.mkdir(parents=True, exist_ok=True)
    context = ToolContext(workdir=workdir, attachments=attachments, vlm=vlm, llm=llm)
    sandbox = Sandbox(workdir, attachments, bind_tools(profile_tools(profile), context), limits)
    result = Replay(sandbox, workdir, attachments)
    try:
        for step in prefix.steps:
            result.steps.append(_rerun(step, sandbox))
    except BaseException:
        sandbox.close()
        raise
    return result


def task_files(trajectory: Trajectory, files: Mapping[str, str | Path]) -> dict[str, Path]:
    """The real file behind each name the task uses; FilesMissing names those that are not there."""
    names = list(dict.fromkeys([*trajectory.task.images, *trajectory.task.attachments]))
    missing = [name for name in names if name not in files or not Path(files[name]).is_file()]
    if missing:
        raise FilesMissing(missing)
    return {name: Path(files[name]) for name in names}


def _rerun(step: Step, sandbox: Sandbox) -> StepReplay:
    if not step.code:
        return StepReplay(step.index, NO_CODE)
    expected, got = recorded_outcome(step), outcome(sandbox.run(step.code))
    return StepReplay(step.index, SAME if expected == got else DIFFERS, expected, got)


def recorded_outcome(step: Step) -> str:
    """What the step's run gave, as `outcome` words it: "final answer", "error", or the printed output."""
    if step.is_final:
        return "final answer"
    if step.error is not None:
        return "error"
    return _plain(step.observation or "")


def outcome(result: ExecResult) -> str:
    """What code run in the sandbox gave: "final answer", "error", or the printed output as the model reads it."""
    if result.is_final:
        return "final answer"
    if result.error is not None:
        return "error"
    return _plain(observation_text(result.output))


def _plain(text: str) -> str:
    """Printed output without what the loop adds around it or trailing spaces, so equal outputs compare equal."""
    text = text.replace(EXECUTION_FAILED, "").replace(RETRY_HINT, "")
    return "\n".join(line.rstrip() for line in text.strip().splitlines())
