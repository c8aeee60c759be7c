"""A run's configuration and its tasks as stored: what each task has and the stage it needs next."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from synthesis.llm import now

if TYPE_CHECKING:
    from review.store import Store

# The order a task goes through; `stage` holds the next one to do ("done" at the end).
STAGES = ["describe", "files", "check", "solve", "judge", "replay"]
ALL_STAGES = ["queries", *STAGES]


@dataclass
class RunConfig:
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
    timeout: float = 120.0
    max_retries: int = 5
    backoff: float = 0.5
    batch: bool = False  # one-shot stages through the OpenAI Batch API
    batch_window: float = 5.0  # seconds to gather requests into one batch
    replay: bool = True
    prices: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
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


_COLUMNS = [f for f in TaskRow.__dataclass_fields__]


def new_run_id() -> str:
    return f"{now()[:10].replace('-', '')}-{secrets.token_hex(3)}"


def new_run(store: Store, config: RunConfig, run_id: str | None = None) -> str:
    run_id = run_id or new_run_id()
    if store.db.conn.execute("SELECT 1 FROM synthesis_runs WHERE id = ?", (run_id,)).fetchone():
        raise ValueError(f"run {run_id} exists already: resume it instead")
    store.db.conn.execute("INSERT INTO synthesis_runs (id, created, config) VALUES (?, ?, ?)",
                          (run_id, now(), config.to_json()))
    return run_id


def run_config(store: Store, run_id: str) -> RunConfig:
    row = store.db.conn.execute("SELECT config FROM synthesis_runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise KeyError(f"no synthesis run '{run_id}' in {store.path}")
    return RunConfig.from_json(row[0])


def set_run_status(store: Store, run_id: str, status: str, message: str = "") -> None:
    store.db.conn.execute("UPDATE synthesis_runs SET status = ?, message = ? WHERE id = ?", (status, message, run_id))


def list_runs(store: Store) -> list[dict]:
    rows = store.db.conn.execute("SELECT id, created, status, message, config FROM synthesis_runs ORDER BY created")
    return [{"id": i, "created": c, "status": s, "message": m, "config": json.loads(cfg)} for i, c, s, m, cfg in rows]


def load_tasks(store: Store, run_id: str, status: str | None = None) -> list[TaskRow]:
    sql = f"SELECT {', '.join(_COLUMNS)} FROM synthesis_tasks WHERE run_id = ?"
    args: list = [run_id]
    if status:
        sql += " AND status = ?"
        args.append(status)
    return [_row(r) for r in store.db.conn.execute(sql + " ORDER BY n", args)]


def save(store: Store, task: TaskRow) -> None:
    """Write the whole task (one statement, so a kill leaves either the old or the new state)."""
    values = {**asdict(task), "files": json.dumps(task.files), "paths": json.dumps(task.paths)}
    sets = ", ".join(f"{c} = :{c}" for c in _COLUMNS if c not in ("id", "run_id", "n"))
    store.db.conn.execute(f"UPDATE synthesis_tasks SET {sets}, updated = :updated WHERE id = :id",
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
