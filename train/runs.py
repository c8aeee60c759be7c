"""Run records in the store: one row per training run, linking its data, config, outputs and metrics.

A run is keyed by its output folder, so resuming a run (same `--out`) updates the same row.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

COLUMNS = ("id", "created_at", "updated_at", "status", "base_model", "data", "examples", "out_dir", "adapter_dir",
           "merged_dir", "metrics_path", "config", "steps_done", "steps_total", "last_loss", "job_id", "message")


@dataclass
class Run:
    id: str
    created_at: str
    updated_at: str
    status: str  # running | done | failed | stopped
    base_model: str
    data: str
    examples: int | None
    out_dir: str
    adapter_dir: str | None
    merged_dir: str | None
    metrics_path: str
    config: dict
    steps_done: int
    steps_total: int | None
    last_loss: float | None
    job_id: str | None
    message: str | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_id(out_dir: str | Path) -> str:
    """A stable id for the run writing into `out_dir`."""
    return hashlib.sha1(str(Path(out_dir).resolve()).encode()).hexdigest()[:12]


def connect(db: str | Path):
    """A Store on `db` with the train tables migrated."""
    from review.schema import migrate
    from review.store import Store
    from train.schema import TRAIN_MIGRATIONS

    store = Store(db)
    migrate(store.db.conn, "train", TRAIN_MIGRATIONS)
    return store


def record_start(db: str | Path, *, out_dir: Path, base_model: str, data: str, examples: int, steps_total: int,
                 config: dict) -> str:
    """Insert (or, on resume, reopen) the run's row; returns its id."""
    rid = run_id(out_dir)
    row = {
        "id": rid, "updated_at": _now(), "status": "running", "base_model": base_model, "data": data,
        "examples": examples, "out_dir": str(out_dir), "metrics_path": str(out_dir / "metrics.jsonl"),
        "config": json.dumps(config), "steps_total": steps_total, "job_id": os.environ.get("MAT_JOB_ID"),
        "message": None,
    }
    with connect(db) as store:
        table = store.db["train_runs"]
        if table.count_where("id = ?", [rid]):
            table.update(rid, row)
        else:
            table.insert({**row, "created_at": _now()})
    return rid


def record_update(db: str | Path, rid: str, **changes: Any) -> None:
    with connect(db) as store:
        store.db["train_runs"].update(rid, {**changes, "updated_at": _now()})


def list_runs(db: str | Path) -> list[Run]:
    """Every run, newest first."""
    with connect(db) as store:
        rows = store.db.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM train_runs ORDER BY created_at DESC, id")
        return [_run(dict(zip(COLUMNS, row, strict=True))) for row in rows.fetchall()]


def get_run(db: str | Path, rid: str) -> Run | None:
    return next((run for run in list_runs(db) if run.id == rid), None)


def _run(row: dict) -> Run:
    row["config"] = json.loads(row["config"])
    return Run(**row)
