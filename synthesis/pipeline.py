"""Running a synthesis run: stages pipelined, resumable, with progress.

Each stage has its own thread pool; a task moves to the next stage's pool the moment it is done
with one, so queries are still being written while the first trajectories are judged. The LLM
client bounds requests in flight to the run's concurrency across all stages. Everything a task has
is saved at each stage boundary, so a run killed anywhere continues with `resume`.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from synthesis import files, solve, verify
from synthesis.context import Context, StageError, Stopped
from synthesis.llm import RequestFailed
from synthesis.queries import QueryStage
from synthesis.replay import replay_stored
from synthesis.tasks import STAGES, TaskRow, advance, fail, load_tasks, set_run_status

logger = logging.getLogger("synthesis")


def _replay(ctx: Context, task: TaskRow) -> None:
    if not ctx.config.replay:
        return
    paths = {f"attachments/{name}": path for name, path in task.paths.items()}
    task.replay = replay_stored(ctx.store, task.trajectory_id, files=paths, profile=ctx.config.profile).summary()


STAGE_WORK: dict[str, Callable[[Context, TaskRow], None]] = {
    "describe": files.describe, "files": files.make_files, "check": verify.check,
    "solve": solve.solve, "judge": verify.judge, "replay": _replay,
}


class Pipeline:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Twice the request slots per stage: while some of a stage's tasks wait on the model, others are in
        # their sandbox or the store, so the slots stay busy (the LLM client bounds requests in flight).
        workers = 2 * max(1, ctx.config.concurrency)
        self.pools = {stage: ThreadPoolExecutor(workers, thread_name_prefix=stage) for stage in STAGES}
        self.pending = 0
        self.idle = threading.Condition()

    def run(self) -> str:
        """Run (or continue) the whole run; returns a note for the run's message."""
        for task in load_tasks(self.ctx.store, self.ctx.run_id, status="active"):
            self.submit(task)
        note = QueryStage(self.ctx, self.submit).run()
        with self.idle:
            while self.pending and not self.ctx.stop.is_set():
                self.idle.wait(0.5)
        for pool in self.pools.values():
            pool.shutdown(wait=not self.ctx.stop.is_set(), cancel_futures=True)
        return note

    def submit(self, task: TaskRow) -> None:
        if task.status != "active" or self.ctx.stop.is_set():
            return
        with self.idle:
            self.pending += 1
        self.pools[task.stage].submit(self._work, task)

    def _work(self, task: TaskRow) -> None:
        try:
            if self.ctx.stop.is_set():
                raise Stopped()
            STAGE_WORK[task.stage](self.ctx, task)
            advance(self.ctx.store, task)
        except Stopped:
            pass
        except (RequestFailed, StageError) as exc:
            fail(self.ctx.store, task, str(exc))
        except Exception as exc:  # a bug or an odd input must not end the run; the task says what happened
            logger.debug("task %s failed at %s", task.id, task.stage, exc_info=True)
            fail(self.ctx.store, task, f"{type(exc).__name__}: {exc}")
        if task.status == "active" and task.stage != "done":
            self.submit(task)
        with self.idle:
            self.pending -= 1
            self.idle.notify_all()


def finish(ctx: Context, note: str) -> str:
    """Mark the run's end in the store; returns its status."""
    if ctx.stop.is_set():
        status = "stopped"
    else:
        tasks = load_tasks(ctx.store, ctx.run_id)
        failed = sum(t.status == "failed" for t in tasks)
        status = "done" if tasks else "failed"
        note = "; ".join(x for x in (note, f"{failed} task(s) failed" if failed else "") if x)
    set_run_status(ctx.store, ctx.run_id, status, note)
    return status
