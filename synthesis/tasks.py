"""A run's configuration and its tasks as stored: what each task has and the stage it needs next."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from core import defaults, runs
from core.clock import now
from core.errors import UserError

if TYPE_CHECKING:
    from review.store import Store

# The order a task goes through; `stage` holds the next one to do ("done" at the end).
STAGES = ["describe", "files", "check", "solve", "judge", "replay"]
ALL_STAGES = ["queries", *STAGES]


@dataclass
class SynthesisConfig:
    """Everything that decides a run's results; stored with the run so `resume` repeats it exactly.

    The API key is not part of it: it comes from the environment at each start.
    """

    tasks: int = 10
    concurrency: int = 8
    base_url: str | None = None
    model: str = "gpt-4o-mini"
    corpus: str | None = None  # image-caption corpus; None: the built-in demo corpus
    threshold: float = 0.35  # least caption similarity for an image to be used
    reuse_limit: int = 1  # how many tasks may share one corpus image
    dedup: float = 0.9  # queries more similar than this to an earlier one are dropped
    embedder: str = "minilm"
    seeds: str | None = None  # JSON {"seeds": [...], "topics": [...]}; None: the built-in ones
    per_request: int = 5  # queries asked for per request
    profile: str = "mat"
    max_steps: int = 6
    step_timeout: float = 30.0
    timeout: float = defaults.SYNTHESIS_TIMEOUT
    max_retries: int = defaults.SYNTHESIS_RETRIES
    backoff: float = defaults.BACKOFF
    batch: bool = False  # one-shot stages through the OpenAI Batch API
    batch_window: float = 5.0  # seconds to gather requests into one batch
    replay: bool = True
    prices: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> SynthesisConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class TaskRow:
    id: str
    run_id: str
    n: int
    stage: str
    status: str
    query: str
    files: list[dict] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    query_verdict: str | None = None
    query_reason: str | None = None
    trajectory_id: str | None = None
    verdict: str | None = None
    verdict_reason: str | None = None
    replay: str | None = None
    error: str | None = None
    attempt: int = 0  # raised each time a failed task is retried


_COLUMNS = [f for f in TaskRow.__dataclass_fields__]


def new_run_id() -> str:
    return f"{now()[:10].replace('-', '')}-{secrets.token_hex(3)}"


def new_run(store: Store, config: SynthesisConfig, run_id: str | None = None) -> str:
    return runs.start(store.db, "synthesis", asdict(config), run_id=run_id or new_run_id(), total=config.tasks).id


def run_config(store: Store, run_id: str) -> SynthesisConfig:
    run = runs.find(store.db, run_id)
    if run is None or run.kind != "synthesis":
        raise UserError(f"no synthesis run {run_id!r} in {store.path}")
    return SynthesisConfig.from_dict(run.config)


def set_run_status(store: Store, run_id: str, status: str, message: str = "") -> None:
    """`running` reopens the run (a resume); any other status ends it."""
    if status == "running":
        runs.reopen(store.db, run_id)
    else:
        runs.finish(store.db, run_id, status, message)


def list_runs(store: Store) -> list[runs.Run]:
    """Synthesis runs, newest first."""
    return runs.list_runs(store.db, "synthesis")


def load_tasks(store: Store, run_id: str, status: str | None = None) -> list[TaskRow]:
    sql = f"SELECT {', '.join(_COLUMNS)} FROM synthesis_tasks WHERE run_id = ?"
    args: list = [run_id]
    if status:
        sql += " AND status = ?"
        args.append(status)
    return [_row(r) for r in store.db.read(sql + " ORDER BY n", args)]


def save(store: Store, task: TaskRow) -> None:
    """Write the whole task (one statement, so a kill leaves either the old or the new state)."""
    values = {**asdict(task), "files": json.dumps(task.files), "paths": json.dumps(task.paths)}
    sets = ", ".join(f"{c} = :{c}" for c in _COLUMNS if c not in ("id", "run_id", "n"))
    with store.db.transaction() as tx:
        tx.execute(f"UPDATE synthesis_tasks SET {sets}, updated = :updated WHERE id = :id",
                   {**values, "updated": now()})


def advance(store: Store, task: TaskRow) -> None:
    """Mark the task's current stage done and save it; the next stage is what it needs now."""
    position = STAGES.index(task.stage)
    task.stage = STAGES[position + 1] if position + 1 < len(STAGES) else "done"
    if task.stage == "done":
        task.status = "done"
    save(store, task)


def fail(store: Store, task: TaskRow, reason: str) -> None:
    task.status, task.error = "failed", f"{task.stage}: {reason}"
    save(store, task)


def _row(values: tuple) -> TaskRow:
    data = dict(zip(_COLUMNS, values, strict=False))
    data["files"] = json.loads(data["files"])
    data["paths"] = json.loads(data["paths"])
    return TaskRow(**data)
