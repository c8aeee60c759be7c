"""Training runs in the database: the shared run record (`core.runs`) plus training's own columns.

A run is keyed by its output folder, so resuming a run (same `--out`) updates the same record. Every function
takes the open `Database`: the Train tab reads these every two seconds, and opening a file each time costs more
than the read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import runs
from core.db import Database

_OWN = ("base_model", "data", "examples", "adapter_dir", "merged_dir", "metrics_path", "last_loss")


@dataclass
class TrainRun:
    run: runs.Run
    base_model: str
    data: str
    examples: int | None
    adapter_dir: str | None
    merged_dir: str | None
    metrics_path: str
    last_loss: float | None


def run_id(out_dir: str | Path) -> str:
    """A stable id for the run writing into `out_dir`."""
    return hashlib.sha1(str(Path(out_dir).resolve()).encode()).hexdigest()[:12]


def open_database(path: str | Path | None) -> Database | None:
    """The store a run is recorded in, opened before any work so that one that cannot be written is refused up
    front (a database in a read-only folder, a full disk); None when the run has no store."""
    return Database(path) if path else None


def record_start(database: Database, *, out_dir: Path, base_model: str, data: str, examples: int, steps_total: int,
                 config: dict, fingerprint: str = "") -> str:
    """Record the run (or, on resume, reopen its record); returns its id."""
    rid = run_id(out_dir)
    own = {"base_model": base_model, "data": data, "examples": examples,
           "metrics_path": str(Path(out_dir) / "metrics.jsonl")}
    with database.transaction() as tx:
        if runs.find(database, rid) is None:
            runs.start(database, "train", config, run_id=rid, fingerprint=fingerprint, total=steps_total,
                       folder=str(out_dir))
        else:
            runs.reopen(database, rid, total=steps_total)
        tx.execute("INSERT INTO train_runs (id, base_model, data, examples, metrics_path)"
                   " VALUES (:id, :base_model, :data, :examples, :metrics_path) ON CONFLICT (id) DO UPDATE SET"
                   " base_model = excluded.base_model, data = excluded.data, examples = excluded.examples,"
                   " metrics_path = excluded.metrics_path", {"id": rid, **own})
    return rid


def record_update(database: Database, rid: str, *, status: str | None = None, message: str = "",
                  steps_done: int | None = None, **own: Any) -> None:
    """Progress, training's own columns (adapter_dir, last_loss, ...), and at the end how the run ended."""
    unknown = set(own) - set(_OWN)
    if unknown:
        raise ValueError(f"not a training run column: {', '.join(sorted(unknown))}")
    with database.transaction() as tx:
        if steps_done is not None:
            runs.set_progress(database, rid, steps_done)
        if own:
            tx.execute(f"UPDATE train_runs SET {', '.join(f'{name} = :{name}' for name in own)} WHERE id = :id",
                       {**own, "id": rid})
        if status is not None:
            runs.finish(database, rid, status, message)


def list_runs(database: Database) -> list[TrainRun]:
    """Every training run, newest first."""
    own = {row[0]: row[1:] for row in database.read(f"SELECT id, {', '.join(_OWN)} FROM train_runs")}
    return [TrainRun(run, *own[run.id]) for run in runs.list_runs(database, "train") if run.id in own]


def get_run(database: Database, rid: str) -> TrainRun | None:
    run = runs.find(database, rid)
    own = database.read_one(f"SELECT {', '.join(_OWN)} FROM train_runs WHERE id = ?", (rid,))
    return None if run is None or own is None else TrainRun(run, *own)
