"""Stage 5: the T3-Agent solves the task through `agent.loop.run`, the loop Chat uses, and the
trajectory goes into the Review store as pending, with this run as its source.

The agent's model is the run's LLM seen through the `Model` interface, so every step (and every
call a tool makes to the model) is keyed and stored like the other stages' requests: a resumed
task replays its earlier steps from the store without paying for them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agent.models.base import ChatMessage, Chunk, Model
from synthesis.context import Context, StageError, Stopped
from synthesis.tasks import TaskRow


class RunModel(Model):
    """One task's view of the run's LLM; each distinct conversation is one keyed request."""

    def __init__(self, ctx: Context, task: TaskRow) -> None:
        super().__init__(slots=1)
        self.ctx, self.task = ctx, task
        self.name = ctx.config.model

    def _stream(self, messages: list[ChatMessage], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        """`messages` come from `agent.render` (the loop) or a tool's question, and are sent as they are laid out."""
        reply = self.ctx.llm.chat(stage="solve", task_id=self.task.id, attempt=self.task.attempt, purpose="agent",
                                  messages=messages, max_tokens=max_new_tokens, stop=stop, one_shot=False)
        yield Chunk(reply.text, reply.input_tokens, reply.output_tokens)


def solve(ctx: Context, task: TaskRow) -> None:
    """Run the agent on the task (unless an earlier, interrupted attempt already stored its trajectory)."""
    task.trajectory_id = ctx.store.find(record_id=task.id, source=ctx.source) or _run_agent(ctx, task)


def _run_agent(ctx: Context, task: TaskRow) -> str:
    from agent.config import Settings
    from agent.loop import Delta
    from agent.session import UploadError, loop_limits, start_run

    model = RunModel(ctx, task)
    settings = Settings(data_dir=ctx.workdir, step_timeout=ctx.config.step_timeout, profile=ctx.config.profile,
                        vlm_model=None)
    try:
        run = start_run(settings, task.query, [Path(task.paths[f["name"]]) for f in task.files], controller=model)
    except UploadError as exc:
        raise StageError(str(exc)) from None
    try:
        for item in run.steps(model, loop_limits(settings, ctx.config.max_steps)):
            if ctx.stop.is_set() and not isinstance(item, Delta):
                raise Stopped()
    finally:
        run.close()
    return ctx.store.add_trajectory(run.trajectory, source=ctx.source, record_id=task.id,
                                    image_files={**run.attachments, **run.kept})
